//! The OpenPGP operations both profiles use, on Sequoia, with typed errors
//! and every primitive recorded in the operation log ([`e2elab_core::ops`]).
//!
//! Sequoia's OpenSSL backend runs the public-key operations; we record each
//! at the call that causes it (a signature made, a PKESK made or tried, a
//! signature checked). RSA private-key operations are recorded without CRT
//! (`crt: false`): the backend builds the key from n, e and d for every
//! operation. The symmetric work inside Sequoia's packet machinery is
//! derived from its code path: SEIPDv1 encrypts the literal data with the
//! session key's cipher in OpenPGP CFB mode and hashes it with SHA-1 for the
//! MDC, charged at the plaintext's length (the packet framing adds tens of
//! bytes); a signature hashes the signed data with its hash algorithm
//! (recorded as the signature's bytes). Signatures are made with SHA-512,
//! set explicitly (Sequoia's default).

use e2elab_core::ops::{count, derive, CipherAlg, HashAlg, Lib, Op};
use e2elab_core::{DecodeError, Error, IdentityError, PeerMisbehaved, Timestamp};
use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::packet::key::{KeyParts, KeyRole};
use openpgp::packet::prelude::*;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{
    Features, HashAlgorithm, KeyFlags, PublicKeyAlgorithm, SignatureType, SymmetricAlgorithm,
};
use openpgp::{Cert, KeyHandle, Profile};
use sequoia_openpgp as openpgp;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The key type of a generated identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgo {
    /// RSA with this many modulus bits (1024, 2048, 3072 or 4096): an RSA
    /// primary key for certification and signing and an RSA encryption subkey,
    /// GnuPG's default layout.
    Rsa(u32),
    /// EdDSA (Ed25519) primary key and an ECDH (Curve25519) encryption subkey.
    Cv25519,
}

impl KeyAlgo {
    /// Parse `rsa1024`, `rsa2048`, `rsa3072`, `rsa4096` or `cv25519`.
    pub fn parse(s: &str) -> Option<KeyAlgo> {
        match s {
            "rsa1024" => Some(KeyAlgo::Rsa(1024)),
            "rsa2048" => Some(KeyAlgo::Rsa(2048)),
            "rsa3072" => Some(KeyAlgo::Rsa(3072)),
            "rsa4096" => Some(KeyAlgo::Rsa(4096)),
            "cv25519" => Some(KeyAlgo::Cv25519),
            _ => None,
        }
    }

    /// The option value naming this key type.
    pub fn name(self) -> String {
        match self {
            KeyAlgo::Rsa(b) => format!("rsa{b}"),
            KeyAlgo::Cv25519 => "cv25519".into(),
        }
    }
}

/// A virtual-clock instant as a `SystemTime` (OpenPGP keeps whole seconds).
pub fn system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.secs())
}

fn be(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// Sequoia's standard policy judged at the virtual clock's instant `t`
/// (`StandardPolicy::new()` would read the real clock: algorithm cut-offs
/// such as RSA-1024's in 2014 then apply to a 2005 run).
fn policy(t: SystemTime) -> StandardPolicy<'static> {
    StandardPolicy::at(t)
}

/// The User ID both profiles put on their keys: `xmpp:` and the bare JID
/// (XEP-0373 §3.2, §8.5; JEP-0027 prescribes none).
pub fn user_id(bare_jid: &str) -> String {
    format!("xmpp:{bare_jid}")
}

/// Generate a certificate (with secret keys) for `bare_jid`, created at `ctime`.
///
/// Certificates are v4 (RFC 4880 profile) and advertise SEIPDv1 only, so
/// GnuPG 2.2 can read what we encrypt to them. Key material comes from
/// OpenSSL's RNG (Sequoia cannot take ours).
pub fn generate(algo: KeyAlgo, bare_jid: &str, ctime: Timestamp) -> Result<Cert, Error> {
    let t = system_time(ctime);
    let uid = user_id(bare_jid);
    let suite = match algo {
        KeyAlgo::Cv25519 => CipherSuite::Cv25519,
        KeyAlgo::Rsa(2048) => CipherSuite::RSA2k,
        KeyAlgo::Rsa(3072) => CipherSuite::RSA3k,
        KeyAlgo::Rsa(4096) => CipherSuite::RSA4k,
        KeyAlgo::Rsa(1024) => return generate_rsa_by_hand(1024, &uid, t),
        KeyAlgo::Rsa(b) => return Err(Error::Unsupported(format!("RSA-{b}"))),
    };
    let (cert, _rev) = CertBuilder::new()
        .set_cipher_suite(suite)
        .set_profile(Profile::RFC4880)
        .map_err(be)?
        .set_features(Features::empty().set_seipdv1())
        .map_err(be)?
        .set_creation_time(t)
        .set_validity_period(None)
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .add_userid(uid)
        .add_subkey(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
            None,
            None,
        )
        .generate()
        .map_err(be)?;
    Ok(cert)
}

