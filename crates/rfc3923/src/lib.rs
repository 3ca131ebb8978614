//! # `rfc3923`: S/MIME over CPIM, PIDF and `application/xmpp+xml`
//!
//! RFC 3923 (October 2004), the IETF's end-to-end signing and encryption for
//! XMPP, which no client ever shipped. Each protected stanza carries one
//! S/MIME object: the stanza is mapped to a `Message/CPIM` object (RFC 3862)
//! or, for directed presence, an `application/pidf+xml` document (RFC 3863);
//! that object is signed (RFC 1847 `multipart/signed` with a detached CMS
//! SignedData) and then encrypted (CMS EnvelopedData, RSA key transport) to
//! the peer's X.509 certificate, and the result rides base64 inside
//! `<e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'>`.
//!
//! Profiles:
//! - `rfc3923`: exactly §6.10's mandatory algorithms: SignedData with SHA-1 and
//!   RSA PKCS#1 v1.5; EnvelopedData with RSA PKCS#1 v1.5 key transport and
//!   AES-128-CBC.
//! - `rfc3923-modern`: the same protocol with SHA-256 and AES-256-CBC (§6.10:
//!   "Implementations MAY support other algorithms as well").
//!
//! There is no handshake: certificates are obtained out of band (§6.1, §6.2),
//! here through [`SessionConfig::peer_public`], and a session is
//! `Established` from creation. Each stanza costs the sender one RSA
//! signature and one RSA key transport encryption, and the receiver one RSA
//! decryption and one verification, recorded in the operation log
//! ([`e2elab_core::ops`]; see [`cms`] for what is counted and what derived).
//!
//! ## Threat model
//! Protects, against the server and anyone on the path, the *content* of a
//! stanza: for messages the CPIM headers (From, To, DateTime, Subject) and the
//! body; for directed presence the PIDF document (show, status, priority,
//! timestamp); for everything else the whole inner stanza, attributes
//! included (`application/xmpp+xml`). Integrity and origin of that content
//! come from the signature, checked against the peer's pinned certificate,
//! whose JID must match the stanza's bare `from` (§6.3). Replays are refused
//! within §6.9's windows on the virtual clock.
//!
//! Does not protect: the outer stanza's attributes (`from`, `to`, `type`,
//! `id`) and any element outside `<e2e/>`, which the server sees and may
//! change; the fact, time and size of communication; the identities of both
//! parties (the JIDs are in the outer stanza, and the EnvelopedData's
//! RecipientInfo names the recipient's certificate by issuer and serial
//! number in clear; the sender's certificate, when attached, travels inside
//! the envelope). No forward secrecy: the
//! long-term RSA key decrypts every recorded stanza. No repudiability: a CMS
//! signature is transferable proof of authorship. Broadcast presence and
//! groupchat are out of scope (§2).
//!
//! Randomness and time: the virtual clock gives every timestamp and the
//! CMS signingTime; our `Env` gives certificate serial numbers, MIME
//! boundaries and PIDF tuple ids. OpenSSL's own RNG (which cannot take ours)
//! makes the RSA keys, the CMS content-encryption keys and IVs and the PKCS#1
//! v1.5 key-transport padding; the SignedData itself is deterministic. The
//! private key lives in OpenSSL memory (freed with `BN_clear_free` when the
//! session drops it); the PKCS#8 copy in the identity is `SecretBytes`.
//!
//! ## DECISIONS
//! Each is tested; the tests are named after it.
//!
//! 1. **Framing (digest §4 (a), (b)): CDATA vs base64, transfer encoding.** The
//!    `<e2e/>` text is the base64 of the DER EnvelopedData, on one line with no
//!    CDATA section: base64 needs no escaping, so CDATA and plain text parse
//!    to the same characters, and raw DER cannot appear in XML at all. We
//!    accept CDATA and whitespace/line breaks on input (the RFC's examples
//!    wrap at 64 columns). Inside the envelope everything is binary (§6.4):
//!    the decrypted octets are the `multipart/signed` MIME entity, labelled
//!    `Content-Transfer-Encoding: binary`, and its signed part is taken byte
//!    for byte; only the signature part is base64, because RFC 3851's
//!    multipart/signed (and every S/MIME reader, OpenSSL's included) carries
//!    `application/pkcs7-signature` that way. (tested by `tests::framing_is_base64_text_and_cdata_is_accepted`,
//!    `mime::tests::multipart_round_trip_and_boundary_rules`)
//! 2. **CRLF (digest §4 (g)).** The signed object is in MIME canonical form:
//!    every line of CPIM headers, MIME headers and XML objects ends in CRLF,
//!    text/plain bodies have LF converted to CRLF (and back on receipt).
//!    Because the whole object is encrypted and base64-encoded, no XML parser
//!    ever sees those CRs, so CRLF survives (a signed-only object in CDATA
//!    would not). A body containing a CR itself cannot round-trip through
//!    canonical text and is sent as `application/xmpp+xml`, where the CR is a
//!    character reference. (tested by `payload::tests::forms_and_round_trips`)
//! 3. **Which form a stanza takes.** Messages always use `Message/CPIM` (so
//!    every message has a signed DateTime, From and To): around
//!    `text/plain; charset=utf-8` when the message is exactly a `<body/>`,
//!    optionally preceded by a `<subject/>` (→ CPIM `Subject:`), with no
//!    attributes on either; otherwise around `application/xmpp+xml`, which
//!    keeps everything (thread, extensions, attributes). Directed presence
//!    whose children are a subsequence of show, status, priority (no
//!    attributes, type absent or `unavailable`) uses `application/pidf+xml`:
//!    basic open/closed, show in `<im xmlns='urn:ietf:params:xml:ns:pidf:im'>`
//!    (as Example 7), status in `<note>`, priority as a
//!    `<priority xmlns='jabber:client'>` tuple extension (PIDF has no
//!    equivalent; its contact priority is a 0..1 q-value), and a
//!    `<timestamp>`. Any other presence, and every iq, is `application/xmpp+xml`
//!    inside `Message/CPIM`: §5 notes CPIM can carry any MIME type, and the
//!    envelope gives those stanzas a signed timestamp too, without which §6.9
//!    could not protect them from replay. (tested by `payload::tests`)
//! 4. **Outer stanza kind (digest §4 (e)).** §5 says xmpp+xml goes in a
//!    `<presence/>` for every kind; we send it in a stanza of the *same* kind
//!    as the inner one (an iq in an iq, so iq routing and replies work),
//!    copying the application stanza's attributes onto the outer stanza. The
//!    receiver refuses an inner stanza of another kind than the outer.
//!    (tested by `tests::iq_travels_in_an_iq_and_kind_mismatch_is_refused`)
//! 5. **Signing.** Sign, then encrypt (§6.5), always (§6.7: a signature on
//!    every encrypted stanza). The SignedData is built by this crate (the
//!    `openssl` crate's `CMS_sign` cannot select SHA-1): one SignerInfo by
//!    issuer and serial, signed attributes contentType, signingTime (virtual
//!    clock) and messageDigest, signature algorithm `rsaEncryption`
//!    (RFC 3370 §3.2). OpenSSL's `CMS_verify` and the `openssl cms` CLI
//!    verify it. The signature part carries
//!    `Content-Disposition: attachment;handling=required;filename=smime.p7s`
//!    as §3.2 shows. (tested by `cms::tests`, `tests/openssl_cli.rs`)
//! 6. **Certificates attached (§6.6).** The sender puts its certificate in
//!    the SignedData on the first stanza and then whenever at least five
//!    minutes of virtual time have passed since it last did, never more
//!    often. The receiver never trusts an attached certificate: it verifies
//!    against the pinned peer certificate only (`CMS_NOINTERN`), at the
//!    virtual time; an attached certificate that differs from the pinned one
//!    raises `Warning::KeyChanged` and changes nothing else.
//!    (tested by `tests::certificate_attached_at_most_every_five_minutes`,
//!    `tests::attached_certificate_other_than_pinned_warns`)
//! 7. **Who sent it (§6.3).** The stanza's bare `from` must be the session's
//!    peer, must be named by the pinned certificate (id-on-xmppAddr, or an
//!    `im:`/`pres:`/`xmpp:` URI in subjectAltName; resource ignored; ASCII
//!    case-insensitive), and must equal the signed CPIM `From` / PIDF
//!    `entity`. For xmpp+xml the inner stanza's `from`, if any, must match too.
//!    (tested by `tests::signer_certificate_not_matching_from_is_refused`)
//! 8. **To whom (digest §4 (f)).** No rule in RFC 3923 binds CPIM `To` to the
//!    receiver; we require one `To` to name our bare JID (and an inner
//!    xmpp+xml `to`, if any, to be ours), which stops a recipient from
//!    re-encrypting a signed message to a third party as if sent to them
//!    (surreptitious forwarding). PIDF names no recipient, so presence
//!    remains forwardable. (tested by `tests::forwarded_message_is_refused`)
//! 9. **Timestamps (§6.9) on the virtual clock.** We send UTC with `Z`,
//!    fractions only as needed, strictly increasing (one microsecond past the
//!    last one if the clock has not moved). On receipt, a timestamp more than
//!    5 minutes from `env.now()` is *refused* (`PeerMisbehaved::BadTimestamp`,
//!    "old timestamp" / "future timestamp"): §6.9 allows "reject/flag", and
//!    refusing is what makes the replay claim hold. A timestamp equal to one
//!    accepted in the last 10 minutes is a replay (the sender's are strictly
//!    increasing) and is refused (`PeerMisbehaved::Replay`). A timestamp below
//!    one accepted in the last 10 minutes but new is *delivered* with
//!    `Warning::Suspicious("decreasing timestamp")`: §6.9's "SHOULD flag",
//!    and how reordered stanzas still arrive. Ten minutes covers every replay
//!    that can pass the 5-minute window. Timestamps without `Z` are refused.
//!    (tested by `tests::expired_and_future_timestamps_are_refused`,
//!    `tests::decreasing_timestamp_is_flagged_and_delivered`,
//!    `tests::exact_replay_is_refused_and_same_clock_timestamps_increase`)
//!    The memory of accepted timestamps belongs to the *client* (the
//!    [`Rfc3923`] value, one per user), not to one session object: RFC 3923
//!    has no session, so a new session object with the same peer (as after a
//!    restart of the conversation) still refuses a stanza accepted in the
//!    last 10 minutes. (tested by `tests::replay_memory_outlives_the_session`)
//! 10. **§7 error stanzas.** The session returns typed errors and emits
//!     nothing on bad input (the core contract: a failed call queues
//!     nothing). [`errors::error_reply`] builds the §7 reply for the
//!     application to send: `<not-acceptable/>` + `<bad-timestamp/>` (Case #3,
//!     replays included), `<not-acceptable/>` + `<unverified-signature/>`
//!     (Case #4, also a certificate/JID mismatch), `<bad-request/>` +
//!     `<decryption-failed/>` (Case #5), all `type='modify'`, echoing the
//!     `<e2e/>` as Examples 16-18 do; no reply for other errors (Case #1
//!     allows silence). Conditions use the registered namespace
//!     `urn:ietf:params:xml:ns:xmpp-e2e`; the examples' typo
//!     (`urn:ietf:params:xml:xmpp-e2e`, digest §4 (c)) is accepted on input.
//!     An inbound error stanza (`type='error'` with a clear `<error/>`) is
//!     never decrypted; it raises `Warning::Other` naming the case. A
//!     protected stanza of type error (only `<e2e/>` inside) is handled like
//!     any other. (tested by `errors::tests`, `tests::inbound_error_stanza_warns`,
//!     `tests::a_protected_error_stanza_is_delivered`)
//! 11. **Unprotected stanzas.** A stanza without `<e2e/>` is handed over as
//!     `Event::DeliveredUnprotected` (§2: clients MUST NOT be required to use
//!     these means at all times), never as protected. Elements next to
//!     `<e2e/>` are unprotected and dropped. (tested by `tests::unprotected_stanza_is_marked`)
//! 12. **Strict DER.** The EnvelopedData and SignedData must be exactly one
//!     definite-length DER object: trailing bytes (which `d2i` would ignore)
//!     and BER indefinite lengths are refused. Base64 is decoded strictly
//!     (canonical padding). (tested by `cms::tests::envelope_round_trip_and_wrong_recipient`)
//! 13. **Algorithms accepted.** The profile fixes what we send; on receipt we
//!     accept whatever OpenSSL verifies and decrypts (there is no negotiation
//!     to downgrade). `Require:` naming a CPIM header we do not implement is
//!     refused (`Error::Unsupported`). (tested by `tests::unknown_required_header_is_unsupported`)
//! 14. **Certificates.** RSA-2048, self-signed, SHA-256, serial from `Env`,
//!     subject CN = JID (ignored, §6.3), valid from an hour before the
//!     virtual now with no expiry (notAfter 99991231235959Z, RFC 5280
//!     §4.1.2.5: the certificate is pinned, not CA-issued); basicConstraints CA:FALSE (critical),
//!     keyUsage digitalSignature + keyEncipherment (critical), extKeyUsage
//!     emailProtection; subjectAltName = otherName id-on-xmppAddr (UTF8String
//!     JID), URI `im:JID`, URI `pres:JID`. Validity is checked at the virtual
//!     time. (tested by `cert::tests::generated_certificate_names_the_jid_three_ways`)
//! 15. **`close`** is local: RFC 3923 has no session to end; the private key
//!     is dropped and later calls fail with `ApiMisuse::Closed`.
//!     (tested by `tests::close_drops_the_key_and_refuses_more`)
//! 16. **OpenSSL's `-binary` S/MIME reader.** Reading a multipart/signed with
//!     `CMS_BINARY`, OpenSSL keeps the CR of the CRLF before a boundary in
//!     the part, although RFC 2046 assigns that CRLF to the delimiter. We
//!     follow RFC 2046 when we parse, and because what we sign is in
//!     canonical CRLF form, OpenSSL's default (canonicalizing) reading of our
//!     output yields exactly the signed octets: `openssl cms -verify` is run
//!     without `-binary` in the interop tests. (tested by `tests/openssl_cli.rs`)
#![forbid(unsafe_code)]

