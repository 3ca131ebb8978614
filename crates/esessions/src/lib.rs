//! # ESessions: XEP-0116 v0.16 (SIGMA-R, SIGMA-I), XEP-0217, XEP-0200
//!
//! The one end-to-end protocol this toolkit implements from its specifications
//! (`../shared/specs/xep-0116-v0.16.xml`, `xep-0188.xml`, `xep-0200.xml`,
//! `xep-0217.xml`, `xep-0155.xml`, `xep-0020.xml`), on OpenSSL 3 primitives:
//! MODP Diffie-Hellman (`BIGNUM`), AES-CTR, HMAC-SHA256, RSA-SHA256.
//!
//! Profiles (protocol ids):
//! - `esessions-sigma-r`: the 4-message SIGMA-R negotiation with the hash
//!   commitment (`dhhashes`), SAS `sas28x5`, retained secrets (`rshashes`,
//!   `srshash`, a new retained secret after each session), an optional other
//!   shared secret (`oss=`), and `init_pubkey`/`resp_pubkey` modes `key`,
//!   `hash`, `none`.
//! - `esessions-sigma-i`: the 3-message SIGMA-I negotiation (`dhkeys` in the
//!   first message; the initiator's identity is protected).
//! - `esessions-simplified`: XEP-0217, the 4-message subset without public
//!   keys (SAS plus retained secrets).
//! - `esessions-ssh`: ESessions as first designed in 2003 (JEP-0116 v0.1), SSH
//!   transport semantics in XMPP stanzas: a *reconstruction* (see below).
//!
//! ## Threat model
//! Protects, against an attacker who controls the servers and the network:
//! the content of one-to-one `<message/>`, `<presence/>` and `<iq/>` stanzas
//! except the session's `<thread/>`, `<amp/>` and `<error/>` (confidentiality by AES-CTR,
//! integrity and in-session replay protection by HMAC-SHA256 over the content
//! and an implicit per-direction counter); forward secrecy through ephemeral
//! DH and rekeys; the identities of the parties against passive observers (and
//! of the responder, SIGMA-R, or initiator, SIGMA-I, against active ones);
//! downgrade of the negotiation (both forms are MACed). Does *not* protect:
//! stanza attributes (`to`, `from`, `id`, `type`), the session's
//! `<thread/>` (a random session id; an application's own thread is
//! encrypted, see *Threads* below, which XEP-0200's letter would leave in
//! clear), traffic
//! patterns and sizes (padding only to the block size), availability (any bad
//! `<c/>` terminates the session as XEP-0200 demands, so an active attacker can
//! always end a session), or loss and reordering (the implicit counter needs
//! strict in-order delivery). Without public keys (`none`, XEP-0217) a man in
//! the middle is detected only by comparing the SAS or by a retained secret
//! from an earlier, uncompromised session.
//!
//! ## Sources of randomness
//! Every nonce, counter, exponent and thread id comes from the `Env`, so a
//! seed reproduces a session's transcript, except RSA key generation, which
//! OpenSSL performs with its own RNG: long-term identities are not
//! reproducible (KAT vectors load fixed keys instead).
//!
//! ## DECISIONS (the 14 ambiguities of the spec digest §2.7, and others)
//! 1. *Namespaces and version*: the v0.16 values throughout: forms in XEP-0020
//!    `<feature xmlns='http://jabber.org/protocol/feature-neg'>` with
//!    `FORM_TYPE` `urn:xmpp:ssn`, message 4 in
//!    `<init xmlns='http://www.xmpp.org/extensions/xep-0116.html#ns-init'>`,
//!    `<c xmlns='http://www.xmpp.org/extensions/xep-0200.html#ns'>`; `ver`
//!    offered and accepted is `1.0`, as the text says (the examples' 1.3/1.2 are
//!    not versions of this document).
//! 2. *`otr` vs `logging`*: XEP-0116 v0.11-v0.16 and XEP-0217 name the
//!    logging field `otr` (options `false`, `true`); XEP-0155 v1.2, the later
//!    XEP-0116 text (`xep-0116.xml`) and Gajim name it `logging` (`mustnot`,
//!    `may`). Both are accepted on receipt, and Bob answers under the name
//!    Alice used, picking her first acceptable option. The default *sends*
//!    `otr`, because the profiles implement the v0.16 text, which says `otr`;
//!    `gajim-shapes` and `gajim-compat` send `logging`. The disclosure field
//!    is `disclosure` (value `never`). Tested both ways in `negotiate` and
//!    `tests/sigma.rs`.
//! 3. *MODP 3 and 4*: RFC 2409 groups 3 and 4 are elliptic-curve groups, not
//!    MODP: not offered, and a peer offering only them gets `not-acceptable`.
//!    Supported: 1, 2 (RFC 2409), 5, 14, 15, 16, 17, 18 (RFC 3526). Default
//!    offer: 14 (XEP-0217's suggestion for AES-128); `modp=` changes it.
//! 4. *Fingerprint encoding*: `<fingerprint>B64(SHA256(normalized KeyValue))</fingerprint>`,
//!    for both sides (the spec's Alice rule omits the wrapper; one format for
//!    both keeps the decrypted identity parseable). Users are shown the hex SHA-256.
//! 5. *Byte encodings* (as Gajim): nonces, `e`, `d` and counters enter HMACs
//!    as raw bytes (decoded base64); integers as minimal big-endian octets
//!    (§"Multiple-Precision Integers"); `{a, b, ...}` is plain concatenation;
//!    `pubKey` is the normalized `<KeyValue/>` bytes (empty for `none`); a form's
//!    normalized content is that of its `<field/>` children only (see 12).
//!    Nonces are 16 bytes (8 in `gajim-compat`).
//! 6. *MAC argument order*: as written: identity `M = HMAC(KM, C | ID)`, stanza
//!    `a_mac = HMAC(KM, m_content | C)`, C as minimal big-endian octets.
//! 7. *Counter continuity* (as Gajim): counters are never reset. Stanza
//!    encryption continues from where the identity encryption left the
//!    counter, also across the 4-message switch from provisory to final keys.
//!    The counter block is the 128-bit big-endian counter; the first block
//!    under counter C uses C (NIST CTR, and "AES-CTR(KC, C, ...)" as
//!    written); each (partial) block advances it by one, and stanza
//!    plaintext is padded with spaces to a whole number of 16-byte blocks
//!    (the spec allows whitespace padding) so no keystream is ever left over
//!    ([`channel::CtrReading::Spec`]).
//! 8. *Rekey*: `K = d^x mod p` is used raw (not hashed), with the
//!    `Rekey Initiator/Acceptor Crypt/MAC` labels, as XEP-0200 says; no KS key is
//!    derived (none is needed). Counters continue across rekeys. A side starts
//!    a rekey only when none of its own is unacknowledged; old key sets are
//!    kept until the peer's `<new/>` or the 60 s grace period on the virtual
//!    clock, then destroyed.
//! 9. *Order inside `<c/>`*: we send `data, key, new, old, mac` (the
//!    examples' order); `m_content` is built from the children as received,
//!    in received order, minus `<mac/>`, with whitespace trimmed.
//! 10. *K after the 3-message negotiation*: destroyed once the keys are derived;
//!     in 4-message mode kept until K' is computed, then destroyed.
//! 11. *Whose preference decides key modes*: Bob answers `init_pubkey` and
//!     `resp_pubkey` from Alice's offer; each side's settings say the one mode it
//!     offers or accepts.
//! 12. *Normalization*: W3C C14N of the form's `<field/>` children *as
//!     received* (XEP-0116 §"XML Normalization"; [`form::Form::normalized`]):
//!     the received elements in received order with every attribute (an
//!     option's `label`, say) and every child (`<required/>` wherever it
//!     stands, `<desc/>`), never a re-serialization of parsed values;
//!     double-quoted attributes in lexicographic order (`type` before `var`),
//!     no namespace declarations, whitespace-only text between elements
//!     dropped, empty elements as start-end pairs (`<required></required>`);
//!     text escapes `& < > CR`, attribute escapes `& < " TAB LF CR`. A form
//!     we send is normalized from the element we send. `gajim-compat` writes
//!     empty elements `<required />` as Gajim's serializer did.
//! 13. *SAS input*: the v0.14+ rule, `SHA256(M_A | form_B | "Short
//!     Authentication String")`, low 24 bits, five base-28 digits, most
//!     significant first, zero-padded (`gajim-compat`: unpadded, as Gajim).
//! 14. *OSS*: appended only if one is configured (`oss=`); K' =
//!     SHA256(K | SRS | OSS) is always hashed, even with neither (as Gajim).
//! - *Bad input*: any `<c/>` whose MAC fails or whose content does not parse
//!   terminates the session (XEP-0200 §Decrypting, "MUST terminate") with a
//!   typed error and a warning, and the peer is told with an encrypted
//!   terminate form (our sending direction still works), so one lost,
//!   repeated or altered stanza no longer leaves the sender's messages
//!   vanishing; the SSH-style profile sends `SSH_MSG_DISCONNECT` (MAC_ERROR
//!   or PROTOCOL_ERROR) likewise and then `Closed`.
//! - *Failures and re-negotiation* (SIGMA profiles; XEP-0210's robustness
//!   requirement, which XEP-0200 leaves open): the terminate form sent
//!   after a failure carries one custom field, `x-e2elab-failure` (XEP-0068
//!   `x-` prefix; its value is the error kind), so the peer can tell a
//!   failure from its user's close; it is not acknowledged (its sender has
//!   destroyed its keys). With option `renegotiate` (default true) neither
//!   side closes: both drop the session's keys and go back to negotiating
//!   with the same identities, store and held stanzas; the initiator sends
//!   a new request at once, the responder waits for it, and what either
//!   user sends meanwhile is held (reported `NotSent` if the new
//!   negotiation fails or times out). Stanzas already in flight under the
//!   old keys are lost, and the receiver's typed error says so. The cost is
//!   measured, not claimed: the security table's robustness figures (one
//!   dropped stanza: 2 of 12 messages lost, recovery in 4-5 flights).
//!   `renegotiate=false`: the session ends with `Closed` on the detecting
//!   side and `PeerClosed` on the other, as before. The SSH-style profile
//!   has no re-negotiation (the 2003 design re-keys only inside a working
//!   session). (tests: a_lost_stanza_is_followed_by_an_automatic_renegotiation,
//!   a_lost_stanza_ends_the_session_on_both_sides_and_both_hear_of_it) A negotiation (or SSH key exchange) not
//!   finished within `negotiation_timeout` seconds of the virtual clock
//!   (default 60, 0 = never) ends the session with a warning; every stanza
//!   held for it, then or at a `close` or failed negotiation, is reported
//!   `Event::NotSent`. A
//!   negotiation message that fails a check (commitment, signature, MAC,
//!   identity) ends the negotiation; a stanza with no ESession content, or a
//!   negotiation message that the current state does not expect, is rejected
//!   with a typed error and changes nothing (an attacker could otherwise end
//!   any session with one unauthenticated stanza). Option errors answer with a
//!   `not-acceptable` / `feature-not-implemented` error stanza as the spec shows.
//! - *Key-to-JID association*: a pinned peer key (`SessionConfig::peer_public`)
//!   must match; otherwise keys are remembered per JID (trust on first use), a
//!   first key raises `Warning::Unauthenticated` and a changed key
//!   `Warning::KeyChanged`.
//! - *Threads*: every stanza of a session carries the session's `<thread/>`
//!   in clear (XEP-0155: the thread names the session; XEP-0200: it is not
//!   encrypted, so that it can route; a peer that routes by thread, as
//!   Gajim does, would put a threadless stanza into a session without
//!   keys): negotiation, termination, and every protected `<message/>`,
//!   including one held while the negotiation ran (`<presence/>` and `<iq/>`
//!   carry no thread: RFC 6121 gives `<thread/>` to messages only, and an
//!   `<iq/>` has exactly one child). A stanza carries one `<thread/>`
//!   (RFC 6121), so an application's own thread, when it differs from the
//!   session's, is content and travels inside `<c/>` (dropping it would lose
//!   it; sending it in clear instead of the session's would misroute the
//!   stanza at a peer that routes by thread, and leave it unprotected). The
//!   receiver delivers no clear thread: the session's is plumbing, and any
//!   other is unprotected (XEP-0200 cannot protect it) and reported as
//!   `Warning::UnprotectedExtras`. Decrypted children are put back
//!   where the `<c/>` stood; clear children keep their order.
//! - *Clear extras*: elements beside `<c/>` other than the ones XEP-0200
//!   leaves in clear (`<thread/>`, `<error/>`, `<amp/>`), such as Gajim's
//!   fallback `<body/>` and hints, are not forbidden by XEP-0200: the stanza
//!   is accepted, only its protected content (and the clear elements
//!   XEP-0200 keeps) is delivered, and a `Warning::UnprotectedExtras` names
//!   the extras.
//! - *Rekey frequency*: `rekey_every` is our wish; a side never starts a
//!   rekey before it sent the negotiated `rekey_freq` stanzas since its last
//!   one (XEP-0116: "the minimum number of stanzas that MUST be exchanged
//!   before an entity MAY initiate a key re-exchange"), so an offer of
//!   4294967295 (XEP-0217, Gajim) means no rekey.
//! - *Fixed parameters in the offer*: read from `<option>`s or, for a field
//!   without any, its value (XEP-0217 §4.1 sends them as `hidden` fields).
//!   `esessions-simplified` sends them hidden, as XEP-0217 §4.1 says it
//!   SHOULD; the full profiles send `list-single` options as XEP-0116's
//!   examples do.
//! - *State export* (`Session::dangerous_export_state`, a research hook the
//!   security experiments use in every build; nothing in a session calls
//!   it): JSON of the XEP-0200 channel (sending and receiving key sets, the
//!   counters, the DH private values kept for the peer's rekeys, the peer's
//!   latest DH value) and of the peer's identity proof as this side verified
//!   it (the signed SIGMA MAC, the signature, the key, and the SIGMA key and
//!   inputs that recompute the MAC: [`sigma::ProofRecord`]); for the
//!   SSH-style profile, both directions' keys, IVs and sequence numbers and
//!   the peer's verified signature. Keeping the proof record after the
//!   handshake costs nothing secret beyond KS, which derives no traffic key.
//!   [`dangerous`] reads these exports and transcripts the way an attacker
//!   or a judge would.
//! - *Known-bad controls* ([`Weakness`], profiles `control-*`, family
//!   `control`): each takes one design element out of `esessions-sigma-i`
//!   (`control-anon-dh`: of `esessions-sigma-r`), for the security
//!   experiments to show that the attack on that element works:
//!   `control-static-dh` derives every DH exponent from the long-term key
//!   (SHA-256 over a label, the PKCS#8 key and the group, top bit set) and
//!   never rekeys; `control-no-mac` accepts any XEP-0200 MAC;
//!   `control-no-counter` never advances the counters (and so reuses
//!   keystream); `control-anon-dh` uses key mode `none`, shows no SAS and
//!   keeps no retained secret; `control-clear-identity` sends the identity
//!   proof unencrypted (still MACed); `control-unsigned-offer` leaves the
//!   forms out of the SIGMA MACs; `control-unbound-identity` sends BADH
//!   proofs (the key and an RSA signature over the two nonces and the
//!   prover's DH value, in clear, all-zero MAC field, counters not
//!   advanced); `control-signed-messages` appends a
//!   `<sig xmlns='urn:xmpp-e2e-lab:control:signed-messages'/>` (RSA-SHA256 by
//!   the sender's long-term key over the serialized protected children)
//!   inside every `<c/>` and requires it on receipt. Never for real use.
//! - *Gajim's stanza shapes* (`gajim-shapes=true`): what Gajim sends where
//!   the spec leaves the form open, with the spec's cryptography: its field
//!   order, fixed parameters as `hidden` fields, `<required/>` first in a
//!   field, `modp` options labelled `None`, the `logging` field,
//!   `text-single` typed response fields, `stanzas` `message` and
//!   `rekey_freq` 4294967295 by default, and a clear fallback `<body/>`,
//!   `<private xmlns='urn:xmpp:carbons:2'/>`, `<no-permanent-store/>` and
//!   `<no-copy/>` beside every `<c/>` (GAJIM-NOTES.md "Observed on the
//!   wire"). A default peer must, and does, accept all of it.
//! - *Gajim compatibility* (`gajim-compat=true`, SIGMA-R with key mode `none`
//!   only; implies `gajim-shapes`): reproduces its deviations listed in
//!   `../shared/specs/GAJIM-NOTES.md`, each tested in `tests/sigma.rs` and
//!   by the independent vectors (`tests/kat/`):
//!   32-byte cipher keys under the name `aes128-ctr` (so AES-256-CTR runs);
//!   AES-CTR starting one block late (the first block under counter C uses
//!   C+1), padding to 16 *characters*, and keystream left in a partial block
//!   carried into the next stanza ([`channel::CtrReading::Gajim`]); 8-byte
//!   nonces; `<required />` in normalized forms; unpadded SAS; offer `modp`
//!   15, 16, 14; C_A chosen with a top octet neither 0x00 nor 0x80, so both
//!   counters fill the 16 octets Gajim's receiver pads them to; no rekey
//!   (`rekey_every` is refused); termination in clear (sent that way, and a
//!   clear terminate form from the peer ends the session with a warning),
//!   never acknowledged.
//!
//! ## The SSH-style reconstruction (`esessions-ssh`)
//! The text of JEP-0116 v0.1 (2003) is lost; the spec digest §2.1 infers its
//! shape from its author's C module. We rebuild it from that and RFC 4253 and
//! list every choice, since none of it is normative:
//! - 3 handshake stanzas (1.5 round trips): `<kexdh-init group='14'><e/>`
//!   (Alice), `<kexdh-reply><f/><ks/><sig/>` (Bob's `ssh-rsa` host key blob and
//!   his signature over the exchange hash), then Alice's SSH "publickey" user
//!   authentication (`SSH_MSG_USERAUTH_REQUEST` with her key blob and her
//!   signature over the session id, RFC 4252 §7) as the first encrypted
//!   packet. Alice proceeds without waiting for `USERAUTH_SUCCESS` (folded
//!   away: Bob terminates on failure); Bob is established once he verified her.
//! - Namespace `urn:xmpp-e2e-lab:esessions-ssh:0` (the 2003 one is unknown);
//!   values base64 (the C module used hex).
//! - DH group 14 with SHA-1 (RFC 4253's `diffie-hellman-group14-sha1`); the
//!   exchange hash is `H = SHA1(string(K_S) | mpint(e) | mpint(f) | mpint(K))`:
//!   SSH's H without version strings and KEXINIT payloads, as the digest infers.
//! - Keys as RFC 4253 §7.2: `HASH(mpint(K) | H | X | session_id)`, X = A..F;
//!   `aes128-cbc` (RFC 4253 RECOMMENDED, IV chained across packets) and
//!   `hmac-sha1` over `uint32 seq | packet` with per-direction sequence
//!   numbers from 0; SSH binary packets with random padding (>= 4 bytes, to 16).
//! - Each stanza's protected children (the same coverage as XEP-0200) travel
//!   as `SSH_MSG_CHANNEL_DATA` in one `<packet/>` element (ciphertext | MAC,
//!   base64); termination is an encrypted `SSH_MSG_DISCONNECT`.
//! - Keys: RSA-2048 `ssh-rsa` (PKCS#1 v1.5, SHA-1), trusted on first use per
//!   JID (MD5 fingerprints, as the era's `known_hosts`), or pinned.
//! - Any bad packet ends the session (SSH disconnects on a MAC error).
#![forbid(unsafe_code)]