/// RSA-1024 is below every Sequoia cipher suite: assemble the same layout
/// (primary: certify+sign; subkey: encrypt) from keys and binding signatures.
fn generate_rsa_by_hand(bits: usize, uid: &str, t: SystemTime) -> Result<Cert, Error> {
    use openpgp::packet::key::{Key4, PrimaryRole, SecretParts, SubordinateRole};
    use openpgp::types::HashAlgorithm;
    let mut primary: Key<SecretParts, PrimaryRole> = Key4::generate_rsa(bits).map_err(be)?.into();
    primary.set_creation_time(t).map_err(be)?;
    let mut sub: Key<SecretParts, SubordinateRole> = Key4::generate_rsa(bits).map_err(be)?.into();
    sub.set_creation_time(t).map_err(be)?;
    let mut signer = primary.clone().into_keypair().map_err(be)?;
    let cert = Cert::try_from(vec![Packet::from(primary)]).map_err(be)?;
    let template = |typ| -> Result<SignatureBuilder, Error> {
        SignatureBuilder::new(typ)
            .set_signature_creation_time(t)
            .map_err(be)?
            .set_hash_algo(HashAlgorithm::SHA256)
            .set_features(Features::empty().set_seipdv1())
            .map_err(be)?
            .set_preferred_symmetric_algorithms(vec![
                SymmetricAlgorithm::AES256,
                SymmetricAlgorithm::AES128,
            ])
            .map_err(be)?
            .set_preferred_hash_algorithms(vec![HashAlgorithm::SHA256, HashAlgorithm::SHA512])
            .map_err(be)
    };
    let uid = UserID::from(uid);
    let uid_sig = uid
        .bind(
            &mut signer,
            &cert,
            template(SignatureType::PositiveCertification)?
                .set_primary_userid(true)
                .map_err(be)?
                .set_key_flags(KeyFlags::empty().set_certification().set_signing())
                .map_err(be)?,
        )
        .map_err(be)?;
    let sub_sig = sub
        .bind(
            &mut signer,
            &cert,
            template(SignatureType::SubkeyBinding)?
                .set_key_flags(
                    KeyFlags::empty()
                        .set_transport_encryption()
                        .set_storage_encryption(),
                )
                .map_err(be)?,
        )
        .map_err(be)?;
    let (cert, _) = cert
        .insert_packets(vec![
            Packet::from(uid),
            Packet::from(uid_sig),
            Packet::from(sub),
            Packet::from(sub_sig),
        ])
        .map_err(be)?;
    Ok(cert)
}

/// The transferable public key, binary.
pub fn public_bytes(cert: &Cert) -> Result<Vec<u8>, Error> {
    cert.to_vec().map_err(be)
}

/// The transferable secret key, binary, in a zeroizing buffer.
pub fn secret_bytes(cert: &Cert) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut v = Zeroizing::new(Vec::new());
    cert.as_tsk().serialize(&mut *v).map_err(be)?;
    Ok(v)
}

/// Parse a certificate, binary or ASCII-armored ("import").
pub fn parse_cert(data: &[u8]) -> Result<Cert, Error> {
    Cert::from_bytes(data)
        .map_err(|e| IdentityError::Malformed(format!("OpenPGP certificate: {e}")).into())
}

/// Parse our own certificate and require its secret keys.
pub fn parse_tsk(data: &[u8]) -> Result<Cert, Error> {
    let c = parse_cert(data)?;
    if !c.is_tsk() {
        return Err(IdentityError::Malformed("no secret key material".into()).into());
    }
    Ok(c)
}

/// Whether `cert` carries the User ID `xmpp:<bare_jid>` (ASCII case-insensitive).
pub fn has_xmpp_uid(cert: &Cert, bare_jid: &str) -> bool {
    let want = user_id(bare_jid).to_ascii_lowercase();
    cert.userids().any(|u| {
        std::str::from_utf8(u.userid().value())
            .map(|s| s.to_ascii_lowercase() == want)
            .unwrap_or(false)
    })
}

