//! The in-memory link between two sessions: it carries stanzas, measures them
//! and lets an adversary act on them.
//!
//! The link only sees the [`Session`] trait. It serializes every emitted stanza
//! (that is what is counted and what the adversary sees), parses what is
//! delivered (as a server would), counts messages, bytes and flights per phase
//! and direction, times every session call with the thread CPU clock, and
//! records a transcript stamped with the virtual clock.

use crate::adversary::{Adversary, Forward, Passive, Wire};
use crate::cpu;
use e2elab_core::{
    ops, stanza, Element, Env, Error, Event, OpLog, Outbox, PeerIdentity, Protection, Session,
    SessionState, Timestamp, Warning,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Direction of travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Dir {
    /// From the initiator to the responder.
    #[serde(rename = "initiator->responder")]
    AtoB,
    /// From the responder to the initiator.
    #[serde(rename = "responder->initiator")]
    BtoA,
}

impl Dir {
    /// Index of the sending party (0 = initiator).
    pub fn from_idx(self) -> usize {
        match self {
            Dir::AtoB => 0,
            Dir::BtoA => 1,
        }
    }

    /// Index of the receiving party.
    pub fn to_idx(self) -> usize {
        1 - self.from_idx()
    }

    /// The direction away from party `idx`.
    pub fn from_party(idx: usize) -> Dir {
        if idx == 0 {
            Dir::AtoB
        } else {
            Dir::BtoA
        }
    }

    /// `initiator->responder` / `responder->initiator`.
    pub fn label(self) -> &'static str {
        match self {
            Dir::AtoB => "initiator->responder",
            Dir::BtoA => "responder->initiator",
        }
    }
}

/// Which part of a run a stanza belongs to; the driver declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Key exchange / authentication.
    Handshake,
    /// Protected application stanzas.
    Data,
    /// Ending the session.
    Close,
}

impl Phase {
    fn idx(self) -> usize {
        match self {
            Phase::Handshake => 0,
            Phase::Data => 1,
            Phase::Close => 2,
        }
    }
}

/// What kind of session call was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// `start`
    Start,
    /// `send`
    Send,
    /// `handle_inbound`
    Receive,
    /// `close`
    Close,
    /// `handle_timeout`
    Timeout,
}

/// One timed session call.
#[derive(Debug, Clone, Serialize)]
pub struct CallSample {
    /// 0 = initiator, 1 = responder.
    pub party: usize,
    /// Phase at the time.
    pub phase: Phase,
    /// Which call.
    pub kind: CallKind,
    /// Thread CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Wall time, nanoseconds.
    pub wall_ns: u64,
    /// Of `cpu_ns`: parsing the received stanza (receive calls).
    pub parse_cpu_ns: u64,
    /// Whether the call returned an error.
    pub failed: bool,
    /// The operations the call recorded (XML of the stanzas it received
    /// and sent included).
    pub ops: OpLog,
    /// The instruction-count regions of the call ([`cpu::last_region`]),
    /// when the thread is instrumented.
    pub regions: Vec<u64>,
}

/// Per phase and direction counters of emitted stanzas.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    /// Stanzas emitted.
    pub messages: u64,
    /// Serialized bytes emitted.
    pub bytes: u64,
}

/// What happened to a stanza at the receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver accepted it.
    Accepted {
        /// Application stanzas it delivered as a result.
        delivered: usize,
    },
    /// The receiver returned an error.
    Rejected {
        /// [`Error::kind`].
        kind: String,
        /// The error's message.
        message: String,
    },
    /// It did not parse as XML, so no session saw it (a server would drop it).
    Unparseable,
    /// The adversary dropped it.
    Dropped,
}

/// One line of the transcript: a stanza that reached the peer (or was injected).
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptEntry {
    /// Sequence number of the emission it came from (0 for injections).
    pub seq: u64,
    /// Virtual time at delivery.
    pub at: Timestamp,
    /// Direction.
    pub dir: Dir,
    /// Phase.
    pub phase: Phase,
    /// The adversary's action (`pass` for an honest link).
    pub action: &'static str,
    /// Serialized stanza as delivered.
    pub xml: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// What the receiver made of it.
    pub outcome: Outcome,
}

