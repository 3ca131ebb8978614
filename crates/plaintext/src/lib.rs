//! # `plaintext`: the control row
//!
//! A session that protects nothing: stanzas pass unchanged in both directions,
//! there is no handshake and no key. Every overhead in the comparison is
//! measured against this row, and the security experiments use it to check
//! that they can tell a property that fails from one that holds.
//!
//! ## Threat model
//! None. Everything on the wire is readable and modifiable by the server and
//! anyone on the path. The claims below say so, property by property.
//!
//! ## DECISIONS
//! - The session is `Established` from creation; `start` does nothing.
//! - Inbound input that is not a `jabber:client` message, presence or iq is a
//!   typed decode error; it is the only input this protocol can reject.
//! - Deliveries are [`Event::Delivered`] labelled with nothing covered
//!   ([`e2elab_core::Protection::none`]) and no warning: a client with no
//!   end-to-end layer cannot tell a protected stanza from an injected one.
//!   That is the behaviour the downgrade experiment must catch, so the row
//!   stays its known-bad control (the real profiles deliver an unprotected
//!   stanza as `DeliveredUnprotected` with `Warning::UnprotectedStanza`).
//! - `close` is local: nothing goes on the wire (there is no session to end on
//!   the peer's side); later calls fail with `ApiMisuse::Closed`.
#![forbid(unsafe_code)]

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::Role;
use e2elab_core::{
    ApiMisuse, DecodeError, Element, Env, Event, Identity, Outbox, PeerIdentity, Protection,
    Protocol, PublicIdentity, Result, SecretBytes, Session, SessionConfig, SessionState,
    StanzaKind,
};
use std::sync::OnceLock;

pub mod controls;

/// The protocol id.
pub const ID: &str = "plaintext";

/// The `plaintext` profile.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plaintext;

fn info() -> &'static ProtocolInfo {
    static INFO: OnceLock<ProtocolInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let none = |property, note| Claim {
            property,
            level: ClaimLevel::NotClaimed,
            source: "none (control row)",
            note,
            under: "",
        };
        let na = |property, note| Claim {
            property,
            level: ClaimLevel::NotApplicable,
            source: "none (control row)",
            note,
            under: "",
        };
        ProtocolInfo {
            id: ID,
            family: "control",
            spec: "RFC 6120/6121 stanzas, unprotected",
            summary: "No protection: the baseline every overhead is measured against",
            protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
            after_bad_input: AfterBadInput::Unchanged,
            // The unprotected row is the known-bad control for every property
            // that needs any protection at all.
            control_for: &[
                (Property::ConfidentialityCoverage, ""),
                (Property::Integrity, ""),
                (Property::Replay, ""),
                (Property::ForwardSecrecy, ""),
                (Property::PostCompromiseSecurity, ""),
                (Property::MitmDetection, ""),
                (Property::DowngradeResistance, ""),
                (Property::IdentityMisbinding, "key-registration"),
            ],
            claims: vec![
                none(
                    Property::ConfidentialityCoverage,
                    "every part of the stanza is in clear",
                ),
                none(Property::Integrity, "no MAC or signature"),
                none(Property::Replay, "no sequence numbers or timestamps"),
                Claim {
                    property: Property::LossReorderTolerance,
                    level: ClaimLevel::Claimed,
                    source: "none (control row)",
                    note: "stateless: a lost or reordered stanza affects nothing else",
                    under: "",
                },
                none(Property::ForwardSecrecy, "nothing is encrypted"),
                none(Property::PostCompromiseSecurity, "nothing is encrypted"),
                Claim {
                    property: Property::MessageRepudiation,
                    level: ClaimLevel::Claimed,
                    source: "none (control row)",
                    note: "no signatures, so no transferable proof",
                    under: "",
                },
                Claim::new(
                    Property::ParticipationRepudiation,
                    ClaimLevel::Claimed,
                    "none (control row)",
                    "nothing is signed",
                ),
                Claim {
                    property: Property::Forgeability,
                    level: ClaimLevel::Claimed,
                    source: "none (control row)",
                    note: "anyone can write any transcript",
                    under: "",
                },
                na(Property::IdentityProtection, "no long-term keys exist"),
                none(Property::MitmDetection, "no authentication"),
                na(Property::DowngradeResistance, "nothing is negotiated"),
                na(Property::IdentityMisbinding, "no key exchange"),
            ],
        }
    })
}

