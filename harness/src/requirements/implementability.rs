//! XEP-0210's Implementability, measured on the implementation: lines of
//! the crate that implements the profile (the compiler names it:
//! `Protocol::implementation`) and of the dependencies it brings beyond
//! what the core already needs (`cargo metadata`'s resolved graph, normal
//! dependencies only), the distinct cryptographic primitives its sessions
//! ran in the measured run (the floors' operation lists), and the length of
//! the specifications it names (words, and pages at 500 words).
//!
//! Lines are non-blank lines of `.rs` files that are not only a `//`
//! comment; a crate's `tests.rs` files and `tests/`, `benches/`,
//! `examples/` directories are left out; inline `#[cfg(test)]` modules are
//! counted. A dependency that links a native library (`links` in its
//! manifest) is named, its C source is not on this machine and not counted.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One profile's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImplOut {
    /// The implementing crate (package name).
    pub krate: String,
    /// Its lines.
    pub crate_lines: u64,
    /// Dependencies beyond the core's, with their lines.
    pub own_deps: BTreeMap<String, u64>,
    /// Their lines in all.
    pub own_dep_lines: u64,
    /// Native libraries linked by those dependencies (not counted).
    pub native: Vec<String>,
    /// Distinct primitives the sessions ran.
    pub primitives: Vec<String>,
    /// Specifications named, with their words (`None`: not on this machine).
    pub specs: BTreeMap<String, Option<u64>>,
    /// Pages at 500 words of the specifications found (`None`: none found).
    pub spec_pages: Option<f64>,
}

fn count_lines(dir: &Path, top: bool, n: &mut u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if top && matches!(name.as_str(), "tests" | "benches" | "examples" | "target") {
                continue;
            }
            count_lines(&p, false, n);
        } else if name.ends_with(".rs") && name != "tests.rs" {
            if let Ok(t) = std::fs::read_to_string(&p) {
                *n += t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("//"))
                    .count() as u64;
            }
        }
    }
}

/// Lines of the package whose manifest is `manifest`.
pub fn package_lines(manifest: &Path) -> u64 {
    let mut n = 0;
    if let Some(d) = manifest.parent() {
        count_lines(d, true, &mut n);
    }
    n
}

/// The platform this binary was built for (the graph is resolved for it:
/// other platforms' dependencies are neither built nor downloaded).
fn host() -> &'static str {
    if cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(
        target_arch = "aarch64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    }
}

