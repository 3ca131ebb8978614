//! The XEP-0116 v0.16 negotiation (3-message SIGMA-I, 4-message SIGMA-R with
//! hash commitment, and the XEP-0217 subset) and the session around it.
//!
//! Read in this order: [`settings`] (what a session offers and accepts),
//! [`negotiate`] (Bob's choice from Alice's offer and Alice's check of it,
//! pure functions over forms), [`initiator`] and [`responder`] (the four
//! messages, one handler each), [`proof`] (the SIGMA identity proofs),
//! [`retained`] (retained secrets, K', the SAS); this file holds the
//! session state, the established channel's stanza handling and the
//! [`Session`] implementation.

pub mod initiator;
pub mod negotiate;
pub mod proof;
pub mod responder;
pub mod retained;
pub mod settings;

pub use negotiate::{Chosen, Rejection};
pub use retained::sas28x5;
pub use settings::{KeyMode, Settings, OPTIONS};

use crate::channel::{self, Channel, CtrReading, Suite, NS_C};
use crate::form::{Field, Form, NS_DATA};
use crate::keys;
use crate::prim::{self, DhPrivate, Group, Ops};
use crate::{Profile, Store, Weakness};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::outbox::child_name;
use e2elab_core::Protection;
use e2elab_core::{
    stanza, ApiMisuse, DecodeError, Element, Env, Error, Event, IdentityError, Jid, Outbox,
    PeerIdentity, PeerMisbehaved, ProtocolInfo, PublicIdentity, Result, Role, SecretBytes, Session,
    SessionConfig, SessionState, StanzaKind, Warning,
};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// XEP-0020 feature negotiation.
pub const NS_FEATURE: &str = "http://jabber.org/protocol/feature-neg";
/// Message 4 wrapper (v0.16).
pub const NS_INIT: &str = "http://www.xmpp.org/extensions/xep-0116.html#ns-init";
/// XEP-0079 AMP.
pub const NS_AMP: &str = "http://jabber.org/protocol/amp";
/// The SSN form type.
pub const FORM_TYPE: &str = "urn:xmpp:ssn";

/// How a SIGMA-I peer was authenticated.
const SIGMA_I_METHOD: &str = "rsa-sha256 signature (SIGMA-I)";

/// A negotiation's outcome on either side: the channel, the peer as
/// authenticated, and warnings for the user.
type Handshake = (Channel, PeerIdentity, Vec<Warning>);

fn b64d(field: &str, s: &str) -> Result<Vec<u8>> {
    b64::decode(s.trim()).map_err(|_| DecodeError::invalid(field, "not base64").into())
}

fn bn(field: &str, s: &str) -> Result<BigNum> {
    let b = b64d(field, s)?;
    BigNum::from_slice(&b).map_err(backend)
}

enum St {
    Idle,
    /// Alice sent message 1.
    AwaitResponse(Box<initiator::Offered>),
    /// Alice sent message 3 (4-message mode).
    AwaitInit(Box<initiator::AwaitInit>),
    /// Bob sent message 2 (4-message) or message 2 with his identity (3-message).
    AwaitAccept(Box<responder::AwaitAccept>),
    Established(Box<Channel>),
    /// We sent a terminate form; waiting for the acknowledgement.
    Terminating(Box<Channel>),
    Closed,
}

/// An ESession (SIGMA profiles).
pub struct SigmaSession {
    profile: Profile,
    settings: Settings,
    role: Role,
    local: Jid,
    peer: Jid,
    key: Option<PKey<Private>>,
    key_value: Vec<u8>,
    peer_public: Option<PublicIdentity>,
    store: Arc<Mutex<Store>>,
    st: St,
    ops: Ops,
    queue: VecDeque<Element>,
    negotiated: Option<Chosen>,
    thread: String,
    pending_key: Option<((String, String), Vec<u8>)>,
    /// When the negotiation under way began (virtual clock).
    negotiating_since: Option<e2elab_core::Timestamp>,
    info: &'static ProtocolInfo,
    /// The long-term private key bytes, kept only by the static-DH control
    /// (its DH exponents derive from them); empty otherwise.
    identity_secret: SecretBytes,
    /// The peer's identity proof as verified (kept for the participation judge).
    peer_proof: Option<ProofRecord>,
    /// The peer's verified public key (the signed-messages control checks each stanza with it).
    peer_key: Option<openssl::pkey::PKey<openssl::pkey::Public>>,
}

