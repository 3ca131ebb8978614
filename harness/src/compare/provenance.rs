//! Where a run came from (revision, the diff it measured beyond it,
//! toolchain and library versions, kernel, CPU) and what the machine was
//! doing meanwhile (load average, steal and busy time from `/proc/stat`),
//! with the wall time of every phase.

use super::schema::{PhaseTime, Provenance};
use std::time::Instant;

fn run_cmd(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    if !o.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The sequoia-openpgp version in the workspace's Cargo.lock at build time.
pub fn sequoia_version() -> String {
    const LOCK: &str = include_str!("../../../Cargo.lock");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"sequoia-openpgp\"" {
            if let Some(v) = lines.next() {
                return v
                    .trim()
                    .trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string();
            }
        }
    }
    "unknown".into()
}

/// Now, UTC, RFC 3339 (seconds).
pub fn utc_now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    e2elab_core::Timestamp(micros).to_rfc3339()
}

/// `valgrind --version`, or `not installed`.
pub fn valgrind_version() -> String {
    run_cmd("valgrind", &["--version"]).unwrap_or_else(|| "not installed".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine-wide CPU tick counters of `/proc/stat`'s `cpu` line:
/// (all ticks, idle + iowait, steal).
pub fn cpu_ticks() -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    if v.len() < 8 {
        return None;
    }
    let all: u64 = v.iter().take(8).sum();
    Some((all, v[3] + v[4], v[7]))
}

/// SHA-256 of `git diff HEAD` (tracked files), when the tree is dirty.
/// `results/` is left out: it holds generated measurements, not source
/// (a run over an uncommitted earlier run's results is a clean run).
fn diff_hash() -> (bool, Option<String>) {
    let dirty = run_cmd(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)results",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    if !dirty {
        return (false, None);
    }
    let out = std::process::Command::new("git")
        .args(["diff", "HEAD", "--binary", "--", ".", ":(exclude)results"])
        .output()
        .ok();
    let hash = out.map(|o| {
        let d = openssl::sha::sha256(&o.stdout);
        hex::encode(d)
    });
    (true, hash)
}

/// Times the phases of a run and samples the machine at its ends.
pub struct Clock {
    /// The tree as the run began (revision, dirty, diff hash): what the
    /// binary was built from, not what the tree became while it ran.
    git: (String, bool, Option<String>),
    date: String,
    load_start: String,
    ticks_start: Option<(u64, u64, u64)>,
    last: Instant,
    phases: Vec<PhaseTime>,
}

impl Clock {
    /// Start now.
    pub fn start() -> Clock {
        let (dirty, hash) = diff_hash();
        Clock {
            git: (
                run_cmd("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
                dirty,
                hash,
            ),
            date: utc_now(),
            load_start: load_average(),
            ticks_start: cpu_ticks(),
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// The phase that just ended.
    pub fn phase(&mut self, name: &str) {
        self.phases.push(PhaseTime {
            name: name.to_string(),
            seconds: self.last.elapsed().as_secs_f64(),
        });
        self.last = Instant::now();
    }

    /// The provenance of the run.
    pub fn finish(self, seed: u64, wall: f64) -> Provenance {
        let (git_revision, git_dirty, git_diff_sha256) = self.git.clone();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (steal, busy) = match (self.ticks_start, cpu_ticks()) {
            (Some((a0, i0, s0)), Some((a1, i1, s1))) if a1 > a0 => {
                let all = (a1 - a0) as f64;
                (
                    (s1 - s0) as f64 / all * 100.0,
                    (all - (i1 - i0) as f64) / all * 100.0,
                )
            }
            _ => (0.0, 0.0),
        };
        let load_end = load_average();
        let mut warn = Vec::new();
        if steal > 2.0 {
            warn.push(format!("the hypervisor stole {steal:.1}% of CPU time"));
        }
        for (when, l) in [("start", &self.load_start), ("end", &load_end)] {
            if let Some(one) = l
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
            {
                // The run itself keeps one core busy; more means other work.
                if one > cpus as f64 * 0.75 + 1.0 {
                    warn.push(format!(
                        "1-minute load average {one} at the {when} on {cpus} CPUs"
                    ));
                }
            }
        }
        let pc = |m: &str| {
            run_cmd("pkg-config", &["--modversion", m]).unwrap_or_else(|| "unknown".into())
        };
        Provenance {
            git_revision,
            git_dirty,
            git_diff_sha256,
            rustc: run_cmd("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            kernel: run_cmd("uname", &["-sr"]).unwrap_or_else(|| "unknown".into()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into()),
            cpus,
            openssl: openssl::version::version().to_string(),
            libgcrypt: pc("libgcrypt"),
            libotr: pc("libotr"),
            valgrind: valgrind_version(),
            sequoia_openpgp: sequoia_version(),
            e2elab: env!("CARGO_PKG_VERSION").to_string(),
            seed,
            date: self.date,
            wall_seconds: wall,
            phases: self.phases,
            reproduce_wall_seconds: None,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load_average_start: self.load_start,
            load_average_end: load_end,
            steal_percent: steal,
            busy_percent: busy,
            busy_warning: (!warn.is_empty()).then(|| warn.join("; ")),
            server: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_versions_and_ticks() {
        let day = |d: u64| e2elab_core::Timestamp(d * 86_400 * 1_000_000).to_rfc3339();
        assert_eq!(day(0), "1970-01-01T00:00:00Z");
        assert_eq!(day(19_723), "2024-01-01T00:00:00Z");
        assert_eq!(utc_now().len(), 20);
        assert!(sequoia_version().starts_with('2'), "{}", sequoia_version());
        let (all, idle, steal) = cpu_ticks().unwrap_or((1, 0, 0));
        assert!(all >= idle + steal);
        let mut c = Clock::start();
        c.phase("a");
        let p = c.finish(3, 0.5);
        assert_eq!(p.phases.len(), 1);
        assert_eq!(p.seed, 3);
        assert!(p.kernel.starts_with("Linux"), "{}", p.kernel);
        assert_eq!(p.git_dirty, p.git_diff_sha256.is_some());
    }
}
