//! Instruction counts under callgrind: the deterministic cost beside the
//! noisy time.
//!
//! For each profile, [`Plan::instruction_runs`] fresh worker processes run
//! under `valgrind --tool=callgrind` with collection switched on only inside
//! [`crate::cpu::e2elab_counted_region`] (every measured call is one
//! region, dumped on its own): a cold and a warm first contact, one
//! repetition of the in-memory work (handshake, one message each way per
//! size, presence), the floors of that repetition, and one call of every
//! primitive it ran. Identities and the floors' keys come from files the
//! parent wrote, so no key generation runs under valgrind.
//!
//! From the dumps: instructions per region, summed per phase; the spread
//! between the runs; and, for OTR, the calls of `gcry_mpi_powm` and
//! `otrl_dh_gen_keypair` that callgrind counted in the handshake against the
//! adapter's derived counts.

use super::floors::Replayer;
use super::schema::{InstrFloor, InstrRow, Instructions, Plan, PowmCheck, Results};
use super::{cold, workers, RepOut, GOAL_MESSAGE_SIZE};
use crate::cpu;
use crate::driver;
use e2elab_core::{Op, OpLog, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Messages each way per size in a callgrind run (libgcrypt draws fresh
/// DH exponents, whose modexp instruction counts vary by about 1% each:
/// a few per region average that out).
pub const MESSAGES_PER_SIZE: u64 = 2;

/// What a worker ran, by region numbers (1-based callgrind dumps).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WorkerOut {
    /// The first contact in the process.
    pub cold: u64,
    /// The next one.
    pub warm: u64,
    /// Each side's handshake regions.
    pub hs: [Vec<u64>; 2],
    /// The handshake floor (protocol's, library's when different).
    pub hs_floor: Option<(u64, Option<u64>)>,
    /// Per size: (size, messages, send regions, receive regions, floor, library floor).
    pub sizes: Vec<SizeRegions>,
    /// One call of each primitive: (operation, bytes, region).
    pub primitives: Vec<(Op, u64, u64)>,
    /// OTR: the handshake's derived `otrl_dh_gen_keypair` calls and modexps.
    pub derived_keypairs: u64,
    /// All modexps of the handshake's log.
    pub derived_modexps: u64,
}

/// The regions of one size.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SizeRegions {
    /// Body bytes.
    pub size: usize,
    /// Messages.
    pub k: u64,
    /// Sends.
    pub send: Vec<u64>,
    /// Receipts.
    pub recv: Vec<u64>,
    /// The floor of the window (protocol's, library's when different).
    pub floor: (u64, Option<u64>),
}

fn floor_regions(rp: &mut Replayer, log: &OpLog) -> crate::Result<(u64, Option<u64>)> {
    let ideal = log.map(Op::ideal);
    let mut one = |l: &OpLog| -> crate::Result<u64> {
        rp.prepare(l)?;
        let (r, _, _) = cpu::measure(|| rp.run(l));
        r?;
        cpu::last_region().ok_or_else(|| crate::Error::from("not instrumented"))
    };
    let p = one(&ideal)?;
    let l = if ideal == *log { None } else { Some(one(log)?) };
    Ok((p, l))
}

/// The worker, in a process running under callgrind.
pub fn worker(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    sizes: &[usize],
    seed: u64,
    keys: &Path,
) -> crate::Result<WorkerOut> {
    cpu::instrument();
    let mut out = WorkerOut::default();
    let region = || cpu::last_region().ok_or_else(|| crate::Error::from("not instrumented"));
    let (r, _, _) = cpu::measure(|| cold::first_contact(proto, ids, seed));
    r?;
    out.cold = region()?;
    let (r, _, _) = cpu::measure(|| cold::first_contact(proto, ids, seed.wrapping_add(1)));
    r?;
    out.warm = region()?;
    // After two first contacts, the client is where the in-memory
    // measured repetitions find it (one earlier session at least).
    let rep: RepOut = super::one_rep(proto, ids, sizes, MESSAGES_PER_SIZE, seed, |_| {})?;
    out.hs = rep.hs_regions.clone();
    let mut rp = Replayer::with_keys(keys)?;
    let hs_log = rep.hs_log();
    if rep.hs_messages > 0 {
        out.hs_floor = Some(floor_regions(&mut rp, &hs_log)?);
    }
    for s in &rep.sizes {
        out.sizes.push(SizeRegions {
            size: s.size,
            k: s.k,
            send: s.regions[0].clone(),
            recv: s.regions[1].clone(),
            floor: floor_regions(&mut rp, &s.log)?,
        });
    }
    // The primitives the in-memory run timed (the parent's list).
    let list = keys.with_file_name("primitives.json");
    let text = std::fs::read_to_string(&list)
        .map_err(|e| crate::Error::io(list.display().to_string(), e))?;
    let prims: Vec<(Op, u64)> = serde_json::from_str(&text)
        .map_err(|e| crate::Error::data(list.display().to_string(), e))?;
    for (op, n) in prims {
        let mut l = OpLog::new();
        l.add(op, 1, n, false);
        rp.prepare(&l)?;
        let (r, _, _) = cpu::measure(|| rp.run(&l));
        r?;
        out.primitives.push((op, n, region()?));
    }
    out.derived_keypairs = hs_log.get(&Op::OtrDhKeypair).calls;
    out.derived_modexps = hs_log.calls_in(e2elab_core::ops::OpClass::Modexp);
    Ok(out)
}

