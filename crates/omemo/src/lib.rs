//! The `omemo` profile: OMEMO as XMPP clients deploy it today (XEP-0384
//! v0.9, `urn:xmpp:omemo:2`, with XEP-0420 Stanza Content Encryption), its
//! Double Ratchet and key agreement run by vodozemac, Matrix's audited Rust
//! Olm. It is the twenty-years-later row beside the 2005 designs: measured
//! through the same trait, harness and experiments.
//!
//! ## What goes on the wire
//! A protected `<message>` keeps its attributes and carries
//! `<encrypted xmlns='urn:xmpp:omemo:2'>` with a `<header sid>` (the sending
//! device), one `<keys jid>` for the recipient's bare JID holding one
//! `<key rid [kex='true']>` (the recipient device; the Olm message that
//! carries the payload key, base64), and a `<payload>` (base64 AES-256-CBC
//! of the XEP-0420 `<envelope>`), plus the `<store xmlns='urn:xmpp:hints'/>`
//! of the XEP's example. Every child of the application stanza goes inside
//! the envelope's `<content>`, beside the `<rpad>` and `<from>` affixes.
//!
//! The long-term identity is the device's bundle (XEP-0384 §5.3.2): the
//! Ed25519 identity key, a signed prekey, 100 one-time prekeys, published as
//! the PEP item `<item id='device id'><bundle/></item>` (the
//! [`e2elab_core::PublicIdentity`] data), and the vodozemac account that
//! holds their private halves (the secret). The key exchange rides on the
//! first message to a device (XEP-0384 §4.2: "just-in-time"): the responder
//! may be offline, so the session is usable at once and there is no
//! handshake to count; its cost is the first message's.
//!
//! ## Reproducibility
//! vodozemac draws its key pairs (identity, prekeys, the X3DH base key,
//! every ratchet key) from the operating system and offers no way to pass an
//! RNG. Those bytes are not reproducible from the seed; every choice this
//! crate makes itself is (the payload keys, the `<rpad>`, which prekey the
//! initiator takes, the device ids), so the message sequence, every size
//! and every count are the same for a seed, as with libgcrypt in `otr-v3`.
//!
//! ## Crypto
//! The payload layer (HKDF-SHA-256 "OMEMO Payload", AES-256-CBC, HMAC-SHA-256
//! truncated to 16 bytes, XEP-0384 §4.4) and the bundle signatures' checks
//! run on OpenSSL, like every native crate. The Olm layer (X25519, HKDF, the
//! symmetric ratchet, AES-256-CBC + HMAC of the 48-byte key material) runs in
//! vodozemac on the RustCrypto and dalek crates; its operations are
//! recorded as [`e2elab_core::Lib::RustCrypto`], and [`olm_primitives`]
//! lets the harness's floors replay them in the same code.
//!
//! Secrets: the account pickle (the identity secret) is kept in
//! [`e2elab_core::SecretBytes`]; vodozemac zeroizes its own keys; payload
//! keys live in `Zeroizing` buffers; `Debug` prints no key material; the
//! payload tag is compared in constant time.
//!
//! ## Deniability, executable
//! [`simulate::simulate_from_peer`] is what Bob can write in Alice's name
//! with his own account and her public bundle: Olm's 3DH needs none of her
//! private keys on his side. The security experiments' online judges are
//! shown it beside her genuine stanzas (`message_repudiation` online and
//! `participation_repudiation` hold for `omemo` because of it).
//!
//! ## DECISIONS
//! Byte interop with OMEMO clients is not the goal: measurement parity is.
//! Where vodozemac's Olm differs from OMEMO 2's exact key derivation, the
//! difference and what it changes for the comparison is listed here, each
//! with the test that shows it.
//!
//! 1. **Olm's 3DH, not X3DH.** OMEMO 2 computes DH(IK_A, SPK_B),
//!    DH(EK_A, IK_B), DH(EK_A, SPK_B), DH(EK_A, OPK_B) (four agreements);
//!    Olm computes DH(IK_A, OTK_B), DH(EK_A, IK_B), DH(EK_A, OTK_B) (three):
//!    the one-time prekey takes the signed prekey's place and there is no
//!    fourth. Per key exchange that is one X25519 agreement fewer on each
//!    side (counted as run: `x25519_dh`). What it changes for security: a
//!    one-time prekey whose private half leaks with the identity key opens
//!    the first messages (the forward-secrecy row measures it; see 5).
//!    (tests: `decision_key_exchange_counts_three_agreements`)
//! 2. **Two identity keys.** OMEMO 2 has one Ed25519 identity key, converted
//!    to X25519 for agreements; vodozemac keeps an Ed25519 signing key and a
//!    separate Curve25519 identity key. The bundle carries the XEP's `<ik>`
//!    (Ed25519) and, in our namespace `urn:e2elab:omemo-olm:0`, a `<cik>`
//!    with the Curve25519 key and an Ed25519 signature over
//!    `"OMEMO-Olm cik" || cik`: 32 + 64 bytes (176 base64 characters with
//!    markup) more per bundle fetch, none per message. A receiver checks
//!    both signatures before it uses a bundle; the fingerprint is the hex of
//!    `<ik>`. (tests: `decision_bundle_signatures_are_checked`)
//! 3. **The signed prekey is Olm's fallback key.** The `<spk>` is the
//!    account's fallback key, signed by `<ik>` as OMEMO's `Sig(IK, SPK)`.
//!    Olm has no DH with it; the initiator uses it only when the bundle has
//!    no one-time prekey left (XEP-0384 says every key exchange MUST use a
//!    prekey, so it always takes a `<pk>` when there is one). (tests:
//!    `decision_spk_used_only_without_prekeys`)
//! 4. **Olm's message format and MAC.** The `<key>` text is base64 of
//!    vodozemac's Olm message (version 3, MAC truncated to 8 bytes, the
//!    libolm format), not OMEMO 2's protobuf with a 16-byte tag: the Olm
//!    message key material and sizes differ by those 8 bytes and the
//!    protobuf framing; the 48-byte key material it carries (32-byte key +
//!    16-byte payload tag) is OMEMO 2's. The KDF labels are Olm's
//!    ("OLM_ROOT", "OLM_RATCHET", "OLM_KEYS"), not "OMEMO X3DH",
//!    "OMEMO Root Chain", "OMEMO Message Key Material"; the associated data
//!    is not `IK_A || IK_B` (Olm binds the identity keys through the 3DH
//!    inputs). (tests: `decision_key_element_is_an_olm_message`)
//! 5. **Device memory lives in the client.** A client (one [`Omemo`]
//!    value: one device) remembers the base key of every key exchange it
//!    accepted and every one-time prekey it used up, across its sessions:
//!    a replayed key exchange is refused (`Replay`) and so is a new one on a
//!    used prekey, as a device that deleted it would. Initiators pick among
//!    the prekeys no client of that device has used (the republished
//!    bundle: XEP-0384 §5.5 MUST), and take the signed prekey when none is
//!    left. The harness's identities are immutable, so the account a session
//!    starts from still holds every private prekey: a *leaked identity*
//!    therefore opens the first messages of a session (the forward-secrecy
//!    row measures this device, one that kept used prekeys as §8 allows
//!    during catch-up), and a new client of the same identity (a device
//!    restored from a backup) accepts an old key exchange again. (tests:
//!    `decision_device_memory_refuses_replayed_key_exchanges`)
//! 6. **One device per account.** XEP-0384 encrypts every message to each
//!    of the recipient's devices and to the sender's other devices; the
//!    comparison's parties have one device each, so a message has one
//!    `<keys>` with one `<key>`. A real client adds one `<key>` (about 140
//!    base64 characters once the session is established) per further device.
//! 7. **Session completion and replacement.** After building a session from a
//!    key exchange, the receiver answers with an empty OMEMO message (32 zero
//!    bytes through the ratchet, no `<payload>`; XEP-0384 §7 SHOULD), so the
//!    initiator stops sending key exchanges; option `complete_kex=false`
//!    turns it off. A key exchange from a different Olm session replaces the
//!    current one (§5.5 MUST). The initiator keeps sending key exchanges
//!    until something arrives (Olm's rule, as §4.3 says). (tests:
//!    `decision_kex_is_answered_by_an_empty_message`)
//! 8. **Affixes.** The envelope carries `<rpad>` (MUST; 1 to 256 base64
//!    characters from the `Env`, the rule of `xep0373-ox`, since XEP-0420 is
//!    not among the texts here) and `<from jid>` (SHOULD; the sender's bare
//!    JID, checked against the stanza's sender), no `<time>` (MAY; the ratchet
//!    already rejects replays) and no `<to>` (MUST only in group chats).
//!    (tests: `decision_envelope_affixes`)
//! 9. **No heartbeat.** XEP-0384 §7 asks for an empty message when a chain
//!    reaches 53 messages; not implemented (a one-way burst keeps one chain;
//!    vodozemac skips up to 2000 message keys).
//! 10. **Bad input leaves the session unchanged.** A stanza whose Olm message
//!     decrypts but whose payload does not check out restores the Olm session
//!     from a copy taken before (vodozemac's own decryption is transactional),
//!     so a forged payload does not consume a message key. (tests:
//!     `decision_bad_payload_leaves_the_ratchet_unchanged`)
//! 11. **Messages only.** OMEMO protects `<message>` stanzas; presence and iq
//!     are refused on send and delivered as unprotected on receipt.

