//! Floors: exactly the operations a phase recorded ([`e2elab_core::ops`]),
//! run again on the same primitives in the same libraries, one call per
//! recorded call on as many bytes per call as were recorded.
//!
//! What each operation kind replays:
//! - modexps: OpenSSL `BN_mod_exp` in the MODP group of that size (RFC 3526;
//!   1024 bits: RFC 2409 group 2) with an exponent of that many bits (top
//!   bit set), base 2 for [`Op::ModexpBase2`] (OpenSSL's one-word-base
//!   path, as the protocols take it) and a group element otherwise;
//! - RSA: PKCS#1 v1.5 with a key of that size, with the CRT parameters, or
//!   (`crt: false`) through a key built from n, e and d for every call, as
//!   Sequoia's OpenSSL backend does; signatures hash the recorded bytes;
//! - Ed25519 / X25519 on OpenSSL; libotr's DH and DSA calls through libotr
//!   (`otrl_dh_gen_keypair`, `otrl_dh_session`, `otrl_privkey_sign`,
//!   `otrl_privkey_verify`);
//! - ciphers, HMACs and hashes on the recorded library (OpenSSL's EVP, or
//!   libgcrypt directly), base64 with the `base64` crate or libotr's;
//! - XML: serializing or parsing (minidom/rxml through `core::stanza`, the
//!   path every protocol uses) a document of the recorded size, one element
//!   with that much text.
//!
//! Inputs (keys, data, signatures to verify, ciphertexts) are made before
//! timing; recording is paused while floors run.

use crate::cpu;
use e2elab_core::ops::{self, CipherAlg, HashAlg, Lib, Op, Tally};
use e2elab_core::{stanza, Element, Env, OpLog};
use e2elab_esessions::prim::Group;
use openssl::bn::{BigNum, BigNumContext};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa, RsaPrivateKeyBuilder};
use openssl::sign::{Signer, Verifier};
use openssl::symm::{Cipher, Crypter, Mode};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// One call of a primitive on prepared inputs.
pub type PrimFn = Box<dyn FnMut() -> crate::Result<()>>;

fn e<T: std::fmt::Display>(what: &'static str) -> impl Fn(T) -> crate::Error {
    move |x| crate::fail!("{what}: {x}")
}

struct RsaKey {
    crt: PKey<Private>,
    public: PKey<Public>,
    n: Vec<u8>,
    e: Vec<u8>,
    d: Vec<u8>,
}

impl RsaKey {
    fn new(bits: u16) -> crate::Result<RsaKey> {
        RsaKey::from_rsa(Rsa::generate(u32::from(bits)).map_err(e("RSA key"))?)
    }

    fn from_rsa(r: Rsa<Private>) -> crate::Result<RsaKey> {
        let pub_der = r.public_key_to_der().map_err(e("RSA key"))?;
        Ok(RsaKey {
            n: r.n().to_vec(),
            e: r.e().to_vec(),
            d: r.d().to_vec(),
            public: PKey::public_key_from_der(&pub_der).map_err(e("RSA key"))?,
            crt: PKey::from_rsa(r).map_err(e("RSA key"))?,
        })
    }

    /// The key as Sequoia's backend makes it for every operation.
    fn without_crt(n: &[u8], e_: &[u8], d: &[u8]) -> crate::Result<PKey<Private>> {
        let b = RsaPrivateKeyBuilder::new(
            BigNum::from_slice(n).map_err(e("n"))?,
            BigNum::from_slice(e_).map_err(e("e"))?,
            BigNum::from_slice(d).map_err(e("d"))?,
        )
        .map_err(e("RSA builder"))?;
        PKey::from_rsa(b.build()).map_err(e("RSA builder"))
    }
}

fn md(h: HashAlg) -> MessageDigest {
    match h {
        HashAlg::Sha1 => MessageDigest::sha1(),
        HashAlg::Sha256 => MessageDigest::sha256(),
        HashAlg::Sha512 => MessageDigest::sha512(),
    }
}

fn group_id(bits: u16) -> crate::Result<u32> {
    Ok(match bits {
        1024 => 2,
        1536 => 5,
        2048 => 14,
        3072 => 15,
        4096 => 16,
        6144 => 17,
        8192 => 18,
        b => return Err(crate::fail!("no MODP group of {b} bits")),
    })
}

