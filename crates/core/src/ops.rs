//! The primitive operations a protocol runs, counted where they happen.
//!
//! Every protocol crate records each cryptographic, encoding and XML
//! operation it performs with [`count`] (at the call, with the bytes it
//! processed) or, where the work happens inside a library we cannot
//! instrument (libotr, OpenSSL's CMS, Sequoia's packet machinery), with
//! [`derive`], stating how the count follows from that library's code path.
//! The records go to a per-thread [`OpLog`]: sessions are sans-IO and driven
//! one call at a time on one thread, so the harness reads [`snapshot`]
//! before and after a call and charges the difference to exactly that call.
//! Nothing is kept per session (the scale test's memory per session is not
//! inflated by the instrumentation).
//!
//! The floor of a phase is the time to run exactly the operations of its
//! log, one primitive call per recorded call on as many bytes as recorded
//! ([`Op`] names what is replayed). [`Op::ideal`] maps an operation to the
//! cheapest standard way to do the same thing (today: RSA with the CRT
//! parameters), which separates a protocol's floor from its library's.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;

/// A hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashAlg {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "SHA-1",
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha512 => "SHA-512",
        }
    }
}

/// A symmetric cipher and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CipherAlg {
    /// AES-128 in counter mode.
    Aes128Ctr,
    /// AES-192 in counter mode.
    Aes192Ctr,
    /// AES-256 in counter mode.
    Aes256Ctr,
    /// AES-128-CBC.
    Aes128Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// AES-128 in OpenPGP's CFB mode.
    Aes128Cfb,
    /// AES-256 in OpenPGP's CFB mode.
    Aes256Cfb,
    /// Triple DES (EDE3) CBC.
    DesEde3Cbc,
    /// AES-128 in Galois/counter mode (tag included).
    Aes128Gcm,
}

impl CipherAlg {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::Aes128Ctr => "AES-128-CTR",
            CipherAlg::Aes192Ctr => "AES-192-CTR",
            CipherAlg::Aes256Ctr => "AES-256-CTR",
            CipherAlg::Aes128Cbc => "AES-128-CBC",
            CipherAlg::Aes256Cbc => "AES-256-CBC",
            CipherAlg::Aes128Cfb => "AES-128-CFB",
            CipherAlg::Aes256Cfb => "AES-256-CFB",
            CipherAlg::DesEde3Cbc => "3DES-CBC",
            CipherAlg::Aes128Gcm => "AES-128-GCM",
        }
    }
}

/// The library that runs an operation (the floor runs it in the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lib {
    /// OpenSSL 3 (through the `openssl` crate, or Sequoia's OpenSSL backend).
    Openssl,
    /// libgcrypt (through libotr).
    Libgcrypt,
    /// libotr's own code (its base64).
    Libotr,
    /// Rust code in the tree (the `base64` crate, rxml through minidom).
    Rust,
    /// The RustCrypto and dalek crates inside vodozemac (Olm) and openmls's
    /// RustCrypto provider: protocol libraries whose primitives cannot be
    /// swapped for OpenSSL's.
    RustCrypto,
}

impl Lib {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Openssl => "OpenSSL",
            Lib::Libgcrypt => "libgcrypt",
            Lib::Libotr => "libotr",
            Lib::Rust => "Rust",
            Lib::RustCrypto => "RustCrypto",
        }
    }
}

/// How a floor charges an operation: the class it is summed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    /// Modular exponentiation / DH (key generation included).
    Modexp,
    /// Signature made.
    Sign,
    /// Signature verified.
    Verify,
    /// Public-key encryption (key transport).
    PkEncrypt,
    /// Public-key decryption.
    PkDecrypt,
    /// Symmetric cipher, MAC or hash.
    Symmetric,
    /// Base64.
    Encoding,
    /// XML serialization or parsing.
    Xml,
}

