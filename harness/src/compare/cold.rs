//! The first handshake in a fresh process beside the steady state: what a
//! client meets when it starts (library initialization, key loading,
//! certificate parsing, Sequoia's caches), measured in
//! [`Plan::cold_processes`] fresh processes per profile.
//!
//! In each process: identities are read from files (as a client reads its
//! key store), then [`WARM`] + 1 times a session pair is created and its
//! handshake run (for profiles without one, the first message sent and
//! received); the CPU of creating the sessions and of every call counts.
//! The first is the cold figure, the median of the others the warm one.

use super::schema::{ColdRow, Plan, Results, Stat};
use super::workers;
use crate::cpu;
use crate::driver;
use crate::link::Phase;
use e2elab_core::{Options, Protocol};
use serde::{Deserialize, Serialize};

/// Handshakes after the first in each process.
pub const WARM: usize = 5;

/// What one process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdOut {
    /// The first, microseconds.
    pub cold_us: f64,
    /// The later ones.
    pub warm_us: Vec<f64>,
}

/// One pair created and brought to its first protected message.
pub fn first_contact(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    seed: u64,
) -> crate::Result<()> {
    let id = proto.info().id;
    let mut link = driver::link_for(proto, ids, seed, &Options::new())?;
    link.handshake().map_err(|e| crate::fail!("{id}: {e}"))?;
    link.set_phase(Phase::Data);
    if link.flights(Phase::Handshake) == 0 {
        let m = driver::workload_stanza(seed, 0, 0, super::FIRST_MESSAGE_SIZE)?;
        link.send(0, m.clone())
            .map_err(|e| crate::fail!("{id}: {e}"))?;
        link.pump().map_err(|e| crate::fail!("{id}: {e}"))?;
        if link.party(1).delivered != [m] {
            return Err(crate::fail!("{id}: first message not delivered"));
        }
    }
    Ok(())
}

/// The worker: measure in this (fresh) process.
pub fn worker(proto: &dyn Protocol, ids: &driver::Identities, seed: u64) -> crate::Result<ColdOut> {
    let mut times = Vec::new();
    for i in 0..=WARM {
        let (r, c, _) = cpu::measure(|| first_contact(proto, ids, seed.wrapping_add(i as u64)));
        r?;
        times.push(c.as_nanos() as f64 / 1000.0);
    }
    Ok(ColdOut {
        cold_us: times[0],
        warm_us: times[1..].to_vec(),
    })
}

/// Every profile in [`Plan::cold_processes`] fresh processes (one at a time).
pub fn run(
    protos: &[Box<dyn Protocol>],
    ids: &[driver::Identities],
    plan: &Plan,
    seed: u64,
    res: &mut Results,
    mut progress: impl FnMut(&str),
) -> crate::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| crate::fail!("temp dir: {e}"))?;
    let mut jobs = Vec::new();
    for (p, i) in protos.iter().zip(ids) {
        let id = p.info().id;
        workers::save_ids(dir.path(), id, i)?;
        for n in 0..plan.cold_processes {
            jobs.push(workers::Job::new(
                format!("cold {id} #{}", n + 1),
                workers::worker_args(
                    "cold",
                    id,
                    seed,
                    &[("--ids", dir.path().display().to_string())],
                ),
            ));
        }
    }
    let outs = workers::run_parallel(jobs, 1, &mut progress)?;
    let mut outs = outs.into_iter();
    for p in protos {
        let id = p.info().id;
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        let mut ratio = Vec::new();
        for _ in 0..plan.cold_processes {
            let o = outs.next().ok_or("cold: missing worker output")?;
            let c: ColdOut =
                serde_json::from_str(&o).map_err(|e| crate::fail!("cold worker: {e}"))?;
            let w = Stat::of(&c.warm_us, seed, "w").median;
            cold.push(c.cold_us);
            warm.push(w);
            ratio.push(if w > 0.0 { c.cold_us / w } else { f64::NAN });
        }
        res.cold.push(ColdRow {
            protocol: id.to_string(),
            cold_cpu_us: Stat::of(&cold, seed, &format!("{id}/cold")),
            warm_cpu_us: Stat::of(&warm, seed, &format!("{id}/warm")),
            ratio: Stat::of(&ratio, seed, &format!("{id}/cold/ratio")),
            instructions: None,
        });
    }
    Ok(())
}
