//! Per-stanza timestamps of the handshake-less profiles (RFC 3923 §6.9,
//! XEP-0290 "Timestamps"): outgoing timestamps that strictly increase, a
//! window around the receiver's clock, and a client's memory of the
//! timestamps it accepted, which makes an exact replay inside the window
//! detectable.

use crate::env::Timestamp;
use crate::error::{Error, PeerMisbehaved, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The next outgoing timestamp: `now` cut to a multiple of `step`
/// microseconds, or `step` past the last one sent if that is not later.
pub fn next_after(now: Timestamp, last: Option<Timestamp>, step_micros: u64) -> Timestamp {
    let step = step_micros.max(1);
    let t = Timestamp(now.micros() / step * step);
    match last {
        Some(l) if t <= l => Timestamp(l.micros().saturating_add(step)),
        _ => t,
    }
}

/// A sender's schedule: strictly increasing timestamps at a granularity,
/// and its certificate attached at most once per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSchedule {
    step_micros: u64,
    cert_interval: Duration,
    last_sent: Option<Timestamp>,
    last_attached: Option<Timestamp>,
}

/// One send's timestamp and whether the certificate goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The stanza's timestamp.
    pub timestamp: Timestamp,
    /// Attach the certificate.
    pub attach: bool,
    now: Timestamp,
}

impl SendSchedule {
    /// Timestamps at `step_micros` granularity; the certificate every `cert_interval`.
    pub fn new(step_micros: u64, cert_interval: Duration) -> Self {
        Self {
            step_micros,
            cert_interval,
            last_sent: None,
            last_attached: None,
        }
    }

    /// The next send at `now` (nothing changes until [`SendSchedule::commit`]).
    pub fn next(&self, now: Timestamp) -> Slot {
        Slot {
            timestamp: next_after(now, self.last_sent, self.step_micros),
            attach: self
                .last_attached
                .is_none_or(|t| now.since(t) >= self.cert_interval),
            now,
        }
    }

    /// The send of `slot` happened.
    pub fn commit(&mut self, slot: Slot) {
        self.last_sent = Some(slot.timestamp);
        if slot.attach {
            self.last_attached = Some(slot.now);
        }
    }
}

/// Whether `a` and `b` are at most `d` apart.
pub fn within(a: Timestamp, b: Timestamp, d: Duration) -> bool {
    let gap = if a > b { a.since(b) } else { b.since(a) };
    gap <= d
}

/// Refuse `ts` unless it is within `window` of `reference`: a
/// [`PeerMisbehaved::BadTimestamp`] saying "old timestamp" or "future
/// timestamp", both instants written by `show`.
pub fn check_window(
    ts: Timestamp,
    reference: Timestamp,
    window: Duration,
    show: impl Fn(Timestamp) -> String,
) -> Result<()> {
    if within(ts, reference, window) {
        return Ok(());
    }
    let which = if ts < reference {
        "old timestamp"
    } else {
        "future timestamp"
    };
    Err(
        PeerMisbehaved::BadTimestamp(format!("{which}: {} against {}", show(ts), show(reference)))
            .into(),
    )
}

/// A client's memory of accepted timestamps per (local bare JID, peer bare
/// JID): (timestamp, when accepted). Clones share it, so every session of
/// one client sees the same memory.
#[derive(Debug, Clone, Default)]
pub struct AcceptedTimestamps(Arc<Mutex<Accepted>>);

/// (local, peer) -> [(timestamp, when accepted)].
type Accepted = HashMap<(String, String), Vec<(Timestamp, Timestamp)>>;

/// What [`AcceptedTimestamps::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// A later timestamp was accepted within the memory (the stanza came
    /// out of order, or is older than one already seen).
    pub decreasing: bool,
}

impl AcceptedTimestamps {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Accepted>> {
        self.0
            .lock()
            .map_err(|_| Error::Backend("timestamp memory poisoned".into()))
    }

    /// [`PeerMisbehaved::Replay`] if `ts` was accepted from `peer` within
    /// `memory` of `now`; otherwise whether a later one was. No change.
    pub fn check(
        &self,
        local: &str,
        peer: &str,
        ts: Timestamp,
        now: Timestamp,
        memory: Duration,
    ) -> Result<Seen> {
        let m = self.lock()?;
        let mut seen = Seen { decreasing: false };
        let key = (local.to_string(), peer.to_string());
        for (t, at) in m.get(&key).map(Vec::as_slice).unwrap_or(&[]) {
            if now.since(*at) > memory {
                continue;
            }
            if *t == ts {
                return Err(PeerMisbehaved::Replay.into());
            }
            seen.decreasing |= *t > ts;
        }
        Ok(seen)
    }

    /// Remember `ts` as accepted at `now`, forgetting what is older than `memory`.
    pub fn record(
        &self,
        local: &str,
        peer: &str,
        ts: Timestamp,
        now: Timestamp,
        memory: Duration,
    ) -> Result<()> {
        let mut m = self.lock()?;
        let acc = m.entry((local.to_string(), peer.to_string())).or_default();
        acc.retain(|(_, at)| now.since(*at) <= memory);
        acc.push((ts, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_window_and_memory() {
        let t = |s: u64| Timestamp(s * 1_000_000);
        assert_eq!(
            next_after(Timestamp(1_234_567), None, 1000),
            Timestamp(1_234_000)
        );
        assert_eq!(next_after(t(1), Some(t(1)), 1000), Timestamp(1_001_000));
        assert_eq!(next_after(t(1), Some(t(1)), 1), Timestamp(1_000_001));
        let five = Duration::from_secs(300);
        assert!(check_window(t(1000), t(1300), five, |x| x.micros().to_string()).is_ok());
        let old = check_window(t(1000), t(1301), five, |x| x.micros().to_string());
        assert!(
            matches!(old, Err(Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(r))) if r.starts_with("old"))
        );
        let fut = check_window(t(1302), t(1001), five, |x| x.micros().to_string());
        assert!(
            matches!(fut, Err(Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(r))) if r.starts_with("future"))
        );
        let m = AcceptedTimestamps::default();
        let shared = m.clone();
        let ten = Duration::from_secs(600);
        m.record("a", "b", t(10), t(10), ten).unwrap();
        assert_eq!(
            shared.check("a", "b", t(10), t(20), ten),
            Err(PeerMisbehaved::Replay.into())
        );
        assert_eq!(
            shared.check("a", "b", t(9), t(20), ten),
            Ok(Seen { decreasing: true })
        );
        assert_eq!(
            shared.check("a", "c", t(10), t(20), ten),
            Ok(Seen { decreasing: false })
        );
        // Forgotten after the memory.
        assert_eq!(
            shared.check("a", "b", t(10), t(700), ten),
            Ok(Seen { decreasing: false })
        );
    }

    #[test]
    fn schedule_attaches_the_certificate_once_per_interval() {
        let t = |s: u64| Timestamp(s * 1_000_000);
        let mut sch = SendSchedule::new(1000, Duration::from_secs(300));
        let a = sch.next(t(0));
        assert!(a.attach);
        // Nothing changes until the send happened.
        assert_eq!(sch.next(t(0)), a);
        sch.commit(a);
        let b = sch.next(t(0));
        assert_eq!(b.timestamp, Timestamp(1000));
        assert!(!b.attach);
        sch.commit(b);
        assert!(!sch.next(t(299)).attach);
        assert!(sch.next(t(300)).attach);
    }
}
