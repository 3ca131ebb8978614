//! The `compare`, `report` and `reproduce` subcommands (CLI glue around
//! [`crate::compare`] and [`crate::report`]).

use crate::{compare, report};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;

fn bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Run the comparison and write its files; returns the results.
pub fn measure(
    cfg: compare::Config,
    out: &Path,
    xmpp: Option<crate::xmpp::Config>,
) -> crate::Result<compare::Results> {
    let pb = bar();
    let cfg_protocols = cfg.protocols.clone();
    let seed = cfg.seed;
    // On a terminal: a spinner with every step. Otherwise (CI, logs): one
    // line whenever the phase or repetition changes.
    let mut last_tag = String::new();
    let r = compare::run(&cfg, |msg| {
        pb.set_message(msg.to_string());
        pb.tick();
        if pb.is_hidden() {
            let tag: String = msg.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            if tag != last_tag {
                eprintln!("compare: {msg}");
                last_tag = tag;
            }
        }
    });
    let mut r = r?;
    compare::write(&r, out)?;
    let phase = |name: &str, since: std::time::Instant, r: &mut compare::Results| {
        r.provenance.phases.push(compare::PhaseTime {
            name: name.to_string(),
            seconds: since.elapsed().as_secs_f64(),
        });
    };
    let t_sec = std::time::Instant::now();
    // The security experiments for the same profiles and seed (plus every
    // known-bad control), so the report can set measured outcomes beside
    // spec claims and SoK ratings.
    let entries = crate::registry::resolve_entries(&cfg_protocols)?;
    let sec = crate::security::run(&entries, seed, |i, n, id| {
        pb.set_length(n as u64);
        pb.set_position(i as u64);
        pb.set_message(format!("security experiments: {id}"));
    })?;
    crate::security::write(&sec, out)?;
    phase("security experiments", t_sec, &mut r);
    compare::write(&r, out)?;
    let bad = sec.control_failures();
    if !bad.is_empty() {
        return Err(crate::fail!(
            "security: {} control check(s) came out wrong (see {}/security.md)",
            bad.len(),
            out.display()
        ));
    }
    // Server files of an earlier run must not reach this run's report.
    for name in [
        "server.json",
        "server_profiles.csv",
        "server_messages.csv",
        "server_load.csv",
        "server_probe.csv",
        "server_latency_vs_size.svg",
        "server_latency_vs_size.png",
    ] {
        let stale = out.join(name);
        if stale.exists() {
            std::fs::remove_file(&stale)
                .map_err(|e| crate::Error::io(stale.display().to_string(), e))?;
        }
    }
    if let Some(cfg) = xmpp {
        let t_srv = std::time::Instant::now();
        let s = crate::xmpp::measure(&cfg, |pos, len, msg| {
            pb.set_length(len);
            pb.set_position(pos);
            pb.set_message(msg.to_string());
        })?;
        crate::xmpp::write(&s, out)?;
        phase("through Prosody", t_srv, &mut r);
        r.provenance.server = true;
        compare::write(&r, out)?;
        eprintln!(
            "server run ({}): {} profile row(s), {} load step(s), {} altered, {} lost, in {:.1} s",
            s.server,
            s.profiles.len(),
            s.load.len(),
            s.altered.len(),
            s.lost.len(),
            s.wall_seconds
        );
    }
    pb.finish_and_clear();
    eprintln!(
        "compare ({}): {} profile(s) in {:.1} s -> {}",
        r.plan.mode,
        r.profiles.len(),
        r.provenance.wall_seconds,
        out.display()
    );
    Ok(r)
}

/// `e2elab compare`.
pub fn compare(
    cfg: compare::Config,
    out: &Path,
    xmpp: Option<crate::xmpp::Config>,
) -> crate::Result<ExitCode> {
    measure(cfg, out, xmpp)?;
    Ok(ExitCode::SUCCESS)
}

