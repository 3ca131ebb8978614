//! What a SIGMA session offers and accepts: the profile and its options.

use crate::form::{EmptyStyle, Shape};
use crate::prim::{self, ExponentSize};
use crate::{Profile, Weakness};
use e2elab_core::{ApiMisuse, Error, Result, SecretBytes, StanzaKind};

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
    /// The form value.
    pub fn name(self) -> &'static str {
        match self {
            KeyMode::Key => "key",
            KeyMode::Hash => "hash",
            KeyMode::None => "none",
        }
    }

    /// From a form value.
    pub fn parse(s: &str) -> Option<KeyMode> {
        match s {
            "key" => Some(KeyMode::Key),
            "hash" => Some(KeyMode::Hash),
            "none" => Some(KeyMode::None),
            _ => None,
        }
    }
}

/// The logging field's two names (DECISIONS 2): XEP-0116 v0.11-v0.16 and
/// XEP-0217 call it `otr` (options `false`, `true`); XEP-0155 v1.2, the
/// later XEP-0116 text and Gajim call it `logging` (`may`, `mustnot`).
/// Either is accepted; the answer uses the name the offer used.
pub const LOGGING_FIELDS: [(&str, [&str; 2]); 2] =
    [("otr", ["false", "true"]), ("logging", ["mustnot", "may"])];

/// The `rekey_freq` XEP-0217 fixes and Gajim offers: never rekey.
pub const NEVER_REKEY: u64 = 4_294_967_295;

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
    /// Start a rekey after this many of our stanzas (0 = never); never more
    /// often than the negotiated `rekey_freq` allows.
    pub rekey_every: u64,
    /// Other shared secret.
    pub oss: Option<SecretBytes>,
    /// Reproduce Gajim's deviations (`gajim-compat`).
    pub gajim: bool,
    /// Send Gajim's stanza shapes (`gajim-shapes`; implied by `gajim-compat`).
    pub gajim_shapes: bool,
    /// Stanza kinds offered.
    pub stanzas: Vec<StanzaKind>,
    /// Publish old MAC keys after acknowledged rekeys.
    pub publish_old: bool,
    /// The known-bad control this session is, if any (family `control`).
    pub weakness: Option<Weakness>,
    /// How long a negotiation may run before the session gives up (zero: for ever).
    pub negotiation_timeout: std::time::Duration,
    /// Negotiate a new session by itself after a failure (`renegotiate`).
    pub renegotiate: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("four", &self.four)
            .field("modp", &self.modp)
            .field("init_pubkey", &self.init_pubkey)
            .field("resp_pubkey", &self.resp_pubkey)
            .field("gajim", &self.gajim)
            .field("gajim_shapes", &self.gajim_shapes)
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
    "gajim-shapes",
    "negotiation_timeout",
    "renegotiate",
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
        "minimum stanzas between rekeys to offer (default 1)",
    ),
    (
        "rekey_every",
        "start a rekey after this many of our stanzas (default 0 = never; never more often than negotiated)",
    ),
    ("oss", "other shared secret (a password agreed out of band)"),
    (
        "gajim-compat",
        "true: reproduce Gajim 0.11-1.0's deviations (sigma-r, key mode none; implies gajim-shapes)",
    ),
    (
        "gajim-shapes",
        "true: send Gajim's stanza shapes (hidden fixed fields, <required/> first, labelled modp options, `logging`, clear fallback body and hints) with the spec's cryptography",
    ),
    (
        "negotiation_timeout",
        "seconds (virtual clock) a negotiation may take before the session gives up: a warning, every held stanza reported not sent, the session closed (default 60; 0 = wait for ever)",
    ),
    (
        "renegotiate",
        "sigma profiles: after a bad encrypted stanza ends the session, negotiate a new one by itself (the initiator starts it, both hold what the user sends meanwhile; default true)",
    ),
    (
        "stanzas",
        "stanza kinds to offer: message,presence,iq (default all three; message under gajim-shapes)",
    ),
    (
        "publish_old",
        "publish old MAC keys after an acknowledged rekey (default true)",
    ),
];

