//! A throwaway Prosody on loopback, started and stopped by the harness with
//! the project's own `scripts/prosody.sh` (embedded at build time, so the
//! binary needs no checkout to run it).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The script, as built into this binary.
pub const SCRIPT: &str = include_str!("../../../scripts/prosody.sh");

/// Whether the `prosody` binary is installed (checked before long runs that need it).
pub fn installed() -> bool {
    // (`prosody --version` would start a server with the system config.)
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("prosody").is_file()))
}

/// A running Prosody; stopped when dropped (and, through a watchdog the
/// script starts, when this process dies without dropping it).
#[derive(Debug)]
pub struct Prosody {
    /// Its directory (config, data, log, pid file, certificate).
    pub dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `c2s_stanza_size_limit` it was configured with, bytes.
    pub stanza_limit: u64,
    /// Accounts `user0..user{users-1}` exist (besides alice and bob).
    pub users: usize,
    _tmp: Option<tempfile::TempDir>,
}

fn free_port() -> crate::Result<u16> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| crate::fail!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| crate::fail!("finding a free port: {e}"))
}

/// Exit status the script uses when another process took the port.
const PORT_TAKEN: i32 = 3;

fn script(args: &[String], offline: bool) -> Result<(), (Option<i32>, String)> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("prosody.sh")
        .args(args)
        .env("E2ELAB_OWNER_PID", std::process::id().to_string())
        .env("E2ELAB_PROSODY_OFFLINE", if offline { "1" } else { "0" })
        .output()
        .map_err(|e| (None, format!("running bash: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err((
            out.status.code(),
            format!(
                "scripts/prosody.sh {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        ))
    }
}

impl Prosody {
    /// Start one in a fresh temporary directory on a free loopback port.
    pub fn start(stanza_limit: u64, users: usize) -> crate::Result<Prosody> {
        Prosody::start_opts(stanza_limit, users, false)
    }

    /// [`Prosody::start`] with offline storage on (`mod_offline`), the
    /// default stanza limit, and `users` accounts.
    pub fn start_with_offline(users: usize) -> crate::Result<Prosody> {
        Prosody::start_opts(262_144, users, true)
    }

    fn start_opts(stanza_limit: u64, users: usize, offline: bool) -> crate::Result<Prosody> {
        let tmp = tempfile::Builder::new()
            .prefix("e2elab-prosody-")
            .tempdir()
            .map_err(|e| crate::fail!("temporary directory: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let mut p = Prosody::start_in_opts(&dir, stanza_limit, users, offline)?;
        p._tmp = Some(tmp);
        Ok(p)
    }

    /// Start one in `dir` on a free loopback port. The port is free when
    /// chosen but may be taken before Prosody binds it (tests start servers in
    /// parallel): the script then reports it and another port is tried.
    pub fn start_in(dir: &Path, stanza_limit: u64, users: usize) -> crate::Result<Prosody> {
        Prosody::start_in_opts(dir, stanza_limit, users, false)
    }

    fn start_in_opts(
        dir: &Path,
        stanza_limit: u64,
        users: usize,
        offline: bool,
    ) -> crate::Result<Prosody> {
        if stanza_limit == 0 {
            return Err("a stanza size limit of 0 bytes would refuse every stanza".into());
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match script(
                &[
                    "start".into(),
                    dir.display().to_string(),
                    port.to_string(),
                    stanza_limit.to_string(),
                    users.to_string(),
                ],
                offline,
            ) {
                Ok(()) => {
                    return Ok(Prosody {
                        dir: dir.to_path_buf(),
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        stanza_limit,
                        users,
                        _tmp: None,
                    })
                }
                Err((Some(PORT_TAKEN), e)) => last = e,
                Err((_, e)) => return Err(crate::Error::tool("prosody", e)),
            }
        }
        Err(crate::fail!("no free port after 5 tries: {last}"))
    }

    /// The self-signed certificate clients trust for STARTTLS.
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("localhost.crt")
    }

    /// The tail of its log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stop it (also done on drop).
    pub fn stop(&self) -> crate::Result<()> {
        script(&["stop".into(), self.dir.display().to_string()], false)
            .map_err(|(_, e)| crate::Error::tool("prosody", e))
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The installed Prosody's version (Debian package version), or why not.
pub fn version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "prosody"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("Prosody {}", String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "prosody (version unknown)".into())
}