/// `e2elab worker`: one measurement in this fresh process, JSON on stdout.
#[allow(clippy::too_many_arguments)]
pub fn worker(
    kind: &str,
    profile: &str,
    seed: u64,
    points: &[usize],
    run: usize,
    ids: Option<std::path::PathBuf>,
    sizes: &[usize],
    keys: Option<std::path::PathBuf>,
) -> crate::Result<ExitCode> {
    let proto = (crate::registry::entry(profile)
        .ok_or_else(|| crate::Error::usage(format!("unknown profile {profile}")))?
        .make)();
    let ids_of = |d: &Option<std::path::PathBuf>| -> crate::Result<crate::driver::Identities> {
        let d = d.as_ref().ok_or("--ids is required")?;
        compare::workers::load_ids(d, profile)
    };
    let json = match kind {
        "scale" => {
            let ids = crate::driver::provision(proto.as_ref(), seed)?;
            serde_json::to_string(&compare::scale::worker(
                proto.as_ref(),
                &ids,
                points,
                seed,
                run,
            )?)
        }
        "cold" => serde_json::to_string(&compare::cold::worker(
            proto.as_ref(),
            &ids_of(&ids)?,
            seed,
        )?),
        "instr" => {
            let keys = keys.ok_or("--keys is required")?;
            serde_json::to_string(&compare::instr::worker(
                proto.as_ref(),
                &ids_of(&ids)?,
                sizes,
                seed,
                &keys,
            )?)
        }
        k => return Err(crate::fail!("unknown worker {k}")),
    }
    .map_err(crate::Error::msg)?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// `e2elab report`.
pub fn report(dir: &Path) -> crate::Result<ExitCode> {
    let files = report::generate(dir)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// In-memory runs of `reproduce` (2: the run-to-run spread is part of the report).
pub const REPRODUCE_RUNS: usize = 2;

/// `e2elab reproduce`: the full comparison and its report into `out`.
pub fn reproduce(out: &Path, seed: u64, specs: &Path) -> crate::Result<ExitCode> {
    let t0 = std::time::Instant::now();
    if !crate::xmpp::server::installed() {
        return Err("reproduce measures through Prosody too, which is not installed (scripts/setup.sh installs it)".into());
    }
    let xmpp = crate::xmpp::Config::new(false, Vec::new(), seed);
    let mut cfg = compare::Config::new(false, Vec::new(), seed);
    cfg.runs = REPRODUCE_RUNS;
    let mut r = measure(cfg, out, Some(xmpp))?;
    let t_req = std::time::Instant::now();
    let req = crate::requirements::run(out, seed, Some(specs), |m| eprintln!("{m}"))?;
    crate::requirements::write(&req, out)?;
    r.provenance.phases.push(compare::PhaseTime {
        name: "XEP-0210 requirements".into(),
        seconds: t_req.elapsed().as_secs_f64(),
    });
    compare::write(&r, out)?;
    let t_rep = std::time::Instant::now();
    report::generate(out)?;
    // The report's closing note gives the whole wall time by phase: record
    // the report's own phase and the total, then regenerate the report
    // from the updated files.
    r.provenance.phases.push(compare::PhaseTime {
        name: "report".into(),
        seconds: t_rep.elapsed().as_secs_f64(),
    });
    r.provenance.reproduce_wall_seconds = Some(t0.elapsed().as_secs_f64());
    compare::write(&r, out)?;
    report::generate(out)?;
    eprintln!(
        "reproduce: {:.1} s wall (compare + report) -> {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `e2elab requirements`.
pub fn requirements(dir: &Path, seed: u64, specs: &Path) -> crate::Result<ExitCode> {
    let r = crate::requirements::run(dir, seed, Some(specs), |m| eprintln!("{m}"))?;
    crate::requirements::write(&r, dir)?;
    println!("{}", dir.join("requirements.md").display());
    Ok(ExitCode::SUCCESS)
}