pub mod channel;
pub mod dangerous;
pub mod form;
pub mod keys;
pub mod prim;
pub mod sigma;
pub mod ssh;

use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::error::backend;
use e2elab_core::Error;
use e2elab_core::{
    Env, Identity, Protocol, PublicIdentity, Result, SecretBytes, Session, SessionConfig,
    StanzaKind,
};
use openssl::pkey::{PKey, Private, Public};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The ESessions profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// XEP-0116 v0.16 4-message SIGMA-R.
    SigmaR,
    /// XEP-0116 v0.16 3-message SIGMA-I.
    SigmaI,
    /// XEP-0217.
    Simplified,
    /// The 2003 SSH-style design (reconstructed).
    Ssh,
}

impl Profile {
    /// Protocol id.
    pub fn id(self) -> &'static str {
        match self {
            Profile::SigmaR => "esessions-sigma-r",
            Profile::SigmaI => "esessions-sigma-i",
            Profile::Simplified => "esessions-simplified",
            Profile::Ssh => "esessions-ssh",
        }
    }
}

/// The deliberately weakened ESessions variants that the security
/// experiments run as known-bad controls (family `control`, ids
/// `control-*`). Each differs from `esessions-sigma-i` (or, for
/// [`Weakness::AnonDh`], from `esessions-sigma-r` in key mode `none`) in one
/// design element, so the experiment that measures the property that
/// element provides must come out `fails` on it. Never for real use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weakness {
    /// The DH private value is derived from the long-term key (no ephemeral
    /// DH, no rekey): no forward secrecy, no post-compromise security.
    StaticDh,
    /// The receiver does not check XEP-0200 MACs: no integrity.
    NoMac,
    /// The XEP-0200 counters never advance: no replay protection.
    NoCounter,
    /// SIGMA-R with no public keys, no SAS shown, nothing retained:
    /// unauthenticated DH, a man in the middle is never detected.
    AnonDh,
    /// The identity proof (public key and signature) travels unencrypted: no
    /// identity protection.
    ClearIdentity,
    /// The negotiation forms are left out of the SIGMA MACs: the offer can be
    /// downgraded.
    UnsignedOffer,
    /// "BADH": identity and a signature over the nonces and DH values only,
    /// in clear, without the SIGMA MAC: identity misbinding.
    UnboundIdentity,
    /// Every stanza also carries an RSA signature by the sender's long-term
    /// key inside the encrypted content: no message repudiation.
    SignedMessages,
}