/// What a side verified of its peer's identity proof: the bytes that were
/// signed (the SIGMA MAC, or the DH values in the unbound-identity control),
/// the signature, the key, and how to recompute the MAC. Kept after the
/// handshake so that the participation-repudiation experiment can hand it to
/// a judge, as a peer who wants to prove the other took part would.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ProofRecord {
    /// `key`, `hash`, `none` or `unbound`.
    pub mode: String,
    /// The SIGMA key (KS) the MAC was computed with (hex; empty for `unbound`).
    pub ks: String,
    /// The MAC inputs in order (hex).
    pub parts: Vec<String>,
    /// The signed bytes (the MAC; the raw DH data for `unbound`), hex.
    pub signed: String,
    /// The signature (hex; empty in mode `none`).
    pub sig: String,
    /// The peer's normalized KeyValue (hex; empty in mode `none`).
    pub key_value: String,
}

impl Drop for ProofRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.ks.zeroize();
    }
}

impl std::fmt::Debug for SigmaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaSession")
            .field("profile", &self.profile)
            .field("role", &self.role)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl SigmaSession {
    /// Create.
    pub fn new(
        profile: Profile,
        settings: Settings,
        cfg: SessionConfig,
        store: Arc<Mutex<Store>>,
        info: &'static ProtocolInfo,
    ) -> Result<Self> {
        let (key, key_value) = if cfg.identity.secret().is_empty() {
            (None, Vec::new())
        } else {
            let k = Store::private_key(&store, cfg.identity.secret().expose())?;
            let kv = keys::key_value_of(&k)?;
            (Some(k), kv)
        };
        let needs_key =
            settings.init_pubkey != KeyMode::None || settings.resp_pubkey != KeyMode::None;
        if needs_key && key.is_none() {
            return Err(IdentityError::Malformed("profile needs an RSA key".into()).into());
        }
        let identity_secret = if settings.weakness == Some(Weakness::StaticDh) {
            SecretBytes::from_slice(cfg.identity.secret().expose())
        } else {
            SecretBytes::default()
        };
        Ok(SigmaSession {
            identity_secret,
            peer_proof: None,
            peer_key: None,
            info,
            profile,
            settings,
            role: cfg.role,
            local: cfg.local_jid,
            peer: cfg.peer_jid,
            key,
            key_value,
            peer_public: cfg.peer_public,
            store,
            st: St::Idle,
            ops: Ops,
            queue: VecDeque::new(),
            negotiated: None,
            thread: String::new(),
            pending_key: None,
            negotiating_since: None,
        })
    }

    fn message(&self, thread: &str) -> Result<Element> {
        let mut m = stanza::new(StanzaKind::Message);
        stanza::set_attr(&mut m, "from", self.local.as_str())?;
        stanza::set_attr(&mut m, "to", self.peer.as_str())?;
        m.append_child(stanza::text_element("thread", stanza::NS_CLIENT, thread));
        Ok(m)
    }

    /// The peer as the negotiation authenticated it.
    fn peer_identity(
        &self,
        fingerprint: Option<String>,
        sas: Option<String>,
        method: String,
    ) -> PeerIdentity {
        PeerIdentity {
            jid: self.peer.to_string(),
            fingerprint,
            sas,
            method,
        }
    }

    fn feature(form: &Form) -> Element {
        let mut f = Element::bare("feature", NS_FEATURE);
        f.append_child(form.to_element());
        f
    }

    fn norm(&self, f: &Form) -> Vec<u8> {
        f.normalized(self.settings.empty_style())
    }

    fn suite(&self, chosen: &Chosen) -> Suite {
        Suite {
            key_len: if self.settings.gajim {
                32
            } else {
                settings::cipher_key_len(&chosen.crypt).unwrap_or(16)
            },
            n_bits: 128,
            exponent: self.settings.exponent,
            reading: if self.settings.gajim {
                CtrReading::Gajim
            } else {
                CtrReading::Spec
            },
        }
    }

    /// A DH key pair: fresh from the Env, or, in the static-DH control,
    /// derived from the long-term key.
    fn dh_keygen(&mut self, env: &mut Env, group: &Group) -> Result<(DhPrivate, BigNum)> {
        if self.settings.weakness == Some(Weakness::StaticDh) {
            let x = prim::static_exponent(self.identity_secret.expose(), group.id)?;
            let e = self.ops.modexp_g(group, x.bn())?;
            return Ok((x, e));
        }
        self.ops.dh_keygen(env, group, 128, self.settings.exponent)
    }

    fn establish(
        &mut self,
        env: &mut Env,
        mut ch: Channel,
        peer: PeerIdentity,
        warnings: Vec<Warning>,
        out: &mut Outbox,
    ) -> Result<()> {
        self.negotiating_since = None;
        ch.publish_old = self.settings.publish_old;
        ch.skip_mac_check = self.settings.weakness == Some(Weakness::NoMac);
        ch.frozen_counters = self.settings.weakness == Some(Weakness::NoCounter);
        self.st = St::Established(Box::new(ch));
        if let Some((k, kv)) = self.pending_key.take() {
            if self.settings.weakness == Some(Weakness::SignedMessages) {
                self.peer_key = Some(keys::public_from_bytes(&kv)?);
            }
            if let Ok(mut s) = self.store.lock() {
                s.known_keys.insert(k, kv);
            }
        }
        out.event(Event::Established(peer));
        for w in warnings {
            out.event(Event::Warning(w));
        }
        // The handshake succeeded whatever happens to the held stanzas: a stanza
        // the negotiation does not cover is reported, not turned into an error.
        while let Some(s) = self.queue.pop_front() {
            if let Err(e) = self.seal_and_send(env, s, out) {
                out.event(Event::Warning(Warning::Other(format!(
                    "a stanza held during the negotiation was not sent: {e}"
                ))));
            }
        }
        Ok(())
    }

    fn seal_and_send(&mut self, env: &mut Env, app: Element, out: &mut Outbox) -> Result<()> {
        let kind =
            StanzaKind::of(&app).ok_or_else(|| ApiMisuse::CannotProtect(app.name().to_string()))?;
        let allowed = self
            .negotiated
            .as_ref()
            .is_some_and(|c| c.stanzas.contains(&kind));
        if !allowed {
            return Err(
                ApiMisuse::CannotProtect(format!("{} was not negotiated", kind.name())).into(),
            );
        }
        // Our wish (rekey_every), never more often than negotiated (XEP-0200
        // §Re-Key: rekey_freq is the minimum number of stanzas between rekeys).
        let rekey_every = self.settings.rekey_every;
        let rekey_freq = self.negotiated.as_ref().map_or(u64::MAX, |c| c.rekey_freq);
        let now = env.now();
        let thread = self.thread.clone();
        let gajim_shapes = self.settings.gajim_shapes;
        let St::Established(ch) = &mut self.st else {
            return Err(ApiMisuse::Closed.into());
        };
        let rekey = rekey_every > 0 && ch.sent_since_rekey + 1 >= rekey_every.max(rekey_freq);
        let mut wire = app.clone();
        // Every protected stanza carries the session's thread in clear
        // (XEP-0155: the thread names the session; a peer that routes by
        // thread, as Gajim does, would otherwise put it in a session without
        // keys). An application's own, different thread is content and goes
        // inside <c/> (DECISIONS: threads).
        let nodes = wire.take_nodes();
        let mut protected = Vec::new();
        let mut clear: Vec<(usize, Element)> = Vec::new();
        let mut has_thread = false;
        for n in nodes {
            if let e2elab_core::minidom::Node::Element(c) = n {
                let app_thread = c.is("thread", stanza::NS_CLIENT) && c.text() != thread;
                if channel::stays_clear(&c) && !app_thread {
                    has_thread |= c.is("thread", stanza::NS_CLIENT);
                    clear.push((protected.len(), c));
                } else {
                    protected.push(c);
                }
            }
        }
        // <thread/> is a child of <message/> only (RFC 6121 §5.2.5; an <iq/>
        // has exactly one child).
        if !has_thread && !thread.is_empty() && kind == StanzaKind::Message {
            clear.push((
                protected.len(),
                stanza::text_element("thread", stanza::NS_CLIENT, &thread),
            ));
        }
        if self.settings.weakness == Some(Weakness::SignedMessages) {
            let key = self
                .key
                .as_ref()
                .ok_or_else(|| IdentityError::Malformed("no private key".into()))?;
            protected.push(sign_content(&mut self.ops, key, &protected)?);
        }
        let c = ch.seal(env, &mut self.ops, &protected, rekey, now)?;
        // The <c/> stands where the first protected child stood; clear children keep their order.
        let mut placed = false;
        for (before, el) in clear {
            if before > 0 && !placed {
                wire.append_child(c.clone());
                placed = true;
            }
            wire.append_child(el);
        }
        if !placed {
            wire.append_child(c);
        }
        if gajim_shapes && kind == StanzaKind::Message {
            for el in gajim_clear_extras() {
                wire.append_child(el);
            }
        }
        out.send(wire);
        Ok(())
    }

    /// Every stanza held for the negotiation, reported as never sent.
    fn report_unsent(&mut self, reason: &str, out: &mut Outbox) {
        for stanza in self.queue.drain(..) {
            out.event(Event::NotSent {
                stanza,
                reason: reason.into(),
            });
        }
    }

    fn terminate_form(result: bool) -> Element {
        let mut f = Form::new(if result { "result" } else { "submit" });
        f.push(Field::value("FORM_TYPE", FORM_TYPE));
        f.push(Field::value("terminate", "1"));
        SigmaSession::feature(&f)
    }

    /// The terminate form sent after a bad encrypted stanza: the XEP-0116
    /// form plus a custom field (XEP-0068's `x-` prefix) saying why, so the
    /// peer can tell a failure from a user's close (DECISIONS: failures).
    fn failure_form(reason: &str) -> Element {
        let mut f = Form::new("submit");
        f.push(Field::value("FORM_TYPE", FORM_TYPE));
        f.push(Field::value("terminate", "1"));
        f.push(Field::value(FAILURE_FIELD, reason));
        SigmaSession::feature(&f)
    }

    /// After a failure: back to a fresh negotiation with the same keys,
    /// store and held stanzas (`renegotiate`). The initiator starts it at
    /// once; the responder waits for it. The user hears a warning, not a
    /// close.
    fn renegotiate(&mut self, env: &mut Env, why: &str, out: &mut Outbox) {
        self.st = St::Idle;
        self.negotiated = None;
        self.thread = String::new();
        self.pending_key = None;
        self.negotiating_since = None;
        self.peer_proof = None;
        self.peer_key = None;
        out.event(Event::Warning(Warning::Other(format!(
            "{why}; re-negotiating ({})",
            if self.role == Role::Initiator {
                "this side starts"
            } else {
                "waiting for the initiator"
            }
        ))));
        if self.role == Role::Initiator {
            if let Err(e) = self.start(env, out) {
                self.st = St::Closed;
                self.report_unsent(&format!("re-negotiation failed to start: {e}"), out);
                out.event(Event::Closed);
            }
        }
    }

    fn on_encrypted(&mut self, env: &mut Env, wire: Element, out: &mut Outbox) -> Result<()> {
        let closing = matches!(self.st, St::Terminating(_));
        // The stanza that tells the peer, should this one fail.
        let mut notice = self.message(&self.thread)?;
        let ch = match &mut self.st {
            St::Established(ch) | St::Terminating(ch) => ch,
            _ => return Err(unexpected("encrypted stanza", "handshake state")),
        };
        let c = wire
            .get_child("c", NS_C)
            .ok_or_else(|| DecodeError::Missing("<c/>".into()))?;
        if wire.children().filter(|x| x.is("c", NS_C)).count() != 1 {
            return Err(DecodeError::invalid("stanza", "more than one <c/>").into());
        }
        // Beside the <c/>, anything but what XEP-0200 leaves in clear (a
        // fallback <body/>, hints) is unprotected: XEP-0200 does not forbid
        // it, so the stanza is accepted, but only the protected content is
        // delivered and the extras are reported (DECISIONS: clear extras).
        // A clear thread other than the session's is unprotected too.
        let session_thread = self.thread.clone();
        let is_extra = |x: &Element| {
            !x.is("c", NS_C)
                && (!channel::stays_clear(x)
                    || (x.is("thread", stanza::NS_CLIENT) && x.text() != session_thread))
        };
        let extras: Vec<String> = wire
            .children()
            .filter(|x| is_extra(x))
            .map(|x| format!("{{{}}}{}", x.ns(), x.name()))
            .collect();
        let peer_key = self.peer_key.clone();
        let signed = self.settings.weakness == Some(Weakness::SignedMessages);
        let opened = match ch.open(&mut self.ops, c).and_then(|mut o| {
            if signed && !o.content.is_empty() && !is_terminate_content(&o.content) {
                let key = peer_key
                    .as_ref()
                    .ok_or_else(|| Error::Backend("no peer key".into()))?;
                o.content = check_content_signature(&mut self.ops, key, o.content)?;
            }
            Ok(o)
        }) {
            Ok(o) => o,
            Err(e) => {
                // XEP-0200 §Decrypting: a MAC mismatch or unparseable content
                // terminates the session. Our sending direction still works,
                // so the peer is told with an encrypted terminate form (else
                // its messages would vanish unnoticed: one lost, repeated or
                // altered stanza ends the session for both).
                if !closing {
                    if let Ok(c) = ch.seal(
                        env,
                        &mut self.ops,
                        &[Self::failure_form(e.kind())],
                        false,
                        env.now(),
                    ) {
                        notice.append_child(c);
                        out.send(notice);
                    }
                }
                let why = format!("session terminated after a bad encrypted stanza: {e}");
                if self.settings.renegotiate && !closing {
                    self.renegotiate(env, &why, out);
                } else {
                    self.st = St::Closed;
                    out.event(Event::Warning(Warning::Other(why)));
                    out.event(Event::Closed);
                }
                return Err(e);
            }
        };
        let is_terminate = is_terminate_content(&opened.content);
        if is_terminate {
            if closing {
                self.st = St::Closed;
                out.event(Event::PeerClosed);
                return Ok(());
            }
            if let Some(reason) = failure_of(&opened.content) {
                // The peer met a bad stanza and destroyed its keys: no
                // acknowledgement (it could not read one).
                let why =
                    format!("the peer ended the session after a bad encrypted stanza ({reason})");
                if self.settings.renegotiate {
                    self.renegotiate(env, &why, out);
                } else {
                    self.st = St::Closed;
                    out.event(Event::Warning(Warning::Other(why)));
                    self.report_unsent("the peer ended the session", out);
                    out.event(Event::PeerClosed);
                }
                return Ok(());
            }
            // Acknowledge, then destroy keys.
            let thread = wire
                .get_child("thread", stanza::NS_CLIENT)
                .map(Element::text)
                .unwrap_or_default();
            let mut ack = self.message(&thread)?;
            if let St::Established(ch) = &mut self.st {
                let c = ch.seal(
                    env,
                    &mut self.ops,
                    &[Self::terminate_form(true)],
                    false,
                    env.now(),
                )?;
                ack.append_child(c);
            }
            out.send(ack);
            self.st = St::Closed;
            out.event(Event::PeerClosed);
            return Ok(());
        }
        if closing {
            // Stanzas in flight before the peer saw our terminate: drop them.
            return Ok(());
        }
        if !extras.is_empty() {
            out.event(Event::Warning(Warning::UnprotectedExtras {
                elements: extras,
            }));
        }
        // Rebuild the original stanza: decrypted children in place of <c/>,
        // the clear children XEP-0200 keeps but threads (DECISIONS: threads),
        // nothing unprotected.
        let mut app = wire.clone();
        let nodes = app.take_nodes();
        let mut label = Protection {
            covered: Vec::new(),
            clear: Vec::new(),
            confidential: true,
            authenticated: true,
            key: format!("xep0200:{}", self.thread),
        };
        for n in nodes {
            if let e2elab_core::minidom::Node::Element(el) = n {
                if el.is("c", NS_C) {
                    for d in &opened.content {
                        label.covered.push(child_name(d));
                        app.append_child(d.clone());
                    }
                } else if el.is("thread", stanza::NS_CLIENT) {
                    // The session's thread is plumbing; any other clear thread
                    // is unprotected (reported above): neither is delivered.
                } else if channel::stays_clear(&el) {
                    label.clear.push(child_name(&el));
                    app.append_child(el);
                }
            }
        }
        if !opened.content.is_empty() {
            out.deliver(app, label);
        }
        Ok(())
    }
}

