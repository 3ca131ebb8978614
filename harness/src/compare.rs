//! `e2elab compare`: the measured comparison of every selected profile.
//!
//! One run measures, interleaved across protocols (repetition `r` runs every
//! protocol once before repetition `r + 1` starts, so machine drift hits all
//! alike) and repeated (repetition 0 is a warm-up and is discarded):
//! - the handshake (stanzas, flights, round trips, bytes each way, CPU per
//!   side, public-key operations per side, counted or derived);
//! - the one-time long-term key generation, apart;
//! - a per-message sweep over body sizes (wire bytes, expansion over the
//!   plaintext stanza, send and receive CPU, public-key operations);
//! - the first protected message after the handshake, from which the time to
//!   first protected message under network models is computed (see
//!   [`TTFM_FORMULA`]);
//! - primitive floors (OpenSSL modexp per MODP group, RSA, Ed25519/X25519,
//!   AES, HMAC; libgcrypt modexp and DSA through libotr), each handshake's
//!   cost as a ratio to the sum of its public-key operations' floors.
//!
//! Every timed figure is a [`Stat`] (median, min, max, quartiles) over the
//! measured repetitions. Output: `DIR/results.json` plus CSV files; nothing
//! in them was not measured in that run (provenance names the run).

use crate::cpu;
use crate::driver;
use crate::link::{CallKind, Dir, Link, Phase};
use crate::registry;
use e2elab_core::{stanza, Env, OpLog, Options, Protocol};
use e2elab_esessions::prim::{self, ExponentSize, Group, Ops};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Body sizes of the per-message sweep, bytes.
pub const SIZES: [usize; 8] = [0, 16, 64, 256, 1024, 4096, 16384, 65536];

/// Body size of the first protected message (the time-to-first-message figure).
pub const FIRST_MESSAGE_SIZE: usize = 64;

/// The network models: (name, round-trip time in ms).
pub const NETWORKS: [(&str, f64); 4] = [
    ("LAN", 1.0),
    ("broadband", 30.0),
    ("mobile", 150.0),
    ("satellite", 600.0),
];

/// How the time to first protected message is computed.
pub const TTFM_FORMULA: &str = "TTFM = CPU(all handshake calls, both sides) + CPU(initiator's send of the first message) \
+ CPU(responder's receipt of it) + legs x RTT/2, where legs = flights if the handshake has an odd number of flights \
(its last flight goes initiator->responder and the first message rides right behind it) and flights + 1 otherwise \
(the initiator waits for the last flight, then sends; 1 leg with no handshake). Handshake calls are strictly \
sequential on the link (each answers a delivery), so all of them are on the critical path. No bandwidth cap.";

/// How a floor ratio is computed.
pub const FLOOR_FORMULA: &str = "floor = sum over operation kinds of (operations counted or derived by the sessions) x \
(median CPU of that primitive measured in this run); ratio = measured median CPU / floor. Handshake: both sides' \
handshake calls. Message: send + receive CPU per message at 1 KiB bodies.";

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Smoke-run sizes.
    pub quick: bool,
    /// Profile ids (empty or `all`: every profile).
    pub protocols: Vec<String>,
    /// Seed.
    pub seed: u64,
}

/// The repetition counts of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: String,
    /// Warm-up repetitions (discarded).
    pub warmup: usize,
    /// Measured repetitions.
    pub reps: usize,
    /// Messages each way per size per repetition.
    pub messages_per_size: u64,
    /// Body sizes.
    pub sizes: Vec<usize>,
    /// Long-term key generations measured per profile.
    pub keygen_reps: usize,
    /// Calls of each primitive per repetition.
    pub primitive_calls: usize,
    /// Established session pairs held at once in the scale test (0: skipped).
    #[serde(default)]
    pub scale_pairs: usize,
}

impl Plan {
    /// The plan for a mode.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                mode: "quick".into(),
                warmup: 1,
                reps: 3,
                messages_per_size: 1,
                sizes: SIZES.to_vec(),
                keygen_reps: 1,
                primitive_calls: 3,
                scale_pairs: 20,
            }
        } else {
            Plan {
                mode: "full".into(),
                warmup: 1,
                reps: 41,
                messages_per_size: 8,
                sizes: SIZES.to_vec(),
                keygen_reps: 10,
                primitive_calls: 20,
                scale_pairs: 1000,
            }
        }
    }
}

/// Median with spread of repeated measurements.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
}

impl Stat {
    /// Summary of samples (all zero if there are none).
    pub fn of(v: &[f64]) -> Stat {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Stat::default();
        }
        s.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (s.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
        };
        Stat {
            n: s.len(),
            median: q(0.5),
            min: s[0],
            max: s[s.len() - 1],
            q1: q(0.25),
            q3: q(0.75),
        }
    }

    /// Interquartile range.
    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }
}

pub use crate::cost::PkOps as Ops5;

/// Where the run came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` (+ `-dirty` if the work tree differs), or `unknown`.
    pub git_revision: String,
    /// `rustc --version` at run time, or the compiler of this binary if absent.
    pub rustc: String,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// OpenSSL library version (run time).
    pub openssl: String,
    /// libgcrypt version (pkg-config at run time).
    pub libgcrypt: String,
    /// libotr version (pkg-config at run time).
    pub libotr: String,
    /// sequoia-openpgp version (Cargo.lock at build time).
    pub sequoia_openpgp: String,
    /// The e2elab version.
    pub e2elab: String,
    /// The run seed.
    pub seed: u64,
    /// Start of the run, UTC (RFC 3339).
    pub date: String,
    /// Wall time of the measurement, seconds.
    pub wall_seconds: f64,
    /// The command line.
    pub command: String,
    /// Wall time of the whole `e2elab reproduce` (compare + report), seconds,
    /// when the run was made by it.
    #[serde(default)]
    pub reproduce_wall_seconds: Option<f64>,
    /// `/proc/loadavg` (1, 5, 15 min) when the measurement started: other
    /// work on the machine shows here.
    #[serde(default)]
    pub load_average_start: String,
    /// `/proc/loadavg` when it ended.
    #[serde(default)]
    pub load_average_end: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A profile in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRow {
    /// Id.
    pub id: String,
    /// Family.
    pub family: String,
    /// Spec.
    pub spec: String,
}

/// Handshake figures of one profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandshakeRow {
    /// Profile.
    pub protocol: String,
    /// Stanzas both ways.
    pub messages: u64,
    /// Flights.
    pub flights: u64,
    /// Flights / 2.
    pub round_trips: f64,
    /// Bytes the initiator sent (median).
    pub bytes_initiator: Stat,
    /// Bytes the responder sent (median).
    pub bytes_responder: Stat,
    /// Initiator CPU, microseconds.
    pub cpu_us_initiator: Stat,
    /// Responder CPU, microseconds.
    pub cpu_us_responder: Stat,
    /// Both sides.
    pub cpu_us_total: Stat,
    /// Initiator's public-key operations.
    pub ops_initiator: Ops5,
    /// Responder's.
    pub ops_responder: Ops5,
    /// `counted` or `derived`.
    pub ops_source: String,
}

/// One-time key generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeygenRow {
    /// Profile.
    pub protocol: String,
    /// CPU of one long-term identity, microseconds.
    pub cpu_us: Stat,
}

/// One size of the per-message sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRow {
    /// Profile.
    pub protocol: String,
    /// Body bytes.
    pub size: usize,
    /// Serialized application stanza bytes per message (what `plaintext` sends).
    pub plaintext_bytes: Stat,
    /// Serialized wire bytes per message.
    pub wire_bytes: Stat,
    /// Wire stanzas per message.
    pub wire_stanzas: Stat,
    /// wire / plaintext bytes.
    pub expansion: Stat,
    /// `send` CPU per message, microseconds.
    pub send_cpu_us: Stat,
    /// Receiving CPU per message, microseconds.
    pub recv_cpu_us: Stat,
    /// Public-key operations per message (both sides, mean over the run).
    pub ops: Ops5,
}