/// One callgrind dump: instructions and the calls of some functions.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Instructions (`Ir`).
    pub ir: u64,
    /// Calls by callee name.
    pub calls: HashMap<String, u64>,
}

/// Parse a callgrind output file written with `--compress-strings=no`.
pub fn parse_dump(text: &str) -> Dump {
    let mut d = Dump::default();
    let mut callee: Option<String> = None;
    for line in text.lines() {
        if let Some(v) = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))
        {
            if let Some(n) = v.split_whitespace().next().and_then(|x| x.parse().ok()) {
                d.ir = n;
            }
        } else if let Some(name) = line.strip_prefix("cfn=") {
            callee = Some(name.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("calls=") {
            if let (Some(c), Some(n)) = (
                callee.take(),
                rest.split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok()),
            ) {
                *d.calls.entry(c).or_default() += n;
            }
        }
    }
    d
}

/// Read every dump `prefix.<pid>.<n>` of a run: region n -> dump.
fn read_dumps(dir: &Path, prefix: &str) -> crate::Result<HashMap<u64, Dump>> {
    let mut m = HashMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| crate::Error::io(dir.display().to_string(), e))? {
        let e = e.map_err(crate::Error::msg)?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        // rest = ".<pid>.<n>" (the final dump at exit has no number).
        let parts: Vec<&str> = rest.trim_start_matches('.').split('.').collect();
        if parts.len() != 2 {
            continue;
        }
        let Ok(n) = parts[1].parse::<u64>() else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).map_err(|x| crate::fail!("{name}: {x}"))?;
        m.insert(n, parse_dump(&text));
    }
    if m.is_empty() {
        return Err(crate::fail!(
            "no callgrind dumps {prefix}.* in {}",
            dir.display()
        ));
    }
    Ok(m)
}

/// The valgrind command line (without the worker).
pub fn valgrind_prefix(out_file: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--collect-atstart=no".into(),
        "--toggle-collect=e2elab_counted_region".into(),
        "--zero-before=e2elab_counted_region".into(),
        "--dump-after=e2elab_counted_region".into(),
        "--compress-strings=no".into(),
        "--compress-pos=no".into(),
        "--dump-instr=no".into(),
        format!("--callgrind-out-file={}", out_file.display()),
    ]
}

