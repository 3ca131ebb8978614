//! # `e2elab-otr`: OTR v3 and v2 through libotr 4.1
//!
//! OTR is measured through the reference implementation itself: libotr 4.1.1
//! (Debian's `libotr5`), reached through the bindgen crate `libotr-sys`. This
//! crate holds the safe wrapper ([`ffi`]: every `unsafe` block, RAII for the
//! user state, the callback table, the one return-code converter) and the
//! adapter to the e2elab [`Session`] trait. Profiles: `otr-v3` and `otr-v2`.
//!
//! ## Threat model
//! Protects the *text of the `<body/>`* of a one-to-one chat between two full
//! JIDs against the server and anyone on the path: confidentiality
//! (AES-128-CTR), integrity and authenticity (HMAC-SHA1 under keys from a
//! DSA-authenticated DH exchange), replay rejection (strictly increasing
//! counter per key pair), forward secrecy (DH key rotation every round trip)
//! and deniability (MACs only, old MAC keys revealed, malleable encryption).
//! It does **not** protect anything else of the stanza: attributes (`to`,
//! `from`, `id`, `type`), `<subject/>`, `<thread/>` and every extension
//! element travel in clear and unauthenticated, exactly as XEP-0364 carries
//! OTR; the receiver rebuilds the stanza from what arrived, so those parts can
//! be changed on the path without detection. An XHTML-IM `<html/>` copy of
//! the text, or any extension repeating it, would travel in clear: the
//! application must not add one to a stanza it hands to an OTR session.
//! Carbons are out of scope here (XEP-0364's rule to ignore a carboned query
//! has no counterpart on the lab's two-party link). Presence and iq are not
//! protected at all (the session refuses to send them). Peer authentication is
//! only as good as the user's fingerprint check or SMP run.
//!
//! ## Threading and C memory
//! A libotr `OtrlUserState` is not thread-safe. Each [`OtrSession`] owns its
//! own user state (two sessions in one process never share one), which makes
//! the session `Send` (required by the core trait) but not `Sync`; libotr has
//! no other mutable global state once `otrl_init` has run (once per process,
//! in [`ffi::init`]). Secrets that live in C memory Rust cannot wipe: the
//! DSA private key and all DH private exponents, AKE secrets, session
//! AES/MAC keys, SMP secrets (libgcrypt MPIs and buffers inside libotr; libotr
//! frees them, mostly from libgcrypt's secure memory, when the user state is
//! freed on drop), and libotr's transient copies of plaintext. The plaintext
//! copies this crate makes are `Zeroizing`, and the C buffers libotr hands back
//! are overwritten before `otrl_message_free`. The private key file text is
//! held in `SecretBytes` by the identity; the key file passes through an
//! anonymous `memfd` (never a file on disk), overwritten with zeros before it
//! is closed.
//!
//! Two leaks of libotr 4.1.1 itself: `otrl_context_forget` never frees a
//! context's `context_priv` block (the wrapper frees those blocks after
//! `otrl_userstate_free`, for libotr 4.1.0/4.1.1 only), and
//! `otrl_message_receiving` leaks its 32-byte extra-key buffer each time it
//! rejects a data message (a libotr local the wrapper cannot reach; the
//! valgrind run suppresses exactly that stack, see `valgrind.supp`).
//!
//! ## Reproducibility
//! libgcrypt's RNG cannot be seeded, so DH exponents, AES counters' starts,
//! the DSA key and every signature differ between runs: OTR transcripts are
//! **not** bit-reproducible, and their sizes may differ by a byte where an MPI
//! happens to be one byte shorter. Everything else is drawn from the [`Env`]:
//! instance tags come from the seeded RNG, and the query/AKE/data message
//! sequence (and so every count) is the same for a given seed.
//!
//! ## DECISIONS
//! - **Policies.** `otr-v3` = `ALLOW_V3 | REQUIRE_ENCRYPTION |
//!   WHITESPACE_START_AKE | ERROR_START_AKE` (libotr's `ALWAYS` restricted to
//!   v3); `otr-v2` likewise with `ALLOW_V2`. No plaintext body can leave: a
//!   send before the session is established is held in this crate (never
//!   given to libotr, so libotr's `[resent]` retransmission never happens) and
//!   sent encrypted once `gone_secure` fires.
//! - **Start.** `start` (initiator only) gives libotr `?OTR?`, which libotr
//!   replaces by its default query message (`?OTRv3?` or `?OTRv2?` plus its
//!   explanatory text). The responder answers with the DH-Commit. The query
//!   **is** a handshake stanza: the harness counts 5 handshake messages = the
//!   query + the 4 AKE messages (DH-Commit, DH-Key, Reveal-Signature,
//!   Signature).
//! - **Whitespace start** (option `start=whitespace`): the initiator sends a
//!   stanza whose body is only the whitespace tag (base + version tag, 24
//!   characters) instead of the query; the responder's libotr starts the AKE
//!   as for a query. The tag's empty remainder is not shown to the user (no
//!   `DeliveredUnprotected`, no warning): an unencrypted message that is
//!   empty or whitespace only after libotr strips the tag is dropped.
//! - **Carriage (XEP-0364).** The OTR text replaces the text of the stanza's
//!   `<body/>`; all attributes and other children stay in place, in clear. The
//!   four elements XEP-0364 recommends (`<encryption xmlns='urn:xmpp:eme:0'
//!   namespace='urn:xmpp:otr:0'/>`, `<no-copy/>`, `<no-permanent-store/>`,
//!   `<private xmlns='urn:xmpp:carbons:2'/>`) are appended as the *last four*
//!   children of every stanza carrying OTR text. The receiver removes them
//!   only when exactly those four are the trailing children in that order, so
//!   an application stanza's own hints elsewhere survive the round trip.
//! - **Stanzas without a body, or with an empty body,** carry nothing OTR can
//!   protect (an empty OTR data message is a heartbeat that libotr never
//!   delivers): they are sent unchanged, and received they are delivered as
//!   `DeliveredUnprotected` after `Warning::UnprotectedStanza` (in an
//!   established session), the rule every profile follows. Until issue 16
//!   they came as `Delivered`, indistinguishable from a decrypted message.
//! - **Labels.** A decrypted message is `Delivered` with a `Protection`
//!   covering `<body/>` only (encrypted, authenticated, key
//!   `otr:<secure session id>`); every other child is listed as clear.
//!   (tests: bodyless_and_empty_body_pass_in_clear,
//!   a_delivery_is_labelled_body_covered_the_rest_clear)
//! - **More than one `<body/>`** (e.g. `xml:lang` alternatives) is refused on
//!   send (`CannotProtect`) and rejected on receive: only one could be
//!   encrypted and the rest would leak.
//! - **Fragmentation.** Option `max_msg_size` (default 0 = never fragment) is
//!   what libotr's `max_message_size` callback returns; libotr fragments with
//!   `OTRL_FRAGMENT_SEND_ALL`. The last fragment's stanza carries the whole
//!   application stanza (attributes and other children) with the fragment as
//!   body; earlier fragments carry the attributes, their body and the hints.
//!   The receiver rebuilds from the stanza that completes the message.
//!   Fragments must arrive in order: out of order, libotr discards the partial
//!   message without an error (we return `Ok` with nothing delivered, as
//!   libotr does); a v3 fragment addressed to another instance tag is an error
//!   (`WrongAddress`).
//! - **Bad input** (bad MAC, replayed or reordered counter, malformed data,
//!   unknown type, wrong instance, AKE setup error) is a typed error, the
//!   session state is unchanged and nothing is emitted: libotr's `?OTR Error:`
//!   replies are not sent (no `otr_error_message` callback). Replays and MAC
//!   failures are both `DecryptFailed` (libotr reports both as "unreadable").
//! - **Unencrypted text** arriving in the session (libotr's
//!   `RCVDMSG_UNENCRYPTED`) is `Ok`, surfaced as `DeliveredUnprotected` after
//!   `Warning::UnprotectedStanza`; it is never `Delivered`.
//! - **Sender check.** An inbound stanza whose `from` has another bare JID
//!   than the peer is rejected (`WrongAddress`); a missing `from` is accepted
//!   (a server stamps it).
//! - **Identity.** The identity's secret is libotr's private key file text
//!   (account = bare JID, protocol `xmpp`), written through an in-memory
//!   `FILE*`; its public data is the 20-byte fingerprint. Keys are generated
//!   once per bare JID per process and cached (DSA key generation costs tens
//!   to hundreds of ms and cannot be seeded anyway); the harness reports the
//!   first generation as the one-time cost. The cache keeps the key files
//!   (as `SecretBytes`) in memory for the life of the process.
//! - **Peer identity.** `Established` carries the peer's fingerprint and, as
//!   the SAS, the whole secure session id (16 hex digits, in two halves).
//!   libotr shows one half in bold, the first at the end that sent the
//!   DH-Commit and the second at the other (auth.c), so the bold half alone
//!   differs between two honest ends; the full id is the same at both and is
//!   what two users compare. A pinned `peer_public` fingerprint that differs
//!   yields a `KeyChanged` warning (OTR itself only reports a "new
//!   fingerprint").
//! - **Versions.** Each profile's policy allows its own version only; option
//!   `versions=2,3` on `otr-v3` allows both (libotr's `ALLOW_V2 |
//!   ALLOW_V3`, the policy of clients that still spoke v2), which is how the
//!   security experiments offer a version rollback to strip. A query
//!   message offering none of the versions the policy allows, which libotr
//!   ignores without a word, is refused with `Error::Unsupported("OTR
//!   version mismatch: the peer offers v3, this profile speaks v2 only")`;
//!   a whitespace-tagged plaintext with the same mismatch is delivered
//!   unprotected beside a warning saying so. (tests: adapter.rs
//!   a_version_mismatch_is_reported_both_ways)
//! - **AKE timeout.** Option `ake_timeout` (seconds of the virtual clock,
//!   default 60, 0 = never): an AKE that has not finished by then (a lost
//!   or corrupted AKE message makes libotr wait silently) ends the session
//!   with a warning, `Closed`, and `NotSent` for every stanza held for it.
//!   Held stanzas are also reported `NotSent` when this side closes or the
//!   peer disconnects before they went out. (tests: adapter.rs
//!   a_stalled_ake_times_out_and_reports_the_held_message; harness link.rs
//!   close_during_a_handshake_reports_every_held_stanza)
//! - **Research hook.** [`OtrSession::dangerous_state`] (and the `Session`
//!   trait's `dangerous_export_state`, its JSON) reads every DH value the
//!   libotr context holds (our current and previous key pairs, the peer's
//!   current and previous public values, with key ids) and what the AKE left
//!   in `context->auth` (our AKE key pair, the peer's AKE public value and
//!   fingerprint, the secure session id). It is always compiled: the
//!   security experiments (forward secrecy, post-compromise security, the
//!   repudiation judges) read it in every build, and no published figure
//!   depends on a cargo feature. Nothing in the session calls it.
//! - **close** sends libotr's disconnect TLV (when encrypted); the peer gets
//!   `PeerClosed` and its session is `Closed`.
//! - **Operation counts are derived** (libotr cannot be instrumented): per side
//!   at the AKE, 1 DSA sign, 1 DSA verify and 5 modexps (1 DH keygen + 1
//!   shared secret per spec digest §7, plus libotr's first key rotation when it
//!   goes encrypted: 1 keygen + 2 session-key modexps); afterwards +3 for each
//!   rotation of our own key id and +2 for each new peer key id, read from the
//!   context after every call.
//! - **SMP** is available on the concrete [`OtrSession`]
//!   ([`OtrSession::smp_start`], [`OtrSession::smp_respond`],
//!   [`OtrSession::smp_status`]).
//! - **Heartbeats**: libotr decides them with the wall clock (`time(NULL)`, 60
//!   s); a run that lasts longer between two sends can see one extra data
//!   stanza. The virtual clock cannot reach libotr.
#![deny(unsafe_code)]