#![deny(missing_docs)]

mod bundle;
pub mod olm_primitives;
mod payload;
mod session;
pub mod simulate;
#[cfg(test)]
mod tests;

pub use bundle::Bundle;
pub use session::{restore, OmemoSession};

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    Env, Identity, PublicIdentity, Result, SecretBytes, Session, SessionConfig, StanzaKind,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

/// The profile id.
pub const ID: &str = "omemo";
/// XEP-0384 v0.9's namespace.
pub const NS_OMEMO: &str = "urn:xmpp:omemo:2";
/// XEP-0420's namespace.
pub const NS_SCE: &str = e2elab_core::sce::NS_SCE;
/// XEP-0334 hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// Our bundle extension (DECISIONS 2).
pub const NS_OLM: &str = "urn:e2elab:omemo-olm:0";
/// XEP-0060's namespace (the bundle's PEP item).
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// One-time prekeys per bundle (XEP-0384 §4.1: SHOULD around 100).
pub const PREKEYS: usize = 100;
/// `<rpad>` lengths are uniform in `1..=RPAD_MAX` characters (DECISIONS 8).
pub const RPAD_MAX: usize = 256;

const OPTIONS: &[(&str, &str)] = &[(
    "complete_kex",
    "answer a key exchange with an empty OMEMO message (default true; DECISIONS 7)",
)];