/// The certificate's first valid signing key as a signer, at `t`.
fn signing_keypair(own: &Cert, t: SystemTime) -> Result<KeyPair, Error> {
    let p = policy(t);
    let ka = own
        .keys()
        .with_policy(&p, t)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .next()
        .ok_or_else(|| IdentityError::Malformed("no usable signing key".into()))?;
    ka.key().clone().into_keypair().map_err(be)
}

/// A detached signature over `data`, of the given type, made at `t`.
pub fn sign_detached(
    own: &Cert,
    data: &[u8],
    typ: SignatureType,
    t: Timestamp,
) -> Result<Vec<u8>, Error> {
    let st = system_time(t);
    let keypair = signing_keypair(own, st)?;
    let sign_op = sign_op(keypair.public());
    let mut sink = Vec::new();
    {
        let message = Message::new(&mut sink);
        let mut signer = Signer::with_template(message, keypair, SignatureBuilder::new(typ))
            .map_err(be)?
            .hash_algo(SIG_HASH)
            .map_err(be)?
            .detached()
            .creation_time(st)
            .build()
            .map_err(be)?;
        signer.write_all(data).map_err(be)?;
        signer.finalize().map_err(be)?;
    }
    count(sign_op, data.len());
    Ok(sink)
}

/// Encrypt `plain` to every valid encryption key of `recipients` (and sign it
/// with `signer`'s key first when given), as a binary OpenPGP message.
pub fn encrypt(
    plain: &[u8],
    recipients: &[&Cert],
    signer: Option<&Cert>,
    t: Timestamp,
) -> Result<Vec<u8>, Error> {
    let st = system_time(t);
    let p = policy(st);
    let mut keys = Vec::new();
    for c in recipients {
        let before = keys.len();
        keys.extend(
            c.keys()
                .with_policy(&p, st)
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .for_storage_encryption(),
        );
        if keys.len() == before {
            return Err(IdentityError::UnknownKey(format!(
                "{}: no valid encryption key",
                c.fingerprint()
            ))
            .into());
        }
    }
    let pk_ops: Vec<Op> = keys.iter().map(|k| encrypt_op(k.key())).collect();
    let keypair = match signer {
        Some(c) => Some(signing_keypair(c, st)?),
        None => None,
    };
    let sign_op = keypair.as_ref().map(|k| sign_op(k.public()));
    let mut sink = Vec::new();
    {
        let message = Message::new(&mut sink);
        let message = Encryptor::for_recipients(message, keys)
            .build()
            .map_err(be)?;
        let message = match keypair {
            Some(kp) => Signer::new(message, kp)
                .map_err(be)?
                .hash_algo(SIG_HASH)
                .map_err(be)?
                .creation_time(st)
                .build()
                .map_err(be)?,
            None => message,
        };
        let mut w = LiteralWriter::new(message)
            .date(st)
            .map_err(be)?
            .build()
            .map_err(be)?;
        w.write_all(plain).map_err(be)?;
        w.finalize().map_err(be)?;
    }
    for op in pk_ops {
        count(op, 0);
    }
    if let Some(op) = sign_op {
        count(op, plain.len());
    }
    derive_seipd(SymmetricAlgorithm::default(), false, plain.len());
    Ok(sink)
}

/// The hash of every signature we make (Sequoia's default, set explicitly
/// so the operation log can name it).
const SIG_HASH: HashAlgorithm = HashAlgorithm::SHA512;

fn hash_alg(h: HashAlgorithm) -> HashAlg {
    match h {
        HashAlgorithm::SHA1 => HashAlg::Sha1,
        HashAlgorithm::SHA512 => HashAlg::Sha512,
        _ => HashAlg::Sha256,
    }
}

/// Whether `k` is an RSA key, and its modulus bits.
fn rsa_info<P: KeyParts, R: KeyRole>(k: &Key<P, R>) -> Option<u16> {
    #[allow(deprecated)]
    let rsa = matches!(
        k.pk_algo(),
        PublicKeyAlgorithm::RSAEncryptSign
            | PublicKeyAlgorithm::RSASign
            | PublicKeyAlgorithm::RSAEncrypt
    );
    rsa.then(|| k.mpis().bits().unwrap_or(0) as u16)
}

/// What making a signature with `k` records (Sequoia: no CRT for RSA).
fn sign_op<P: KeyParts, R: KeyRole>(k: &Key<P, R>) -> Op {
    match rsa_info(k) {
        Some(bits) => Op::RsaSign {
            bits,
            hash: hash_alg(SIG_HASH),
            crt: false,
        },
        None => Op::Ed25519Sign,
    }
}