pub mod cert;
pub mod cms;
mod der;
pub mod errors;
pub mod mime;
pub mod payload;

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::stanza::{self, bare_jid, NS_CLIENT};
use e2elab_core::timestamps::{self, AcceptedTimestamps};
use e2elab_core::{
    ApiMisuse, DecodeError, Element, Env, Event, Identity, IdentityError, Outbox, PeerIdentity,
    PeerMisbehaved, Protection, Protocol, PublicIdentity, Result, Role, SecretBytes, Session,
    SessionConfig, SessionState, StanzaKind, Timestamp, Warning,
};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::X509;
use std::sync::OnceLock;
use std::time::Duration;
use zeroize::Zeroizing;

pub use errors::{error_reply, NS_E2E};

/// §6.9: a timestamp must be within this of the receiver's clock.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// §6.9: timestamps accepted this recently are remembered.
pub const TIMESTAMP_MEMORY: Duration = Duration::from_secs(10 * 60);
/// §6.6: the sender's certificate is attached at most this often.
pub const CERT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Largest `<e2e/>` text accepted.
pub const MAX_E2E_TEXT: usize = 8 << 20;

/// The two profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// §6.10 exactly: SHA-1, RSA PKCS#1 v1.5, AES-128-CBC.
    Classic,
    /// SHA-256 and AES-256-CBC.
    Modern,
}

