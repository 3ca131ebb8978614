//! The `xep0373-ox` profile: XEP-0373 (OpenPGP for XMPP) with the XEP-0374
//! instant-messaging profile: `<signcrypt>` only.

use crate::common::{self, Basics, Keys};
use crate::pgp::{self, KeyAlgo, SigRule};
use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    stanza, DecodeError, Element, Env, Event, Identity, IdentityError, Options, Outbox,
    PeerMisbehaved, Protection, Protocol, Result, Role, Session, SessionConfig, SessionState,
    StanzaKind, Timestamp, Warning,
};
use std::sync::OnceLock;

/// The protocol id.
pub const ID: &str = "xep0373-ox";
/// `urn:xmpp:openpgp:0` (XEP-0373 §3.1).
pub const NS_OX: &str = "urn:xmpp:openpgp:0";
/// XEP-0334 hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0380 explicit message encryption.
pub const NS_EME: &str = "urn:xmpp:eme:0";
/// The hint body of XEP-0374 §3.2's example.
pub const PLACEHOLDER: &str = "This message is encrypted using OpenPGP.";
/// Default plausibility window for `<time>`, seconds.
pub const DEFAULT_TIME_WINDOW: u64 = 300;
/// `<rpad>` lengths are uniform in `1..=RPAD_MAX` characters.
pub const RPAD_MAX: usize = 256;

const OPTIONS: &[(&str, &str)] = &[
    (
        "hints",
        "send XEP-0374 §3.2 hints: placeholder <body>, <store/>, <encryption/> (default true)",
    ),
    (
        "time_window",
        "seconds a <time> may differ from our clock before a Suspicious warning (default 300)",
    ),
];

/// The `xep0373-ox` profile; like [`crate::Jep0027`], the key type is a
/// property of the profile value.
#[derive(Debug, Clone, Copy)]
pub struct Ox {
    key: KeyAlgo,
}

impl Default for Ox {
    /// Curve25519 (Ed25519 signing, X25519 encryption).
    fn default() -> Self {
        Self {
            key: KeyAlgo::Cv25519,
        }
    }
}

impl Ox {
    /// The profile generating keys of type `key`.
    pub fn with_key(key: KeyAlgo) -> Self {
        Self { key }
    }

    /// The profile configured by `key=rsa1024|rsa2048|rsa3072|rsa4096|cv25519`.
    pub fn from_options(o: &Options) -> Result<Self> {
        Ok(Self {
            key: crate::key_option(o, KeyAlgo::Cv25519)?,
        })
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
            spec: "XEP-0373 v0.7.0 + XEP-0374 v0.2.0, RFC 4880",
            summary: "Every stanza child signed and encrypted in <signcrypt> with recipient, time and random padding",
            protects: &[StanzaKind::Message],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[],
            claims: vec![
                c(ConfidentialityCoverage, Partial, "XEP-0373 §3.1; XEP-0374 §2.2",
                  "all child elements of the message (the <payload>); stanza attributes and the hint elements are in clear"),
                c(Integrity, Claimed, "XEP-0373 §3.1, §3.2",
                  "the <signcrypt> element is signed and verified; stanza attributes are not covered"),
                c(Replay, Partial, "XEP-0373 §3.2",
                  "a signed <time> that recipients are RECOMMENDED to check for plausibility; no replay cache"),
                c(LossReorderTolerance, Claimed, "XEP-0373 §3.1",
                  "every OpenPGP message stands alone"),
                c(ForwardSecrecy, NotClaimed, "XEP-0373 §9",
                  "long-term OpenPGP keys decrypt every recorded message"),
                c(PostCompromiseSecurity, NotClaimed, "XEP-0373 §9",
                  "no key update"),
                c(MessageRepudiation, NotClaimed, "XEP-0374 §3.1",
                  "<signcrypt> carries a transferable OpenPGP signature (to whoever can decrypt it)").under("online"),
                c(ParticipationRepudiation, NotClaimed, "XEP-0374 §3.1",
                  "every message carries a transferable OpenPGP signature"),
                c(Forgeability, NotClaimed, "XEP-0374 §3.1",
                  "only the key holder can sign"),
                c(IdentityProtection, NotClaimed, "XEP-0373 §4",
                  "public keys are published in PEP; recipient key ids are in every message").under("passive"),
                c(MitmDetection, Claimed, "XEP-0373 §9",
                  "implementations MUST let users establish trust in a key (e.g. fingerprint by QR code)").under("oob"),
                c(MitmDetection, NotClaimed, "XEP-0373 §4, §9",
                  "keys come from PEP: without the users' check a substituted key is used").under("none/first-contact"),
                c(MitmDetection, Claimed, "XEP-0373 §9",
                  "a key the users established trust in must sign").under("none/pinned"),
                c(DowngradeResistance, NotApplicable, "XEP-0374 §2.1",
                  "no algorithm negotiation; support is discovered by disco"),
                c(IdentityMisbinding, Claimed, "XEP-0373 §3.1",
                  "<to> inside the signed content prevents surreptitious forwarding"),
            ],
        }
    })
}