fn openssl_cipher(a: CipherAlg) -> Cipher {
    match a {
        CipherAlg::Aes128Ctr => Cipher::aes_128_ctr(),
        CipherAlg::Aes192Ctr => Cipher::aes_192_ctr(),
        CipherAlg::Aes256Ctr => Cipher::aes_256_ctr(),
        CipherAlg::Aes128Cbc => Cipher::aes_128_cbc(),
        CipherAlg::Aes256Cbc => Cipher::aes_256_cbc(),
        CipherAlg::Aes128Cfb => Cipher::aes_128_cfb128(),
        CipherAlg::Aes256Cfb => Cipher::aes_256_cfb128(),
        CipherAlg::DesEde3Cbc => Cipher::des_ede3_cbc(),
        CipherAlg::Aes128Gcm => Cipher::aes_128_gcm(),
    }
}

/// Runs recorded operations again.
pub struct Replayer {
    env: Env,
    rsa: BTreeMap<u16, Rc<RsaKey>>,
    otr: Option<Rc<RefCell<e2elab_otr::ffi::Primitives>>>,
    otr_key: Option<Vec<u8>>,
    // Ordered, not hashed: a hash map's probing depends on its random
    // seed, which would make the floors' instruction counts vary by run.
    calls: BTreeMap<(Op, u64), PrimFn>,
}

/// The long-term keys of a replayer, for workers that must not generate
/// their own (under valgrind): RSA keys (PKCS#8 DER, hex) and libotr's key
/// file (hex).
#[derive(serde::Serialize, serde::Deserialize)]
struct Keys {
    rsa: Vec<(u16, String)>,
    otr: Option<String>,
}

const OTR_ACCOUNT: &str = "floor@example.org";

impl Replayer {
    /// A replayer whose random inputs come from `seed`.
    pub fn new(seed: u64) -> Replayer {
        Replayer {
            env: Env::for_party(seed, "floor"),
            rsa: BTreeMap::new(),
            otr: None,
            otr_key: None,
            calls: BTreeMap::new(),
        }
    }

    /// Write the keys made so far to `path` (secret test keys).
    pub fn save_keys(&self, path: &std::path::Path) -> crate::Result<()> {
        let mut rsa = Vec::new();
        for (bits, k) in &self.rsa {
            rsa.push((
                *bits,
                hex::encode(k.crt.private_key_to_pkcs8().map_err(e("pkcs8"))?),
            ));
        }
        let keys = Keys {
            rsa,
            otr: self.otr_key.as_ref().map(hex::encode),
        };
        let j = serde_json::to_string(&keys).map_err(crate::Error::msg)?;
        std::fs::write(path, j).map_err(|x| crate::fail!("{}: {x}", path.display()))
    }

    /// A replayer with the keys of `path` (from [`Replayer::save_keys`]).
    pub fn with_keys(path: &std::path::Path) -> crate::Result<Replayer> {
        let s =
            std::fs::read_to_string(path).map_err(|x| crate::fail!("{}: {x}", path.display()))?;
        let keys: Keys =
            serde_json::from_str(&s).map_err(|x| crate::fail!("{}: {x}", path.display()))?;
        let mut r = Replayer::new(1);
        for (bits, der) in keys.rsa {
            let der = hex::decode(der).map_err(e("key hex"))?;
            let pk = PKey::private_key_from_pkcs8(&der).map_err(e("pkcs8"))?;
            let k = RsaKey::from_rsa(pk.rsa().map_err(e("rsa"))?)?;
            r.rsa.insert(bits, Rc::new(k));
        }
        if let Some(h) = keys.otr {
            r.otr_key = Some(hex::decode(h).map_err(e("key hex"))?);
        }
        Ok(r)
    }

    fn rsa(&mut self, bits: u16) -> crate::Result<Rc<RsaKey>> {
        if let Some(k) = self.rsa.get(&bits) {
            return Ok(k.clone());
        }
        let k = Rc::new(RsaKey::new(bits)?);
        self.rsa.insert(bits, k.clone());
        Ok(k)
    }

    fn otr(&mut self) -> crate::Result<Rc<RefCell<e2elab_otr::ffi::Primitives>>> {
        if let Some(p) = &self.otr {
            return Ok(p.clone());
        }
        let key_file = match &self.otr_key {
            Some(k) => k.clone(),
            None => {
                let (k, _) = e2elab_otr::generate_key_file(OTR_ACCOUNT).map_err(e("OTR key"))?;
                let k = k.to_vec();
                self.otr_key = Some(k.clone());
                k
            }
        };
        let p = Rc::new(RefCell::new(
            e2elab_otr::ffi::Primitives::new(&key_file, OTR_ACCOUNT)
                .map_err(e("OTR primitives"))?,
        ));
        self.otr = Some(p.clone());
        Ok(p)
    }

