//! # `xmldsig`: XML Signature (XEP-0290) and XML Encryption of stanzas
//!
//! The fifth design people asked for in 2005, "XML Signature for end-to-end
//! encryption of XMPP stanzas", as the XSF later wrote it down: XEP-0290
//! (Encapsulated Digital Signatures in XMPP, 0.2, 2011) signs a manifest
//! (`<stanza-desc/>`) of digests of the stanza's children with W3C XML-DSig;
//! W3C XML Encryption gives the same style confidentiality.
//!
//! Profiles:
//! - `xep0290-dsig`: XEP-0290 as written: each child of the stanza gets a
//!   `urn:xmpp:dsig:0` `id`; the `<stanza-desc/>` names the signer (bare
//!   JID), the stanza's `from` (bare), `to`, `id` and `type`, one
//!   `<reference URI='urn:xmpp:dsig:ref:0#id'/>` per child with the SHA-256
//!   digest of its canonical form, and a timestamp; one RSA-SHA256
//!   signature covers it. Integrity and origin, *no confidentiality*.
//! - `xmlenc-dsig`: the same signed content (children and `<Signature/>`)
//!   encrypted as W3C XML Encryption `<EncryptedData Type='...#Content'/>`
//!   with AES-128-GCM (XML Encryption 1.1; option `cipher=aes128-cbc` for
//!   1.0's AES-128-CBC) and the content key in an `<EncryptedKey/>` under
//!   the recipient's RSA key (RSA-OAEP, MGF1/SHA-1).
//!
//! There is no handshake: certificates (RSA-2048, self-signed, naming the
//! JID as id-on-xmppAddr, the same as the RFC 3923 profiles') are obtained
//! out of band through [`SessionConfig::peer_public`] and pinned; a session
//! is `Established` from creation. Each stanza costs the sender one RSA
//! signature (and for `xmlenc-dsig` one RSA-OAEP encryption), the receiver
//! one verification (and one decryption), recorded in the operation log
//! with the SHA-256 digests, the cipher and the base64 work.
//!
//! ## Threat model
//! `xep0290-dsig` protects, against the server and anyone on the path, the
//! integrity and origin of every child it references and of the stanza's
//! `from` (bare), `to`, `type` and `id`, which the manifest repeats. It
//! hides nothing. `xmlenc-dsig` adds confidentiality of the children.
//! Neither protects the fact, time and size of communication or the
//! identities of the parties (JIDs in clear; the signer named in the
//! manifest, in clear for `xep0290-dsig`). No forward secrecy (RSA key
//! transport to a long-term key), no repudiability (signatures are
//! transferable proof of authorship: XEP-0290 §1 lists non-repudiation as a
//! service). Replays are refused within the timestamp window by a memory of
//! accepted timestamps, and outside it by the window.
//!
//! Randomness and time: the virtual clock gives the timestamps; our `Env`
//! gives the `d:id` values, the content keys and IVs and certificate
//! serials; OpenSSL's RNG makes the RSA keys and the OAEP padding (it takes
//! no other). The private key lives in OpenSSL memory; its PKCS#8 copy in
//! the identity is `SecretBytes`.
//!
//! ## DECISIONS
//! XEP-0290 leaves its mandatory algorithms "TBD", defines its transform
//! only in prose and has malformed examples; each choice is tested, and
//! the tests are named after it.
//!
//! 1. **Algorithms (XEP-0290 "Mandatory-to-Implement": TBD).** Signature
//!    RSA PKCS#1 v1.5 with SHA-256 (`xmldsig-more#rsa-sha256`, RFC 6931),
//!    digests SHA-256 (`xmlenc#sha256`), SignedInfo and the manifest's
//!    reference canonicalized with Exclusive C14N 1.0. The examples' DSA-SHA1
//!    and C14N 1.1 are not used: DSA-SHA1 is deprecated (RFC 6931 §2.3.5
//!    notes SHA-1's weakness) and the RFC 3923 profiles we compare against
//!    use RSA; Exclusive C14N makes the signed `<stanza-desc/>`'s canonical
//!    form independent of the stanza around it (a server that adds a
//!    namespace declaration or `xml:lang` to the stanza does not change it).
//!    Nothing else is accepted on receipt (no negotiation, so nothing to
//!    downgrade). (tested by `tests::only_the_chosen_algorithms_are_accepted`)
//! 2. **The transform `urn:xmpp:dsig:transform:0`.** The XEP defines it in
//!    prose: "normalized (omitting comments), as detailed in [C14N], as a
//!    document subset of a document containing a stream element containing
//!    the appropriate jabber:client stanza element". Its own example output
//!    (Example 9: `<thread xmlns="jabber:client" xmlns:d="urn:xmpp:dsig:0"
//!    d:id="xxxx-1">`) omits the stream's `xmlns:stream`, which inclusive
//!    C14N would output: the example is *exclusive* C14N. We send Exclusive
//!    C14N by default and name the C14N we used as a second `<Transform/>`
//!    in the manifest (signed, so it cannot be changed on the path); option
//!    `c14n=inclusive` sends Canonical XML 1.0 of the document subset (the
//!    text's reading: the apex outputs `xmlns:stream` and inherits the
//!    stanza's `xml:lang`). A receiver accepts either, as the manifest
//!    names it. (tested by `c14n::tests::xep0290_example_child_canonicalizes_as_the_xep_shows`,
//!    `tests::inclusive_c14n_option_round_trips_and_is_named`)
//! 3. **Prefixes.** The stanza model keeps namespaces, not the sender's
//!    prefixes, so the canonical form is the one of the prefix-normalized
//!    document (see [`c14n`]): elements unprefixed, `xml:` and `d:` (for
//!    `urn:xmpp:dsig:0`) on attributes. Our sender declares exactly those
//!    (`xmlns:d` on each signed child), so xmlsec1 and lxml compute the same
//!    bytes from our wire form. The check is therefore namespace-aware, not
//!    byte-exact: a prefix renamed on the path (a server re-serializing, or
//!    our own re-serialization of a parsed stanza, which names the
//!    namespace `tns0`) still verifies here where W3C C14N of the received
//!    bytes would not; and a signature a sender computed over another
//!    serialization (`ds:`-prefixed XML-DSig, as xmlsec1 accepts) fails to
//!    verify here: fail closed, and XEP-0274's point that XML signatures
//!    depend on a serialization XMPP does not preserve. A signed child with
//!    an attribute in any other namespace cannot be canonicalized and is
//!    refused. (tested by `tests::prefix_renaming_on_the_path_is_accepted_by_the_namespace_aware_check`,
//!    `tests/xmlsec1.rs: xmlsec1_signatures_from_templates_are_accepted`,
//!    `c14n::tests::unknown_attribute_namespace_is_refused`)
//! 4. **The manifest's namespaces.** The examples write `<message/>`,
//!    `<reference/>`, `<Transforms/>` and `<DigestMethod/>` inside
//!    `<stanza-desc xmlns='urn:xmpp:dsig:0'>` without a namespace of their
//!    own: they are in `urn:xmpp:dsig:0`, and so are ours. The examples'
//!    syntax errors (`</Transform>` after a self-closed `<Transform/>`,
//!    `<SignatureMethod .../` without `>`) are not reproduced. The
//!    `<Transforms/>` in SignedInfo's `<Reference/>` is `<Transforms>` with
//!    one `<Transform/>` (the examples' `</Transform>` closing is read as a
//!    typo for `</Transforms>`).
//! 5. **What the manifest's `<message/>` carries.** "Default attribute
//!    values are added": a message without `type` is signed, and sent, as
//!    `type='normal'` (RFC 6121 §5.2.2); presence and iq have none. The
//!    signed element carries `from` = the signer's bare JID (Example 2
//!    shows the resource removed), and `to`, `id`, `type` as sent. The
//!    receiver requires: the stanza's bare `from` and the signed `from` to
//!    be the signer, who must be the session's peer; a signed `to` to name
//!    us (bare) and the stanza's `to` likewise (a message signed for
//!    someone else and forwarded is refused); the types equal; a signed
//!    `id` equal to the stanza's. (tested by `tests::forwarded_message_is_refused`,
//!    `tests::changed_type_or_id_is_refused`)
//! 6. **References.** Every child of the stanza is referenced; `d:id` is
//!    `<8 hex digits from Env>-<n>`. On receipt each reference must name
//!    exactly one child (a `d:id` that occurs twice is refused, as is a
//!    reference to no child or the same id twice), every digest must match,
//!    and the manifest must be the one element with its `id` in the whole
//!    stanza, located at `Signature/Object/stanza-desc` (signature
//!    wrapping: a second element with the same id, or the signed manifest
//!    moved elsewhere, is refused). Children the manifest does not reference
//!    are *not delivered*; they are reported as
//!    `Warning::UnprotectedExtras` (a server's `<delay/>`, say). The
//!    delivered stanza is the stanza's attributes and the referenced
//!    children with their `d:id` removed. (tested by `tests::signature_wrapping_is_refused`,
//!    `tests::unreferenced_child_is_not_delivered`, `tests::bad_references_are_typed_errors`)
//! 7. **Timestamps.** Sent in the 24-character form the XEP requires,
//!    strictly increasing (one millisecond past the last if the clock has
//!    not moved). A timestamp more than five minutes from the receiver's
//!    clock is *refused* (`BadTimestamp`, "old timestamp" / "future
//!    timestamp"; the XEP says SHOULD present it marked, MAY return an
//!    error: refusing is what makes replay protection hold). A stanza
//!    carrying a `<delay xmlns='urn:xmpp:delay'/>` (XEP-0203, stamped by the
//!    server on offline storage) is checked against the delay's stamp
//!    instead, as the XEP says; the delay itself is unsigned and reported
//!    as an unprotected extra. Timestamps accepted in the last ten minutes
//!    are remembered per (us, peer) by the client (one [`XmlDsig`] value)
//!    and an equal one is a replay. A timestamp not in the 24-character form
//!    is refused. (tested by `tests::timestamps_outside_the_window_are_refused`,
//!    `tests::replay_within_the_window_is_refused`, `tests::offline_delay_moves_the_window`)
//! 8. **Certificates (XEP-0290 §"Certificates").** The certificate is
//!    attached in `<KeyInfo><X509Data>` on the first stanza and then at most
//!    every five minutes (as the RFC 3923 profiles do). The receiver
//!    verifies with the pinned certificate only; an attached certificate
//!    other than the pinned one raises `Warning::KeyChanged` and changes
//!    nothing. The pinned certificate must name the peer's JID
//!    (id-on-xmppAddr). One `<Signature/>` per stanza: XEP-0290 allows
//!    several signers (a server may sign too); more than one is
//!    `Unsupported`. (tested by `tests::certificate_attached_at_most_every_five_minutes`)
//! 9. **Encryption (`xmlenc-dsig`).** Sign, then encrypt: the plaintext is
//!    the serialization of the signed children and the `<Signature/>`, so
//!    the signature, the signer and the manifest are hidden too, and the
//!    signed `to` stops a recipient from re-encrypting the stanza to someone
//!    else. `<EncryptedData Type='http://www.w3.org/2001/04/xmlenc#Content'>`
//!    replaces the children; `<KeyInfo>` holds one `<EncryptedKey/>`
//!    (RSA-OAEP-MGF1P, default SHA-1 digest, no parameters) that does not
//!    name the recipient. AES-128-GCM (`xmlenc11#aes128-gcm`: 96-bit IV
//!    prepended, 128-bit tag appended) by default; `cipher=aes128-cbc`
//!    (`xmlenc#aes128-cbc`, IV prepended, §5.2 padding of which only the
//!    last octet is read) measures the 1.0-era design. A receiver reads its
//!    profile's cipher only: accepting the other would open Jager,
//!    Schinzel and Somorovsky's backwards-compatibility attack (CCS 2012),
//!    where a CBC oracle decrypts GCM ciphertexts under the same key
//!    transport. With CBC every failure after the key was unwrapped
//!    (padding, XML, signature) is the one opaque `DecryptFailed`: a
//!    distinguishable one is Jager and Somorovsky's "How to break XML
//!    Encryption" (CCS 2011) oracle. (tested by `tests::other_cipher_is_refused`,
//!    `tests::cbc_failures_after_decryption_are_indistinguishable`)
//! 10. **Unprotected stanzas.** A stanza without `<Signature/>`
//!     (`xep0290-dsig`) or `<EncryptedData/>` (`xmlenc-dsig`) is delivered
//!     as `DeliveredUnprotected` after `Warning::UnprotectedStanza`, never
//!     as protected. A stanza error (`type='error'` with `<error/>`) is not
//!     verified; it raises `Warning::Other`. (tested by `tests::unprotected_stanza_is_marked`)
//! 11. **No iq in `xep0290-dsig`.** XEP-0290 says the process is "very
//!     similar regardless of the form of stanza", but an encapsulated
//!     `<Signature/>` beside an iq's payload gives the iq two children,
//!     which RFC 6120 §8.2.3 forbids for get and set: measured through
//!     Prosody 0.12 (`harness/tests/xmpp.rs`), the server bounces it with
//!     `<bad-request/>` "Incorrect number of child elements". The profile
//!     protects messages and presence only and refuses to send an iq
//!     (`CannotProtect`); `xmlenc-dsig` carries one `<EncryptedData/>` and
//!     protects iq too. (tested by `tests::iq_is_refused_by_the_signature_profile`)
//! 12. **`close`** is local (no session to end): the key is dropped and
//!     later calls fail with `ApiMisuse::Closed`. (tested by `tests::close_drops_the_key`)
#![forbid(unsafe_code)]