impl Protocol for Plaintext {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        Ok(Identity::new(
            PublicIdentity {
                protocol: ID.to_string(),
                jid: jid.to_string(),
                data: Vec::new(),
                fingerprint: None,
            },
            SecretBytes::default(),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        config.identity.require_protocol(ID)?;
        config.options.check_known(&[])?;
        Ok(Box::new(PlaintextSession {
            role: config.role,
            peer_jid: config.peer_jid.to_string(),
            announced: false,
            closed: false,
        }))
    }
}

/// A `plaintext` session.
#[derive(Debug)]
pub struct PlaintextSession {
    role: Role,
    peer_jid: String,
    announced: bool,
    closed: bool,
}

impl PlaintextSession {
    fn announce(&mut self, out: &mut Outbox) {
        if !self.announced {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_jid.clone(),
                fingerprint: None,
                sas: None,
                method: "none".into(),
            }));
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(ApiMisuse::Closed.into())
        } else {
            Ok(())
        }
    }
}

fn require_stanza(el: &Element) -> Result<()> {
    if StanzaKind::of(el).is_none() {
        return Err(
            DecodeError::UnexpectedStanza(format!("<{} xmlns='{}'>", el.name(), el.ns())).into(),
        );
    }
    Ok(())
}

impl Session for PlaintextSession {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn state(&self) -> SessionState {
        if self.closed {
            SessionState::Closed
        } else {
            SessionState::Established
        }
    }

    fn start(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.announce(out);
        Ok(())
    }

    fn send(&mut self, _env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if StanzaKind::of(&stanza).is_none() {
            return Err(ApiMisuse::CannotProtect(stanza.name().to_string()).into());
        }
        self.announce(out);
        out.send(stanza);
        Ok(())
    }

    fn handle_inbound(&mut self, _env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        require_stanza(&stanza)?;
        self.announce(out);
        // No protection layer: nothing covered, no warning (DECISIONS).
        let label = Protection::none(&stanza);
        out.deliver(stanza, label);
        Ok(())
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        Ok(e2elab_core::StateExport {
            protocol: ID.to_string(),
            role: self.role,
            data: SecretBytes::from_slice(br#"{"kind":"stateless","note":"no secret at all"}"#),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2elab_core::{stanza, Options};
    use std::sync::Arc;

    fn session(role: Role) -> Box<dyn Session> {
        let mut env = Env::for_party(1, role.name());
        let id = Plaintext.generate_identity(&mut env, "a@x").unwrap();
        Plaintext
            .new_session(
                &mut env,
                SessionConfig {
                    role,
                    local_jid: e2elab_core::Jid::new("a@x/r").unwrap(),
                    peer_jid: e2elab_core::Jid::new("b@y/r").unwrap(),
                    identity: Arc::new(id),
                    peer_public: None,
                    options: Options::new(),
                },
            )
            .unwrap()
    }

    #[test]
    fn passes_unchanged_and_closes() {
        let mut env = Env::for_party(1, "t");
        let mut s = session(Role::Initiator);
        let mut out = Outbox::new();
        let m = stanza::chat_message("a@x/r", "b@y/r", "1", "hi").unwrap();
        s.send(&mut env, m.clone(), &mut out).unwrap();
        assert_eq!(out.poll_transmit(), Some(m.clone()));
        s.close(&mut env, &mut out).unwrap();
        assert_eq!(s.state(), SessionState::Closed);
        assert!(matches!(
            s.send(&mut env, m, &mut out),
            Err(e2elab_core::Error::Api(ApiMisuse::Closed))
        ));
    }

    #[test]
    fn rejects_non_stanza_and_unknown_options() {
        let mut env = Env::for_party(1, "t");
        let mut s = session(Role::Responder);
        let mut out = Outbox::new();
        let err = s
            .handle_inbound(&mut env, Element::bare("foo", "bar"), &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), "decode");
        let id = Plaintext.generate_identity(&mut env, "a@x").unwrap();
        let r = Plaintext.new_session(
            &mut env,
            SessionConfig {
                role: Role::Initiator,
                local_jid: e2elab_core::Jid::new("a@x/r").unwrap(),
                peer_jid: e2elab_core::Jid::new("b@y/r").unwrap(),
                identity: Arc::new(id),
                peer_public: None,
                options: Options::new().set("nope", "1"),
            },
        );
        assert!(r.is_err());
    }
}
