//! An `omemo` session: one vodozemac Olm session with the peer's device.

use crate::bundle::{self, Bundle};
use crate::payload::{self, KEY_MATERIAL};
use crate::{info, republished, DeviceMemory, ID, NS_HINTS, NS_OMEMO, RPAD_MAX};
use e2elab_core::claims::ProtocolInfo;
use e2elab_core::ops::{self, CipherAlg, HashAlg, Lib, Op};
use e2elab_core::stanza::{self, SenderMatch};
use e2elab_core::{
    ApiMisuse, DecodeError, Element, Env, Error, Event, Identity, IdentityError, Outbox,
    PeerIdentity, PeerMisbehaved, Protection, Result, Role, SecretBytes, Session, SessionConfig,
    SessionState, StanzaKind, StateExport,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use vodozemac::olm::{
    Account, OlmMessage, Session as Olm, SessionConfig as OlmConfig, SessionPickle,
};
use vodozemac::Curve25519PublicKey;
use zeroize::Zeroizing;

/// Remote ratchet keys remembered to tell a ratchet step (ops derivation).
const SEEN_RATCHET_KEYS: usize = 64;

/// An `omemo` session.
pub struct OmemoSession {
    role: Role,
    local_jid: String,
    local_bare: String,
    peer_jid: e2elab_core::Jid,
    identity: Arc<Identity>,
    own_device: u32,
    /// Our bundle's `<ik>` and `<spk>` (DECISIONS 5).
    own_ik: [u8; 32],
    own_spk: [u8; 32],
    peer: Bundle,
    /// The account, while it may still be needed (DECISIONS 5).
    account: Option<Account>,
    /// The client's memory (DECISIONS 5).
    memory: Arc<Mutex<DeviceMemory>>,
    olm: Option<Olm>,
    complete_kex: bool,
    announced: bool,
    closed: bool,
    /// The ratchet is inactive: our next send makes a ratchet key (vodozemac).
    inactive: bool,
    seen_remote: VecDeque<[u8; 32]>,
    /// The Olm session whose key exchange was answered (DECISIONS 7).
    completed: Option<String>,
    /// Rebuilt from a state export: no account to load (an attacker holding
    /// a session state does not get the identity with it).
    state_only: bool,
}

/// Key material, a session built from a key exchange, the message's
/// ratchet key, and a copy of the current session taken before decrypting.
type Decrypted = (
    Zeroizing<Vec<u8>>,
    Option<Olm>,
    [u8; 32],
    Option<SessionPickle>,
);

impl std::fmt::Debug for OmemoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmemoSession")
            .field("role", &self.role)
            .field("own_device", &self.own_device)
            .field("peer", &self.peer)
            .field("has_olm_session", &self.olm.is_some())
            .finish_non_exhaustive()
    }
}

fn rc(n: u64, bytes: u64, op: Op) {
    ops::derive(op, n, bytes);
}

const KEYGEN: Op = Op::X25519Keygen {
    lib: Lib::RustCrypto,
};
const DH: Op = Op::X25519Dh {
    lib: Lib::RustCrypto,
};
const HKDF: Op = Op::Hkdf {
    hash: HashAlg::Sha256,
    lib: Lib::RustCrypto,
};
const HMAC: Op = Op::Hmac {
    hash: HashAlg::Sha256,
    lib: Lib::RustCrypto,
};

/// The symmetric work of one Olm message of `wire` bytes carrying `plain`
/// bytes (vodozemac's code path, derived): the chain key makes the message
/// key and advances (two HMACs of one byte), HKDF makes 80 bytes of keys,
/// AES-256-CBC over the plaintext (padded), an HMAC over the message.
fn derive_olm_message(plain: usize, wire: usize, decrypt: bool) {
    rc(2, 2, HMAC);
    rc(1, 80, HKDF);
    rc(
        1,
        (plain / 16 + 1) as u64 * 16,
        Op::Cipher {
            alg: CipherAlg::Aes256Cbc,
            decrypt,
            lib: Lib::RustCrypto,
        },
    );
    rc(1, wire.saturating_sub(8) as u64, HMAC);
}

/// vodozemac's failures (MAC, padding, missing key, unknown prekey) are
/// one error to the peer: nothing tells which check failed.
fn olm_error<E>(_: E) -> Error {
    Error::DecryptFailed
}

fn config() -> OlmConfig {
    OlmConfig::version_1()
}