/// What Gajim sent in clear beside every `<c/>` (GAJIM-NOTES.md "Clear
/// extras beside `<c/>`"): a fallback body, the carbons `<private/>` and two
/// storage hints. Sent under gajim-shapes only.
fn gajim_clear_extras() -> Vec<Element> {
    vec![
        stanza::text_element(
            "body",
            stanza::NS_CLIENT,
            "[This is part of an encrypted session. If you see this message, something went wrong.]",
        ),
        Element::bare("private", "urn:xmpp:carbons:2"),
        Element::bare("no-permanent-store", "urn:xmpp:hints"),
        Element::bare("no-copy", "urn:xmpp:hints"),
    ]
}

/// The signed-messages control's namespace for its per-stanza signature.
pub const NS_CONTROL_SIG: &str = "urn:xmpp-e2e-lab:control:signed-messages";

/// A `<sig/>` over the serialized protected children, with our long-term key.
fn sign_content(ops: &mut Ops, key: &PKey<Private>, content: &[Element]) -> Result<Element> {
    let data: String = content.iter().map(stanza::serialize).collect();
    let sig = ops.rsa_sign(key, MessageDigest::sha256(), data.as_bytes())?;
    Ok(stanza::text_element(
        "sig",
        NS_CONTROL_SIG,
        &b64::encode(sig),
    ))
}

