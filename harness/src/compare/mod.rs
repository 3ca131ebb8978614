//! `e2elab compare`: the measured comparison of every selected profile.
//!
//! One run, in phases (each timed in the provenance):
//! 1. *in memory*: repeated (a discarded warm-up, then `reps`), with the
//!    profiles in a fresh random order every repetition (seeded). Each
//!    profile's repetition measures the handshake (stanzas, flights, round
//!    trips, bytes each way, CPU per side, every operation per side), the
//!    first protected message (for the time to first message under network
//!    models, see [`TTFM_FORMULA`]), the per-message sweep over body sizes
//!    and a directed presence; right after it, its *floors* run: exactly the
//!    operations it recorded, replayed on the same primitives
//!    ([`floors`], [`FLOOR_FORMULA`]), so each repetition gives one
//!    measured/floor ratio per phase. Long-term key generation is timed in
//!    the first repetitions, apart. Every primitive the protocols ran is
//!    timed alone too (the primitives table).
//! 2. *instructions*: the same work under callgrind in fresh processes, twice
//!    ([`instr`]): instruction counts beside the times, and the spread
//!    between the two runs.
//! 3. *cold*: the first handshake in fresh processes ([`cold`]).
//! 4. *scale*: established pairs held at once, read at each point of the
//!    curve, in fresh processes ([`scale`]).
//! 5. with `--runs 2`, phase 1 again: the run-to-run difference of every
//!    headline figure beside its interval.
//!
//! Every timed figure keeps all its samples and a bootstrap 95% interval of
//! its median ([`stats`]). Output: `DIR/results.json` ([`schema`]) plus CSV
//! files ([`tables`]); nothing in them was not measured in that run.

pub mod cold;
pub mod floors;
pub mod instr;
pub mod provenance;
pub mod scale;
pub mod schema;
pub mod stats;
pub mod tables;
pub mod workers;

pub use schema::*;

use crate::cpu;
use crate::driver;
use crate::link::{CallKind, CallSample, Dir, Link, Phase};
use crate::registry;
use e2elab_core::{stanza, Env, OpLog, Options, Protocol};
use floors::Replayer;
use std::collections::BTreeSet;
use std::path::Path;

/// Body sizes of the per-message sweep, bytes.
pub const SIZES: [usize; 8] = [0, 16, 64, 256, 1024, 4096, 16384, 65536];

/// Body size of the first protected message (the time-to-first-message figure).
pub const FIRST_MESSAGE_SIZE: usize = 64;

/// The body size of the per-message goal (cost <= 1.5 x floor).
pub const GOAL_MESSAGE_SIZE: usize = 1024;

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
sequential on the link (each answers a delivery), so all of them are on the critical path. CPU includes serializing \
what a call emits and parsing what it received. No bandwidth cap.";

/// How a floor ratio is computed.
pub const FLOOR_FORMULA: &str = "floor = CPU of running again exactly the operations the phase recorded (every \
modexp, RSA/DSA/Ed25519/X25519 operation, cipher, MAC, hash, base64 and XML serialization/parse, with the bytes each \
call processed), on the same primitives in the same libraries, right after the phase in the same repetition; \
protocol floor: the same operations done the cheapest standard way (RSA with CRT); library floor: exactly as run. \
ratio = measured / floor per repetition (median and bootstrap 95% interval over repetitions). Handshake: both \
sides' calls. Message: send + receive per message (both directions alternate).";

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Smoke-run sizes.
    pub quick: bool,
    /// Profile ids (empty or `all`: every profile).
    pub protocols: Vec<String>,
    /// Seed.
    pub seed: u64,
    /// In-memory runs (2: the run-to-run spread of the headline figures).
    pub runs: usize,
    /// Measure instruction counts under callgrind.
    pub instructions: bool,
    /// Measure the cold first handshake in fresh processes.
    pub cold: bool,
    /// Run the scale curve.
    pub scale: bool,
}

