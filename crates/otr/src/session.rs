//! The e2elab session over one libotr user state.

use crate::carriage;
use crate::ffi::{self, CbEvent, InsTag, Names, OpData, UserState};
use crate::Version;
use e2elab_core::ops::{self, Op};
use e2elab_core::stanza;
use e2elab_core::{
    ApiMisuse, DecodeError, Element, Env, Error, Event, Jid, Outbox, PeerIdentity, PeerMisbehaved,
    Protection, ProtocolInfo, PublicIdentity, Result, Role, Session, SessionState, StanzaKind,
    Warning,
};
use libotr_sys as sys;
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// A state of the SMP exchange, as reported by libotr's callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmpStatus {
    /// No SMP run, or one was aborted.
    None,
    /// The peer asked; answer with [`OtrSession::smp_respond`] (question, if any).
    AskedForSecret(Option<String>),
    /// Under way (percent).
    InProgress(u16),
    /// Both secrets matched.
    Succeeded,
    /// The secrets differ.
    Failed,
    /// Aborted, cheating detected, or a protocol error.
    Aborted,
}

/// One OTR session (`otr-v3` or `otr-v2`).
pub struct OtrSession {
    info: &'static ProtocolInfo,
    version: Version,
    role: Role,
    us: UserState,
    names: Names,
    od: Box<OpData>,
    local_jid: Jid,
    peer_jid: Jid,
    peer_public: Option<PublicIdentity>,
    state: SessionState,
    started: bool,
    their_instag: InsTag,
    pending: VecDeque<Element>,
    keyids: Option<(u32, u32)>,
    smp: SmpStatus,
    peer_fingerprint: Option<String>,
    /// The secure session id of the current AKE (hex), for delivery labels.
    ssid: String,
    whitespace_start: bool,
    /// How long an AKE may run (zero: for ever).
    ake_timeout: std::time::Duration,
    /// When the current AKE began (virtual clock).
    ake_since: Option<e2elab_core::Timestamp>,
}

impl std::fmt::Debug for OtrSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtrSession")
            .field("id", &self.info.id)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("their_instag", &self.their_instag)
            .finish_non_exhaustive()
    }
}

/// Settings of one session.
pub(crate) struct Setup {
    pub info: &'static ProtocolInfo,
    pub version: Version,
    pub role: Role,
    pub local_jid: Jid,
    pub peer_jid: Jid,
    pub peer_public: Option<PublicIdentity>,
    pub key_file: Zeroizing<Vec<u8>>,
    pub instag: InsTag,
    pub max_message_size: i32,
    pub whitespace_start: bool,
    pub policy: ffi::Policy,
    pub ake_timeout: std::time::Duration,
}

impl OtrSession {
    pub(crate) fn new(s: Setup) -> Result<Self> {
        let us = UserState::new()?;
        let account = s.local_jid.to_bare().to_string();
        us.read_privkey(&s.key_file)?;
        us.fingerprint(&account).map_err(|_| {
            e2elab_core::IdentityError::JidMismatch(format!(
                "the OTR key file holds no key for {account}"
            ))
        })?;
        us.set_instag(&account, s.instag)?;
        let names = Names {
            account: ffi::cstring(&account, "account")?,
            protocol: ffi::cstring(ffi::PROTOCOL, "protocol")?,
            peer: ffi::cstring(s.peer_jid.as_str(), "peer JID")?,
        };
        let od = Box::new(OpData {
            policy: s.policy,
            max_message_size: s.max_message_size,
            ..Default::default()
        });
        Ok(OtrSession {
            info: s.info,
            version: s.version,
            role: s.role,
            us,
            names,
            od,
            local_jid: s.local_jid,
            peer_jid: s.peer_jid,
            peer_public: s.peer_public,
            state: SessionState::Idle,
            started: false,
            // OTRL_INSTAG_BEST until the AKE tells us the peer's instance.
            their_instag: sys::OTRL_INSTAG_BEST,
            pending: VecDeque::new(),
            keyids: None,
            smp: SmpStatus::None,
            peer_fingerprint: None,
            ssid: String::new(),
            whitespace_start: s.whitespace_start,
            ake_timeout: s.ake_timeout,
            ake_since: None,
        })
    }

    /// Note when an AKE began, and forget it once established.
    fn track_ake(&mut self, now: e2elab_core::Timestamp) {
        match self.state {
            SessionState::Handshaking if self.ake_since.is_none() => self.ake_since = Some(now),
            SessionState::Handshaking => {}
            _ => self.ake_since = None,
        }
    }

