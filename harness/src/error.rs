//! The harness's errors, by what failed: a protocol session, a file or a
//! process, a results file, the user's request, an external tool, or an
//! experiment that could not be carried out. An experiment that cannot run
//! is an error, never "not applicable": it surfaces here.

/// What failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A protocol session returned an error where the harness needed success.
    #[error("{context}: {source}")]
    Session {
        /// What the harness was doing.
        context: String,
        /// The session's typed error.
        #[source]
        source: e2elab_core::Error,
    },
    /// Reading or writing a file, or starting a process.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A results or input file that is not what it should be (JSON, CSV).
    #[error("{context}: {reason}")]
    Data {
        /// Which file or record.
        context: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be done as asked: an unknown profile, a bad
    /// option or argument.
    #[error("{0}")]
    Usage(String),
    /// An external tool (gpg, openssl, xmlsec1, libotr's tools, valgrind,
    /// Prosody) is missing or failed.
    #[error("{tool}: {reason}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened.
        reason: String,
    },
    /// A measurement, experiment or check could not be carried out, or
    /// found what it must not (the message says which).
    #[error("{0}")]
    Experiment(String),
}

/// The harness's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Experiment`] from anything printable (a library's
    /// error met while measuring).
    pub fn msg(e: impl std::fmt::Display) -> Error {
        Error::Experiment(e.to_string())
    }

    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// A tool error.
    pub fn tool(tool: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Tool {
            tool: tool.into(),
            reason: reason.to_string(),
        }
    }

    /// A data error.
    pub fn data(context: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Data {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A session error with what was being done.
    pub fn session(context: impl Into<String>, source: e2elab_core::Error) -> Error {
        Error::Session {
            context: context.into(),
            source,
        }
    }

    /// The kind, for logs and JSON: `session`, `io`, `data`, `usage`, `tool`, `experiment`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Session { .. } => "session",
            Error::Io { .. } => "io",
            Error::Data { .. } => "data",
            Error::Usage(_) => "usage",
            Error::Tool { .. } => "tool",
            Error::Experiment(_) => "experiment",
        }
    }
}

/// In evidence and results files an error is its message.
impl serde::Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl From<e2elab_core::Error> for Error {
    fn from(source: e2elab_core::Error) -> Self {
        Error::Session {
            context: "session call".into(),
            source,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            context: "i/o".into(),
            source,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::data("JSON", e)
    }
}

impl From<csv::Error> for Error {
    fn from(e: csv::Error) -> Self {
        Error::data("CSV", e)
    }
}

/// The harness's own checks, written as messages.
impl From<String> for Error {
    fn from(msg: String) -> Self {
        Error::Experiment(msg)
    }
}

impl From<&str> for Error {
    fn from(msg: &str) -> Self {
        Error::Experiment(msg.to_string())
    }
}

/// `Err(fail!("..."))`: an [`Error::Experiment`] from a format string.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {
        $crate::error::Error::Experiment(format!($($t)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e: Error = e2elab_core::Error::DecryptFailed.into();
        assert_eq!(e.kind(), "session");
        assert!(e.to_string().contains("decryption"));
        let e: Error = std::io::Error::new(std::io::ErrorKind::NotFound, "x").into();
        assert_eq!(e.kind(), "io");
        assert_eq!(Error::usage("unknown protocol 'x'").kind(), "usage");
        assert_eq!(
            Error::tool("xmlsec1", "not installed").to_string(),
            "xmlsec1: not installed"
        );
        let n = 3;
        assert_eq!(fail!("{n} of 4").to_string(), "3 of 4");
    }
}