impl Config {
    /// Every phase, one in-memory run.
    pub fn new(quick: bool, protocols: Vec<String>, seed: u64) -> Config {
        Config {
            quick,
            protocols,
            seed,
            runs: 1,
            instructions: true,
            cold: true,
            scale: true,
        }
    }
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
                scale_points: vec![10, 20],
                scale_reps: 2,
                scale_repeat_points: vec![10],
                cold_processes: 2,
                instruction_runs: 2,
            }
        } else {
            Plan {
                mode: "full".into(),
                warmup: 1,
                reps: 21,
                messages_per_size: 4,
                sizes: SIZES.to_vec(),
                keygen_reps: 10,
                primitive_calls: 5,
                scale_points: vec![1000, 2000, 5000, 10_000],
                scale_reps: 3,
                scale_repeat_points: vec![1000, 2000, 5000],
                cold_processes: 5,
                instruction_runs: 2,
            }
        }
    }
}

/// One size of one profile's repetition.
#[derive(Debug, Clone, Default)]
pub struct SizeOut {
    /// Body bytes.
    pub size: usize,
    /// Messages (both directions).
    pub k: u64,
    /// Serialized application stanza bytes, all messages.
    pub plaintext_bytes: u64,
    /// Wire bytes, all messages.
    pub wire_bytes: u64,
    /// Wire stanzas, all messages.
    pub wire_stanzas: u64,
    /// Send CPU, all messages, microseconds.
    pub send_us: f64,
    /// Receive CPU, all messages, microseconds.
    pub recv_us: f64,
    /// Of the receive: parsing.
    pub parse_us: f64,
    /// Every operation of both sides, all messages.
    pub log: OpLog,
    /// The instruction regions of the sends and of the receipts.
    pub regions: [Vec<u64>; 2],
}

/// What one repetition of one profile measured.
#[derive(Debug, Clone, Default)]
pub struct RepOut {
    /// Handshake stanzas.
    pub hs_messages: u64,
    /// Handshake flights.
    pub hs_flights: u64,
    /// Bytes each side sent in the handshake.
    pub hs_bytes: [u64; 2],
    /// CPU of each side's handshake calls, microseconds.
    pub hs_cpu_us: [f64; 2],
    /// Each side's handshake operations.
    pub hs_ops: [OpLog; 2],
    /// Each side's handshake instruction regions.
    pub hs_regions: [Vec<u64>; 2],
    /// The initiator's send of the first message, microseconds.
    pub first_send_us: f64,
    /// The responder's receipt of it.
    pub first_recv_us: f64,
    /// The sweep.
    pub sizes: Vec<SizeOut>,
    /// One directed presence each way (profiles protecting presence).
    pub presence: Option<SizeOut>,
}

impl RepOut {
    /// Both sides' handshake operations.
    pub fn hs_log(&self) -> OpLog {
        let mut l = self.hs_ops[0].clone();
        l.merge(&self.hs_ops[1]);
        l
    }

