//! # e2elab-openpgp: JEP-0027 as written, and XEP-0373/0374 OX as its successor
//!
//! Two profiles on Sequoia (`sequoia-openpgp` 2, OpenSSL backend), both
//! handshake-less: a session is `Established` from creation, `start` puts
//! nothing on the wire, the peer's certificate comes in
//! `SessionConfig::peer_public` (out of band, as keyservers or PEP deliver it).
//!
//! - [`Jep0027`] (`jep0027`): XEP-0027 "Current Jabber OpenPGP Usage" (v1.4;
//!   the 2004 JEP-0027 v1.2 text differs only in requiring a non-empty
//!   `<status>`/`<body>` to sign). A message's `<body>` character data is
//!   encrypted into `<x xmlns='jabber:x:encrypted'>` beside a clear
//!   placeholder `<body>`; a presence's `<status>` character data is signed
//!   into `<x xmlns='jabber:x:signed'>`; both as ASCII armor with the armor
//!   header lines and armor headers removed ([`armor`]).
//! - [`Ox`] (`xep0373-ox`): XEP-0373 v0.7.0 with the XEP-0374 v0.2.0 IM
//!   profile: every child of the message goes into the `<payload>` of a
//!   `<signcrypt>` with `<to>`, `<time>` and `<rpad>`, signed, encrypted to the
//!   recipient and to self, and carried base64 in `<openpgp xmlns='urn:xmpp:openpgp:0'>`.
//!
//! ## Threat model
//!
//! Attacker: the servers and anyone on the path, who read, drop, replay,
//! reorder, modify and inject stanzas, and who know every public key.
//!
//! `jep0027` protects **only** the confidentiality of the `<body>` text and
//! the authenticity of the `<status>` text of a signed presence. It does
//! **not** protect: every stanza attribute, `<subject>`, `<thread>`, `<show>`,
//! `<priority>`, every extension, iq entirely, the placeholder body; the
//! sender of an encrypted body (bodies are unsigned: anyone holding the
//! recipient's public key can write one "from" anyone); the recipient (not
//! bound: a body or a signed presence can be replayed to anyone, any time);
//! forward secrecy (the long-term key decrypts every recorded body);
//! repudiability of signed presence. The spec lists these itself (§4, §5);
//! this profile keeps every one of them, because measuring them is the point.
//! Integrity of an encrypted body in practice comes from OpenPGP's MDC, which
//! the spec does not mention; a modified ciphertext is rejected
//! ([`e2elab_core::Error::DecryptFailed`]).
//!
//! `xep0373-ox` protects the confidentiality and integrity of all children of
//! a message (the `<payload>`), authenticates the sender by an OpenPGP
//! signature whose key must carry the User ID `xmpp:<sender JID>`, and binds
//! the recipient (`<to>`, against surreptitious forwarding). It does **not**
//! protect stanza attributes (from, to, type, id) or the hint elements; it
//! has no replay cache (a replay is delivered, with a warning when its
//! `<time>` is implausible); no forward secrecy; signatures are transferable
//! (no repudiability); recipient key ids are visible on the wire.
//!
//! Randomness and time: every choice this crate makes itself (the `<rpad>`
//! length and content, `<time>`, signature and key creation times, the
//! literal-data date, and the policy's reference time) comes from the
//! [`e2elab_core::Env`]. Sequoia's own randomness cannot take our RNG: session
//! keys, OpenPGP CFB prefixes, PKCS#1 v1.5 padding and ECDH ephemeral keys,
//! and key generation (OpenSSL's RNG) are not reproducible from the seed, so
//! ciphertext bytes differ between runs of the same seed; their sizes do not.
//!
//! Secrets: our secret keys travel as a binary TSK in
//! [`e2elab_core::SecretBytes`]; inside Sequoia they sit in its encrypted
//! in-memory `Protected` form; decrypted bodies and serialized `<signcrypt>`s
//! are held in `Zeroizing` buffers. Delivered stanzas (minidom elements) and
//! OpenSSL's internal copies are not wiped. `Debug` of a session prints no key.
//!
//! Sequoia 2.4.2 panics on an SEIPDv1 packet whose body is shorter than the
//! cipher block size plus two (found by this crate's armor-mutation
//! proptest). [`pgp::check_framing`] walks the packet framing first and turns
//! such input into [`e2elab_core::DecodeError::Truncated`]; every Sequoia
//! parse also runs under `catch_unwind`, so a backend panic becomes an
//! `Error::Backend` and the session stays unchanged.
//!
//! ## DECISIONS
//!
//! Each is tested (test names given; in `tests/sessions.rs` unless said).
//!
//! Both profiles:
//! 1. Established from creation; `start` emits only the `Established` event
//!    (peer = bare JID, fingerprint = the peer certificate's v4 fingerprint);
//!    `close` is local, nothing goes on the wire. (tests: jep0027_established_without_handshake_and_close)
//! 2. Keys: v4 certificates, RFC 4880 profile, advertising SEIPDv1 only (so
//!    GnuPG 2.2 reads what we encrypt); primary key certify+sign, one
//!    encryption subkey (GnuPG's layout); no expiry; User ID `xmpp:<bare JID>`
//!    (XEP-0373 §8.5; JEP-0027 prescribes none); created at the virtual clock.
//!    `jep0027` defaults to RSA-2048, `xep0373-ox` to Curve25519; RSA
//!    1024/2048/3072/4096 and `cv25519` are selectable per profile value
//!    ([`Jep0027::with_key`], `from_options` with `key=...`), because core's
//!    `generate_identity` takes no options. RSA-1024 is below every Sequoia
//!    cipher suite and is assembled by hand. (tests: jep0027_key_types, ox_key_types, rsa4096_identity; gpg.rs jep0027_rsa1024_our_key_is_accepted_by_gpg)
//! 3. Sequoia's `StandardPolicy` is evaluated at the virtual clock
//!    (`StandardPolicy::at`), never the real one: a 2005 run accepts what 2005
//!    accepted (RSA-1024, SHA-1); on today's clock Sequoia refuses RSA-1024.
//!    (tests: jep0027_key_types)
//! 4. Identity data: public = the binary transferable public key; secret =
//!    the binary TSK; fingerprint = 40 hex digits. [`import_public`] takes a
//!    binary or armored certificate (e.g. from `gpg --export`),
//!    [`lookup_by_key_id`] finds a certificate by key id or fingerprint of the
//!    primary or a subkey. (tests: identity_provisioning)
//! 5. Typed errors: not encrypted to any of our keys → `PeerMisbehaved::WrongAddress`;
//!    signature by a key other than the peer's → `IdentityError::UnknownKey(keyid)`;
//!    signature that does not verify (or is missing where required) →
//!    `PeerMisbehaved::BadSignature`; corrupted armor → `DecodeError::Invalid { field: "armor" }`;
//!    packet framing cut short → `DecodeError::Truncated`; ciphertext modified
//!    (MDC or session key) → `Error::DecryptFailed`. Every error leaves the
//!    session unchanged and emits nothing. A cipher the policy refuses →
//!    `Error::Unsupported("algorithm refused by policy: CAST5 is not
//!    considered secure since ...")`, not a generic decryption failure.
//!    (tests: jep0027_typed_errors, ox_unknown_signer_and_wrong_recipient, regression_short_seipd_is_a_typed_error_not_a_backend_panic; gpg.rs era_ciphers_and_hidden_recipients_from_gpg)
//!    - *Era ciphers*: on today's clock Sequoia refuses CAST5 (gpg's default
//!      cipher until 2.1, so what JEP-0027-era clients sent) and 3DES.
//!      `jep0027 --opt legacy-algorithms=true` reads them, so the faithful
//!      profile can read 2005-era messages; the risk is the 64-bit block
//!      (birthday-bound attacks on long messages, no modern margin). It
//!      never sends them, and OX has no such option.
//!    - *Hidden recipients* (`gpg --throw-keyids`, a wildcard key id): every
//!      secret key of ours is tried, as gpg does.
//! 6. Public-key operations are counted at each call: `pk_encrypt` per
//!    recipient key (one PKESK each), `pk_decrypt` per PKESK we try with our
//!    key, `sign` per signature made, `verify` per signature checked against
//!    the peer's key (good or bad; signatures by unknown keys are not
//!    checked, so not counted). With Curve25519 the ECDH key transport is
//!    counted as `pk_encrypt`/`pk_decrypt`, not `modexp`. Key generation
//!    happens in `generate_identity`, outside sessions. (tests: jep0027_op_counts_per_message, ox_wire_form_and_round_trip; gpg.rs)
//! 7. No compression on sending (Sequoia's default; gpg compresses, and we
//!    read that); SEIPDv1 with MDC; literal data in binary mode carrying the
//!    exact UTF-8 bytes, no file name, dated at the virtual clock. On receipt
//!    the literal bytes are taken as they are (no line-end conversion).
//!    (tests: jep0027_message_wire_form; gpg.rs)
//!
//! `jep0027`:
//! 8. Signature form: a detached signature of type 0x01 (canonical text),
//!    as the spec's example (`iQA/AwUB…` decodes to a v3 text-mode
//!    signature), over the UTF-8 bytes of the `<status>` character data as
//!    the XML parser yields it: no trimming, no Unicode normalization (text
//!    mode makes LF and CRLF line ends equivalent). Binary (0x00) signatures,
//!    gpg's default, are accepted too. (tests: jep0027_presence_signed_over_status_text_mode_detached; gpg.rs)
//! 9. Which status: the first `<status>` child in document order, whatever
//!    its `xml:lang`; further `<status>` elements are unprotected. A presence
//!    without `<status>` is signed over the empty string (v1.3+: "MAY be the
//!    empty string"; v1.2 demanded a status), so that every presence carries
//!    the signature that is the spec's only capability signal. (tests: jep0027_decision_no_status_signs_empty_string_and_first_status_only)
//! 10. Messages are encrypted, never signed: the spec allows signing a
//!     message's body but not signing and encrypting one stanza, and a body
//!     is what this profile encrypts. (tests: jep0027_decision_bodies_unsigned_body_restored_in_place_or_appended)
//! 11. Armor: "headers removed" = the armor header line (`-----BEGIN PGP …-----`),
//!     every armor header (`Version:`, `Comment:`), the blank line and the
//!     armor tail line (`-----END PGP …-----`); kept: the radix-64 lines (64
//!     columns, joined by `\n`, no leading or trailing line break) and the
//!     `=XXXX` CRC-24 line. To decode we re-wrap with the header and tail lines
//!     and dearmor with Sequoia. Strict on receipt: only radix-64 lines and at
//!     most one final CRC line (surrounding whitespace tolerated); an armor
//!     still carrying header lines is a decode error. The CRC is optional, but
//!     checked when present (as GnuPG 2.2 does; Sequoia ignores it).
//!     (tests: armor unit tests, jep0027_typed_errors; props.rs; gpg.rs armor_strip_matches_gpg_output_shape)
//! 12. Encrypted to the recipient's key only (the spec: "encrypt a message to
//!     a specific recipient"); option `encrypt_to_self=true` adds our own key.
//!     (tests: jep0027_decision_encrypt_to_self_option)
//! 13. The placeholder is the spec example's "This message is encrypted."
//!     (option `placeholder`); it replaces the text of the `<body>` in place
//!     (its attributes kept); `<x>` is appended as the last child. On receipt
//!     the decrypted text replaces the first `<body>`'s content, or is
//!     appended as a `<body>` if none is left; more than one `<x>` is a
//!     decode error. (tests: jep0027_message_wire_form, jep0027_decision_placeholder_option_and_bad_options, jep0027_decision_bodies_unsigned_body_restored_in_place_or_appended)
//! 14. A message without `<body>` has nothing the spec encrypts: it is sent
//!     unchanged. Received, it, a message with a `<body>` but no `<x>`, an
//!     unsigned presence and any iq are delivered as `DeliveredUnprotected`
//!     after `Warning::UnprotectedStanza` (issue 16.4: the bodyless message
//!     used to come as `Delivered`). Protected deliveries are labelled: a
//!     message covers `<body>` only (encrypted, not authenticated, key
//!     `openpgp:<our fingerprint>`), a presence `<status>` only
//!     (authenticated, key `openpgp:<peer fingerprint>`), other children
//!     clear. Sending an iq, a message with several `<body>`
//!     elements (all but one would leak) or a stanza already carrying our
//!     `<x>` is `ApiMisuse::CannotProtect`. (tests: jep0027_decision_bodyless_message_passes_in_clear_and_is_delivered_unprotected, jep0027_labels_say_body_encrypted_status_signed, jep0027_decision_refuses_several_bodies_iq_and_double_protection)
//! 15. Nothing else is checked: replays are delivered again, `from`/`to` are
//!     never compared with anything (no recipient binding). (tests: jep0027_accepts_replay_and_any_addressing; conformance replay)
//!
//! `xep0373-ox`:
//! 16. Only `<signcrypt>` (XEP-0374 §3.1): `<sign>` or `<crypt>` received is
//!     `DecodeError::UnexpectedStanza`; an unsigned message is a bad
//!     signature. Structure per XEP-0373 §3.1: at least one `<to jid>`,
//!     exactly one `<time stamp>` (XEP-0082), at most one `<rpad>`, exactly
//!     one `<payload>`, else a decode error. (tests: ox_structure_rules; gpg.rs)
//! 17. The payload is every child element of the message, in order; the
//!     outer stanza keeps the attributes only (text directly inside a stanza
//!     cannot be protected: `CannotProtect`). On receipt all outer children
//!     (hints, anything a server added) are dropped and the payload children
//!     take their place. (tests: ox_wire_form_and_round_trip)
//! 18. Hints (XEP-0374 §3.2, SHOULD): placeholder `<body>` "This message is
//!     encrypted using OpenPGP.", `<store xmlns='urn:xmpp:hints'/>` and
//!     `<encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:openpgp:0'/>`;
//!     option `hints=false` omits them. (tests: ox_decision_hints_option)
//! 19. `<to jid>` = the peer's bare JID, once. The receiver requires its own
//!     bare JID among the `<to>`s and, when the outer `to` is present, that
//!     one too (§3.2); an outer `from` must be the peer's bare JID (the key's
//!     User ID). JIDs compare bare and ASCII case-insensitively (no full
//!     RFC 7622 PRECIS). Violations: `PeerMisbehaved::WrongAddress`. The
//!     peer's certificate must carry `xmpp:<peer bare JID>`, else
//!     `IdentityError::JidMismatch` at `new_session`. (tests: ox_rejects_wrong_to, ox_unknown_signer_and_wrong_recipient)
//! 20. `<time>`: the virtual clock, UTC, whole seconds. Never a reason to
//!     reject (offline delivery is legitimate; the spec only RECOMMENDS a
//!     plausibility check or showing it); it is *reported* by a
//!     `Warning::Suspicious` naming the signed time when it differs from our
//!     clock by more than `time_window` seconds (default 300), in either
//!     direction. Core has no per-message metadata event, so an in-window
//!     time is not surfaced. Separately, Sequoia refuses an OpenPGP signature
//!     made in the receiver's future beyond its clock-skew tolerance (bad
//!     signature). (tests: ox_decision_time_reported_outside_window)
//! 21. `<rpad>`: length uniform in 1..=256 characters, characters uniform
//!     over the radix-64 alphabet, all from the `Env` (same seed, same
//!     padding). (tests: ox_decision_rpad_from_env_reproducible)
//! 22. Signed with our key and encrypted to the peer and to ourselves
//!     (§3.1 SHOULD); the OpenPGP message is base64 (RFC 4648 §4, padded, no
//!     line breaks); the receiver ignores whitespace in it. (tests: ox_wire_form_and_round_trip, ox_signcrypt_interop_with_gpg)
//! 23. Messages only (XEP-0374 is the IM profile): sending presence or iq is
//!     `CannotProtect`; received, they (and messages without `<openpgp>`) are
//!     `DeliveredUnprotected`. (tests: ox_refuses_presence_and_iq_and_passes_them_inbound_unprotected)
//! 24. A payload child in `jabber:server` (XEP-0374 §2.2: recipients MUST
//!     accept a `<body>` in either namespace) is delivered in `jabber:client`,
//!     the namespace of the stanza it lands in. (tests: ox_decision_jabber_server_body_accepted_as_client)
//!
//! ## Sizes (what the wire figures include)
//!
//! Sequoia 2 adds a 32-byte random salt notation (`salt@notations.sequoia-pgp.org`,
//! 70 octets of subpacket) to every v4 signature and hashes with SHA-512, so
//! a JEP-0027 signed presence is about 72 octets (~96 armor characters)
//! larger than a 2005 GnuPG signature, and each OX message carries the same
//! extra inside its encryption. A JEP-0027 body under RSA-2048 costs a
//! 271-octet PKESK plus a 21-octet SEIPDv1 framing (AES-256 prefix) and a
//! 22-octet MDC around the literal packet (8 + body); radix-64 adds a third
//! and a line break per 64 characters plus the 6-character CRC line.
#![forbid(unsafe_code)]

pub mod armor;
mod common;
pub mod jep0027;
pub mod ox;
pub mod pgp;

pub use common::{identity_from_cert, import_public, lookup_by_key_id};
pub use jep0027::Jep0027;
pub use ox::Ox;
pub use pgp::KeyAlgo;
pub use sequoia_openpgp as openpgp;

use e2elab_core::{ApiMisuse, Options, Result};

/// The `key` profile option: `rsa1024`, `rsa2048`, `rsa3072`, `rsa4096` or `cv25519`.
fn key_option(o: &Options, default: KeyAlgo) -> Result<KeyAlgo> {
    o.check_known(&["key"])?;
    match o.get("key") {
        None => Ok(default),
        Some(v) => KeyAlgo::parse(v).ok_or_else(|| {
            ApiMisuse::BadOption {
                key: "key".into(),
                reason: format!("{v}: expected rsa1024, rsa2048, rsa3072, rsa4096 or cv25519"),
            }
            .into()
        }),
    }
}