impl Profile {
    /// The protocol id.
    pub fn id(self) -> &'static str {
        match self {
            Profile::Classic => "rfc3923",
            Profile::Modern => "rfc3923-modern",
        }
    }

    /// SignedData digest.
    pub fn digest(self) -> cms::Digest {
        match self {
            Profile::Classic => cms::Digest::Sha1,
            Profile::Modern => cms::Digest::Sha256,
        }
    }

    /// The digest, as the operation log names it.
    pub fn digest_alg(self) -> e2elab_core::ops::HashAlg {
        match self {
            Profile::Classic => e2elab_core::ops::HashAlg::Sha1,
            Profile::Modern => e2elab_core::ops::HashAlg::Sha256,
        }
    }

    /// EnvelopedData content cipher.
    pub fn cipher(self) -> Cipher {
        match self {
            Profile::Classic => Cipher::aes_128_cbc(),
            Profile::Modern => Cipher::aes_256_cbc(),
        }
    }
}

/// An RFC 3923 profile: one client, with the replay memory its sessions share.
#[derive(Debug, Clone)]
pub struct Rfc3923 {
    profile: Profile,
    memory: AcceptedTimestamps,
}

impl Rfc3923 {
    /// `rfc3923`: the mandatory algorithms of §6.10.
    pub fn classic() -> Self {
        Self {
            profile: Profile::Classic,
            memory: AcceptedTimestamps::default(),
        }
    }