/// One kind of primitive operation. Byte-proportional kinds are recorded
/// with the bytes they processed; the others with the bytes they signed
/// (hashed first) or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// `2^x mod p` (the MODP groups' generator): a DH public value. OpenSSL.
    ModexpBase2 {
        /// Bits of p.
        group_bits: u16,
        /// Bits of the exponent.
        exp_bits: u16,
    },
    /// `y^x mod p` for a base other than 2: a DH agreement. OpenSSL.
    Modexp {
        /// Bits of p.
        group_bits: u16,
        /// Bits of the exponent.
        exp_bits: u16,
    },
    /// RSASSA-PKCS1-v1_5 signature over the recorded bytes. OpenSSL.
    RsaSign {
        /// Modulus bits.
        bits: u16,
        /// Digest.
        hash: HashAlg,
        /// With the CRT parameters (`false`: a key built from n, e, d only
        /// for every call, as Sequoia's OpenSSL backend does).
        crt: bool,
    },
    /// RSASSA-PKCS1-v1_5 verification. OpenSSL.
    RsaVerify {
        /// Modulus bits.
        bits: u16,
        /// Digest.
        hash: HashAlg,
    },
    /// RSAES-PKCS1-v1_5 encryption of a session key. OpenSSL.
    RsaEncrypt {
        /// Modulus bits.
        bits: u16,
    },
    /// RSAES-PKCS1-v1_5 decryption. OpenSSL.
    RsaDecrypt {
        /// Modulus bits.
        bits: u16,
        /// As for [`Op::RsaSign`].
        crt: bool,
    },
    /// RSAES-OAEP (MGF1/SHA-1) encryption of a session key. OpenSSL.
    RsaOaepEncrypt {
        /// Modulus bits.
        bits: u16,
    },
    /// RSAES-OAEP (MGF1/SHA-1) decryption. OpenSSL.
    RsaOaepDecrypt {
        /// Modulus bits.
        bits: u16,
        /// As for [`Op::RsaSign`].
        crt: bool,
    },
    /// Ed25519 signature over the recorded bytes. OpenSSL.
    Ed25519Sign,
    /// Ed25519 verification. OpenSSL.
    Ed25519Verify,
    /// Ed25519 signature in another library than OpenSSL.
    Ed25519SignWith {
        /// Library.
        lib: Lib,
    },
    /// Ed25519 verification in another library than OpenSSL.
    Ed25519VerifyWith {
        /// Library.
        lib: Lib,
    },
    /// X25519 key transport, sender: ephemeral key generation + agreement. OpenSSL.
    X25519Encrypt,
    /// X25519 key transport, receiver: one agreement. OpenSSL.
    X25519Decrypt,
    /// A fresh X25519 key pair (one fixed-base scalar multiplication).
    X25519Keygen {
        /// Library.
        lib: Lib,
    },
    /// One X25519 agreement with a given key pair.
    X25519Dh {
        /// Library.
        lib: Lib,
    },
    /// libotr's `otrl_dh_gen_keypair`: a DH-1536 key pair (libgcrypt powm, base 2).
    OtrDhKeypair,
    /// libotr's `otrl_dh_session`: a DH-1536 agreement (libgcrypt powm, other
    /// base) and the session keys derived from it.
    OtrDhSession,
    /// libotr's `otrl_privkey_sign`: DSA-1024.
    OtrDsaSign,
    /// libotr's `otrl_privkey_verify`: DSA-1024.
    OtrDsaVerify,
    /// A symmetric cipher over the recorded bytes.
    Cipher {
        /// Cipher and mode.
        alg: CipherAlg,
        /// Decrypting (CBC and CFB decrypt in parallel, so it differs).
        decrypt: bool,
        /// Library.
        lib: Lib,
    },
    /// An HMAC over the recorded bytes.
    Hmac {
        /// Hash.
        hash: HashAlg,
        /// Library.
        lib: Lib,
    },
    /// HKDF (extract and expand) producing the recorded output bytes.
    Hkdf {
        /// Hash.
        hash: HashAlg,
        /// Library.
        lib: Lib,
    },
    /// A hash over the recorded bytes.
    Digest {
        /// Hash.
        hash: HashAlg,
        /// Library.
        lib: Lib,
    },
    /// Base64 encoding of the recorded (input) bytes.
    Base64Encode {
        /// Library.
        lib: Lib,
    },
    /// Base64 decoding of the recorded (encoded) bytes.
    Base64Decode {
        /// Library.
        lib: Lib,
    },
    /// Serializing XML (minidom/rxml) of the recorded output bytes.
    XmlSerialize,
    /// Parsing XML (minidom/rxml) of the recorded input bytes.
    XmlParse,
}