pub mod carriage;
pub mod ffi;
mod session;

pub use session::{offered_versions, OtrSession, SmpStatus};

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    ApiMisuse, Env, Error, Identity, IdentityError, Protocol, PublicIdentity, Result, SecretBytes,
    Session, SessionConfig, StanzaKind,
};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use zeroize::Zeroizing;

/// OTR protocol version of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// OTR version 2.
    V2,
    /// OTR version 3 (instance tags).
    V3,
}

impl Version {
    /// libotr policy flags for this profile.
    pub fn policy(self) -> ffi::Policy {
        let v = match self {
            Version::V2 => libotr_sys::OTRL_POLICY_ALLOW_V2,
            Version::V3 => libotr_sys::OTRL_POLICY_ALLOW_V3,
        };
        v | libotr_sys::OTRL_POLICY_REQUIRE_ENCRYPTION
            | libotr_sys::OTRL_POLICY_WHITESPACE_START_AKE
            | libotr_sys::OTRL_POLICY_ERROR_START_AKE
    }

    /// The whitespace tag that offers this version (base tag + version tag).
    pub fn whitespace_tag(self) -> String {
        let v: &[u8] = match self {
            Version::V2 => libotr_sys::OTRL_MESSAGE_TAG_V2,
            Version::V3 => libotr_sys::OTRL_MESSAGE_TAG_V3,
        };
        let strip =
            |b: &[u8]| String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned();
        strip(libotr_sys::OTRL_MESSAGE_TAG_BASE) + &strip(v)
    }