/// The signed-messages control's check: the last child is a valid `<sig/>`
/// over the others by the peer's key; returns the others.
pub fn check_content_signature(
    ops: &mut Ops,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
    mut content: Vec<Element>,
) -> Result<Vec<Element>> {
    let sig_el = match content.pop() {
        Some(s) if s.is("sig", NS_CONTROL_SIG) => s,
        _ => return Err(PeerMisbehaved::BadSignature.into()),
    };
    let sig = b64d("sig", &sig_el.text())?;
    let data: String = content.iter().map(stanza::serialize).collect();
    let pkey = key.to_owned();
    if !ops.rsa_verify(&pkey, MessageDigest::sha256(), data.as_bytes(), &sig)? {
        return Err(PeerMisbehaved::BadSignature.into());
    }
    Ok(content)
}

/// The terminate form as a `<c/>` carries it (`result`: the acknowledgement).
pub fn terminate_content(result: bool) -> Element {
    SigmaSession::terminate_form(result)
}

/// The custom field of a failure's terminate form.
pub const FAILURE_FIELD: &str = "x-e2elab-failure";

/// The reason a terminate form gives for a failure, if it is one.
pub fn failure_of(content: &[Element]) -> Option<String> {
    let f = content
        .first()?
        .get_child("x", NS_DATA)
        .and_then(|x| Form::from_element(x).ok())?;
    f.value(FAILURE_FIELD).ok().map(str::to_string)
}

