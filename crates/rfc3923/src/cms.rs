//! CMS: a detached SignedData we build ourselves (so the digest is the one
//! RFC 3923 §6.10 mandates and the signing time comes from the virtual
//! clock), verified by OpenSSL's `CMS_verify`; EnvelopedData through
//! OpenSSL's `CMS_encrypt` / `CMS_decrypt` (RSA PKCS#1 v1.5 key transport).
//!
//! Operation log: what we run ourselves (the content digest and the
//! signature of a SignedData) is counted at the call; what runs inside
//! OpenSSL's CMS calls is derived from its code path: `CMS_encrypt` makes
//! one RSA encryption per recipient and encrypts the content with the
//! content cipher; `CMS_decrypt` one RSA decryption and the content
//! decryption; `CMS_verify` digests the content once and verifies one RSA
//! signature over the signed attributes (the signer's certificate is a
//! trusted self-signed one, whose own signature OpenSSL does not check).

use crate::cert;
use crate::der::{self, oids};
use e2elab_core::error::backend;
use e2elab_core::ops::{count, derive, CipherAlg, HashAlg, Lib, Op};
use e2elab_core::{DecodeError, Error, PeerMisbehaved, Result, Timestamp};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::X509;

/// The digest of a SignedData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-1 (RFC 3923 §6.10).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Digest {
    fn md(self) -> MessageDigest {
        match self {
            Digest::Sha1 => MessageDigest::sha1(),
            Digest::Sha256 => MessageDigest::sha256(),
        }
    }

    fn alg(self) -> HashAlg {
        match self {
            Digest::Sha1 => HashAlg::Sha1,
            Digest::Sha256 => HashAlg::Sha256,
        }
    }

    fn oid(self) -> &'static [u64] {
        match self {
            Digest::Sha1 => oids::SHA1,
            Digest::Sha256 => oids::SHA256,
        }
    }

    /// The RFC 3851 `micalg` parameter.
    pub fn micalg(self) -> &'static str {
        match self {
            Digest::Sha1 => "sha1",
            Digest::Sha256 => "sha-256",
        }
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) for a signingTime attribute; GeneralizedTime
/// outside 1950..2049 as RFC 5652 §11.3 requires.
fn signing_time(now: Timestamp) -> Vec<u8> {
    let s = now.to_rfc3339(); // YYYY-MM-DDTHH:MM:SSZ
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let year: u32 = digits.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    if (1950..2050).contains(&year) {
        der::tlv(0x17, format!("{}Z", &digits[2..]).as_bytes())
    } else {
        der::tlv(0x18, format!("{digits}Z").as_bytes())
    }
}

/// A detached CMS SignedData over `content`: one SignerInfo (issuer and
/// serial of `cert_der`), signed attributes contentType, signingTime (the
/// virtual clock) and messageDigest, RSA PKCS#1 v1.5 over their DER with
/// `digest`. The certificate goes in `certificates` when `attach_cert`.
pub fn sign_detached(
    content: &[u8],
    cert_der: &[u8],
    key: &PKey<Private>,
    digest: Digest,
    now: Timestamp,
    attach_cert: bool,
) -> Result<Vec<u8>> {
    let (issuer, serial) = cert::issuer_and_serial(cert_der)
        .ok_or_else(|| backend("own certificate has no issuer/serial"))?;
    let md = openssl::hash::hash(digest.md(), content).map_err(backend)?;
    count(
        Op::Digest {
            hash: digest.alg(),
            lib: Lib::Openssl,
        },
        content.len(),
    );
    let attr = |oid: &[u64], value: Vec<u8>| der::seq(&[&der::oid(oid), &der::set_of(vec![value])]);
    let attrs = der::set_of_content(vec![
        attr(oids::CONTENT_TYPE, der::oid(oids::DATA)),
        attr(oids::SIGNING_TIME, signing_time(now)),
        attr(oids::MESSAGE_DIGEST, der::octets(&md)),
    ]);
    // The signature covers the attributes encoded as a SET (RFC 5652 §5.4).
    let mut signer = Signer::new(digest.md(), key).map_err(backend)?;
    let signed_attrs = der::tlv(0x31, &attrs);
    let sig = signer.sign_oneshot_to_vec(&signed_attrs).map_err(backend)?;
    count(
        Op::RsaSign {
            bits: key.bits() as u16,
            hash: digest.alg(),
            crt: true,
        },
        signed_attrs.len(),
    );
    let digest_alg = der::seq(&[&der::oid(digest.oid())]);
    let signer_info = der::seq(&[
        &der::small_int(1),
        &der::seq(&[&issuer, &serial]),
        &digest_alg,
        &der::tlv(0xa0, &attrs),
        &der::seq(&[&der::oid(oids::RSA_ENCRYPTION), &der::null()]),
        &der::octets(&sig),
    ]);
    let certs = if attach_cert {
        der::tlv(0xa0, cert_der)
    } else {
        Vec::new()
    };
    let signed_data = der::seq(&[
        &der::small_int(1),
        &der::set_of(vec![digest_alg.clone()]),
        &der::seq(&[&der::oid(oids::DATA)]),
        &certs,
        &der::set_of(vec![signer_info]),
    ]);
    Ok(der::seq(&[
        &der::oid(oids::SIGNED_DATA),
        &der::tlv(0xa0, &signed_data),
    ]))
}