/// What checking a signature by `k` records.
fn verify_op<P: KeyParts, R: KeyRole>(k: &Key<P, R>, h: HashAlgorithm) -> Op {
    match rsa_info(k) {
        Some(bits) => Op::RsaVerify {
            bits,
            hash: hash_alg(h),
        },
        None => Op::Ed25519Verify,
    }
}

/// What a PKESK for `k` records.
fn encrypt_op<P: KeyParts, R: KeyRole>(k: &Key<P, R>) -> Op {
    match rsa_info(k) {
        Some(bits) => Op::RsaEncrypt { bits },
        None => Op::X25519Encrypt,
    }
}

/// What decrypting a PKESK with `k` records (Sequoia: no CRT for RSA).
fn decrypt_op<P: KeyParts, R: KeyRole>(k: &Key<P, R>) -> Op {
    match rsa_info(k) {
        Some(bits) => Op::RsaDecrypt { bits, crt: false },
        None => Op::X25519Decrypt,
    }
}

/// SEIPDv1 over `len` bytes of literal data: the cipher in CFB mode and the
/// SHA-1 MDC (derived, see the module docs).
fn derive_seipd(a: SymmetricAlgorithm, decrypt: bool, len: usize) {
    let alg = if a == SymmetricAlgorithm::AES128 {
        CipherAlg::Aes128Cfb
    } else {
        CipherAlg::Aes256Cfb
    };
    derive(
        Op::Cipher {
            alg,
            decrypt,
            lib: Lib::Openssl,
        },
        1,
        len as u64,
    );
    derive(
        Op::Digest {
            hash: HashAlg::Sha1,
            lib: Lib::Openssl,
        },
        1,
        len as u64,
    );
}

/// Why a verification or decryption failed, kept by the helper so the
/// caller can turn it into a typed error after Sequoia gives up.
#[derive(Debug, Clone)]
enum Failure {
    WrongRecipient(Vec<String>),
    UnknownKey(String),
    BadSignature,
    Unsigned,
}

/// What a signature must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigRule {
    /// No signature is expected; any present is ignored (JEP-0027 bodies).
    Ignore,
    /// At least one good signature by the peer's certificate is required.
    RequirePeer,
}

struct Helper<'a> {
    own: &'a Cert,
    peer: &'a Cert,
    rule: SigRule,
    failure: &'a mut Option<Failure>,
    /// The session key's algorithm, once a PKESK decrypted.
    sym: &'a mut Option<SymmetricAlgorithm>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // The only certificate we know is the peer's.
        Ok(vec![self.peer.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        if self.rule == SigRule::Ignore {
            return Ok(());
        }
        let mut good = false;
        let mut failure = None;
        for layer in structure.into_iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                for r in results {
                    match r {
                        Ok(g) => {
                            count(verify_op(g.ka.key(), g.sig.hash_algo()), 0);
                            good = true;
                        }
                        Err(VerificationError::MissingKey { sig }) => {
                            let issuer = sig
                                .get_issuers()
                                .first()
                                .map(|h| h.to_hex())
                                .unwrap_or_else(|| "(no issuer)".into());
                            failure.get_or_insert(Failure::UnknownKey(issuer));
                        }
                        Err(VerificationError::BadSignature { sig, ka, .. }) => {
                            count(verify_op(ka.key(), sig.hash_algo()), 0);
                            failure = Some(Failure::BadSignature);
                        }
                        Err(_) => {
                            failure.get_or_insert(Failure::BadSignature);
                        }
                    }
                }
            }
        }
        if good {
            Ok(())
        } else {
            *self.failure = Some(failure.unwrap_or(Failure::Unsigned));
            Err(openpgp::Error::BadSignature("no good signature".into()).into())
        }
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &openpgp::crypto::SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        // Any of our own secret keys that a PKESK names: the policy judges the
        // peer's choices, not which of our keys the peer encrypted to.
        let mine: Vec<_> = self
            .own
            .keys()
            .secret()
            .map(|ka| ka.key().clone())
            .collect();
        let mut seen = Vec::new();
        for pkesk in pkesks {
            let rcpt = pkesk.recipient();
            seen.push(
                rcpt.as_ref()
                    .map(|h| h.to_hex())
                    .unwrap_or_else(|| "wildcard".into()),
            );
            for key in &mine {
                let matches = match &rcpt {
                    None => true,
                    Some(h) => h.aliases(key.key_handle()),
                };
                if !matches {
                    continue;
                }
                let Ok(mut kp) = key.clone().into_keypair() else {
                    continue;
                };
                count(decrypt_op(key), 0);
                if let Some((algo, sk)) = pkesk.decrypt(&mut kp, sym_algo) {
                    if decrypt(algo, &sk) {
                        *self.sym = algo;
                        return Ok(None);
                    }
                }
                if rcpt.is_none() {
                    // A hidden recipient (gpg --throw-keyids): try our next
                    // key, as gpg does.
                    continue;
                }
                // Our key, but the session key does not decrypt: a modified message.
                *self.failure = None;
                return Err(openpgp::Error::MissingSessionKey("no session key".into()).into());
            }
        }
        *self.failure = Some(Failure::WrongRecipient(seen));
        Err(openpgp::Error::MissingSessionKey("not encrypted to us".into()).into())
    }
}

