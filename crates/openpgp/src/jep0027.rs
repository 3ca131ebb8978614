//! The `jep0027` profile: JEP/XEP-0027 "Current Jabber OpenPGP Usage", as written.

use crate::armor::{self, ArmorKind};
use crate::common::{self, Basics, Keys};
use crate::pgp::{self, KeyAlgo, SigRule};
use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    stanza, DecodeError, Element, Env, Identity, Options, Outbox, Protection, Protocol, Result,
    Role, Session, SessionConfig, SessionState, StanzaKind,
};
use sequoia_openpgp::types::SignatureType;
use std::sync::OnceLock;

/// The protocol id.
pub const ID: &str = "jep0027";
/// `jabber:x:encrypted` (XEP-0027 §3).
pub const NS_ENCRYPTED: &str = "jabber:x:encrypted";
/// `jabber:x:signed` (XEP-0027 §2).
pub const NS_SIGNED: &str = "jabber:x:signed";
/// The placeholder body of XEP-0027's example (§3).
pub const PLACEHOLDER: &str = "This message is encrypted.";

const OPTIONS: &[(&str, &str)] = &[
    (
        "placeholder",
        "the clear <body> sent beside <x xmlns='jabber:x:encrypted'> (default: the spec example's)",
    ),
    (
        "encrypt_to_self",
        "also encrypt each body to our own key (default false; the spec encrypts to the recipient)",
    ),
    (
        "legacy-algorithms",
        "true: also read CAST5 and 3DES, which 2005-era gpg produced (CAST5 was its default) and Sequoia's standard policy refuses today; 64-bit-block ciphers, so a risk for long messages (default false)",
    ),
];

/// The `jep0027` profile. The key type of generated identities is a property
/// of the profile value (core's `generate_identity` takes no options).
#[derive(Debug, Clone, Copy)]
pub struct Jep0027 {
    key: KeyAlgo,
}

impl Default for Jep0027 {
    /// RSA-2048, the era's choice.
    fn default() -> Self {
        Self {
            key: KeyAlgo::Rsa(2048),
        }
    }
}

impl Jep0027 {
    /// The profile generating keys of type `key`.
    pub fn with_key(key: KeyAlgo) -> Self {
        Self { key }
    }

    /// The profile configured by `key=rsa1024|rsa2048|rsa3072|rsa4096|cv25519`.
    pub fn from_options(o: &Options) -> Result<Self> {
        Ok(Self {
            key: crate::key_option(o, KeyAlgo::Rsa(2048))?,
        })
    }

    /// The key type this profile generates.
    pub fn key(&self) -> KeyAlgo {
        self.key
    }
}

pub(crate) fn info() -> &'static ProtocolInfo {
    static INFO: OnceLock<ProtocolInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let c = Claim::new;
        use ClaimLevel::*;
        use Property::*;
        ProtocolInfo {
            id: ID,
            family: "openpgp",
            spec: "XEP-0027 v1.4 (text as JEP-0027 v1.2, 2004), RFC 4880",
            summary: "Message <body> encrypted, presence <status> signed, each on its own; ASCII armor without headers",
            protects: &[StanzaKind::Message, StanzaKind::Presence],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[],
            claims: vec![
                c(ConfidentialityCoverage, Partial, "XEP-0027 §3, §4",
                  "only the character data of <body>; subject, thread, extensions, attributes and a placeholder body are in clear"),
                c(Integrity, Partial, "XEP-0027 §2, §4",
                  "only the signed <status> text of presence; the encrypted body has no integrity rule of its own, everything else none"),
                c(Replay, NotClaimed, "XEP-0027 §4",
                  "replay of messages and of signed presence is listed as possible"),
                c(LossReorderTolerance, Claimed, "XEP-0027 §2, §3",
                  "every stanza stands alone: no session state"),
                c(ForwardSecrecy, NotClaimed, "XEP-0027 §3",
                  "the recipient's long-term key decrypts every recorded body"),
                c(PostCompromiseSecurity, NotClaimed, "XEP-0027 §3",
                  "no key update: a stolen key stays useful"),
                c(MessageRepudiation, Partial, "XEP-0027 §2, §4",
                  "encrypted bodies are unsigned (deniable), but signed presence is a transferable OpenPGP signature"),
                c(ParticipationRepudiation, NotClaimed, "XEP-0027 §2",
                  "a signed presence is a transferable OpenPGP signature of the sender"),
                c(Forgeability, Partial, "XEP-0027 §3, §4",
                  "anyone holding the recipient's public key can write an encrypted body 'from' anyone; signed status cannot be forged"),
                c(IdentityProtection, NotClaimed, "XEP-0027 §1",
                  "key ids of the recipient key are in every message, signer key ids in every signed presence").under("passive"),
                c(MitmDetection, NotClaimed, "XEP-0027 §4",
                  "no fingerprint or ownership check beyond user IDs on keyserver keys").under("none/first-contact"),
                c(DowngradeResistance, NotClaimed, "XEP-0027 §5",
                  "no negotiation: signed presence is the only capability signal and can be stripped"),
                c(IdentityMisbinding, NotClaimed, "XEP-0027 §4",
                  "the recipient is not mentioned in the encrypted body"),
            ],
        }
    })
}