/// The first protected message and the time to it per network model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Profile.
    pub protocol: String,
    /// Network model.
    pub network: String,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// One-way legs on the critical path.
    pub legs: u64,
    /// CPU on the critical path, ms.
    pub cpu_ms: Stat,
    /// Time to first protected message, ms.
    pub ttfm_ms: Stat,
}

/// One measured primitive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrimitiveRow {
    /// Name (the key floors refer to).
    pub name: String,
    /// Library.
    pub library: String,
    /// CPU per call, microseconds.
    pub cpu_us: Stat,
}

/// A cost against its primitive floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorRow {
    /// Profile.
    pub protocol: String,
    /// `handshake` or `message` (1 KiB).
    pub phase: String,
    /// Operations (both sides).
    pub ops: Ops5,
    /// `counted` or `derived`.
    pub ops_source: String,
    /// The primitive each operation kind is charged at.
    pub primitives: Vec<(String, String)>,
    /// The floor, microseconds.
    pub floor_us: f64,
    /// Measured median, microseconds.
    pub measured_us: f64,
    /// measured / floor.
    pub ratio: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Where it came from.
    pub provenance: Provenance,
    /// Repetitions.
    pub plan: Plan,
    /// [`TTFM_FORMULA`].
    pub ttfm_formula: String,
    /// [`FLOOR_FORMULA`].
    pub floor_formula: String,
    /// Profiles, in report order.
    pub profiles: Vec<ProfileRow>,
    /// Handshakes.
    pub handshake: Vec<HandshakeRow>,
    /// Key generation.
    pub keygen: Vec<KeygenRow>,
    /// Per-message sweep.
    pub messages: Vec<MessageRow>,
    /// Time to first protected message.
    pub latency: Vec<LatencyRow>,
    /// Primitive floors.
    pub primitives: Vec<PrimitiveRow>,
    /// Costs over floors.
    pub floors: Vec<FloorRow>,
    /// Directed presence, for profiles that protect presence.
    #[serde(default)]
    pub presence: Vec<PresenceRow>,
    /// Many established sessions at once.
    #[serde(default)]
    pub scale: Vec<ScaleRow>,
}

/// One directed presence each way (profiles whose `protects` has presence).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceRow {
    /// Profile.
    pub protocol: String,
    /// Serialized application presence bytes.
    pub plaintext_bytes: Stat,
    /// Serialized wire bytes.
    pub wire_bytes: Stat,
    /// wire / plaintext.
    pub expansion: Stat,
    /// `send` CPU, microseconds.
    pub send_cpu_us: Stat,
    /// Receiving CPU, microseconds.
    pub recv_cpu_us: Stat,
}

/// N established session pairs held in memory at once, then a message mix
/// over all of them (one measurement, not repeated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRow {
    /// Profile.
    pub protocol: String,
    /// Session pairs (2 sessions each).
    pub pairs: usize,
    /// Growth of the malloc heap in use (glibc `mallinfo2`: arena + mmap)
    /// per established session (one side), bytes, after the handshakes.
    pub heap_bytes_per_session: f64,
    /// Wall time to create and establish all pairs, seconds.
    pub setup_seconds: f64,
    /// Messages in the mix.
    pub mix_messages: u64,
    /// Body bytes in the mix.
    pub mix_body_bytes: u64,
    /// Wire bytes of the mix.
    pub mix_wire_bytes: u64,
    /// Messages per second of wall time (send + delivery, one thread).
    pub mix_messages_per_second: f64,
    /// CPU per message, microseconds (both sides).
    pub mix_cpu_us_per_message: f64,
}

// ---------------------------------------------------------------------------
// Primitive floors

/// Names of the primitives measured.
pub mod names {
    /// OpenSSL modexp, MODP group 14, full-size exponent.
    pub const MODEXP_14: &str = "OpenSSL modexp MODP-14 (2048-bit), full exponent";
    /// OpenSSL modexp, MODP group 14, short exponent.
    pub const MODEXP_14_SHORT: &str = "OpenSSL modexp MODP-14 (2048-bit), 256-bit exponent";
    /// OpenSSL modexp, MODP group 5.
    pub const MODEXP_5: &str = "OpenSSL modexp MODP-5 (1536-bit), full exponent";
    /// RSA-2048 sign SHA-1.
    pub const RSA_SIGN_SHA1: &str = "OpenSSL RSA-2048 sign (PKCS#1 v1.5, SHA-1)";
    /// RSA-2048 verify SHA-1.
    pub const RSA_VERIFY_SHA1: &str = "OpenSSL RSA-2048 verify (PKCS#1 v1.5, SHA-1)";
    /// RSA-2048 sign SHA-256.
    pub const RSA_SIGN_SHA256: &str = "OpenSSL RSA-2048 sign (PKCS#1 v1.5, SHA-256)";
    /// RSA-2048 verify SHA-256.
    pub const RSA_VERIFY_SHA256: &str = "OpenSSL RSA-2048 verify (PKCS#1 v1.5, SHA-256)";
    /// RSA-2048 encryption.
    pub const RSA_ENC: &str = "OpenSSL RSA-2048 encrypt (PKCS#1 v1.5)";
    /// RSA-2048 decryption.
    pub const RSA_DEC: &str = "OpenSSL RSA-2048 decrypt (PKCS#1 v1.5)";
    /// Ed25519 sign.
    pub const ED25519_SIGN: &str = "OpenSSL Ed25519 sign";
    /// Ed25519 verify.
    pub const ED25519_VERIFY: &str = "OpenSSL Ed25519 verify";
    /// X25519 ephemeral key + agreement (ECDH key transport, sender side).
    pub const X25519_ENC: &str = "OpenSSL X25519 keygen + derive";
    /// X25519 agreement (receiver side).
    pub const X25519_DEC: &str = "OpenSSL X25519 derive";
    /// AES-128-CTR over 1 KiB.
    pub const AES_CTR: &str = "OpenSSL AES-128-CTR, 1 KiB";
    /// AES-128-CBC over 1 KiB.
    pub const AES_CBC: &str = "OpenSSL AES-128-CBC, 1 KiB";
    /// HMAC-SHA256 over 1 KiB.
    pub const HMAC: &str = "OpenSSL HMAC-SHA256, 1 KiB";
    /// libgcrypt modexp via libotr DH key generation.
    pub const GCRY_MODEXP: &str = "libgcrypt modexp DH-1536 (otrl_dh_gen_keypair)";
    /// libotr session-key derivation.
    pub const GCRY_SESSION: &str = "libgcrypt DH-1536 agreement + key derivation (otrl_dh_session)";
    /// DSA sign via libotr.
    pub const GCRY_DSA_SIGN: &str = "libgcrypt DSA-1024 sign (otrl_privkey_sign)";
    /// DSA verify via libotr.
    pub const GCRY_DSA_VERIFY: &str = "libgcrypt DSA-1024 verify (otrl_privkey_verify)";
}

/// One call of a primitive, checked.
pub type PrimFn = Box<dyn FnMut() -> Result<(), String>>;

fn e<T: std::fmt::Display>(what: &'static str) -> impl Fn(T) -> String {
    move |x| format!("{what}: {x}")
}