/// Whether decrypted content is the terminate form.
pub fn is_terminate_content(content: &[Element]) -> bool {
    content.len() == 1
        && content[0].is("feature", NS_FEATURE)
        && content[0]
            .get_child("x", NS_DATA)
            .and_then(|x| Form::from_element(x).ok())
            .is_some_and(|f| is_terminate_form(&f))
}

/// Whether a form is the terminate form (XEP-0116 §"Termination").
pub fn is_terminate_form(f: &Form) -> bool {
    f.value("FORM_TYPE").is_ok_and(|v| v == FORM_TYPE)
        && f.value("terminate").is_ok_and(|v| v == "1" || v == "true")
}

fn unexpected(got: &str, expected: &str) -> Error {
    PeerMisbehaved::UnexpectedMessage {
        got: got.into(),
        expected: expected.into(),
    }
    .into()
}

/// A form answering ours: its type, our FORM_TYPE, and our own nonce echoed back.
fn check_answer(f: &Form, ftype: &str, our_nonce: &[u8]) -> Result<()> {
    if f.ftype != ftype {
        return Err(unexpected(&format!("{} form", f.ftype), ftype));
    }
    check_value(f, "FORM_TYPE", FORM_TYPE)?;
    if b64d("nonce", f.value("nonce")?)? != our_nonce {
        return Err(PeerMisbehaved::IllegalParameter("nonce is not ours".into()).into());
    }
    Ok(())
}

