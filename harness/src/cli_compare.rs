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
    quick: bool,
    protocols: Vec<String>,
    out: &Path,
    seed: u64,
    xmpp: Option<crate::xmpp::Config>,
) -> Result<compare::Results, String> {
    let pb = bar();
    let cfg_protocols = protocols.clone();
    let cfg = compare::Config {
        quick,
        protocols,
        seed,
    };
    let r = compare::run(&cfg, |pos, len, msg| {
        pb.set_length(len);
        pb.set_position(pos);
        pb.set_message(msg.to_string());
    });
    let r = r?;
    compare::write(&r, out)?;
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
    let bad = sec.control_failures();
    if !bad.is_empty() {
        return Err(format!(
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
            std::fs::remove_file(&stale).map_err(|e| format!("{}: {e}", stale.display()))?;
        }
    }
    if let Some(cfg) = xmpp {
        let s = crate::xmpp::measure(&cfg, |pos, len, msg| {
            pb.set_length(len);
            pb.set_position(pos);
            pb.set_message(msg.to_string());
        })?;
        crate::xmpp::write(&s, out)?;
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
    quick: bool,
    protocols: Vec<String>,
    out: &Path,
    seed: u64,
    xmpp: Option<crate::xmpp::Config>,
) -> Result<ExitCode, String> {
    measure(quick, protocols, out, seed, xmpp)?;
    Ok(ExitCode::SUCCESS)
}

/// `e2elab report`.
pub fn report(dir: &Path) -> Result<ExitCode, String> {
    let files = report::generate(dir)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `e2elab reproduce`: the full comparison and its report into `out`.
pub fn reproduce(out: &Path, seed: u64) -> Result<ExitCode, String> {
    let t0 = std::time::Instant::now();
    if !crate::xmpp::server::installed() {
        return Err("reproduce measures through Prosody too, which is not installed (scripts/setup.sh installs it)".into());
    }
    let xmpp = crate::xmpp::Config::new(false, Vec::new(), seed);
    let mut r = measure(false, Vec::new(), out, seed, Some(xmpp))?;
    report::generate(out)?;
    // The report's closing note gives this wall time: record it, then
    // regenerate the report from the updated files.
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
