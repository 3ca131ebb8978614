//! Drivers: set up two parties for a protocol and run a workload through a [`Link`].

use crate::cpu;
use crate::link::{Dir, Link, Phase};
use e2elab_core::{
    stanza, Element, Env, Identity, Options, Protocol, Role, Session, SessionConfig,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The initiator's bare JID in every run.
pub const ALICE: &str = "alice@example.org";
/// The responder's bare JID in every run.
pub const BOB: &str = "bob@example.net";
/// The resource both use.
pub const RESOURCE: &str = "lab";

/// A JID from text (typed error naming it).
pub fn jid(s: &str) -> crate::Result<e2elab_core::Jid> {
    e2elab_core::Jid::new(s).map_err(|e| crate::fail!("{s}: not a JID ({e})"))
}

/// Full JID of party `idx`.
pub fn full_jid(idx: usize) -> String {
    format!("{}/{RESOURCE}", if idx == 0 { ALICE } else { BOB })
}

/// Long-term identities for both parties, with the CPU each took to make.
pub struct Identities {
    /// Initiator's and responder's identities.
    pub ids: [Arc<Identity>; 2],
    /// CPU spent generating each.
    pub keygen_cpu: [Duration; 2],
}

/// Generate both parties' identities from the run seed.
pub fn provision(proto: &dyn Protocol, seed: u64) -> crate::Result<Identities> {
    provision_as(proto, seed, [ALICE, BOB])
}

/// Generate identities for these two bare JIDs (initiator first) from the run seed.
pub fn provision_as(proto: &dyn Protocol, seed: u64, bare: [&str; 2]) -> crate::Result<Identities> {
    let mut ids = Vec::new();
    let mut cpus = [Duration::ZERO; 2];
    for (i, jid) in bare.iter().enumerate() {
        let mut env = Env::for_party(seed, &format!("identity:{jid}"));
        let (r, c, _) = cpu::measure(|| proto.generate_identity(&mut env, jid));
        cpus[i] = c;
        ids.push(Arc::new(r.map_err(|e| {
            format!("{}: identity for {jid}: {e}", proto.info().id)
        })?));
    }
    let b = ids.pop().ok_or("identity missing")?;
    let a = ids.pop().ok_or("identity missing")?;
    Ok(Identities {
        ids: [a, b],
        keygen_cpu: cpus,
    })
}

/// Create both sessions and a link between them (passive adversary, no delay).
pub fn link_for(
    proto: &dyn Protocol,
    ids: &Identities,
    seed: u64,
    options: &Options,
) -> crate::Result<Link> {
    link_between(proto, ids, seed, options, [&full_jid(0), &full_jid(1)])
}

/// A session with its own environment.
pub type SessionWithEnv = (Box<dyn Session>, Env);

/// How far apart on the virtual clock the links of one process start.
pub const LINK_SPACING: Duration = Duration::from_secs(20 * 60);

/// The virtual start of the next link: each link of the process starts
/// [`LINK_SPACING`] after the previous one, so that one client's sessions
/// never overlap in time (what a client remembers across sessions, such as
/// RFC 3923's 10-minute memory of accepted timestamps, sees time move on as
/// it does for a real client). Whole minutes: no timestamp on any wire
/// changes length.
pub fn next_link_start() -> e2elab_core::Timestamp {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    e2elab_core::Timestamp::DEFAULT_START
        .plus(LINK_SPACING * u32::try_from(n % 100_000).unwrap_or(0))
}

/// Both sessions (initiator first, each with its own environment) for these
/// full JIDs, without a link.
pub fn sessions_between(
    proto: &dyn Protocol,
    ids: &Identities,
    seed: u64,
    options: &Options,
    jids: [&str; 2],
) -> crate::Result<[SessionWithEnv; 2]> {
    let start = next_link_start();
    let make = |idx: usize| {
        let role = if idx == 0 {
            Role::Initiator
        } else {
            Role::Responder
        };
        let mut env = Env::for_party(seed, role.name());
        env.set_now(start);
        let cfg = SessionConfig {
            role,
            local_jid: jid(jids[idx])?,
            peer_jid: jid(jids[1 - idx])?,
            identity: ids.ids[idx].clone(),
            peer_public: Some(ids.ids[1 - idx].public.clone()),
            options: options.clone(),
        };
        let s = proto
            .new_session(&mut env, cfg)
            .map_err(|e| crate::fail!("{}: new session ({}): {e}", proto.info().id, role.name()))?;
        Ok::<_, crate::Error>((s, env))
    };
    Ok([make(0)?, make(1)?])
}

/// Create both sessions for these full JIDs (initiator first) and a link between them.
pub fn link_between(
    proto: &dyn Protocol,
    ids: &Identities,
    seed: u64,
    options: &Options,
    jids: [&str; 2],
) -> crate::Result<Link> {
    let [a, b] = sessions_between(proto, ids, seed, options, jids)?;
    Ok(Link::new(a, b))
}

/// Deterministic printable text of exactly `len` bytes (ASCII), from a seed.
pub fn body_text(seed: u64, n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789.,";
    let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            ALPHABET[(v >> 58) as usize % ALPHABET.len()] as char
        })
        .collect()
}