    /// CPU of the whole handshake, microseconds.
    pub fn hs_total_us(&self) -> f64 {
        self.hs_cpu_us[0] + self.hs_cpu_us[1]
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Sum of the samples from `from` on, of one kind and/or party.
fn window(
    link: &Link,
    from: usize,
    kind: Option<CallKind>,
    party: Option<usize>,
) -> impl Iterator<Item = &CallSample> {
    link.samples[from..]
        .iter()
        .filter(move |s| kind.is_none_or(|k| s.kind == k) && party.is_none_or(|p| s.party == p))
}

fn sum_cpu(link: &Link, from: usize, kind: Option<CallKind>, party: Option<usize>) -> f64 {
    us(window(link, from, kind, party).map(|s| s.cpu_ns).sum())
}

/// Send one stanza from party `from` and check it arrives intact.
fn one_stanza(link: &mut Link, from: usize, el: e2elab_core::Element) -> crate::Result<u64> {
    let pt = e2elab_core::ops::paused(|| stanza::wire_size(&el)) as u64;
    link.advance(driver::MESSAGE_INTERVAL);
    let mark = link.delivery_mark(1 - from);
    link.send(from, el.clone())
        .map_err(|x| crate::fail!("send from party {from}: {x}"))?;
    link.pump().map_err(crate::Error::msg)?;
    let got = link.delivered_since(1 - from, mark);
    if got != [el] {
        return Err(crate::fail!(
            "stanza from party {from} not delivered intact ({} delivered; errors {:?})",
            got.len(),
            link.party(1 - from).errors
        ));
    }
    Ok(pt)
}

/// A directed presence (show, status, priority) from party `from`.
pub fn presence_stanza(seed: u64, from: usize, n: u64) -> crate::Result<e2elab_core::Element> {
    let mut p = stanza::new(e2elab_core::StanzaKind::Presence);
    let to = driver::full_jid(1 - from);
    let me = driver::full_jid(from);
    for (k, v) in [
        ("from", me.as_str()),
        ("to", to.as_str()),
        ("id", &format!("p{from}-{n}")),
    ] {
        stanza::set_attr(&mut p, k, v).map_err(crate::Error::msg)?;
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

/// Measure a window of stanzas sent by `send(link, from, n)` alternately
/// from each side, `k` in all.
fn sweep_window(
    link: &mut Link,
    size: usize,
    k: u64,
    n: &mut u64,
    mut make: impl FnMut(usize, u64) -> crate::Result<e2elab_core::Element>,
) -> crate::Result<SizeOut> {
    let mark = link.samples.len();
    let c0 = [
        link.counters(Phase::Data, Dir::AtoB),
        link.counters(Phase::Data, Dir::BtoA),
    ];
    let mut pt = 0u64;
    for i in 0..k {
        let from = (i % 2) as usize;
        pt += one_stanza(link, from, make(from, *n)?)?;
        *n += 1;
    }
    let c1 = [
        link.counters(Phase::Data, Dir::AtoB),
        link.counters(Phase::Data, Dir::BtoA),
    ];
    let mut log = OpLog::new();
    for s in &link.samples[mark..] {
        log.merge(&s.ops);
    }
    let regions = |kind| {
        window(link, mark, Some(kind), None)
            .flat_map(|s| s.regions.iter().copied())
            .collect::<Vec<u64>>()
    };
    Ok(SizeOut {
        size,
        k,
        plaintext_bytes: pt,
        wire_bytes: (c1[0].bytes + c1[1].bytes) - (c0[0].bytes + c0[1].bytes),
        wire_stanzas: (c1[0].messages + c1[1].messages) - (c0[0].messages + c0[1].messages),
        send_us: sum_cpu(link, mark, Some(CallKind::Send), None),
        recv_us: sum_cpu(link, mark, Some(CallKind::Receive), None),
        parse_us: us(window(link, mark, Some(CallKind::Receive), None)
            .map(|s| s.parse_cpu_ns)
            .sum()),
        log,
        regions: [regions(CallKind::Send), regions(CallKind::Receive)],
    })
}

/// One repetition of one profile: handshake, first message, sweep, presence.
pub fn one_rep(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    sizes: &[usize],
    messages_per_size: u64,
    seed: u64,
    mut step: impl FnMut(&str),
) -> crate::Result<RepOut> {
    let id = proto.info().id;
    let ctx = |x: crate::Error| crate::fail!("{id}: {x}");
    let mut link = driver::link_for(proto, ids, seed, &Options::new())?;
    step("handshake");
    link.handshake().map_err(|x| crate::fail!("{id}: {x}"))?;
    let hs = Phase::Handshake;
    let mut out = RepOut {
        hs_messages: link.counters(hs, Dir::AtoB).messages + link.counters(hs, Dir::BtoA).messages,
        hs_flights: link.flights(hs),
        hs_bytes: [
            link.counters(hs, Dir::AtoB).bytes,
            link.counters(hs, Dir::BtoA).bytes,
        ],
        hs_cpu_us: [
            sum_cpu(&link, 0, None, Some(0)),
            sum_cpu(&link, 0, None, Some(1)),
        ],
        hs_ops: [link.party(0).ops(hs).clone(), link.party(1).ops(hs).clone()],
        hs_regions: [0, 1].map(|p| {
            window(&link, 0, None, Some(p))
                .flat_map(|s| s.regions.iter().copied())
                .collect()
        }),
        ..Default::default()
    };
    link.set_phase(Phase::Data);
    // First protected message, initiator -> responder.
    let mark = link.samples.len();
    let first = driver::workload_stanza(seed, 0, 0, FIRST_MESSAGE_SIZE)?;
    one_stanza(&mut link, 0, first).map_err(ctx)?;
    out.first_send_us = sum_cpu(&link, mark, Some(CallKind::Send), Some(0));
    out.first_recv_us = sum_cpu(&link, mark, Some(CallKind::Receive), Some(1));
    let mut n = 1u64;
    for &size in sizes {
        step(&format!("{size} B messages"));
        let w = sweep_window(&mut link, size, messages_per_size * 2, &mut n, |from, n| {
            driver::workload_stanza(seed, from, n, size)
        })
        .map_err(ctx)?;
        out.sizes.push(w);
    }
    if proto
        .info()
        .protects
        .contains(&e2elab_core::StanzaKind::Presence)
    {
        step("directed presence");
        let w = sweep_window(&mut link, 0, 2, &mut n, |from, n| {
            presence_stanza(seed, from, n)
        })
        .map_err(ctx)?;
        out.presence = Some(w);
    }
    Ok(out)
}

/// The floors of one repetition: (protocol floor, library floor) in
/// microseconds for the handshake and for each size (per message).
#[derive(Debug, Clone, Default)]
pub struct FloorOut {
    /// Handshake.
    pub hs: (f64, f64),
    /// Per size, per message.
    pub sizes: Vec<(f64, f64)>,
}

/// Time the floors of `out` on `rp`.
pub fn floors_of(out: &RepOut, rp: &mut Replayer) -> crate::Result<FloorOut> {
    let both = |rp: &mut Replayer, log: &OpLog| -> crate::Result<(f64, f64)> {
        let ideal = log.map(e2elab_core::Op::ideal);
        let p = rp.time(&ideal)?.as_nanos() as f64 / 1000.0;
        let l = if ideal == *log {
            p
        } else {
            rp.time(log)?.as_nanos() as f64 / 1000.0
        };
        Ok((p, l))
    };
    let hs = both(rp, &out.hs_log())?;
    let mut sizes = Vec::new();
    for s in &out.sizes {
        let (p, l) = both(rp, &s.log)?;
        sizes.push((p / s.k as f64, l / s.k as f64));
    }
    Ok(FloorOut { hs, sizes })
}

/// The (operation, bytes per call) pairs of the handshakes and of the
/// per-message goal size, for the primitives table.
fn primitive_set(outs: &[&RepOut], goal_index: Option<usize>) -> BTreeSet<(e2elab_core::Op, u64)> {
    let mut set = BTreeSet::new();
    for o in outs {
        let mut logs = vec![o.hs_log()];
        if let Some(i) = goal_index {
            if let Some(s) = o.sizes.get(i) {
                logs.push(s.log.clone());
            }
        }
        for l in logs {
            for (op, t) in l.iter() {
                set.insert((*op, floors::per_call(t)));
                let ideal = op.ideal();
                if ideal != *op {
                    set.insert((ideal, floors::per_call(t)));
                }
            }
        }
    }
    set
}

/// The in-memory phase's raw outcome: per profile, every kept repetition
/// with its floors and key generation samples; the primitives' samples.
pub struct InMemory {
    /// Per profile: (repetition, floors) in measurement order.
    pub reps: Vec<Vec<(RepOut, FloorOut)>>,
    /// Per profile: key generation CPU samples, microseconds.
    pub keygen: Vec<Vec<f64>>,
    /// (operation, bytes per call) -> CPU samples, microseconds.
    pub primitives: Vec<((e2elab_core::Op, u64), Vec<f64>)>,
    /// The floors' replayer (its keys go to the instruction workers).
    pub replayer: Replayer,
}

/// Phase 1: the repeated in-memory measurement.
pub fn in_memory(
    protos: &[Box<dyn Protocol>],
    ids: &[driver::Identities],
    plan: &Plan,
    seed: u64,
    mut progress: impl FnMut(&str),
) -> crate::Result<InMemory> {
    let mut rp = Replayer::new(seed);
    let mut order_rng = Env::for_party(seed, "order");
    let total = plan.warmup + plan.reps;
    let goal_index = plan.sizes.iter().position(|s| *s == GOAL_MESSAGE_SIZE);
    let mut reps: Vec<Vec<(RepOut, FloorOut)>> = protos.iter().map(|_| Vec::new()).collect();
    let mut keygen: Vec<Vec<f64>> = protos.iter().map(|_| Vec::new()).collect();
    let mut prim_keys: Vec<(e2elab_core::Op, u64)> = Vec::new();
    let mut prim_samples: Vec<Vec<f64>> = Vec::new();
    for rep in 0..total {
        let keep = rep >= plan.warmup;
        let tag = if keep {
            format!("rep {}/{}", rep + 1 - plan.warmup, plan.reps)
        } else {
            "warm-up".to_string()
        };
        let mut order: Vec<usize> = (0..protos.len()).collect();
        stats::shuffle(&mut order, &mut order_rng);
        let mut this_rep = Vec::new();
        for &i in &order {
            let p = &protos[i];
            let id = p.info().id;
            let rseed = seed.wrapping_add(rep as u64);
            let out = one_rep(
                p.as_ref(),
                &ids[i],
                &plan.sizes,
                plan.messages_per_size,
                rseed,
                |what| progress(&format!("{tag} {id}: {what}")),
            )?;
            progress(&format!("{tag} {id}: floors"));
            let fl = floors_of(&out, &mut rp).map_err(|x| crate::fail!("{id}: {x}"))?;
            if keep && rep - plan.warmup < plan.keygen_reps {
                progress(&format!("{tag} {id}: long-term key generation"));
                // A fresh JID per profile and repetition: libotr keys are cached per
                // JID process-wide (shared by otr-v3 and otr-v2).
                let jid = format!("keygen-{id}-{rep}-{seed}@example.org");
                let mut env = Env::for_party(rseed, &format!("identity:{jid}"));
                let (r, c, _) = cpu::measure(|| p.generate_identity(&mut env, &jid));
                r.map_err(|x| crate::fail!("{id}: keygen: {x}"))?;
                keygen[i].push(c.as_nanos() as f64 / 1000.0);
            }
            this_rep.push((i, out, fl));
        }
        // The primitives table: every operation of a measured repetition
        // (the first one after the warm-up: a client's first session can
        // differ from its later ones, e.g. ESessions' retained secrets).
        if keep {
            if prim_keys.is_empty() {
                let outs: Vec<&RepOut> = this_rep.iter().map(|(_, o, _)| o).collect();
                prim_keys = primitive_set(&outs, goal_index).into_iter().collect();
                prim_samples = vec![Vec::new(); prim_keys.len()];
            }
            progress(&format!("{tag} primitives"));
            let mut porder: Vec<usize> = (0..prim_keys.len()).collect();
            stats::shuffle(&mut porder, &mut order_rng);
            for j in porder {
                let (op, n) = prim_keys[j];
                for _ in 0..plan.primitive_calls {
                    let c = rp.time_one(&op, n)?;
                    prim_samples[j].push(c.as_nanos() as f64 / 1000.0);
                }
            }
        }
        if keep {
            for (i, out, fl) in this_rep {
                reps[i].push((out, fl));
            }
        }
    }
    Ok(InMemory {
        reps,
        keygen,
        primitives: prim_keys.into_iter().zip(prim_samples).collect(),
        replayer: rp,
    })
}

/// The rows of the in-memory phase.
pub fn rows(
    protos: &[Box<dyn Protocol>],
    m: &InMemory,
    plan: &Plan,
    seed: u64,
    res: &mut Results,
) -> crate::Result<()> {
    let st = |v: &[f64], label: &str| Stat::of(v, seed, label);
    for (p, reps) in protos.iter().zip(&m.reps) {
        let info = p.info();
        let id = info.id.to_string();
        let Some((last, _)) = reps.last() else {
            return Err(crate::fail!("{id}: no measured repetition"));
        };
        let col = |f: &dyn Fn(&RepOut, &FloorOut) -> f64| -> Vec<f64> {
            reps.iter().map(|(o, fl)| f(o, fl)).collect()
        };
        res.profiles.push(ProfileRow {
            id: id.clone(),
            family: info.family.into(),
            spec: info.spec.into(),
        });
        let hs_log = last.hs_log();
        let hs = HandshakeRow {
            protocol: id.clone(),
            messages: last.hs_messages,
            flights: last.hs_flights,
            round_trips: last.hs_flights as f64 / 2.0,
            bytes_initiator: st(
                &col(&|o, _| o.hs_bytes[0] as f64),
                &format!("{id}/hs/bytes0"),
            ),
            bytes_responder: st(
                &col(&|o, _| o.hs_bytes[1] as f64),
                &format!("{id}/hs/bytes1"),
            ),
            cpu_us_initiator: st(&col(&|o, _| o.hs_cpu_us[0]), &format!("{id}/hs/cpu0")),
            cpu_us_responder: st(&col(&|o, _| o.hs_cpu_us[1]), &format!("{id}/hs/cpu1")),
            cpu_us_total: st(&col(&|o, _| o.hs_total_us()), &format!("{id}/hs/cpu")),
            ops_initiator: PkOps::of(&last.hs_ops[0]),
            ops_responder: PkOps::of(&last.hs_ops[1]),
            ops_source: crate::cost::source(&hs_log).into(),
            ops: OpEntry::list(&hs_log, 1.0),
        };
        res.keygen.push(KeygenRow {
            protocol: id.clone(),
            cpu_us: st(&m.keygen[res.keygen.len()], &format!("{id}/keygen")),
        });
        for (si, size) in plan.sizes.iter().enumerate() {
            let s = |f: &dyn Fn(&SizeOut) -> f64| -> Vec<f64> {
                reps.iter().map(|(o, _)| f(&o.sizes[si])).collect()
            };
            let lab = |x: &str| format!("{id}/{size}/{x}");
            let ls = &last.sizes[si];
            res.messages.push(MessageRow {
                protocol: id.clone(),
                size: *size,
                plaintext_bytes: st(&s(&|w| w.plaintext_bytes as f64 / w.k as f64), &lab("pt")),
                wire_bytes: st(&s(&|w| w.wire_bytes as f64 / w.k as f64), &lab("wire")),
                wire_stanzas: st(&s(&|w| w.wire_stanzas as f64 / w.k as f64), &lab("stanzas")),
                expansion: st(
                    &s(&|w| w.wire_bytes as f64 / w.plaintext_bytes.max(1) as f64),
                    &lab("exp"),
                ),
                send_cpu_us: st(&s(&|w| w.send_us / w.k as f64), &lab("send")),
                recv_cpu_us: st(&s(&|w| w.recv_us / w.k as f64), &lab("recv")),
                total_cpu_us: st(&s(&|w| (w.send_us + w.recv_us) / w.k as f64), &lab("total")),
                parse_cpu_us: st(&s(&|w| w.parse_us / w.k as f64), &lab("parse")),
                ops: PkOps::of(&ls.log).scale(1.0 / ls.k as f64),
            });
            // The message floor at this size.
            let measured = s(&|w| (w.send_us + w.recv_us) / w.k as f64);
            let floor_p: Vec<f64> = reps.iter().map(|(_, f)| f.sizes[si].0).collect();
            let floor_l: Vec<f64> = reps.iter().map(|(_, f)| f.sizes[si].1).collect();
            res.floors.push(floor_row(
                &id,
                "message",
                Some(*size),
                &ls.log,
                ls.k as f64,
                &measured,
                &floor_p,
                &floor_l,
                seed,
            ));
        }
        let measured = col(&|o, _| o.hs_total_us());
        if !hs_log.is_empty() && last.hs_messages > 0 {
            let fp = col(&|_, f| f.hs.0);
            let fl = col(&|_, f| f.hs.1);
            res.floors.push(floor_row(
                &id,
                "handshake",
                None,
                &hs_log,
                1.0,
                &measured,
                &fp,
                &fl,
                seed,
            ));
        }
        // Time to first protected message.
        let legs = if last.hs_flights == 0 {
            1
        } else if last.hs_flights % 2 == 1 {
            last.hs_flights
        } else {
            last.hs_flights + 1
        };
        let crit = col(&|o, _| o.hs_total_us() + o.first_send_us + o.first_recv_us);
        for (net, rtt) in NETWORKS {
            let t: Vec<f64> = crit
                .iter()
                .map(|c| c / 1000.0 + legs as f64 * rtt / 2.0)
                .collect();
            let c: Vec<f64> = crit.iter().map(|c| c / 1000.0).collect();
            res.latency.push(LatencyRow {
                protocol: id.clone(),
                network: net.into(),
                rtt_ms: rtt,
                legs,
                cpu_ms: st(&c, &format!("{id}/crit")),
                ttfm_ms: st(&t, &format!("{id}/ttfm/{net}")),
            });
        }
        if last.presence.is_some() {
            let pr = |f: &dyn Fn(&SizeOut) -> f64| -> Vec<f64> {
                reps.iter()
                    .filter_map(|(o, _)| o.presence.as_ref().map(f))
                    .collect()
            };
            let lab = |x: &str| format!("{id}/presence/{x}");
            res.presence.push(PresenceRow {
                protocol: id.clone(),
                plaintext_bytes: st(&pr(&|w| w.plaintext_bytes as f64 / w.k as f64), &lab("pt")),
                wire_bytes: st(&pr(&|w| w.wire_bytes as f64 / w.k as f64), &lab("wire")),
                expansion: st(
                    &pr(&|w| w.wire_bytes as f64 / w.plaintext_bytes.max(1) as f64),
                    &lab("exp"),
                ),
                send_cpu_us: st(&pr(&|w| w.send_us / w.k as f64), &lab("send")),
                recv_cpu_us: st(&pr(&|w| w.recv_us / w.k as f64), &lab("recv")),
            });
        }
        res.handshake.push(hs);
    }
    for ((op, n), samples) in &m.primitives {
        res.primitives.push(PrimitiveRow {
            op: *op,
            name: op.to_string(),
            library: op.lib().name().to_string(),
            bytes: *n,
            cpu_us: st(samples, &format!("prim/{op}/{n}")),
            instructions: None,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn floor_row(
    id: &str,
    phase: &str,
    size: Option<usize>,
    log: &OpLog,
    per: f64,
    measured: &[f64],
    floor_p: &[f64],
    floor_l: &[f64],
    seed: u64,
) -> FloorRow {
    let lab = |x: &str| format!("{id}/{phase}/{size:?}/{x}");
    let ratio = |f: &[f64]| -> Vec<f64> {
        measured
            .iter()
            .zip(f)
            .map(|(m, f)| if *f > 0.0 { m / f } else { f64::NAN })
            .collect()
    };
    let differs = floor_p != floor_l;
    FloorRow {
        protocol: id.to_string(),
        phase: phase.to_string(),
        size,
        ops: OpEntry::list(log, per),
        ops_source: crate::cost::source(log).into(),
        measured_us: Stat::of(measured, seed, &lab("measured")),
        floor_us: Stat::of(floor_p, seed, &lab("floor")),
        ratio: Stat::of(&ratio(floor_p), seed, &lab("ratio")),
        floor_library_us: differs.then(|| Stat::of(floor_l, seed, &lab("floor_lib"))),
        ratio_library: differs.then(|| Stat::of(&ratio(floor_l), seed, &lab("ratio_lib"))),
        instructions: None,
    }
}

/// The headline figures compared between two runs: handshake CPU, the
/// per-message CPU at the goal size, and their floor ratios.
fn headline(r: &Results) -> Vec<(String, Stat)> {
    let mut v = Vec::new();
    for h in &r.handshake {
        if h.messages > 0 {
            v.push((
                format!("{} handshake CPU us", h.protocol),
                h.cpu_us_total.clone(),
            ));
        }
    }
    for m in r.messages.iter().filter(|m| m.size == GOAL_MESSAGE_SIZE) {
        v.push((
            format!("{} {} B message CPU us", m.protocol, m.size),
            m.total_cpu_us.clone(),
        ));
    }
    for f in &r.floors {
        if f.phase == "handshake" || f.size == Some(GOAL_MESSAGE_SIZE) {
            let what = match f.size {
                Some(s) => format!("{s} B message"),
                None => "handshake".into(),
            };
            v.push((format!("{} {what} / floor", f.protocol), f.ratio.clone()));
        }
    }
    v
}

/// The run-to-run differences of the headline figures of two results.
pub fn spread(a: &Results, b: &Results) -> Vec<SpreadRow> {
    let hb: std::collections::HashMap<String, Stat> = headline(b).into_iter().collect();
    headline(a)
        .into_iter()
        .filter_map(|(figure, s1)| {
            let s2 = hb.get(&figure)?;
            let diff = if s1.median != 0.0 {
                (s2.median - s1.median).abs() / s1.median.abs() * 100.0
            } else {
                0.0
            };
            Some(SpreadRow {
                figure,
                run1: s1.median,
                run2: s2.median,
                diff_percent: diff,
                tolerance_percent: s1.rel_ci() * 100.0,
            })
        })
        .collect()
}

/// An empty result for `plan`.
fn empty(plan: &Plan, provenance: Provenance) -> Results {
    Results {
        schema: SCHEMA.into(),
        provenance,
        plan: plan.clone(),
        ttfm_formula: TTFM_FORMULA.into(),
        floor_formula: FLOOR_FORMULA.into(),
        profiles: Vec::new(),
        handshake: Vec::new(),
        keygen: Vec::new(),
        messages: Vec::new(),
        latency: Vec::new(),
        primitives: Vec::new(),
        floors: Vec::new(),
        presence: Vec::new(),
        instructions: None,
        cold: Vec::new(),
        scale: Vec::new(),
        scale_curve: Vec::new(),
        spread: Vec::new(),
    }
}

/// Run the comparison. `progress(message)` is called at every step; the
/// phase names go to `phase(name)`.
pub fn run(cfg: &Config, mut progress: impl FnMut(&str)) -> crate::Result<Results> {
    let t0 = std::time::Instant::now();
    let mut clock = provenance::Clock::start();
    let plan = Plan::new(cfg.quick);
    let protos = registry::resolve(&cfg.protocols)?;
    let mut ids = Vec::new();
    for p in &protos {
        progress(&format!("{}: identities", p.info().id));
        ids.push(driver::provision(p.as_ref(), cfg.seed)?);
    }
    clock.phase("identities");
    let m = in_memory(&protos, &ids, &plan, cfg.seed, |s| progress(s))?;
    let mut res = empty(&plan, Provenance::default());
    rows(&protos, &m, &plan, cfg.seed, &mut res)?;
    clock.phase("in memory (run 1)");
    if cfg.cold && plan.cold_processes > 0 {
        cold::run(&protos, &ids, &plan, cfg.seed, &mut res, |s| progress(s))?;
        clock.phase("cold first handshake");
    }
    if cfg.instructions && plan.instruction_runs > 0 {
        instr::run(&protos, &ids, &m.replayer, &plan, cfg.seed, &mut res, |s| {
            progress(s)
        })?;
        clock.phase("instruction counts (callgrind)");
    }
    if cfg.scale && !plan.scale_points.is_empty() {
        scale::run(&protos, &plan, cfg.seed, &mut res, |s| progress(s))?;
        clock.phase("scale curve");
    }
    if cfg.runs >= 2 {
        let m2 = in_memory(&protos, &ids, &plan, cfg.seed.wrapping_add(1_000), |s| {
            progress(&format!("run 2: {s}"))
        })?;
        let mut second = empty(&plan, Provenance::default());
        rows(&protos, &m2, &plan, cfg.seed, &mut second)?;
        res.spread = spread(&res, &second);
        clock.phase("in memory (run 2)");
    }
    res.provenance = clock.finish(cfg.seed, t0.elapsed().as_secs_f64());
    Ok(res)
}

/// Write `DIR/results.json` and the CSV files.
pub fn write(r: &Results, dir: &Path) -> crate::Result<()> {
    std::fs::create_dir_all(dir).map_err(|x| crate::fail!("{}: {x}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(crate::Error::msg)?;
    let p = dir.join("results.json");
    std::fs::write(&p, json + "\n").map_err(|x| crate::fail!("{}: {x}", p.display()))?;
    for (name, content) in tables::csv_files(r) {
        let p = dir.join(name);
        std::fs::write(&p, content).map_err(|x| crate::fail!("{}: {x}", p.display()))?;
    }
    Ok(())
}

/// Read `DIR/results.json`.
pub fn read(dir: &Path) -> crate::Result<Results> {
    let p = dir.join("results.json");
    let s = std::fs::read_to_string(&p).map_err(|x| crate::fail!("{}: {x}", p.display()))?;
    let r: Results = serde_json::from_str(&s).map_err(|x| crate::fail!("{}: {x}", p.display()))?;
    if r.schema != SCHEMA {
        return Err(crate::fail!(
            "{}: schema {:?}, expected {SCHEMA:?} (regenerate with e2elab compare)",
            p.display(),
            r.schema
        ));
    }
    Ok(r)
}