/// The `omemo` profile: one value is one client (device) with its memory
/// of used prekeys and accepted key exchanges (DECISIONS 5).
#[derive(Debug, Clone, Default)]
pub struct Omemo {
    memory: Arc<Mutex<DeviceMemory>>,
}

impl Omemo {
    /// A new client with an empty memory.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What a device remembers across its sessions (DECISIONS 5).
#[derive(Debug, Default)]
pub(crate) struct DeviceMemory {
    /// Base keys of the key exchanges it accepted.
    pub base_keys: HashSet<[u8; 32]>,
    /// One-time prekeys it used up.
    pub used_otks: HashSet<[u8; 32]>,
}

/// Used-up prekeys by the bundle's `<ik>`.
pub(crate) type UsedPrekeys = HashMap<[u8; 32], HashSet<[u8; 32]>>;

/// The prekeys each device used up, as its republished bundle shows them
/// to every initiator (keyed by the bundle's `<ik>`).
pub(crate) fn republished() -> &'static Mutex<UsedPrekeys> {
    static PEP: OnceLock<Mutex<UsedPrekeys>> = OnceLock::new();
    PEP.get_or_init(|| Mutex::new(HashMap::new()))
}

fn info() -> &'static ProtocolInfo {
    static INFO: OnceLock<ProtocolInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let c = Claim::new;
        use ClaimLevel::*;
        use Property::*;
        ProtocolInfo {
            id: ID,
            family: "omemo",
            spec: "XEP-0384 v0.9 (urn:xmpp:omemo:2) + XEP-0420, on vodozemac 0.11 Olm",
            summary: "Olm 3DH + Double Ratchet carrying a per-message key; every message child in an SCE envelope (AES-256-CBC + HMAC)",
            protects: &[StanzaKind::Message],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[],
            claims: vec![
                c(ConfidentialityCoverage, Partial, "XEP-0384 §5.4; XEP-0420",
                  "every child in the SCE envelope; stanza attributes, the header (device ids) and the <store/> hint in clear"),
                c(Integrity, Claimed, "XEP-0384 §2",
                  "\"Integrity: every peer can ensure that a message was not changed\" (HMAC over the payload, the ratchet's MAC over the key)"),
                c(Replay, Claimed, "XEP-0384 §2.1",
                  "the threat model includes attackers who replay; each message key is used once"),
                c(LossReorderTolerance, Claimed, "XEP-0384 §1.2, §4.3",
                  "lost and out-of-order messages handled by the Double Ratchet (skipped message keys, MAX_SKIP 1000)"),
                c(ForwardSecrecy, Partial, "XEP-0384 §2",
                  "\"only weak forward secrecy (it protects the session key only once both parties complete the key exchange)\""),
                c(PostCompromiseSecurity, Claimed, "XEP-0384 §2",
                  "\"Break-in Recovery: a session which has been compromised ... recovers after a few communication rounds\""),
                c(MessageRepudiation, Claimed, "XEP-0384 §2",
                  "\"X3DH is weakly offline deniable\"; messages carry MACs under shared keys, no signatures"),
                c(MessageRepudiation, NotClaimed, "XEP-0384 §2",
                  "\"provides no online deniability\"").under("online"),
                c(ParticipationRepudiation, Partial, "XEP-0384 §2",
                  "\"X3DH is weakly offline deniable\": the identity key signs only the prekeys"),
                c(Forgeability, NotClaimed, "XEP-0384 §2",
                  "silent: no MAC keys are published; the receiver holds the message keys"),
                c(IdentityProtection, NotClaimed, "XEP-0384 §5.3",
                  "bundles are public in PEP; a key exchange carries the sender's identity key in clear").under("passive"),
                c(MitmDetection, Claimed, "XEP-0384 §8",
                  "users compare the identity key's fingerprint").under("oob"),
                c(MitmDetection, NotClaimed, "XEP-0384 §2, §8",
                  "trust management is out of scope: without a check the bundle from PEP is used").under("none/first-contact"),
                c(MitmDetection, Claimed, "XEP-0384 §8",
                  "a session is built only with a trusted identity key").under("none/pinned"),
                c(DowngradeResistance, NotApplicable, "XEP-0384 §10",
                  "no negotiation: the namespace is the version"),
                c(IdentityMisbinding, Claimed, "XEP-0384 §4.1; XEP-0420",
                  "the key agreement binds both identity keys; the envelope's <from> names the sender"),
            ],
        }
    })
}

impl e2elab_core::Protocol for Omemo {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        OPTIONS
    }

    fn generate_identity(&self, env: &mut Env, jid: &str) -> Result<Identity> {
        let (bundle, secret) = bundle::generate(env)?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: ID.to_string(),
                jid: jid.to_string(),
                data: bundle.to_item_bytes()?,
                fingerprint: Some(bundle.fingerprint()),
            },
            SecretBytes::new(secret),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        let names: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
        config.options.check_known(&names)?;
        let complete_kex = config.options.get_bool("complete_kex", true)?;
        Ok(Box::new(OmemoSession::new(
            config,
            complete_kex,
            self.memory.clone(),
        )?))
    }
}