impl Protocol for Jep0027 {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        OPTIONS
    }

    fn generate_identity(&self, env: &mut Env, jid: &str) -> Result<Identity> {
        common::generate_identity(ID, self.key, env, jid)
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        let names: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
        config.options.check_known(&names)?;
        let placeholder = config
            .options
            .get("placeholder")
            .unwrap_or(PLACEHOLDER)
            .to_string();
        let encrypt_to_self = config.options.get_bool("encrypt_to_self", false)?;
        let legacy = config.options.get_bool("legacy-algorithms", false)?;
        let Keys {
            own,
            peer,
            peer_fingerprint,
        } = common::session_keys(ID, &config)?;
        Ok(Box::new(Jep0027Session {
            role: config.role,
            basics: Basics {
                peer_jid: config.peer_jid,
                peer_fingerprint,
                announced: false,
                closed: false,
                method: "openpgp key obtained out of band (keyserver)",
            },
            own,
            peer,
            placeholder,
            encrypt_to_self,
            legacy,
        }))
    }
}

/// A `jep0027` session: no state but the keys.
pub struct Jep0027Session {
    role: Role,
    basics: Basics,
    own: sequoia_openpgp::Cert,
    peer: sequoia_openpgp::Cert,
    placeholder: String,
    encrypt_to_self: bool,
    /// Accept CAST5 and 3DES on receipt (`legacy-algorithms`).
    legacy: bool,
}

impl std::fmt::Debug for Jep0027Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jep0027Session")
            .field("role", &self.role)
            .field("basics", &self.basics)
            .finish_non_exhaustive()
    }
}

/// Replace all content of `el` by `text` (no text node when empty).
fn set_text(el: &mut Element, text: &str) {
    let _ = el.take_nodes();
    if !text.is_empty() {
        el.append_text(text);
    }
}

fn count(el: &Element, name: &str, ns: &str) -> usize {
    el.children().filter(|c| c.is(name, ns)).count()
}

/// The `<status>` text a presence signs: the first `<status>`'s character
/// data, or the empty string when there is none.
fn status_text(p: &Element) -> String {
    p.get_child("status", stanza::NS_CLIENT)
        .map(Element::text)
        .unwrap_or_default()
}

impl Jep0027Session {
    fn protect_message(&mut self, env: &mut Env, mut m: Element) -> Result<Element> {
        match count(&m, "body", stanza::NS_CLIENT) {
            0 => return Ok(m),
            1 => {}
            _ => {
                return Err(common::err_cannot(
                    "several <body> elements (only one is encrypted; the others would leak)",
                ))
            }
        }
        if m.has_child("x", NS_ENCRYPTED) {
            return Err(common::err_cannot(
                "already carries <x xmlns='jabber:x:encrypted'>",
            ));
        }
        let body = zeroize::Zeroizing::new(stanza::body(&m).unwrap_or_default());
        let mut recipients = vec![&self.peer];
        if self.encrypt_to_self {
            recipients.push(&self.own);
        }
        let ct = pgp::encrypt(body.as_bytes(), &recipients, None, env.now())?;
        if let Some(b) = m.get_child_mut("body", stanza::NS_CLIENT) {
            set_text(b, &self.placeholder);
        }
        m.append_child(stanza::text_element(
            "x",
            NS_ENCRYPTED,
            &armor::strip_body(&ct),
        ));
        Ok(m)
    }

    fn protect_presence(&mut self, env: &mut Env, mut p: Element) -> Result<Element> {
        if p.has_child("x", NS_SIGNED) {
            return Err(common::err_cannot(
                "already carries <x xmlns='jabber:x:signed'>",
            ));
        }
        let text = status_text(&p);
        let sig = pgp::sign_detached(&self.own, text.as_bytes(), SignatureType::Text, env.now())?;
        p.append_child(stanza::text_element(
            "x",
            NS_SIGNED,
            &armor::strip_body(&sig),
        ));
        Ok(p)
    }

