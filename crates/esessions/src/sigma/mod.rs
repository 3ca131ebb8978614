//! The XEP-0116 v0.16 negotiation (3-message SIGMA-I, 4-message SIGMA-R with
//! hash commitment, and the XEP-0217 subset) and the session around it.

use crate::channel::{self, lsb, Channel, DirKeys, Suite, NS_C};
use crate::form::{EmptyStyle, Field, Form, NS_DATA};
use crate::keys;
use crate::prim::{self, DhPrivate, ExponentSize, Group, Ops};
use crate::{Profile, Store, Weakness};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{
    stanza, ApiMisuse, DecodeError, Element, Env, Error, Event, IdentityError, Outbox,
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
const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Identification methods (`init_pubkey`, `resp_pubkey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// A `<KeyValue/>` inside the encrypted identity.
    Key,
    /// A `<fingerprint/>` of it.
    Hash,
    /// No public key: the identity is the encrypted MAC.
    None,
}

impl KeyMode {
    fn name(self) -> &'static str {
        match self {
            KeyMode::Key => "key",
            KeyMode::Hash => "hash",
            KeyMode::None => "none",
        }
    }

    fn parse(s: &str) -> Option<KeyMode> {
        match s {
            "key" => Some(KeyMode::Key),
            "hash" => Some(KeyMode::Hash),
            "none" => Some(KeyMode::None),
            _ => None,
        }
    }
}

/// Settings from the profile and its options.
#[derive(Clone)]
pub struct Settings {
    /// 3 or 4 messages.
    pub four: bool,
    /// XEP-0217 field set.
    pub simplified: bool,
    /// MODP groups offered (preference order).
    pub modp: Vec<u32>,
    /// Ciphers offered.
    pub crypt: Vec<String>,
    /// What we offer and accept for `init_pubkey`.
    pub init_pubkey: KeyMode,
    /// What we offer and accept for `resp_pubkey`.
    pub resp_pubkey: KeyMode,
    /// Exponent size.
    pub exponent: ExponentSize,
    /// `rekey_freq` offered / minimum accepted.
    pub rekey_freq: u64,
    /// Start a rekey after this many of our stanzas (0 = never).
    pub rekey_every: u64,
    /// Other shared secret.
    pub oss: Option<SecretBytes>,
    /// Reproduce Gajim's deviations.
    pub gajim: bool,
    /// Stanza kinds offered.
    pub stanzas: Vec<StanzaKind>,
    /// Publish old MAC keys after acknowledged rekeys.
    pub publish_old: bool,
    /// The known-bad control this session is, if any (family `control`).
    pub weakness: Option<Weakness>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("four", &self.four)
            .field("modp", &self.modp)
            .field("init_pubkey", &self.init_pubkey)
            .field("resp_pubkey", &self.resp_pubkey)
            .field("gajim", &self.gajim)
            .field("weakness", &self.weakness)
            .finish_non_exhaustive()
    }
}

const OPTION_KEYS: &[&str] = &[
    "modp",
    "crypt",
    "init_pubkey",
    "resp_pubkey",
    "exponent",
    "rekey_freq",
    "rekey_every",
    "oss",
    "gajim-compat",
    "stanzas",
    "publish_old",
];

/// Option keys and their meaning, for `e2elab list`.
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "modp",
        "MODP groups to offer, comma-separated in preference order (default 14)",
    ),
    (
        "crypt",
        "ciphers to offer: aes128-ctr, aes192-ctr, aes256-ctr (default aes128-ctr)",
    ),
    (
        "init_pubkey",
        "key | hash | none (sigma profiles; default key)",
    ),
    (
        "resp_pubkey",
        "key | hash | none (sigma profiles; default key)",
    ),
    (
        "exponent",
        "full (x uniform below p-1, default) | short (2n = 256-bit x)",
    ),
    (
        "rekey_freq",
        "minimum stanzas between rekeys to negotiate (default 1)",
    ),
    (
        "rekey_every",
        "start a rekey after this many of our stanzas (default 0 = never)",
    ),
    ("oss", "other shared secret (a password agreed out of band)"),
    (
        "gajim-compat",
        "true: reproduce Gajim 0.11-1.0's deviations (sigma-r, key mode none)",
    ),
    (
        "stanzas",
        "stanza kinds to offer: message,presence,iq (default all three)",
    ),
    (
        "publish_old",
        "publish old MAC keys after an acknowledged rekey (default true)",
    ),
];

impl Settings {
    /// From a profile and options.
    pub fn from(
        profile: Profile,
        o: &e2elab_core::Options,
        weakness: Option<Weakness>,
    ) -> Result<Settings> {
        o.check_known(OPTION_KEYS)?;
        let gajim = o.get_bool("gajim-compat", false)?;
        let simplified = profile == Profile::Simplified;
        let four = profile != Profile::SigmaI;
        let mode = |k: &str, d: KeyMode| -> Result<KeyMode> {
            match o.get(k) {
                None => Ok(d),
                Some(v) => KeyMode::parse(v).ok_or_else(|| bad(k, "key, hash or none")),
            }
        };
        let default_mode = if simplified || gajim || weakness == Some(Weakness::AnonDh) {
            KeyMode::None
        } else {
            KeyMode::Key
        };
        let init_pubkey = mode("init_pubkey", default_mode)?;
        let resp_pubkey = mode("resp_pubkey", default_mode)?;
        if simplified && (init_pubkey != KeyMode::None || resp_pubkey != KeyMode::None) {
            return Err(bad("init_pubkey", "XEP-0217 uses no public keys"));
        }
        if !four && (init_pubkey == KeyMode::None || resp_pubkey == KeyMode::None) {
            return Err(bad(
                "init_pubkey",
                "'none' MUST NOT be used with 3-message negotiation",
            ));
        }
        if gajim
            && (profile != Profile::SigmaR
                || init_pubkey != KeyMode::None
                || resp_pubkey != KeyMode::None)
        {
            return Err(bad(
                "gajim-compat",
                "only for esessions-sigma-r with key mode none",
            ));
        }
        let default_modp = if gajim { "15,16,14" } else { "14" };
        let modp = o
            .get("modp")
            .unwrap_or(default_modp)
            .split(',')
            .map(|s| s.trim().parse::<u32>().map_err(|_| bad("modp", "numbers")))
            .collect::<Result<Vec<u32>>>()?;
        for g in &modp {
            if !prim::SUPPORTED_GROUPS.contains(g) {
                return Err(bad("modp", &format!("unsupported group {g}")));
            }
        }
        if modp.is_empty() {
            return Err(bad("modp", "empty"));
        }
        let crypt: Vec<String> = o
            .get("crypt")
            .unwrap_or("aes128-ctr")
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        for c in &crypt {
            if cipher_key_len(c).is_none() || (simplified && c != "aes128-ctr") {
                return Err(bad("crypt", &format!("unsupported cipher {c}")));
            }
        }
        let exponent = match o.get("exponent").unwrap_or("full") {
            "full" => ExponentSize::Full,
            "short" => ExponentSize::Short,
            _ => return Err(bad("exponent", "full or short")),
        };
        let rekey_freq = if simplified {
            4_294_967_295
        } else {
            o.get_u64("rekey_freq", 1)?
        };
        if rekey_freq == 0 || rekey_freq >= 1 << 32 {
            return Err(bad("rekey_freq", "1 ..= 2^32-1"));
        }
        let rekey_every = o.get_u64("rekey_every", 0)?;
        if weakness == Some(Weakness::StaticDh) && rekey_every != 0 {
            return Err(bad("rekey_every", "the static-DH control never rekeys"));
        }
        if simplified && rekey_every != 0 {
            return Err(bad("rekey_every", "XEP-0217 does not rekey"));
        }
        let stanzas = o
            .get("stanzas")
            .unwrap_or("message,presence,iq")
            .split(',')
            .map(|s| match s.trim() {
                "message" => Ok(StanzaKind::Message),
                "presence" => Ok(StanzaKind::Presence),
                "iq" => Ok(StanzaKind::Iq),
                _ => Err(bad("stanzas", "message, presence, iq")),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Settings {
            four,
            simplified,
            modp,
            crypt,
            init_pubkey,
            resp_pubkey,
            exponent,
            rekey_freq,
            rekey_every,
            oss: o.get("oss").map(|s| SecretBytes::from_slice(s.as_bytes())),
            gajim,
            stanzas,
            publish_old: o.get_bool("publish_old", true)?,
            weakness,
        })
    }

    fn empty_style(&self) -> EmptyStyle {
        if self.gajim {
            EmptyStyle::Gajim
        } else {
            EmptyStyle::StartEnd
        }
    }

    fn nonce_len(&self) -> usize {
        if self.gajim {
            8
        } else {
            16
        }
    }

    fn logging_field(&self) -> (&'static str, [&'static str; 2]) {
        if self.gajim {
            ("logging", ["mustnot", "may"])
        } else {
            ("otr", ["false", "true"])
        }
    }
}

fn bad(key: &str, reason: &str) -> Error {
    ApiMisuse::BadOption {
        key: key.into(),
        reason: reason.into(),
    }
    .into()
}

fn cipher_key_len(name: &str) -> Option<usize> {
    match name {
        "aes128-ctr" => Some(16),
        "aes192-ctr" => Some(24),
        "aes256-ctr" => Some(32),
        _ => None,
    }
}

/// What Bob chose (or what Alice learned he chose).
#[derive(Debug, Clone)]
struct Chosen {
    group: u32,
    crypt: String,
    init_pubkey: KeyMode,
    resp_pubkey: KeyMode,
    stanzas: Vec<StanzaKind>,
    rekey_freq: u64,
}

/// Keys of one side for the SIGMA proof: cipher, MAC and SIGMA keys.
struct ProofKeys {
    kc: SecretBytes,
    km: SecretBytes,
    ks: SecretBytes,
}

fn derive(k: &SecretBytes, who: &str, key_len: usize) -> Result<ProofKeys> {
    let h = |label: String| prim::hmac_sha256(k.expose(), &[label.as_bytes()]);
    Ok(ProofKeys {
        kc: lsb(&h(format!("{who} Cipher Key"))?, key_len),
        km: lsb(&h(format!("{who} MAC Key"))?, 32),
        ks: lsb(&h(format!("{who} SIGMA Key"))?, 32),
    })
}

fn b64d(field: &str, s: &str) -> Result<Vec<u8>> {
    b64::decode(s.trim()).map_err(|_| DecodeError::invalid(field, "not base64").into())
}

fn bn(field: &str, s: &str) -> Result<BigNum> {
    let b = b64d(field, s)?;
    BigNum::from_slice(&b).map_err(backend)
}

/// sas28x5 (XEP-0116 §"The sas28x5 SAS Algorithm"): most significant digit first, zero-padded.
pub fn sas28x5(m_a: &[u8], form_b: &[u8], pad: bool) -> Result<String> {
    const DIGITS: &[u8] = b"acdefghikmopqruvwxy123456789";
    let h = prim::sha256(&[m_a, form_b, b"Short Authentication String"])?;
    let mut v = u32::from_be_bytes([0, h[29], h[30], h[31]]);
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 28) as usize]);
        v /= 28;
        if v == 0 && (!pad || out.len() >= 5) {
            break;
        }
    }
    out.reverse();
    Ok(String::from_utf8_lossy(&out).into_owned())
}

enum St {
    Idle,
    /// Alice sent message 1.
    AwaitResponse {
        thread: String,
        n_a: Vec<u8>,
        dh: Vec<(u32, DhPrivate, BigNum)>,
        form_a: Vec<u8>,
        offered: Form,
    },
    /// Alice sent message 3 (4-message mode).
    AwaitInit(Box<AliceAwaitInit>),
    /// Bob sent message 2 (4-message) or message 2 with his identity (3-message).
    AwaitAccept(Box<BobAwaitAccept>),
    Established(Box<Channel>),
    /// We sent a terminate form; waiting for the acknowledgement.
    Terminating(Box<Channel>),
    Closed,
}

struct AliceAwaitInit {
    chosen: Chosen,
    group: Group,
    x: DhPrivate,
    d: BigNum,
    k: SecretBytes,
    n_a: Vec<u8>,
    n_b: Vec<u8>,
    form_b: Vec<u8>,
    m_a: [u8; 32],
    c_a: u128,
    c_b: u128,
}

struct BobAwaitAccept {
    thread: String,
    chosen: Chosen,
    group: Group,
    y: DhPrivate,
    d: BigNum,
    n_a: Vec<u8>,
    n_b: Vec<u8>,
    form_a: Vec<u8>,
    form_b: Vec<u8>,
    c_a: u128,
    c_b: u128,
    /// 4-message: Alice's commitment to e. 3-message: e itself and the keys already derived.
    he_or_e: Vec<u8>,
    three: Option<(ProofKeys, ProofKeys)>,
}

/// An ESession (SIGMA profiles).
pub struct SigmaSession {
    profile: Profile,
    settings: Settings,
    role: Role,
    local: String,
    peer: String,
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

/// Retained secrets shared with the peer's clients, and their store keys.
type RetainedList = (Vec<SecretBytes>, Vec<(String, String)>);

/// The outcome of checking a peer's identity proof.
struct Verified {
    fingerprint: Option<String>,
    warnings: Vec<Warning>,
    ctr_after: u128,
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
        })
    }

    fn message(&self, thread: &str) -> Result<Element> {
        let mut m = stanza::new(StanzaKind::Message);
        stanza::set_attr(&mut m, "from", &self.local)?;
        stanza::set_attr(&mut m, "to", &self.peer)?;
        m.append_child(stanza::text_element("thread", stanza::NS_CLIENT, thread));
        Ok(m)
    }

    fn feature(form: &Form) -> Element {
        let mut f = Element::bare("feature", NS_FEATURE);
        f.append_child(form.to_element());
        f
    }

    fn norm(&self, f: &Form) -> Vec<u8> {
        f.normalized(self.settings.empty_style())
    }

    fn field_type<'a>(&self, t: &'a str) -> Option<&'a str> {
        // Gajim types every field of its response form text-single; the spec's examples type none.
        if self.settings.gajim {
            Some("text-single")
        } else {
            let _ = t;
            None
        }
    }

    fn suite(&self, chosen: &Chosen) -> Suite {
        Suite {
            key_len: if self.settings.gajim {
                32
            } else {
                cipher_key_len(&chosen.crypt).unwrap_or(16)
            },
            n_bits: 128,
            exponent: self.settings.exponent,
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

    fn sign_algs_used(&self) -> bool {
        !(self.settings.init_pubkey == KeyMode::None && self.settings.resp_pubkey == KeyMode::None)
    }

    // ---------- message 1 ----------

    fn request(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        let mut dh = Vec::new();
        for g in &self.settings.modp.clone() {
            let group = Group::get(*g)?;
            let (x, e) = self.dh_keygen(env, &group)?;
            dh.push((*g, x, e));
        }
        let n_a = {
            let mut n = vec![0u8; self.settings.nonce_len()];
            env.fill(&mut n);
            n
        };
        let thread = keys::hex_lower(&env.random_array::<16>());
        let s = &self.settings;
        let (log_var, log_opts) = s.logging_field();
        let mut f = Form::new("form");
        f.push(Field::typed("FORM_TYPE", "hidden", vec![FORM_TYPE.into()]));
        f.push(Field::typed("accept", "boolean", vec!["1".into()]).required());
        f.push(
            Field::options(
                log_var,
                "list-single",
                log_opts.iter().map(|s| s.to_string()).collect(),
            )
            .required(),
        );
        f.push(Field::options("disclosure", "list-single", vec!["never".into()]).required());
        f.push(Field::options("security", "list-single", vec!["e2e".into()]).required());
        f.push(Field::options(
            "modp",
            "list-single",
            s.modp.iter().map(u32::to_string).collect(),
        ));
        f.push(Field::options("crypt_algs", "list-single", s.crypt.clone()));
        f.push(Field::options(
            "hash_algs",
            "list-single",
            vec!["sha256".into()],
        ));
        if self.sign_algs_used() {
            f.push(Field::options(
                "sign_algs",
                "list-single",
                vec![keys::RSA_SHA256.into()],
            ));
        }
        f.push(Field::options(
            "compress",
            "list-single",
            vec!["none".into()],
        ));
        f.push(Field::options(
            "stanzas",
            "list-multi",
            s.stanzas.iter().map(|k| k.name().to_string()).collect(),
        ));
        f.push(Field::options(
            "init_pubkey",
            "list-single",
            vec![s.init_pubkey.name().into()],
        ));
        f.push(Field::options(
            "resp_pubkey",
            "list-single",
            vec![s.resp_pubkey.name().into()],
        ));
        f.push(Field::options("ver", "list-single", vec!["1.0".into()]));
        f.push(Field::typed(
            "rekey_freq",
            "text-single",
            vec![s.rekey_freq.to_string()],
        ));
        f.push(Field::typed("my_nonce", "hidden", vec![b64::encode(&n_a)]));
        if s.four {
            f.push(Field::options(
                "sas_algs",
                "list-single",
                vec!["sas28x5".into()],
            ));
            let hashes = dh
                .iter()
                .map(|(_, _, e)| prim::sha256(&[&e.to_vec()]).map(b64::encode))
                .collect::<Result<Vec<_>>>()?;
            f.push(Field::typed("dhhashes", "hidden", hashes));
        } else {
            f.push(Field::typed(
                "dhkeys",
                "hidden",
                dh.iter().map(|(_, _, e)| b64::encode(e.to_vec())).collect(),
            ));
        }
        let mut m = self.message(&thread)?;
        m.append_child(Self::feature(&f));
        let mut amp = Element::bare("amp", NS_AMP);
        stanza::set_attr(&mut amp, "per-hop", "true")?;
        let mut rule = Element::bare("rule", NS_AMP);
        stanza::set_attr(&mut rule, "action", "drop")?;
        stanza::set_attr(&mut rule, "condition", "deliver")?;
        stanza::set_attr(&mut rule, "value", "stored")?;
        amp.append_child(rule);
        m.append_child(amp);
        let form_a = self.norm(&f);
        out.send(m);
        self.thread = thread.clone();
        self.st = St::AwaitResponse {
            thread,
            n_a,
            dh,
            form_a,
            offered: f,
        };
        Ok(())
    }

    // ---------- identity proofs ----------

    #[allow(clippy::too_many_arguments)]
    fn prove(
        &mut self,
        pk: &ProofKeys,
        ctr: u128,
        first: &[u8],
        second: &[u8],
        dh: &BigNum,
        forms: &[&[u8]],
        mode: KeyMode,
    ) -> Result<(Vec<u8>, [u8; 32], u128)> {
        let weakness = self.settings.weakness;
        let pubkey: &[u8] = if mode == KeyMode::None {
            b""
        } else {
            &self.key_value
        };
        let dh_bytes = dh.to_vec();
        if weakness == Some(Weakness::UnboundIdentity) {
            // "BADH": the identity and a signature over the nonces and the DH
            // value only, in clear; no SIGMA MAC binds the identity to K.
            let key = self
                .key
                .as_ref()
                .ok_or_else(|| IdentityError::Malformed("no private key".into()))?;
            let data = [first, second, &dh_bytes].concat();
            let sig = self.ops.rsa_sign(key, MessageDigest::sha256(), &data)?;
            let mut pt = self.key_value.clone();
            pt.extend_from_slice(
                format!("<SignatureValue>{}</SignatureValue>", b64::encode(sig)).as_bytes(),
            );
            return Ok((pt, [0u8; 32], ctr));
        }
        let no_forms: [&[u8]; 0] = [];
        let forms = if weakness == Some(Weakness::UnsignedOffer) {
            &no_forms[..]
        } else {
            forms
        };
        let mut parts: Vec<&[u8]> = vec![first, second, &dh_bytes, pubkey];
        parts.extend_from_slice(forms);
        let mac = prim::hmac_sha256(pk.ks.expose(), &parts)?;
        let plaintext = match mode {
            KeyMode::None => mac.to_vec(),
            KeyMode::Key | KeyMode::Hash => {
                let key = self
                    .key
                    .as_ref()
                    .ok_or_else(|| IdentityError::Malformed("no private key".into()))?;
                let sig = self.ops.rsa_sign(key, MessageDigest::sha256(), &mac)?;
                let mut pt = if mode == KeyMode::Key {
                    self.key_value.clone()
                } else {
                    keys::fingerprint_element(&self.key_value)?
                };
                pt.extend_from_slice(
                    format!("<SignatureValue>{}</SignatureValue>", b64::encode(sig)).as_bytes(),
                );
                pt
            }
        };
        let id = if weakness == Some(Weakness::ClearIdentity) {
            plaintext
        } else {
            prim::aes_ctr(pk.kc.expose(), ctr, &plaintext)?
        };
        let m = prim::hmac_sha256(pk.km.expose(), &[&prim::counter_bytes(ctr), &id])?;
        let after = ctr.wrapping_add(prim::blocks(id.len()));
        Ok((id, m, after))
    }

    #[allow(clippy::too_many_arguments)]
    fn verify(
        &mut self,
        pk: &ProofKeys,
        ctr: u128,
        id: &[u8],
        m: &[u8],
        first: &[u8],
        second: &[u8],
        dh: &BigNum,
        forms: &[&[u8]],
        mode: KeyMode,
    ) -> Result<Verified> {
        let weakness = self.settings.weakness;
        let unbound = weakness == Some(Weakness::UnboundIdentity);
        let want = prim::hmac_sha256(pk.km.expose(), &[&prim::counter_bytes(ctr), id])?;
        if !unbound && !e2elab_core::ct_eq(&want, m) {
            return Err(Error::DecryptFailed);
        }
        let pt = if unbound || weakness == Some(Weakness::ClearIdentity) {
            id.to_vec()
        } else {
            prim::aes_ctr(pk.kc.expose(), ctr, id)?
        };
        let dh_bytes = dh.to_vec();
        let ctr_after = if unbound {
            ctr
        } else {
            ctr.wrapping_add(prim::blocks(id.len()))
        };
        let no_forms: [&[u8]; 0] = [];
        let forms = if weakness == Some(Weakness::UnsignedOffer) {
            &no_forms[..]
        } else {
            forms
        };
        if mode == KeyMode::None {
            let mut parts: Vec<&[u8]> = vec![first, second, &dh_bytes, b""];
            parts.extend_from_slice(forms);
            let mac = prim::hmac_sha256(pk.ks.expose(), &parts)?;
            if !e2elab_core::ct_eq(&mac, &pt) {
                return Err(Error::DecryptFailed);
            }
            self.peer_proof = Some(ProofRecord {
                mode: "none".into(),
                ks: hex::encode(pk.ks.expose()),
                parts: parts.iter().map(hex::encode).collect(),
                signed: hex::encode(mac),
                sig: String::new(),
                key_value: String::new(),
            });
            return Ok(Verified {
                fingerprint: None,
                warnings: Vec::new(),
                ctr_after,
            });
        }
        let frag = keys::parse_fragment(&pt)?;
        let sig_el = frag
            .children()
            .find(|c| c.name() == "SignatureValue")
            .ok_or_else(|| DecodeError::Missing("SignatureValue".into()))?;
        let sig = b64d("SignatureValue", &sig_el.text())?;
        let pinned: Option<Vec<u8>> = self.peer_public.as_ref().map(|p| p.data.clone());
        let peer_bare = stanza::bare_jid(&self.peer).to_string();
        let local_bare = stanza::bare_jid(&self.local).to_string();
        let remembered = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?
            .known_keys
            .get(&(local_bare.clone(), peer_bare.clone()))
            .cloned();
        let kv: Vec<u8> = match mode {
            KeyMode::Key => {
                let kv_el = frag
                    .children()
                    .find(|c| c.name() == "KeyValue")
                    .ok_or_else(|| DecodeError::Missing("KeyValue".into()))?;
                // Re-normalize what arrived.
                let pk = keys::public_from_key_value(kv_el)?;
                let rsa = pk.rsa().map_err(backend)?;
                keys::key_value(&rsa.n().to_vec(), &rsa.e().to_vec())
            }
            _ => {
                let fp_el = frag
                    .children()
                    .find(|c| c.name() == "fingerprint")
                    .ok_or_else(|| DecodeError::Missing("fingerprint".into()))?;
                let fp = fp_el.text();
                [pinned.clone(), remembered.clone()]
                    .into_iter()
                    .flatten()
                    .find(|kv| {
                        keys::fingerprint_element(kv)
                            .map(|f| {
                                f == format!("<fingerprint>{}</fingerprint>", fp.trim())
                                    .into_bytes()
                            })
                            .unwrap_or(false)
                    })
                    .ok_or_else(|| IdentityError::UnknownKey(fp.trim().to_string()))?
            }
        };
        let mut parts: Vec<&[u8]> = vec![first, second, &dh_bytes, &kv];
        parts.extend_from_slice(forms);
        let (signed, record_parts, record_ks, record_mode) = if unbound {
            let data = [first, second, &dh_bytes].concat();
            (data, Vec::new(), String::new(), "unbound")
        } else {
            let mac = prim::hmac_sha256(pk.ks.expose(), &parts)?;
            (
                mac.to_vec(),
                parts.iter().map(hex::encode).collect(),
                hex::encode(pk.ks.expose()),
                mode.name(),
            )
        };
        let mac = &signed;
        // Only pinned keys go into the shared parsed-key cache: a key from the
        // wire is parsed afresh, so unauthenticated input cannot grow the cache.
        let pubkey = if pinned.as_deref() == Some(kv.as_slice()) {
            Store::public_key(&self.store, &kv, keys::public_from_bytes)?
        } else {
            keys::public_from_bytes(&kv)?
        };
        if !self
            .ops
            .rsa_verify(&pubkey, MessageDigest::sha256(), mac, &sig)?
        {
            return Err(PeerMisbehaved::BadSignature.into());
        }
        let record = ProofRecord {
            mode: record_mode.into(),
            ks: record_ks,
            parts: record_parts,
            signed: hex::encode(mac),
            sig: hex::encode(&sig),
            key_value: hex::encode(&kv),
        };
        // Key-to-JID association.
        let fp = keys::fingerprint_hex(&kv)?;
        let mut warnings = Vec::new();
        if let Some(p) = &pinned {
            if *p != kv {
                return Err(IdentityError::JidMismatch(peer_bare).into());
            }
        } else {
            match &remembered {
                None => warnings.push(Warning::Unauthenticated {
                    reason: format!(
                        "first key seen for {peer_bare} ({fp}): verify it or compare the SAS"
                    ),
                }),
                Some(old) if *old != kv => warnings.push(Warning::KeyChanged {
                    jid: peer_bare.clone(),
                    old: keys::fingerprint_hex(old)?,
                    new: fp.clone(),
                }),
                Some(_) => {}
            }
        }
        // Remembered only once the session is established (see `establish`).
        self.pending_key = Some(((local_bare, peer_bare), kv));
        self.peer_proof = Some(record);
        Ok(Verified {
            fingerprint: Some(fp),
            warnings,
            ctr_after,
        })
    }

    // ---------- Bob: message 1 -> message 2 ----------

    fn on_request(
        &mut self,
        env: &mut Env,
        thread: String,
        form_a: Form,
        out: &mut Outbox,
    ) -> Result<()> {
        if form_a.ftype != "form" {
            return Err(unexpected("request form", &form_a.ftype));
        }
        check_value(&form_a, "FORM_TYPE", FORM_TYPE)?;
        let has = |var: &str, v: &str| {
            form_a
                .field(var)
                .is_some_and(|f| f.options.iter().any(|o| o == v))
        };
        let mut unsupported = Vec::new();
        let three = form_a.field("dhkeys").is_some();
        if three == self.settings.four || (form_a.field("dhhashes").is_some() == three) {
            // The other variant, or both, or neither.
            out.send(self.error_stanza(
                &thread,
                "feature-not-implemented",
                &[if three { "dhkeys" } else { "dhhashes" }],
            )?);
            return Err(Error::Unsupported(format!(
                "{}-message negotiation",
                if three { 3 } else { 4 }
            )));
        }
        let modp_opts = form_a
            .field("modp")
            .map(|f| f.options.clone())
            .unwrap_or_default();
        let mut group = None;
        for (i, g) in modp_opts.iter().enumerate() {
            if let Ok(id) = g.parse::<u32>() {
                if prim::SUPPORTED_GROUPS.contains(&id) {
                    group = Some((id, i));
                    break;
                }
            }
        }
        if group.is_none() {
            unsupported.push("modp");
        }
        let crypt = form_a.field("crypt_algs").and_then(|f| {
            f.options
                .iter()
                .find(|o| self.settings.crypt.contains(o))
                .cloned()
        });
        if crypt.is_none() {
            unsupported.push("crypt_algs");
        }
        for (var, v) in [
            ("hash_algs", "sha256"),
            ("compress", "none"),
            ("security", "e2e"),
            ("ver", "1.0"),
        ] {
            if !has(var, v) {
                unsupported.push(var);
            }
        }
        if self.settings.four && !has("sas_algs", "sas28x5") {
            unsupported.push("sas_algs");
        }
        if self.sign_algs_used() && !has("sign_algs", keys::RSA_SHA256) {
            unsupported.push("sign_algs");
        }
        if !has("init_pubkey", self.settings.init_pubkey.name()) {
            unsupported.push("init_pubkey");
        }
        if !has("resp_pubkey", self.settings.resp_pubkey.name()) {
            unsupported.push("resp_pubkey");
        }
        let stanzas: Vec<StanzaKind> = self
            .settings
            .stanzas
            .iter()
            .copied()
            .filter(|k| has("stanzas", k.name()))
            .collect();
        if stanzas.is_empty() {
            unsupported.push("stanzas");
        }
        let alice_freq: u64 = form_a
            .value("rekey_freq")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|v| *v >= 1 && *v < 1 << 32)
            .unwrap_or(0);
        if alice_freq == 0 {
            unsupported.push("rekey_freq");
        }
        let (log_var, log_opts) = self.settings.logging_field();
        let logging = form_a.field(log_var).and_then(|f| {
            f.options
                .iter()
                .find(|o| log_opts.contains(&o.as_str()))
                .cloned()
        });
        if logging.is_none() {
            unsupported.push(log_var);
        }
        if !has("disclosure", "never") {
            unsupported.push("disclosure");
        }
        let n_a = b64d("my_nonce", form_a.value("my_nonce")?)?;
        let (Some((group_id, gi)), Some(crypt), Some(logging)) = (group, crypt, logging) else {
            out.send(self.error_stanza(&thread, "not-acceptable", &unsupported)?);
            return Err(PeerMisbehaved::IllegalParameter(unsupported.join(",")).into());
        };
        if !unsupported.is_empty() {
            out.send(self.error_stanza(&thread, "not-acceptable", &unsupported)?);
            return Err(PeerMisbehaved::IllegalParameter(unsupported.join(",")).into());
        }
        let commits = form_a.values(if three { "dhkeys" } else { "dhhashes" })?;
        if commits.len() != modp_opts.len() {
            return Err(DecodeError::invalid("dhhashes", "one value per offered group").into());
        }
        let he_or_e = b64d("dhhashes", &commits[gi])?;
        let g = Group::get(group_id)?;
        let chosen = Chosen {
            group: group_id,
            crypt,
            init_pubkey: self.settings.init_pubkey,
            resp_pubkey: self.settings.resp_pubkey,
            stanzas,
            rekey_freq: alice_freq.max(self.settings.rekey_freq),
        };
        if three {
            let e = BigNum::from_slice(&he_or_e).map_err(backend)?;
            if !g.in_range(&e) {
                out.send(self.error_stanza(&thread, "feature-not-implemented", &["dhkeys"])?);
                return Err(
                    PeerMisbehaved::IllegalParameter("e outside 1 < e < p-1".into()).into(),
                );
            }
        }
        self.thread = thread.clone();
        let n_b = {
            let mut n = vec![0u8; self.settings.nonce_len()];
            env.fill(&mut n);
            n
        };
        let c_a = u128::from_be_bytes(env.random_array::<16>());
        let c_b = c_a ^ (1u128 << 127);
        let (y, d) = self.dh_keygen(env, &g)?;
        let t = |s: &SigmaSession, var: &str, vals: Vec<String>| Field {
            var: var.into(),
            ftype: s.field_type("text-single").map(str::to_string),
            values: vals,
            ..Default::default()
        };
        let mut fb = Form::new("submit");
        fb.push(t(self, "FORM_TYPE", vec![FORM_TYPE.into()]));
        fb.push(t(self, "accept", vec!["1".into()]));
        fb.push(t(self, log_var, vec![logging]));
        fb.push(t(self, "disclosure", vec!["never".into()]));
        fb.push(t(self, "security", vec!["e2e".into()]));
        fb.push(t(self, "modp", vec![group_id.to_string()]));
        fb.push(t(self, "crypt_algs", vec![chosen.crypt.clone()]));
        fb.push(t(self, "hash_algs", vec!["sha256".into()]));
        if self.sign_algs_used() {
            fb.push(t(self, "sign_algs", vec![keys::RSA_SHA256.into()]));
        }
        fb.push(t(self, "compress", vec!["none".into()]));
        fb.push(t(
            self,
            "stanzas",
            chosen
                .stanzas
                .iter()
                .map(|k| k.name().to_string())
                .collect(),
        ));
        fb.push(t(
            self,
            "init_pubkey",
            vec![chosen.init_pubkey.name().into()],
        ));
        fb.push(t(
            self,
            "resp_pubkey",
            vec![chosen.resp_pubkey.name().into()],
        ));
        fb.push(t(self, "ver", vec!["1.0".into()]));
        fb.push(t(self, "rekey_freq", vec![chosen.rekey_freq.to_string()]));
        fb.push(t(self, "my_nonce", vec![b64::encode(&n_b)]));
        if self.settings.four {
            fb.push(t(self, "sas_algs", vec!["sas28x5".into()]));
        }
        fb.push(t(self, "dhkeys", vec![b64::encode(d.to_vec())]));
        fb.push(t(self, "nonce", vec![b64::encode(&n_a)]));
        fb.push(t(
            self,
            "counter",
            vec![b64::encode(prim::counter_bytes(c_a))],
        ));
        let form_a_n = self.norm(&form_a);
        let form_b_n = self.norm(&fb);
        let suite = self.suite(&chosen);
        let mut m = self.message(&thread)?;
        let mut three_keys = None;
        let mut c_b_after = c_b;
        if three {
            let e = BigNum::from_slice(&he_or_e).map_err(backend)?;
            let k = SecretBytes::new(
                prim::sha256(&[self.ops.dh_shared(&g, &e, &y)?.expose()])?.to_vec(),
            );
            let ka = derive(&k, "Initiator", suite.key_len)?;
            let kb = derive(&k, "Responder", suite.key_len)?;
            let (id, mb, after) =
                self.prove(&kb, c_b, &n_a, &n_b, &d, &[&form_b_n], chosen.resp_pubkey)?;
            c_b_after = after;
            let mut full = fb.clone();
            full.push(t(self, "identity", vec![b64::encode(id)]));
            full.push(t(self, "mac", vec![b64::encode(mb)]));
            m.append_child(Self::feature(&full));
            three_keys = Some((ka, kb));
        } else {
            m.append_child(Self::feature(&fb));
        }
        out.send(m);
        self.st = St::AwaitAccept(Box::new(BobAwaitAccept {
            thread,
            chosen,
            group: g,
            y,
            d,
            n_a,
            n_b,
            form_a: form_a_n,
            form_b: form_b_n,
            c_a,
            c_b: c_b_after,
            he_or_e,
            three: three_keys,
        }));
        Ok(())
    }

    fn error_stanza(&self, thread: &str, condition: &str, fields: &[&str]) -> Result<Element> {
        let mut m = self.message(thread)?;
        stanza::set_attr(&mut m, "type", "error")?;
        let mut err = Element::bare("error", stanza::NS_CLIENT);
        stanza::set_attr(&mut err, "type", "cancel")?;
        err.append_child(Element::bare(condition, STANZA_ERRORS));
        if !fields.is_empty() {
            let mut f = Element::bare("feature", NS_FEATURE);
            for v in fields {
                let mut fe = Element::bare("field", NS_DATA);
                stanza::set_attr(&mut fe, "var", v)?;
                f.append_child(fe);
            }
            err.append_child(f);
        }
        m.append_child(err);
        Ok(m)
    }

    // ---------- Alice: message 2 -> message 3 ----------

    fn on_response(
        &mut self,
        env: &mut Env,
        form_b: Form,
        out: &mut Outbox,
    ) -> Result<Option<(Channel, PeerIdentity, Vec<Warning>)>> {
        let St::AwaitResponse {
            thread,
            n_a,
            dh,
            form_a,
            offered,
        } = &self.st
        else {
            return Err(unexpected("response", "state"));
        };
        check_answer(&form_b, "submit", n_a)?;
        // Every choice must be one of our offers (a choice outside them is a downgrade or an attack).
        let choose = |var: &str| -> Result<String> {
            let v = form_b.value(var)?.to_string();
            let offered_ok = offered
                .field(var)
                .is_some_and(|f| f.options.contains(&v) || f.values.contains(&v));
            if offered_ok {
                Ok(v)
            } else {
                Err(PeerMisbehaved::IllegalParameter(format!("{var}={v} was not offered")).into())
            }
        };
        let group_id: u32 = choose("modp")?
            .parse()
            .map_err(|_| DecodeError::invalid("modp", "number"))?;
        let crypt = choose("crypt_algs")?;
        choose("hash_algs")?;
        choose("compress")?;
        choose("security")?;
        choose("ver")?;
        let (log_var, _) = self.settings.logging_field();
        choose(log_var)?;
        if self.settings.four {
            choose("sas_algs")?;
        }
        if self.sign_algs_used() {
            choose("sign_algs")?;
        }
        let init_pubkey = KeyMode::parse(&choose("init_pubkey")?)
            .ok_or_else(|| DecodeError::invalid("init_pubkey", "mode"))?;
        let resp_pubkey = KeyMode::parse(&choose("resp_pubkey")?)
            .ok_or_else(|| DecodeError::invalid("resp_pubkey", "mode"))?;
        let stanzas = form_b
            .values("stanzas")?
            .iter()
            .map(|s| match s.as_str() {
                "message" => Ok(StanzaKind::Message),
                "presence" => Ok(StanzaKind::Presence),
                "iq" => Ok(StanzaKind::Iq),
                _ => Err(PeerMisbehaved::IllegalParameter(format!("stanzas={s}"))),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if stanzas.iter().any(|k| !self.settings.stanzas.contains(k)) {
            return Err(PeerMisbehaved::IllegalParameter("stanzas not offered".into()).into());
        }
        let rekey_freq: u64 = form_b
            .value("rekey_freq")?
            .parse()
            .ok()
            .filter(|v| *v >= self.settings.rekey_freq && *v < 1 << 32)
            .ok_or_else(|| PeerMisbehaved::IllegalParameter("rekey_freq".into()))?;
        let gi = self
            .settings
            .modp
            .iter()
            .position(|g| *g == group_id)
            .ok_or_else(|| PeerMisbehaved::IllegalParameter("modp".into()))?;
        let g = Group::get(group_id)?;
        let d = bn("dhkeys", form_b.value("dhkeys")?)?;
        if !g.in_range(&d) {
            return Err(PeerMisbehaved::IllegalParameter("d outside 1 < d < p-1".into()).into());
        }
        let n_b = b64d("my_nonce", form_b.value("my_nonce")?)?;
        let c_a_bytes = b64d("counter", form_b.value("counter")?)?;
        if c_a_bytes.len() > 16 {
            return Err(DecodeError::invalid("counter", "more than 128 bits").into());
        }
        let mut cb = [0u8; 16];
        cb[16 - c_a_bytes.len()..].copy_from_slice(&c_a_bytes);
        let c_a = u128::from_be_bytes(cb);
        let c_b = c_a ^ (1u128 << 127);
        let chosen = Chosen {
            group: group_id,
            crypt,
            init_pubkey,
            resp_pubkey,
            stanzas,
            rekey_freq,
        };
        let suite = self.suite(&chosen);
        let (_, x, e) = &dh[gi];
        let e = openssl::bn::BigNumRef::to_owned(e).map_err(backend)?;
        let thread = thread.clone();
        let n_a = n_a.clone();
        let form_a = form_a.clone();
        let k =
            SecretBytes::new(prim::sha256(&[self.ops.dh_shared(&g, &d, x)?.expose()])?.to_vec());
        let ka = derive(&k, "Initiator", suite.key_len)?;
        let form_b_n = self.norm(&form_b.without(&["identity", "mac"]));
        let mut fa2 = Form::new("result");
        fa2.push(Field::value("FORM_TYPE", FORM_TYPE));
        fa2.push(Field::value("accept", "1"));
        fa2.push(Field::value("nonce", &b64::encode(&n_b)));
        let mut verified = None;
        let mut c_b_now = c_b;
        if !self.settings.four {
            let kb = derive(&k, "Responder", suite.key_len)?;
            let id = b64d("identity", form_b.value("identity")?)?;
            let mb = b64d("mac", form_b.value("mac")?)?;
            let v = self.verify(
                &kb,
                c_b,
                &id,
                &mb,
                &n_a,
                &n_b,
                &d,
                &[&form_b_n],
                resp_pubkey,
            )?;
            c_b_now = v.ctr_after;
            verified = Some((v, kb));
        } else {
            fa2.push(Field::typed(
                "dhkeys",
                "hidden",
                vec![b64::encode(e.to_vec())],
            ));
            let (rs, _) = self.retained_for_peer()?;
            let mut hashes: Vec<String> = rs
                .iter()
                .map(|s| prim::hmac_sha256(&n_a, &[s.expose()]).map(b64::encode))
                .collect::<Result<_>>()?;
            for _ in 0..2 {
                hashes.push(b64::encode(env.random_array::<32>()));
            }
            fa2.push(Field::typed("rshashes", "hidden", hashes));
        }
        let form_a2_n = self.norm(&fa2);
        let (id_a, m_a, c_a_after) = self.prove(
            &ka,
            c_a,
            &n_b,
            &n_a,
            &e,
            &[&form_a, &form_a2_n],
            init_pubkey,
        )?;
        let mut full = fa2.clone();
        full.push(Field::value("identity", &b64::encode(id_a)));
        full.push(Field::value("mac", &b64::encode(m_a)));
        let mut m = self.message(&thread)?;
        m.append_child(Self::feature(&full));
        out.send(m);
        self.negotiated = Some(chosen.clone());
        if let Some((v, kb)) = verified {
            // 3-message: done.
            let x_own = match std::mem::replace(&mut self.st, St::Closed) {
                St::AwaitResponse { mut dh, .. } => dh.swap_remove(gi).1,
                _ => return Err(unexpected("response", "state")),
            };
            let ch = Channel::new(
                suite,
                g,
                DirKeys {
                    kc: ka.kc,
                    km: ka.km,
                },
                c_a_after,
                DirKeys {
                    kc: kb.kc,
                    km: kb.km,
                },
                c_b_now,
                x_own,
                d,
                env.now(),
            );
            let peer = PeerIdentity {
                jid: self.peer.clone(),
                fingerprint: v.fingerprint,
                sas: None,
                method: "rsa-sha256 signature (SIGMA-I)".into(),
            };
            return Ok(Some((ch, peer, v.warnings)));
        }
        let x_own = match std::mem::replace(&mut self.st, St::Closed) {
            St::AwaitResponse { mut dh, .. } => dh.swap_remove(gi).1,
            _ => return Err(unexpected("response", "state")),
        };
        self.st = St::AwaitInit(Box::new(AliceAwaitInit {
            chosen,
            group: g,
            x: x_own,
            d,
            k,
            n_a,
            n_b,
            form_b: form_b_n,
            m_a,
            c_a: c_a_after,
            c_b,
        }));
        Ok(None)
    }

    fn retained_for_peer(&self) -> Result<RetainedList> {
        let s = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        let lb = stanza::bare_jid(&self.local);
        let pb = stanza::bare_jid(&self.peer);
        let mut secrets = Vec::new();
        let mut keys = Vec::new();
        for ((l, p), v) in s.retained.iter() {
            if l == lb && stanza::bare_jid(p) == pb {
                secrets.push(v.clone());
                keys.push((l.clone(), p.clone()));
            }
        }
        Ok((secrets, keys))
    }

    /// The shared retained secret: the first of ours with the peer's clients that `matches`.
    fn find_srs(
        &self,
        matches: impl Fn(&SecretBytes) -> Result<bool>,
    ) -> Result<Option<(SecretBytes, (String, String))>> {
        let (secrets, keys_of) = self.retained_for_peer()?;
        for (s, k) in secrets.into_iter().zip(keys_of) {
            if matches(&s)? {
                return Ok(Some((s, k)));
            }
        }
        Ok(None)
    }

    /// The end of a 4-message negotiation on either side: the SAS, the new
    /// retained secret in place of the shared one, and the SAS reminder when
    /// neither a key nor a retained secret authenticated the peer.
    fn conclude(
        &self,
        k_final: &SecretBytes,
        srs: Option<(SecretBytes, (String, String))>,
        m_a: &[u8],
        form_b: &[u8],
        peer_mode: KeyMode,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<String>> {
        if self.settings.weakness == Some(Weakness::AnonDh) {
            // The unauthenticated-DH control: nothing to compare, nothing retained.
            return Ok(None);
        }
        let sas = sas28x5(m_a, form_b, !self.settings.gajim)?;
        let had_srs = srs.is_some();
        self.retain(k_final, srs.map(|(_, k)| k))?;
        if !had_srs && peer_mode == KeyMode::None {
            warnings.push(Warning::Unauthenticated {
                reason: format!(
                    "no retained secret in common with {}: compare the SAS {sas}",
                    self.peer
                ),
            });
        }
        Ok(Some(sas))
    }

    fn final_k(&self, k: &SecretBytes, srs: Option<&[u8]>) -> Result<SecretBytes> {
        let oss = self
            .settings
            .oss
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or(b"");
        Ok(SecretBytes::new(
            prim::sha256(&[k.expose(), srs.unwrap_or(b""), oss])?.to_vec(),
        ))
    }

    fn retain(&self, k_final: &SecretBytes, srs_key: Option<(String, String)>) -> Result<()> {
        let rs = prim::hmac_sha256(k_final.expose(), &[b"New Retained Secret"])?;
        let mut s = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        if let Some(k) = srs_key {
            s.retained.remove(&k);
        }
        s.retained.insert(
            (stanza::bare_jid(&self.local).to_string(), self.peer.clone()),
            SecretBytes::from_slice(&rs),
        );
        Ok(())
    }

    // ---------- Bob: message 3 -> message 4 ----------

    fn on_accept(
        &mut self,
        env: &mut Env,
        fa2: Form,
        out: &mut Outbox,
    ) -> Result<(Channel, PeerIdentity, Vec<Warning>)> {
        let St::AwaitAccept(b) = &self.st else {
            return Err(unexpected("accept", "state"));
        };
        check_answer(&fa2, "result", &b.n_b)?;
        let suite = self.suite(&b.chosen);
        let form_a2_n = self.norm(&fa2.without(&["identity", "mac"]));
        let id_a = b64d("identity", fa2.value("identity")?)?;
        let m_a = b64d("mac", fa2.value("mac")?)?;
        let (e, k) = if let Some((_ka, _kb)) = &b.three {
            let e = BigNum::from_slice(&b.he_or_e).map_err(backend)?;
            (e, None)
        } else {
            let e = bn("dhkeys", fa2.value("dhkeys")?)?;
            if prim::sha256(&[&e.to_vec()])?.as_slice() != b.he_or_e.as_slice() {
                return Err(PeerMisbehaved::CommitmentMismatch.into());
            }
            if !b.group.in_range(&e) {
                return Err(
                    PeerMisbehaved::IllegalParameter("e outside 1 < e < p-1".into()).into(),
                );
            }
            let k = SecretBytes::new(
                prim::sha256(&[self.ops.dh_shared(&b.group, &e, &b.y)?.expose()])?.to_vec(),
            );
            (e, Some(k))
        };
        let (n_a, n_b, form_a, form_b, c_a, c_b) = (
            b.n_a.clone(),
            b.n_b.clone(),
            b.form_a.clone(),
            b.form_b.clone(),
            b.c_a,
            b.c_b,
        );
        let init_pubkey = b.chosen.init_pubkey;
        let resp_pubkey = b.chosen.resp_pubkey;
        // Everything fallible in the peer's form is read before the state is taken.
        let rshashes: Vec<String> = if b.three.is_none() {
            fa2.values("rshashes")?.to_vec()
        } else {
            Vec::new()
        };
        let ka_prov = match (&b.three, &k) {
            (Some((ka, _)), _) => ProofKeys {
                kc: ka.kc.clone(),
                km: ka.km.clone(),
                ks: ka.ks.clone(),
            },
            (None, Some(k)) => derive(k, "Initiator", suite.key_len)?,
            (None, None) => return Err(Error::Backend("no key".into())),
        };
        let v = self.verify(
            &ka_prov,
            c_a,
            &id_a,
            &m_a,
            &n_b,
            &n_a,
            &e,
            &[&form_a, &form_a2_n],
            init_pubkey,
        )?;
        let mut warnings = v.warnings;
        let St::AwaitAccept(b) = std::mem::replace(&mut self.st, St::Closed) else {
            return Err(unexpected("accept", "state"));
        };
        let b = *b;
        self.negotiated = Some(b.chosen.clone());
        if let Some((ka, kb)) = b.three {
            let ch = Channel::new(
                suite,
                b.group,
                DirKeys {
                    kc: kb.kc,
                    km: kb.km,
                },
                c_b,
                DirKeys {
                    kc: ka.kc,
                    km: ka.km,
                },
                v.ctr_after,
                b.y,
                e,
                env.now(),
            );
            return Ok((
                ch,
                PeerIdentity {
                    jid: self.peer.clone(),
                    fingerprint: v.fingerprint,
                    sas: None,
                    method: "rsa-sha256 signature (SIGMA-I)".into(),
                },
                warnings,
            ));
        }
        // 4-message: retained secrets, final keys, Bob's identity.
        let k = k.ok_or_else(|| Error::Backend("no key".into()))?;
        let srs = self.find_srs(|s| {
            let h = prim::hmac_sha256(&n_a, &[s.expose()])?;
            Ok(rshashes
                .iter()
                .any(|r| b64::decode(r.trim()).is_ok_and(|r| e2elab_core::ct_eq(&r, &h))))
        })?;
        let k_final = self.final_k(&k, srs.as_ref().map(|(s, _)| s.expose()))?;
        let ka = derive(&k_final, "Initiator", suite.key_len)?;
        let kb = derive(&k_final, "Responder", suite.key_len)?;
        let srshash = match &srs {
            Some((s, _)) => prim::hmac_sha256(s.expose(), &[b"Shared Retained Secret"])?,
            None => env.random_array::<32>(),
        };
        let mut fb2 = Form::new("result");
        fb2.push(Field::value("FORM_TYPE", FORM_TYPE));
        fb2.push(Field::value("nonce", &b64::encode(&n_a)));
        fb2.push(Field::value("srshash", &b64::encode(srshash)));
        let form_b2_n = self.norm(&fb2);
        let (id_b, m_b, c_b_after) = self.prove(
            &kb,
            c_b,
            &n_a,
            &n_b,
            &b.d,
            &[&form_b, &form_b2_n],
            resp_pubkey,
        )?;
        fb2.push(Field::value("identity", &b64::encode(id_b)));
        fb2.push(Field::value("mac", &b64::encode(m_b)));
        let mut m = self.message(&b.thread)?;
        let mut init = Element::bare("init", NS_INIT);
        init.append_child(fb2.to_element());
        m.append_child(init);
        out.send(m);
        let had_srs = srs.is_some();
        let sas = self.conclude(&k_final, srs, &m_a, &form_b, init_pubkey, &mut warnings)?;
        let ch = Channel::new(
            suite,
            b.group,
            DirKeys {
                kc: kb.kc,
                km: kb.km,
            },
            c_b_after,
            DirKeys {
                kc: ka.kc,
                km: ka.km,
            },
            v.ctr_after,
            b.y,
            e,
            env.now(),
        );
        Ok((
            ch,
            PeerIdentity {
                jid: self.peer.clone(),
                fingerprint: v.fingerprint,
                sas,
                method: method(init_pubkey, had_srs),
            },
            warnings,
        ))
    }

    // ---------- Alice: message 4 ----------

    fn on_init(
        &mut self,
        env: &mut Env,
        fb2: Form,
    ) -> Result<(Channel, PeerIdentity, Vec<Warning>)> {
        let St::AwaitInit(a) = &self.st else {
            return Err(unexpected("init", "state"));
        };
        check_answer(&fb2, "result", &a.n_a)?;
        let suite = self.suite(&a.chosen);
        let srshash = b64d("srshash", fb2.value("srshash")?)?;
        let srs = self.find_srs(|s| {
            Ok(e2elab_core::ct_eq(
                &prim::hmac_sha256(s.expose(), &[b"Shared Retained Secret"])?,
                &srshash,
            ))
        })?;
        let k_final = self.final_k(&a.k, srs.as_ref().map(|(s, _)| s.expose()))?;
        let ka = derive(&k_final, "Initiator", suite.key_len)?;
        let kb = derive(&k_final, "Responder", suite.key_len)?;
        let form_b2_n = self.norm(&fb2.without(&["identity", "mac"]));
        let id_b = b64d("identity", fb2.value("identity")?)?;
        let m_b = b64d("mac", fb2.value("mac")?)?;
        let (n_a, n_b, d, form_b, c_b, resp_pubkey, m_a) = (
            a.n_a.clone(),
            a.n_b.clone(),
            openssl::bn::BigNumRef::to_owned(&a.d).map_err(backend)?,
            a.form_b.clone(),
            a.c_b,
            a.chosen.resp_pubkey,
            a.m_a,
        );
        let v = self.verify(
            &kb,
            c_b,
            &id_b,
            &m_b,
            &n_a,
            &n_b,
            &d,
            &[&form_b, &form_b2_n],
            resp_pubkey,
        )?;
        let mut warnings = v.warnings;
        let St::AwaitInit(a) = std::mem::replace(&mut self.st, St::Closed) else {
            return Err(unexpected("init", "state"));
        };
        let a = *a;
        let had_srs = srs.is_some();
        let sas = self.conclude(&k_final, srs, &m_a, &form_b, resp_pubkey, &mut warnings)?;
        let ch = Channel::new(
            suite,
            a.group,
            DirKeys {
                kc: ka.kc,
                km: ka.km,
            },
            a.c_a,
            DirKeys {
                kc: kb.kc,
                km: kb.km,
            },
            v.ctr_after,
            a.x,
            d,
            env.now(),
        );
        Ok((
            ch,
            PeerIdentity {
                jid: self.peer.clone(),
                fingerprint: v.fingerprint,
                sas,
                method: method(resp_pubkey, had_srs),
            },
            warnings,
        ))
    }

    fn establish(
        &mut self,
        env: &mut Env,
        mut ch: Channel,
        peer: PeerIdentity,
        warnings: Vec<Warning>,
        out: &mut Outbox,
    ) -> Result<()> {
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
        let rekey_every = self.settings.rekey_every;
        let now = env.now();
        let St::Established(ch) = &mut self.st else {
            return Err(ApiMisuse::Closed.into());
        };
        let rekey = rekey_every > 0 && ch.sent_since_rekey + 1 >= rekey_every;
        let mut wire = app.clone();
        let nodes = wire.take_nodes();
        let mut protected = Vec::new();
        let mut clear: Vec<(usize, Element)> = Vec::new();
        for n in nodes {
            if let e2elab_core::minidom::Node::Element(c) = n {
                if channel::stays_clear(&c) {
                    clear.push((protected.len(), c));
                } else {
                    protected.push(c);
                }
            }
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
        out.send(wire);
        Ok(())
    }

    fn terminate_form(result: bool) -> Element {
        let mut f = Form::new(if result { "result" } else { "submit" });
        f.push(Field::value("FORM_TYPE", FORM_TYPE));
        f.push(Field::value("terminate", "1"));
        SigmaSession::feature(&f)
    }

    fn on_encrypted(&mut self, env: &mut Env, wire: Element, out: &mut Outbox) -> Result<()> {
        let closing = matches!(self.st, St::Terminating(_));
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
        // Beside the <c/> only what XEP-0200 leaves in clear may stand: anything
        // else was added on the path and must not be delivered as protected.
        if let Some(extra) = wire
            .children()
            .find(|x| !x.is("c", NS_C) && !channel::stays_clear(x))
        {
            return Err(DecodeError::invalid(
                "stanza",
                format!("unprotected <{}> beside <c/>", extra.name()),
            )
            .into());
        }
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
                // XEP-0200 §Decrypting: a MAC mismatch or unparseable content terminates the session.
                self.st = St::Closed;
                out.event(Event::Warning(Warning::Other(format!(
                    "session terminated after a bad encrypted stanza: {e}"
                ))));
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
        // Rebuild the original stanza: decrypted children in place of <c/>.
        let mut app = wire.clone();
        let nodes = app.take_nodes();
        for n in nodes {
            if let e2elab_core::minidom::Node::Element(el) = n {
                if el.is("c", NS_C) {
                    for d in &opened.content {
                        app.append_child(d.clone());
                    }
                } else {
                    app.append_child(el);
                }
            }
        }
        if !opened.content.is_empty() {
            out.event(Event::Delivered(app));
        }
        Ok(())
    }
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

/// Whether decrypted content is the terminate form.
pub fn is_terminate_content(content: &[Element]) -> bool {
    content.len() == 1
        && content[0].is("feature", NS_FEATURE)
        && content[0]
            .get_child("x", NS_DATA)
            .and_then(|x| Form::from_element(x).ok())
            .is_some_and(|f| f.value("terminate").is_ok_and(|v| v == "1" || v == "true"))
}

fn method(mode: KeyMode, had_srs: bool) -> String {
    let base = match mode {
        KeyMode::None => "sas",
        _ => "rsa-sha256 signature + sas",
    };
    if had_srs {
        format!("{base} + retained secret")
    } else {
        base.to_string()
    }
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
        if let Some(from) = el.attr("from") {
            if from != self.peer {
                return Err(PeerMisbehaved::WrongAddress(from.to_string()).into());
            }
        }
        let msg = classify(&el)?;
        let cp = out.checkpoint();
        let result = match (msg, &self.st) {
            (Inbound::Encrypted, _) => return self.on_encrypted(env, el, out),
            (Inbound::Error, St::AwaitResponse { .. } | St::AwaitInit(_) | St::AwaitAccept(_)) => {
                self.st = St::Closed;
                out.event(Event::PeerClosed);
                return Err(PeerMisbehaved::Terminated.into());
            }
            (Inbound::Error, _) => Err(unexpected("error stanza", "no negotiation under way")),
            (Inbound::Negotiation { thread, form }, St::Idle) if self.role == Role::Responder => {
                self.on_request(env, thread, form, out)
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
            _ => None,
        }
    }

    fn handle_timeout(&mut self, env: &mut Env, _out: &mut Outbox) -> Result<()> {
        if let St::Established(ch) = &mut self.st {
            ch.handle_timeout(env.now());
        }
        Ok(())
    }

    fn close(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        match std::mem::replace(&mut self.st, St::Closed) {
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
    /// The negotiated options once known.
    pub fn negotiated_group(&self) -> Option<u32> {
        self.negotiated.as_ref().map(|c| c.group)
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
