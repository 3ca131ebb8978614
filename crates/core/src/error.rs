//! Errors shared by every protocol.
//!
//! One `#[non_exhaustive]` enum with sub-kinds that say *where* a call failed
//! (decoding, the peer misbehaving, a cryptographic check, identities, API
//! misuse, the crypto backend). Decryption and MAC failures are deliberately
//! opaque: they never carry key bytes, plaintext or a hint of which check
//! failed.

use std::fmt;

/// Everything a session, an identity operation or a protocol factory can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input could not be parsed into the message it claimed to be.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// The input parsed, but the peer (or someone on the path) broke the protocol.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(#[from] PeerMisbehaved),
    /// A cryptographic check failed. Deliberately carries no detail.
    #[error("decryption or authentication failed")]
    DecryptFailed,
    /// A long-term identity was missing, malformed or did not match.
    #[error("identity error: {0}")]
    Identity(#[from] IdentityError),
    /// The caller used the API in a way the session's state does not allow.
    #[error("API misuse: {0}")]
    Api(#[from] ApiMisuse),
    /// A negotiation option or profile setting is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The crypto backend (OpenSSL, Sequoia, libotr) reported an error.
    #[error("backend error: {0}")]
    Backend(String),
}

/// Malformed input: the stanza or one of its fields is not what the protocol defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes were not a well-formed XML stanza.
    #[error("not a well-formed stanza: {0}")]
    Xml(String),
    /// The stanza is not one this protocol handles (wrong element or namespace).
    #[error("unexpected stanza: {0}")]
    UnexpectedStanza(String),
    /// A required element or field is missing.
    #[error("missing {0}")]
    Missing(String),
    /// A field is present but its value is malformed (bad base64, bad number, ...).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// Why, without echoing secret content.
        reason: String,
    },
    /// The protected payload is shorter than its framing requires.
    #[error("truncated {0}")]
    Truncated(String),
    /// The stanza is longer than the parser accepts ([`crate::stanza::Limits`]).
    #[error("stanza of {bytes} bytes over the {limit}-byte limit")]
    TooLarge {
        /// Its length.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The stanza nests elements deeper than the parser accepts.
    #[error("elements nested deeper than the limit of {limit}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The input parsed but breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A handshake message arrived that the current state does not expect.
    #[error("unexpected message {got} while expecting {expected}")]
    UnexpectedMessage {
        /// What arrived.
        got: String,
        /// What the state machine waits for.
        expected: String,
    },
    /// A message that was already accepted arrived again.
    #[error("replayed message")]
    Replay,
    /// A message arrived out of its sequence.
    #[error("message out of order")]
    OutOfOrder,
    /// A negotiation value is outside what was offered or allowed.
    #[error("illegal parameter: {0}")]
    IllegalParameter(String),
    /// A commitment (hash of a value sent earlier) did not match.
    #[error("commitment mismatch")]
    CommitmentMismatch,
    /// A signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// A timestamp is outside the allowed window or not increasing.
    #[error("bad timestamp: {0}")]
    BadTimestamp(String),
    /// The stanza was addressed to someone else or claims another sender.
    #[error("wrong address: {0}")]
    WrongAddress(String),
    /// The peer ended the session and sent more.
    #[error("session terminated")]
    Terminated,
}

/// A long-term identity problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The identity belongs to another protocol.
    #[error("identity is for protocol {found}, not {expected}")]
    WrongProtocol {
        /// Protocol the session needs.
        expected: String,
        /// Protocol the identity was made for.
        found: String,
    },
    /// Key material could not be parsed.
    #[error("malformed key material: {0}")]
    Malformed(String),
    /// The protocol needs the peer's public identity and none was given.
    #[error("peer public identity required")]
    PeerKeyRequired,
    /// The key presented does not belong to the JID it claims.
    #[error("key does not match JID {0}")]
    JidMismatch(String),
    /// No key is known for this key id or JID.
    #[error("unknown key {0}")]
    UnknownKey(String),
}

/// A call that the session's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// The session is closed; it accepts nothing more.
    #[error("session is closed")]
    Closed,
    /// Only the initiator starts a handshake.
    #[error("only the initiator can start")]
    NotInitiator,
    /// `start` was called twice.
    #[error("already started")]
    AlreadyStarted,
    /// The stanza is not one this protocol can protect (e.g. an iq where only messages are).
    #[error("cannot protect this stanza: {0}")]
    CannotProtect(String),
    /// A session option was unknown or malformed.
    #[error("bad option {key}: {reason}")]
    BadOption {
        /// Option name.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Short alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the error is, in one stable word, for reports and experiment evidence.
impl Error {
    /// A stable machine-readable kind: `decode`, `peer_misbehaved`, `decrypt_failed`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Decode(_) => "decode",
            Error::PeerMisbehaved(_) => "peer_misbehaved",
            Error::DecryptFailed => "decrypt_failed",
            Error::Identity(_) => "identity",
            Error::Api(_) => "api_misuse",
            Error::Unsupported(_) => "unsupported",
            Error::Backend(_) => "backend",
        }
    }
}

/// Wrap any displayable backend error.
pub fn backend<E: fmt::Display>(e: E) -> Error {
    Error::Backend(e.to_string())
}
