//! The environment handle: the only source of randomness and time a protocol sees.
//!
//! Protocol crates are sans-IO. They never read the OS clock or the OS RNG;
//! every call that needs either takes `&mut Env`. The harness owns one `Env`
//! per side, seeded from the run's seed, and sets the virtual clock before each
//! call, so a seed reproduces a whole run (where the backend allows: libotr's
//! libgcrypt RNG and OpenSSL's RSA key generation cannot be seeded, and the
//! crates that use them say so).

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use std::fmt;

/// A point on the virtual clock, in microseconds since the Unix epoch.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// 2005-11-01T00:00:00Z: the default start of the virtual clock, the month the
    /// four designs were being compared.
    pub const DEFAULT_START: Timestamp = Timestamp(1_130_803_200_000_000);

    /// Microseconds since the epoch.
    pub fn micros(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// This instant plus `d`.
    pub fn plus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// The duration from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// UTC calendar form `YYYY-MM-DDTHH:MM:SSZ` (XEP-0082 / RFC 3339).
    pub fn to_rfc3339(self) -> String {
        let secs = self.secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }

    /// Parse `YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)`.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            if !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let frac = s.get(start..i)?;
            if frac.is_empty() {
                return None;
            }
            let mut padded: String = frac.chars().take(6).collect();
            while padded.len() < 6 {
                padded.push('0');
            }
            micros = padded.parse().ok()?;
        }
        let offset = match s.get(i..)? {
            "Z" | "z" => 0,
            tz if tz.len() == 6
                && (tz.starts_with('+') || tz.starts_with('-'))
                && tz.as_bytes()[3] == b':' =>
            {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let o = oh * 3600 + om * 60;
                if tz.starts_with('-') {
                    -o
                } else {
                    o
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
        if secs < 0 {
            return None;
        }
        Some(Timestamp(secs as u64 * 1_000_000 + micros as u64))
    }
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The environment handle: a seeded CSPRNG (ChaCha20) and a virtual clock.
pub struct Env {
    rng: ChaCha20Rng,
    now: Timestamp,
    seed: [u8; 32],
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The RNG state is a secret: never print it.
        f.debug_struct("Env")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// A new environment from a 32-byte seed, with the clock at [`Timestamp::DEFAULT_START`].
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(seed),
            now: Timestamp::DEFAULT_START,
            seed,
        }
    }

    /// A new environment for one party of a run: the run seed and a label
    /// (e.g. `"initiator"`) give independent, reproducible streams.
    pub fn for_party(run_seed: u64, label: &str) -> Self {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&run_seed.to_le_bytes());
        // FNV-1a over the label spreads it across the remaining bytes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        seed[8..16].copy_from_slice(&h.to_le_bytes());
        seed[16..24].copy_from_slice(&(label.len() as u64).to_le_bytes());
        Self::from_seed(seed)
    }

    /// Derive an independent child environment (same clock), e.g. for a second session.
    pub fn fork(&mut self, label: &str) -> Env {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        for (i, b) in label.bytes().enumerate() {
            seed[i % 32] ^= b;
        }
        let mut child = Env::from_seed(seed);
        child.now = self.now;
        child
    }

    /// The seed this environment started from.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// The virtual clock's current time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Set the virtual clock. The harness does this; protocols never do.
    pub fn set_now(&mut self, t: Timestamp) {
        self.now = t;
    }

    /// Move the virtual clock forward.
    pub fn advance(&mut self, d: std::time::Duration) {
        self.now = self.now.plus(d);
    }

    /// Fill `buf` with CSPRNG output.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
    }

    /// `N` random bytes.
    pub fn random_array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        self.rng.fill_bytes(&mut a);
        a
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Random padding text for an `<rpad>` affix (XEP-0373 §3.1, XEP-0420):
    /// length uniform in `1..=max` characters (`max` at most 256), each
    /// character uniform over the 64-character radix-64 alphabet.
    pub fn rpad(&mut self, max: usize) -> String {
        const ALPHA: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let len = 1 + usize::from(self.random_array::<1>()[0]) % max.clamp(1, 256);
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes);
        bytes
            .iter()
            .map(|b| char::from(ALPHA[usize::from(b & 63)]))
            .collect()
    }

    /// The CSPRNG itself, for APIs that take a `rand_core` RNG.
    pub fn rng(&mut self) -> &mut impl CryptoRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_label_different_stream() {
        let mut a = Env::for_party(7, "initiator");
        let mut b = Env::for_party(7, "initiator");
        let mut c = Env::for_party(7, "responder");
        let (x, y, z): ([u8; 32], [u8; 32], [u8; 32]) =
            (a.random_array(), b.random_array(), c.random_array());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::DEFAULT_START;
        assert_eq!(t.to_rfc3339(), "2005-11-01T00:00:00Z");
        assert_eq!(Timestamp::parse_rfc3339("2005-11-01T00:00:00Z"), Some(t));
        assert_eq!(
            Timestamp::parse_rfc3339("2005-11-01T01:00:00+01:00"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2005-11-01T00:00:00.5Z"),
            Some(Timestamp(t.0 + 500_000))
        );
        assert_eq!(Timestamp::parse_rfc3339("2005-13-01T00:00:00Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("garbage"), None);
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_any_second_round_trips(secs in 0u64..8_000_000_000) {
            let t = Timestamp(secs * 1_000_000);
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }

        #[test]
        fn rfc3339_parse_never_panics(s in ".{0,40}") {
            let _ = Timestamp::parse_rfc3339(&s);
        }
    }

    #[test]
    fn debug_hides_rng() {
        let e = Env::for_party(1, "x");
        let s = format!("{e:?}");
        assert!(!s.contains("rng"));
    }
}
