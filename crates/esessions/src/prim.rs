//! Counted primitives on OpenSSL 3: MODP groups, modexp, HMAC, AES-CTR, RSA.
//!
//! Every operation records itself in the thread's operation log
//! ([`e2elab_core::ops`]) at the call, with the bytes it processed, so the
//! harness can charge a handshake or a message exactly the primitives it
//! ran.

use e2elab_core::error::backend;
use e2elab_core::ops::{count, CipherAlg, HashAlg, Lib, Op};
use e2elab_core::{Env, Error, Result, SecretBytes};
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

/// A MODP group: prime p and generator 2.
pub struct Group {
    /// Group number (RFC 2409 / RFC 3526).
    pub id: u32,
    /// The prime.
    pub p: BigNum,
    /// p - 1.
    pub p_minus_1: BigNum,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group({}, {} bits)", self.id, self.p.num_bits())
    }
}

/// Group numbers this implementation offers and accepts.
pub const SUPPORTED_GROUPS: [u32; 8] = [1, 2, 5, 14, 15, 16, 17, 18];

impl Group {
    /// The MODP group with this number, if supported (1, 2 from RFC 2409; 5, 14-18 from RFC 3526).
    pub fn get(id: u32) -> Result<Group> {
        let p = match id {
            1 => BigNum::get_rfc2409_prime_768(),
            2 => BigNum::get_rfc2409_prime_1024(),
            5 => BigNum::get_rfc3526_prime_1536(),
            14 => BigNum::get_rfc3526_prime_2048(),
            15 => BigNum::get_rfc3526_prime_3072(),
            16 => BigNum::get_rfc3526_prime_4096(),
            17 => BigNum::get_rfc3526_prime_6144(),
            18 => BigNum::get_rfc3526_prime_8192(),
            other => return Err(Error::Unsupported(format!("MODP group {other}"))),
        }
        .map_err(backend)?;
        let mut p_minus_1 = p.to_owned().map_err(backend)?;
        p_minus_1.sub_word(1).map_err(backend)?;
        Ok(Group { id, p, p_minus_1 })
    }

    /// Bytes of p.
    pub fn byte_len(&self) -> usize {
        self.p.num_bytes() as usize
    }

    /// True if `1 < v < p - 1`.
    pub fn in_range(&self, v: &BigNumRef) -> bool {
        let one = match BigNum::from_u32(1) {
            Ok(o) => o,
            Err(_) => return false,
        };
        v > &*one && v < &*self.p_minus_1
    }
}

/// How private DH exponents are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExponentSize {
    /// Uniform in (2^(2n-1), p-1): the spec's range, full size.
    Full,
    /// Uniform in (2^(2n-1), 2^(2n)): the short exponents the spec's lower bound allows (2n bits).
    Short,
}

/// The public-key helpers (each call is recorded in the thread's operation
/// log).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ops;

/// Exponent bits as the operation log names them: rounded up to a multiple
/// of 64 (a full-size exponent of a 2048-bit group is "2048", a short one
/// "256"), so draws that happen to have a leading zero bit are one kind.
fn exp_bits(x: &BigNumRef) -> u16 {
    (x.num_bits().max(1) as u16).div_ceil(64) * 64
}

fn hash_alg(md: MessageDigest) -> HashAlg {
    if md.type_() == MessageDigest::sha1().type_() {
        HashAlg::Sha1
    } else if md.type_() == MessageDigest::sha512().type_() {
        HashAlg::Sha512
    } else {
        HashAlg::Sha256
    }
}

/// A DH private exponent (zeroized on drop).
pub struct DhPrivate {
    x: BigNum,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhPrivate([redacted])")
    }
}

impl DhPrivate {
    /// Wrap an exponent (the static-DH control and the compromise experiments' observer).
    pub fn from_bn(x: BigNum) -> Self {
        DhPrivate { x }
    }

    /// The exponent.
    pub fn bn(&self) -> &BigNum {
        &self.x
    }

