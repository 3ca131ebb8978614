//! The scale curve: established session pairs held at once, read at each
//! point of [`Plan::scale_points`], in a fresh process per run (so the heap
//! figure is that run's alone), [`Plan::scale_reps`] runs per profile.
//!
//! A run builds pairs up to the largest point; at each point it reads the
//! heap in use per session, the wall time spent establishing the pairs so
//! far, and runs a message mix over them: [`MIX_MESSAGES`] messages
//! round-robin over the pairs (bodies: 14 in 20 of 64 B, 5 in 20 of 1 KiB,
//! 1 in 20 of 16 KiB; directions alternating by round), each serialized and
//! parsed as a server would. Two runs go at once (one per core); nothing
//! else runs meanwhile.

use super::schema::{Plan, Results, ScalePoint, ScaleRow, Stat};
use super::workers;
use crate::cpu;
use crate::driver;
use e2elab_core::{stanza, Env, Options, Protocol};

/// Messages in the mix at each point (fewer when there are fewer pairs x 4).
pub const MIX_MESSAGES: u64 = 1000;

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

/// Carry stanzas (serialized and parsed, as a server would) until quiet;
/// returns what was delivered to each side and the wire bytes.
fn bare_pump(
    p: &mut Bare,
    out: &mut e2elab_core::Outbox,
    from: usize,
) -> crate::Result<([Vec<e2elab_core::Element>; 2], u64)> {
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
        let el = stanza::parse(&w).map_err(crate::Error::msg)?;
        let mut o = e2elab_core::Outbox::new();
        p.s[to]
            .handle_inbound(&mut p.env[to], el, &mut o)
            .map_err(crate::Error::msg)?;
        while let Some(e) = o.poll_transmit() {
            let w = stanza::serialize(&e);
            bytes += w.len() as u64;
            wire.push((1 - to, w));
        }
        while let Some(ev) = o.poll_event() {
            if let e2elab_core::Event::Delivered { stanza: d, .. } = ev {
                got[to].push(d);
            }
        }
    }
    Ok((got, bytes))
}

/// One scale run of `proto` in this process: pairs up to the largest of
/// `points`, a reading at each.
pub fn worker(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    points: &[usize],
    seed: u64,
    run: usize,
) -> crate::Result<Vec<ScaleRow>> {
    let id = proto.info().id;
    let heap0 = heap_in_use();
    let mut all: Vec<Bare> = Vec::new();
    let mut setup = 0.0;
    let mut rows = Vec::new();
    let mut k = 0u64;
    for &target in points {
        let t = std::time::Instant::now();
        while all.len() < target {
            let i = all.len();
            let [(a, ea), (b, eb)] = driver::sessions_between(
                proto,
                ids,
                seed.wrapping_add(1_000_000 + i as u64),
                &Options::new(),
                [&driver::full_jid(0), &driver::full_jid(1)],
            )?;
            let mut p = Bare {
                s: [a, b],
                env: [ea, eb],
            };
            let mut out = e2elab_core::Outbox::new();
            p.s[0]
                .start(&mut p.env[0], &mut out)
                .map_err(|x| crate::fail!("{id}: scale start: {x}"))?;
            bare_pump(&mut p, &mut out, 0)
                .map_err(|x| crate::fail!("{id}: scale handshake: {x}"))?;
            if p.s
                .iter()
                .any(|s| s.state() != e2elab_core::SessionState::Established)
            {
                return Err(crate::fail!("{id}: scale: pair {i} not established"));
            }
            all.push(p);
        }
        setup += t.elapsed().as_secs_f64();
        let heap = heap_in_use();
        let pairs = all.len();
        let total = MIX_MESSAGES.min(4 * pairs as u64);
        let (mut body, mut wire) = (0u64, 0u64);
        let t = std::time::Instant::now();
        let (r, cpu, _) = cpu::measure(|| -> crate::Result<()> {
            for j in 0..total {
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
                    .map_err(|x| crate::fail!("{id}: scale send: {x}"))?;
                let (got, b) = bare_pump(p, &mut out, from)?;
                wire += b;
                if got[1 - from] != [el] {
                    return Err(crate::fail!("{id}: scale message {j} not delivered intact"));
                }
                k += 1;
            }
            Ok(())
        });
        r?;
        let wall = t.elapsed().as_secs_f64();
        rows.push(ScaleRow {
            protocol: id.to_string(),
            run,
            pairs,
            heap_bytes_per_session: (heap as f64 - heap0 as f64) / (2 * pairs) as f64,
            setup_seconds: setup,
            mix_messages: total,
            mix_body_bytes: body,
            mix_wire_bytes: wire,
            mix_messages_per_second: if wall > 0.0 { total as f64 / wall } else { 0.0 },
            mix_cpu_us_per_message: cpu.as_nanos() as f64 / 1000.0 / total.max(1) as f64,
        });
    }
    Ok(rows)
}