impl OmemoSession {
    pub(crate) fn new(
        config: SessionConfig,
        complete_kex: bool,
        memory: Arc<Mutex<DeviceMemory>>,
    ) -> Result<Self> {
        config.identity.require_protocol(ID)?;
        let peer_public = config
            .peer_public
            .as_ref()
            .ok_or(IdentityError::PeerKeyRequired)?;
        e2elab_core::identity::require_protocol(peer_public, ID)?;
        let peer_bare = config.peer_jid.to_bare().to_string();
        if !stanza::same_jid(&peer_public.jid, &peer_bare, SenderMatch::Bare) {
            return Err(IdentityError::JidMismatch(format!(
                "the bundle is {}'s, the peer is {peer_bare}",
                peer_public.jid
            ))
            .into());
        }
        let peer = Bundle::from_bytes(&peer_public.data)?;
        peer.verify()?;
        let secret = bundle::read_secret(config.identity.secret().expose())?;
        Ok(Self {
            own_ik: secret.ik,
            own_spk: secret.spk,
            role: config.role,
            local_jid: config.local_jid.to_string(),
            local_bare: config.local_jid.to_bare().to_string(),
            peer_jid: config.peer_jid,
            identity: config.identity,
            own_device: secret.device,
            peer,
            account: Some(Account::from_pickle(secret.account)),
            memory,
            olm: None,
            complete_kex,
            announced: false,
            closed: false,
            inactive: false,
            seen_remote: VecDeque::new(),
            completed: None,
            state_only: false,
        })
    }

    /// A session on the peer's side, holding `olm` (made by
    /// [`crate::simulate`]): it writes as the peer's device would. It holds
    /// no account and no peer secret.
    pub(crate) fn mirror(
        config: &SessionConfig,
        peer: Bundle,
        own: Bundle,
        olm: Olm,
    ) -> Result<Self> {
        Ok(Self {
            own_ik: peer.ik,
            own_spk: peer.spk,
            role: match config.role {
                Role::Initiator => Role::Responder,
                Role::Responder => Role::Initiator,
            },
            local_jid: config.peer_jid.to_string(),
            local_bare: config.peer_jid.to_bare().to_string(),
            peer_jid: config.local_jid.clone(),
            identity: config.identity.clone(),
            own_device: peer.device,
            peer: own,
            account: None,
            memory: Arc::default(),
            olm: Some(olm),
            complete_kex: false,
            announced: true,
            closed: false,
            inactive: false,
            seen_remote: VecDeque::new(),
            completed: None,
            state_only: true,
        })
    }