/// Run every profile under callgrind and fill in the instruction figures.
pub fn run(
    protos: &[Box<dyn Protocol>],
    ids: &[driver::Identities],
    rp: &Replayer,
    plan: &Plan,
    seed: u64,
    res: &mut Results,
    mut progress: impl FnMut(&str),
) -> crate::Result<()> {
    if std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(crate::Error::tool(
            "valgrind",
            "instruction counts need it (scripts/setup.sh installs it)",
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io("temp dir", e))?;
    let keys = dir.path().join("floor-keys.json");
    rp.save_keys(&keys)?;
    // The primitives the in-memory phase timed, for the workers to count.
    let prims: Vec<(Op, u64)> = res.primitives.iter().map(|p| (p.op, p.bytes)).collect();
    let list = dir.path().join("primitives.json");
    std::fs::write(
        &list,
        serde_json::to_string(&prims).map_err(crate::Error::msg)?,
    )
    .map_err(|e| crate::fail!("{}: {e}", list.display()))?;
    let sizes = plan
        .sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut jobs = Vec::new();
    let mut prefixes = Vec::new();
    for (p, i) in protos.iter().zip(ids) {
        let id = p.info().id;
        workers::save_ids(dir.path(), id, i)?;
        for run in 0..plan.instruction_runs {
            let prefix = format!("cg.{id}.{run}");
            jobs.push(workers::Job {
                label: format!("callgrind {id} run {}", run + 1),
                args: workers::worker_args(
                    "instr",
                    id,
                    seed,
                    &[
                        ("--ids", dir.path().display().to_string()),
                        ("--sizes", sizes.clone()),
                        ("--keys", keys.display().to_string()),
                    ],
                ),
                prefix: valgrind_prefix(&dir.path().join(format!("{prefix}.%p"))),
            });
            prefixes.push(prefix);
        }
    }
    let results = workers::run_parallel(jobs, 2, &mut progress)?;
    let mut outs: Vec<Vec<(WorkerOut, HashMap<u64, Dump>)>> = Vec::new();
    let mut it = results.iter().zip(&prefixes);
    for p in protos {
        let id = p.info().id;
        let mut runs = Vec::new();
        for _ in 0..plan.instruction_runs {
            let (o, prefix) = it.next().ok_or("callgrind: missing run")?;
            let w: WorkerOut =
                serde_json::from_str(o).map_err(|e| crate::fail!("{id}: instr worker: {e}"))?;
            runs.push((w, read_dumps(dir.path(), prefix)?));
        }
        outs.push(runs);
    }
    if std::env::var_os("E2ELAB_KEEP_WORK").is_some() {
        eprintln!("callgrind dumps kept in {}", dir.keep().display());
    }
    fill(protos, &outs, res)
}

fn sum(d: &HashMap<u64, Dump>, regions: &[u64]) -> crate::Result<u64> {
    regions
        .iter()
        .map(|r| {
            d.get(r)
                .map(|x| x.ir)
                .ok_or_else(|| crate::fail!("no callgrind dump for region {r}"))
        })
        .sum()
}

fn calls(d: &HashMap<u64, Dump>, regions: &[u64], f: &str) -> u64 {
    regions
        .iter()
        .filter_map(|r| d.get(r))
        .map(|x| x.calls.get(f).copied().unwrap_or(0))
        .sum()
}

/// Instructions of one phase of a run, from its output and dumps.
type Count<'a> = dyn Fn(&WorkerOut, &HashMap<u64, Dump>) -> crate::Result<u64> + 'a;

/// Turn the runs into rows and the instruction columns of floors, cold and
/// primitives.
fn fill(
    protos: &[Box<dyn Protocol>],
    outs: &[Vec<(WorkerOut, HashMap<u64, Dump>)>],
    res: &mut Results,
) -> crate::Result<()> {
    let mut rows = Vec::new();
    let mut powm = Vec::new();
    for (p, runs) in protos.iter().zip(outs) {
        let id = p.info().id;
        let mut add = |what: String, headline: bool, f: &Count<'_>| -> crate::Result<Vec<u64>> {
            let v = runs
                .iter()
                .map(|(w, d)| f(w, d))
                .collect::<Result<Vec<_>, _>>()?;
            let lo = v.iter().copied().min().unwrap_or(0);
            let hi = v.iter().copied().max().unwrap_or(0);
            rows.push(InstrRow {
                protocol: id.to_string(),
                what,
                headline,
                runs: v.clone(),
                spread_percent: if lo > 0 {
                    (hi - lo) as f64 / lo as f64 * 100.0
                } else {
                    0.0
                },
            });
            Ok(v)
        };
        let cold = add("cold first contact".into(), false, &|w, d| {
            sum(d, &[w.cold])
        })?;
        let warm = add("warm first contact".into(), false, &|w, d| {
            sum(d, &[w.warm])
        })?;
        if let Some(c) = res.cold.iter_mut().find(|c| c.protocol == id) {
            c.instructions = Some((cold[0], warm[0]));
        }
        let (w0, _) = runs.first().ok_or("no callgrind run")?;
        if w0.hs_floor.is_some() {
            let hs = add("handshake".into(), true, &|w, d| {
                Ok(sum(d, &w.hs[0])? + sum(d, &w.hs[1])?)
            })?;
            let fl = add("floor handshake".into(), true, &|w, d| {
                sum(d, &[w.hs_floor.map(|f| f.0).unwrap_or(0)])
            })?;
            let fll = match w0.hs_floor.and_then(|f| f.1) {
                Some(_) => Some(add("library floor handshake".into(), true, &|w, d| {
                    sum(d, &[w.hs_floor.and_then(|f| f.1).unwrap_or(0)])
                })?),
                None => None,
            };
            if let Some(f) = res
                .floors
                .iter_mut()
                .find(|f| f.protocol == id && f.phase == "handshake")
            {
                f.instructions = Some(instr_floor(
                    hs[0] as f64,
                    fl[0] as f64,
                    fll.map(|v| v[0] as f64),
                ));
            }
            if w0.derived_keypairs > 0 || id.starts_with("otr") {
                let (w, d) = &runs[0];
                let regions: Vec<u64> = w.hs[0].iter().chain(&w.hs[1]).copied().collect();
                powm.push(PowmCheck {
                    protocol: id.to_string(),
                    what: "handshake: gcry_mpi_powm".into(),
                    derived: w.derived_modexps,
                    counted: calls(d, &regions, "gcry_mpi_powm"),
                });
                powm.push(PowmCheck {
                    protocol: id.to_string(),
                    what: "handshake: otrl_dh_gen_keypair".into(),
                    derived: w.derived_keypairs,
                    counted: calls(d, &regions, "otrl_dh_gen_keypair"),
                });
            }
        }
        for (si, s) in w0.sizes.iter().enumerate() {
            let size = s.size;
            let k = s.k.max(1) as f64;
            let goal = size == GOAL_MESSAGE_SIZE;
            let m = add(
                format!("message {size} B (send + receive, {} messages)", s.k),
                goal,
                &|w, d| {
                    let x = &w.sizes[si];
                    Ok(sum(d, &x.send)? + sum(d, &x.recv)?)
                },
            )?;
            let fl = add(format!("floor message {size} B"), goal, &|w, d| {
                sum(d, &[w.sizes[si].floor.0])
            })?;
            let fll = match s.floor.1 {
                Some(_) => Some(add(
                    format!("library floor message {size} B"),
                    goal,
                    &|w, d| sum(d, &[w.sizes[si].floor.1.unwrap_or(0)]),
                )?),
                None => None,
            };
            if let Some(f) = res
                .floors
                .iter_mut()
                .find(|f| f.protocol == id && f.phase == "message" && f.size == Some(size))
            {
                f.instructions = Some(instr_floor(
                    m[0] as f64 / k,
                    fl[0] as f64 / k,
                    fll.map(|v| v[0] as f64 / k),
                ));
            }
        }
        let (w, d) = &runs[0];
        for (op, n, region) in &w.primitives {
            if let Some(pr) = res
                .primitives
                .iter_mut()
                .find(|pr| pr.op == *op && pr.bytes == *n)
            {
                pr.instructions = d.get(region).map(|x| x.ir as f64);
            }
        }
    }
    let max = rows.iter().map(|r| r.spread_percent).fold(0.0, f64::max);
    let headline_max = rows
        .iter()
        .filter(|r| r.headline)
        .map(|r| r.spread_percent)
        .fold(0.0, f64::max);
    res.instructions = Some(Instructions {
        tool: format!(
            "{} --tool=callgrind (collection only inside measured calls)",
            super::provenance::valgrind_version()
        ),
        rows,
        powm,
        max_spread_percent: max,
        headline_max_spread_percent: headline_max,
    });
    Ok(())
}

fn instr_floor(measured: f64, floor: f64, lib: Option<f64>) -> InstrFloor {
    let r = |f: f64| if f > 0.0 { measured / f } else { 0.0 };
    InstrFloor {
        measured,
        floor,
        ratio: r(floor),
        floor_library: lib,
        ratio_library: lib.map(r),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dumps_parse() {
        let text = "version: 1\ncreator: callgrind-3.19.0\ncmd: x\nevents: Ir\n\
fn=e2elab_counted_region\n0 12\ncfn=gcry_mpi_powm\ncalls=3 0\n0 900\ncfn=otrl_dh_gen_keypair\ncalls=1 0\n0 100\n\
fn=other\ncfn=gcry_mpi_powm\ncalls=2 0\n0 50\ntotals: 1062\n";
        let d = parse_dump(text);
        assert_eq!(d.ir, 1062);
        assert_eq!(d.calls["gcry_mpi_powm"], 5);
        assert_eq!(d.calls["otrl_dh_gen_keypair"], 1);
    }
}