impl Weakness {
    /// Every control, in report order.
    pub const ALL: [Weakness; 8] = [
        Weakness::StaticDh,
        Weakness::NoMac,
        Weakness::NoCounter,
        Weakness::AnonDh,
        Weakness::ClearIdentity,
        Weakness::UnsignedOffer,
        Weakness::UnboundIdentity,
        Weakness::SignedMessages,
    ];

    /// The profile id.
    pub fn id(self) -> &'static str {
        match self {
            Weakness::StaticDh => "control-static-dh",
            Weakness::NoMac => "control-no-mac",
            Weakness::NoCounter => "control-no-counter",
            Weakness::AnonDh => "control-anon-dh",
            Weakness::ClearIdentity => "control-clear-identity",
            Weakness::UnsignedOffer => "control-unsigned-offer",
            Weakness::UnboundIdentity => "control-unbound-identity",
            Weakness::SignedMessages => "control-signed-messages",
        }
    }

    /// The real profile it weakens.
    pub fn base(self) -> Profile {
        match self {
            Weakness::AnonDh => Profile::SigmaR,
            _ => Profile::SigmaI,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Weakness::StaticDh => "known-bad control: esessions-sigma-i with DH values derived from the long-term key and no rekey",
            Weakness::NoMac => "known-bad control: esessions-sigma-i whose receiver ignores the XEP-0200 MAC",
            Weakness::NoCounter => "known-bad control: esessions-sigma-i whose XEP-0200 counters never advance",
            Weakness::AnonDh => "known-bad control: esessions-sigma-r with key mode none, no SAS and no retained secrets (unauthenticated DH)",
            Weakness::ClearIdentity => "known-bad control: esessions-sigma-i sending its identity proof unencrypted",
            Weakness::UnsignedOffer => "known-bad control: esessions-sigma-i leaving the negotiation forms out of the SIGMA MACs",
            Weakness::UnboundIdentity => "known-bad control: esessions-sigma-i with BADH identity proofs (signature over nonces and DH values only, in clear, no MAC)",
            Weakness::SignedMessages => "known-bad control: esessions-sigma-i adding an RSA signature by the sender inside every encrypted stanza",
        }
    }

    /// The measured rows this control must fail (property, variant prefix).
    pub fn control_for(self) -> &'static [(Property, &'static str)] {
        use Property::*;
        match self {
            Weakness::StaticDh => &[(ForwardSecrecy, ""), (PostCompromiseSecurity, "")],
            Weakness::NoMac => &[(Integrity, "")],
            Weakness::NoCounter => &[(Replay, "")],
            Weakness::AnonDh => &[(MitmDetection, "")],
            Weakness::ClearIdentity => &[(IdentityProtection, "passive")],
            Weakness::UnsignedOffer => &[(DowngradeResistance, "")],
            Weakness::UnboundIdentity => &[(IdentityMisbinding, "identity-substitution")],
            Weakness::SignedMessages => &[(MessageRepudiation, "online"), (Forgeability, "")],
        }
    }
}