fn map_failure(f: Option<Failure>) -> Error {
    match f {
        Some(Failure::WrongRecipient(ids)) => PeerMisbehaved::WrongAddress(format!(
            "encrypted to key(s) {}, not to ours",
            ids.join(", ")
        ))
        .into(),
        Some(Failure::UnknownKey(id)) => IdentityError::UnknownKey(id).into(),
        Some(Failure::BadSignature) | Some(Failure::Unsigned) => {
            PeerMisbehaved::BadSignature.into()
        }
        None => Error::DecryptFailed,
    }
}

/// Walk the top-level OpenPGP packet framing (RFC 4880 §4.2) of `data`
/// without parsing bodies: every declared length must fit, and an SEIPDv1
/// body must be long enough to hold a prefix, a literal packet and an MDC.
///
/// Sequoia 2.4.2 panics (an `unwrap` on `UnexpectedEof` in
/// `PacketParser::decrypt_`) when an SEIPDv1 body is shorter than the
/// cipher's block size plus two; a truncated armor reaches exactly that. This
/// check turns such input into a typed [`DecodeError::Truncated`] first.
pub fn check_framing(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let trunc = || DecodeError::Truncated("OpenPGP packet".into());
    let mut tags = Vec::new();
    let mut i = 0usize;
    let byte = |i: usize| data.get(i).copied().ok_or_else(trunc);
    while i < data.len() {
        let ctb = byte(i)?;
        i += 1;
        if ctb & 0x80 == 0 {
            return Err(DecodeError::invalid("OpenPGP packet", "not a packet tag"));
        }
        let mut body_len = 0usize;
        let tag;
        if ctb & 0x40 != 0 {
            tag = ctb & 0x3f;
            loop {
                let first = byte(i)?;
                i += 1;
                let (len, partial) = match first {
                    0..=191 => (usize::from(first), false),
                    192..=223 => {
                        let second = byte(i)?;
                        i += 1;
                        (
                            ((usize::from(first) - 192) << 8) + usize::from(second) + 192,
                            false,
                        )
                    }
                    255 => {
                        let b = data.get(i..i + 4).ok_or_else(trunc)?;
                        i += 4;
                        (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, false)
                    }
                    _ => (1usize << (first & 0x1f), true),
                };
                let end = i.checked_add(len).ok_or_else(trunc)?;
                if end > data.len() {
                    return Err(trunc());
                }
                i = end;
                body_len += len;
                if !partial {
                    break;
                }
            }
        } else {
            tag = (ctb >> 2) & 0x0f;
            let len = match ctb & 0x03 {
                0 => {
                    let b = byte(i)?;
                    i += 1;
                    usize::from(b)
                }
                1 => {
                    let b = data.get(i..i + 2).ok_or_else(trunc)?;
                    i += 2;
                    usize::from(u16::from_be_bytes([b[0], b[1]]))
                }
                2 => {
                    let b = data.get(i..i + 4).ok_or_else(trunc)?;
                    i += 4;
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                }
                _ => data.len() - i,
            };
            let end = i.checked_add(len).ok_or_else(trunc)?;
            if end > data.len() {
                return Err(trunc());
            }
            i = end;
            body_len = len;
        }
        // SEIPD (tag 18) v1: version, a 16-byte-block prefix + 2, a minimal
        // literal packet (8) and the MDC (22): at least 1 + 40 octets for
        // any cipher with 8- or 16-byte blocks.
        if tag == 18 && body_len < 41 {
            return Err(trunc());
        }
        tags.push(tag);
    }
    Ok(tags)
}