    fn call(&mut self) -> ffi::Call<'_> {
        self.od.reset();
        ffi::Call {
            us: &self.us,
            names: &self.names,
            od: &mut self.od,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.state == SessionState::Closed {
            Err(ApiMisuse::Closed.into())
        } else {
            Ok(())
        }
    }

    /// The protocol version this session speaks.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The peer's instance tag once established (0 for OTR v2).
    pub fn their_instance(&self) -> InsTag {
        self.their_instag
    }

    /// The peer's DSA key fingerprint (hex) once established.
    pub fn peer_fingerprint(&self) -> Option<&str> {
        self.peer_fingerprint.as_deref()
    }

    /// The last SMP status reported by libotr.
    pub fn smp_status(&self) -> &SmpStatus {
        &self.smp
    }

    /// Start the Socialist Millionaires' Protocol with a shared secret (and an
    /// optional question for the peer). Emits an SMP data message.
    pub fn smp_start(
        &mut self,
        question: Option<&str>,
        secret: &[u8],
        out: &mut Outbox,
    ) -> Result<()> {
        self.require_established()?;
        let q = question
            .map(|q| ffi::cstring(q, "SMP question"))
            .transpose()?;
        let inst = self.their_instag;
        let mut c = self.call();
        c.initiate_smp(inst, q.as_deref(), secret)?;
        self.finish_internal_call(out)
    }

    /// Answer the peer's SMP request with our secret.
    pub fn smp_respond(&mut self, secret: &[u8], out: &mut Outbox) -> Result<()> {
        self.require_established()?;
        let inst = self.their_instag;
        let mut c = self.call();
        c.respond_smp(inst, secret)?;
        self.finish_internal_call(out)
    }

    /// RESEARCH HOOK: every DH value libotr holds for this session (see
    /// [`ffi::Call::dangerous_state`]). Exposes session secrets.
    pub fn dangerous_state(&self) -> Option<ffi::DangerousState> {
        ffi::dangerous_state(&self.us, &self.names, self.their_instag)
    }

    fn require_established(&self) -> Result<()> {
        self.check_open()?;
        if self.state != SessionState::Established {
            return Err(Error::Api(ApiMisuse::CannotProtect(
                "the OTR session is not established".into(),
            )));
        }
        Ok(())
    }

    /// After a call that produces only internal messages (SMP, query).
    fn finish_internal_call(&mut self, out: &mut Outbox) -> Result<()> {
        let events = std::mem::take(&mut self.od.events);
        let injected = std::mem::take(&mut self.od.injected);
        self.apply_events(&events, out);
        for t in injected {
            out.send(self.wire_for_internal(&t)?);
        }
        self.update_ratchet_counts();
        Ok(())
    }

    fn wire_for_internal(&self, text: &str) -> Result<Element> {
        carriage::internal_stanza(self.local_jid.as_str(), self.peer_jid.as_str(), text)
            .map_err(Error::Decode)
    }

    /// Record DH work from key-id changes (derived: libotr cannot be
    /// instrumented). libotr keeps session keys for (our two keys) x (their
    /// two keys): rotating our key makes a key pair and two new sessions,
    /// a new key from the peer two new sessions.
    fn update_ratchet_counts(&mut self) {
        if self.state != SessionState::Established {
            return;
        }
        let inst = self.their_instag;
        let now = self.call().keyids(inst);
        if let (Some((o0, t0)), Some((o1, t1))) = (self.keyids, now) {
            let ours = u64::from(o1.saturating_sub(o0));
            let theirs = u64::from(t1.saturating_sub(t0));
            ops::derive(Op::OtrDhKeypair, ours, 0);
            ops::derive(Op::OtrDhSession, 2 * ours + 2 * theirs, 0);
        }
        if now.is_some() {
            self.keyids = now;
        }
    }