pub mod c14n;
pub mod dsig;
pub mod xmlenc;

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::stanza::{self, NS_CLIENT};
use e2elab_core::timestamps::{self, AcceptedTimestamps};
use e2elab_core::{
    ApiMisuse, DecodeError, Element, Env, Error, Event, Identity, IdentityError, Outbox,
    PeerIdentity, Protection, Protocol, PublicIdentity, Result, Role, SecretBytes, Session,
    SessionConfig, SessionState, StanzaKind, Timestamp, Warning,
};
use e2elab_rfc3923::cert;
use openssl::pkey::{PKey, Private, Public};
use std::sync::OnceLock;
use std::time::Duration;
use zeroize::Zeroizing;

pub use c14n::Method as C14nMethod;
pub use xmlenc::ContentCipher;

/// XEP-0290: a timestamp must be within this of the receiver's clock.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Accepted timestamps are remembered this long (twice the window).
pub const TIMESTAMP_MEMORY: Duration = Duration::from_secs(10 * 60);
/// The certificate is attached at most this often.
pub const CERT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";

/// The two profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// XEP-0290 signatures only.
    Dsig,
    /// XEP-0290 signatures inside W3C XML Encryption.
    XmlEnc,
}

impl Profile {
    /// The protocol id.
    pub fn id(self) -> &'static str {
        match self {
            Profile::Dsig => "xep0290-dsig",
            Profile::XmlEnc => "xmlenc-dsig",
        }
    }
}