fn check_value(f: &Form, var: &str, want: &str) -> Result<()> {
    if f.value(var)? == want {
        Ok(())
    } else {
        Err(DecodeError::invalid(var, "unexpected value").into())
    }
}

/// The typed form of an inbound stanza (parse, then act).
enum Inbound {
    Negotiation { thread: String, form: Form },
    Init { form: Form },
    Encrypted,
    Error,
}

fn classify(el: &Element) -> Result<Inbound> {
    if StanzaKind::of(el).is_none() {
        return Err(DecodeError::UnexpectedStanza(format!("<{}>", el.name())).into());
    }
    let thread = el
        .get_child("thread", stanza::NS_CLIENT)
        .map(Element::text)
        .unwrap_or_default();
    if el.attr("type") == Some("error") && el.get_child("error", stanza::NS_CLIENT).is_some() {
        return Ok(Inbound::Error);
    }
    if el.get_child("c", NS_C).is_some() {
        return Ok(Inbound::Encrypted);
    }
    if let Some(f) = el.get_child("feature", NS_FEATURE) {
        let x = f
            .get_child("x", NS_DATA)
            .ok_or_else(|| DecodeError::Missing("data form".into()))?;
        return Ok(Inbound::Negotiation {
            thread,
            form: Form::from_element(x)?,
        });
    }
    if let Some(i) = el.get_child("init", NS_INIT) {
        let x = i
            .get_child("x", NS_DATA)
            .ok_or_else(|| DecodeError::Missing("data form".into()))?;
        return Ok(Inbound::Init {
            form: Form::from_element(x)?,
        });
    }
    Err(DecodeError::UnexpectedStanza("no ESession content (an unencrypted stanza)".into()).into())
}

impl Session for SigmaSession {
    fn info(&self) -> &ProtocolInfo {
        self.info
    }

    fn role(&self) -> Role {
        self.role
    }

    fn state(&self) -> SessionState {
        match &self.st {
            St::Idle => SessionState::Idle,
            St::AwaitResponse { .. } | St::AwaitInit(_) | St::AwaitAccept(_) => {
                SessionState::Handshaking
            }
            St::Established(_) => SessionState::Established,
            St::Terminating(_) | St::Closed => SessionState::Closed,
        }
    }