    /// The exponent as lowercase hex (for a state export; secret).
    pub fn to_hex(&self) -> String {
        hex::encode(self.x.to_vec())
    }

    /// Parse hex back into an exponent.
    pub fn from_hex(h: &str) -> Result<Self> {
        let b = hex::decode(h).map_err(|_| Error::Backend("bad hex exponent".into()))?;
        Ok(DhPrivate {
            x: BigNum::from_slice(&b).map_err(backend)?,
        })
    }

    /// g^x mod p (for observers outside a session).
    pub fn public(&self, g: &Group) -> Result<BigNum> {
        Ops.modexp_g(g, &self.x)
    }
}

/// The static-DH control's exponent: 256 bits from SHA-256 over a label, the
/// long-term identity's private key bytes and the group number (top bit set).
/// Anyone who holds the long-term key derives it again: that is the
/// weakness the control exists to show.
pub fn static_exponent(identity_secret: &[u8], group: u32) -> Result<DhPrivate> {
    let mut d = sha256(&[
        b"xmpp-e2e-lab control-static-dh",
        identity_secret,
        &group.to_be_bytes(),
    ])?;
    d[0] |= 0x80;
    Ok(DhPrivate {
        x: BigNum::from_slice(&d).map_err(backend)?,
    })
}

impl Drop for DhPrivate {
    fn drop(&mut self) {
        self.x.clear();
    }
}

impl Ops {
    /// Draw x in the spec's range from the `Env` and compute e = g^x mod p.
    pub fn dh_keygen(
        &self,
        env: &mut Env,
        g: &Group,
        n_bits: usize,
        size: ExponentSize,
    ) -> Result<(DhPrivate, BigNum)> {
        let x = draw_exponent(env, g, n_bits, size)?;
        let e = self.modexp_g(g, &x)?;
        Ok((DhPrivate { x }, e))
    }

    /// g^x mod p (g = 2), recorded as [`Op::ModexpBase2`] (OpenSSL takes
    /// its one-word-base path for it).
    pub fn modexp_g(&self, g: &Group, x: &BigNumRef) -> Result<BigNum> {
        let two = BigNum::from_u32(2).map_err(backend)?;
        let r = raw_modexp(g, &two, x)?;
        count(
            Op::ModexpBase2 {
                group_bits: g.p.num_bits() as u16,
                exp_bits: exp_bits(x),
            },
            0,
        );
        Ok(r)
    }

    /// base^x mod p, recorded as [`Op::Modexp`].
    pub fn modexp(&self, g: &Group, base: &BigNumRef, x: &BigNumRef) -> Result<BigNum> {
        let r = raw_modexp(g, base, x)?;
        count(
            Op::Modexp {
                group_bits: g.p.num_bits() as u16,
                exp_bits: exp_bits(x),
            },
            0,
        );
        Ok(r)
    }

    /// The shared value peer^x mod p as minimal big-endian bytes (secret).
    pub fn dh_shared(&self, g: &Group, peer: &BigNumRef, x: &DhPrivate) -> Result<SecretBytes> {
        let k = self.modexp(g, peer, &x.x)?;
        Ok(SecretBytes::new(k.to_vec()))
    }

    /// RSASSA-PKCS1-v1_5 signature with `md` over `data`, recorded.
    pub fn rsa_sign(&self, key: &PKey<Private>, md: MessageDigest, data: &[u8]) -> Result<Vec<u8>> {
        let mut s = Signer::new(md, key).map_err(backend)?;
        s.update(data).map_err(backend)?;
        let sig = s.sign_to_vec().map_err(backend)?;
        count(
            Op::RsaSign {
                bits: key.bits() as u16,
                hash: hash_alg(md),
                crt: true,
            },
            data.len(),
        );
        Ok(sig)
    }