/// The workspace's resolved graph.
pub struct Graph {
    packages: BTreeMap<String, Value>,
    deps: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// `cargo metadata` of the workspace at `root`.
    pub fn load(root: &Path) -> crate::Result<Graph> {
        let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--filter-platform",
                host(),
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .output()
            .map_err(|e| crate::Error::tool("cargo metadata", e))?;
        if !out.status.success() {
            return Err(crate::Error::tool(
                "cargo metadata",
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(crate::Error::msg)?;
        let mut packages = BTreeMap::new();
        for p in v["packages"].as_array().into_iter().flatten() {
            if let Some(id) = p["id"].as_str() {
                packages.insert(id.to_string(), p.clone());
            }
        }
        let mut deps = BTreeMap::new();
        for n in v["resolve"]["nodes"].as_array().into_iter().flatten() {
            let Some(id) = n["id"].as_str() else { continue };
            let normal: Vec<String> = n["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k["kind"].is_null())
                })
                .filter_map(|d| d["pkg"].as_str().map(str::to_string))
                .collect();
            deps.insert(id.to_string(), normal);
        }
        Ok(Graph { packages, deps })
    }

    fn id_of(&self, name: &str) -> Option<String> {
        self.packages
            .iter()
            .find(|(_, p)| p["name"] == name && p["source"].is_null())
            .map(|(id, _)| id.clone())
    }

    fn closure(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![id.to_string()];
        while let Some(x) = todo.pop() {
            if seen.insert(x.clone()) {
                todo.extend(self.deps.get(&x).cloned().unwrap_or_default());
            }
        }
        seen
    }

    /// The crate's lines and those of the dependencies it adds to the core's.
    pub fn measure(&self, krate: &str) -> crate::Result<(u64, BTreeMap<String, u64>, Vec<String>)> {
        let id = self
            .id_of(krate)
            .ok_or_else(|| crate::fail!("no workspace package {krate}"))?;
        let core = self
            .id_of("e2elab-core")
            .ok_or("no workspace package e2elab-core")?;
        let shared = self.closure(&core);
        let path = |id: &str| -> crate::Result<PathBuf> {
            self.packages
                .get(id)
                .and_then(|p| p["manifest_path"].as_str())
                .map(PathBuf::from)
                .ok_or_else(|| crate::fail!("cargo metadata: no manifest for {id}"))
        };
        let crate_lines = package_lines(&path(&id)?);
        let mut own = BTreeMap::new();
        let mut native = Vec::new();
        for d in self.closure(&id) {
            if d == id || shared.contains(&d) {
                continue;
            }
            let p = self
                .packages
                .get(&d)
                .ok_or_else(|| crate::fail!("cargo metadata: no package {d}"))?;
            let label = format!(
                "{} {}",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?")
            );
            // A `-sys` crate's `links` names the C library it binds.
            if let Some(l) = p["links"]
                .as_str()
                .filter(|_| p["name"].as_str().is_some_and(|n| n.ends_with("-sys")))
            {
                native.push(format!("{l} (linked by {label})"));
            }
            own.insert(label, package_lines(&path(&d)?));
        }
        Ok((crate_lines, own, native))
    }
}

/// The package implementing a profile, from the compiler's type path
/// (`e2elab_omemo::Omemo` -> `e2elab-omemo`).
pub fn crate_of(type_path: &str) -> String {
    type_path
        .split("::")
        .next()
        .unwrap_or(type_path)
        .replace('_', "-")
}

/// The specification files a profile's `spec` line names, under `dir`:
/// `XEP-nnnn`/`JEP-nnnn` (with `vX.Y`: that version's file), `RFC nnnn`
/// (and `/nnnn` after it), `OTR Protocol vN`.
pub fn spec_files(spec: &str, dir: &Path) -> BTreeMap<String, Option<PathBuf>> {
    let mut out = BTreeMap::new();
    let words: Vec<&str> = spec
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied().unwrap_or("");
        if let Some(n) = w.strip_prefix("XEP-").or_else(|| w.strip_prefix("JEP-")) {
            if n.len() == 4 && n.chars().all(|c| c.is_ascii_digit()) {
                let ver = next
                    .strip_prefix('v')
                    .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()));
                let (label, file) = match ver {
                    Some(v) => (
                        format!("XEP-{n} v{v}"),
                        dir.join(format!("xep-{n}-v{v}.xml")),
                    ),
                    None => (format!("XEP-{n}"), dir.join(format!("xep-{n}.xml"))),
                };
                // The current text stands for a version the directory holds
                // no separate file of only when it is that version.
                let found = if file.exists() {
                    Some(file)
                } else if let Some(v) = ver {
                    let cur = dir.join(format!("xep-{n}.xml"));
                    std::fs::read_to_string(&cur)
                        .ok()
                        .filter(|t| latest_version(t).is_some_and(|l| same_version(&l, v)))
                        .map(|_| cur)
                } else {
                    None
                };
                out.entry(format!("XEP-{n}")).or_insert((label, found));
            }
        } else if w == "RFC" {
            for r in next.split('/') {
                if r.len() == 4 && r.chars().all(|c| c.is_ascii_digit()) {
                    let f = dir.join(format!("rfc{r}.txt"));
                    out.entry(format!("RFC {r}"))
                        .or_insert((format!("RFC {r}"), f.exists().then_some(f)));
                }
            }
        } else if w == "OTR" && next == "Protocol" {
            if let Some(v) = words.get(i + 2).and_then(|v| v.strip_prefix('v')) {
                let f = dir.join(format!("otr-Protocol-v{v}.html"));
                out.entry(format!("OTR v{v}"))
                    .or_insert((format!("OTR Protocol v{v}"), f.exists().then_some(f)));
            }
        }
        i += 1;
    }
    out.into_values().collect()
}

/// The file's version `a` is the named version `b` when `b`'s components
/// begin `a`'s (`0.9` names the 0.9 series: `0.9.0`, `0.9.1`; trailing
/// zero components are ignored, so `1.4` is `1.4.0`).
fn same_version(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let mut v: Vec<String> = s.split('.').map(str::to_string).collect();
        while v.len() > 1 && v.last().is_some_and(|x| x == "0") {
            v.pop();
        }
        v
    };
    let (a, b) = (norm(a), norm(b));
    a.len() >= b.len() && a[..b.len()] == b[..]
}

fn latest_version(xml: &str) -> Option<String> {
    let i = xml.find("<version>")? + "<version>".len();
    let j = xml[i..].find('<')?;
    Some(xml[i..i + j].trim().to_string())
}

/// Words of a specification's text (markup and entities removed).
pub fn words(path: &Path) -> crate::Result<u64> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| crate::Error::io(path.display().to_string(), e))?;
    let mut text = String::with_capacity(t.len());
    let mut in_tag = false;
    for c in t.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    Ok(text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count() as u64)
}

/// Distinct primitives in the operation lists of a profile's floors
/// (library names, the direction of a cipher, and XML/base64 work left out).
pub fn primitives(r: &crate::compare::Results, protocol: &str) -> Vec<String> {
    let mut set = BTreeSet::new();
    for f in r.floors.iter().filter(|f| f.protocol == protocol) {
        for o in &f.ops {
            let base = o.name.split(" (").next().unwrap_or(&o.name);
            if base.starts_with("XML") || base.starts_with("base64") {
                continue;
            }
            let base = base
                .replace(" encrypt", "")
                .replace(" decrypt", "")
                .replace(" sign", "")
                .replace(" verify", "");
            set.insert(base.trim().to_string());
        }
    }
    set.into_iter().collect()
}