/// What outlives a session: retained secrets and remembered keys, per
/// (local bare JID, peer JID). Shared by the sessions a [`Esessions`] creates.
#[derive(Debug, Default)]
pub struct Store {
    /// Retained secrets: (local bare JID, peer full JID) -> secret.
    pub retained: HashMap<(String, String), SecretBytes>,
    /// Remembered peer keys: (local bare JID, peer bare JID) -> normalized KeyValue.
    pub known_keys: HashMap<(String, String), Vec<u8>>,
    /// Parsed long-term keys, so that a client loads its key once and OpenSSL's
    /// per-key precomputation (Montgomery contexts, blinding) is not redone per session.
    private_keys: HashMap<[u8; 32], PKey<Private>>,
    /// Parsed peer public keys by their encoding.
    public_keys: HashMap<Vec<u8>, PKey<Public>>,
}

impl Store {
    /// The parsed private key for a PKCS#8 DER (cached).
    pub fn private_key(store: &Mutex<Store>, der: &[u8]) -> Result<PKey<Private>> {
        let id = prim::sha256(&[der])?;
        let mut s = store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        if let Some(k) = s.private_keys.get(&id) {
            return Ok(k.clone());
        }
        let k = keys::private_from_der(der)?;
        s.private_keys.insert(id, k.clone());
        Ok(k)
    }