/// One client of a profile, with the replay memory its sessions share.
#[derive(Debug, Clone)]
pub struct XmlDsig {
    profile: Profile,
    memory: AcceptedTimestamps,
}

impl XmlDsig {
    /// `xep0290-dsig`.
    pub fn dsig() -> Self {
        Self {
            profile: Profile::Dsig,
            memory: AcceptedTimestamps::default(),
        }
    }

    /// `xmlenc-dsig`.
    pub fn xmlenc() -> Self {
        Self {
            profile: Profile::XmlEnc,
            memory: AcceptedTimestamps::default(),
        }
    }

    /// Which profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

fn claims(profile: Profile) -> Vec<Claim> {
    let c = Claim::new;
    use ClaimLevel::*;
    use Property::*;
    let conf = match profile {
        Profile::Dsig => c(ConfidentialityCoverage, NotClaimed, "XEP-0290 §1",
            "signatures only: every child travels in clear"),
        Profile::XmlEnc => c(ConfidentialityCoverage, Partial, "W3C XML Encryption §3.1 (Type Content)",
            "every child of the stanza, the signature with it; the stanza's attributes stay in clear"),
    };
    let fs = match profile {
        Profile::Dsig => c(
            ForwardSecrecy,
            NotApplicable,
            "XEP-0290 §1",
            "nothing is encrypted",
        ),
        Profile::XmlEnc => c(
            ForwardSecrecy,
            NotClaimed,
            "W3C XML Encryption §5.4",
            "RSA key transport to the long-term key decrypts every recorded stanza",
        ),
    };
    vec![
        conf,
        c(Integrity, Claimed, "XEP-0290 §1, §2",
          "every referenced child and the stanza's from (bare), to, type and id, under the signer's key"),
        c(Replay, Claimed, "XEP-0290 §3 (timestamps)",
          "a timestamp within five minutes of the receiver's clock; the XEP says they 'help prevent replay attacks'"),
        c(LossReorderTolerance, Claimed, "XEP-0290 §2", "every stanza stands alone"),
        fs,
        c(PostCompromiseSecurity, NotClaimed, "XEP-0290 §4",
          "no ephemeral state: a stolen key works until the certificate is replaced"),
        c(MessageRepudiation, NotClaimed, "XEP-0290 §1",
          "non-repudiation is one of the services the XEP lists").under("online"),
        c(ParticipationRepudiation, NotClaimed, "XEP-0290 §1",
          "every stanza is signed"),
        c(Forgeability, NotClaimed, "XEP-0290 §1", "only the key holder can sign"),
        c(IdentityProtection, NotClaimed, "XEP-0290 §2",
          "the JIDs are in the stanza; the signer is named in the manifest").under("passive"),
        c(MitmDetection, Partial, "XEP-0290 §4",
          "signatures bind a certificate naming the JID; 'many clients will generate their own (self-signed) certificates'"),
        c(MitmDetection, Claimed, "XEP-0290 §4",
          "a certificate the users verified (pinned) binds the JID").under("oob"),
        c(DowngradeResistance, NotApplicable, "XEP-0290 §4 (algorithms TBD)",
          "nothing is negotiated"),
        c(IdentityMisbinding, Claimed, "XEP-0290 §2",
          "the manifest names the signer and the signed stanza's from and to"),
    ]
}

fn info(profile: Profile) -> &'static ProtocolInfo {
    static DSIG: OnceLock<ProtocolInfo> = OnceLock::new();
    static XMLENC: OnceLock<ProtocolInfo> = OnceLock::new();
    let (cell, spec, summary) = match profile {
        Profile::Dsig => (
            &DSIG,
            "XEP-0290 0.2 (2011) with W3C XML-DSig, RSA-SHA256, Exclusive C14N",
            "XML-DSig over a signed manifest of the stanza's children: integrity and origin, no confidentiality",
        ),
        Profile::XmlEnc => (
            &XMLENC,
            "XEP-0290 0.2 signatures inside W3C XML Encryption 1.1 (AES-128-GCM, RSA-OAEP)",
            "XEP-0290 sign, then XML-Encrypt the content to the peer's RSA key: AES-128-GCM (or CBC) + RSA-OAEP",
        ),
    };
    cell.get_or_init(|| ProtocolInfo {
        id: profile.id(),
        family: "xmldsig",
        spec,
        summary,
        protects: match profile {
            Profile::Dsig => &[StanzaKind::Message, StanzaKind::Presence],
            Profile::XmlEnc => &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
        },
        after_bad_input: AfterBadInput::Unchanged,
        control_for: &[],
        claims: claims(profile),
    })
}