    /// `rfc3923-modern`: SHA-256 and AES-256.
    pub fn modern() -> Self {
        Self {
            profile: Profile::Modern,
            memory: AcceptedTimestamps::default(),
        }
    }

    /// Which profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

fn claims() -> Vec<Claim> {
    let c = Claim::new;
    use ClaimLevel::*;
    use Property::*;
    vec![
        c(ConfidentialityCoverage, Partial, "RFC 3923 §2 req. 1, §3-§5",
          "CPIM headers and content, the PIDF document, or the whole inner stanza (xmpp+xml); the outer stanza's attributes stay in clear"),
        c(Integrity, Claimed, "RFC 3923 §2 req. 1, §6.7",
          "the signed S/MIME object; the outer stanza's attributes are not covered"),
        c(Replay, Claimed, "RFC 3923 §6.9",
          "timestamps within 5 minutes of the receiver's clock and greater than those accepted in the last 10 minutes"),
        c(LossReorderTolerance, Claimed, "RFC 3923 §6.9",
          "every stanza stands alone; a decreasing timestamp is flagged, not dropped"),
        c(ForwardSecrecy, NotClaimed, "RFC 3923 §6.10",
          "RSA key transport to the long-term certificate decrypts every recorded stanza"),
        c(PostCompromiseSecurity, NotClaimed, "RFC 3923 §6",
          "no ephemeral state: a stolen private key works until the certificate is replaced"),
        c(MessageRepudiation, NotClaimed, "RFC 3923 §6.7",
          "CMS signatures are transferable proof of authorship (to whoever can decrypt the envelope)").under("online"),
        c(ParticipationRepudiation, NotClaimed, "RFC 3923 §6.7",
          "every stanza is signed: a signed stanza shows the key holder took part"),
        c(Forgeability, NotClaimed, "RFC 3923 §6.7",
          "only the key holder can produce a valid signature"),
        c(IdentityProtection, NotClaimed, "RFC 3923 §6.6",
          "the RecipientInfo names the recipient's certificate (issuer, serial) in clear; the JIDs are in the outer stanza").under("passive"),
        c(MitmDetection, Partial, "RFC 3923 §6.2, §6.3",
          "signatures bind the sender's certificate to the from JID, but certificate retrieval and trust are left to the PKI"),
        c(MitmDetection, Claimed, "RFC 3923 §6.2, §6.3",
          "a certificate the users verified (pinned or compared) binds the JID").under("oob"),
        c(DowngradeResistance, NotApplicable, "RFC 3923 §2",
          "nothing is negotiated; discovery is out of scope"),
        c(IdentityMisbinding, Partial, "RFC 3862 §4.1-4.2; RFC 3923 §6.3",
          "the signed CPIM From/To name both parties, but RFC 3923 never requires the receiver to check To (we do); PIDF names no recipient"),
    ]
}

fn info(profile: Profile) -> &'static ProtocolInfo {
    static CLASSIC: OnceLock<ProtocolInfo> = OnceLock::new();
    static MODERN: OnceLock<ProtocolInfo> = OnceLock::new();
    let (cell, spec, summary) = match profile {
        Profile::Classic => (
            &CLASSIC,
            "RFC 3923 (2004) with RFC 3862 CPIM, RFC 3863 PIDF, CMS per §6.10",
            "S/MIME sign-then-encrypt per stanza: SHA-1/RSA SignedData inside RSA + AES-128-CBC EnvelopedData",
        ),
        Profile::Modern => (
            &MODERN,
            "RFC 3923 (2004) with SHA-256 and AES-256-CBC (§6.10 'MAY support other algorithms')",
            "S/MIME sign-then-encrypt per stanza: SHA-256/RSA SignedData inside RSA + AES-256-CBC EnvelopedData",
        ),
    };
    cell.get_or_init(|| ProtocolInfo {
        id: profile.id(),
        family: "smime",
        spec,
        summary,
        protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
        after_bad_input: AfterBadInput::Unchanged,
        control_for: &[],
        claims: claims(),
    })
}