pub(crate) fn bad(key: &str, reason: &str) -> Error {
    ApiMisuse::BadOption {
        key: key.into(),
        reason: reason.into(),
    }
    .into()
}

/// Key bytes of a cipher name (the spec's reading).
pub fn cipher_key_len(name: &str) -> Option<usize> {
    match name {
        "aes128-ctr" => Some(16),
        "aes192-ctr" => Some(24),
        "aes256-ctr" => Some(32),
        _ => None,
    }
}

impl Settings {
    /// From a profile and options.
    pub fn from(
        profile: Profile,
        o: &e2elab_core::Options,
        weakness: Option<Weakness>,
    ) -> Result<Settings> {
        o.check_known(OPTION_KEYS)?;
        let gajim = o.get_bool("gajim-compat", false)?;
        let gajim_shapes = gajim || o.get_bool("gajim-shapes", false)?;
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
        if gajim_shapes && !four {
            return Err(bad(
                "gajim-shapes",
                "Gajim only ever ran the 4-message negotiation",
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
            if cipher_key_len(c).is_none() || ((simplified || gajim) && c != "aes128-ctr") {
                return Err(bad("crypt", &format!("unsupported cipher {c}")));
            }
        }
        let exponent = match o.get("exponent").unwrap_or("full") {
            "full" => ExponentSize::Full,
            "short" => ExponentSize::Short,
            _ => return Err(bad("exponent", "full or short")),
        };
        let rekey_freq = if simplified {
            NEVER_REKEY
        } else {
            o.get_u64("rekey_freq", if gajim_shapes { NEVER_REKEY } else { 1 })?
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
        if gajim && rekey_every != 0 {
            return Err(bad(
                "rekey_every",
                "Gajim ignores a <key/> and keeps its old keys: gajim-compat never rekeys",
            ));
        }
        let default_stanzas = if gajim_shapes {
            "message"
        } else {
            "message,presence,iq"
        };
        let stanzas = o
            .get("stanzas")
            .unwrap_or(default_stanzas)
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
            gajim_shapes,
            stanzas,
            publish_old: o.get_bool("publish_old", true)?,
            weakness,
            negotiation_timeout: std::time::Duration::from_secs(
                o.get_u64("negotiation_timeout", 60)?,
            ),
            renegotiate: o.get_bool("renegotiate", true)?,
        })
    }

    /// How normalized forms write empty elements.
    pub fn empty_style(&self) -> EmptyStyle {
        if self.gajim {
            EmptyStyle::Gajim
        } else {
            EmptyStyle::StartEnd
        }
    }

    /// How our forms are laid out.
    pub fn shape(&self) -> Shape {
        if self.gajim_shapes {
            Shape::Gajim
        } else {
            Shape::Spec
        }
    }

    /// Nonce bytes (Gajim's 8 under gajim-compat).
    pub fn nonce_len(&self) -> usize {
        if self.gajim {
            8
        } else {
            16
        }
    }

    /// The logging field we offer, with its options in our preference order.
    pub fn logging_field(&self) -> (&'static str, [&'static str; 2]) {
        if self.gajim_shapes {
            LOGGING_FIELDS[1]
        } else {
            LOGGING_FIELDS[0]
        }
    }

    /// Whether the fixed parameters go as `hidden` fields with one value
    /// (XEP-0217 §4.1, and Gajim) rather than `list-single` options.
    pub fn hidden_fixed(&self) -> bool {
        self.simplified || self.gajim_shapes
    }

    /// Whether `sign_algs` is offered: when a public key may be used (and
    /// always under gajim-shapes, as Gajim did).
    pub fn sign_algs_used(&self) -> bool {
        !(self.init_pubkey == KeyMode::None && self.resp_pubkey == KeyMode::None)
    }

    /// Whether `sign_algs` appears in the request form.
    pub fn sign_algs_offered(&self) -> bool {
        self.sign_algs_used() || self.gajim_shapes
    }
}