/// The result of delivering one stanza to a session directly.
#[derive(Debug)]
pub struct Delivery {
    /// The session's result.
    pub result: Result<(), Error>,
    /// Application stanzas delivered by this call.
    pub delivered: Vec<Element>,
    /// The label of each of `delivered`, in the same order.
    pub labels: Vec<Protection>,
    /// Stanzas delivered as unprotected by this call.
    pub unprotected: usize,
    /// Stanzas the receiver emitted in response.
    pub emitted: usize,
    /// State before the call.
    pub state_before: SessionState,
    /// State after the call.
    pub state_after: SessionState,
}

/// One side of the link.
pub struct Party {
    session: Box<dyn Session>,
    /// This side's environment.
    pub env: Env,
    out: Outbox,
    /// Peer identity once established.
    pub established: Option<PeerIdentity>,
    /// The virtual time of every `Established` event (a re-negotiated
    /// session adds one).
    pub established_at: Vec<Timestamp>,
    /// Application stanzas delivered as protected, in order.
    pub delivered: Vec<Element>,
    /// The label of each of `delivered` ([`Event::Delivered`]), same order.
    pub labels: Vec<Protection>,
    /// Stanzas delivered as unprotected ([`Event::DeliveredUnprotected`]).
    pub delivered_unprotected: Vec<Element>,
    /// Warnings raised.
    pub warnings: Vec<Warning>,
    /// The peer closed the session.
    pub peer_closed: bool,
    /// Errors returned by this side's calls, with the transcript index (if any).
    pub errors: Vec<Error>,
    cpu: [Duration; 3],
    ops_at_phase: [OpLog; 3],
}

impl Party {
    fn new(session: Box<dyn Session>, env: Env) -> Self {
        Party {
            session,
            env,
            out: Outbox::new(),
            established: None,
            delivered: Vec::new(),
            established_at: Vec::new(),
            labels: Vec::new(),
            delivered_unprotected: Vec::new(),
            warnings: Vec::new(),
            peer_closed: false,
            errors: Vec::new(),
            cpu: [Duration::ZERO; 3],
            ops_at_phase: Default::default(),
        }
    }

    /// The session.
    pub fn session(&self) -> &dyn Session {
        self.session.as_ref()
    }

    /// CPU time spent in this side's calls during `phase`.
    pub fn cpu(&self, phase: Phase) -> Duration {
        self.cpu[phase.idx()]
    }

    /// Every operation this side's calls recorded during `phase`
    /// ([`e2elab_core::ops`]), including the XML serialization of what it
    /// sent and the parsing of what it received.
    pub fn ops(&self, phase: Phase) -> &OpLog {
        &self.ops_at_phase[phase.idx()]
    }
}

/// Two sessions, a virtual clock, an adversary, counters and a transcript.
pub struct Link {
    parties: [Party; 2],
    clock: Timestamp,
    one_way_delay: Duration,
    queue: VecDeque<(u64, Forward, Phase)>,
    phase: Phase,
    adversary: Box<dyn Adversary>,
    counters: [[Counters; 2]; 3],
    flights: [u64; 3],
    last_dir: [Option<Dir>; 3],
    emitted: [u64; 2],
    seq: u64,
    /// Every stanza that reached a receiver (or was lost as unparseable).
    pub transcript: Vec<TranscriptEntry>,
    /// Every timed session call.
    pub samples: Vec<CallSample>,
    /// Every emitted stanza in order (direction, phase, wire form): what a
    /// passive observer of the honest senders saw.
    pub emissions: Vec<(Dir, Phase, String)>,
    /// The virtual time of each emission (same order as `emissions`).
    pub emission_times: Vec<Timestamp>,
    max_steps: usize,
}

/// The link gave up: more steps than its bound (a protocol loop or a stuck handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled(pub String);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link stalled: {}", self.0)
    }
}

impl std::error::Error for Stalled {}

