//! Two known-bad controls built on the unprotected row, for the security
//! experiments (`e2elab security`): each adds exactly one mechanism whose
//! side effect the experiments must detect.
//!
//! - `control-signed-clear`: every stanza carries, in clear, an RSA-SHA256
//!   signature by the sender's long-term key over the serialized stanza (its
//!   `from` and `to` included). A third party holding only public keys can
//!   verify it: no message repudiation against an offline judge, provable
//!   participation, nothing forgeable.
//! - `control-strict-sequence`: every stanza carries a sequence number and
//!   the receiver takes only the next one: one lost or reordered stanza
//!   stops delivery for good (a loss/reorder control).
//!
//! ## DECISIONS
//! - The signature covers `stanza::serialize` of the application stanza as
//!   sent; the receiver removes the trailing `<sig/>` and serializes again,
//!   which gives the same bytes for every stanza minidom parses back equal.
//! - A missing or bad signature, or a sequence number other than the next
//!   one, is a typed error and changes nothing (the session keeps waiting).
//! - Identities for `control-signed-clear`: RSA-2048 made by OpenSSL (not
//!   reproducible from the `Env`); public data = SubjectPublicKeyInfo DER,
//!   fingerprint = hex SHA-256 of it. `control-strict-sequence` has no keys.

use e2elab_core::claims::{AfterBadInput, Property, ProtocolInfo};
use e2elab_core::error::backend;
use e2elab_core::ops::{count, HashAlg, Op};
use e2elab_core::{
    stanza, ApiMisuse, DecodeError, Element, Env, Error, Event, Identity, IdentityError, Outbox,
    PeerIdentity, PeerMisbehaved, Protection, Protocol, PublicIdentity, Result, Role, SecretBytes,
    Session, SessionConfig, SessionState, StanzaKind,
};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use std::sync::OnceLock;

/// Namespace of the signed-clear control's `<sig/>`.
pub const NS_SIG: &str = "urn:xmpp-e2e-lab:control:signed-clear";
/// Namespace of the strict-sequence control's `<seq/>`.
pub const NS_SEQ: &str = "urn:xmpp-e2e-lab:control:strict-sequence";

/// Which control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainControl {
    /// A clear per-stanza signature.
    SignedClear,
    /// A strict sequence number.
    StrictSequence,
}

impl PlainControl {
    /// The profile id.
    pub fn id(self) -> &'static str {
        match self {
            PlainControl::SignedClear => "control-signed-clear",
            PlainControl::StrictSequence => "control-strict-sequence",
        }
    }
}

fn info(c: PlainControl) -> &'static ProtocolInfo {
    static SIGNED: OnceLock<ProtocolInfo> = OnceLock::new();
    static SEQ: OnceLock<ProtocolInfo> = OnceLock::new();
    match c {
        PlainControl::SignedClear => SIGNED.get_or_init(|| ProtocolInfo {
            id: c.id(),
            family: "control",
            spec: "none: plaintext plus a clear RSA signature per stanza (harness control)",
            summary: "known-bad control: every stanza signed in clear by the sender's long-term key",
            protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[
                (Property::MessageRepudiation, ""),
                (Property::ParticipationRepudiation, ""),
                (Property::Forgeability, ""),
                // A signature anyone can check names its signer to anyone
                // the stanza reaches.
                (Property::IdentityProtection, "active"),
                // Eve can read a clear signed stanza and sign it as hers.
                (Property::IdentityMisbinding, "identity-substitution"),
            ],
            claims: Vec::new(),
        }),
        PlainControl::StrictSequence => SEQ.get_or_init(|| ProtocolInfo {
            id: c.id(),
            family: "control",
            spec: "none: plaintext plus a strict sequence number (harness control)",
            summary: "known-bad control: only the next sequence number is taken, so one loss stops delivery",
            protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[(Property::LossReorderTolerance, "")],
            claims: Vec::new(),
        }),
    }
}

/// A plaintext-based control profile.
#[derive(Debug, Clone, Copy)]
pub struct PlainControlProfile(pub PlainControl);