impl Protocol for Rfc3923 {
    fn info(&self) -> &ProtocolInfo {
        info(self.profile)
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
        config.options.check_known(&[])?;
        let peer = config
            .peer_public
            .as_ref()
            .ok_or(IdentityError::PeerKeyRequired)?;
        e2elab_core::identity::require_protocol(peer, id)?;
        let peer_bare = config.peer_jid.to_bare().to_string();
        if !e2elab_core::stanza::same_jid(
            &peer.jid,
            &peer_bare,
            e2elab_core::stanza::SenderMatch::Bare,
        ) {
            return Err(IdentityError::JidMismatch(peer.jid.clone()).into());
        }
        let key = cert::load_key(config.identity.secret().expose())?;
        let own_cert_der = config.identity.public.data.clone();
        let own_cert = cert::load_cert(&own_cert_der)?;
        let peer_cert = cert::load_cert(&peer.data)?;
        Ok(Box::new(Rfc3923Session {
            profile: self.profile,
            role: config.role,
            local_bare: config.local_jid.to_bare().to_string(),
            peer_bare,
            peer_jid: config.peer_jid.clone(),
            key: Some(key),
            own_cert,
            own_cert_der,
            peer_cert,
            peer_cert_der: peer.data.clone(),
            peer_fingerprint: cert::fingerprint(&peer.data)?,
            schedule: timestamps::SendSchedule::new(1, CERT_INTERVAL),
            memory: self.memory.clone(),
            announced: false,
            closed: false,
        }))
    }
}