impl Link {
    /// A link between an initiator and a responder session, each with its own
    /// environment, with a passive adversary and no delay.
    pub fn new(initiator: (Box<dyn Session>, Env), responder: (Box<dyn Session>, Env)) -> Self {
        let clock = initiator.1.now().max(responder.1.now());
        Link {
            parties: [
                Party::new(initiator.0, initiator.1),
                Party::new(responder.0, responder.1),
            ],
            clock,
            one_way_delay: Duration::ZERO,
            queue: VecDeque::new(),
            phase: Phase::Handshake,
            adversary: Box::new(Passive),
            counters: [[Counters::default(); 2]; 3],
            flights: [0; 3],
            last_dir: [None; 3],
            emitted: [0; 2],
            seq: 0,
            transcript: Vec::new(),
            samples: Vec::new(),
            emissions: Vec::new(),
            emission_times: Vec::new(),
            max_steps: 1_000_000,
        }
    }

    /// Replace the adversary.
    pub fn set_adversary(&mut self, a: Box<dyn Adversary>) {
        self.adversary = a;
    }

    /// Virtual one-way delay added to every delivery.
    pub fn set_one_way_delay(&mut self, d: Duration) {
        self.one_way_delay = d;
    }

    /// Declare the phase that following emissions (and calls) belong to.
    pub fn set_phase(&mut self, p: Phase) {
        self.phase = p;
    }

    /// Kept for callers that ended a run explicitly: operations are charged
    /// per call, so there is nothing left to close.
    pub fn finish(&mut self) {}

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The virtual clock.
    pub fn now(&self) -> Timestamp {
        self.clock
    }

    /// Move the virtual clock forward and fire any session timeouts now due.
    pub fn advance(&mut self, d: Duration) {
        self.clock = self.clock.plus(d);
        for i in 0..2 {
            if self.parties[i]
                .session
                .poll_timeout()
                .is_some_and(|t| t <= self.clock)
            {
                let _ = self.call(i, CallKind::Timeout, None, |s, env, out| {
                    s.handle_timeout(env, out)
                });
            }
        }
    }

    /// Party 0 (initiator) or 1 (responder).
    pub fn party(&self, idx: usize) -> &Party {
        &self.parties[idx]
    }

    /// Counters for a phase and direction.
    pub fn counters(&self, phase: Phase, dir: Dir) -> Counters {
        self.counters[phase.idx()][dir.from_idx()]
    }

    /// Flights (maximal runs of stanzas in one direction) in a phase.
    pub fn flights(&self, phase: Phase) -> u64 {
        self.flights[phase.idx()]
    }

    /// Stanzas still in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Take every stanza in flight out of the link (for tests that deliver by hand).
    pub fn take_in_flight(&mut self) -> Vec<(Dir, String)> {
        self.queue
            .drain(..)
            .map(|(_, f, _)| (f.dir, f.xml))
            .collect()
    }

    /// Whether both sessions are in state `Established`.
    pub fn both_established(&self) -> bool {
        self.parties
            .iter()
            .all(|p| p.session.state() == SessionState::Established)
    }