impl Protocol for Ox {
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
        let hints = config.options.get_bool("hints", true)?;
        let time_window = config.options.get_u64("time_window", DEFAULT_TIME_WINDOW)?;
        let Keys {
            own,
            peer,
            peer_fingerprint,
        } = common::session_keys(ID, &config)?;
        // XEP-0373 §3.2: the sender's key must have the User ID xmpp:<jid>.
        let peer_bare = config.peer_jid.to_bare().to_string();
        if !pgp::has_xmpp_uid(&peer, &peer_bare) {
            return Err(IdentityError::JidMismatch(peer_bare).into());
        }
        Ok(Box::new(OxSession {
            role: config.role,
            local_bare: config.local_jid.to_bare().to_string(),
            basics: Basics {
                peer_jid: config.peer_jid,
                peer_fingerprint,
                announced: false,
                closed: false,
                method: "openpgp signature (key from PEP, User ID xmpp:JID)",
            },
            own,
            peer,
            hints,
            time_window,
        }))
    }
}

/// An `xep0373-ox` session.
pub struct OxSession {
    role: Role,
    local_bare: String,
    basics: Basics,
    own: sequoia_openpgp::Cert,
    peer: sequoia_openpgp::Cert,
    hints: bool,
    time_window: u64,
}

impl std::fmt::Debug for OxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OxSession")
            .field("role", &self.role)
            .field("basics", &self.basics)
            .finish_non_exhaustive()
    }
}

/// Random padding text: length uniform in `1..=RPAD_MAX`, characters uniform
/// over the 64-character radix-64 alphabet, all from the `Env`.
pub(crate) fn rpad(env: &mut Env) -> String {
    env.rpad(RPAD_MAX)
}

/// The `<signcrypt>` content element for `payload` children addressed to `to`.
pub(crate) fn signcrypt(
    to: &str,
    time: Timestamp,
    rpad: &str,
    payload: Vec<Element>,
) -> Result<Element> {
    let mut sc = Element::bare("signcrypt", NS_OX);
    let mut t = Element::bare("to", NS_OX);
    stanza::set_attr(&mut t, "jid", to)?;
    sc.append_child(t);
    let mut tm = Element::bare("time", NS_OX);
    stanza::set_attr(&mut tm, "stamp", &time.to_rfc3339())?;
    sc.append_child(tm);
    sc.append_child(stanza::text_element("rpad", NS_OX, rpad));
    let mut p = Element::bare("payload", NS_OX);
    for c in payload {
        p.append_child(c);
    }
    sc.append_child(p);
    Ok(sc)
}

/// `jabber:server`, whose `<body>` XEP-0374 §2.2 says recipients MUST accept too.
pub const NS_SERVER: &str = "jabber:server";

/// A payload child as delivered: one in `jabber:server` (the same `<body>`,
/// `<subject>`, `<thread>` as in `jabber:client`, XEP-0374 §2.2) is moved to
/// `jabber:client`, the namespace of the stanza it is delivered in.
fn client_ns(c: &Element) -> Element {
    if c.ns() != NS_SERVER {
        return c.clone();
    }
    let mut n = Element::bare(c.name(), stanza::NS_CLIENT);
    *n.attrs_mut() = c.attrs().clone();
    for node in c.nodes() {
        n.append_node(node.clone());
    }
    n
}

/// What a verified `<signcrypt>` says.
pub(crate) struct Content {
    pub to: Vec<String>,
    pub time: Timestamp,
    pub payload: Element,
}

/// Parse and check the structure of a content element (XEP-0373 §3.1 table).
pub(crate) fn parse_content(xml: &str) -> Result<Content> {
    let el: Element = stanza::parse(xml)?;
    if el.ns() != NS_OX || el.name() != "signcrypt" {
        return Err(DecodeError::UnexpectedStanza(format!(
            "<{} xmlns='{}'> (XEP-0374 allows only <signcrypt>)",
            el.name(),
            el.ns()
        ))
        .into());
    }
    let mut to = Vec::new();
    let mut time = None;
    let mut payload = None;
    let mut rpads = 0;
    for c in el.children() {
        if c.ns() != NS_OX {
            continue;
        }
        match c.name() {
            "to" => to.push(
                c.attr("jid")
                    .ok_or_else(|| DecodeError::Missing("<to jid>".into()))?
                    .to_string(),
            ),
            "time" => {
                if time.is_some() {
                    return Err(DecodeError::invalid("<time>", "more than one").into());
                }
                let s = c
                    .attr("stamp")
                    .ok_or_else(|| DecodeError::Missing("<time stamp>".into()))?;
                time = Some(Timestamp::parse_rfc3339(s).ok_or_else(|| {
                    DecodeError::invalid("<time stamp>", "not XEP-0082 DateTime")
                })?);
            }
            "rpad" => rpads += 1,
            "payload" => {
                if payload.is_some() {
                    return Err(DecodeError::invalid("<payload>", "more than one").into());
                }
                payload = Some(c.clone());
            }
            _ => {}
        }
    }
    if rpads > 1 {
        return Err(DecodeError::invalid("<rpad>", "more than one").into());
    }
    if to.is_empty() {
        return Err(DecodeError::Missing("<to>".into()).into());
    }
    Ok(Content {
        to,
        time: time.ok_or_else(|| DecodeError::Missing("<time>".into()))?,
        payload: payload.ok_or_else(|| DecodeError::Missing("<payload>".into()))?,
    })
}

