//! The `mls` profile: Messaging Layer Security (RFC 9420) on openmls, a
//! two-member group per session, carried in XMPP `<message>` stanzas. No XEP
//! carries MLS yet, so the carriage is ours: an `<mls xmlns='urn:e2elab:mls:0'
//! kind='welcome|commit|application'>` element holding the base64 of one TLS
//! `MLSMessage`, with every child of the application stanza inside a
//! XEP-0420 `<envelope>` as the application message's content.
//!
//! Ciphersuite 1, `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`, on
//! openmls's RustCrypto provider (RustCrypto and dalek crates: no OpenSSL
//! backend exists for openmls, and OpenSSL 3.0 on Debian 12 has no HPKE).
//! Every primitive call goes through a wrapper that records it
//! ([`provider::Counting`]); HPKE's internal steps are derived from RFC 9180.
//!
//! The long-term identity is the member's Ed25519 signature key, its
//! `BasicCredential` (the bare JID) and one published KeyPackage (its
//! public data); the secret is the member's store as generated (signature
//! key, KeyPackage private keys). The initiator's `start` creates the group,
//! adds the peer's KeyPackage and sends the Welcome: one message, and the
//! peer may be offline (the Welcome waits like any stanza).
//!
//! ## Reproducibility
//! openmls and its provider draw key pairs and HPKE ephemerals from the
//! operating system; the group id and every choice of this crate come from
//! the `Env`. Sizes and counts are the same for a seed. openmls checks
//! KeyPackage lifetimes against the real clock (the virtual clock of a run
//! starts in 2005), so lifetimes are openmls's default (about 3 months from
//! generation).
//!
//! ## DECISIONS
//! 1. **Carriage.** No XEP exists for MLS over XMPP; our namespace
//!    `urn:e2elab:mls:0`, one `<mls>` per MLSMessage, in document order (a
//!    Commit before the application message it precedes), base64 text.
//!    (tests: `decision_carriage`)
//! 2. **Content.** The application message's bytes are a XEP-0420 envelope
//!    (`<content>` and a `<from>` affix, as `omemo` has), no `<rpad>`: MLS
//!    pads itself (openmls's default padding, 0 bytes, is kept).
//! 3. **Authentication.** A session is given the peer's KeyPackage (as PEP
//!    or a directory would give it); the KeyPackage's signature is checked,
//!    its credential must name the peer's bare JID, and in a joined group
//!    the other member's signature key must be that KeyPackage's. The
//!    fingerprint is the hex of the signature key. (tests:
//!    `decision_peer_keys_are_checked`)
//! 4. **Last-resort KeyPackage.** Each identity publishes one KeyPackage,
//!    marked last-resort (reused by every session, as the draft MLS
//!    extensions allow) since the harness's identities are immutable. A
//!    client remembers the Welcomes it accepted (by SHA-256) and refuses one
//!    again (`Replay`). The KeyPackage's private init key therefore stays in
//!    the identity: a *leaked identity* opens the Welcome and, through it,
//!    the group's first epoch (the forward-secrecy row measures this; a
//!    single-use KeyPackage whose key is deleted would not). (tests:
//!    `decision_welcome_replay_refused`)
//! 5. **Updates for post-compromise security.** With `update=turn` (the
//!    default) a member commits an update of its own leaf before its first
//!    application message after anything arrived from the peer: at most one
//!    Commit per turn, the rhythm in which the Double Ratchet heals, so the
//!    rows compare like for like; `update=never` sends application messages
//!    only, and MLS then does not heal. (tests: `decision_update_per_turn`)
//! 6. **Wire format.** openmls's default, ciphertext only
//!    (`PURE_CIPHERTEXT`): Commits and application messages are
//!    `PrivateMessage`s; the Welcome is a Welcome.
//! 7. **Bad input leaves the session unchanged.** openmls keeps its group
//!    state in the store; a stanza that fails is undone by restoring the
//!    store from a copy taken before it and reloading the group. (tests:
//!    `decision_bad_input_leaves_the_group_unchanged`)
//! 8. **Messages only**, as `omemo`.

#![deny(missing_docs)]

pub mod mls_primitives;
pub mod provider;
mod session;
#[cfg(test)]
mod tests;

pub use session::{restore, MlsSession};

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    Env, Error, Identity, PublicIdentity, Result, SecretBytes, Session, SessionConfig, StanzaKind,
};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// The profile id.
pub const ID: &str = "mls";
/// Our carriage namespace (DECISIONS 1).
pub const NS_MLS: &str = "urn:e2elab:mls:0";
/// The ciphersuite.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

const OPTIONS: &[(&str, &str)] = &[(
    "update",
    "turn (default): commit an update before the first message of each turn; never (DECISIONS 5)",
)];

/// The `mls` profile: one value is one client, with its memory of the
/// Welcomes it accepted (DECISIONS 4).
#[derive(Debug, Clone, Default)]
pub struct Mls {
    joined: Arc<Mutex<HashSet<Vec<u8>>>>,
}

