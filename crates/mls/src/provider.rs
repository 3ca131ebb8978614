//! The openmls provider of a session: openmls's RustCrypto backend behind a
//! wrapper that records every primitive call (at the call, with its bytes),
//! and an in-memory store holding the whole group state.

use e2elab_core::ops::{self, CipherAlg, HashAlg, Lib, Op};
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeCiphertext, HpkeConfig,
    HpkeKeyPair, KemOutput, SignatureScheme,
};
use openmls_traits::OpenMlsProvider;
use tls_codec::SecretVLBytes;

const LIB: Lib = Lib::RustCrypto;

fn hash_alg(h: HashType) -> HashAlg {
    match h {
        HashType::Sha2_256 => HashAlg::Sha256,
        _ => HashAlg::Sha512,
    }
}

fn hkdf(h: HashType, calls: u64, bytes: u64) {
    ops::derive(
        Op::Hkdf {
            hash: hash_alg(h),
            lib: LIB,
        },
        calls,
        bytes,
    );
}

fn aead(decrypt: bool, bytes: usize) {
    ops::count(
        Op::Cipher {
            alg: CipherAlg::Aes128Gcm,
            decrypt,
            lib: LIB,
        },
        bytes,
    );
}

/// RFC 9180 with DHKEM(X25519): the KEM's ExtractAndExpand (two labeled
/// HKDF steps) and the key schedule's three extracts and three expands.
const HPKE_HKDF_STEPS: u64 = 8;

/// openmls's RustCrypto backend, every call recorded.
#[derive(Default)]
pub struct Counting(pub RustCrypto);

impl OpenMlsCrypto for Counting {
    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.0.supports(ciphersuite)
    }

    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.0.supported_ciphersuites()
    }

    fn hkdf_extract(
        &self,
        hash_type: HashType,
        salt: &[u8],
        ikm: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        ops::count(
            Op::Hkdf {
                hash: hash_alg(hash_type),
                lib: LIB,
            },
            hash_type.size(),
        );
        self.0.hkdf_extract(hash_type, salt, ikm)
    }

    fn hmac(
        &self,
        hash_type: HashType,
        key: &[u8],
        message: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        ops::count(
            Op::Hmac {
                hash: hash_alg(hash_type),
                lib: LIB,
            },
            message.len(),
        );
        self.0.hmac(hash_type, key, message)
    }

    fn hkdf_expand(
        &self,
        hash_type: HashType,
        prk: &[u8],
        info: &[u8],
        okm_len: usize,
    ) -> Result<SecretVLBytes, CryptoError> {
        ops::count(
            Op::Hkdf {
                hash: hash_alg(hash_type),
                lib: LIB,
            },
            okm_len,
        );
        self.0.hkdf_expand(hash_type, prk, info, okm_len)
    }

    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        ops::count(
            Op::Digest {
                hash: hash_alg(hash_type),
                lib: LIB,
            },
            data.len(),
        );
        self.0.hash(hash_type, data)
    }

    fn aead_encrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        data: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        aead(false, data.len());
        self.0.aead_encrypt(alg, key, data, nonce, aad)
    }

    fn aead_decrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        ct_tag: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        aead(true, ct_tag.len());
        self.0.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }

    fn signature_key_gen(&self, alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        self.0.signature_key_gen(alg)
    }

    fn verify_signature(
        &self,
        alg: SignatureScheme,
        data: &[u8],
        pk: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        ops::count(Op::Ed25519VerifyWith { lib: LIB }, data.len());
        self.0.verify_signature(alg, data, pk, signature)
    }

    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        ops::count(Op::Ed25519SignWith { lib: LIB }, data.len());
        self.0.sign(alg, data, key)
    }

    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        ops::derive(Op::X25519Keygen { lib: LIB }, 1, 0);
        ops::derive(Op::X25519Dh { lib: LIB }, 1, 0);
        hkdf(HashType::Sha2_256, HPKE_HKDF_STEPS, HPKE_HKDF_STEPS * 32);
        aead(false, ptxt.len());
        self.0.hpke_seal(config, pk_r, info, aad, ptxt)
    }

    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        ops::derive(Op::X25519Dh { lib: LIB }, 1, 0);
        hkdf(HashType::Sha2_256, HPKE_HKDF_STEPS, HPKE_HKDF_STEPS * 32);
        aead(true, input.ciphertext.as_slice().len());
        self.0.hpke_open(config, input, sk_r, info, aad)
    }

    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(KemOutput, ExporterSecret), CryptoError> {
        ops::derive(Op::X25519Keygen { lib: LIB }, 1, 0);
        ops::derive(Op::X25519Dh { lib: LIB }, 1, 0);
        hkdf(
            HashType::Sha2_256,
            HPKE_HKDF_STEPS + 1,
            HPKE_HKDF_STEPS * 32 + 32,
        );
        self.0
            .hpke_setup_sender_and_export(config, pk_r, info, exporter_context, exporter_length)
    }

    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        ops::derive(Op::X25519Dh { lib: LIB }, 1, 0);
        hkdf(
            HashType::Sha2_256,
            HPKE_HKDF_STEPS + 1,
            HPKE_HKDF_STEPS * 32 + 32,
        );
        self.0.hpke_setup_receiver_and_export(
            config,
            enc,
            sk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn derive_hpke_keypair(
        &self,
        config: HpkeConfig,
        ikm: &[u8],
    ) -> Result<HpkeKeyPair, CryptoError> {
        // DeriveKeyPair: a labeled extract and expand, then the scalar
        // multiplication of a key generation.
        ops::derive(Op::X25519Keygen { lib: LIB }, 1, 0);
        hkdf(HashType::Sha2_256, 2, 64);
        self.0.derive_hpke_keypair(config, ikm)
    }
}

/// A session's provider: the counting crypto and the group's store.
#[derive(Default)]
pub struct Provider {
    /// The crypto (and randomness).
    pub crypto: Counting,
    /// The store: every group secret, key package and signature key.
    pub storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = Counting;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto.0
    }
}

/// A store's entries (key, value), sorted.
pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The store's entries, for an identity secret or a state export.
pub(crate) fn dump(storage: &MemoryStorage) -> Result<Entries, String> {
    let v = storage
        .values
        .read()
        .map_err(|_| "MLS store poisoned".to_string())?;
    let mut out: Entries = v.iter().map(|(k, x)| (k.clone(), x.clone())).collect();
    out.sort();
    Ok(out)
}

/// Replace the store's entries.
pub(crate) fn load(storage: &MemoryStorage, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
    let mut v = storage
        .values
        .write()
        .map_err(|_| "MLS store poisoned".to_string())?;
    v.clear();
    for (k, x) in entries {
        v.insert(k.clone(), x.clone());
    }
    Ok(())
}

/// The long-term signature key, every signature recorded.
pub struct CountingSigner<'a>(pub &'a openmls_basic_credential::SignatureKeyPair);

impl Signer for CountingSigner<'_> {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        ops::count(Op::Ed25519SignWith { lib: LIB }, payload.len());
        self.0.sign(payload)
    }

    fn signature_scheme(&self) -> SignatureScheme {
        self.0.signature_scheme()
    }
}