    /// A parsed public key for an encoding (cached); `parse` builds it on a miss.
    pub fn public_key(
        store: &Mutex<Store>,
        encoded: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<PKey<Public>>,
    ) -> Result<PKey<Public>> {
        let mut s = store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        if let Some(k) = s.public_keys.get(encoded) {
            return Ok(k.clone());
        }
        let k = parse(encoded)?;
        s.public_keys.insert(encoded.to_vec(), k.clone());
        Ok(k)
    }
}

/// An ESessions profile: a `Protocol` factory with its own key and secret memory.
#[derive(Debug, Clone)]
pub struct Esessions {
    profile: Profile,
    store: Arc<Mutex<Store>>,
    weakness: Option<Weakness>,
}

impl Esessions {
    /// A SIGMA session as its concrete type (the negotiated-parameter
    /// accessors of [`sigma::SigmaSession`]); [`Protocol::new_session`]
    /// boxes the same thing. Not for `esessions-ssh`.
    pub fn sigma_session(
        &self,
        _env: &mut Env,
        config: SessionConfig,
    ) -> Result<sigma::SigmaSession> {
        if self.profile == Profile::Ssh {
            return Err(e2elab_core::ApiMisuse::BadOption {
                key: "profile".into(),
                reason: "esessions-ssh has no SIGMA session".into(),
            }
            .into());
        }
        config.identity.require_protocol(self.id())?;
        let settings = sigma::Settings::from(self.profile, &config.options, self.weakness)?;
        sigma::SigmaSession::new(
            self.profile,
            settings,
            config,
            self.store.clone(),
            match self.weakness {
                Some(w) => control_info(w),
                None => info(self.profile),
            },
        )
    }