    fn open_message(&mut self, env: &mut Env, m: &Element, out: &mut Outbox) -> Result<()> {
        let n = count(m, "x", NS_ENCRYPTED);
        if n == 0 {
            // Nothing encrypted: with a body it is an ordinary clear message,
            // without one there was nothing the spec would have encrypted.
            // Nothing encrypted: an ordinary clear message, or one without a
            // body (nothing the spec would have encrypted). Either way
            // nothing is protected: labelled so, with the warning.
            out.deliver_unprotected(true, m.clone());
            return Ok(());
        }
        if n > 1 {
            return Err(DecodeError::invalid("jabber:x:encrypted", "more than one <x>").into());
        }
        let x = m
            .get_child("x", NS_ENCRYPTED)
            .ok_or_else(|| DecodeError::Missing("jabber:x:encrypted".into()))?;
        if x.children().next().is_some() {
            return Err(DecodeError::invalid("jabber:x:encrypted", "child elements").into());
        }
        let data = armor::decode(ArmorKind::Message, &x.text())?;
        let plain = pgp::decrypt(
            &data,
            &self.own,
            &self.peer,
            SigRule::Ignore,
            env.now(),
            self.legacy,
        )?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| DecodeError::invalid("body", "decrypted body is not UTF-8"))?;
        let mut d = m.clone();
        let _ = d.remove_child("x", NS_ENCRYPTED);
        match d.get_child_mut("body", stanza::NS_CLIENT) {
            Some(b) => set_text(b, text),
            None => {
                d.append_child(stanza::text_element("body", stanza::NS_CLIENT, text));
            }
        }
        // JEP-0027 encrypts the body only, and signs nothing of a message.
        let label = Protection::split(
            &d,
            |c| c.is("body", stanza::NS_CLIENT),
            true,
            false,
            format!("openpgp:{}", pgp::fingerprint(&self.own)),
        );
        out.deliver(d, label);
        Ok(())
    }

    fn open_presence(&mut self, env: &mut Env, p: &Element, out: &mut Outbox) -> Result<()> {
        let n = count(p, "x", NS_SIGNED);
        if n == 0 {
            out.deliver_unprotected(true, p.clone());
            return Ok(());
        }
        if n > 1 {
            return Err(DecodeError::invalid("jabber:x:signed", "more than one <x>").into());
        }
        let x = p
            .get_child("x", NS_SIGNED)
            .ok_or_else(|| DecodeError::Missing("jabber:x:signed".into()))?;
        if x.children().next().is_some() {
            return Err(DecodeError::invalid("jabber:x:signed", "child elements").into());
        }
        let sig = armor::decode(ArmorKind::Signature, &x.text())?;
        let text = status_text(p);
        pgp::verify_detached(&sig, text.as_bytes(), &self.peer, env.now())?;
        let mut d = p.clone();
        let _ = d.remove_child("x", NS_SIGNED);
        // The signature covers the status text only (JEP-0027 §"Signing").
        let label = Protection::split(
            &d,
            |c| c.is("status", stanza::NS_CLIENT),
            false,
            true,
            format!("openpgp:{}", self.basics.peer_fingerprint),
        );
        out.deliver(d, label);
        Ok(())
    }
}

impl Session for Jep0027Session {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn state(&self) -> SessionState {
        if self.basics.closed {
            SessionState::Closed
        } else {
            SessionState::Established
        }
    }

    fn start(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.basics.check_open()?;
        self.basics.announce(out);
        Ok(())
    }

    fn send(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.basics.check_open()?;
        let wire = match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => self.protect_message(env, stanza)?,
            Some(StanzaKind::Presence) => self.protect_presence(env, stanza)?,
            Some(StanzaKind::Iq) => {
                return Err(common::err_cannot(
                    "iq (XEP-0027 protects message bodies and presence status only)",
                ))
            }
            None => return Err(common::err_cannot(stanza.name())),
        };
        self.basics.announce(out);
        out.send(wire);
        Ok(())
    }

    fn handle_inbound(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.basics.check_open()?;
        let cp = out.checkpoint();
        let announced = self.basics.announced;
        let r = match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => {
                self.basics.announce(out);
                self.open_message(env, &stanza, out)
            }
            Some(StanzaKind::Presence) => {
                self.basics.announce(out);
                self.open_presence(env, &stanza, out)
            }
            Some(StanzaKind::Iq) => {
                self.basics.announce(out);
                out.deliver_unprotected(true, stanza);
                Ok(())
            }
            None => Err(DecodeError::UnexpectedStanza(format!(
                "<{} xmlns='{}'>",
                stanza.name(),
                stanza.ns()
            ))
            .into()),
        };
        if r.is_err() {
            // Nothing emitted, state as before (the Established event too).
            out.restore(cp);
            self.basics.announced = announced;
        }
        r
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.basics.close(out)
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        Ok(e2elab_core::StateExport {
            protocol: ID.to_string(),
            role: self.role,
            data: e2elab_core::SecretBytes::from_slice(
                br#"{"kind":"stateless","note":"the session's only secret is the long-term key"}"#,
            ),
        })
    }
}
