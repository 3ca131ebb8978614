//! The paper's generated inputs (issue 19): every number in them comes from
//! the committed results/, the committed `paper/gen/` is exactly what
//! `e2elab paper` writes from them, the committed PDF was built from those
//! inputs (their hash is in its metadata), and the paper builds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::compare::tables::sig3;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Number tokens: runs of digits (with `.` and `,` inside) not glued to a
/// letter before them (so `rfc3923` and `otr-v3` are names, not numbers).
fn number_tokens(s: &str) -> Vec<String> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '@')) {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_digit()
                    || ((b[j] == '.' || b[j] == ',')
                        && j + 1 < b.len()
                        && b[j + 1].is_ascii_digit()))
            {
                j += 1;
            }
            out.push(b[i..j].iter().collect());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn generate_fresh() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let files = e2elab::paper::generate(&root().join("results"), tmp.path()).unwrap();
    let mut m = BTreeMap::new();
    for f in files {
        m.insert(
            f.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&f).unwrap(),
        );
    }
    (tmp, m)
}

#[test]
fn committed_includes_are_what_the_results_generate() {
    let (_t, fresh) = generate_fresh();
    for (name, text) in &fresh {
        let committed = std::fs::read_to_string(root().join("paper/gen").join(name))
            .unwrap_or_else(|e| panic!("paper/gen/{name}: {e} (run bash scripts/paper.sh)"));
        assert!(
            &committed == text,
            "paper/gen/{name} differs from what `e2elab paper` writes from results/: run bash scripts/paper.sh"
        );
    }
}

#[test]
fn every_number_in_the_includes_comes_from_the_results() {
    let (_t, fresh) = generate_fresh();
    let prov: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&fresh["provenance.json"]).unwrap();
    let texts: std::collections::BTreeSet<String> = prov
        .values()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    // Each source names a result file, and a numeric text is its raw value
    // in the report's format.
    let mut numeric = 0;
    for (k, v) in &prov {
        let from = v["from"].as_str().unwrap();
        let file = from.split(':').next().unwrap();
        assert!(
            [
                "results.json",
                "security.json",
                "server.json",
                "requirements.json"
            ]
            .contains(&file),
            "{k}: source {from}"
        );
        let text = v["text"].as_str().unwrap();
        let raw = v["raw"].as_str().unwrap();
        if let (Ok(t), Ok(r)) = (text.parse::<f64>(), raw.parse::<f64>()) {
            numeric += 1;
            assert!(
                sig3(r) == text || r.to_string() == text || (t - r).abs() < f64::EPSILON,
                "{k}: text {text} is not raw {raw} formatted"
            );
        }
    }
    assert!(numeric > 300, "only {numeric} numbers registered");
    // numbers.tex defines exactly the registered texts.
    for line in fresh["numbers.tex"]
        .lines()
        .filter(|l| l.starts_with("\\expandafter\\def\\csname e2elab@"))
    {
        let key = line
            .split("e2elab@")
            .nth(1)
            .unwrap()
            .split("\\endcsname")
            .next()
            .unwrap();
        assert!(
            prov.contains_key(key),
            "numbers.tex defines {key}, not in provenance.json"
        );
    }
    // Every number in a measured table is a registered text. (The claims
    // and SoK tables quote the specs: "RFC 4253 §6.4" is a citation.)
    for (name, text) in &fresh {
        if !name.starts_with("tab-") || name == "tab-claims.tex" || name == "tab-sok.tex" {
            continue;
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('%') && !l.starts_with("\\begin"))
        {
            for cell in line.trim_end_matches(" \\\\").split(" & ") {
                for tok in number_tokens(cell) {
                    assert!(
                        texts.contains(&tok)
                            || texts
                                .iter()
                                .any(|t| t.contains(&tok) && number_tokens(t).contains(&tok)),
                        "{name}: {tok} (in {cell:?}) is not a registered result"
                    );
                }
            }
        }
    }
}

#[test]
fn the_committed_pdf_was_built_from_the_committed_includes() {
    let hash = std::fs::read_to_string(root().join("paper/gen/inputs.sha256")).unwrap();
    let pdf = std::fs::read(root().join("paper/paper.pdf"))
        .expect("paper/paper.pdf (bash scripts/paper.sh)");
    let needle = format!("gen:{}", hash.trim());
    assert!(
        pdf.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "paper/paper.pdf does not carry {needle}: rebuild it with bash scripts/paper.sh"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The paper builds from the committed sources and includes (in a copy:
/// the work tree is not touched), to the length the issue asks for.
#[test]
fn the_paper_builds() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("paper"), &tmp.path().join("paper"));
    std::fs::create_dir_all(tmp.path().join("results")).unwrap();
    for e in std::fs::read_dir(root().join("results")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            std::fs::copy(&p, tmp.path().join("results").join(p.file_name().unwrap())).unwrap();
        }
    }
    let dir = tmp.path().join("paper");
    for f in [
        "paper.pdf",
        "paper.aux",
        "paper.bbl",
        "paper.blg",
        "paper.log",
        "paper.out",
        "paper.fls",
        "paper.fdb_latexmk",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let out = std::process::Command::new("latexmk")
        .args([
            "-pdf",
            "-interaction=nonstopmode",
            "-halt-on-error",
            "paper.tex",
        ])
        .current_dir(&dir)
        .output()
        .expect("latexmk (scripts/setup.sh installs it)");
    let log = std::fs::read_to_string(dir.join("paper.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "latexmk failed:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(
        !log.contains("There were undefined references") && !log.contains("Citation `"),
        "undefined references or citations"
    );
    let pages: usize = log
        .split("Output written on paper.pdf (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("page count in the log");
    assert!((8..=12).contains(&pages), "{pages} pages");
}