impl Mls {
    /// A new client.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The identity secret.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Secret {
    /// The signature public key (the store holds the pair).
    pub signature_key: Vec<u8>,
    /// The store's entries as generated.
    pub store: Vec<(Vec<u8>, Vec<u8>)>,
}

fn backend(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Backend(format!("{what}: {e}"))
}

fn info() -> &'static ProtocolInfo {
    static INFO: OnceLock<ProtocolInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let c = Claim::new;
        use ClaimLevel::*;
        use Property::*;
        ProtocolInfo {
            id: ID,
            family: "mls",
            spec: "RFC 9420 (MLS), ciphersuite 1, on openmls 0.9; carriage of our own (no XEP)",
            summary: "a two-member MLS group: Welcome, signed and encrypted application messages, an update Commit per turn",
            protects: &[StanzaKind::Message],
            after_bad_input: AfterBadInput::Unchanged,
            control_for: &[],
            claims: vec![
                c(ConfidentialityCoverage, Partial, "RFC 9420 §6.3",
                  "the application message's content; our carriage leaves the stanza's attributes in clear"),
                c(Integrity, Claimed, "RFC 9420 §6.3, §16.3",
                  "AEAD and the sender's signature over the content"),
                c(Replay, Claimed, "RFC 9420 §9.1, §16.5",
                  "each generation's key is deleted after use"),
                c(LossReorderTolerance, Partial, "RFC 9420 §9.1",
                  "out-of-order application messages within an epoch (a window of generations); a lost Commit breaks the group"),
                c(ForwardSecrecy, Claimed, "RFC 9420 §16.6",
                  "secrets deleted after use; epochs advance"),
                c(PostCompromiseSecurity, Claimed, "RFC 9420 §16.6",
                  "a Commit with a path update heals the group"),
                c(MessageRepudiation, NotClaimed, "RFC 9420 §16.3",
                  "application messages carry the sender's signature"),
                c(MessageRepudiation, NotClaimed, "RFC 9420 §16.3",
                  "the signature is transferable to anyone holding the group's keys").under("online"),
                c(ParticipationRepudiation, NotClaimed, "RFC 9420 §16.3",
                  "KeyPackages, leaf nodes and messages are signed by the long-term key"),
                c(Forgeability, NotClaimed, "RFC 9420 §16.3",
                  "signatures: no member can write as another"),
                c(IdentityProtection, NotClaimed, "RFC 9420 §16.4.1",
                  "KeyPackages and the Welcome's tree carry credentials; PrivateMessage hides the sender only from non-members").under("passive"),
                c(MitmDetection, Claimed, "RFC 9420 §16.10",
                  "the application must authenticate credentials (here: the peer's KeyPackage is known)").under("none/pinned"),
                c(MitmDetection, NotClaimed, "RFC 9420 §16.10",
                  "the Authentication Service is out of scope: a substituted KeyPackage is used").under("none/first-contact"),
                c(MitmDetection, Claimed, "RFC 9420 §16.10",
                  "users compare the signature keys").under("oob"),
                c(DowngradeResistance, NotApplicable, "RFC 9420 §12.4",
                  "one ciphersuite fixed by the group creator; nothing negotiated on our wire"),
                c(IdentityMisbinding, Claimed, "RFC 9420 §16.4",
                  "credentials are bound to leaves and signatures"),
            ],
        }
    })
}

impl e2elab_core::Protocol for Mls {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        OPTIONS
    }

    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        let provider = provider::Provider::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .map_err(|e| Error::Backend(format!("MLS signature key: {e:?}")))?;
        signer
            .store(provider.storage())
            .map_err(|e| Error::Backend(format!("MLS store: {e:?}")))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(jid.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        // The last-resort extension must be among the leaf's capabilities.
        let capabilities = Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&[ExtensionType::LastResort]),
            None,
            None,
        );
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities)
            .mark_as_last_resort()
            .build(
                CIPHERSUITE,
                &provider,
                &provider::CountingSigner(&signer),
                credential,
            )
            .map_err(|e| Error::Backend(format!("MLS KeyPackage: {e:?}")))?;
        let data = bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(|e| Error::Backend(format!("MLS KeyPackage: {e:?}")))?;
        let secret = serde_json::to_vec(&Secret {
            signature_key: signer.public().to_vec(),
            store: provider::dump(provider.storage()).map_err(backend("MLS store"))?,
        })
        .map_err(|e| Error::Backend(format!("MLS identity: {e}")))?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: ID.to_string(),
                jid: jid.to_string(),
                data,
                fingerprint: Some(hex(signer.public())),
            },
            SecretBytes::new(secret),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        let names: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
        config.options.check_known(&names)?;
        let per_turn = match config.options.get("update") {
            None | Some("turn") => true,
            Some("never") => false,
            Some(v) => {
                return Err(e2elab_core::ApiMisuse::BadOption {
                    key: "update".into(),
                    reason: format!("{v}: expected turn or never"),
                }
                .into())
            }
        };
        Ok(Box::new(MlsSession::new(
            config,
            per_turn,
            self.joined.clone(),
        )?))
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