    /// Verify an RSASSA-PKCS1-v1_5 signature, recorded. `Ok(false)` for a bad signature.
    pub fn rsa_verify(
        &self,
        key: &PKey<Public>,
        md: MessageDigest,
        data: &[u8],
        sig: &[u8],
    ) -> Result<bool> {
        let mut v = Verifier::new(md, key).map_err(backend)?;
        v.update(data).map_err(backend)?;
        let ok = v.verify(sig).unwrap_or(false);
        count(
            Op::RsaVerify {
                bits: key.bits() as u16,
                hash: hash_alg(md),
            },
            data.len(),
        );
        Ok(ok)
    }
}

/// base^x mod p on OpenSSL (unrecorded: the callers record what it was).
fn raw_modexp(g: &Group, base: &BigNumRef, x: &BigNumRef) -> Result<BigNum> {
    let mut ctx = BigNumContext::new_secure().map_err(backend)?;
    let mut r = BigNum::new_secure().map_err(backend)?;
    r.mod_exp(base, x, &g.p, &mut ctx).map_err(backend)?;
    Ok(r)
}

/// Draw a private exponent x with 2^(2n-1) < x < p-1 (full size), or with
/// 2^(2n-1) < x < 2^(2n) (short: exactly 2n bits), by rejection sampling.
pub fn draw_exponent(
    env: &mut Env,
    g: &Group,
    n_bits: usize,
    size: ExponentSize,
) -> Result<BigNum> {
    let mut lower = BigNum::new().map_err(backend)?;
    lower.set_bit((2 * n_bits - 1) as i32).map_err(backend)?;
    let nbytes = match size {
        ExponentSize::Full => g.byte_len(),
        ExponentSize::Short => (2 * n_bits).div_ceil(8),
    };
    loop {
        let mut buf = Zeroizing::new(vec![0u8; nbytes]);
        env.fill(&mut buf);
        let x = BigNum::from_slice(&buf).map_err(backend)?;
        if x > lower && x < g.p_minus_1 {
            return Ok(x);
        }
    }
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32]> {
    count(
        Op::Hmac {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        },
        parts.iter().map(|p| p.len()).sum(),
    );
    let pkey = PKey::hmac(key).map_err(backend)?;
    let mut s = Signer::new(MessageDigest::sha256(), &pkey).map_err(backend)?;
    for p in parts {
        s.update(p).map_err(backend)?;
    }
    let v = s.sign_to_vec().map_err(backend)?;
    let mut out = [0u8; 32];
    if v.len() != 32 {
        return Err(Error::Backend("HMAC output length".into()));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

/// SHA-256.
pub fn sha256(parts: &[&[u8]]) -> Result<[u8; 32]> {
    count(
        Op::Digest {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        },
        parts.iter().map(|p| p.len()).sum(),
    );
    let mut h = openssl::sha::Sha256::new();
    for p in parts {
        h.update(p);
    }
    Ok(h.finish())
}

/// SHA-1.
pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    count(
        Op::Digest {
            hash: HashAlg::Sha1,
            lib: Lib::Openssl,
        },
        parts.iter().map(|p| p.len()).sum(),
    );
    let mut h = openssl::sha::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// AES-CTR with a 128-bit big-endian counter block; returns the output.
/// (Encryption and decryption are the same operation.)
pub fn aes_ctr(key: &[u8], counter: u128, data: &[u8]) -> Result<Vec<u8>> {
    let (cipher, alg) = match key.len() {
        16 => (Cipher::aes_128_ctr(), CipherAlg::Aes128Ctr),
        24 => (Cipher::aes_192_ctr(), CipherAlg::Aes192Ctr),
        32 => (Cipher::aes_256_ctr(), CipherAlg::Aes256Ctr),
        n => return Err(Error::Backend(format!("AES key length {n}"))),
    };
    // CTR: encryption and decryption are the same operation.
    count(
        Op::Cipher {
            alg,
            decrypt: false,
            lib: Lib::Openssl,
        },
        data.len(),
    );
    let iv = counter.to_be_bytes();
    let mut c = Crypter::new(cipher, Mode::Encrypt, key, Some(&iv)).map_err(backend)?;
    let mut out = vec![0u8; data.len() + 16];
    let mut n = c.update(data, &mut out).map_err(backend)?;
    n += c.finalize(&mut out[n..]).map_err(backend)?;
    out.truncate(n);
    Ok(out)
}

/// Blocks (or partial blocks) of `len` bytes at 16 bytes a block.
pub fn blocks(len: usize) -> u128 {
    len.div_ceil(16) as u128
}

/// Minimal big-endian bytes of a counter (no leading zero octets; zero is one 0 octet? No: empty).
pub fn counter_bytes(c: u128) -> Vec<u8> {
    let b = c.to_be_bytes();
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// Generate an RSA key pair (OpenSSL's RNG: not reproducible from the `Env`).
pub fn rsa_generate(bits: u32) -> Result<PKey<Private>> {
    let rsa = Rsa::generate(bits).map_err(backend)?;
    PKey::from_rsa(rsa).map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_ranges() {
        for id in SUPPORTED_GROUPS {
            let g = Group::get(id).unwrap();
            assert!(g.p.num_bits() >= 768);
            assert!(!g.in_range(&BigNum::from_u32(1).unwrap()));
            assert!(!g.in_range(&BigNum::from_u32(0).unwrap()));
            assert!(!g.in_range(&g.p_minus_1));
            assert!(g.in_range(&BigNum::from_u32(2).unwrap()));
        }
        assert!(Group::get(3).is_err());
        assert!(Group::get(4).is_err());
    }

    #[test]
    fn exponents_in_range_and_dh_agrees() {
        let g = Group::get(14).unwrap();
        let mut env = Env::for_party(1, "t");
        let ops = Ops;
        let ((), log) = e2elab_core::ops::recorded(|| {
            for size in [ExponentSize::Full, ExponentSize::Short] {
                let (xa, ea) = ops.dh_keygen(&mut env, &g, 128, size).unwrap();
                let (xb, eb) = ops.dh_keygen(&mut env, &g, 128, size).unwrap();
                assert!(xa.x.num_bits() >= 256);
                if size == ExponentSize::Short {
                    assert_eq!(xa.x.num_bits(), 256);
                } else {
                    assert!(xa.x.num_bits() > 1900);
                }
                let ka = ops.dh_shared(&g, &eb, &xa).unwrap();
                let kb = ops.dh_shared(&g, &ea, &xb).unwrap();
                assert_eq!(ka, kb);
            }
        });
        // Two key pairs and two agreements per size; full exponents are
        // named by the group's size, short ones by their 256 bits.
        for bits in [2048, 256] {
            let base2 = log.get(&Op::ModexpBase2 {
                group_bits: 2048,
                exp_bits: bits,
            });
            let other = log.get(&Op::Modexp {
                group_bits: 2048,
                exp_bits: bits,
            });
            assert_eq!((base2.calls, other.calls), (2, 2), "{bits}-bit exponents");
        }
        assert_eq!(log.public_key_calls(), 8);
    }

    #[test]
    fn ctr_counter_is_the_iv_and_counts_blocks() {
        let k = [7u8; 16];
        let whole = aes_ctr(&k, 5, &[0u8; 40]).unwrap();
        let tail = aes_ctr(&k, 5 + 2, &[0u8; 8]).unwrap();
        assert_eq!(&whole[32..], &tail[..]);
        assert_eq!(blocks(40), 3);
        assert_eq!(blocks(0), 0);
        assert_eq!(counter_bytes(0x0100), vec![1, 0]);
        assert_eq!(counter_bytes(0), Vec::<u8>::new());
        // wraps mod 2^128 like the spec's counter
        let a = aes_ctr(&k, u128::MAX, &[0u8; 32]).unwrap();
        let b = aes_ctr(&k, 0, &[0u8; 16]).unwrap();
        assert_eq!(&a[16..], &b[..]);
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).unwrap();
        assert_eq!(mac[..8], [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e]);
    }
}