fn sha256_hex(b: &[u8]) -> String {
    openssl::sha::sha256(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl Protocol for PlainControlProfile {
    fn info(&self) -> &ProtocolInfo {
        info(self.0)
    }

    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        if self.0 == PlainControl::StrictSequence {
            return Ok(Identity::new(
                PublicIdentity {
                    protocol: self.0.id().into(),
                    jid: jid.into(),
                    data: Vec::new(),
                    fingerprint: None,
                },
                SecretBytes::default(),
            ));
        }
        let rsa = openssl::rsa::Rsa::generate(2048).map_err(backend)?;
        let key = PKey::from_rsa(rsa).map_err(backend)?;
        let spki = key.public_key_to_der().map_err(backend)?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: self.0.id().into(),
                jid: jid.into(),
                fingerprint: Some(sha256_hex(&spki)),
                data: spki,
            },
            SecretBytes::new(key.private_key_to_pkcs8().map_err(backend)?),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        config.identity.require_protocol(self.0.id())?;
        config.options.check_known(&[])?;
        let (key, peer_key, fp) = if self.0 == PlainControl::SignedClear {
            let key = PKey::private_key_from_pkcs8(config.identity.secret().expose())
                .map_err(|e| IdentityError::Malformed(e.to_string()))?;
            let peer = config
                .peer_public
                .as_ref()
                .ok_or(IdentityError::PeerKeyRequired)?;
            if !stanza::same_jid(
                &peer.jid,
                config.peer_jid.as_str(),
                stanza::SenderMatch::Bare,
            ) {
                return Err(IdentityError::JidMismatch(peer.jid.clone()).into());
            }
            let pk = PKey::public_key_from_der(&peer.data)
                .map_err(|e| IdentityError::Malformed(e.to_string()))?;
            (Some(key), Some(pk), peer.fingerprint.clone())
        } else {
            (None, None, None)
        };
        Ok(Box::new(ControlSession {
            control: self.0,
            role: config.role,
            peer_jid: config.peer_jid.to_string(),
            key,
            peer_key,
            peer_fingerprint: fp,
            next_tx: 0,
            next_rx: 0,
            announced: false,
            closed: false,
        }))
    }
}

/// A control session.
pub struct ControlSession {
    control: PlainControl,
    role: Role,
    peer_jid: String,
    key: Option<PKey<Private>>,
    peer_key: Option<PKey<Public>>,
    peer_fingerprint: Option<String>,
    next_tx: u64,
    next_rx: u64,
    announced: bool,
    closed: bool,
}