/// Parse DER CMS, refusing trailing bytes and BER indefinite lengths.
pub fn parse(der_in: &[u8], what: &str) -> Result<CmsContentInfo> {
    if der::exact(der_in).is_none() {
        return Err(DecodeError::invalid(what, "not exactly one DER object").into());
    }
    CmsContentInfo::from_der(der_in)
        .map_err(|_| DecodeError::invalid(what, "not a CMS ContentInfo").into())
}

/// The certificates attached to a SignedData (`certificates`, tag `[0]`), raw DER.
pub fn attached_certs(sig_der: &[u8]) -> Vec<Vec<u8>> {
    let f = || -> Option<Vec<Vec<u8>>> {
        let ci = der::children(der::exact(sig_der)?.content)?;
        let sd = der::exact(ci.get(1)?.content)?;
        let fields = der::children(sd.content)?;
        let certs = fields.iter().find(|f| f.tag == 0xa0)?;
        Some(
            der::children(certs.content)?
                .iter()
                .map(|c| c.raw.to_vec())
                .collect(),
        )
    };
    f().unwrap_or_default()
}

/// Verify a detached SignedData over `content` against exactly one trusted
/// certificate (certificates inside the message are not used to find the
/// signer), at the virtual time `now`.
pub fn verify_detached(
    sig_der: &[u8],
    content: &[u8],
    signer: &X509,
    digest: Digest,
    now: Timestamp,
) -> Result<()> {
    let mut cms = parse(sig_der, "signature")?;
    // Derived (see the module docs); the signed attributes are about 100
    // bytes, charged as none.
    derive(
        Op::Digest {
            hash: digest.alg(),
            lib: Lib::Openssl,
        },
        1,
        content.len() as u64,
    );
    derive(
        Op::RsaVerify {
            bits: signer.public_key().map(|k| k.bits()).unwrap_or(0) as u16,
            hash: digest.alg(),
        },
        1,
        0,
    );
    let bad = |_| Error::from(PeerMisbehaved::BadSignature);
    let mut certs = Stack::new().map_err(backend)?;
    certs.push(signer.clone()).map_err(backend)?;
    let mut store = X509StoreBuilder::new().map_err(backend)?;
    store.add_cert(signer.clone()).map_err(backend)?;
    let mut param = X509VerifyParam::new().map_err(backend)?;
    param.set_time(cert::verify_time(now) as _);
    store.set_param(&param).map_err(backend)?;
    let store = store.build();
    cms.verify(
        Some(&certs),
        Some(&store),
        Some(content),
        None,
        CMSOptions::BINARY | CMSOptions::NOINTERN,
    )
    .map_err(bad)
}

/// EnvelopedData of `content` for one recipient certificate.
pub fn encrypt(content: &[u8], recipient: &X509, cipher: Cipher) -> Result<Vec<u8>> {
    let mut certs = Stack::new().map_err(backend)?;
    certs.push(recipient.clone()).map_err(backend)?;
    let cms =
        CmsContentInfo::encrypt(&certs, content, cipher, CMSOptions::BINARY).map_err(backend)?;
    derive(
        Op::RsaEncrypt {
            bits: recipient.public_key().map(|k| k.bits()).unwrap_or(0) as u16,
        },
        1,
        0,
    );
    derive(
        Op::Cipher {
            alg: content_alg(cipher),
            decrypt: false,
            lib: Lib::Openssl,
        },
        1,
        content.len() as u64,
    );
    cms.to_der().map_err(backend)
}