/// The workload's application stanza number `n` from party `from`.
pub fn workload_stanza(seed: u64, from: usize, n: u64, size: usize) -> crate::Result<Element> {
    workload_stanza_between(seed, from, n, size, [&full_jid(0), &full_jid(1)])
}

/// [`workload_stanza`] between these full JIDs (initiator first).
pub fn workload_stanza_between(
    seed: u64,
    from: usize,
    n: u64,
    size: usize,
    jids: [&str; 2],
) -> crate::Result<Element> {
    stanza::chat_message(
        jids[from],
        jids[1 - from],
        &format!("m{from}-{n}"),
        &body_text(seed.wrapping_add(from as u64), n, size),
    )
    .map_err(crate::Error::msg)
}

/// What one protocol cost on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Protocol id.
    pub protocol: String,
    /// Protocol family.
    pub family: String,
    /// The seed.
    pub seed: u64,
    /// Handshake figures.
    pub handshake: HandshakeReport,
    /// Data-phase figures.
    pub messages: MessageReport,
    /// One-time costs, reported apart.
    pub one_time: OneTimeReport,
}

/// Handshake figures.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    /// Stanzas both ways.
    pub messages: u64,
    /// Maximal runs of stanzas in one direction.
    pub flights: u64,
    /// Flights / 2: round trips until both sides are done (1.5 for a 3-flight handshake).
    pub round_trips: f64,
    /// Bytes the initiator sent.
    pub bytes_initiator: u64,
    /// Bytes the responder sent.
    pub bytes_responder: u64,
    /// Initiator CPU in its handshake calls, microseconds.
    pub cpu_us_initiator: f64,
    /// Responder CPU, microseconds.
    pub cpu_us_responder: f64,
    /// Initiator's public-key operations.
    pub ops_initiator: crate::cost::PkOps,
    /// Responder's public-key operations.
    pub ops_responder: crate::cost::PkOps,
}

/// Data-phase figures.
#[derive(Debug, Clone, Serialize)]
pub struct MessageReport {
    /// Application stanzas sent (both directions together).
    pub count: u64,
    /// Body bytes per message (the `--size`).
    pub body_size: usize,
    /// Serialized bytes of the application stanzas (what the control row puts on the wire).
    pub plaintext_bytes: u64,
    /// Serialized bytes of the stanzas on the wire.
    pub wire_bytes: u64,
    /// Stanzas on the wire (fragmentation or acknowledgements make it differ from `count`).
    pub wire_stanzas: u64,
    /// CPU of all `send` calls, microseconds.
    pub cpu_us_send: f64,
    /// CPU of all receiving calls, microseconds.
    pub cpu_us_receive: f64,
    /// Public-key operations in the data phase, both sides.
    pub ops: crate::cost::PkOps,
}