/// Check that `data` is one encrypted OpenPGP message with sound framing,
/// before handing it to the decryptor, so that other input is a decode error.
fn looks_like_message(data: &[u8]) -> Result<(), Error> {
    let tags = check_framing(data)?;
    match tags.first() {
        // PKESK, SKESK, marker
        Some(1 | 3 | 10) => Ok(()),
        Some(_) => Err(DecodeError::invalid("OpenPGP message", "not an encrypted message").into()),
        None => Err(DecodeError::Truncated("OpenPGP message".into()).into()),
    }
}

/// Run a Sequoia call, turning a panic inside it into a backend error
/// (defence in depth behind [`check_framing`]; the session stays unchanged).
fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::Backend(
            "OpenPGP backend panicked on this input".into(),
        ))
    })
}

/// Decrypt a binary OpenPGP message with `own`'s secret keys; verify
/// signatures against `peer` as `rule` says. Returns the literal data.
///
/// `legacy` also accepts the symmetric ciphers of the JEP-0027 era that
/// Sequoia's standard policy refuses today (CAST5, gpg's default until 2.1,
/// and 3DES): a 2005-era message reads, at the cost of trusting ciphers with
/// 64-bit blocks (birthday-bound attacks on long messages, no modern
/// security margin).
pub fn decrypt(
    data: &[u8],
    own: &Cert,
    peer: &Cert,
    rule: SigRule,
    t: Timestamp,
    legacy: bool,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    looks_like_message(data)?;
    guarded(|| decrypt_inner(data, own, peer, rule, t, legacy))
}

fn decrypt_inner(
    data: &[u8],
    own: &Cert,
    peer: &Cert,
    rule: SigRule,
    t: Timestamp,
    legacy: bool,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let st = system_time(t);
    let mut p = policy(st);
    if legacy {
        // Deprecated in Sequoia for new messages; accepted here for reading
        // old ones only, under the documented option.
        #[allow(deprecated)]
        for a in [SymmetricAlgorithm::CAST5, SymmetricAlgorithm::TripleDES] {
            p.accept_symmetric_algo(a);
        }
    }
    let mut failure = None;
    let mut sym = None;
    let mut out = Zeroizing::new(Vec::new());
    let r = (|| -> openpgp::Result<()> {
        let helper = Helper {
            own,
            peer,
            rule,
            failure: &mut failure,
            sym: &mut sym,
        };
        let mut d = DecryptorBuilder::from_bytes(data)?.with_policy(&p, Some(st), helper)?;
        d.read_to_end(&mut out)?;
        if !d.message_processed() {
            return Err(openpgp::Error::MalformedMessage("not fully processed".into()).into());
        }
        Ok(())
    })();
    if let Some(a) = sym {
        derive_seipd(a, true, out.len());
    }
    match r {
        Ok(()) => Ok(out),
        Err(e) => {
            // An algorithm the policy refuses is said as such, not as a
            // generic decryption failure.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            if chain.iter().any(|c| c.starts_with("Policy rejected")) {
                let why = chain.last().cloned().unwrap_or_default();
                return Err(Error::Unsupported(format!(
                    "algorithm refused by policy: {why}"
                )));
            }
            Err(map_failure(failure))
        }
    }
}

/// Verify a detached signature by `peer` over `data` at `t`.
pub fn verify_detached(sig: &[u8], data: &[u8], peer: &Cert, t: Timestamp) -> Result<(), Error> {
    if check_framing(sig)?.first() != Some(&2) {
        return Err(DecodeError::invalid("signature", "not an OpenPGP signature").into());
    }
    guarded(|| verify_inner(sig, data, peer, t))
}

fn verify_inner(sig: &[u8], data: &[u8], peer: &Cert, t: Timestamp) -> Result<(), Error> {
    let st = system_time(t);
    let p = policy(st);
    let mut failure = None;
    let mut sym = None;
    let r = (|| -> openpgp::Result<()> {
        let helper = Helper {
            own: peer,
            peer,
            rule: SigRule::RequirePeer,
            failure: &mut failure,
            sym: &mut sym,
        };
        let mut v = DetachedVerifierBuilder::from_bytes(sig)?.with_policy(&p, Some(st), helper)?;
        v.verify_bytes(data)?;
        Ok(())
    })();
    match r {
        Ok(()) => Ok(()),
        Err(_) => Err(map_failure(failure.or(Some(Failure::BadSignature)))),
    }
}

/// The hex fingerprint of a certificate's primary key.
pub fn fingerprint(cert: &Cert) -> String {
    cert.fingerprint().to_hex()
}