impl Op {
    /// The class a summary counts it under.
    pub fn class(&self) -> OpClass {
        match self {
            Op::ModexpBase2 { .. }
            | Op::Modexp { .. }
            | Op::X25519Keygen { .. }
            | Op::X25519Dh { .. }
            | Op::OtrDhKeypair
            | Op::OtrDhSession => OpClass::Modexp,
            Op::RsaSign { .. } | Op::Ed25519Sign | Op::Ed25519SignWith { .. } | Op::OtrDsaSign => {
                OpClass::Sign
            }
            Op::RsaVerify { .. }
            | Op::Ed25519Verify
            | Op::Ed25519VerifyWith { .. }
            | Op::OtrDsaVerify => OpClass::Verify,
            Op::RsaEncrypt { .. } | Op::RsaOaepEncrypt { .. } | Op::X25519Encrypt => {
                OpClass::PkEncrypt
            }
            Op::RsaDecrypt { .. } | Op::RsaOaepDecrypt { .. } | Op::X25519Decrypt => {
                OpClass::PkDecrypt
            }
            Op::Cipher { .. } | Op::Hmac { .. } | Op::Hkdf { .. } | Op::Digest { .. } => {
                OpClass::Symmetric
            }
            Op::Base64Encode { .. } | Op::Base64Decode { .. } => OpClass::Encoding,
            Op::XmlSerialize | Op::XmlParse => OpClass::Xml,
        }
    }

    /// Whether it is a public-key operation.
    pub fn is_public_key(&self) -> bool {
        matches!(
            self.class(),
            OpClass::Modexp
                | OpClass::Sign
                | OpClass::Verify
                | OpClass::PkEncrypt
                | OpClass::PkDecrypt
        )
    }

    /// The library that runs it.
    pub fn lib(&self) -> Lib {
        match self {
            Op::OtrDhKeypair | Op::OtrDhSession | Op::OtrDsaSign | Op::OtrDsaVerify => {
                Lib::Libgcrypt
            }
            Op::Cipher { lib, .. }
            | Op::X25519Keygen { lib }
            | Op::X25519Dh { lib }
            | Op::Ed25519SignWith { lib }
            | Op::Ed25519VerifyWith { lib }
            | Op::Hkdf { lib, .. }
            | Op::Hmac { lib, .. }
            | Op::Digest { lib, .. }
            | Op::Base64Encode { lib }
            | Op::Base64Decode { lib } => *lib,
            Op::XmlSerialize | Op::XmlParse => Lib::Rust,
            _ => Lib::Openssl,
        }
    }

    /// The same work done the cheapest standard way: RSA private-key
    /// operations with the CRT parameters. The protocol's floor charges
    /// this; the library's floor charges the operation as run.
    pub fn ideal(&self) -> Op {
        match *self {
            Op::RsaSign { bits, hash, .. } => Op::RsaSign {
                bits,
                hash,
                crt: true,
            },
            Op::RsaDecrypt { bits, .. } => Op::RsaDecrypt { bits, crt: true },
            Op::RsaOaepDecrypt { bits, .. } => Op::RsaOaepDecrypt { bits, crt: true },
            other => other,
        }
    }