impl std::fmt::Debug for ControlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSession")
            .field("control", &self.control)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ControlSession {
    fn announce(&mut self, out: &mut Outbox) {
        if !self.announced {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_jid.clone(),
                fingerprint: self.peer_fingerprint.clone(),
                sas: None,
                method: match self.control {
                    PlainControl::SignedClear => "rsa-sha256 signature per stanza".into(),
                    PlainControl::StrictSequence => "none".into(),
                },
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

/// Verify a signed-clear stanza with `key`: the stanza without its trailing `<sig/>`.
pub fn verify_signed_clear(el: &Element, key: &PKey<Public>) -> Result<Element> {
    let mut rest = el.clone();
    let nodes = rest.take_nodes();
    let mut sig = None;
    let mut kept = Vec::new();
    for n in nodes {
        match n {
            e2elab_core::minidom::Node::Element(c) if c.is("sig", NS_SIG) => sig = Some(c.text()),
            other => kept.push(other),
        }
    }
    for n in kept {
        rest.append_node(n);
    }
    let sig = sig.ok_or_else(|| DecodeError::Missing("<sig/>".into()))?;
    let sig = e2elab_core::b64::decode(sig.trim())
        .map_err(|_| DecodeError::invalid("sig", "not base64"))?;
    let mut v = Verifier::new(MessageDigest::sha256(), key).map_err(backend)?;
    let signed = stanza::serialize(&rest);
    v.update(signed.as_bytes()).map_err(backend)?;
    let ok = v.verify(&sig).unwrap_or(false);
    count(
        Op::RsaVerify {
            bits: key.bits() as u16,
            hash: HashAlg::Sha256,
        },
        signed.len(),
    );
    if !ok {
        return Err(PeerMisbehaved::BadSignature.into());
    }
    Ok(rest)
}

impl Session for ControlSession {
    fn info(&self) -> &ProtocolInfo {
        info(self.control)
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

    fn send(&mut self, _env: &mut Env, el: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if StanzaKind::of(&el).is_none() {
            return Err(ApiMisuse::CannotProtect(el.name().to_string()).into());
        }
        let mut wire = el.clone();
        match self.control {
            PlainControl::SignedClear => {
                let key = self
                    .key
                    .as_ref()
                    .ok_or_else(|| Error::Backend("no key".into()))?;
                let mut s = Signer::new(MessageDigest::sha256(), key).map_err(backend)?;
                let signed = stanza::serialize(&el);
                s.update(signed.as_bytes()).map_err(backend)?;
                let sig = s.sign_to_vec().map_err(backend)?;
                count(
                    Op::RsaSign {
                        bits: key.bits() as u16,
                        hash: HashAlg::Sha256,
                        crt: true,
                    },
                    signed.len(),
                );
                wire.append_child(stanza::text_element(
                    "sig",
                    NS_SIG,
                    &e2elab_core::b64::encode(sig),
                ));
            }
            PlainControl::StrictSequence => {
                let mut seq = Element::bare("seq", NS_SEQ);
                stanza::set_attr(&mut seq, "n", &self.next_tx.to_string())?;
                wire.append_child(seq);
                self.next_tx += 1;
            }
        }
        self.announce(out);
        out.send(wire);
        Ok(())
    }

    fn handle_inbound(&mut self, _env: &mut Env, el: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if StanzaKind::of(&el).is_none() {
            return Err(DecodeError::UnexpectedStanza(format!("<{}>", el.name())).into());
        }
        let delivered = match self.control {
            PlainControl::SignedClear => {
                let key = self
                    .peer_key
                    .as_ref()
                    .ok_or_else(|| Error::Backend("no peer key".into()))?;
                verify_signed_clear(&el, key)?
            }
            PlainControl::StrictSequence => {
                let n: u64 = el
                    .get_child("seq", NS_SEQ)
                    .and_then(|s| s.attr("n"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| DecodeError::Missing("<seq/>".into()))?;
                if n != self.next_rx {
                    return Err(PeerMisbehaved::OutOfOrder.into());
                }
                self.next_rx += 1;
                let mut rest = el.clone();
                rest.remove_child("seq", NS_SEQ);
                rest
            }
        };
        self.announce(out);
        // The signed-clear control vouches for every child (signed, in
        // clear); the strict-sequence control, like the plaintext row, has
        // no protection layer: it labels nothing covered and never warns,
        // which is what the downgrade experiment must catch.
        let label = match self.control {
            PlainControl::SignedClear => Protection::all(
                &delivered,
                false,
                true,
                format!(
                    "rsa:{}",
                    self.peer_fingerprint.as_deref().unwrap_or("unknown")
                ),
            ),
            PlainControl::StrictSequence => Protection::none(&delivered),
        };
        out.deliver(delivered, label);
        Ok(())
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        self.key = None;
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        Ok(e2elab_core::StateExport {
            protocol: self.control.id().to_string(),
            role: self.role,
            data: SecretBytes::from_slice(
                format!(
                    r#"{{"kind":"stateless","next_tx":{},"next_rx":{}}}"#,
                    self.next_tx, self.next_rx
                )
                .as_bytes(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use e2elab_core::Options;
    use std::sync::Arc;

    fn pair(c: PlainControl) -> [Box<dyn Session>; 2] {
        let p = PlainControlProfile(c);
        let mut env = Env::for_party(1, "t");
        let a = Arc::new(p.generate_identity(&mut env, "a@x").unwrap());
        let b = Arc::new(p.generate_identity(&mut env, "b@y").unwrap());
        let mk = |me: &Arc<Identity>, peer: &Arc<Identity>, role, l: &str, r: &str| {
            p.new_session(
                &mut Env::for_party(2, l),
                SessionConfig {
                    role,
                    local_jid: e2elab_core::Jid::new(l).unwrap(),
                    peer_jid: e2elab_core::Jid::new(r).unwrap(),
                    identity: me.clone(),
                    peer_public: Some(peer.public.clone()),
                    options: Options::new(),
                },
            )
            .unwrap()
        };
        [
            mk(&a, &b, Role::Initiator, "a@x/r", "b@y/r"),
            mk(&b, &a, Role::Responder, "b@y/r", "a@x/r"),
        ]
    }

    fn send(s: &mut dyn Session, body: &str) -> Element {
        let mut out = Outbox::new();
        let m = stanza::chat_message("a@x/r", "b@y/r", body, body).unwrap();
        s.send(&mut Env::for_party(3, "s"), m, &mut out).unwrap();
        out.poll_transmit().unwrap()
    }

    fn recv(s: &mut dyn Session, el: Element) -> Result<Vec<Element>> {
        let mut out = Outbox::new();
        s.handle_inbound(&mut Env::for_party(3, "r"), el, &mut out)?;
        let mut got = Vec::new();
        while let Some(e) = out.poll_event() {
            if let Event::Delivered { stanza: d, .. } = e {
                got.push(d);
            }
        }
        Ok(got)
    }

    #[test]
    fn signed_clear_round_trip_and_tamper() {
        let [mut a, mut b] = pair(PlainControl::SignedClear);
        let w = send(a.as_mut(), "hello");
        assert!(w.get_child("sig", NS_SIG).is_some());
        let got = recv(b.as_mut(), w.clone()).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].get_child("sig", NS_SIG).is_none());
        let mut bad = w.clone();
        stanza::set_attr(&mut bad, "from", "eve@z/r").unwrap();
        assert!(matches!(
            recv(b.as_mut(), bad),
            Err(Error::PeerMisbehaved(PeerMisbehaved::BadSignature))
        ));
        let mut nosig = w;
        nosig.remove_child("sig", NS_SIG);
        assert!(recv(b.as_mut(), nosig).is_err());
    }

    #[test]
    fn strict_sequence_stops_after_a_loss() {
        let [mut a, mut b] = pair(PlainControl::StrictSequence);
        let w0 = send(a.as_mut(), "0");
        let w1 = send(a.as_mut(), "1");
        assert!(matches!(
            recv(b.as_mut(), w1.clone()),
            Err(Error::PeerMisbehaved(PeerMisbehaved::OutOfOrder))
        ));
        assert_eq!(recv(b.as_mut(), w0).unwrap().len(), 1);
        assert_eq!(recv(b.as_mut(), w1).unwrap().len(), 1);
    }
}