const OPTIONS_DSIG: &[(&str, &str)] = &[(
    "c14n",
    "exclusive (default) or inclusive: how children are canonicalized for the manifest (DECISIONS 2)",
)];
const OPTIONS_XMLENC: &[(&str, &str)] = &[
    (
        "c14n",
        "exclusive (default) or inclusive: how children are canonicalized for the manifest (DECISIONS 2)",
    ),
    (
        "cipher",
        "aes128-gcm (default, XML Encryption 1.1) or aes128-cbc (1.0): the content cipher (DECISIONS 9)",
    ),
];

impl Protocol for XmlDsig {
    fn info(&self) -> &ProtocolInfo {
        info(self.profile)
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        match self.profile {
            Profile::Dsig => OPTIONS_DSIG,
            Profile::XmlEnc => OPTIONS_XMLENC,
        }
    }

    fn generate_identity(&self, env: &mut Env, jid: &str) -> Result<Identity> {
        let g = cert::generate(env, jid)?;
        let fp = cert::fingerprint(&g.cert_der)?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: self.profile.id().to_string(),
                jid: jid.to_string(),
                data: g.cert_der,
                fingerprint: Some(fp),
            },
            SecretBytes::from_slice(&g.key_pkcs8),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        let id = self.profile.id();
        config.identity.require_protocol(id)?;
        let known: Vec<&str> = self.options().iter().map(|(k, _)| *k).collect();
        config.options.check_known(&known)?;
        let method = match config.options.get("c14n") {
            None | Some("exclusive") => C14nMethod::Exclusive,
            Some("inclusive") => C14nMethod::Inclusive,
            Some(v) => {
                return Err(ApiMisuse::BadOption {
                    key: "c14n".into(),
                    reason: format!("{v}: expected exclusive or inclusive"),
                }
                .into())
            }
        };
        let cipher = match config.options.get("cipher") {
            None | Some("aes128-gcm") => ContentCipher::Aes128Gcm,
            Some("aes128-cbc") => ContentCipher::Aes128Cbc,
            Some(v) => {
                return Err(ApiMisuse::BadOption {
                    key: "cipher".into(),
                    reason: format!("{v}: expected aes128-gcm or aes128-cbc"),
                }
                .into())
            }
        };
        let peer = config
            .peer_public
            .as_ref()
            .ok_or(IdentityError::PeerKeyRequired)?;
        e2elab_core::identity::require_protocol(peer, id)?;
        let peer_bare = config.peer_jid.to_bare().to_string();
        if !stanza::same_jid(&peer.jid, &peer_bare, stanza::SenderMatch::Bare) {
            return Err(IdentityError::JidMismatch(peer.jid.clone()).into());
        }
        if !cert::cert_names_jid(&peer.data, &peer_bare) {
            return Err(IdentityError::JidMismatch(format!(
                "the peer's certificate does not name {peer_bare}"
            ))
            .into());
        }
        let key = cert::load_key(config.identity.secret().expose())?;
        let peer_cert = cert::load_cert(&peer.data)?;
        let peer_key = peer_cert
            .public_key()
            .map_err(|_| IdentityError::Malformed("certificate key".into()))?;
        Ok(Box::new(XmlDsigSession {
            profile: self.profile,
            role: config.role,
            method,
            cipher,
            local_bare: config.local_jid.to_bare().to_string(),
            peer_bare,
            peer_jid: config.peer_jid.clone(),
            key: Some(key),
            own_cert_der: config.identity.public.data.clone(),
            peer_key,
            peer_cert_der: peer.data.clone(),
            peer_fingerprint: cert::fingerprint(&peer.data)?,
            schedule: timestamps::SendSchedule::new(1000, CERT_INTERVAL),
            memory: self.memory.clone(),
            announced: false,
            closed: false,
        }))
    }
}

