//! The one driving shape every protocol implements.

use crate::claims::ProtocolInfo;
use crate::env::{Env, Timestamp};
use crate::error::{ApiMisuse, Error, Result};
use crate::identity::{Identity, PublicIdentity};
use crate::outbox::Outbox;
use crate::secret::SecretBytes;
use minidom::Element;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which side of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Starts the handshake (Alice).
    Initiator,
    /// Answers it (Bob).
    Responder,
}

impl Role {
    /// The other side.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }

    /// `initiator` / `responder`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        }
    }
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Created; no handshake message sent or received yet.
    Idle,
    /// A handshake is under way.
    Handshaking,
    /// Protected stanzas flow.
    Established,
    /// Ended (by either side, or terminated after bad input where the spec demands it).
    Closed,
}

/// Profile-specific settings, as `key=value` strings so the generic harness and
/// CLI can pass them; each protocol documents and checks its own keys.
///
/// `Debug` and `Serialize` redact the values of secret keys (see
/// [`Options::is_secret_key`]): an other shared secret or a password never
/// reaches a log or a results file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options(BTreeMap<String, String>);

impl Options {
    /// Whether a key names a secret: `oss` (ESessions' other shared secret)
    /// or any key containing `secret`, `password` or `passphrase`.
    pub fn is_secret_key(key: &str) -> bool {
        key == "oss"
            || ["secret", "password", "passphrase"]
                .iter()
                .any(|w| key.contains(w))
    }

    fn redacted(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = if Self::is_secret_key(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect()
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Options").field(&self.redacted()).finish()
    }
}

impl Serialize for Options {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.0.insert(key.to_string(), value.to_string());
        self
    }

    /// Parse `key=value` items.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut o = Options::new();
        for it in items {
            let (k, v) = it.split_once('=').ok_or_else(|| ApiMisuse::BadOption {
                key: it.to_string(),
                reason: "expected key=value".into(),
            })?;
            o.0.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(o)
    }

    /// The raw value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean (`true`/`false`/`1`/`0`/`yes`/`no`), or `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(bad(key, &format!("not a boolean: {v}"))),
        }
    }

    /// An unsigned number, or `default`.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| bad(key, &format!("not a number: {v}"))),
        }
    }

    /// Fail on any key not in `known`.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        for k in self.0.keys() {
            if !known.contains(&k.as_str()) {
                return Err(bad(
                    k,
                    &format!("unknown option; known: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Iterate.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn bad(key: &str, reason: &str) -> crate::Error {
    ApiMisuse::BadOption {
        key: key.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

/// A session's whole secret state at one instant, exported for the
/// compromise experiments (forward secrecy, post-compromise security, the
/// repudiation judges). The bytes are protocol-defined (each protocol crate
/// documents its format and offers the code that reads it); they never
/// appear in `Debug` output and are wiped on drop.
#[derive(Clone)]
pub struct StateExport {
    /// The profile that exported it.
    pub protocol: String,
    /// The side it came from.
    pub role: Role,
    /// Protocol-defined serialization of the keys and counters.
    pub data: SecretBytes,
}

impl std::fmt::Debug for StateExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateExport")
            .field("protocol", &self.protocol)
            .field("role", &self.role)
            .field("data", &self.data)
            .finish()
    }
}

/// Everything needed to create one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Initiator or responder.
    pub role: Role,
    /// Our JID (full: `user@domain/resource`).
    pub local_jid: crate::Jid,
    /// The peer's JID (full where the protocol binds a resource).
    pub peer_jid: crate::Jid,
    /// Our long-term identity.
    pub identity: Arc<Identity>,
    /// The peer's public identity, where the protocol needs it in advance
    /// (OpenPGP, S/MIME) or where it is pinned (ESessions' key memory).
    pub peer_public: Option<PublicIdentity>,
    /// Profile settings.
    pub options: Options,
}

/// One end of an end-to-end session. Sans-IO: every input is pushed in, every
/// effect is drained from the [`Outbox`]; time and randomness come only from
/// the [`Env`].
///
/// Contract for implementers:
/// - `send` takes an *application* stanza (message; presence and iq where the
///   protocol protects them) and queues protected stanza(s). Before the session
///   is established it may start the handshake (initiator) and hold the stanza
///   until it can protect it; it never sends it unprotected unless the profile
///   offers no protection at all.
/// - `handle_inbound` takes a stanza from the peer. A protected stanza that
///   checks out yields [`crate::Event::Delivered`] with the original
///   application stanza. Bad input returns an `Err` and leaves the session as
///   [`ProtocolInfo::after_bad_input`] says: unchanged (nothing queued, state as
///   before) or closed. It never panics and never delivers modified content
///   the protocol claims to protect.
pub trait Session: Send {
    /// The profile's static description.
    fn info(&self) -> &ProtocolInfo;

    /// Which side this is.
    fn role(&self) -> Role;

    /// Where the session is.
    fn state(&self) -> SessionState;

    /// Begin the handshake (initiator). Handshake-less protocols do nothing.
    fn start(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()>;

    /// Protect and queue an application stanza.
    fn send(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()>;

    /// Process a stanza that arrived from the peer.
    fn handle_inbound(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()>;

    /// When the session next wants [`Session::handle_timeout`] (e.g. a rekey grace period).
    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    /// The virtual clock reached [`Session::poll_timeout`].
    fn handle_timeout(&mut self, _env: &mut Env, _out: &mut Outbox) -> Result<()> {
        Ok(())
    }

    /// End the session (sending whatever the protocol sends to terminate) and destroy keys.
    fn close(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()>;

    /// RESEARCH HOOK: the session's whole secret state now (keys, counters,
    /// DH private values it still holds), as an attacker who compromised this
    /// side would find it. Never sent anywhere by the session itself; the
    /// security experiments (`e2elab security`) use it in every build to
    /// measure forward secrecy, post-compromise security and repudiation.
    /// Protocols without session state beyond the long-term identity return
    /// an export saying so; a protocol that cannot export returns
    /// [`Error::Unsupported`], which makes those experiments fail loudly.
    fn dangerous_export_state(&self) -> Result<StateExport> {
        Err(Error::Unsupported(format!(
            "{}: no session state export",
            self.info().id
        )))
    }
}

/// A protocol profile: its description, identity provisioning and a session factory.
pub trait Protocol: Send + Sync {
    /// The profile's static description.
    fn info(&self) -> &ProtocolInfo;

    /// Option keys this profile accepts, each with a one-line description.
    fn options(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Make a new long-term identity for a bare JID.
    fn generate_identity(&self, env: &mut Env, jid: &str) -> Result<Identity>;

    /// Create a session.
    fn new_session(&self, env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>>;

    /// The Rust path of the implementing type (`crate::Type`), taken from
    /// the compiler: which crate implements the profile (the harness
    /// counts that crate's code for XEP-0210's Implementability).
    fn implementation(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_options_are_redacted_in_debug_and_serialization() {
        let o = Options::new()
            .set("oss", "hunter2")
            .set("server_password", "pw")
            .set("modp", "14");
        let dbg = format!("{o:?}");
        let json = serde_json::to_string(&o).unwrap();
        for shown in [&dbg, &json] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("pw\""),
                "{shown}"
            );
            assert!(
                shown.contains("[redacted]") && shown.contains("14"),
                "{shown}"
            );
        }
        assert_eq!(o.get("oss"), Some("hunter2"), "the value itself is kept");
    }
}