    /// The version number.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The profile id.
    pub fn id(self) -> &'static str {
        match self {
            Version::V2 => "otr-v2",
            Version::V3 => "otr-v3",
        }
    }
}

/// An OTR profile.
#[derive(Debug, Clone, Copy)]
pub struct Otr {
    version: Version,
}

/// The `otr-v3` profile.
pub const OTR_V3: Otr = Otr {
    version: Version::V3,
};
/// The `otr-v2` profile.
pub const OTR_V2: Otr = Otr {
    version: Version::V2,
};

const OPTIONS: &[(&str, &str)] = &[
    (
        "max_msg_size",
        "maximum characters of one OTR message before libotr fragments it (0 = never; default 0)",
    ),
    (
        "start",
        "how the initiator offers OTR: query (libotr's default query message; default) or whitespace (the bare whitespace tag)",
    ),
    (
        "versions",
        "versions the policy allows: the profile's own (default), or 2,3 on otr-v3 (libotr's ALLOW_V2 | ALLOW_V3, the policy of clients that still speak v2)",
    ),
    (
        "ake_timeout",
        "seconds (virtual clock) an AKE may take before the session gives up: a warning, every held stanza reported not sent, the session closed (default 60; 0 = wait for ever)",
    ),
];

fn claims(v: Version) -> Vec<Claim> {
    let c = Claim::new;
    let (ver_src_km, ver_src_data, ver_src_intro, ver_src_reveal) = match v {
        Version::V3 => (
            "otr-Protocol-v3 \"Key Management\"",
            "otr-Protocol-v3 \"Data Exchange\"",
            "otr-Protocol-v3 introduction (v2 features)",
            "otr-Protocol-v3 \"Revealing MAC Keys\"",
        ),
        Version::V2 => (
            "otr-Protocol-v2 \"Key Management\"",
            "otr-Protocol-v2 \"Data Exchange\"",
            "otr-Protocol-v2 introduction",
            "otr-Protocol-v2 \"Revealing MAC Keys\"",
        ),
    };
    vec![
        c(
            Property::ConfidentialityCoverage,
            ClaimLevel::Partial,
            "XEP-0364 \"OTR Messages\"; spec digest §7",
            "only the <body/> text (and TLVs) is encrypted; attributes, subject, thread and extensions travel in clear",
        ),
        c(
            Property::Integrity,
            ClaimLevel::Partial,
            ver_src_data,
            "HMAC-SHA1 over the data message covers the body text only; the rest of the XMPP stanza is unprotected",
        ),
        c(
            Property::Replay,
            ClaimLevel::Claimed,
            ver_src_data,
            "the receiver rejects a counter not strictly larger than the last one seen for that key pair",
        ),
        c(
            Property::LossReorderTolerance,
            ClaimLevel::Partial,
            ver_src_km,
            "explicit key ids and counters tolerate loss; an older counter under the same key pair (reordering) is rejected",
        ),
        c(
            Property::ForwardSecrecy,
            ClaimLevel::Claimed,
            ver_src_km,
            "ephemeral DH keys rotated every round trip and forgotten",
        ),
        c(
            Property::PostCompromiseSecurity,
            ClaimLevel::NotClaimed,
            ver_src_km,
            "the spec is silent; the DH rotation may heal against a passive attacker, which it does not claim",
        ),
        c(
            Property::MessageRepudiation,
            ClaimLevel::Claimed,
            ver_src_reveal,
            "messages are authenticated by MACs only; signatures cover only the AKE",
        ),
        c(
            Property::ParticipationRepudiation,
            ClaimLevel::Partial,
            "otr-Protocol-v3 \"Authenticated Key Exchange\"; Di Raimondo, Gennaro, Krawczyk 2005",
            "the AKE signs the DH values with long-term DSA keys: a peer who keeps the AKE secrets can show the signature",
        ),
        c(
            Property::Forgeability,
            ClaimLevel::Claimed,
            ver_src_reveal,
            "old MAC keys are published and the encryption is malleable, so anyone can forge transcripts",
        ),
        c(
            Property::IdentityProtection,
            ClaimLevel::Partial,
            ver_src_intro,
            "public keys are hidden from passive eavesdroppers; not from an active attacker",
        ),
        c(
            Property::MitmDetection,
            ClaimLevel::Claimed,
            ver_src_intro,
            "the DSA-authenticated AKE exposes a MITM when users check fingerprints (or run SMP)",
        )
        .under("oob"),
        c(
            Property::MitmDetection,
            ClaimLevel::NotClaimed,
            ver_src_intro,
            "without a fingerprint check or SMP an unknown key is accepted",
        )
        .under("none/first-contact"),
        c(
            Property::MitmDetection,
            ClaimLevel::Partial,
            ver_src_intro,
            "a fingerprint other than the stored one is reported as new; the user must notice",
        )
        .under("none/pinned"),
        c(
            Property::DowngradeResistance,
            ClaimLevel::NotClaimed,
            ver_src_intro,
            "the version offer (query / whitespace tag) is unauthenticated; single-version policies avoid the choice",
        ),
        c(
            Property::IdentityMisbinding,
            ClaimLevel::NotClaimed,
            "otr-Protocol-v3 \"Authenticated Key Exchange\"",
            "the spec is silent; the SIGMA variant's MACs do not bind the peers' names",
        )
        .under("key-registration"),
    ]
}