/// Every scale run of every profile (two processes at a time), then the
/// curve.
pub fn run(
    protos: &[Box<dyn Protocol>],
    plan: &Plan,
    seed: u64,
    res: &mut Results,
    mut progress: impl FnMut(&str),
) -> crate::Result<()> {
    let list = |v: &[usize]| {
        v.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let all_points = list(&plan.scale_points);
    let repeat_points = if plan.scale_repeat_points.is_empty() {
        all_points.clone()
    } else {
        list(&plan.scale_repeat_points)
    };
    // The dearest profiles first (by the handshake CPU just measured), so
    // the two runners finish together.
    let cost = |id: &str| {
        res.handshake
            .iter()
            .find(|h| h.protocol == id)
            .map(|h| h.cpu_us_total.median)
            .unwrap_or(0.0)
    };
    let mut order: Vec<&Box<dyn Protocol>> = protos.iter().collect();
    order.sort_by(|a, b| cost(b.info().id).total_cmp(&cost(a.info().id)));
    let mut jobs = Vec::new();
    for run in 0..plan.scale_reps {
        for p in &order {
            let id = p.info().id.to_string();
            jobs.push(workers::Job::new(
                format!("scale run {} of {id}", run + 1),
                workers::worker_args(
                    "scale",
                    &id,
                    seed,
                    &[
                        (
                            "--points",
                            if run == 0 {
                                all_points.clone()
                            } else {
                                repeat_points.clone()
                            },
                        ),
                        ("--run", run.to_string()),
                    ],
                ),
            ));
        }
    }
    let outs = workers::run_parallel(jobs, 2, &mut progress)?;
    for o in outs {
        let rows: Vec<ScaleRow> =
            serde_json::from_str(&o).map_err(|x| crate::fail!("scale worker output: {x}"))?;
        res.scale.extend(rows);
    }
    for p in protos {
        let id = p.info().id;
        for &n in &plan.scale_points {
            let rs: Vec<&ScaleRow> = res
                .scale
                .iter()
                .filter(|r| r.protocol == id && r.pairs == n)
                .collect();
            let want =
                if plan.scale_repeat_points.is_empty() || plan.scale_repeat_points.contains(&n) {
                    plan.scale_reps
                } else {
                    1
                };
            if rs.len() != want {
                return Err(crate::fail!(
                    "{id}: {} scale reading(s) at {n} pairs, expected {want}",
                    rs.len()
                ));
            }
            let st = |f: &dyn Fn(&ScaleRow) -> f64, what: &str| {
                Stat::of(
                    &rs.iter().map(|r| f(r)).collect::<Vec<_>>(),
                    seed,
                    &format!("{id}/scale/{n}/{what}"),
                )
            };
            res.scale_curve.push(ScalePoint {
                protocol: id.to_string(),
                pairs: n,
                heap_bytes_per_session: st(&|r| r.heap_bytes_per_session, "heap"),
                setup_seconds: st(&|r| r.setup_seconds, "setup"),
                mix_messages_per_second: st(&|r| r.mix_messages_per_second, "tput"),
                mix_cpu_us_per_message: st(&|r| r.mix_cpu_us_per_message, "cpu"),
            });
        }
    }
    Ok(())
}