/// One RFC 3923 session with one peer.
pub struct Rfc3923Session {
    profile: Profile,
    role: Role,
    local_bare: String,
    peer_bare: String,
    /// The peer, for the sender check.
    peer_jid: e2elab_core::Jid,
    key: Option<PKey<Private>>,
    own_cert: X509,
    own_cert_der: Vec<u8>,
    peer_cert: X509,
    peer_cert_der: Vec<u8>,
    peer_fingerprint: String,
    /// Our timestamps (strictly increasing, §6.9) and certificate attachments (§6.6).
    schedule: timestamps::SendSchedule,
    /// The client's memory of accepted timestamps (§6.9), shared by its sessions.
    memory: AcceptedTimestamps,
    announced: bool,
    closed: bool,
}

impl std::fmt::Debug for Rfc3923Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc3923Session")
            .field("profile", &self.profile)
            .field("role", &self.role)
            .field("local", &self.local_bare)
            .field("peer", &self.peer_bare)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Rfc3923Session {
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
                method: "pinned X.509 certificate, S/MIME signature".into(),
            }));
        }
    }

    /// Build the protected stanza for `app` (no state change).
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
        if kind == StanzaKind::Presence && app.attr("to").is_none() {
            return Err(ApiMisuse::CannotProtect(
                "broadcast presence (RFC 3923 §2: directed presence only)".into(),
            )
            .into());
        }
        if let Some(to) = app.attr("to") {
            if !bare_jid(to).eq_ignore_ascii_case(&self.peer_bare) {
                return Err(ApiMisuse::CannotProtect(format!(
                    "stanza is addressed to {to}, not to this session's peer"
                ))
                .into());
            }
        }
        let tuple_id = format!("t{}", hex(&env.random_array::<6>()));
        let object = Zeroizing::new(payload::encode(
            app,
            &self.local_bare,
            &self.peer_bare,
            ts,
            &tuple_id,
        )?);
        // 96 random bits: a collision with the content is practically
        // impossible, but it is checked (RFC 2046 §5.1.1).
        let boundary = (0..8)
            .map(|_| format!("=_e2e_{}", hex(&env.random_array::<12>())))
            .find(|b| !contains(&object, b.as_bytes()))
            .ok_or_else(|| e2elab_core::Error::Backend("no MIME boundary found".into()))?;
        let sig = cms::sign_detached(
            &object,
            &self.own_cert_der,
            key,
            self.profile.digest(),
            ts,
            attach,
        )?;
        let signed = Zeroizing::new(mime::multipart_signed(
            &object,
            &sig,
            &boundary,
            self.profile.digest().micalg(),
        ));
        let env_der = cms::encrypt(&signed, &self.peer_cert, self.profile.cipher())?;
        let mut outer = Element::bare(app.name(), NS_CLIENT);
        *outer.attrs_mut() = app.attrs().clone();
        outer.append_child(stanza::text_element(
            "e2e",
            NS_E2E,
            &e2elab_core::b64::encode(env_der),
        ));
        Ok(outer)
    }

    /// Check an inbound protected stanza; on success the stanza to deliver,
    /// the timestamp to remember and warnings. No state change.
    fn unprotect(
        &mut self,
        env: &Env,
        outer: &Element,
        e2e: &Element,
    ) -> Result<(Element, Timestamp, Vec<Warning>)> {
        let now = env.now();
        let from = outer
            .attr("from")
            .ok_or_else(|| DecodeError::Missing("from".into()))?;
        let from_bare = bare_jid(from);
        e2elab_core::stanza::check_sender(
            outer,
            &self.peer_jid,
            e2elab_core::stanza::SenderMatch::Bare,
            false,
        )?;
        let text = e2e.text();
        if text.len() > MAX_E2E_TEXT {
            return Err(DecodeError::invalid("e2e", "too large").into());
        }
        let der = mime::decode_base64(text.as_bytes(), "e2e")?;
        let enveloped = cms::parse(&der, "EnvelopedData")?;
        let key = self.check_open()?;
        let signed = Zeroizing::new(cms::decrypt_parsed(
            &enveloped,
            key,
            &self.own_cert,
            self.profile.cipher(),
        )?);
        // A padding failure and a garbled MIME structure after decryption give the
        // same opaque error: distinguishing them would be a CBC padding oracle on
        // the malleable EnvelopedData.
        let parts =
            mime::parse_multipart_signed(&signed).map_err(|_| e2elab_core::Error::DecryptFailed)?;
        cms::verify_detached(
            &parts.signature,
            &parts.content,
            &self.peer_cert,
            self.profile.digest(),
            now,
        )?;
        if !cert::cert_names_jid(&self.peer_cert_der, from_bare) {
            return Err(IdentityError::JidMismatch(from_bare.to_string()).into());
        }
        let mut warnings = Vec::new();
        for c in cms::attached_certs(&parts.signature) {
            if c != self.peer_cert_der {
                warnings.push(Warning::KeyChanged {
                    jid: self.peer_bare.clone(),
                    old: self.peer_fingerprint.clone(),
                    new: cert::fingerprint(&c)?,
                });
            }
        }
        let d = payload::decode(&parts.content, outer)?;
        if !d.from.eq_ignore_ascii_case(from_bare) {
            return Err(PeerMisbehaved::WrongAddress(format!(
                "signed sender {} is not {from_bare}",
                d.from
            ))
            .into());
        }
        if d.form != payload::Form::Pidf
            && !d
                .to
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&self.local_bare))
        {
            return Err(PeerMisbehaved::WrongAddress(
                "signed recipient (CPIM To) is not us".into(),
            )
            .into());
        }
        if d.form == payload::Form::CpimXmpp {
            if let Some(f) = d.stanza.attr("from") {
                if !bare_jid(f).eq_ignore_ascii_case(from_bare) {
                    return Err(PeerMisbehaved::WrongAddress(format!("inner from {f}")).into());
                }
            }
            if let Some(t) = d.stanza.attr("to") {
                if !bare_jid(t).eq_ignore_ascii_case(&self.local_bare) {
                    return Err(PeerMisbehaved::WrongAddress(format!("inner to {t}")).into());
                }
            }
        }
        let ts = d.timestamp;
        timestamps::check_window(ts, now, TIMESTAMP_WINDOW, payload::format_timestamp)?;
        let seen =
            self.memory
                .check(&self.local_bare, &self.peer_bare, ts, now, TIMESTAMP_MEMORY)?;
        if seen.decreasing {
            warnings.push(Warning::Suspicious {
                reason: format!(
                    "decreasing timestamp: {} is older than one accepted in the last 10 minutes",
                    payload::format_timestamp(ts)
                ),
            });
        }
        Ok((d.stanza, ts, warnings))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