    /// Run a session call on party `idx` with timing, then drain its outbox.
    /// The serialization of the stanzas it emitted is part of the call (the
    /// sender's cost), and so is `pre` (the parsing of what it received):
    /// its CPU and operations are added to the sample.
    fn call(
        &mut self,
        idx: usize,
        kind: CallKind,
        pre: Option<(Duration, Duration, OpLog, Option<u64>)>,
        f: impl FnOnce(&mut dyn Session, &mut Env, &mut Outbox) -> Result<(), Error>,
    ) -> (Result<(), Error>, Vec<Element>, usize) {
        let phase = self.phase;
        let clock = self.clock;
        let p = &mut self.parties[idx];
        p.env.set_now(clock);
        let ((r, wires), cpu, wall, mut log) = {
            let Party {
                session, env, out, ..
            } = p;
            let before = ops::snapshot();
            let (rw, cpu, wall) = cpu::measure(|| {
                let r = f(session.as_mut(), env, out);
                let mut wires = Vec::new();
                while let Some(el) = out.poll_transmit() {
                    wires.push(stanza::serialize(&el));
                }
                (r, wires)
            });
            (rw, cpu, wall, ops::snapshot().since(&before))
        };
        let mut regions: Vec<u64> = cpu::last_region().into_iter().collect();
        let (mut cpu, mut wall) = (cpu, wall);
        let mut xml_cpu = Duration::ZERO;
        if let Some((pc, pw, plog, region)) = pre {
            cpu += pc;
            wall += pw;
            xml_cpu += pc;
            log.merge(&plog);
            regions.extend(region);
        }
        p.cpu[phase.idx()] += cpu;
        p.ops_at_phase[phase.idx()].merge(&log);
        self.samples.push(CallSample {
            party: idx,
            phase,
            kind,
            cpu_ns: u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX),
            wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            parse_cpu_ns: u64::try_from(xml_cpu.as_nanos()).unwrap_or(u64::MAX),
            failed: r.is_err(),
            ops: log,
            regions,
        });
        if let Err(e) = &r {
            p.errors.push(e.clone());
        }
        let mut delivered = Vec::new();
        while let Some(ev) = p.out.poll_event() {
            match ev {
                Event::Established(id) => {
                    p.established = Some(id);
                    p.established_at.push(clock);
                }
                Event::Delivered { stanza, protection } => {
                    p.delivered.push(stanza.clone());
                    p.labels.push(protection);
                    delivered.push(stanza);
                }
                Event::DeliveredUnprotected(el) => p.delivered_unprotected.push(el),
                Event::PeerClosed => p.peer_closed = true,
                Event::Warning(w) => p.warnings.push(w),
                _ => {}
            }
        }
        let n = wires.len();
        for xml in wires {
            self.emit(idx, xml);
        }
        (r, delivered, n)
    }

    fn emit(&mut self, from: usize, xml: String) {
        let dir = Dir::from_party(from);
        let ph = self.phase.idx();
        self.seq += 1;
        let c = &mut self.counters[ph][from];
        c.messages += 1;
        c.bytes += xml.len() as u64;
        if self.last_dir[ph] != Some(dir) {
            self.flights[ph] += 1;
            self.last_dir[ph] = Some(dir);
        }
        let w = Wire {
            seq: self.seq,
            index_in_dir: self.emitted[from],
            dir,
            phase: self.phase,
            xml,
            at: self.clock,
        };
        self.emitted[from] += 1;
        let fwd = self.adversary.on_wire(&w);
        if fwd.is_empty() {
            self.transcript.push(TranscriptEntry {
                seq: w.seq,
                at: self.clock,
                dir,
                phase: self.phase,
                action: "drop",
                bytes: w.xml.len(),
                xml: w.xml.clone(),
                outcome: Outcome::Dropped,
            });
        }
        self.emissions.push((dir, self.phase, w.xml));
        self.emission_times.push(self.clock);
        for f in fwd {
            self.queue.push_back((self.seq, f, self.phase));
        }
    }

    /// Where party `idx`'s two delivery lists stand (protected, unprotected).
    pub fn delivery_mark(&self, idx: usize) -> (usize, usize) {
        let p = &self.parties[idx];
        (p.delivered.len(), p.delivered_unprotected.len())
    }

    /// What party `idx` was delivered since `mark`: protected, then
    /// unprotected (a stanza with nothing its profile protects, such as an
    /// empty OTR or JEP-0027 message, travels in clear and is delivered
    /// as unprotected).
    pub fn delivered_since(&self, idx: usize, mark: (usize, usize)) -> Vec<Element> {
        let p = &self.parties[idx];
        let mut v = p.delivered[mark.0..].to_vec();
        v.extend_from_slice(&p.delivered_unprotected[mark.1..]);
        v
    }

    /// Begin the handshake on the initiator.
    pub fn start(&mut self) -> Result<(), Error> {
        self.call(0, CallKind::Start, None, |s, env, out| s.start(env, out))
            .0
    }

    /// Hand an application stanza to party `idx` to protect and send.
    pub fn send(&mut self, idx: usize, el: Element) -> Result<(), Error> {
        self.call(idx, CallKind::Send, None, |s, env, out| {
            s.send(env, el, out)
        })
        .0
    }

    /// Close party `idx`'s session.
    pub fn close(&mut self, idx: usize) -> Result<(), Error> {
        self.call(idx, CallKind::Close, None, |s, env, out| s.close(env, out))
            .0
    }

    /// Deliver a wire form to the receiver of `dir` right now, bypassing the
    /// queue and the adversary (what an active attacker or a test does).
    pub fn deliver_raw(&mut self, dir: Dir, xml: &str) -> Delivery {
        self.deliver(0, dir, xml.to_string(), "inject", self.phase)
    }

    /// Deliver a wire form that arrived by another transport (a real server)
    /// to the receiver of `dir`, recorded in the transcript under `action`.
    pub fn deliver_wire(&mut self, dir: Dir, xml: &str, action: &'static str) -> Delivery {
        self.deliver(0, dir, xml.to_string(), action, self.phase)
    }

    fn deliver(
        &mut self,
        seq: u64,
        dir: Dir,
        xml: String,
        action: &'static str,
        phase: Phase,
    ) -> Delivery {
        let to = dir.to_idx();
        let state_before = self.parties[to].session.state();
        let unprotected_before = self.parties[to].delivered_unprotected.len();
        let labels_before = self.parties[to].labels.len();
        let bytes = xml.len();
        let before = ops::snapshot();
        let (parsed, pcpu, pwall) = cpu::measure(|| stanza::parse(&xml));
        let parse_ops = ops::snapshot().since(&before);
        let parse_region = cpu::last_region();
        let (result, delivered, emitted, outcome) = match parsed {
            Err(e) => (Err(Error::Decode(e)), Vec::new(), 0, Outcome::Unparseable),
            Ok(el) => {
                let (r, d, n) = self.call(
                    to,
                    CallKind::Receive,
                    Some((pcpu, pwall, parse_ops, parse_region)),
                    |s, env, out| s.handle_inbound(env, el, out),
                );
                let outcome = match &r {
                    Ok(()) => Outcome::Accepted { delivered: d.len() },
                    Err(e) => Outcome::Rejected {
                        kind: e.kind().to_string(),
                        message: e.to_string(),
                    },
                };
                (r, d, n, outcome)
            }
        };
        self.transcript.push(TranscriptEntry {
            seq,
            at: self.clock,
            dir,
            phase,
            action,
            xml,
            bytes,
            outcome,
        });
        Delivery {
            result,
            delivered,
            labels: self.parties[to].labels[labels_before..].to_vec(),
            unprotected: self.parties[to].delivered_unprotected.len() - unprotected_before,
            emitted,
            state_before,
            state_after: self.parties[to].session.state(),
        }
    }

    /// Deliver everything in flight (and whatever the receivers emit in turn,
    /// and whatever the adversary releases when idle) until the link is quiet.
    pub fn pump(&mut self) -> Result<(), Stalled> {
        let mut steps = 0usize;
        loop {
            let next = match self.queue.pop_front() {
                Some(x) => x,
                None => {
                    let released = self.adversary.on_idle();
                    if released.is_empty() {
                        return Ok(());
                    }
                    for f in released {
                        self.queue.push_back((0, f, self.phase));
                    }
                    continue;
                }
            };
            steps += 1;
            if steps > self.max_steps {
                return Err(Stalled(format!("more than {} deliveries", self.max_steps)));
            }
            let (seq, f, phase) = next;
            self.clock = self.clock.plus(self.one_way_delay);
            let _ = self.deliver(seq, f.dir, f.xml, f.action, phase);
        }
    }

    /// Run the handshake: `start` on the initiator, then pump until quiet.
    /// Fails if the link stalls or either side is not established at the end.
    pub fn handshake(&mut self) -> crate::Result<()> {
        self.set_phase(Phase::Handshake);
        self.start()
            .map_err(|e| crate::fail!("start failed: {e}"))?;
        self.pump().map_err(crate::Error::msg)?;
        if !self.both_established() {
            let errs: Vec<String> = self
                .parties
                .iter()
                .flat_map(|p| p.errors.iter().map(|e| e.to_string()))
                .collect();
            return Err(crate::fail!(
                "handshake did not complete (initiator {:?}, responder {:?}); errors: [{}]",
                self.parties[0].session.state(),
                self.parties[1].session.state(),
                errs.join("; ")
            ));
        }
        Ok(())
    }
}
