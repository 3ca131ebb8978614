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

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Split a path at the dots outside `[...]`.
fn segments(path: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// The values a path selects: `a.b[k=v,k2=v2].c` (a selector keeps every
/// array element whose fields equal the values).
fn select<'a>(root: &'a serde_json::Value, path: &str) -> (Vec<&'a serde_json::Value>, bool) {
    let mut cur = vec![root];
    let mut last_selects = false;
    for seg in segments(path) {
        let (name, sel) = match seg.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']'))),
            None => (seg, None),
        };
        last_selects = sel.is_some();
        let mut next = Vec::new();
        for c in cur {
            let x = &c[name];
            match sel {
                None => next.push(x),
                Some(conds) => {
                    for el in x.as_array().into_iter().flatten() {
                        if conds.split(',').all(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            scalar(&el[k]) == v
                        }) {
                            next.push(el);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    (cur, last_selects)
}

fn one(root: &serde_json::Value, path: &str) -> Result<serde_json::Value, String> {
    let (v, _) = select(root, path);
    let first = v.first().ok_or(format!("{path} selects nothing"))?;
    if v.iter().any(|x| x != first) {
        return Err(format!("{path} selects differing values"));
    }
    Ok((*first).clone())
}

/// What a source expression gives, formatted as the paper formats it.
fn resolve(root: &serde_json::Value, expr: &str) -> Result<String, String> {
    let fmt_num = |x: f64, integer: bool| {
        if integer {
            format!("{}", x as u64)
        } else {
            sig3(x)
        }
    };
    if let Some(path) = expr.strip_suffix(" (count)") {
        let (v, selects) = select(root, path);
        let n = if selects {
            v.len()
        } else {
            v.first().and_then(|a| a.as_array()).map_or(0, Vec::len)
        };
        return Ok(n.to_string());
    }
    if let Some(path) = expr.strip_suffix(" (max)") {
        let (v, _) = select(root, path);
        let m = v.iter().filter_map(|x| x.as_f64()).fold(0.0, f64::max);
        return Ok(sig3(m));
    }
    if let Some(path) = expr.strip_suffix(" (pk)") {
        let o = one(root, path)?;
        let parts: Vec<String> = ["modexp", "sign", "verify", "pk_encrypt", "pk_decrypt"]
            .iter()
            .filter(|k| o[**k].as_f64().unwrap_or(0.0) > 0.0)
            .map(|k| format!("{} {k}", sig3(o[*k].as_f64().unwrap())))
            .collect();
        return Ok(if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        });
    }
    if let Some(path) = expr.strip_suffix(" (verdict)") {
        return Ok(scalar(&one(root, path)?).replace('_', " "));
    }
    if let Some(path) = expr.strip_suffix(" (ms)") {
        let v = one(root, path)?;
        return Ok(match v.as_u64() {
            Some(ms) => format!("{ms} ms"),
            None => "not in the window".into(),
        });
    }
    if let Some((path, n)) = expr
        .strip_suffix(')')
        .and_then(|e| e.rsplit_once(" (prefix "))
    {
        let s = scalar(&one(root, path)?);
        return Ok(s.chars().take(n.parse().unwrap()).collect());
    }
    let (sum, div) = match expr.rsplit_once(" / ") {
        Some((e, d)) => (e, d.parse::<f64>().map_err(|e| e.to_string())?),
        None => (expr, 1.0),
    };
    let terms: Vec<serde_json::Value> = sum
        .split(" + ")
        .map(|t| one(root, t))
        .collect::<Result<_, _>>()?;
    if terms.len() == 1 && !terms[0].is_number() {
        return Ok(scalar(&terms[0]));
    }
    let integer = terms.iter().all(|t| t.is_u64()) && div == 1.0;
    let x: f64 = terms.iter().map(|t| t.as_f64().unwrap()).sum::<f64>() / div;
    Ok(fmt_num(x, integer))
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
    // Each source is resolved again here, independently of the generator,
    // in the raw JSON of the result file it names, and must give the text.
    let json: BTreeMap<String, serde_json::Value> = [
        "results.json",
        "security.json",
        "server.json",
        "requirements.json",
    ]
    .iter()
    .map(|f| {
        let t = std::fs::read_to_string(root().join("results").join(f)).unwrap();
        (f.to_string(), serde_json::from_str(&t).unwrap())
    })
    .collect();
    let mut numeric = 0;
    for (k, v) in &prov {
        let from = v["from"].as_str().unwrap();
        let text = v["text"].as_str().unwrap();
        let (file, expr) = from.split_once(": ").unwrap();
        let got = resolve(&json[file], expr).unwrap_or_else(|e| panic!("{k}: {from}: {e}"));
        if text.parse::<f64>().is_ok() {
            numeric += 1;
        }
        assert_eq!(
            got, text,
            "{k}: {from} resolves to {got}, the paper shows {text}"
        );
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

/// The prose types no measured figure: after `\begin{document}`, with the
/// `\res{}` citations, references, includes and comments taken out, every
/// number left is a specification's number or version, a year, a length,
/// or one of the design constants the specifications fix (listed here).
#[test]
fn the_prose_types_no_measured_figure() {
    let tex = std::fs::read_to_string(root().join("paper/paper.tex")).unwrap();
    let body = tex
        .split("\\begin{document}")
        .nth(1)
        .expect("\\begin{document}");
    let mut t = String::new();
    for line in body.lines() {
        // Comments (an unescaped %) end the line.
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '%' && prev != '\\' {
                cut = i;
                break;
            }
            prev = c;
        }
        t.push_str(&line[..cut]);
        t.push('\n');
    }
    // Drop commands whose arguments are names, not prose.
    for cmd in [
        "\\res{",
        "\\cite{",
        "\\citep{",
        "\\ref{",
        "\\label{",
        "\\input{",
        "\\gentab{",
        "\\includegraphics",
        "\\bibliography{",
        "\\bibliographystyle{",
        "\\texttt{",
    ] {
        while let Some(i) = t.find(cmd) {
            let rest = &t[i..];
            let mut depth = 0;
            let mut end = rest.len();
            let mut seen_brace = false;
            for (j, c) in rest.char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        seen_brace = true;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 && seen_brace {
                            end = j + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            t.replace_range(i..i + end, " ");
        }
    }
    // Key and group sizes the specifications fix (RSA/MODP 1024-2048, OTR's
    // 320-bit exponents, SHA-256/AES-256), ESessions' 24-bit SAS, the sweep's
    // largest size (64 KiB), the bootstrap's 95% interval, and counts of
    // design elements (3- and 4-message handshakes, version 2/3).
    const DESIGN: [&str; 13] = [
        "0", "1", "2", "3", "4", "24", "64", "95", "256", "320", "1024", "1536", "2048",
    ];
    const BEFORE: [&str; 13] = [
        "XEP-", "JEP-", "RFC", "SHA-", "AES-", "DSA-", "RSA-", "version", "Version", "v", "Debian",
        "Prosody", "OMEMO",
    ];
    let b: Vec<char> = t.chars().collect();
    let mut bad = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '.')) {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_digit()
                    || (b[j] == '.' && j + 1 < b.len() && b[j + 1].is_ascii_digit()))
            {
                j += 1;
            }
            let tok: String = b[i..j].iter().collect();
            let before: String = b[i.saturating_sub(10)..i].iter().collect();
            let before = before.trim_end_matches(['~', ' ', '(', '\n']);
            let after: String = b[j..(j + 12).min(b.len())].iter().collect();
            // The second of a pair of specification numbers ("XEP-0373/0374").
            let pair = before.ends_with('/')
                && before
                    .chars()
                    .rev()
                    .nth(1)
                    .is_some_and(|c| c.is_ascii_digit());
            let year = tok.len() == 4 && (1990..2030).contains(&tok.parse::<u32>().unwrap_or(0));
            let length = [
                "\\linewidth",
                "\\columnwidth",
                "\\textwidth",
                "pt",
                "em",
                "cm",
                "mm",
                "ex",
            ]
            .iter()
            .any(|u| after.starts_with(u));
            if !(pair
                || year
                || length
                || DESIGN.contains(&tok.as_str())
                || BEFORE.iter().any(|p| before.ends_with(p)))
            {
                bad.push(format!("{tok} (after {before:?})"));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    assert!(bad.is_empty(), "numbers typed in the prose: {bad:?}");
}