    /// Whether the amount of work grows with the recorded bytes (the floor
    /// replays such an operation on as many bytes).
    pub fn per_byte(&self) -> bool {
        matches!(
            self.class(),
            OpClass::Symmetric | OpClass::Encoding | OpClass::Xml
        ) || matches!(
            self,
            Op::RsaSign { .. }
                | Op::RsaVerify { .. }
                | Op::Ed25519Sign
                | Op::Ed25519Verify
                | Op::Ed25519SignWith { .. }
                | Op::Ed25519VerifyWith { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::ModexpBase2 {
                group_bits,
                exp_bits,
            } => write!(
                f,
                "modexp 2^x, {group_bits}-bit group, {exp_bits}-bit exponent"
            ),
            Op::Modexp {
                group_bits,
                exp_bits,
            } => write!(
                f,
                "modexp y^x, {group_bits}-bit group, {exp_bits}-bit exponent"
            ),
            Op::RsaSign { bits, hash, crt } => write!(
                f,
                "RSA-{bits} sign ({}){}",
                hash.name(),
                if *crt { "" } else { ", no CRT" }
            ),
            Op::RsaVerify { bits, hash } => write!(f, "RSA-{bits} verify ({})", hash.name()),
            Op::RsaEncrypt { bits } => write!(f, "RSA-{bits} encrypt"),
            Op::RsaDecrypt { bits, crt } => write!(
                f,
                "RSA-{bits} decrypt{}",
                if *crt { "" } else { ", no CRT" }
            ),
            Op::RsaOaepEncrypt { bits } => write!(f, "RSA-{bits} OAEP encrypt"),
            Op::RsaOaepDecrypt { bits, crt } => write!(
                f,
                "RSA-{bits} OAEP decrypt{}",
                if *crt { "" } else { ", no CRT" }
            ),
            Op::Ed25519Sign => f.write_str("Ed25519 sign"),
            Op::Ed25519Verify => f.write_str("Ed25519 verify"),
            Op::Ed25519SignWith { lib } => write!(f, "Ed25519 sign ({})", lib.name()),
            Op::Ed25519VerifyWith { lib } => write!(f, "Ed25519 verify ({})", lib.name()),
            Op::X25519Encrypt => f.write_str("X25519 keygen + derive"),
            Op::X25519Decrypt => f.write_str("X25519 derive"),
            Op::X25519Keygen { lib } => write!(f, "X25519 keygen ({})", lib.name()),
            Op::X25519Dh { lib } => write!(f, "X25519 agreement ({})", lib.name()),
            Op::OtrDhKeypair => f.write_str("otrl_dh_gen_keypair (DH-1536)"),
            Op::OtrDhSession => f.write_str("otrl_dh_session (DH-1536)"),
            Op::OtrDsaSign => f.write_str("otrl_privkey_sign (DSA-1024)"),
            Op::OtrDsaVerify => f.write_str("otrl_privkey_verify (DSA-1024)"),
            Op::Cipher { alg, decrypt, lib } => write!(
                f,
                "{} {} ({})",
                alg.name(),
                if *decrypt { "decrypt" } else { "encrypt" },
                lib.name()
            ),
            Op::Hmac { hash, lib } => write!(f, "HMAC-{} ({})", hash.name(), lib.name()),
            Op::Hkdf { hash, lib } => write!(f, "HKDF-{} ({})", hash.name(), lib.name()),
            Op::Digest { hash, lib } => write!(f, "{} ({})", hash.name(), lib.name()),
            Op::Base64Encode { lib } => write!(f, "base64 encode ({})", lib.name()),
            Op::Base64Decode { lib } => write!(f, "base64 decode ({})", lib.name()),
            Op::XmlSerialize => f.write_str("XML serialize"),
            Op::XmlParse => f.write_str("XML parse"),
        }
    }
}

/// Calls and bytes of one kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Calls.
    pub calls: u64,
    /// Bytes processed over all calls.
    pub bytes: u64,
    /// Some of the calls were derived from a library's code path rather
    /// than counted at the call.
    pub derived: bool,
}

/// Operations by kind, in first-recorded order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpLog {
    entries: Vec<(Op, Tally)>,
}

impl OpLog {
    /// Nothing recorded.
    pub fn new() -> OpLog {
        OpLog::default()
    }