/// One session with one peer.
pub struct XmlDsigSession {
    profile: Profile,
    role: Role,
    method: C14nMethod,
    cipher: ContentCipher,
    local_bare: String,
    peer_bare: String,
    peer_jid: e2elab_core::Jid,
    key: Option<PKey<Private>>,
    own_cert_der: Vec<u8>,
    peer_key: PKey<Public>,
    peer_cert_der: Vec<u8>,
    peer_fingerprint: String,
    /// Our timestamps (strictly increasing) and certificate attachments.
    schedule: timestamps::SendSchedule,
    memory: AcceptedTimestamps,
    announced: bool,
    closed: bool,
}

impl std::fmt::Debug for XmlDsigSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlDsigSession")
            .field("profile", &self.profile)
            .field("role", &self.role)
            .field("local", &self.local_bare)
            .field("peer", &self.peer_bare)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl XmlDsigSession {
    fn check_open(&self) -> Result<&PKey<Private>> {
        match (&self.key, self.closed) {
            (Some(k), false) => Ok(k),
            _ => Err(ApiMisuse::Closed.into()),
        }
    }

    fn announce(&mut self, out: &mut Outbox) {
        if !self.announced {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_bare.clone(),
                fingerprint: Some(self.peer_fingerprint.clone()),
                sas: None,
                method: "pinned X.509 certificate, XML signature".into(),
            }));
        }
    }

    fn protect(
        &self,
        env: &mut Env,
        app: &Element,
        ts: Timestamp,
        attach: bool,
    ) -> Result<Element> {
        let key = self.check_open()?;
        let kind = StanzaKind::of(app).ok_or_else(|| {
            ApiMisuse::CannotProtect(format!("<{} xmlns='{}'>", app.name(), app.ns()))
        })?;
        if kind == StanzaKind::Iq && self.profile == Profile::Dsig {
            return Err(ApiMisuse::CannotProtect(
                "an iq (RFC 6120 §8.2.3: exactly one payload child; a <Signature/> beside it is bounced, DECISIONS 12)"
                    .into(),
            )
            .into());
        }
        match app.attr("to") {
            Some(to) if !stanza::bare_jid(to).eq_ignore_ascii_case(&self.peer_bare) => {
                return Err(ApiMisuse::CannotProtect(format!(
                    "stanza is addressed to {to}, not to this session's peer"
                ))
                .into())
            }
            None if self.profile == Profile::XmlEnc || kind != StanzaKind::Presence => {
                return Err(ApiMisuse::CannotProtect(
                    "a stanza without 'to' (only broadcast presence may be signed for everyone, and not encrypted)"
                        .into(),
                )
                .into())
            }
            _ => {}
        }
        let prefix = hex(&env.random_array::<4>());
        let signed = dsig::sign(
            app,
            &dsig::SignParams {
                signer: &self.local_bare,
                key,
                attach_cert: attach.then_some(self.own_cert_der.as_slice()),
                method: self.method,
                timestamp: ts,
                id_prefix: &prefix,
            },
        )?;
        if self.profile == Profile::Dsig {
            return Ok(signed);
        }
        let mut plain = Zeroizing::new(String::new());
        for c in signed.children() {
            plain.push_str(&stanza::serialize(c));
        }
        let ed = xmlenc::encrypt(env, plain.as_bytes(), &self.peer_key, self.cipher)?;
        let mut outer = Element::bare(signed.name(), signed.ns());
        *outer.attrs_mut() = signed.attrs().clone();
        outer.append_child(ed);
        Ok(outer)
    }

    /// For `xmlenc-dsig`: the stanza with its `<EncryptedData/>` replaced by
    /// the decrypted children (other children kept, unreferenced).
    fn decrypt(&self, outer: &Element, ed: &Element) -> Result<Element> {
        let key = self.check_open()?;
        let plain = xmlenc::decrypt(ed, key, self.cipher)?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::DecryptFailed)?;
        let wrapped = Zeroizing::new(format!(
            "<{0} xmlns='{1}'>{text}</{0}>",
            outer.name(),
            NS_CLIENT
        ));
        let inner = stanza::parse(&wrapped).map_err(|e| match self.cipher {
            ContentCipher::Aes128Cbc => Error::DecryptFailed,
            ContentCipher::Aes128Gcm => e.into(),
        })?;
        let mut out = Element::bare(outer.name(), outer.ns());
        *out.attrs_mut() = outer.attrs().clone();
        for c in outer.children() {
            if std::ptr::eq(c, ed) {
                for d in inner.children() {
                    out.append_child(d.clone());
                }
            } else {
                out.append_child(c.clone());
            }
        }
        Ok(out)
    }

    /// Check an inbound protected stanza; no state change.
    fn unprotect(&self, env: &Env, el: &Element) -> Result<(dsig::Verified, Vec<Warning>)> {
        stanza::check_sender(el, &self.peer_jid, stanza::SenderMatch::Bare, false)?;
        let expect = dsig::Expect {
            signer: &self.peer_bare,
            recipient: &self.local_bare,
        };
        let v = match self.profile {
            Profile::Dsig => dsig::verify(el, &self.peer_key, &expect)?,
            Profile::XmlEnc => {
                let ed = xmlenc::find(el)?
                    .ok_or_else(|| DecodeError::Missing("<EncryptedData/>".into()))?;
                let inner = self.decrypt(el, ed)?;
                dsig::verify(&inner, &self.peer_key, &expect).map_err(|e| match self.cipher {
                    ContentCipher::Aes128Cbc => Error::DecryptFailed,
                    ContentCipher::Aes128Gcm => e,
                })?
            }
        };
        // The window: around the server's delay stamp if the stanza was
        // stored offline (XEP-0290 §3, XEP-0203), else around now.
        let now = env.now();
        let reference = match el
            .get_child("delay", NS_DELAY)
            .and_then(|d| d.attr("stamp"))
        {
            Some(stamp) => Timestamp::parse_rfc3339(stamp)
                .ok_or_else(|| DecodeError::invalid("delay stamp", stamp))?,
            None => now,
        };
        timestamps::check_window(
            v.timestamp,
            reference,
            TIMESTAMP_WINDOW,
            dsig::format_timestamp,
        )?;
        self.memory.check(
            &self.local_bare,
            &self.peer_bare,
            v.timestamp,
            now,
            TIMESTAMP_MEMORY,
        )?;
        let mut warnings = Vec::new();
        if let Some(c) = &v.attached_cert {
            if *c != self.peer_cert_der {
                warnings.push(Warning::KeyChanged {
                    jid: self.peer_bare.clone(),
                    old: self.peer_fingerprint.clone(),
                    new: cert::fingerprint(c)?,
                });
            }
        }
        if !v.unreferenced.is_empty() {
            warnings.push(Warning::UnprotectedExtras {
                elements: v.unreferenced.clone(),
            });
        }
        Ok((v, warnings))
    }

    fn protected_marker(&self, el: &Element) -> bool {
        match self.profile {
            Profile::Dsig => el.has_child("Signature", dsig::NS_DS),
            Profile::XmlEnc => el.has_child("EncryptedData", xmlenc::NS_XENC),
        }
    }
}