impl OxSession {
    fn protect(&mut self, env: &mut Env, m: Element) -> Result<Element> {
        if m.has_child("openpgp", NS_OX) {
            return Err(common::err_cannot("already carries <openpgp>"));
        }
        let mut outer = m.clone();
        let nodes = outer.take_nodes();
        let payload: Vec<Element> = m.children().cloned().collect();
        if nodes.len() != payload.len() {
            return Err(common::err_cannot("text directly inside the stanza"));
        }
        let to = self.basics.peer_jid.to_bare().to_string();
        let pad = rpad(env);
        let sc = signcrypt(&to, env.now(), &pad, payload)?;
        let plain = zeroize::Zeroizing::new(stanza::serialize(&sc));
        // XEP-0373 §3.1: signed, encrypted to the recipient and SHOULD to self.
        let ct = pgp::encrypt(
            plain.as_bytes(),
            &[&self.peer, &self.own],
            Some(&self.own),
            env.now(),
        )?;
        let b64 = e2elab_core::b64::encode(&ct);
        if self.hints {
            outer.append_child(stanza::text_element("body", stanza::NS_CLIENT, PLACEHOLDER));
            outer.append_child(Element::bare("store", NS_HINTS));
            let mut e = Element::bare("encryption", NS_EME);
            stanza::set_attr(&mut e, "namespace", NS_OX)?;
            outer.append_child(e);
        }
        outer.append_child(stanza::text_element("openpgp", NS_OX, &b64));
        Ok(outer)
    }

    fn open(&mut self, env: &mut Env, m: &Element, out: &mut Outbox) -> Result<()> {
        let n = m.children().filter(|c| c.is("openpgp", NS_OX)).count();
        if n == 0 {
            out.deliver_unprotected(true, m.clone());
            return Ok(());
        }
        if n > 1 {
            return Err(DecodeError::invalid("<openpgp>", "more than one").into());
        }
        let x = m
            .get_child("openpgp", NS_OX)
            .ok_or_else(|| DecodeError::Missing("<openpgp>".into()))?;
        if x.children().next().is_some() {
            return Err(DecodeError::invalid("<openpgp>", "child elements").into());
        }
        let text: String = x
            .text()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let data = e2elab_core::b64::decode(text.as_bytes())
            .map_err(|_| DecodeError::invalid("<openpgp>", "not base64"))?;
        // XEP-0373 §3.2: the message must come from the JID the key belongs to.
        stanza::check_sender(m, &self.basics.peer_jid, stanza::SenderMatch::Bare, true)?;
        let plain = pgp::decrypt(
            &data,
            &self.own,
            &self.peer,
            SigRule::RequirePeer,
            env.now(),
            false,
        )?;
        let xml = std::str::from_utf8(&plain)
            .map_err(|_| DecodeError::invalid("<signcrypt>", "not UTF-8"))?;
        let content = parse_content(xml)?;
        // XEP-0373 §3.2: a <to> must match the outer 'to'; we also require our own JID.
        let ours = content
            .to
            .iter()
            .any(|t| stanza::same_jid(t, &self.local_bare, stanza::SenderMatch::Bare));
        let outer_ok = m.attr("to").is_none_or(|o| {
            content
                .to
                .iter()
                .any(|t| stanza::same_jid(t, o, stanza::SenderMatch::Bare))
        });
        if !ours || !outer_ok {
            return Err(PeerMisbehaved::WrongAddress(format!(
                "signed <to> is {}, we are {}",
                content.to.join(", "),
                self.local_bare
            ))
            .into());
        }
        let now = env.now();
        let skew = if content.time > now {
            content.time.since(now)
        } else {
            now.since(content.time)
        };
        let mut d = m.clone();
        let _ = d.take_nodes();
        for c in content.payload.children() {
            d.append_child(client_ns(c));
        }
        // Only the signcrypt payload is delivered: all of it signed by the
        // peer and encrypted to us (clear children of the wire are dropped).
        let label = Protection::all(
            &d,
            true,
            true,
            format!("openpgp:{}", self.basics.peer_fingerprint),
        );
        out.deliver(d, label);
        if skew.as_secs() > self.time_window {
            out.event(Event::Warning(Warning::Suspicious {
                reason: format!(
                    "signed <time> {} is {} s {} our clock {}",
                    content.time.to_rfc3339(),
                    skew.as_secs(),
                    if content.time > now {
                        "ahead of"
                    } else {
                        "behind"
                    },
                    now.to_rfc3339()
                ),
            }));
        }
        Ok(())
    }
}

impl Session for OxSession {
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
            Some(StanzaKind::Message) => self.protect(env, stanza)?,
            Some(k) => {
                return Err(common::err_cannot(&format!(
                    "{} (XEP-0374 protects messages)",
                    k.name()
                )))
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
                self.open(env, &stanza, out)
            }
            Some(_) => {
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