    fn start(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        if self.role != Role::Initiator {
            return Err(ApiMisuse::NotInitiator.into());
        }
        match self.st {
            St::Idle => {
                let cp = out.checkpoint();
                let r = self.request(env, out);
                if r.is_err() {
                    out.restore(cp);
                    self.st = St::Idle;
                } else {
                    self.negotiating_since = Some(env.now());
                }
                r
            }
            St::Closed | St::Terminating(_) => Err(ApiMisuse::Closed.into()),
            _ => Err(ApiMisuse::AlreadyStarted.into()),
        }
    }

    fn send(&mut self, env: &mut Env, stanza_in: Element, out: &mut Outbox) -> Result<()> {
        let kind = StanzaKind::of(&stanza_in)
            .ok_or_else(|| ApiMisuse::CannotProtect(stanza_in.name().to_string()))?;
        if !self.settings.stanzas.contains(&kind) {
            return Err(ApiMisuse::CannotProtect(kind.name().into()).into());
        }
        match &self.st {
            St::Established(_) => {
                let cp = out.checkpoint();
                let r = self.seal_and_send(env, stanza_in, out);
                if r.is_err() {
                    out.restore(cp);
                }
                r
            }
            St::Closed | St::Terminating(_) => Err(ApiMisuse::Closed.into()),
            St::Idle if self.role == Role::Initiator => {
                self.start(env, out)?;
                self.queue.push_back(stanza_in);
                Ok(())
            }
            _ => {
                self.queue.push_back(stanza_in);
                Ok(())
            }
        }
    }