/// Decrypt an EnvelopedData with our key and certificate.
pub fn decrypt(der_in: &[u8], key: &PKey<Private>, cert: &X509, cipher: Cipher) -> Result<Vec<u8>> {
    decrypt_parsed(&parse(der_in, "EnvelopedData")?, key, cert, cipher)
}

/// Decrypt a parsed EnvelopedData (one RSA private-key operation).
pub fn decrypt_parsed(
    cms: &CmsContentInfo,
    key: &PKey<Private>,
    cert: &X509,
    cipher: Cipher,
) -> Result<Vec<u8>> {
    derive(
        Op::RsaDecrypt {
            bits: key.bits() as u16,
            crt: true,
        },
        1,
        0,
    );
    let out = cms.decrypt(key, cert).map_err(|_| Error::DecryptFailed)?;
    derive(
        Op::Cipher {
            alg: content_alg(cipher),
            decrypt: true,
            lib: Lib::Openssl,
        },
        1,
        out.len() as u64,
    );
    Ok(out)
}

/// The operation-log name of a content cipher.
fn content_alg(c: Cipher) -> CipherAlg {
    if c.key_len() == 32 {
        CipherAlg::Aes256Cbc
    } else {
        CipherAlg::Aes128Cbc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2elab_core::Env;

    fn ident(jid: &str) -> (Vec<u8>, PKey<Private>, X509) {
        let mut env = Env::for_party(5, jid);
        let g = cert::generate(&mut env, jid).unwrap();
        let key = cert::load_key(&g.key_pkcs8).unwrap();
        let c = cert::load_cert(&g.cert_der).unwrap();
        (g.cert_der, key, c)
    }

    #[test]
    fn our_signed_data_verifies_with_openssl_and_is_deterministic() {
        let (der_a, key_a, cert_a) = ident("a@x");
        let (_, _, cert_b) = ident("b@y");
        let now = Timestamp::DEFAULT_START;
        for digest in [Digest::Sha1, Digest::Sha256] {
            for attach in [false, true] {
                let s1 = sign_detached(b"content", &der_a, &key_a, digest, now, attach).unwrap();
                let s2 = sign_detached(b"content", &der_a, &key_a, digest, now, attach).unwrap();
                assert_eq!(s1, s2, "PKCS#1 v1.5 and our attributes are deterministic");
                verify_detached(&s1, b"content", &cert_a, digest, now).unwrap();
                assert_eq!(attached_certs(&s1).len(), usize::from(attach));
                assert!(matches!(
                    verify_detached(&s1, b"contenT", &cert_a, digest, now),
                    Err(Error::PeerMisbehaved(PeerMisbehaved::BadSignature))
                ));
                assert!(verify_detached(&s1, b"content", &cert_b, digest, now).is_err());
            }
        }
        // Outside the certificate's validity on the virtual clock: before notBefore.
        let s = sign_detached(b"c", &der_a, &key_a, Digest::Sha1, now, false).unwrap();
        let early = Timestamp(now.0 - (cert::NOT_BEFORE_SLACK_SECS + 10) * 1_000_000);
        assert!(verify_detached(&s, b"c", &cert_a, Digest::Sha1, early).is_err());
        // Decades later the pinned certificate is still valid.
        let later = now.plus(std::time::Duration::from_secs(30 * 365 * 86_400));
        verify_detached(&s, b"c", &cert_a, Digest::Sha1, later).unwrap();
    }

    #[test]
    fn envelope_round_trip_and_wrong_recipient() {
        let (_, key_a, cert_a) = ident("a@x");
        let (_, key_b, cert_b) = ident("b@y");
        let e = encrypt(b"secret", &cert_b, Cipher::aes_128_cbc()).unwrap();
        assert_eq!(
            decrypt(&e, &key_b, &cert_b, Cipher::aes_128_cbc()).unwrap(),
            b"secret"
        );
        assert_eq!(
            decrypt(&e, &key_a, &cert_a, Cipher::aes_128_cbc()),
            Err(Error::DecryptFailed)
        );
        let mut trailing = e.clone();
        trailing.push(0);
        assert!(matches!(
            decrypt(&trailing, &key_b, &cert_b, Cipher::aes_128_cbc()),
            Err(Error::Decode(_))
        ));
        assert!(decrypt(&e[..e.len() / 2], &key_b, &cert_b, Cipher::aes_128_cbc()).is_err());
    }
}
