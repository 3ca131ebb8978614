//! Fresh worker processes (`e2elab worker …`) for the phases that need one:
//! the scale runs, the cold first handshake and the callgrind runs. Each
//! prints its result as JSON on stdout; a worker that fails fails the run
//! with its stderr.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `e2elab` binary workers run: `E2ELAB_EXE` if set (tests running
/// the library in-process point it at the built binary), else this
/// executable.
pub fn exe() -> crate::Result<PathBuf> {
    if let Some(p) = std::env::var_os("E2ELAB_EXE") {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().map_err(|e| crate::fail!("own executable: {e}"))
}

fn one(label: &str, prefix: &[String], args: &[String]) -> crate::Result<String> {
    let exe = exe()?;
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .arg("worker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| crate::fail!("{label}: cannot start {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(crate::fail!(
            "{label}: worker failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| crate::fail!("{label}: worker output: {e}"))
}

/// One worker process.
#[derive(Debug, Clone)]
pub struct Job {
    /// What it is, for progress and errors.
    pub label: String,
    /// The arguments after `e2elab worker`.
    pub args: Vec<String>,
    /// A command the worker runs under (e.g. valgrind), or empty.
    pub prefix: Vec<String>,
}

/// The command line of `e2elab worker KIND --profile ID --seed S` followed
/// by `extra` flag-value pairs.
pub fn worker_args(kind: &str, id: &str, seed: u64, extra: &[(&str, String)]) -> Vec<String> {
    let mut a = vec![
        kind.to_string(),
        "--profile".into(),
        id.to_string(),
        "--seed".into(),
        seed.to_string(),
    ];
    for (flag, value) in extra {
        a.push((*flag).to_string());
        a.push(value.clone());
    }
    a
}

impl Job {
    /// A job run directly.
    pub fn new(label: String, args: Vec<String>) -> Job {
        Job {
            label,
            args,
            prefix: Vec::new(),
        }
    }
}

/// Run `jobs`, at most `parallel` at once (each runner takes the next job
/// as soon as it is free); their outputs in job order. The first failure
/// stops new jobs and is returned.
pub fn run_parallel(
    jobs: Vec<Job>,
    parallel: usize,
    progress: &mut dyn FnMut(&str),
) -> crate::Result<Vec<String>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Mutex};
    let n = jobs.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outs: Mutex<Vec<Option<crate::Result<String>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1).min(n.max(1)) {
            let tx = tx.clone();
            let (jobs, next, failed, outs) = (&jobs, &next, &failed, &outs);
            s.spawn(move || loop {
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(j) = jobs.get(i) else { break };
                let _ = tx.send(j.label.clone());
                let r = one(&j.label, &j.prefix, &j.args);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if let Ok(mut o) = outs.lock() {
                    o[i] = Some(r);
                }
            });
        }
        drop(tx);
        for label in rx {
            progress(&label);
        }
    });
    let outs = outs
        .into_inner()
        .map_err(|_| "worker results poisoned".to_string())?;
    let mut outs = outs;
    if let Some(i) = outs.iter().position(|o| matches!(o, Some(Err(_)))) {
        if let Some(Err(e)) = outs.swap_remove(i) {
            return Err(e);
        }
    }
    let mut v = Vec::with_capacity(n);
    for o in outs {
        match o {
            Some(r) => v.push(r?),
            None => return Err("a worker did not run (an earlier one failed)".into()),
        }
    }
    Ok(v)
}

/// Write both identities of a profile for workers to load (`DIR/ID/0.json`,
/// `1.json`).
pub fn save_ids(
    dir: &std::path::Path,
    id: &str,
    ids: &crate::driver::Identities,
) -> crate::Result<()> {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).map_err(|e| crate::Error::io(d.display().to_string(), e))?;
    for (i, x) in ids.ids.iter().enumerate() {
        let p = d.join(format!("{i}.json"));
        let j = serde_json::to_string(&x.to_record()).map_err(crate::Error::msg)?;
        std::fs::write(&p, j).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
    }
    Ok(())
}

/// Load what [`save_ids`] wrote.
pub fn load_ids(dir: &std::path::Path, id: &str) -> crate::Result<crate::driver::Identities> {
    let load = |i: usize| -> crate::Result<std::sync::Arc<e2elab_core::Identity>> {
        let p = dir.join(id).join(format!("{i}.json"));
        let s = std::fs::read_to_string(&p)
            .map_err(|e| crate::Error::io(p.display().to_string(), e))?;
        let r: e2elab_core::IdentityRecord =
            serde_json::from_str(&s).map_err(|e| crate::Error::data(p.display().to_string(), e))?;
        e2elab_core::Identity::from_record(&r)
            .map(std::sync::Arc::new)
            .map_err(|e| crate::fail!("{}: {e}", p.display()))
    };
    Ok(crate::driver::Identities {
        ids: [load(0)?, load(1)?],
        keygen_cpu: [std::time::Duration::ZERO; 2],
    })
}
