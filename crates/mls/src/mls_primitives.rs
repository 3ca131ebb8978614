//! The primitives openmls's RustCrypto provider runs, for the harness's
//! floors: each call goes through the provider itself (the same code a
//! session's recorded operation ran).

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{AeadType, HashType, SignatureScheme};

/// The provider.
pub fn provider() -> RustCrypto {
    RustCrypto::default()
}

/// AES-128-GCM seal of `data` (tag appended).
pub fn aes128gcm_encrypt(
    p: &RustCrypto,
    key: &[u8; 16],
    nonce: &[u8; 12],
    data: &[u8],
) -> Option<Vec<u8>> {
    p.aead_encrypt(AeadType::Aes128Gcm, key, data, nonce, &[])
        .ok()
}

/// AES-128-GCM open.
pub fn aes128gcm_decrypt(
    p: &RustCrypto,
    key: &[u8; 16],
    nonce: &[u8; 12],
    ct: &[u8],
) -> Option<Vec<u8>> {
    p.aead_decrypt(AeadType::Aes128Gcm, key, ct, nonce, &[])
        .ok()
}

/// SHA-256.
pub fn sha256(p: &RustCrypto, data: &[u8]) -> Option<Vec<u8>> {
    p.hash(HashType::Sha2_256, data).ok()
}

/// A fresh Ed25519 key pair: (private, public).
pub fn ed25519_keygen(p: &RustCrypto) -> Option<(Vec<u8>, Vec<u8>)> {
    p.signature_key_gen(SignatureScheme::ED25519).ok()
}

/// An Ed25519 signature.
pub fn ed25519_sign(p: &RustCrypto, data: &[u8], private: &[u8]) -> Option<Vec<u8>> {
    p.sign(SignatureScheme::ED25519, data, private).ok()
}

/// An Ed25519 verification.
pub fn ed25519_verify(p: &RustCrypto, data: &[u8], public: &[u8], sig: &[u8]) -> bool {
    p.verify_signature(SignatureScheme::ED25519, data, public, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let p = provider();
        let ct = aes128gcm_encrypt(&p, &[1; 16], &[2; 12], b"hello").unwrap();
        assert_eq!(ct.len(), 5 + 16);
        assert_eq!(
            aes128gcm_decrypt(&p, &[1; 16], &[2; 12], &ct).unwrap(),
            b"hello"
        );
        assert!(aes128gcm_decrypt(&p, &[3; 16], &[2; 12], &ct).is_none());
        // FIPS 180-2: SHA-256("abc").
        assert_eq!(sha256(&p, b"abc").unwrap()[..4], [0xba, 0x78, 0x16, 0xbf]);
        let (sk, pk) = ed25519_keygen(&p).unwrap();
        let sig = ed25519_sign(&p, b"m", &sk).unwrap();
        assert!(ed25519_verify(&p, b"m", &pk, &sig));
        assert!(!ed25519_verify(&p, b"n", &pk, &sig));
    }
}