/// One-time costs.
#[derive(Debug, Clone, Serialize)]
pub struct OneTimeReport {
    /// CPU to generate the initiator's long-term identity, microseconds.
    pub keygen_cpu_us_initiator: f64,
    /// CPU to generate the responder's long-term identity, microseconds.
    pub keygen_cpu_us_responder: f64,
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// The virtual time between two application stanzas of the workload (a
/// conversation's pace; it matters to protocols with time rules, e.g. RFC 3923's
/// certificate attachment every 5 minutes and its replay window).
pub const MESSAGE_INTERVAL: Duration = Duration::from_secs(1);

/// Run the handshake and `messages` stanzas each way (alternating, one
/// [`MESSAGE_INTERVAL`] apart on the virtual clock), checking that every
/// delivered stanza equals the original.
pub fn run_workload(
    proto: &dyn Protocol,
    seed: u64,
    messages: u64,
    size: usize,
    options: &Options,
    mut progress: impl FnMut(u64),
) -> crate::Result<(RunReport, Link)> {
    let id = proto.info().id;
    let ids = provision(proto, seed)?;
    let mut link = link_for(proto, &ids, seed, options)?;
    link.handshake().map_err(|e| crate::fail!("{id}: {e}"))?;
    link.set_phase(Phase::Data);
    let mut plaintext_bytes = 0u64;
    for n in 0..messages {
        for from in 0..2 {
            let el = workload_stanza(seed, from, n, size)?;
            plaintext_bytes += stanza::wire_size(&el) as u64;
            link.advance(MESSAGE_INTERVAL);
            let mark = link.delivery_mark(1 - from);
            link.send(from, el.clone())
                .map_err(|e| crate::fail!("{id}: send #{n} from {}: {e}", full_jid(from)))?;
            link.pump().map_err(|e| crate::fail!("{id}: {e}"))?;
            let got = link.delivered_since(1 - from, mark);
            if got != [el] {
                return Err(crate::fail!(
                    "{id}: message #{n} from {} was not delivered intact ({} delivered; errors: {:?})",
                    full_jid(from),
                    got.len(),
                    link.party(1 - from).errors
                ));
            }
        }
        progress(n + 1);
    }
    link.finish();
    let hs = Phase::Handshake;
    let data = Phase::Data;
    let (mut cpu_send, mut cpu_recv) = (0u64, 0u64);
    for s in link.samples.iter().filter(|s| s.phase == data) {
        match s.kind {
            crate::link::CallKind::Send => cpu_send += s.cpu_ns,
            crate::link::CallKind::Receive => cpu_recv += s.cpu_ns,
            _ => {}
        }
    }
    let d_ab = link.counters(data, Dir::AtoB);
    let d_ba = link.counters(data, Dir::BtoA);
    let ops0 = link.party(0).ops(data);
    let ops1 = link.party(1).ops(data);
    let h_ab = link.counters(hs, Dir::AtoB);
    let h_ba = link.counters(hs, Dir::BtoA);
    let report = RunReport {
        protocol: id.to_string(),
        family: proto.info().family.to_string(),
        seed,
        handshake: HandshakeReport {
            messages: h_ab.messages + h_ba.messages,
            flights: link.flights(hs),
            round_trips: link.flights(hs) as f64 / 2.0,
            bytes_initiator: h_ab.bytes,
            bytes_responder: h_ba.bytes,
            cpu_us_initiator: us(link.party(0).cpu(hs)),
            cpu_us_responder: us(link.party(1).cpu(hs)),
            ops_initiator: crate::cost::PkOps::of(link.party(0).ops(hs)),
            ops_responder: crate::cost::PkOps::of(link.party(1).ops(hs)),
        },
        messages: MessageReport {
            count: messages * 2,
            body_size: size,
            plaintext_bytes,
            wire_bytes: d_ab.bytes + d_ba.bytes,
            wire_stanzas: d_ab.messages + d_ba.messages,
            cpu_us_send: us(Duration::from_nanos(cpu_send)),
            cpu_us_receive: us(Duration::from_nanos(cpu_recv)),
            ops: crate::cost::PkOps::of(ops0).add(&crate::cost::PkOps::of(ops1)),
        },
        one_time: OneTimeReport {
            keygen_cpu_us_initiator: us(ids.keygen_cpu[0]),
            keygen_cpu_us_responder: us(ids.keygen_cpu[1]),
        },
    };
    Ok((report, link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_text_is_deterministic_and_exact() {
        assert_eq!(body_text(1, 2, 100), body_text(1, 2, 100));
        assert_ne!(body_text(1, 2, 100), body_text(1, 3, 100));
        assert_eq!(body_text(9, 0, 4096).len(), 4096);
        assert!(body_text(0, 0, 0).is_empty());
    }
}