    /// One RSA key transport encryption of a `key_len`-byte key.
    fn rsa_encrypt(&mut self, bits: u16, pad: Padding, key_len: usize) -> crate::Result<PrimFn> {
        let k = self.rsa(bits)?;
        let r = k.public.rsa().map_err(e("rsa"))?;
        let key = self.bytes(key_len);
        Ok(Box::new(move || {
            let mut c = vec![0u8; r.size() as usize];
            r.public_encrypt(&key, &mut c, pad)
                .map(|_| ())
                .map_err(crate::Error::msg)
        }))
    }

    /// One RSA key transport decryption (with or without the CRT
    /// parameters), checked against the `key_len`-byte key.
    fn rsa_decrypt(
        &mut self,
        bits: u16,
        crt: bool,
        pad: Padding,
        key_len: usize,
    ) -> crate::Result<PrimFn> {
        let k = self.rsa(bits)?;
        let r = k.public.rsa().map_err(e("rsa"))?;
        let key = self.bytes(key_len);
        let mut ct = vec![0u8; r.size() as usize];
        let len = r.public_encrypt(&key, &mut ct, pad).map_err(e("encrypt"))?;
        ct.truncate(len);
        Ok(Box::new(move || {
            let pk = if crt {
                k.crt.clone()
            } else {
                RsaKey::without_crt(&k.n, &k.e, &k.d)?
            };
            let r = pk.rsa().map_err(crate::Error::msg)?;
            let mut p = vec![0u8; r.size() as usize];
            match r.private_decrypt(&ct, &mut p, pad) {
                Ok(n) if n == key_len && p[..n] == key[..] => Ok(()),
                Ok(_) => Err(crate::Error::from("RSA decrypt: wrong plaintext")),
                Err(x) => Err(crate::Error::msg(x)),
            }
        }))
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.env.fill(&mut v);
        v
    }