fn info_for(v: Version) -> &'static ProtocolInfo {
    static V3: OnceLock<ProtocolInfo> = OnceLock::new();
    static V2: OnceLock<ProtocolInfo> = OnceLock::new();
    let (cell, spec, summary) = match v {
        Version::V3 => (
            &V3,
            "OTR Protocol v3 (libotr 4.1.1) carried per XEP-0364",
            "Off-the-Record v3 through libotr: SIGMA-style DSA AKE, AES-CTR + HMAC-SHA1, DH ratchet, instance tags",
        ),
        Version::V2 => (
            &V2,
            "OTR Protocol v2 (libotr 4.1.1) carried per XEP-0364",
            "Off-the-Record v2 through libotr: as v3 without instance tags",
        ),
    };
    cell.get_or_init(|| ProtocolInfo {
        id: v.id(),
        family: "otr",
        spec,
        summary,
        protects: &[StanzaKind::Message],
        after_bad_input: AfterBadInput::Unchanged,
        control_for: &[],
        claims: claims(v),
    })
}

/// Generated key files by bare JID (process-wide cache: DSA keygen is slow).
fn key_cache() -> &'static Mutex<HashMap<String, (SecretBytes, String)>> {
    static CACHE: OnceLock<Mutex<HashMap<String, (SecretBytes, String)>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Generate (uncached) a libotr key file for `jid`: (key file text, fingerprint hex).