    fn handle_inbound(&mut self, env: &mut Env, el: Element, out: &mut Outbox) -> Result<()> {
        stanza::check_sender(&el, &self.peer, stanza::SenderMatch::Full, true)?;
        let msg = classify(&el)?;
        let cp = out.checkpoint();
        let result = match (msg, &self.st) {
            (Inbound::Encrypted, _) => return self.on_encrypted(env, el, out),
            (Inbound::Error, St::AwaitResponse { .. } | St::AwaitInit(_) | St::AwaitAccept(_)) => {
                self.st = St::Closed;
                self.report_unsent("the peer refused the negotiation", out);
                out.event(Event::PeerClosed);
                return Err(PeerMisbehaved::Terminated.into());
            }
            (Inbound::Error, _) => Err(unexpected("error stanza", "no negotiation under way")),
            (Inbound::Negotiation { form, .. }, St::Established(_) | St::Terminating(_))
                if self.settings.gajim && is_terminate_form(&form) =>
            {
                // Gajim terminates in clear (GAJIM-NOTES.md, DEVIATIONS): under
                // gajim-compat we end our side too, and say that nothing
                // authenticated the request.
                self.st = St::Closed;
                out.event(Event::Warning(Warning::Other(
                    "the peer ended the session with an unauthenticated (clear) terminate form, as Gajim does".into(),
                )));
                out.event(Event::PeerClosed);
                return Ok(());
            }
            (Inbound::Negotiation { thread, form }, St::Idle) if self.role == Role::Responder => {
                let r = self.on_request(env, thread, form, out);
                if r.is_ok() {
                    self.negotiating_since = Some(env.now());
                }
                r
            }
            (Inbound::Negotiation { form, .. }, St::AwaitResponse { .. }) => {
                match self.on_response(env, form, out) {
                    Ok(Some((ch, peer, w))) => self.establish(env, ch, peer, w, out),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            (Inbound::Negotiation { form, .. }, St::AwaitAccept(_)) => {
                match self.on_accept(env, form, out) {
                    Ok((ch, peer, w)) => self.establish(env, ch, peer, w, out),
                    Err(e) => Err(e),
                }
            }
            (Inbound::Init { form }, St::AwaitInit(_)) => match self.on_init(env, form) {
                Ok((ch, peer, w)) => self.establish(env, ch, peer, w, out),
                Err(e) => Err(e),
            },
            (Inbound::Negotiation { .. } | Inbound::Init { .. }, _) => Err(unexpected(
                "negotiation message",
                &format!("{:?}", self.state()),
            )),
        };
        if let Err(e) = &result {
            // A negotiation that failed a check is over ("both MUST consider the previous
            // negotiation to have failed"); structural surprises leave the state as it was.
            let fatal = matches!(
                e,
                Error::DecryptFailed
                    | Error::PeerMisbehaved(
                        PeerMisbehaved::CommitmentMismatch | PeerMisbehaved::BadSignature
                    )
                    | Error::Identity(_)
            ) && !matches!(self.st, St::Established(_));
            if fatal {
                self.st = St::Closed;
                self.report_unsent(&format!("the negotiation failed: {e}"), out);
            } else {
                // Keep any error stanza emitted for the peer; drop partial effects otherwise.
                let (tx, _) = cp;
                let keep_error = out.pending_transmits() > tx;
                if !keep_error {
                    out.restore(cp);
                }
            }
        }
        result
    }

    fn poll_timeout(&self) -> Option<e2elab_core::Timestamp> {
        match &self.st {
            St::Established(ch) => ch.poll_timeout(),
            St::AwaitResponse(_) | St::AwaitInit(_) | St::AwaitAccept(_) => {
                let limit = self.settings.negotiation_timeout;
                self.negotiating_since
                    .filter(|_| !limit.is_zero())
                    .map(|t| t.plus(limit))
            }
            _ => None,
        }
    }

    fn handle_timeout(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        if let St::Established(ch) = &mut self.st {
            ch.handle_timeout(env.now());
            return Ok(());
        }
        if self.poll_timeout().is_some_and(|d| env.now() >= d) {
            // A lost or refused negotiation message leaves both sides
            // waiting: give up, say so, report what was held.
            out.event(Event::Warning(Warning::Other(format!(
                "the negotiation did not finish within {} s",
                self.settings.negotiation_timeout.as_secs()
            ))));
            self.report_unsent("the negotiation timed out", out);
            self.st = St::Closed;
            self.negotiating_since = None;
            out.event(Event::Closed);
        }
        Ok(())
    }

    fn close(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        match std::mem::replace(&mut self.st, St::Closed) {
            St::Established(_) if self.settings.gajim => {
                // Gajim checks an encrypted terminate form and then ignores it,
                // and never acknowledges: send its clear form and close now.
                let mut m = self.message(&self.thread)?;
                m.append_child(Self::terminate_form(false));
                out.send(m);
                out.event(Event::Warning(Warning::Other(
                    "terminate sent in clear and not acknowledged (gajim-compat, as Gajim does)"
                        .into(),
                )));
                out.event(Event::Closed);
                Ok(())
            }
            St::Established(mut ch) => {
                let mut m = self.message(&self.thread)?;
                let c = ch.seal(
                    env,
                    &mut self.ops,
                    &[Self::terminate_form(false)],
                    false,
                    env.now(),
                )?;
                m.append_child(c);
                out.send(m);
                self.st = St::Terminating(ch);
                out.event(Event::Closed);
                Ok(())
            }
            St::Closed => Err(ApiMisuse::Closed.into()),
            St::Terminating(ch) => {
                self.st = St::Terminating(ch);
                Err(ApiMisuse::Closed.into())
            }
            _ => {
                self.report_unsent("closed before the negotiation finished", out);
                out.event(Event::Closed);
                Ok(())
            }
        }
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        let channel = match &self.st {
            St::Established(ch) | St::Terminating(ch) => Some(ch.export()?),
            _ => None,
        };
        let export = SigmaExport {
            kind: "sigma".into(),
            channel,
            peer_proof: self.peer_proof.clone(),
        };
        let data = serde_json::to_vec(&export).map_err(|e| Error::Backend(e.to_string()))?;
        Ok(e2elab_core::StateExport {
            protocol: self.info.id.to_string(),
            role: self.role,
            data: SecretBytes::new(data),
        })
    }
}

/// The format of a SIGMA session's [`Session::dangerous_export_state`]
/// (JSON): the channel's keys and counters once established, and the peer's
/// identity proof as this side verified it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SigmaExport {
    /// `sigma`.
    pub kind: String,
    /// The XEP-0200 channel, once established.
    pub channel: Option<channel::ChannelExport>,
    /// The peer's verified identity proof.
    pub peer_proof: Option<ProofRecord>,
}

impl SigmaSession {
    /// The negotiated MODP group once known.
    pub fn negotiated_group(&self) -> Option<u32> {
        self.negotiated.as_ref().map(|c| c.group)
    }

    /// Everything negotiated, once known.
    pub fn negotiated(&self) -> Option<&Chosen> {
        self.negotiated.as_ref()
    }

    /// The session's `<thread/>` (empty before the negotiation).
    pub fn session_thread(&self) -> &str {
        &self.thread
    }

    /// Old MAC keys the peer published so far (for repudiation experiments).
    pub fn published_mac_keys(&self) -> Vec<Vec<u8>> {
        match &self.st {
            St::Established(ch) | St::Terminating(ch) => ch.published_by_peer.clone(),
            _ => Vec::new(),
        }
    }

    /// Rekeys this side started.
    pub fn rekeys_sent(&self) -> u64 {
        match &self.st {
            St::Established(ch) | St::Terminating(ch) => ch.rekeys_sent,
            _ => 0,
        }
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<SigmaSession>();
}