    /// A profile with a fresh, empty store.
    pub fn new(profile: Profile) -> Self {
        Esessions {
            profile,
            store: Arc::new(Mutex::new(Store::default())),
            weakness: None,
        }
    }

    /// A known-bad control (family `control`), with a fresh store.
    pub fn control(w: Weakness) -> Self {
        Esessions {
            profile: w.base(),
            store: Arc::new(Mutex::new(Store::default())),
            weakness: Some(w),
        }
    }

    /// The control this profile is, if any.
    pub fn weakness(&self) -> Option<Weakness> {
        self.weakness
    }

    /// The profile it is (for a control: the profile it weakens).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The protocol id (a control's own id).
    pub fn id(&self) -> &'static str {
        match self.weakness {
            Some(w) => w.id(),
            None => self.profile.id(),
        }
    }

    /// `esessions-sigma-r`.
    pub fn sigma_r() -> Self {
        Self::new(Profile::SigmaR)
    }

    /// `esessions-sigma-i`.
    pub fn sigma_i() -> Self {
        Self::new(Profile::SigmaI)
    }

    /// `esessions-simplified`.
    pub fn simplified() -> Self {
        Self::new(Profile::Simplified)
    }

    /// `esessions-ssh`.
    pub fn ssh() -> Self {
        Self::new(Profile::Ssh)
    }

    /// The shared store (retained secrets, known keys).
    pub fn store(&self) -> Arc<Mutex<Store>> {
        self.store.clone()
    }
}

fn claim(property: Property, level: ClaimLevel, source: &'static str, note: &'static str) -> Claim {
    Claim::new(property, level, source, note)
}

/// The static description of a control.
pub fn control_info(w: Weakness) -> &'static ProtocolInfo {
    static INFOS: OnceLock<Vec<ProtocolInfo>> = OnceLock::new();
    let all = INFOS.get_or_init(|| {
        Weakness::ALL
            .iter()
            .map(|w| ProtocolInfo {
                id: w.id(),
                family: "control",
                spec: "none: a deliberately weakened ESessions variant (harness control)",
                summary: w.summary(),
                protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
                after_bad_input: AfterBadInput::Terminate,
                control_for: w.control_for(),
                claims: Vec::new(),
            })
            .collect()
    });
    let i = Weakness::ALL.iter().position(|x| *x == w).unwrap_or(0);
    &all[i]
}

/// The static description of a profile.
pub fn info(p: Profile) -> &'static ProtocolInfo {
    static INFOS: OnceLock<[ProtocolInfo; 4]> = OnceLock::new();
    let all = INFOS.get_or_init(|| {
        [
            build_info(Profile::SigmaR),
            build_info(Profile::SigmaI),
            build_info(Profile::Simplified),
            ssh_info(),
        ]
    });
    match p {
        Profile::SigmaR => &all[0],
        Profile::SigmaI => &all[1],
        Profile::Simplified => &all[2],
        Profile::Ssh => &all[3],
    }
}