pub fn generate_key_file(jid: &str) -> Result<(Zeroizing<Vec<u8>>, String)> {
    let us = ffi::UserState::new()?;
    let text = us.generate_privkey(jid)?;
    let fp = us.fingerprint(jid)?;
    Ok((text, fp))
}

fn cached_key(jid: &str) -> Result<(SecretBytes, String)> {
    let mut cache = key_cache()
        .lock()
        .map_err(|_| Error::Backend("OTR key cache poisoned".into()))?;
    if let Some(k) = cache.get(jid) {
        return Ok(k.clone());
    }
    let (text, fp) = generate_key_file(jid)?;
    let entry = (SecretBytes::from_slice(&text), fp);
    cache.insert(jid.to_string(), entry.clone());
    Ok(entry)
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Otr {
    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Create the concrete session (for SMP and test-only access).
    pub fn new_otr_session(&self, env: &mut Env, config: SessionConfig) -> Result<OtrSession> {
        config.identity.require_protocol(self.version.id())?;
        config
            .options
            .check_known(&["max_msg_size", "start", "versions", "ake_timeout"])?;
        let policy = match (self.version, config.options.get("versions")) {
            (_, None) | (Version::V3, Some("3")) | (Version::V2, Some("2")) => {
                self.version.policy()
            }
            (Version::V3, Some("2,3" | "3,2")) => {
                self.version.policy() | libotr_sys::OTRL_POLICY_ALLOW_V2
            }
            (_, Some(other)) => {
                return Err(ApiMisuse::BadOption {
                    key: "versions".into(),
                    reason: format!("the profile's own version, or 2,3 on otr-v3; not {other}"),
                }
                .into())
            }
        };
        let whitespace_start = match config.options.get("start") {
            None | Some("query") => false,
            Some("whitespace") => true,
            Some(other) => {
                return Err(ApiMisuse::BadOption {
                    key: "start".into(),
                    reason: format!("query or whitespace, not {other}"),
                }
                .into())
            }
        };
        let ake_timeout = config.options.get_u64("ake_timeout", 60)?;
        let mms = config.options.get_u64("max_msg_size", 0)?;
        // Smallest size libotr can fragment into: v3 headers take 37 chars.
        if mms != 0 && !(64..=1_000_000).contains(&mms) {
            return Err(ApiMisuse::BadOption {
                key: "max_msg_size".into(),
                reason: "0 (no fragmentation) or 64..=1000000".into(),
            }
            .into());
        }
        let bare = config.local_jid.to_bare().to_string();
        if config.identity.jid() != bare {
            return Err(IdentityError::JidMismatch(bare).into());
        }
        if let Some(p) = &config.peer_public {
            p.protocol
                .eq(self.version.id())
                .then_some(())
                .ok_or_else(|| IdentityError::WrongProtocol {
                    expected: self.version.id().into(),
                    found: p.protocol.clone(),
                })?;
        }
        // Instance tags from the seeded RNG (valid tags are >= 0x100).
        let mut instag = 0u32;
        while instag < ffi::MIN_VALID_INSTAG {
            instag = u32::from_be_bytes(env.random_array::<4>());
        }
        OtrSession::new(session::Setup {
            ake_timeout: std::time::Duration::from_secs(ake_timeout),
            info: info_for(self.version),
            version: self.version,
            role: config.role,
            local_jid: config.local_jid,
            peer_jid: config.peer_jid,
            peer_public: config.peer_public,
            key_file: Zeroizing::new(config.identity.secret().expose().to_vec()),
            instag,
            max_message_size: i32::try_from(mms).unwrap_or(0),
            whitespace_start,
            policy,
        })
    }
}

impl Protocol for Otr {
    fn info(&self) -> &ProtocolInfo {
        info_for(self.version)
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        OPTIONS
    }

    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        let bare = e2elab_core::stanza::bare_jid(jid).to_string();
        let (secret, fp) = cached_key(&bare)?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: self.version.id().to_string(),
                jid: bare,
                data: hex_to_bytes(&fp),
                fingerprint: Some(fp),
            },
            secret,
        ))
    }

    fn new_session(&self, env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        Ok(Box::new(self.new_otr_session(env, config)?))
    }
}