impl Session for XmlDsigSession {
    fn info(&self) -> &ProtocolInfo {
        info(self.profile)
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

    fn send(&mut self, env: &mut Env, app: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let slot = self.schedule.next(env.now());
        let outer = self.protect(env, &app, slot.timestamp, slot.attach)?;
        self.schedule.commit(slot);
        self.announce(out);
        out.send(outer);
        Ok(())
    }

    fn handle_inbound(&mut self, env: &mut Env, el: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        if StanzaKind::of(&el).is_none() {
            return Err(DecodeError::UnexpectedStanza(format!(
                "<{} xmlns='{}'>",
                el.name(),
                el.ns()
            ))
            .into());
        }
        if el.attr("type") == Some("error") && el.has_child("error", NS_CLIENT) {
            self.announce(out);
            out.event(Event::Warning(Warning::Other(
                "peer or server returned a stanza error".into(),
            )));
            return Ok(());
        }
        if !self.protected_marker(&el) {
            stanza::check_sender(&el, &self.peer_jid, stanza::SenderMatch::Bare, true)?;
            self.announce(out);
            out.deliver_unprotected(true, el);
            return Ok(());
        }
        let (v, warnings) = self.unprotect(env, &el)?;
        self.memory.record(
            &self.local_bare,
            &self.peer_bare,
            v.timestamp,
            env.now(),
            TIMESTAMP_MEMORY,
        )?;
        self.announce(out);
        for w in warnings {
            out.event(Event::Warning(w));
        }
        let label = Protection::all(
            &v.stanza,
            self.profile == Profile::XmlEnc,
            true,
            format!("x509:{}", self.peer_fingerprint),
        );
        out.deliver(v.stanza, label);
        Ok(())
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        self.key = None;
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<e2elab_core::StateExport> {
        Ok(e2elab_core::StateExport {
            protocol: self.profile.id().to_string(),
            role: self.role,
            data: SecretBytes::from_slice(
                br#"{"kind":"stateless","note":"the session's only secret is the long-term key"}"#,
            ),
        })
    }
}

#[cfg(test)]
mod tests;