    /// Apply callback events of a successful call.
    fn apply_events(&mut self, events: &[CbEvent], out: &mut Outbox) {
        for ev in events {
            match ev {
                CbEvent::GoneSecure(i) => {
                    self.their_instag = i.their_instance;
                    self.state = SessionState::Established;
                    derive_ake();
                    self.keyids = None;
                    self.peer_fingerprint = i.fingerprint.clone();
                    if let (Some(pinned), Some(got)) = (
                        self.peer_public
                            .as_ref()
                            .and_then(|p| p.fingerprint.clone()),
                        i.fingerprint.clone(),
                    ) {
                        if pinned != got {
                            out.event(Event::Warning(Warning::KeyChanged {
                                jid: self.peer_jid.to_string(),
                                old: pinned,
                                new: got,
                            }));
                        }
                    }
                    self.ssid = i.ssid.clone();
                    out.event(Event::Established(PeerIdentity {
                        jid: self.peer_jid.to_string(),
                        fingerprint: i.fingerprint.clone(),
                        sas: Some(i.ssid.clone()),
                        method: format!("OTR v{} AKE, DSA signature", i.version),
                    }));
                }
                CbEvent::StillSecure(i) => {
                    self.ssid = i.ssid.clone();
                    derive_ake();
                    self.keyids = None;
                    out.event(Event::Warning(Warning::Other(
                        "OTR session refreshed by a new AKE".into(),
                    )));
                }
                CbEvent::GoneInsecure => {}
                CbEvent::Smp {
                    event,
                    progress,
                    question,
                } => {
                    self.smp = match *event {
                        sys::OtrlSMPEvent_OTRL_SMPEVENT_ASK_FOR_SECRET
                        | sys::OtrlSMPEvent_OTRL_SMPEVENT_ASK_FOR_ANSWER => {
                            SmpStatus::AskedForSecret(question.clone())
                        }
                        sys::OtrlSMPEvent_OTRL_SMPEVENT_IN_PROGRESS => {
                            SmpStatus::InProgress(*progress)
                        }
                        sys::OtrlSMPEvent_OTRL_SMPEVENT_SUCCESS => SmpStatus::Succeeded,
                        sys::OtrlSMPEvent_OTRL_SMPEVENT_FAILURE => SmpStatus::Failed,
                        sys::OtrlSMPEvent_OTRL_SMPEVENT_NONE => self.smp.clone(),
                        _ => SmpStatus::Aborted,
                    };
                    if self.smp == SmpStatus::Failed || self.smp == SmpStatus::Aborted {
                        out.event(Event::Warning(Warning::Other(format!(
                            "OTR SMP: {:?}",
                            self.smp
                        ))));
                    }
                }
                CbEvent::Msg { event, message } => match *event {
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_GENERAL_ERR => {
                        out.event(Event::Warning(Warning::Other(format!(
                            "OTR error from peer: {}",
                            message.clone().unwrap_or_default()
                        ))));
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_MSG_RESENT => {
                        out.event(Event::Warning(Warning::Other("OTR message resent".into())));
                    }
                    _ => {}
                },
                CbEvent::InstagMissing => {}
            }
        }
    }

    /// Protect one application stanza now (established).
    fn send_now(&mut self, app: &Element, out: &mut Outbox) -> Result<()> {
        let Some(body) = carriage::single_body(app)
            .map_err(|e| Error::Api(ApiMisuse::CannotProtect(format!("{e}"))))?
        else {
            // Nothing OTR can protect: no body, or an empty one (DECISIONS).
            out.send(app.clone());
            return Ok(());
        };
        let text = ffi::secret_cstring(&body).ok_or_else(|| {
            Error::Api(ApiMisuse::CannotProtect(
                "body contains a NUL character".into(),
            ))
        })?;
        let inst = self.their_instag;
        let mut c = self.call();
        c.sending(inst, ffi::as_cstr(&text)?)?;
        let events = std::mem::take(&mut self.od.events);
        let injected = std::mem::take(&mut self.od.injected);
        for e in &events {
            if let CbEvent::Msg { event, .. } = e {
                match *event {
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_ENCRYPTION_ERROR
                    | sys::OtrlMessageEvent_OTRL_MSGEVENT_ENCRYPTION_REQUIRED => {
                        return Err(Error::Backend("libotr could not encrypt".into()))
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_CONNECTION_ENDED => {
                        return Err(PeerMisbehaved::Terminated.into())
                    }
                    _ => {}
                }
            }
        }
        if injected.is_empty() || !injected.iter().all(|t| t.starts_with("?OTR")) {
            // Never let anything but OTR text out (REQUIRE_ENCRYPTION holds this already).
            return Err(Error::Backend("libotr produced no OTR message".into()));
        }
        derive_data_message(&injected, body.len(), false);
        let n = injected.len();
        for (i, t) in injected.iter().enumerate() {
            out.send(carriage::wire_stanza(app, t, i + 1 == n).map_err(Error::Decode)?);
        }
        self.apply_events(&events, out);
        self.update_ratchet_counts();
        Ok(())
    }

    fn flush_pending(&mut self, out: &mut Outbox) -> Result<()> {
        while self.state == SessionState::Established {
            let Some(app) = self.pending.pop_front() else {
                break;
            };
            self.send_now(&app, out)?;
        }
        Ok(())
    }

    fn receive(&mut self, st: Element, out: &mut Outbox) -> Result<()> {
        if StanzaKind::of(&st) != Some(StanzaKind::Message) {
            return Err(DecodeError::UnexpectedStanza(format!(
                "<{} xmlns='{}'>: OTR is carried in <message/> only",
                st.name(),
                st.ns()
            ))
            .into());
        }
        stanza::check_sender(&st, &self.peer_jid, stanza::SenderMatch::Bare, true)?;
        let body = carriage::single_body(&st).map_err(Error::Decode)?;
        let Some(body) = body else {
            // No body (or an empty one): nothing OTR protects. Delivered
            // labelled as such, with the warning every profile gives.
            out.deliver_unprotected(self.state == SessionState::Established, st);
            return Ok(());
        };
        let text = ffi::secret_cstring(&body)
            .ok_or_else(|| DecodeError::invalid("body", "contains a NUL character"))?;
        let mut c = self.call();
        let r = c.receiving(ffi::as_cstr(&text)?);
        let events = std::mem::take(&mut self.od.events);
        let injected = std::mem::take(&mut self.od.injected);
        let decrypted = self.od.decrypted;
        // Errors first: a rejected input changes nothing we own and emits nothing.
        let mut unprotected = None;
        for e in &events {
            if let CbEvent::Msg { event, message } = e {
                match *event {
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_UNREADABLE => {
                        return Err(Error::DecryptFailed)
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_MALFORMED => {
                        return Err(DecodeError::invalid("OTR message", "malformed").into())
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_UNRECOGNIZED => {
                        return Err(DecodeError::invalid("OTR message", "unrecognized type").into())
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_NOT_IN_PRIVATE => {
                        return Err(PeerMisbehaved::UnexpectedMessage {
                            got: "data message".into(),
                            expected: "an AKE message (not in a private session)".into(),
                        }
                        .into())
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_FOR_OTHER_INSTANCE => {
                        return Err(PeerMisbehaved::WrongAddress(
                            "OTR message for another instance".into(),
                        )
                        .into())
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_MSG_REFLECTED => {
                        return Err(PeerMisbehaved::WrongAddress(
                            "our own OTR message reflected".into(),
                        )
                        .into())
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_SETUP_ERROR => {
                        return Err(
                            PeerMisbehaved::IllegalParameter("OTR AKE setup error".into()).into(),
                        )
                    }
                    sys::OtrlMessageEvent_OTRL_MSGEVENT_RCVDMSG_UNENCRYPTED => {
                        unprotected = Some(message.clone().unwrap_or_default());
                    }
                    _ => {}
                }
            }
        }
        if events.contains(&CbEvent::InstagMissing) {
            return Err(Error::Backend("libotr found no instance tag".into()));
        }
        // An offer of versions this profile does not speak: libotr ignores
        // it silently, and the peer would wait for ever. Say so.
        let mut mismatch = None;
        if injected.is_empty() && !decrypted {
            if let Some(offered) = offered_versions(&body) {
                let ours = self.version.number();
                if !offered.contains(&ours) {
                    let list: Vec<String> = offered.iter().map(|v| format!("v{v}")).collect();
                    mismatch = Some(format!(
                        "OTR version mismatch: the peer offers {}, this profile speaks v{ours} only",
                        if list.is_empty() {
                            "none".to_string()
                        } else {
                            list.join(", ")
                        }
                    ));
                }
            }
        }
        if let Some(m) = &mismatch {
            // A bare query is an error; a tagged plaintext still reaches
            // the user (as unprotected, below), with the mismatch said.
            if body.trim_start().starts_with("?OTR") {
                return Err(Error::Unsupported(m.clone()));
            }
            out.event(Event::Warning(Warning::Other(m.clone())));
        }
        if self.state == SessionState::Idle && (!injected.is_empty() || body.contains("?OTR")) {
            self.state = SessionState::Handshaking;
        }
        for t in &injected {
            out.send(self.wire_for_internal(t)?);
        }
        self.apply_events(&events, out);
        if let Some(plain) = unprotected.filter(|p| !p.trim().is_empty()) {
            // libotr's RCVDMSG_UNENCRYPTED: shown to the user as unprotected.
            let mut shown = st.clone();
            carriage::set_body(&mut shown, &plain);
            out.deliver_unprotected(self.state == SessionState::Established, shown);
        } else if decrypted && !r.ignore {
            if let Some(plain) = r.text.as_ref() {
                derive_data_message(std::slice::from_ref(&body), plain.len(), true);
                let app = carriage::rebuild(&st, plain);
                // OTR protects the body only; every other child came in clear.
                let label = Protection::split(
                    &app,
                    |c| c.is("body", stanza::NS_CLIENT),
                    true,
                    true,
                    format!("otr:{}", self.ssid),
                );
                out.deliver(app, label);
            }
        }
        if r.disconnected {
            self.state = SessionState::Closed;
            for stanza in self.pending.drain(..) {
                out.event(Event::NotSent {
                    stanza,
                    reason: "the peer ended the session".into(),
                });
            }
            out.event(Event::PeerClosed);
        }
        self.update_ratchet_counts();
        self.flush_pending(out)
    }
}

impl Session for OtrSession {
    fn info(&self) -> &ProtocolInfo {
        self.info
    }

    fn role(&self) -> Role {
        self.role
    }

    fn state(&self) -> SessionState {
        self.state
    }

    fn start(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if self.role != Role::Initiator {
            return Err(ApiMisuse::NotInitiator.into());
        }
        if self.started || self.state != SessionState::Idle {
            return Err(ApiMisuse::AlreadyStarted.into());
        }
        if self.whitespace_start {
            let tag = self.version.whitespace_tag();
            out.send(self.wire_for_internal(&tag)?);
            self.started = true;
            self.state = SessionState::Handshaking;
            self.track_ake(env.now());
            return Ok(());
        }
        let cp = out.checkpoint();
        // Sending "?OTR?" makes libotr replace it with its default query
        // message for our policy (`?OTRv3?` / `?OTRv2?` plus an explanation).
        let inst = self.their_instag;
        let mut c = self.call();
        let r = c.sending(inst, c"?OTR?");
        if let Err(e) = r {
            out.restore(cp);
            return Err(e);
        }
        if let Err(e) = self.finish_internal_call(out) {
            out.restore(cp);
            return Err(e);
        }
        self.started = true;
        self.state = SessionState::Handshaking;
        self.track_ake(env.now());
        Ok(())
    }

    fn send(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if StanzaKind::of(&stanza) != Some(StanzaKind::Message) {
            return Err(ApiMisuse::CannotProtect(format!(
                "<{}>: OTR protects message bodies only",
                stanza.name()
            ))
            .into());
        }
        carriage::single_body(&stanza)
            .map_err(|e| Error::Api(ApiMisuse::CannotProtect(e.to_string())))?;
        if self.state != SessionState::Established {
            if self.role == Role::Initiator && !self.started && self.state == SessionState::Idle {
                self.start(env, out)?;
            }
            self.pending.push_back(stanza);
            return Ok(());
        }
        let cp = out.checkpoint();
        let r = self.send_now(&stanza, out);
        if r.is_err() {
            out.restore(cp);
        }
        r
    }

    fn handle_inbound(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let cp = out.checkpoint();
        let before = self.state;
        let r = self.receive(stanza, out);
        if r.is_err() {
            out.restore(cp);
            self.state = before;
        }
        self.track_ake(env.now());
        r
    }

    fn poll_timeout(&self) -> Option<e2elab_core::Timestamp> {
        match (self.state, self.ake_since) {
            (SessionState::Handshaking, Some(t)) if !self.ake_timeout.is_zero() => {
                Some(t.plus(self.ake_timeout))
            }
            _ => None,
        }
    }

    fn handle_timeout(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if env.now() < deadline {
            return Ok(());
        }
        // The AKE stalled (a lost or corrupted AKE message makes libotr wait
        // silently): say so, report what was held, and end the session.
        out.event(Event::Warning(Warning::Other(format!(
            "the OTR AKE did not finish within {} s",
            self.ake_timeout.as_secs()
        ))));
        for stanza in self.pending.drain(..) {
            out.event(Event::NotSent {
                stanza,
                reason: "the AKE timed out".into(),
            });
        }
        self.state = SessionState::Closed;
        self.ake_since = None;
        out.event(Event::Closed);
        Ok(())
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let inst = self.their_instag;
        let mut c = self.call();
        c.disconnect(inst);
        let injected = std::mem::take(&mut self.od.injected);
        for t in injected {
            out.send(self.wire_for_internal(&t)?);
        }
        for stanza in self.pending.drain(..) {
            out.event(Event::NotSent {
                stanza,
                reason: "closed before the AKE finished".into(),
            });
        }
        self.state = SessionState::Closed;
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        let st = self
            .dangerous_state()
            .ok_or_else(|| Error::Backend("libotr holds no context for the peer yet".into()))?;
        let data = serde_json::to_vec(&st).map_err(|e| Error::Backend(e.to_string()))?;
        Ok(e2elab_core::StateExport {
            protocol: self.info.id.to_string(),
            role: self.role,
            data: e2elab_core::SecretBytes::new(data),
        })
    }
}

/// The AKE's public-key work on one side (derived, spec digest §7): a DH
/// key pair and the shared secret, one DSA signature and one verification;
/// plus libotr's first rotation when it goes encrypted (a key pair and two
/// sessions). In libgcrypt powms: 2 base 2, 3 other bases. The AKE's
/// hashing and AES over its few hundred bytes are not charged (well under
/// 1% of these).
fn derive_ake() {
    ops::derive(Op::OtrDhKeypair, 2, 0);
    ops::derive(Op::OtrDhSession, 3, 0);
    ops::derive(Op::OtrDsaSign, 1, 0);
    ops::derive(Op::OtrDsaVerify, 1, 0);
}

/// The symmetric work of one data message (derived from libotr's
/// `otrl_proto_create_data` / `otrl_proto_accept_data`): AES-128-CTR over
/// the message text, HMAC-SHA1 over the data message, libotr's base64 of
/// it. `texts` are the OTR texts on the wire (a data message, or its
/// fragments); nothing is recorded for anything else (AKE, query).
fn derive_data_message(texts: &[String], plain_len: usize, receiving: bool) {
    let data: usize = texts
        .iter()
        .filter(|t| is_data_text(t))
        .map(|t| t.len())
        .sum();
    if data == 0 {
        return;
    }
    // The binary data message is 3/4 of its base64.
    let binary = (data * 3 / 4) as u64;
    let lib = ops::Lib::Libgcrypt;
    ops::derive(
        Op::Cipher {
            alg: ops::CipherAlg::Aes128Ctr,
            decrypt: false,
            lib,
        },
        1,
        plain_len as u64,
    );
    ops::derive(
        Op::Hmac {
            hash: ops::HashAlg::Sha1,
            lib,
        },
        1,
        binary,
    );
    if receiving {
        ops::derive(
            Op::Base64Decode {
                lib: ops::Lib::Libotr,
            },
            1,
            data as u64,
        );
    } else {
        ops::derive(
            Op::Base64Encode {
                lib: ops::Lib::Libotr,
            },
            1,
            binary,
        );
    }
}

/// A data message (`?OTR:AAID`, `?OTR:AAMD`) or a fragment of one.
fn is_data_text(t: &str) -> bool {
    t.starts_with("?OTR:AAMD")
        || t.starts_with("?OTR:AAID")
        || t.starts_with("?OTR|")
        || t.starts_with("?OTR,")
}

/// The versions an OTR query message or whitespace tag offers, if `text`
/// is one (OTR v3 spec, "Query Messages" and "Tagged plaintext messages"):
/// `?OTR?` offers v1, `?OTRv23?` v2 and v3, `?OTR?v2?` v1 and v2; a tag is
/// the base tag followed by one 8-character tag per version.
pub fn offered_versions(text: &str) -> Option<Vec<u8>> {
    if let Some(i) = text.find("?OTR") {
        let rest = &text[i + 4..];
        let mut v = Vec::new();
        let mut r = rest;
        if let Some(after) = r.strip_prefix('?') {
            v.push(1);
            r = after;
        }
        if let Some(after) = r.strip_prefix('v') {
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            if after[digits.len()..].starts_with('?') {
                v.extend(digits.bytes().map(|b| b - b'0'));
            } else if v.is_empty() {
                return None;
            }
        } else if v.is_empty() {
            // "?OTR:" (an encoded message), "?OTR Error:" and the like.
            return None;
        }
        return Some(v);
    }
    let base = " \t  \t\t\t\t \t \t \t  ";
    let i = text.find(base)?;
    let mut v = Vec::new();
    let mut tags = &text[i + base.len()..];
    loop {
        if let Some(r) = tags.strip_prefix("  \t\t  \t ") {
            v.push(2);
            tags = r;
        } else if let Some(r) = tags.strip_prefix("  \t\t  \t\t") {
            v.push(3);
            tags = r;
        } else if let Some(r) = tags.strip_prefix(" \t \t  \t ") {
            v.push(1);
            tags = r;
        } else {
            break;
        }
    }
    Some(v)
}