    fn memory(&self) -> Result<std::sync::MutexGuard<'_, DeviceMemory>> {
        self.memory
            .lock()
            .map_err(|_| Error::Backend("OMEMO device memory poisoned".into()))
    }

    /// Remember an accepted key exchange; a used one-time prekey (not the
    /// signed prekey, which stays) leaves the republished bundle.
    fn consume(&mut self, base_key: [u8; 32], otk: [u8; 32]) -> Result<()> {
        if otk == self.own_spk {
            self.memory()?.base_keys.insert(base_key);
            return Ok(());
        }
        {
            let mut mem = self.memory()?;
            mem.base_keys.insert(base_key);
            mem.used_otks.insert(otk);
        }
        republished()
            .lock()
            .map_err(|_| Error::Backend("PEP store poisoned".into()))?
            .entry(self.own_ik)
            .or_default()
            .insert(otk);
        Ok(())
    }

    /// The account, loaded again from the identity if it was dropped.
    fn account(&mut self) -> Result<&mut Account> {
        if self.state_only {
            return Err(IdentityError::UnknownKey(
                "a session rebuilt from a state export holds no account".into(),
            )
            .into());
        }
        if self.account.is_none() {
            let s = bundle::read_secret(self.identity.secret().expose())?;
            self.account = Some(Account::from_pickle(s.account));
        }
        self.account
            .as_mut()
            .ok_or_else(|| Error::Backend("OMEMO account not loaded".into()))
    }

    fn announce(&mut self, out: &mut Outbox) {
        if !self.announced {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_jid.to_bare().to_string(),
                fingerprint: Some(self.peer.fingerprint()),
                sas: None,
                method: "OMEMO bundle: the Ed25519 identity key (from PEP) signs the prekeys"
                    .into(),
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

    /// The Olm session, created from the peer's bundle if there is none:
    /// a one-time prekey chosen by the `Env`, the signed prekey only when
    /// the bundle has none (DECISIONS 3).
    fn outbound(&mut self, env: &mut Env) -> Result<&mut Olm> {
        if self.olm.is_none() {
            // The republished bundle: the prekeys the device has not used.
            let fresh: Vec<[u8; 32]> = {
                let pep = republished()
                    .lock()
                    .map_err(|_| Error::Backend("PEP store poisoned".into()))?;
                let used = pep.get(&self.peer.ik);
                self.peer
                    .prekeys
                    .iter()
                    .map(|(_, k)| *k)
                    .filter(|k| used.is_none_or(|u| !u.contains(k)))
                    .collect()
            };
            let otk = if fresh.is_empty() {
                self.peer.spk
            } else {
                fresh[(env.next_u64() % fresh.len() as u64) as usize]
            };
            let cik = Curve25519PublicKey::from_bytes(self.peer.cik);
            let s = self
                .account()?
                .create_outbound_session(config(), cik, Curve25519PublicKey::from_bytes(otk))
                .map_err(|e| PeerMisbehaved::IllegalParameter(format!("bundle keys: {e}")))?;
            // Base key and first ratchet key; the three agreements of 3DH
            // and the root key from them (DECISIONS 1).
            rc(2, 0, KEYGEN);
            rc(3, 0, DH);
            rc(1, 64, HKDF);
            self.account = None;
            self.inactive = false;
            self.olm = Some(s);
        }
        self.olm
            .as_mut()
            .ok_or_else(|| Error::Backend("no Olm session".into()))
    }

    /// Encrypt `km` through the ratchet: (kex, base64 Olm message).
    fn ratchet_encrypt(&mut self, env: &mut Env, km: &[u8]) -> Result<(bool, String)> {
        let activate = self.inactive;
        let olm = self.outbound(env)?;
        let m = olm.encrypt(km).map_err(olm_error)?;
        if activate {
            rc(1, 0, KEYGEN);
            rc(1, 0, DH);
            rc(1, 64, HKDF);
            self.inactive = false;
        }
        let (t, bytes) = m.to_parts();
        derive_olm_message(km.len(), bytes.len(), false);
        Ok((t == 0, e2elab_core::b64::encode(&bytes)))
    }

    /// `<encrypted>` with one `<key>` and, unless empty, a `<payload>`.
    fn encrypted(&self, kex: bool, key_b64: &str, payload: Option<&[u8]>) -> Result<Element> {
        let mut enc = Element::bare("encrypted", NS_OMEMO);
        let mut header = Element::bare("header", NS_OMEMO);
        stanza::set_attr(&mut header, "sid", &self.own_device.to_string())?;
        let mut keys = Element::bare("keys", NS_OMEMO);
        stanza::set_attr(&mut keys, "jid", &self.peer_jid.to_bare().to_string())?;
        let mut key = stanza::text_element("key", NS_OMEMO, key_b64);
        stanza::set_attr(&mut key, "rid", &self.peer.device.to_string())?;
        if kex {
            stanza::set_attr(&mut key, "kex", "true")?;
        }
        keys.append_child(key);
        header.append_child(keys);
        enc.append_child(header);
        if let Some(p) = payload {
            enc.append_child(stanza::text_element(
                "payload",
                NS_OMEMO,
                &e2elab_core::b64::encode(p),
            ));
        }
        Ok(enc)
    }

    pub(crate) fn protect(&mut self, env: &mut Env, m: Element) -> Result<Element> {
        if m.has_child("encrypted", NS_OMEMO) {
            return Err(ApiMisuse::CannotProtect("already carries <encrypted>".into()).into());
        }
        let mut outer = m.clone();
        let nodes = outer.take_nodes();
        let content: Vec<Element> = m.children().cloned().collect();
        if nodes.len() != content.len() {
            return Err(ApiMisuse::CannotProtect("text directly inside the stanza".into()).into());
        }
        let pad = env.rpad(RPAD_MAX);
        let envelope = e2elab_core::sce::envelope(content, Some(&pad), &self.local_bare)?;
        let plain = Zeroizing::new(stanza::serialize(&envelope));
        let key = Zeroizing::new(env.random_array::<32>());
        let (ct, km) = payload::seal(&key, plain.as_bytes())?;
        let (kex, key_b64) = self.ratchet_encrypt(env, &km)?;
        outer.append_child(self.encrypted(kex, &key_b64, Some(&ct))?);
        outer.append_child(Element::bare("store", NS_HINTS));
        Ok(outer)
    }

    /// An empty OMEMO message (XEP-0384 §5.4): 32 zero bytes through the
    /// ratchet, no payload.
    fn empty_message(&mut self, env: &mut Env) -> Result<Element> {
        let (kex, key_b64) = self.ratchet_encrypt(env, &[0u8; 32])?;
        let mut m = stanza::new(StanzaKind::Message);
        stanza::set_attr(&mut m, "from", &self.local_jid)?;
        stanza::set_attr(&mut m, "to", &self.peer_jid.to_string())?;
        m.append_child(self.encrypted(kex, &key_b64, None)?);
        m.append_child(Element::bare("store", NS_HINTS));
        Ok(m)
    }

    /// The one `<key>` for this device: (kex, Olm message bytes).
    fn our_key(&self, enc: &Element) -> Result<(bool, Vec<u8>)> {
        let mut headers = enc.children().filter(|c| c.is("header", NS_OMEMO));
        let header = headers
            .next()
            .ok_or_else(|| DecodeError::Missing("<header>".into()))?;
        if headers.next().is_some() {
            return Err(DecodeError::invalid("<header>", "more than one").into());
        }
        let sid = header
            .attr("sid")
            .ok_or_else(|| DecodeError::Missing("<header sid>".into()))?;
        let sid = bundle::parse_device(sid)
            .ok_or_else(|| DecodeError::invalid("<header sid>", "not a device id"))?;
        if sid != self.peer.device {
            return Err(IdentityError::UnknownKey(format!(
                "sender device {sid}, the peer's bundle is device {}",
                self.peer.device
            ))
            .into());
        }
        let own = self.own_device.to_string();
        let mut found = None;
        for keys in header.children().filter(|c| c.is("keys", NS_OMEMO)) {
            let jid = keys
                .attr("jid")
                .ok_or_else(|| DecodeError::Missing("<keys jid>".into()))?;
            if !stanza::same_jid(jid, &self.local_bare, SenderMatch::Bare) {
                continue;
            }
            for key in keys.children().filter(|c| c.is("key", NS_OMEMO)) {
                if key.attr("rid") != Some(own.as_str()) {
                    continue;
                }
                if found.is_some() {
                    return Err(DecodeError::invalid("<key>", "two for this device").into());
                }
                found = Some(key);
            }
        }
        let key = found.ok_or_else(|| {
            DecodeError::Missing(format!(
                "a <key> for {} device {own} (not encrypted for this device)",
                self.local_bare
            ))
        })?;
        let kex = match key.attr("kex") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(DecodeError::invalid("<key kex>", "not a boolean").into()),
        };
        if key.children().next().is_some() {
            return Err(DecodeError::invalid("<key>", "child elements").into());
        }
        let text: String = key
            .text()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = e2elab_core::b64::decode(text.as_bytes())
            .map_err(|_| DecodeError::invalid("<key>", "not base64"))?;
        Ok((kex, bytes))
    }

    /// The ops of decrypting a message with ratchet key `r` (derived from
    /// vodozemac's code path): a new remote ratchet key costs an agreement
    /// (and, when our ratchet was inactive, a key pair and a second one).
    fn note_remote_ratchet(&mut self, r: [u8; 32]) {
        if self.seen_remote.contains(&r) {
            return;
        }
        if self.inactive {
            rc(1, 0, KEYGEN);
            rc(2, 0, DH);
            rc(2, 128, HKDF);
        } else {
            rc(1, 0, DH);
            rc(1, 64, HKDF);
        }
        self.inactive = true;
        self.remember(r);
    }

    fn remember(&mut self, r: [u8; 32]) {
        if self.seen_remote.len() == SEEN_RATCHET_KEYS {
            self.seen_remote.pop_front();
        }
        self.seen_remote.push_back(r);
    }

    fn open(&mut self, env: &mut Env, m: &Element, out: &mut Outbox) -> Result<()> {
        let n = m.children().filter(|c| c.is("encrypted", NS_OMEMO)).count();
        if n == 0 {
            out.deliver_unprotected(true, m.clone());
            return Ok(());
        }
        if n > 1 {
            return Err(DecodeError::invalid("<encrypted>", "more than one").into());
        }
        stanza::check_sender(m, &self.peer_jid, SenderMatch::Bare, true)?;
        let enc = m
            .get_child("encrypted", NS_OMEMO)
            .ok_or_else(|| DecodeError::Missing("<encrypted>".into()))?;
        let mut payloads = enc.children().filter(|c| c.is("payload", NS_OMEMO));
        let payload_el = payloads.next();
        if payloads.next().is_some() {
            return Err(DecodeError::invalid("<payload>", "more than one").into());
        }
        let payload = match payload_el {
            Some(p) => {
                if p.children().next().is_some() {
                    return Err(DecodeError::invalid("<payload>", "child elements").into());
                }
                let text: String = p
                    .text()
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                Some(
                    e2elab_core::b64::decode(text.as_bytes())
                        .map_err(|_| DecodeError::invalid("<payload>", "not base64"))?,
                )
            }
            None => None,
        };
        let (kex, bytes) = self.our_key(enc)?;
        let msg = OlmMessage::from_parts(if kex { 0 } else { 1 }, &bytes)
            .map_err(|e| DecodeError::invalid("<key>", format!("not an Olm message: {e}")))?;
        // Decrypt the key material: with the current session (restored from
        // a copy if the payload then fails: DECISIONS 10), or with a new
        // session built from a key exchange, kept only if all checks out.
        let (km, fresh, ratchet_key, snapshot): Decrypted = match &msg {
            OlmMessage::PreKey(pk)
                if self
                    .olm
                    .as_ref()
                    .is_none_or(|s| s.session_id() != pk.session_id()) =>
            {
                if pk.identity_key().to_bytes() != self.peer.cik {
                    return Err(IdentityError::UnknownKey(
                        "the key exchange's identity key is not the bundle's".into(),
                    )
                    .into());
                }
                let otk = pk.one_time_key().to_bytes();
                {
                    let mem = self.memory()?;
                    if mem.base_keys.contains(&pk.base_key().to_bytes()) {
                        return Err(PeerMisbehaved::Replay.into());
                    }
                    if mem.used_otks.contains(&otk) {
                        return Err(IdentityError::UnknownKey(
                            "a one-time prekey this device used up".into(),
                        )
                        .into());
                    }
                }
                let cik = Curve25519PublicKey::from_bytes(self.peer.cik);
                let r = self
                    .account()?
                    .create_inbound_session(config(), cik, pk)
                    .map_err(olm_error)?;
                (
                    Zeroizing::new(r.plaintext),
                    Some(r.session),
                    pk.message().ratchet_key().to_bytes(),
                    None,
                )
            }
            _ => {
                let olm = self
                    .olm
                    .as_mut()
                    .ok_or_else(|| PeerMisbehaved::UnexpectedMessage {
                        got: "a message that is not a key exchange".into(),
                        expected: "a key exchange (no Olm session yet)".into(),
                    })?;
                let r = match &msg {
                    OlmMessage::PreKey(pk) => pk.message().ratchet_key(),
                    OlmMessage::Normal(nm) => nm.ratchet_key(),
                };
                // A copy, kept aside until the payload checks out.
                let snapshot = olm.pickle();
                let p = olm.decrypt(&msg).map_err(olm_error)?;
                (Zeroizing::new(p), None, r.to_bytes(), Some(snapshot))
            }
        };
        let result = self.finish(m, &km, payload.as_deref());
        match (&result, fresh) {
            (Ok(_), Some(s)) => {
                // A new session from a key exchange: three agreements and
                // the root key (DECISIONS 1), then the first message.
                rc(3, 0, DH);
                rc(1, 64, HKDF);
                derive_olm_message(km.len(), bytes.len(), true);
                if let OlmMessage::PreKey(pk) = &msg {
                    self.consume(pk.base_key().to_bytes(), pk.one_time_key().to_bytes())?;
                }
                self.olm = Some(s);
                self.account = None;
                self.inactive = true;
                self.seen_remote.clear();
                self.remember(ratchet_key);
            }
            (Ok(_), None) => {
                self.note_remote_ratchet(ratchet_key);
                derive_olm_message(km.len(), bytes.len(), true);
            }
            (Err(_), fresh) => {
                if let Some(p) = snapshot {
                    self.olm = Some(Olm::from_pickle(p));
                }
                if fresh.is_some() {
                    // vodozemac removed the one-time prekey from the account
                    // when the Olm message decrypted: load it afresh.
                    self.account = None;
                }
            }
        }
        let delivered = result?;
        if let Some(d) = delivered {
            let label =
                Protection::all(&d, true, true, format!("omemo:{}", self.peer.fingerprint()));
            out.deliver(d, label);
        }
        if self.complete_kex && self.first_kex_of_session(&msg) {
            let reply = self.empty_message(env)?;
            out.send(reply);
        }
        Ok(())
    }

    /// Answer a key exchange that built this session (DECISIONS 7): once,
    /// for the first key exchange of a session.
    fn first_kex_of_session(&mut self, msg: &OlmMessage) -> bool {
        let OlmMessage::PreKey(pk) = msg else {
            return false;
        };
        let id = pk.session_id();
        if self.completed.as_deref() == Some(id.as_str()) {
            return false;
        }
        self.completed = Some(id);
        true
    }

    /// Check the key material against the payload and parse the envelope:
    /// the stanza to deliver, or `None` for an empty OMEMO message.
    fn finish(&self, m: &Element, km: &[u8], payload: Option<&[u8]>) -> Result<Option<Element>> {
        let Some(ct) = payload else {
            if km.len() == 32 && km.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            return Err(DecodeError::Missing("<payload>".into()).into());
        };
        if km.len() != KEY_MATERIAL {
            return Err(DecodeError::invalid("key material", "not 48 bytes").into());
        }
        let plain = payload::open(km, ct)?;
        let xml = std::str::from_utf8(&plain)
            .map_err(|_| DecodeError::invalid("<envelope>", "not UTF-8"))?;
        let opened = e2elab_core::sce::parse_envelope(xml)?;
        // XEP-0420 §5: the <from> affix must name the stanza's sender.
        e2elab_core::sce::check_from(&opened, &self.peer_jid.to_bare().to_string())?;
        let mut d = m.clone();
        let _ = d.take_nodes();
        for c in opened.content {
            d.append_child(c);
        }
        Ok(Some(d))
    }
}

