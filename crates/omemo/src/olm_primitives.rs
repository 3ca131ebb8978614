//! The primitives vodozemac's Olm runs, for the harness's floors: each
//! call is the one vodozemac makes (the same crates at the same versions;
//! X25519 through vodozemac's own key types), so a floor charges the
//! operations of [`e2elab_core::Lib::RustCrypto`] in the code that ran them.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use aes::Aes256;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use vodozemac::{Curve25519PublicKey, Curve25519SecretKey};

/// A fresh X25519 key pair (vodozemac's `Curve25519SecretKey::new`).
pub fn x25519_keygen() -> (Curve25519SecretKey, Curve25519PublicKey) {
    let s = Curve25519SecretKey::new();
    let p = Curve25519PublicKey::from(&s);
    (s, p)
}

/// One agreement; `false` if the result was not contributory.
pub fn x25519_dh(ours: &Curve25519SecretKey, theirs: &Curve25519PublicKey) -> bool {
    ours.diffie_hellman(theirs).is_some()
}

/// AES-256-CBC with PKCS#7 padding (vodozemac's `cbc::Encryptor<Aes256>`).
pub fn aes256_cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(data)
}

/// The inverse of [`aes256_cbc_encrypt`]; `None` on bad padding.
pub fn aes256_cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], data: &[u8]) -> Option<Vec<u8>> {
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(data)
        .ok()
}

/// HMAC-SHA-256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return [0u8; 32],
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

/// HKDF-SHA-256 (extract with `salt`, expand to `out`); `false` if `out` is
/// longer than HKDF allows.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> bool {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip_and_agree() {
        let (a, ap) = x25519_keygen();
        let (b, bp) = x25519_keygen();
        assert!(x25519_dh(&a, &bp) && x25519_dh(&b, &ap));
        let km = [5u8; 48];
        let ct = aes256_cbc_encrypt(&[7; 32], &[9; 16], &km);
        assert_eq!(ct.len(), 64, "48 bytes and a full block of padding");
        assert_eq!(
            aes256_cbc_decrypt(&[7; 32], &[9; 16], &ct).as_deref(),
            Some(&km[..])
        );
        assert_ne!(
            aes256_cbc_decrypt(&[8; 32], &[9; 16], &ct).as_deref(),
            Some(&km[..])
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?")[..4],
            [0x5b, 0xdc, 0xc1, 0x46]
        );
        // RFC 5869 test case 1, first bytes of OKM.
        let mut okm = [0u8; 42];
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        assert!(hkdf_sha256(&salt, &ikm, &info, &mut okm));
        assert_eq!(okm[..4], [0x3c, 0xb2, 0x5f, 0x25]);
    }
}