    /// Prepare one call of `op` on `n` bytes.
    fn make(&mut self, op: &Op, n: usize) -> crate::Result<PrimFn> {
        Ok(match *op {
            Op::ModexpBase2 {
                group_bits,
                exp_bits,
            }
            | Op::Modexp {
                group_bits,
                exp_bits,
            } => {
                let g = Group::get(group_id(group_bits)?).map_err(e("group"))?;
                let mut x = BigNum::from_slice(&self.bytes(usize::from(exp_bits).div_ceil(8)))
                    .map_err(e("exponent"))?;
                x.set_bit(i32::from(exp_bits) - 1).map_err(e("exponent"))?;
                let two = BigNum::from_u32(2).map_err(e("base"))?;
                let base = if matches!(op, Op::ModexpBase2 { .. }) {
                    two
                } else {
                    // A group element, as a peer's DH value is.
                    let mut ctx = BigNumContext::new().map_err(e("ctx"))?;
                    let y = BigNum::from_slice(&self.bytes(32)).map_err(e("y"))?;
                    let mut b = BigNum::new().map_err(e("base"))?;
                    b.mod_exp(&two, &y, &g.p, &mut ctx).map_err(e("base"))?;
                    b
                };
                Box::new(move || {
                    let mut ctx = BigNumContext::new_secure().map_err(crate::Error::msg)?;
                    let mut r = BigNum::new_secure().map_err(crate::Error::msg)?;
                    r.mod_exp(&base, &x, &g.p, &mut ctx)
                        .map_err(crate::Error::msg)
                })
            }
            Op::RsaSign { bits, hash, crt } => {
                let k = self.rsa(bits)?;
                let data = self.bytes(n);
                let m = md(hash);
                Box::new(move || {
                    let key = if crt {
                        k.crt.clone()
                    } else {
                        RsaKey::without_crt(&k.n, &k.e, &k.d)?
                    };
                    let mut s = Signer::new(m, &key).map_err(crate::Error::msg)?;
                    s.update(&data).map_err(crate::Error::msg)?;
                    s.sign_to_vec().map(|_| ()).map_err(crate::Error::msg)
                })
            }
            Op::RsaVerify { bits, hash } => {
                let k = self.rsa(bits)?;
                let data = self.bytes(n);
                let m = md(hash);
                let mut s = Signer::new(m, &k.crt).map_err(e("sign"))?;
                s.update(&data).map_err(e("sign"))?;
                let sig = s.sign_to_vec().map_err(e("sign"))?;
                Box::new(move || {
                    let mut v = Verifier::new(m, &k.public).map_err(crate::Error::msg)?;
                    v.update(&data).map_err(crate::Error::msg)?;
                    match v.verify(&sig) {
                        Ok(true) => Ok(()),
                        _ => Err("RSA verify: bad signature".into()),
                    }
                })
            }
            Op::RsaEncrypt { bits } => self.rsa_encrypt(bits, Padding::PKCS1, 32)?,
            Op::RsaOaepEncrypt { bits } => self.rsa_encrypt(bits, Padding::PKCS1_OAEP, 16)?,
            Op::RsaDecrypt { bits, crt } => self.rsa_decrypt(bits, crt, Padding::PKCS1, 32)?,
            Op::RsaOaepDecrypt { bits, crt } => {
                self.rsa_decrypt(bits, crt, Padding::PKCS1_OAEP, 16)?
            }
            Op::Ed25519Sign => {
                let k = PKey::generate_ed25519().map_err(e("ed25519"))?;
                let data = self.bytes(n);
                Box::new(move || {
                    Signer::new_without_digest(&k)
                        .and_then(|mut s| s.sign_oneshot_to_vec(&data))
                        .map(|_| ())
                        .map_err(crate::Error::msg)
                })
            }
            Op::Ed25519Verify => {
                let k = PKey::generate_ed25519().map_err(e("ed25519"))?;
                let data = self.bytes(n);
                let sig = Signer::new_without_digest(&k)
                    .and_then(|mut s| s.sign_oneshot_to_vec(&data))
                    .map_err(e("ed25519"))?;
                let p = PKey::public_key_from_raw_bytes(
                    &k.raw_public_key().map_err(e("ed25519"))?,
                    openssl::pkey::Id::ED25519,
                )
                .map_err(e("ed25519"))?;
                Box::new(move || {
                    match Verifier::new_without_digest(&p)
                        .and_then(|mut v| v.verify_oneshot(&sig, &data))
                    {
                        Ok(true) => Ok(()),
                        _ => Err("Ed25519 verify: bad signature".into()),
                    }
                })
            }
            Op::X25519Encrypt | Op::X25519Decrypt => {
                let peer = PKey::generate_x25519().map_err(e("x25519"))?;
                let peer_pub = PKey::public_key_from_raw_bytes(
                    &peer.raw_public_key().map_err(e("x25519"))?,
                    openssl::pkey::Id::X25519,
                )
                .map_err(e("x25519"))?;
                let ephemeral = matches!(op, Op::X25519Encrypt);
                let mine = PKey::generate_x25519().map_err(e("x25519"))?;
                Box::new(move || {
                    let fresh;
                    let k = if ephemeral {
                        fresh = PKey::generate_x25519().map_err(crate::Error::msg)?;
                        &fresh
                    } else {
                        &mine
                    };
                    let mut d = openssl::derive::Deriver::new(k).map_err(crate::Error::msg)?;
                    d.set_peer(&peer_pub).map_err(crate::Error::msg)?;
                    d.derive_to_vec().map(|_| ()).map_err(crate::Error::msg)
                })
            }
            Op::Ed25519SignWith { lib } | Op::Ed25519VerifyWith { lib } => {
                if lib != Lib::RustCrypto {
                    return Err(crate::fail!("no Ed25519 floor in {}", lib.name()));
                }
                // openmls's RustCrypto provider: the same calls a session made.
                let p = e2elab_mls::mls_primitives::provider();
                let (sk, pk) = e2elab_mls::mls_primitives::ed25519_keygen(&p)
                    .ok_or_else(|| crate::fail!("Ed25519 keygen"))?;
                let data = self.bytes(n);
                let sig = e2elab_mls::mls_primitives::ed25519_sign(&p, &data, &sk)
                    .ok_or_else(|| crate::fail!("Ed25519 sign"))?;
                let verify = matches!(op, Op::Ed25519VerifyWith { .. });
                Box::new(move || {
                    let ok = if verify {
                        e2elab_mls::mls_primitives::ed25519_verify(&p, &data, &pk, &sig)
                    } else {
                        e2elab_mls::mls_primitives::ed25519_sign(&p, &data, &sk).is_some()
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err("Ed25519 (RustCrypto) failed".into())
                    }
                })
            }
            Op::X25519Keygen { lib } => match lib {
                Lib::RustCrypto => Box::new(|| {
                    e2elab_omemo::olm_primitives::x25519_keygen();
                    Ok(())
                }),
                _ => Box::new(|| {
                    PKey::generate_x25519()
                        .map(|_| ())
                        .map_err(crate::Error::msg)
                }),
            },
            Op::X25519Dh { lib } => match lib {
                Lib::RustCrypto => {
                    let (mine, _) = e2elab_omemo::olm_primitives::x25519_keygen();
                    let (_, theirs) = e2elab_omemo::olm_primitives::x25519_keygen();
                    Box::new(move || {
                        if e2elab_omemo::olm_primitives::x25519_dh(&mine, &theirs) {
                            Ok(())
                        } else {
                            Err("X25519: not contributory".into())
                        }
                    })
                }
                _ => {
                    let mine = PKey::generate_x25519().map_err(e("x25519"))?;
                    let peer = PKey::generate_x25519().map_err(e("x25519"))?;
                    let theirs = PKey::public_key_from_raw_bytes(
                        &peer.raw_public_key().map_err(e("x25519"))?,
                        openssl::pkey::Id::X25519,
                    )
                    .map_err(e("x25519"))?;
                    Box::new(move || {
                        let mut d =
                            openssl::derive::Deriver::new(&mine).map_err(crate::Error::msg)?;
                        d.set_peer(&theirs).map_err(crate::Error::msg)?;
                        d.derive_to_vec().map(|_| ()).map_err(crate::Error::msg)
                    })
                }
            },
            Op::Hkdf { hash, lib } => {
                // `n` output bytes from a 32-byte secret and a 32-byte salt.
                let ikm = self.bytes(32);
                let salt = self.bytes(32);
                let len = n.max(1);
                match lib {
                    Lib::RustCrypto => {
                        if hash != HashAlg::Sha256 {
                            return Err(crate::fail!(
                                "no RustCrypto HKDF floor for {}",
                                hash.name()
                            ));
                        }
                        Box::new(move || {
                            let mut out = vec![0u8; len];
                            if e2elab_omemo::olm_primitives::hkdf_sha256(
                                &salt, &ikm, b"floor", &mut out,
                            ) {
                                Ok(())
                            } else {
                                Err("HKDF: output too long".into())
                            }
                        })
                    }
                    _ => {
                        let m = match hash {
                            HashAlg::Sha1 => openssl::md::Md::sha1(),
                            HashAlg::Sha256 => openssl::md::Md::sha256(),
                            HashAlg::Sha512 => openssl::md::Md::sha512(),
                        };
                        Box::new(move || {
                            let mut ctx =
                                openssl::pkey_ctx::PkeyCtx::new_id(openssl::pkey::Id::HKDF)
                                    .map_err(crate::Error::msg)?;
                            ctx.derive_init().map_err(crate::Error::msg)?;
                            ctx.set_hkdf_md(m).map_err(crate::Error::msg)?;
                            ctx.set_hkdf_salt(&salt).map_err(crate::Error::msg)?;
                            ctx.set_hkdf_key(&ikm).map_err(crate::Error::msg)?;
                            ctx.add_hkdf_info(b"floor").map_err(crate::Error::msg)?;
                            let mut out = vec![0u8; len];
                            ctx.derive(Some(&mut out))
                                .map(|_| ())
                                .map_err(crate::Error::msg)
                        })
                    }
                }
            }
            Op::Cipher {
                alg: CipherAlg::Aes256Cbc,
                decrypt,
                lib: Lib::RustCrypto,
            } => {
                // Whole blocks; decryption of an encryption of the same length.
                let key: [u8; 32] = self.env.random_array();
                let iv: [u8; 16] = self.env.random_array();
                let data = self.bytes(n.div_ceil(16).max(1) * 16 - 1);
                let ct = e2elab_omemo::olm_primitives::aes256_cbc_encrypt(&key, &iv, &data);
                Box::new(move || {
                    if decrypt {
                        e2elab_omemo::olm_primitives::aes256_cbc_decrypt(&key, &iv, &ct)
                            .map(|_| ())
                            .ok_or_else(|| "AES-256-CBC: bad padding".into())
                    } else {
                        e2elab_omemo::olm_primitives::aes256_cbc_encrypt(&key, &iv, &data);
                        Ok(())
                    }
                })
            }
            Op::OtrDhKeypair => {
                let p = self.otr()?;
                Box::new(move || p.borrow_mut().dh_keygen().map_err(crate::Error::msg))
            }
            Op::OtrDhSession => {
                let p = self.otr()?;
                Box::new(move || p.borrow_mut().dh_session().map_err(crate::Error::msg))
            }
            Op::OtrDsaSign => {
                let p = self.otr()?;
                Box::new(move || {
                    p.borrow_mut()
                        .dsa_sign()
                        .map(|_| ())
                        .map_err(crate::Error::msg)
                })
            }
            Op::OtrDsaVerify => {
                let p = self.otr()?;
                let sig = p.borrow_mut().dsa_sign().map_err(e("dsa"))?;
                Box::new(move || p.borrow_mut().dsa_verify(&sig).map_err(crate::Error::msg))
            }
            Op::Cipher {
                alg,
                decrypt,
                lib: Lib::Libgcrypt,
            } => {
                if alg != CipherAlg::Aes128Ctr {
                    return Err(crate::fail!("no libgcrypt floor for {}", alg.name()));
                }
                let _ = decrypt; // CTR: the same operation both ways.
                let mut data = self.bytes(n);
                let key: [u8; 16] = self.env.random_array();
                Box::new(move || {
                    e2elab_otr::ffi::gcry::aes128_ctr(&key, &mut data).map_err(crate::Error::msg)
                })
            }
            Op::Cipher {
                alg: CipherAlg::Aes128Gcm,
                decrypt,
                lib: Lib::RustCrypto,
            } => {
                let p = e2elab_mls::mls_primitives::provider();
                let key: [u8; 16] = self.env.random_array();
                let nonce: [u8; 12] = self.env.random_array();
                // `n` bytes of plaintext (encrypt) or of ciphertext with its tag.
                let data = self.bytes(n.saturating_sub(if decrypt { 16 } else { 0 }));
                let ct = e2elab_mls::mls_primitives::aes128gcm_encrypt(&p, &key, &nonce, &data)
                    .ok_or_else(|| crate::fail!("AES-128-GCM (RustCrypto)"))?;
                Box::new(move || {
                    let ok = if decrypt {
                        e2elab_mls::mls_primitives::aes128gcm_decrypt(&p, &key, &nonce, &ct)
                            .is_some()
                    } else {
                        e2elab_mls::mls_primitives::aes128gcm_encrypt(&p, &key, &nonce, &data)
                            .is_some()
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err("AES-128-GCM (RustCrypto) failed".into())
                    }
                })
            }
            Op::Cipher {
                alg,
                lib: Lib::RustCrypto,
                ..
            } => return Err(crate::fail!("no RustCrypto floor for {}", alg.name())),
            Op::Cipher {
                alg: CipherAlg::Aes128Gcm,
                decrypt,
                ..
            } => {
                // AEAD: encryption computes the tag, decryption checks it.
                let c = Cipher::aes_128_gcm();
                let key = self.bytes(16);
                let iv = self.bytes(12);
                let data = self.bytes(n);
                let mut tag = [0u8; 16];
                let ct = openssl::symm::encrypt_aead(c, &key, Some(&iv), &[], &data, &mut tag)
                    .map_err(e("gcm"))?;
                Box::new(move || {
                    if decrypt {
                        openssl::symm::decrypt_aead(c, &key, Some(&iv), &[], &ct, &tag)
                            .map(|_| ())
                            .map_err(crate::Error::msg)
                    } else {
                        let mut t = [0u8; 16];
                        openssl::symm::encrypt_aead(c, &key, Some(&iv), &[], &data, &mut t)
                            .map(|_| ())
                            .map_err(crate::Error::msg)
                    }
                })
            }
            Op::Cipher { alg, decrypt, .. } => {
                let c = openssl_cipher(alg);
                let key = self.bytes(c.key_len());
                let iv = c.iv_len().map(|l| self.bytes(l));
                // Decryption needs whole blocks; no padding either way, so
                // encryption and decryption process the same bytes.
                let block = c.block_size().max(1);
                let len = if block > 1 {
                    n.div_ceil(block) * block
                } else {
                    n
                };
                let data = self.bytes(len);
                let mode = if decrypt {
                    Mode::Decrypt
                } else {
                    Mode::Encrypt
                };
                Box::new(move || {
                    let mut cr =
                        Crypter::new(c, mode, &key, iv.as_deref()).map_err(crate::Error::msg)?;
                    cr.pad(false);
                    let mut out = vec![0u8; data.len() + block];
                    let k = cr.update(&data, &mut out).map_err(crate::Error::msg)?;
                    cr.finalize(&mut out[k..])
                        .map(|_| ())
                        .map_err(crate::Error::msg)
                })
            }
            Op::Hmac { hash, lib } => {
                if lib == Lib::RustCrypto && hash != HashAlg::Sha256 {
                    return Err(crate::fail!("no RustCrypto HMAC floor for {}", hash.name()));
                }
                let key = self.bytes(32);
                let data = self.bytes(n);
                match lib {
                    Lib::RustCrypto => Box::new(move || {
                        e2elab_omemo::olm_primitives::hmac_sha256(&key, &data);
                        Ok(())
                    }),
                    Lib::Libgcrypt => {
                        let sha1 = hash == HashAlg::Sha1;
                        Box::new(move || {
                            e2elab_otr::ffi::gcry::hmac(sha1, &key, &data)
                                .map(|_| ())
                                .map_err(crate::Error::msg)
                        })
                    }
                    _ => {
                        let m = md(hash);
                        Box::new(move || {
                            let k = PKey::hmac(&key).map_err(crate::Error::msg)?;
                            let mut s = Signer::new(m, &k).map_err(crate::Error::msg)?;
                            s.update(&data).map_err(crate::Error::msg)?;
                            s.sign_to_vec().map(|_| ()).map_err(crate::Error::msg)
                        })
                    }
                }
            }
            Op::Digest { hash, lib } => {
                let data = self.bytes(n);
                if lib == Lib::RustCrypto && hash != HashAlg::Sha256 {
                    return Err(crate::fail!("no RustCrypto floor for {}", hash.name()));
                }
                match lib {
                    Lib::RustCrypto => {
                        let p = e2elab_mls::mls_primitives::provider();
                        Box::new(move || {
                            e2elab_mls::mls_primitives::sha256(&p, &data)
                                .map(|_| ())
                                .ok_or_else(|| "SHA-256 (RustCrypto) failed".into())
                        })
                    }
                    Lib::Libgcrypt => {
                        let sha1 = hash == HashAlg::Sha1;
                        Box::new(move || {
                            e2elab_otr::ffi::gcry::digest(sha1, &data);
                            Ok(())
                        })
                    }
                    _ => {
                        let m = md(hash);
                        Box::new(move || {
                            openssl::hash::hash(m, &data)
                                .map(|_| ())
                                .map_err(crate::Error::msg)
                        })
                    }
                }
            }
            Op::Base64Encode { lib } => {
                let data = self.bytes(n);
                if lib == Lib::Libotr {
                    Box::new(move || {
                        e2elab_otr::ffi::gcry::base64_encode(&data);
                        Ok(())
                    })
                } else {
                    Box::new(move || {
                        e2elab_core::b64::encode(&data);
                        Ok(())
                    })
                }
            }
            Op::Base64Decode { lib } => {
                // `n` encoded characters.
                let raw = self.bytes(n / 4 * 3);
                let text = e2elab_core::b64::encode(&raw);
                if lib == Lib::Libotr {
                    Box::new(move || {
                        e2elab_otr::ffi::gcry::base64_decode(text.as_bytes());
                        Ok(())
                    })
                } else {
                    Box::new(move || {
                        e2elab_core::b64::decode(&text)
                            .map(|_| ())
                            .map_err(crate::Error::msg)
                    })
                }
            }
            Op::XmlSerialize | Op::XmlParse => {
                let (el, xml) = xml_of_size(n)?;
                if matches!(op, Op::XmlSerialize) {
                    Box::new(move || {
                        stanza::serialize(&el);
                        Ok(())
                    })
                } else {
                    Box::new(move || stanza::parse(&xml).map(|_| ()).map_err(crate::Error::msg))
                }
            }
        })
    }