/// What [`OmemoSession::dangerous_export_state`] exports (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Exported {
    kind: String,
    own_device: u32,
    peer_device: u32,
    inactive: bool,
    session: Option<SessionPickle>,
}

/// A session rebuilt from an exported state with `config` (the security
/// experiments' attacker holding a compromised device's state: she reads
/// what the state decrypts and follows the ratchet as far as it lets her).
pub fn restore(state: &StateExport, config: SessionConfig) -> Result<OmemoSession> {
    if state.protocol != ID {
        return Err(IdentityError::WrongProtocol {
            expected: ID.into(),
            found: state.protocol.clone(),
        }
        .into());
    }
    let e: Exported = serde_json::from_slice(state.data.expose())
        .map_err(|e| IdentityError::Malformed(format!("OMEMO state: {e}")))?;
    let mut s = OmemoSession::new(config, false, Arc::default())?;
    if e.own_device != s.own_device || e.peer_device != s.peer.device {
        return Err(IdentityError::Malformed("OMEMO state: other devices".into()).into());
    }
    s.olm = e.session.map(Olm::from_pickle);
    s.account = None;
    s.state_only = true;
    s.inactive = e.inactive;
    s.announced = true;
    Ok(s)
}

impl Session for OmemoSession {
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

    fn send(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let wire = match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => self.protect(env, stanza)?,
            Some(k) => {
                return Err(ApiMisuse::CannotProtect(format!(
                    "{} (OMEMO protects messages; DECISIONS 11)",
                    k.name()
                ))
                .into())
            }
            None => return Err(ApiMisuse::CannotProtect(stanza.name().to_string()).into()),
        };
        self.announce(out);
        out.send(wire);
        Ok(())
    }

    fn handle_inbound(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let cp = out.checkpoint();
        let announced = self.announced;
        self.announce(out);
        let r = match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => self.open(env, &stanza, out),
            Some(_) => {
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
            self.announced = announced;
        }
        r
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        self.olm = None;
        self.account = None;
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<StateExport> {
        let e = Exported {
            kind: "omemo".into(),
            own_device: self.own_device,
            peer_device: self.peer.device,
            inactive: self.inactive,
            session: self.olm.as_ref().map(Olm::pickle),
        };
        let data =
            serde_json::to_vec(&e).map_err(|e| Error::Backend(format!("OMEMO state: {e}")))?;
        Ok(StateExport {
            protocol: ID.to_string(),
            role: self.role,
            data: SecretBytes::new(data),
        })
    }
}
