//! XEP-0384 §4.4 message encryption, on OpenSSL.

use e2elab_core::ops::{self, CipherAlg, HashAlg, Lib, Op};
use e2elab_core::{DecodeError, Error, Result};
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{Id, PKey};
use openssl::pkey_ctx::PkeyCtx;
use openssl::sign::Signer;
use openssl::symm::{decrypt, encrypt, Cipher};
use zeroize::Zeroizing;

/// The HKDF info of the payload keys.
pub(crate) const INFO_PAYLOAD: &[u8] = b"OMEMO Payload";
/// Bytes of the truncated payload tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes the ratchet carries for a message: the key and the tag.
pub(crate) const KEY_MATERIAL: usize = 32 + TAG_LEN;

fn backend(what: &str) -> impl Fn(openssl::error::ErrorStack) -> Error + '_ {
    move |e| Error::Backend(format!("{what}: {e}"))
}

/// HKDF-SHA-256 with a 256-bit zero salt, 80 bytes: (encryption key,
/// authentication key, IV).
fn keys(key: &[u8; 32]) -> Result<Zeroizing<[u8; 80]>> {
    let mut out = Zeroizing::new([0u8; 80]);
    let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(backend("HKDF"))?;
    ctx.derive_init().map_err(backend("HKDF"))?;
    ctx.set_hkdf_md(Md::sha256()).map_err(backend("HKDF"))?;
    ctx.set_hkdf_salt(&[0u8; 32]).map_err(backend("HKDF"))?;
    ctx.set_hkdf_key(key).map_err(backend("HKDF"))?;
    ctx.add_hkdf_info(INFO_PAYLOAD).map_err(backend("HKDF"))?;
    ctx.derive(Some(&mut out[..])).map_err(backend("HKDF"))?;
    ops::count(
        Op::Hkdf {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        },
        80,
    );
    Ok(out)
}

fn tag(auth_key: &[u8], ct: &[u8]) -> Result<[u8; TAG_LEN]> {
    let k = PKey::hmac(auth_key).map_err(backend("HMAC"))?;
    let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(backend("HMAC"))?;
    s.update(ct).map_err(backend("HMAC"))?;
    let full = s.sign_to_vec().map_err(backend("HMAC"))?;
    ops::count(
        Op::Hmac {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        },
        ct.len(),
    );
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&full[..TAG_LEN]);
    Ok(t)
}

/// Encrypt `plain` under `key`: (ciphertext, the 48 bytes of key material
/// the ratchet carries).
pub(crate) fn seal(key: &[u8; 32], plain: &[u8]) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let k = keys(key)?;
    let ct = encrypt(Cipher::aes_256_cbc(), &k[..32], Some(&k[64..80]), plain)
        .map_err(backend("AES-256-CBC"))?;
    ops::count(
        Op::Cipher {
            alg: CipherAlg::Aes256Cbc,
            decrypt: false,
            lib: Lib::Openssl,
        },
        plain.len(),
    );
    let t = tag(&k[32..64], &ct)?;
    let mut km = Zeroizing::new(Vec::with_capacity(KEY_MATERIAL));
    km.extend_from_slice(key);
    km.extend_from_slice(&t);
    Ok((ct, km))
}

/// Check and decrypt `ct` with the 48 bytes of key material.
pub(crate) fn open(km: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if km.len() != KEY_MATERIAL {
        return Err(DecodeError::invalid(
            "key material",
            format!("{} bytes, not {KEY_MATERIAL}", km.len()),
        )
        .into());
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&km[..32]);
    let k = keys(&key)?;
    let t = tag(&k[32..64], ct)?;
    if !e2elab_core::ct_eq(&t, &km[32..]) {
        return Err(Error::DecryptFailed);
    }
    let plain = decrypt(Cipher::aes_256_cbc(), &k[..32], Some(&k[64..80]), ct)
        .map_err(|_| Error::DecryptFailed)?;
    ops::count(
        Op::Cipher {
            alg: CipherAlg::Aes256Cbc,
            decrypt: true,
            lib: Lib::Openssl,
        },
        ct.len(),
    );
    Ok(Zeroizing::new(plain))
}