    fn call(&mut self, op: &Op, per_call: u64) -> crate::Result<&mut PrimFn> {
        let key = (*op, per_call);
        if !self.calls.contains_key(&key) {
            let f = ops::paused(|| self.make(op, per_call as usize))?;
            self.calls.insert(key, f);
        }
        self.calls
            .get_mut(&key)
            .ok_or_else(|| crate::Error::from("replayer cache"))
    }

    /// Make every input `log` needs (outside any timing).
    pub fn prepare(&mut self, log: &OpLog) -> crate::Result<()> {
        for (op, t) in log.iter() {
            if t.calls > 0 {
                self.call(op, per_call(t))?;
            }
        }
        Ok(())
    }

    /// Run the operations of `log` (prepared or not: unprepared inputs are
    /// made first, untimed by the caller's measure only if prepared).
    pub fn run(&mut self, log: &OpLog) -> crate::Result<()> {
        ops::paused(|| {
            for (op, t) in log.iter() {
                let n = per_call(t);
                let f = self.call(op, n)?;
                for _ in 0..t.calls {
                    f().map_err(|x| crate::fail!("floor {op}: {x}"))?;
                }
            }
            Ok(())
        })
    }

    /// The thread CPU time of running `log` once (inputs made first).
    pub fn time(&mut self, log: &OpLog) -> crate::Result<Duration> {
        self.prepare(log)?;
        let (r, c, _) = cpu::measure(|| self.run(log));
        r?;
        Ok(c)
    }