fn ssh_info() -> ProtocolInfo {
    use ClaimLevel::*;
    use Property::*;
    const SRC: &str = "JEP-0116 v0.1 (2003, reconstructed: spec digest §2.1) + RFC 4253";
    ProtocolInfo {
        id: Profile::Ssh.id(),
        family: "esessions",
        spec: "JEP-0116 v0.1 (2003) reconstructed on RFC 4253/4252",
        summary: "ESessions as first designed: SSH transport in stanzas (DH group 14, ssh-rsa, aes128-cbc, hmac-sha1)",
        protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
        after_bad_input: AfterBadInput::Terminate,
        control_for: &[],
        claims: vec![
            claim(ConfidentialityCoverage, Partial, SRC, "the same coverage as XEP-0200: content except <thread/>, <amp/>, <error/>"),
            claim(Integrity, Claimed, "RFC 4253 §6.4", "HMAC-SHA1 over sequence number and packet"),
            claim(Replay, Claimed, "RFC 4253 §6.4", "implicit per-direction sequence numbers"),
            claim(LossReorderTolerance, NotClaimed, "RFC 4253 §6.4", "a lost packet breaks the sequence; the session ends"),
            claim(ForwardSecrecy, Claimed, "RFC 4253 §8", "ephemeral Diffie-Hellman"),
            claim(PostCompromiseSecurity, NotClaimed, SRC, "no rekey in the reconstruction"),
            claim(MessageRepudiation, Claimed, SRC, "content is MACed only"),
            claim(ParticipationRepudiation, NotClaimed, "RFC 4252 §7, RFC 4253 §8", "both sides sign the session id (host key signature, publickey user authentication): participation is provable"),
            claim(Forgeability, NotClaimed, SRC, "MAC keys are never published"),
            claim(IdentityProtection, Partial, SRC, "the responder's host key goes in clear; the initiator's key only encrypted"),
            claim(MitmDetection, Claimed, "RFC 4251 §4.1 (host keys), digest §2.1 (known_hosts-like TOFU)", "host key signature; remembered keys; key-change warning").under("none/pinned"),
            claim(MitmDetection, Claimed, "RFC 4251 §4.1", "users compare the host key fingerprint").under("oob"),
            claim(MitmDetection, NotClaimed, "RFC 4251 §4.1", "a new host key is accepted on first use").under("none/first-contact"),
            claim(DowngradeResistance, NotApplicable, SRC, "nothing is negotiated: fixed algorithms"),
            claim(IdentityMisbinding, Partial, SRC, "the exchange hash covers the host key but not the JIDs"),
        ],
    }
}