/// Build the primitive timers: (name, library, one call). Keys are made
/// here (OpenSSL's and libotr's own RNG); exponents come from `seed`.
pub fn primitives(seed: u64) -> Result<Vec<(&'static str, &'static str, PrimFn)>, String> {
    use names::*;
    let mut out: Vec<(&'static str, &'static str, PrimFn)> = Vec::new();
    let mut env = Env::for_party(seed, "floor");
    for (name, id, size) in [
        (MODEXP_14, 14, ExponentSize::Full),
        (MODEXP_14_SHORT, 14, ExponentSize::Short),
        (MODEXP_5, 5, ExponentSize::Full),
    ] {
        let g = Group::get(id).map_err(e("group"))?;
        let x = prim::draw_exponent(&mut env, &g, 128, size).map_err(e("exponent"))?;
        let base = Ops.modexp_g(&g, &x).map_err(e("modexp"))?;
        let x2 = prim::draw_exponent(&mut env, &g, 128, size).map_err(e("exponent"))?;
        out.push((
            name,
            "OpenSSL",
            Box::new(move || {
                // Raising the peer's value (an arbitrary base), as a DH agreement does.
                Ops.modexp(&g, &base, &x2)
                    .map(|_| ())
                    .map_err(|x| x.to_string())
            }),
        ));
    }
    let rsa: PKey<Private> = prim::rsa_generate(2048).map_err(e("rsa"))?;
    let rsa_pub =
        PKey::public_key_from_der(&rsa.public_key_to_der().map_err(e("der"))?).map_err(e("der"))?;
    let data = [0x5au8; 32];
    for (sname, vname, md) in [
        (RSA_SIGN_SHA1, RSA_VERIFY_SHA1, MessageDigest::sha1()),
        (RSA_SIGN_SHA256, RSA_VERIFY_SHA256, MessageDigest::sha256()),
    ] {
        let k = rsa.clone();
        out.push((
            sname,
            "OpenSSL",
            Box::new(move || {
                Ops.rsa_sign(&k, md, &data)
                    .map(|_| ())
                    .map_err(|x| x.to_string())
            }),
        ));
        let sig = Ops.rsa_sign(&rsa, md, &data).map_err(e("rsa sign"))?;
        let p = rsa_pub.clone();
        out.push((
            vname,
            "OpenSSL",
            Box::new(move || match Ops.rsa_verify(&p, md, &data, &sig) {
                Ok(true) => Ok(()),
                Ok(false) => Err("RSA verify: bad signature".into()),
                Err(x) => Err(x.to_string()),
            }),
        ));
    }
    {
        let r = rsa.rsa().map_err(e("rsa"))?;
        let pubr = rsa_pub.rsa().map_err(e("rsa"))?;
        let mut ct = vec![0u8; 256];
        let n = pubr
            .public_encrypt(&[7u8; 16], &mut ct, openssl::rsa::Padding::PKCS1)
            .map_err(e("rsa encrypt"))?;
        ct.truncate(n);
        out.push((
            RSA_ENC,
            "OpenSSL",
            Box::new(move || {
                let mut c = vec![0u8; 256];
                pubr.public_encrypt(&[7u8; 16], &mut c, openssl::rsa::Padding::PKCS1)
                    .map(|_| ())
                    .map_err(|x| x.to_string())
            }),
        ));
        out.push((
            RSA_DEC,
            "OpenSSL",
            Box::new(move || {
                let mut p = vec![0u8; 256];
                match r.private_decrypt(&ct, &mut p, openssl::rsa::Padding::PKCS1) {
                    Ok(16) if p[..16] == [7u8; 16] => Ok(()),
                    Ok(_) => Err("RSA decrypt: wrong plaintext".into()),
                    Err(x) => Err(x.to_string()),
                }
            }),
        ));
    }
    {
        let ed = PKey::generate_ed25519().map_err(e("ed25519"))?;
        let ed_pub = PKey::public_key_from_raw_bytes(
            &ed.raw_public_key().map_err(e("ed25519"))?,
            openssl::pkey::Id::ED25519,
        )
        .map_err(e("ed25519"))?;
        let sig = openssl::sign::Signer::new_without_digest(&ed)
            .and_then(|mut s| s.sign_oneshot_to_vec(&data))
            .map_err(e("ed25519 sign"))?;
        let k = ed.clone();
        out.push((
            ED25519_SIGN,
            "OpenSSL",
            Box::new(move || {
                openssl::sign::Signer::new_without_digest(&k)
                    .and_then(|mut s| s.sign_oneshot_to_vec(&data))
                    .map(|_| ())
                    .map_err(|x| x.to_string())
            }),
        ));
        out.push((
            ED25519_VERIFY,
            "OpenSSL",
            Box::new(move || {
                match openssl::sign::Verifier::new_without_digest(&ed_pub)
                    .and_then(|mut v| v.verify_oneshot(&sig, &data))
                {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("Ed25519 verify: bad signature".into()),
                    Err(x) => Err(x.to_string()),
                }
            }),
        ));
        let peer = PKey::generate_x25519().map_err(e("x25519"))?;
        let peer_pub = PKey::public_key_from_raw_bytes(
            &peer.raw_public_key().map_err(e("x25519"))?,
            openssl::pkey::Id::X25519,
        )
        .map_err(e("x25519"))?;
        let pp = peer_pub.clone();
        out.push((
            X25519_ENC,
            "OpenSSL",
            Box::new(move || {
                let eph = PKey::generate_x25519().map_err(|x| x.to_string())?;
                let mut d = openssl::derive::Deriver::new(&eph).map_err(|x| x.to_string())?;
                d.set_peer(&pp).map_err(|x| x.to_string())?;
                d.derive_to_vec().map(|_| ()).map_err(|x| x.to_string())
            }),
        ));
        let mine = PKey::generate_x25519().map_err(e("x25519"))?;
        out.push((
            X25519_DEC,
            "OpenSSL",
            Box::new(move || {
                let mut d = openssl::derive::Deriver::new(&mine).map_err(|x| x.to_string())?;
                d.set_peer(&peer_pub).map_err(|x| x.to_string())?;
                d.derive_to_vec().map(|_| ()).map_err(|x| x.to_string())
            }),
        ));
    }
    let kib = vec![0x42u8; 1024];
    let k1 = kib.clone();
    out.push((
        AES_CTR,
        "OpenSSL",
        Box::new(move || {
            prim::aes_ctr(&[7u8; 16], 1, &k1)
                .map(|_| ())
                .map_err(|x| x.to_string())
        }),
    ));
    let k2 = kib.clone();
    out.push((
        AES_CBC,
        "OpenSSL",
        Box::new(move || {
            openssl::symm::encrypt(
                openssl::symm::Cipher::aes_128_cbc(),
                &[7u8; 16],
                Some(&[1u8; 16]),
                &k2,
            )
            .map(|_| ())
            .map_err(|x| x.to_string())
        }),
    ));
    out.push((
        HMAC,
        "OpenSSL",
        Box::new(move || {
            prim::hmac_sha256(&[9u8; 32], &[&kib])
                .map(|_| ())
                .map_err(|x| x.to_string())
        }),
    ));
    // libgcrypt through libotr: a fresh DSA key (uncached) for the timer.
    let account = "floor@example.org";
    let (key_file, _) = e2elab_otr::generate_key_file(account).map_err(e("otr key"))?;
    let p = std::rc::Rc::new(std::cell::RefCell::new(
        e2elab_otr::ffi::Primitives::new(&key_file, account).map_err(e("otr primitives"))?,
    ));
    let sig = p.borrow_mut().dsa_sign().map_err(e("dsa sign"))?;
    let (p1, p2, p3, p4) = (p.clone(), p.clone(), p.clone(), p);
    out.push((
        GCRY_MODEXP,
        "libgcrypt",
        Box::new(move || p1.borrow_mut().dh_keygen().map_err(|x| x.to_string())),
    ));
    out.push((
        GCRY_SESSION,
        "libgcrypt",
        Box::new(move || p2.borrow_mut().dh_session().map_err(|x| x.to_string())),
    ));
    out.push((
        GCRY_DSA_SIGN,
        "libgcrypt",
        Box::new(move || {
            p3.borrow_mut()
                .dsa_sign()
                .map(|_| ())
                .map_err(|x| x.to_string())
        }),
    ));
    out.push((
        GCRY_DSA_VERIFY,
        "libgcrypt",
        Box::new(move || p4.borrow_mut().dsa_verify(&sig).map_err(|x| x.to_string())),
    ));
    Ok(out)
}