impl Session for Rfc3923Session {
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
        // A stanza error from the peer or a server (it carries `<error/>` in
        // clear); a protected stanza of type error carries only `<e2e/>`.
        if el.attr("type") == Some("error") && el.has_child("error", NS_CLIENT) {
            let what = match errors::reported_case(&el) {
                Some(c) => format!(
                    "peer could not process a protected stanza: {}",
                    c.conditions().1
                ),
                None => "peer or server returned a stanza error".to_string(),
            };
            self.announce(out);
            out.event(Event::Warning(Warning::Other(what)));
            return Ok(());
        }
        let e2e = el
            .children()
            .find(|c| c.is("e2e", NS_E2E) || c.is("e2e", errors::NS_E2E_TYPO))
            .cloned();
        let Some(e2e) = e2e else {
            self.announce(out);
            out.deliver_unprotected(true, el);
            return Ok(());
        };
        let (delivered, ts, warnings) = self.unprotect(env, &el, &e2e)?;
        self.memory.record(
            &self.local_bare,
            &self.peer_bare,
            ts,
            env.now(),
            TIMESTAMP_MEMORY,
        )?;
        self.announce(out);
        for w in warnings {
            out.event(Event::Warning(w));
        }
        // Everything delivered came out of the signed, enveloped payload
        // (the CPIM or PIDF form); nothing of the outer stanza is kept.
        let label = Protection::all(
            &delivered,
            true,
            true,
            format!("x509:{}", self.peer_fingerprint),
        );
        out.deliver(delivered, label);
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