fn build_info(p: Profile) -> ProtocolInfo {
    use ClaimLevel::*;
    use Property::*;
    let (spec, summary) = match p {
        Profile::SigmaR => (
            "XEP-0116 v0.16 (4-message SIGMA-R) + XEP-0188 + XEP-0200",
            "ESessions: SIGMA-R with hash commitment, SAS, retained secrets; XEP-0200 stanza encryption",
        ),
        Profile::SigmaI => (
            "XEP-0116 v0.16 (3-message SIGMA-I) + XEP-0188 + XEP-0200",
            "ESessions: SIGMA-I, initiator identity protected; XEP-0200 stanza encryption",
        ),
        Profile::Simplified | Profile::Ssh => (
            "XEP-0217 (Simplified E2E Encryption) + XEP-0200",
            "ESessions without public keys: SAS plus retained secrets",
        ),
    };
    let auth_note = match p {
        Profile::Simplified => "SAS comparison and retained secrets only (no public keys)",
        _ => "signatures over the SIGMA MACs, key-to-JID association, SAS (4-message)",
    };
    ProtocolInfo {
        id: p.id(),
        family: "esessions",
        spec,
        summary,
        protects: &[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq],
        after_bad_input: AfterBadInput::Terminate,
        control_for: &[],
        claims: vec![
            claim(ConfidentialityCoverage, Partial, "XEP-0200 §Encryptable Content", "all child content except <thread/>, <amp/>, <error/>; stanza attributes in clear"),
            claim(Integrity, Claimed, "XEP-0200 §Decrypting; XEP-0210 §Integrity", "HMAC over the encrypted content and the implicit counter"),
            claim(Replay, Claimed, "XEP-0200 §Replay Attacks; XEP-0116 §Replay Attacks", "implicit per-direction counters; unique e and d per session"),
            claim(LossReorderTolerance, NotClaimed, "XEP-0200 §Decrypting", "strict in-order delivery assumed: a lost or reordered stanza terminates the session"),
            if p == Profile::Simplified {
                claim(ForwardSecrecy, Claimed, "XEP-0217 §Introduction (ephemeral DH of XEP-0116)", "ephemeral DH, keys destroyed at termination; no rekey")
            } else {
                claim(ForwardSecrecy, Claimed, "XEP-0210 §Forward Secrecy; XEP-0200 §Re-Key", "ephemeral DH, rekeys, keys destroyed")
            },
            if p == Profile::Simplified {
                claim(PostCompromiseSecurity, NotClaimed, "XEP-0217 (rekey_freq fixed at 2^32-1)", "no rekey, so no recovery within a session")
            } else {
                claim(PostCompromiseSecurity, Partial, "XEP-0200 §Re-Key", "a rekey mixes a fresh DH value from one side")
            },
            claim(MessageRepudiation, Claimed, "XEP-0210 §Repudiability; XEP-0188", "content authenticated by MACs only; signatures only over DH MACs"),
            if p == Profile::Simplified {
                claim(ParticipationRepudiation, Claimed, "XEP-0217 §Introduction", "no public keys: the identity proof is a MAC that either side can compute")
            } else {
                claim(ParticipationRepudiation, NotClaimed, "XEP-0188 (SIGMA); XEP-0210 §Repudiability (stanzas only)", "each side signs the SIGMA MAC over both nonces and DH values with its long-term key: the peer can show the signature")
            },
            if p == Profile::Simplified {
                claim(Forgeability, NotClaimed, "XEP-0217 (no rekey)", "MAC keys are published only after rekeys, which XEP-0217 never does")
            } else {
                claim(Forgeability, Partial, "XEP-0200 §Publishing Old MAC Values", "old MAC keys MAY be published after an acknowledged rekey")
            },
            claim(IdentityProtection, if p == Profile::Simplified { Partial } else { Claimed }, "XEP-0210 §Identity Protection; XEP-0188", match p {
                Profile::Simplified => "no public keys on the wire at all; rshashes keyed with N_A hide retained secrets",
                Profile::SigmaI => "keys sent encrypted; initiator protected against active attackers",
                _ => "keys sent encrypted; responder protected against active attackers; rshashes keyed with N_A",
            }).under(if p == Profile::Simplified { "" } else { "passive" }),
            claim(IdentityProtection, Partial, "XEP-0188 (SIGMA-I / SIGMA-R)", match p {
                Profile::SigmaI => "against an active attacker only the initiator's identity is protected",
                _ => "against an active attacker only the responder's identity is protected",
            }).under(if p == Profile::Simplified { "none-such" } else { "active" }),
            claim(MitmDetection, Claimed, "XEP-0116 §Verifying Keys, §Short Authentication String", auth_note).under("oob"),
            claim(MitmDetection, if p == Profile::Simplified { Partial } else { Claimed }, "XEP-0116 §Verifying Keys; §Retained Secrets", match p {
                Profile::Simplified => "a retained secret from an earlier session reveals a later MITM as a missing shared secret (a warning)",
                _ => "a remembered or pinned public key must match the signature's key",
            }).under("none/pinned"),
            claim(MitmDetection, NotClaimed, "XEP-0116 §Verifying Keys", "at first contact a new key (or no key) is accepted with a prompt to compare the SAS or fingerprint; without the comparison nothing is detected").under("none/first-contact"),
            claim(DowngradeResistance, Claimed, "XEP-0116 §Hiding Bob's Identity (form_A, form_B in the MACs)", "both negotiation forms are covered by the SIGMA MACs"),
            claim(IdentityMisbinding, if p == Profile::Simplified { Partial } else { Claimed }, "XEP-0188 (SIGMA)", "identities inside the MACed, signed SIGMA proofs"),
        ],
    }
}

impl Protocol for Esessions {
    fn info(&self) -> &ProtocolInfo {
        match self.weakness {
            Some(w) => control_info(w),
            None => info(self.profile),
        }
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        if self.profile == Profile::Ssh {
            ssh::OPTIONS
        } else {
            sigma::OPTIONS
        }
    }

    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        if self.profile == Profile::Simplified {
            return Ok(Identity::new(
                PublicIdentity {
                    protocol: self.id().into(),
                    jid: jid.into(),
                    data: Vec::new(),
                    fingerprint: None,
                },
                SecretBytes::default(),
            ));
        }
        // OpenSSL's RNG: not reproducible from the Env (see crate docs).
        let key = prim::rsa_generate(2048)?;
        let der = key.private_key_to_pkcs8().map_err(backend)?;
        if self.profile == Profile::Ssh {
            let blob = ssh::rsa_blob(&key)?;
            return Ok(Identity::new(
                PublicIdentity {
                    protocol: self.id().into(),
                    jid: jid.into(),
                    fingerprint: Some(ssh::md5_fingerprint(&blob)?),
                    data: blob,
                },
                SecretBytes::new(der),
            ));
        }
        let kv = keys::key_value_of(&key)?;
        Ok(Identity::new(
            PublicIdentity {
                protocol: self.id().into(),
                jid: jid.into(),
                fingerprint: Some(keys::fingerprint_hex(&kv)?),
                data: kv,
            },
            SecretBytes::new(der),
        ))
    }

    fn new_session(&self, _env: &mut Env, config: SessionConfig) -> Result<Box<dyn Session>> {
        config.identity.require_protocol(self.id())?;
        if let Some(p) = &config.peer_public {
            e2elab_core::identity::require_protocol(p, self.id())?;
        }
        if self.profile == Profile::Ssh {
            return Ok(Box::new(ssh::SshSession::new(config, self.store.clone())?));
        }
        Ok(Box::new(self.sigma_session(_env, config)?))
    }
}