/// The primitive each operation kind of a profile is charged at (modexp,
/// sign, verify, pk_encrypt, pk_decrypt), from what each crate documents it
/// uses with default options.
pub fn floor_map(protocol: &str) -> Option<[&'static str; 5]> {
    use names::*;
    Some(match protocol {
        "esessions-sigma-r" | "esessions-sigma-i" | "esessions-simplified" => [
            MODEXP_14,
            RSA_SIGN_SHA256,
            RSA_VERIFY_SHA256,
            RSA_ENC,
            RSA_DEC,
        ],
        "esessions-ssh" => [MODEXP_14, RSA_SIGN_SHA1, RSA_VERIFY_SHA1, RSA_ENC, RSA_DEC],
        "rfc3923" => [MODEXP_14, RSA_SIGN_SHA1, RSA_VERIFY_SHA1, RSA_ENC, RSA_DEC],
        "rfc3923-modern" | "jep0027" => [
            MODEXP_14,
            RSA_SIGN_SHA256,
            RSA_VERIFY_SHA256,
            RSA_ENC,
            RSA_DEC,
        ],
        "xep0373-ox" => [
            MODEXP_14,
            ED25519_SIGN,
            ED25519_VERIFY,
            X25519_ENC,
            X25519_DEC,
        ],
        "otr-v3" | "otr-v2" => [
            GCRY_MODEXP,
            GCRY_DSA_SIGN,
            GCRY_DSA_VERIFY,
            RSA_ENC,
            RSA_DEC,
        ],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The run

/// Raw samples of one profile over the measured repetitions.
#[derive(Default)]
struct Acc {
    hs_messages: u64,
    hs_flights: u64,
    hs_bytes: [Vec<f64>; 2],
    hs_cpu: [Vec<f64>; 2],
    hs_ops: [Ops5; 2],
    source: String,
    keygen: Vec<f64>,
    first_send: Vec<f64>,
    first_recv: Vec<f64>,
    crit_cpu: Vec<f64>,
    sizes: Vec<SizeAcc>,
    presence: Option<SizeAcc>,
}

#[derive(Default, Clone)]
struct SizeAcc {
    plaintext: Vec<f64>,
    wire: Vec<f64>,
    stanzas: Vec<f64>,
    expansion: Vec<f64>,
    send: Vec<f64>,
    recv: Vec<f64>,
    ops: Ops5,
    messages: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn source_name(o: &OpLog) -> String {
    crate::cost::source(o).into()
}

fn sum_cpu(link: &Link, from: usize, kind: Option<CallKind>, party: Option<usize>) -> f64 {
    us(link.samples[from..]
        .iter()
        .filter(|s| kind.is_none_or(|k| s.kind == k) && party.is_none_or(|p| s.party == p))
        .map(|s| s.cpu_ns)
        .sum())
}

/// Send one application stanza from party `from` and check it arrives intact.
fn one_message(
    link: &mut Link,
    seed: u64,
    from: usize,
    n: u64,
    size: usize,
) -> Result<u64, String> {
    let el = driver::workload_stanza(seed, from, n, size)?;
    let pt = stanza::wire_size(&el) as u64;
    link.advance(driver::MESSAGE_INTERVAL);
    let before = link.party(1 - from).delivered.len();
    link.send(from, el.clone())
        .map_err(|x| format!("send #{n} ({size} B): {x}"))?;
    link.pump().map_err(|x| x.to_string())?;
    let got = &link.party(1 - from).delivered[before..];
    if got != [el] {
        return Err(format!(
            "message #{n} ({size} B) from party {from} not delivered intact ({} delivered; errors {:?})",
            got.len(),
            link.party(1 - from).errors
        ));
    }
    Ok(pt)
}

/// A directed presence (show, status, priority) from party `from`.
pub fn presence_stanza(seed: u64, from: usize, n: u64) -> Result<e2elab_core::Element, String> {
    let mut p = stanza::new(e2elab_core::StanzaKind::Presence);
    let to = driver::full_jid(1 - from);
    let me = driver::full_jid(from);
    for (k, v) in [
        ("from", me.as_str()),
        ("to", to.as_str()),
        ("id", &format!("p{from}-{n}")),
    ] {
        stanza::set_attr(&mut p, k, v).map_err(|x| x.to_string())?;
    }
    p.append_child(stanza::text_element("show", stanza::NS_CLIENT, "away"));
    p.append_child(stanza::text_element(
        "status",
        stanza::NS_CLIENT,
        &driver::body_text(seed, n, 24),
    ));
    p.append_child(stanza::text_element("priority", stanza::NS_CLIENT, "5"));
    Ok(p)
}

fn one_presence(link: &mut Link, seed: u64, from: usize, n: u64) -> Result<u64, String> {
    let el = presence_stanza(seed, from, n)?;
    let pt = stanza::wire_size(&el) as u64;
    link.advance(driver::MESSAGE_INTERVAL);
    let before = link.party(1 - from).delivered.len();
    link.send(from, el.clone())
        .map_err(|x| format!("send presence #{n}: {x}"))?;
    link.pump().map_err(|x| x.to_string())?;
    let got = &link.party(1 - from).delivered[before..];
    if got != [el] {
        return Err(format!(
            "presence #{n} from party {from} not delivered intact ({} delivered; errors {:?})",
            got.len(),
            link.party(1 - from).errors
        ));
    }
    Ok(pt)
}

fn total_ops(link: &Link) -> Ops5 {
    let mut all = link.party(0).ops(Phase::Data).clone();
    all.merge(link.party(1).ops(Phase::Data));
    Ops5::of(&all)
}

/// One repetition of one profile: handshake, first message, sweep.
fn one_rep(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    plan: &Plan,
    seed: u64,
    acc: &mut Acc,
    keep: bool,
    mut step: impl FnMut(&str),
) -> Result<(), String> {
    let id = proto.info().id;
    let mut link = driver::link_for(proto, ids, seed, &Options::new())?;
    step("handshake");
    link.handshake().map_err(|x| format!("{id}: {x}"))?;
    link.set_phase(Phase::Data);
    let hs = Phase::Handshake;
    let crit_hs = sum_cpu(&link, 0, None, None);
    // First protected message, initiator -> responder.
    let mark = link.samples.len();
    one_message(&mut link, seed, 0, 0, FIRST_MESSAGE_SIZE).map_err(|x| format!("{id}: {x}"))?;
    let first_send = sum_cpu(&link, mark, Some(CallKind::Send), Some(0));
    let first_recv = sum_cpu(&link, mark, Some(CallKind::Receive), Some(1));
    let mut n = 1u64;
    let mut sizes = Vec::new();
    for &size in &plan.sizes {
        step(&format!("{size} B messages"));
        let mark = link.samples.len();
        let c0 = [
            link.counters(Phase::Data, Dir::AtoB),
            link.counters(Phase::Data, Dir::BtoA),
        ];
        let ops0 = total_ops(&link);
        let mut pt = 0u64;
        for _ in 0..plan.messages_per_size {
            for from in 0..2 {
                pt += one_message(&mut link, seed, from, n, size)
                    .map_err(|x| format!("{id}: {x}"))?;
                n += 1;
            }
        }
        let c1 = [
            link.counters(Phase::Data, Dir::AtoB),
            link.counters(Phase::Data, Dir::BtoA),
        ];
        let wire = (c1[0].bytes + c1[1].bytes) - (c0[0].bytes + c0[1].bytes);
        let stanzas = (c1[0].messages + c1[1].messages) - (c0[0].messages + c0[1].messages);
        let k = (plan.messages_per_size * 2) as f64;
        let ops = Ops5 {
            modexp: total_ops(&link).modexp - ops0.modexp,
            sign: total_ops(&link).sign - ops0.sign,
            verify: total_ops(&link).verify - ops0.verify,
            pk_encrypt: total_ops(&link).pk_encrypt - ops0.pk_encrypt,
            pk_decrypt: total_ops(&link).pk_decrypt - ops0.pk_decrypt,
        };
        sizes.push((
            pt as f64 / k,
            wire as f64 / k,
            stanzas as f64 / k,
            wire as f64 / pt as f64,
            sum_cpu(&link, mark, Some(CallKind::Send), None) / k,
            sum_cpu(&link, mark, Some(CallKind::Receive), None) / k,
            ops,
            k,
        ));
    }
    let mut presence = None;
    if proto
        .info()
        .protects
        .contains(&e2elab_core::StanzaKind::Presence)
    {
        step("directed presence");
        let mark = link.samples.len();
        let c0 = link.counters(Phase::Data, Dir::AtoB).bytes
            + link.counters(Phase::Data, Dir::BtoA).bytes;
        let mut pt = 0u64;
        for from in 0..2 {
            pt += one_presence(&mut link, seed, from, n).map_err(|x| format!("{id}: {x}"))?;
            n += 1;
        }
        let wire = link.counters(Phase::Data, Dir::AtoB).bytes
            + link.counters(Phase::Data, Dir::BtoA).bytes
            - c0;
        presence = Some((
            pt as f64 / 2.0,
            wire as f64 / 2.0,
            wire as f64 / pt as f64,
            sum_cpu(&link, mark, Some(CallKind::Send), None) / 2.0,
            sum_cpu(&link, mark, Some(CallKind::Receive), None) / 2.0,
        ));
    }
    link.finish();
    if !keep {
        return Ok(());
    }
    if let Some((pt, wire, exp, send, recv)) = presence {
        let a = acc.presence.get_or_insert_with(SizeAcc::default);
        a.plaintext.push(pt);
        a.wire.push(wire);
        a.expansion.push(exp);
        a.send.push(send);
        a.recv.push(recv);
    }
    let h = [link.counters(hs, Dir::AtoB), link.counters(hs, Dir::BtoA)];
    acc.hs_messages = h[0].messages + h[1].messages;
    acc.hs_flights = link.flights(hs);
    for (i, hc) in h.iter().enumerate() {
        acc.hs_bytes[i].push(hc.bytes as f64);
        acc.hs_cpu[i].push(link.party(i).cpu(hs).as_nanos() as f64 / 1000.0);
        acc.hs_ops[i] = Ops5::of(link.party(i).ops(hs));
    }
    acc.source = source_name(link.party(0).ops(hs));
    acc.first_send.push(first_send);
    acc.first_recv.push(first_recv);
    acc.crit_cpu.push(crit_hs + first_send + first_recv);
    if acc.sizes.len() != sizes.len() {
        acc.sizes = vec![SizeAcc::default(); sizes.len()];
    }
    for (a, (pt, wire, st, exp, send, recv, ops, k)) in acc.sizes.iter_mut().zip(sizes) {
        a.plaintext.push(pt);
        a.wire.push(wire);
        a.stanzas.push(st);
        a.expansion.push(exp);
        a.send.push(send);
        a.recv.push(recv);
        a.ops = a.ops.add(&ops);
        a.messages += k;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scale: many established sessions at once

/// Bytes the malloc heap has in use (glibc `mallinfo2`: arena plus mmapped
/// blocks). Rust's allocator, OpenSSL, libotr and libgcrypt (outside its
/// secure pool) all allocate through malloc.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and only reads glibc's allocator
    // statistics into the returned struct.
    #[allow(unsafe_code)]
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

struct Bare {
    s: [Box<dyn e2elab_core::Session>; 2],
    env: [Env; 2],
}

fn bare_pair(proto: &dyn Protocol, ids: &driver::Identities, seed: u64) -> Result<Bare, String> {
    let [(a, ea), (b, eb)] = driver::sessions_between(
        proto,
        ids,
        seed,
        &Options::new(),
        [&driver::full_jid(0), &driver::full_jid(1)],
    )?;
    Ok(Bare {
        s: [a, b],
        env: [ea, eb],
    })
}

/// Carry stanzas (serialized and parsed, as a server would) until quiet;
/// returns what was delivered to each side and the wire bytes.
fn bare_pump(
    p: &mut Bare,
    out: &mut e2elab_core::Outbox,
    from: usize,
) -> Result<([Vec<e2elab_core::Element>; 2], u64), String> {
    let mut wire: Vec<(usize, String)> = std::iter::from_fn(|| out.poll_transmit())
        .map(|e| (1 - from, stanza::serialize(&e)))
        .collect();
    let mut got = [Vec::new(), Vec::new()];
    let mut bytes = wire.iter().map(|(_, w)| w.len() as u64).sum::<u64>();
    let mut steps = 0;
    while !wire.is_empty() {
        steps += 1;
        if steps > 10_000 {
            return Err("scale: link stalled".into());
        }
        let (to, w) = wire.remove(0);
        let el = stanza::parse(&w).map_err(|x| x.to_string())?;
        let mut o = e2elab_core::Outbox::new();
        p.s[to]
            .handle_inbound(&mut p.env[to], el, &mut o)
            .map_err(|x| x.to_string())?;
        while let Some(e) = o.poll_transmit() {
            let w = stanza::serialize(&e);
            bytes += w.len() as u64;
            wire.push((1 - to, w));
        }
        while let Some(ev) = o.poll_event() {
            if let e2elab_core::Event::Delivered(d) = ev {
                got[to].push(d);
            }
        }
    }
    Ok((got, bytes))
}

/// The scale test of one profile: `pairs` established pairs at once, then
/// 4 x `pairs` messages round-robin over them (bodies: 14 in 20 of 64 B,
/// 5 in 20 of 1 KiB, 1 in 20 of 16 KiB; directions alternating by round).
pub fn scale(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    pairs: usize,
    seed: u64,
) -> Result<ScaleRow, String> {
    let id = proto.info().id;
    let heap0 = heap_in_use();
    let t = std::time::Instant::now();
    let mut all = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let mut p = bare_pair(proto, ids, seed.wrapping_add(1_000_000 + i as u64))?;
        let mut out = e2elab_core::Outbox::new();
        p.s[0]
            .start(&mut p.env[0], &mut out)
            .map_err(|x| format!("{id}: scale start: {x}"))?;
        bare_pump(&mut p, &mut out, 0).map_err(|x| format!("{id}: scale handshake: {x}"))?;
        if p.s
            .iter()
            .any(|s| s.state() != e2elab_core::SessionState::Established)
        {
            return Err(format!("{id}: scale: pair {i} not established"));
        }
        all.push(p);
    }
    let setup = t.elapsed().as_secs_f64();
    let heap1 = heap_in_use();
    let total = 4 * pairs as u64;
    let (mut body, mut wire) = (0u64, 0u64);
    let t = std::time::Instant::now();
    let (r, cpu, _) = cpu::measure(|| -> Result<(), String> {
        for k in 0..total {
            let i = (k % pairs as u64) as usize;
            let from = ((k / pairs as u64) % 2) as usize;
            let size = match k % 20 {
                0..=13 => 64,
                14..=18 => 1024,
                _ => 16384,
            };
            let el = driver::workload_stanza(seed, from, k, size)?;
            body += size as u64;
            let p = &mut all[i];
            let mut out = e2elab_core::Outbox::new();
            p.s[from]
                .send(&mut p.env[from], el.clone(), &mut out)
                .map_err(|x| format!("{id}: scale send: {x}"))?;
            let (got, b) = bare_pump(p, &mut out, from)?;
            wire += b;
            if got[1 - from] != [el] {
                return Err(format!("{id}: scale message {k} not delivered intact"));
            }
        }
        Ok(())
    });
    r?;
    let wall = t.elapsed().as_secs_f64();
    drop(all);
    Ok(ScaleRow {
        protocol: id.to_string(),
        pairs,
        heap_bytes_per_session: (heap1 as f64 - heap0 as f64) / (2 * pairs) as f64,
        setup_seconds: setup,
        mix_messages: total,
        mix_body_bytes: body,
        mix_wire_bytes: wire,
        mix_messages_per_second: if wall > 0.0 { total as f64 / wall } else { 0.0 },
        mix_cpu_us_per_message: cpu.as_nanos() as f64 / 1000.0 / total as f64,
    })
}

fn run_cmd(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    if !o.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The sequoia-openpgp version in the workspace's Cargo.lock at build time.
pub fn sequoia_version() -> String {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"sequoia-openpgp\"" {
            if let Some(v) = lines.next() {
                return v
                    .trim()
                    .trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string();
            }
        }
    }
    "unknown".into()
}

/// Now, UTC, RFC 3339 (seconds).
pub fn utc_now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    e2elab_core::Timestamp(micros).to_rfc3339()
}

fn provenance(seed: u64, date: String, wall: f64) -> Provenance {
    let git = run_cmd("git", &["rev-parse", "HEAD"])
        .map(|h| {
            let dirty = run_cmd("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{h}-dirty")
            } else {
                h
            }
        })
        .unwrap_or_else(|| "unknown".into());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let pc =
        |m: &str| run_cmd("pkg-config", &["--modversion", m]).unwrap_or_else(|| "unknown".into());
    Provenance {
        git_revision: git,
        rustc: run_cmd("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        cpu_model,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        openssl: openssl::version::version().to_string(),
        libgcrypt: pc("libgcrypt"),
        libotr: pc("libotr"),
        sequoia_openpgp: sequoia_version(),
        e2elab: env!("CARGO_PKG_VERSION").to_string(),
        seed,
        date,
        wall_seconds: wall,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        reproduce_wall_seconds: None,
        load_average_start: String::new(),
        load_average_end: load_average(),
    }
}

/// Run the comparison. `progress(position, length, message)` is called at
/// every step.
pub fn run(cfg: &Config, mut progress: impl FnMut(u64, u64, &str)) -> Result<Results, String> {
    let t0 = std::time::Instant::now();
    let date = utc_now();
    let load_start = load_average();
    let plan = Plan::new(cfg.quick);
    let protos = registry::resolve(&cfg.protocols)?;
    let total_reps = plan.warmup + plan.reps;
    let steps_per = 1 + plan.sizes.len() as u64;
    let with_presence = protos
        .iter()
        .filter(|p| {
            p.info()
                .protects
                .contains(&e2elab_core::StanzaKind::Presence)
        })
        .count() as u64;
    let len = (total_reps as u64) * (protos.len() as u64 * steps_per + with_presence + 1)
        + protos.len() as u64 * (plan.keygen_reps as u64 + 1)
        + if plan.scale_pairs > 0 {
            protos.len() as u64
        } else {
            0
        }
        + 1;
    let mut pos = 0u64;
    progress(pos, len, "primitives: set-up (RSA, DSA keys)");
    let mut prims = primitives(cfg.seed)?;
    pos += 1;
    let mut prim_samples: Vec<Vec<f64>> = vec![Vec::new(); prims.len()];
    let mut ids = Vec::new();
    let mut accs: Vec<Acc> = Vec::new();
    for p in &protos {
        progress(pos, len, &format!("{}: identities", p.info().id));
        ids.push(driver::provision(p.as_ref(), cfg.seed)?);
        accs.push(Acc::default());
        pos += 1;
    }
    for rep in 0..total_reps {
        let keep = rep >= plan.warmup;
        let tag = if keep {
            format!("rep {}/{}", rep + 1 - plan.warmup, plan.reps)
        } else {
            "warm-up".to_string()
        };
        for (i, p) in protos.iter().enumerate() {
            let id = p.info().id;
            let seed = cfg.seed.wrapping_add(rep as u64);
            let acc = &mut accs[i];
            one_rep(p.as_ref(), &ids[i], &plan, seed, acc, keep, |what| {
                progress(pos, len, &format!("{tag} {id}: {what}"));
                pos += 1;
            })?;
            if keep && rep - plan.warmup < plan.keygen_reps {
                progress(pos, len, &format!("{tag} {id}: long-term key generation"));
                // A fresh JID per profile and repetition: libotr keys are cached per
                // JID process-wide (shared by otr-v3 and otr-v2).
                let jid = format!("keygen-{id}-{rep}-{}@example.org", cfg.seed);
                let mut env = Env::for_party(seed, &format!("identity:{jid}"));
                let (r, c, _) = cpu::measure(|| p.generate_identity(&mut env, &jid));
                r.map_err(|x| format!("{id}: keygen: {x}"))?;
                acc.keygen.push(c.as_nanos() as f64 / 1000.0);
                pos += 1;
            }
        }
        progress(pos, len, &format!("{tag} primitive floors"));
        for (j, (name, _, f)) in prims.iter_mut().enumerate() {
            for _ in 0..plan.primitive_calls {
                let (r, c, _) = cpu::measure(&mut *f);
                r.map_err(|x| format!("primitive {name}: {x}"))?;
                if keep {
                    prim_samples[j].push(c.as_nanos() as f64 / 1000.0);
                }
            }
        }
        pos += 1;
    }
    let mut scale_rows = Vec::new();
    if plan.scale_pairs > 0 {
        for (i, p) in protos.iter().enumerate() {
            progress(
                pos,
                len,
                &format!("scale: {} pairs of {}", plan.scale_pairs, p.info().id),
            );
            scale_rows.push(scale(p.as_ref(), &ids[i], plan.scale_pairs, cfg.seed)?);
            pos += 1;
        }
    }
    progress(len, len, "done");
    let primitives: Vec<PrimitiveRow> = prims
        .iter()
        .zip(&prim_samples)
        .map(|((n, l, _), s)| PrimitiveRow {
            name: n.to_string(),
            library: l.to_string(),
            cpu_us: Stat::of(s),
        })
        .collect();
    let mut res = Results {
        provenance: provenance(cfg.seed, date, 0.0),
        plan: plan.clone(),
        ttfm_formula: TTFM_FORMULA.into(),
        floor_formula: FLOOR_FORMULA.into(),
        profiles: Vec::new(),
        handshake: Vec::new(),
        keygen: Vec::new(),
        messages: Vec::new(),
        latency: Vec::new(),
        primitives,
        floors: Vec::new(),
        presence: Vec::new(),
        scale: scale_rows,
    };
    for (p, a) in protos.iter().zip(&accs) {
        let info = p.info();
        let id = info.id.to_string();
        res.profiles.push(ProfileRow {
            id: id.clone(),
            family: info.family.into(),
            spec: info.spec.into(),
        });
        let tot: Vec<f64> = a.hs_cpu[0]
            .iter()
            .zip(&a.hs_cpu[1])
            .map(|(x, y)| x + y)
            .collect();
        let hs = HandshakeRow {
            protocol: id.clone(),
            messages: a.hs_messages,
            flights: a.hs_flights,
            round_trips: a.hs_flights as f64 / 2.0,
            bytes_initiator: Stat::of(&a.hs_bytes[0]),
            bytes_responder: Stat::of(&a.hs_bytes[1]),
            cpu_us_initiator: Stat::of(&a.hs_cpu[0]),
            cpu_us_responder: Stat::of(&a.hs_cpu[1]),
            cpu_us_total: Stat::of(&tot),
            ops_initiator: a.hs_ops[0],
            ops_responder: a.hs_ops[1],
            ops_source: a.source.clone(),
        };
        res.keygen.push(KeygenRow {
            protocol: id.clone(),
            cpu_us: Stat::of(&a.keygen),
        });
        for (size, s) in plan.sizes.iter().zip(&a.sizes) {
            res.messages.push(MessageRow {
                protocol: id.clone(),
                size: *size,
                plaintext_bytes: Stat::of(&s.plaintext),
                wire_bytes: Stat::of(&s.wire),
                wire_stanzas: Stat::of(&s.stanzas),
                expansion: Stat::of(&s.expansion),
                send_cpu_us: Stat::of(&s.send),
                recv_cpu_us: Stat::of(&s.recv),
                ops: if s.messages > 0.0 {
                    s.ops.scale(1.0 / s.messages)
                } else {
                    Ops5::default()
                },
            });
        }
        let legs = if a.hs_flights == 0 {
            1
        } else if a.hs_flights % 2 == 1 {
            a.hs_flights
        } else {
            a.hs_flights + 1
        };
        for (net, rtt) in NETWORKS {
            let t: Vec<f64> = a
                .crit_cpu
                .iter()
                .map(|c| c / 1000.0 + legs as f64 * rtt / 2.0)
                .collect();
            let c: Vec<f64> = a.crit_cpu.iter().map(|c| c / 1000.0).collect();
            res.latency.push(LatencyRow {
                protocol: id.clone(),
                network: net.into(),
                rtt_ms: rtt,
                legs,
                cpu_ms: Stat::of(&c),
                ttfm_ms: Stat::of(&t),
            });
        }
        let unit = |name: &str| {
            res.primitives
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.cpu_us.median)
        };
        if let Some(map) = floor_map(&id) {
            let floor_row = |phase: &str, ops: Ops5, measured: f64| -> Option<FloorRow> {
                if ops.total() <= 0.0 {
                    return None;
                }
                let mut floor = 0.0;
                let mut used = Vec::new();
                for ((kind, n), prim) in ops.items().iter().zip(map) {
                    if *n > 0.0 {
                        floor += n * unit(prim)?;
                        used.push((kind.to_string(), prim.to_string()));
                    }
                }
                Some(FloorRow {
                    protocol: id.clone(),
                    phase: phase.into(),
                    ops,
                    ops_source: a.source.clone(),
                    primitives: used,
                    floor_us: floor,
                    measured_us: measured,
                    ratio: if floor > 0.0 { measured / floor } else { 0.0 },
                })
            };
            let hs_ops = hs.ops_initiator.add(&hs.ops_responder);
            if let Some(r) = floor_row("handshake", hs_ops, hs.cpu_us_total.median) {
                res.floors.push(r);
            }
            if let Some(m) = res
                .messages
                .iter()
                .find(|m| m.protocol == id && m.size == 1024)
                .cloned()
            {
                if let Some(r) = floor_row(
                    "message",
                    m.ops,
                    m.send_cpu_us.median + m.recv_cpu_us.median,
                ) {
                    res.floors.push(r);
                }
            }
        }
        if let Some(pr) = &a.presence {
            res.presence.push(PresenceRow {
                protocol: id.clone(),
                plaintext_bytes: Stat::of(&pr.plaintext),
                wire_bytes: Stat::of(&pr.wire),
                expansion: Stat::of(&pr.expansion),
                send_cpu_us: Stat::of(&pr.send),
                recv_cpu_us: Stat::of(&pr.recv),
            });
        }
        res.handshake.push(hs);
    }
    let mut prov = provenance(
        cfg.seed,
        res.provenance.date.clone(),
        t0.elapsed().as_secs_f64(),
    );
    prov.load_average_start = load_start;
    res.provenance = prov;
    Ok(res)
}

// ---------------------------------------------------------------------------
// Output

fn f(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

fn stat_cols(prefix: &str) -> Vec<String> {
    ["median", "min", "max", "q1", "q3"]
        .iter()
        .map(|s| format!("{prefix}_{s}"))
        .collect()
}

fn stat_cells(s: &Stat) -> Vec<String> {
    [s.median, s.min, s.max, s.q1, s.q3]
        .iter()
        .map(|x| f(*x))
        .collect()
}

fn ops_cells(o: &Ops5) -> Vec<String> {
    o.items().iter().map(|(_, n)| f(*n)).collect()
}

fn ops_cols(prefix: &str) -> Vec<String> {
    ["modexp", "sign", "verify", "pk_encrypt", "pk_decrypt"]
        .iter()
        .map(|s| format!("{prefix}_{s}"))
        .collect()
}

fn csv(header: Vec<String>, rows: Vec<Vec<String>>) -> String {
    let cols: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = crate::output::Table::new(&cols);
    for r in rows {
        t.row(r);
    }
    t.csv()
}

/// The CSV files of a run: (file name, content).
pub fn csv_files(r: &Results) -> Vec<(&'static str, String)> {
    let p = &r.provenance;
    let prov = csv(
        vec!["key".into(), "value".into()],
        [
            ("git_revision", p.git_revision.clone()),
            ("rustc", p.rustc.clone()),
            ("cpu_model", p.cpu_model.clone()),
            ("cpus", p.cpus.to_string()),
            ("openssl", p.openssl.clone()),
            ("libgcrypt", p.libgcrypt.clone()),
            ("libotr", p.libotr.clone()),
            ("sequoia_openpgp", p.sequoia_openpgp.clone()),
            ("e2elab", p.e2elab.clone()),
            ("seed", p.seed.to_string()),
            ("date", p.date.clone()),
            ("wall_seconds", f(p.wall_seconds)),
            ("load_average_start", p.load_average_start.clone()),
            ("load_average_end", p.load_average_end.clone()),
            ("mode", r.plan.mode.clone()),
            ("warmup", r.plan.warmup.to_string()),
            ("reps", r.plan.reps.to_string()),
            ("messages_per_size", r.plan.messages_per_size.to_string()),
            ("keygen_reps", r.plan.keygen_reps.to_string()),
            ("primitive_calls", r.plan.primitive_calls.to_string()),
            ("command", p.command.clone()),
            (
                "reproduce_wall_seconds",
                p.reproduce_wall_seconds.map(f).unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect(),
    );
    let mut h = vec![
        "protocol".to_string(),
        "messages".into(),
        "flights".into(),
        "round_trips".into(),
        "bytes_initiator".into(),
        "bytes_responder".into(),
    ];
    h.extend(stat_cols("cpu_us_initiator"));
    h.extend(stat_cols("cpu_us_responder"));
    h.extend(stat_cols("cpu_us_total"));
    h.extend(ops_cols("ops_initiator"));
    h.extend(ops_cols("ops_responder"));
    h.push("ops_source".into());
    let hs = csv(
        h,
        r.handshake
            .iter()
            .map(|x| {
                let mut v = vec![
                    x.protocol.clone(),
                    x.messages.to_string(),
                    x.flights.to_string(),
                    f(x.round_trips),
                    f(x.bytes_initiator.median),
                    f(x.bytes_responder.median),
                ];
                v.extend(stat_cells(&x.cpu_us_initiator));
                v.extend(stat_cells(&x.cpu_us_responder));
                v.extend(stat_cells(&x.cpu_us_total));
                v.extend(ops_cells(&x.ops_initiator));
                v.extend(ops_cells(&x.ops_responder));
                v.push(x.ops_source.clone());
                v
            })
            .collect(),
    );
    let mut h = vec!["protocol".to_string(), "n".into()];
    h.extend(stat_cols("cpu_us"));
    let kg = csv(
        h,
        r.keygen
            .iter()
            .map(|x| {
                let mut v = vec![x.protocol.clone(), x.cpu_us.n.to_string()];
                v.extend(stat_cells(&x.cpu_us));
                v
            })
            .collect(),
    );
    let mut h = vec![
        "protocol".to_string(),
        "size".into(),
        "plaintext_bytes".into(),
        "wire_bytes".into(),
        "wire_stanzas".into(),
        "expansion".into(),
    ];
    h.extend(stat_cols("send_cpu_us"));
    h.extend(stat_cols("recv_cpu_us"));
    h.extend(ops_cols("ops_per_message"));
    let msgs = csv(
        h,
        r.messages
            .iter()
            .map(|x| {
                let mut v = vec![
                    x.protocol.clone(),
                    x.size.to_string(),
                    f(x.plaintext_bytes.median),
                    f(x.wire_bytes.median),
                    f(x.wire_stanzas.median),
                    format!("{:.4}", x.expansion.median),
                ];
                v.extend(stat_cells(&x.send_cpu_us));
                v.extend(stat_cells(&x.recv_cpu_us));
                v.extend(ops_cells(&x.ops));
                v
            })
            .collect(),
    );
    let mut h = vec![
        "protocol".to_string(),
        "network".into(),
        "rtt_ms".into(),
        "legs".into(),
        "cpu_ms_median".into(),
    ];
    h.extend(stat_cols("ttfm_ms"));
    let lat = csv(
        h,
        r.latency
            .iter()
            .map(|x| {
                let mut v = vec![
                    x.protocol.clone(),
                    x.network.clone(),
                    f(x.rtt_ms),
                    x.legs.to_string(),
                    f(x.cpu_ms.median),
                ];
                v.extend(stat_cells(&x.ttfm_ms));
                v
            })
            .collect(),
    );
    let mut h = vec!["primitive".to_string(), "library".into(), "n".into()];
    h.extend(stat_cols("cpu_us"));
    let prims = csv(
        h,
        r.primitives
            .iter()
            .map(|x| {
                let mut v = vec![x.name.clone(), x.library.clone(), x.cpu_us.n.to_string()];
                v.extend(stat_cells(&x.cpu_us));
                v
            })
            .collect(),
    );
    let mut h = vec!["protocol".to_string(), "phase".into()];
    h.extend(ops_cols("ops"));
    h.extend([
        "ops_source".into(),
        "primitives".into(),
        "floor_us".into(),
        "measured_us".into(),
        "ratio".into(),
    ]);
    let floors = csv(
        h,
        r.floors
            .iter()
            .map(|x| {
                let mut v = vec![x.protocol.clone(), x.phase.clone()];
                v.extend(ops_cells(&x.ops));
                v.push(x.ops_source.clone());
                v.push(
                    x.primitives
                        .iter()
                        .map(|(k, p)| format!("{k}={p}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                v.push(f(x.floor_us));
                v.push(f(x.measured_us));
                v.push(format!("{:.3}", x.ratio));
                v
            })
            .collect(),
    );
    let mut h = vec![
        "protocol".to_string(),
        "plaintext_bytes".into(),
        "wire_bytes".into(),
        "expansion".into(),
    ];
    h.extend(stat_cols("send_cpu_us"));
    h.extend(stat_cols("recv_cpu_us"));
    let presence = csv(
        h,
        r.presence
            .iter()
            .map(|x| {
                let mut v = vec![
                    x.protocol.clone(),
                    f(x.plaintext_bytes.median),
                    f(x.wire_bytes.median),
                    format!("{:.4}", x.expansion.median),
                ];
                v.extend(stat_cells(&x.send_cpu_us));
                v.extend(stat_cells(&x.recv_cpu_us));
                v
            })
            .collect(),
    );
    let scale = csv(
        [
            "protocol",
            "pairs",
            "heap_bytes_per_session",
            "setup_seconds",
            "mix_messages",
            "mix_body_bytes",
            "mix_wire_bytes",
            "mix_messages_per_second",
            "mix_cpu_us_per_message",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
        r.scale
            .iter()
            .map(|x| {
                vec![
                    x.protocol.clone(),
                    x.pairs.to_string(),
                    f(x.heap_bytes_per_session.round()),
                    format!("{:.3}", x.setup_seconds),
                    x.mix_messages.to_string(),
                    x.mix_body_bytes.to_string(),
                    x.mix_wire_bytes.to_string(),
                    format!("{:.1}", x.mix_messages_per_second),
                    format!("{:.2}", x.mix_cpu_us_per_message),
                ]
            })
            .collect(),
    );
    vec![
        ("provenance.csv", prov),
        ("presence.csv", presence),
        ("scale.csv", scale),
        ("handshake.csv", hs),
        ("keygen.csv", kg),
        ("messages.csv", msgs),
        ("latency.csv", lat),
        ("primitives.csv", prims),
        ("floors.csv", floors),
    ]
}

/// Write `DIR/results.json` and the CSV files.
pub fn write(r: &Results, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(|x| x.to_string())?;
    let p = dir.join("results.json");
    std::fs::write(&p, json + "\n").map_err(|x| format!("{}: {x}", p.display()))?;
    for (name, content) in csv_files(r) {
        let p = dir.join(name);
        std::fs::write(&p, content).map_err(|x| format!("{}: {x}", p.display()))?;
    }
    Ok(())
}

/// Read `DIR/results.json`.
pub fn read(dir: &Path) -> Result<Results, String> {
    let p = dir.join("results.json");
    let s = std::fs::read_to_string(&p).map_err(|x| format!("{}: {x}", p.display()))?;
    serde_json::from_str(&s).map_err(|x| format!("{}: {x}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_quartiles() {
        let s = Stat::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert_eq!((s.q1, s.q3), (2.0, 4.0));
        assert_eq!(s.iqr(), 2.0);
        assert_eq!(Stat::of(&[]).n, 0);
        assert_eq!(Stat::of(&[1.0, 2.0]).median, 1.5);
    }

    #[test]
    fn dates_and_versions() {
        let day = |d: u64| e2elab_core::Timestamp(d * 86_400 * 1_000_000).to_rfc3339();
        assert_eq!(day(0), "1970-01-01T00:00:00Z");
        assert_eq!(day(19_723), "2024-01-01T00:00:00Z");
        assert_eq!(day(11_016), "2000-02-29T00:00:00Z");
        assert_eq!(utc_now().len(), 20);
        assert!(sequoia_version().starts_with('2'), "{}", sequoia_version());
    }

    #[test]
    fn every_profile_has_a_floor_map_except_the_control() {
        for e in registry::entries().iter().filter(|e| !e.is_control()) {
            let id = e.info().id;
            assert_eq!(floor_map(id).is_none(), id == "plaintext", "{id}");
        }
    }
}