    fn slot(&mut self, op: Op) -> &mut Tally {
        let i = match self.entries.iter().position(|(o, _)| *o == op) {
            Some(i) => i,
            None => {
                self.entries.push((op, Tally::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    /// Add `calls` calls processing `bytes` bytes in all.
    pub fn add(&mut self, op: Op, calls: u64, bytes: u64, derived: bool) {
        let t = self.slot(op);
        t.calls += calls;
        t.bytes += bytes;
        t.derived |= derived;
    }

    /// Add everything in `other`.
    pub fn merge(&mut self, other: &OpLog) {
        for (op, t) in &other.entries {
            self.add(*op, t.calls, t.bytes, t.derived);
        }
    }

    /// What was recorded after `earlier` (a snapshot of the same log).
    pub fn since(&self, earlier: &OpLog) -> OpLog {
        let mut out = OpLog::new();
        for (op, t) in &self.entries {
            let e = earlier.get(op);
            let calls = t.calls.saturating_sub(e.calls);
            if calls > 0 {
                out.add(
                    *op,
                    calls,
                    t.bytes.saturating_sub(e.bytes),
                    t.derived && !(e.derived && e.calls == t.calls),
                );
            }
        }
        out
    }

    /// The tally of `op` (zero if never recorded).
    pub fn get(&self, op: &Op) -> Tally {
        self.entries
            .iter()
            .find(|(o, _)| o == op)
            .map(|(_, t)| *t)
            .unwrap_or_default()
    }

    /// Every kind with its tally.
    pub fn iter(&self) -> impl Iterator<Item = &(Op, Tally)> {
        self.entries.iter()
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|(_, t)| t.calls == 0)
    }

    /// Calls of every kind in `class`.
    pub fn calls_in(&self, class: OpClass) -> u64 {
        self.entries
            .iter()
            .filter(|(o, _)| o.class() == class)
            .map(|(_, t)| t.calls)
            .sum()
    }

    /// Public-key calls of all kinds.
    pub fn public_key_calls(&self) -> u64 {
        self.entries
            .iter()
            .filter(|(o, _)| o.is_public_key())
            .map(|(_, t)| t.calls)
            .sum()
    }

    /// Whether any public-key count was derived.
    pub fn public_key_derived(&self) -> bool {
        self.entries
            .iter()
            .any(|(o, t)| o.is_public_key() && t.derived && t.calls > 0)
    }

    /// The same calls, each mapped by `f` (e.g. [`Op::ideal`]).
    pub fn map(&self, f: impl Fn(&Op) -> Op) -> OpLog {
        let mut out = OpLog::new();
        for (op, t) in &self.entries {
            out.add(f(op), t.calls, t.bytes, t.derived);
        }
        out
    }
}

thread_local! {
    static LOG: RefCell<OpLog> = RefCell::new(OpLog::new());
    static PAUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Record one call of `op` on `bytes` bytes, counted at the call.
pub fn count(op: Op, bytes: usize) {
    if !PAUSED.with(|p| p.get()) {
        LOG.with(|l| l.borrow_mut().add(op, 1, bytes as u64, false));
    }
}

/// Record `calls` calls of `op` on `bytes` bytes in all, derived from a
/// library's code path (the caller documents how).
pub fn derive(op: Op, calls: u64, bytes: u64) {
    if calls > 0 && !PAUSED.with(|p| p.get()) {
        LOG.with(|l| l.borrow_mut().add(op, calls, bytes, true));
    }
}

/// Run `f` with recording off on this thread (the harness's floors run
/// the primitives themselves and must not count as a protocol's work).
pub fn paused<T>(f: impl FnOnce() -> T) -> T {
    let was = PAUSED.with(|p| p.replace(true));
    let r = f();
    PAUSED.with(|p| p.set(was));
    r
}

/// Everything this thread has recorded so far.
pub fn snapshot() -> OpLog {
    LOG.with(|l| l.borrow().clone())
}

/// What `f` records on this thread, with its result.
pub fn recorded<T>(f: impl FnOnce() -> T) -> (T, OpLog) {
    let before = snapshot();
    let r = f();
    (r, snapshot().since(&before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_classes() {
        let (_, log) = recorded(|| {
            count(
                Op::ModexpBase2 {
                    group_bits: 2048,
                    exp_bits: 2047,
                },
                0,
            );
            count(
                Op::Hmac {
                    hash: HashAlg::Sha256,
                    lib: Lib::Openssl,
                },
                100,
            );
            count(
                Op::Hmac {
                    hash: HashAlg::Sha256,
                    lib: Lib::Openssl,
                },
                50,
            );
            derive(Op::OtrDhSession, 2, 0);
        });
        assert_eq!(log.calls_in(OpClass::Modexp), 3);
        assert_eq!(log.public_key_calls(), 3);
        assert!(log.public_key_derived());
        let h = log.get(&Op::Hmac {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        });
        assert_eq!((h.calls, h.bytes, h.derived), (2, 150, false));
        let (_, none) = recorded(|| ());
        assert!(none.is_empty());
        let (_, quiet) = recorded(|| paused(|| count(Op::XmlParse, 10)));
        assert!(quiet.is_empty());
    }

    #[test]
    fn ideal_is_rsa_with_crt() {
        let s = Op::RsaSign {
            bits: 2048,
            hash: HashAlg::Sha256,
            crt: false,
        };
        assert_eq!(
            s.ideal(),
            Op::RsaSign {
                bits: 2048,
                hash: HashAlg::Sha256,
                crt: true
            }
        );
        assert_eq!(Op::XmlParse.ideal(), Op::XmlParse);
        assert_eq!(s.to_string(), "RSA-2048 sign (SHA-256), no CRT");
    }
}