    /// The thread CPU time of one call of `op` on `n` bytes.
    pub fn time_one(&mut self, op: &Op, n: u64) -> crate::Result<Duration> {
        self.call(op, n)?;
        let f = self.call(op, n)?;
        let (r, c, _) = cpu::measure(|| ops::paused(f));
        r.map_err(|x| crate::fail!("primitive {op}: {x}"))?;
        Ok(c)
    }
}

/// Bytes per call of a tally (the floor replays every call at the mean).
pub fn per_call(t: &Tally) -> u64 {
    t.bytes.checked_div(t.calls).unwrap_or(0)
}

/// A document of about `n` serialized bytes: one element holding text.
fn xml_of_size(n: usize) -> crate::Result<(Element, String)> {
    let empty = ops::paused(|| stanza::serialize(&Element::bare("x", "urn:e2elab:floor")));
    // `<x xmlns='…'/>` becomes `<x xmlns='…'>text</x>`: 3 more bytes.
    let text = "a".repeat(n.saturating_sub(empty.len() + 3));
    let el = Element::builder("x", "urn:e2elab:floor")
        .append(text)
        .build();
    let xml = ops::paused(|| stanza::serialize(&el));
    Ok((el, xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_documents_have_the_asked_size() {
        for n in [100usize, 1000, 70_000] {
            assert_eq!(xml_of_size(n).unwrap().1.len(), n);
        }
        assert!(xml_of_size(0).unwrap().1.len() < 40);
    }

    #[test]
    fn every_kind_replays_and_costs_time() {
        let mut log = OpLog::new();
        let kinds = [
            Op::ModexpBase2 {
                group_bits: 1536,
                exp_bits: 256,
            },
            Op::Modexp {
                group_bits: 1536,
                exp_bits: 256,
            },
            Op::RsaSign {
                bits: 1024,
                hash: HashAlg::Sha256,
                crt: true,
            },
            Op::RsaSign {
                bits: 1024,
                hash: HashAlg::Sha512,
                crt: false,
            },
            Op::RsaVerify {
                bits: 1024,
                hash: HashAlg::Sha1,
            },
            Op::RsaEncrypt { bits: 1024 },
            Op::RsaDecrypt {
                bits: 1024,
                crt: false,
            },
            Op::RsaOaepEncrypt { bits: 1024 },
            Op::RsaOaepDecrypt {
                bits: 1024,
                crt: true,
            },
            Op::Cipher {
                alg: CipherAlg::Aes128Gcm,
                decrypt: true,
                lib: Lib::Openssl,
            },
            Op::Ed25519Sign,
            Op::Ed25519Verify,
            Op::X25519Encrypt,
            Op::X25519Decrypt,
            Op::X25519Keygen {
                lib: Lib::RustCrypto,
            },
            Op::X25519Dh {
                lib: Lib::RustCrypto,
            },
            Op::X25519Dh { lib: Lib::Openssl },
            Op::Ed25519SignWith {
                lib: Lib::RustCrypto,
            },
            Op::Ed25519VerifyWith {
                lib: Lib::RustCrypto,
            },
            Op::Cipher {
                alg: CipherAlg::Aes128Gcm,
                decrypt: false,
                lib: Lib::RustCrypto,
            },
            Op::Digest {
                hash: HashAlg::Sha256,
                lib: Lib::RustCrypto,
            },
            Op::Hkdf {
                hash: HashAlg::Sha256,
                lib: Lib::RustCrypto,
            },
            Op::Hkdf {
                hash: HashAlg::Sha256,
                lib: Lib::Openssl,
            },
            Op::Cipher {
                alg: CipherAlg::Aes256Cbc,
                decrypt: true,
                lib: Lib::RustCrypto,
            },
            Op::Hmac {
                hash: HashAlg::Sha256,
                lib: Lib::RustCrypto,
            },
            Op::Cipher {
                alg: CipherAlg::Aes256Cbc,
                decrypt: true,
                lib: Lib::Openssl,
            },
            Op::Cipher {
                alg: CipherAlg::Aes128Cfb,
                decrypt: false,
                lib: Lib::Openssl,
            },
            Op::Cipher {
                alg: CipherAlg::Aes128Ctr,
                decrypt: false,
                lib: Lib::Libgcrypt,
            },
            Op::Hmac {
                hash: HashAlg::Sha1,
                lib: Lib::Libgcrypt,
            },
            Op::Hmac {
                hash: HashAlg::Sha256,
                lib: Lib::Openssl,
            },
            Op::Digest {
                hash: HashAlg::Sha1,
                lib: Lib::Openssl,
            },
            Op::Base64Encode { lib: Lib::Libotr },
            Op::Base64Decode { lib: Lib::Rust },
            Op::XmlSerialize,
            Op::XmlParse,
        ];
        for k in kinds {
            log.add(k, 2, 2000, false);
        }
        let mut r = Replayer::new(1);
        let (res, recorded) = ops::recorded(|| r.time(&log));
        assert!(res.unwrap() > Duration::ZERO);
        assert!(
            recorded.is_empty(),
            "floors are not recorded as protocol work"
        );
        // A bigger log costs more.
        let mut small = OpLog::new();
        small.add(Op::XmlParse, 1, 100, false);
        let mut big = OpLog::new();
        big.add(Op::XmlParse, 50, 50 * 100_000, false);
        let (s, b) = (r.time(&small).unwrap(), r.time(&big).unwrap());
        assert!(b > s * 10, "{s:?} vs {b:?}");
    }
}
