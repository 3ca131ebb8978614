//! `e2elab paper`: the generated inputs of `paper/paper.tex`, written from
//! the committed result files only (results.json, security.json,
//! server.json, requirements.json): `numbers.tex` (every measured figure the
//! prose cites, as `\res{key}`), one `tab-*.tex` per table (a bare
//! `tabular`), `provenance.json` (each number's source: file, path, raw
//! value) and `inputs.sha256` / `hash.tex` (a hash over the generated
//! files, which `scripts/paper.sh` writes into the PDF's metadata, so a PDF
//! says which results it was built from).
//!
//! Numbers are formatted as the report formats them (three significant
//! digits, `compare::tables::sig3`); the test `paper_numbers` reads every
//! number back out of the generated files and finds it in the sources.

use crate::compare::tables::sig3;
use crate::compare::Results;
use crate::requirements::ReqRun;
use crate::security::SecurityRun;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One cited number and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The text the paper shows.
    pub text: String,
    /// File and path in it.
    pub from: String,
    /// The raw value read there.
    pub raw: String,
}

/// Every key, its text and source.
#[derive(Debug, Default)]
pub struct Numbers(pub BTreeMap<String, Source>);

impl Numbers {
    fn put(&mut self, key: &str, text: String, from: String, raw: impl ToString) {
        self.0.insert(
            key.to_string(),
            Source {
                text,
                from,
                raw: raw.to_string(),
            },
        );
    }

    fn num(&mut self, key: &str, x: f64, from: String) {
        self.put(key, sig3(x), from, x);
    }

    fn int(&mut self, key: &str, x: u64, from: String) {
        self.put(key, x.to_string(), from, x);
    }
}

/// LaTeX-escape text.
pub fn tex(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                o.push('\\');
                o.push(c);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            'µ' => o.push_str("\\textmu{}"),
            '●' => o.push_str("$\\bullet$"),
            '◐' => o.push_str("$\\odot$"),
            '○' => o.push_str("$\\circ$"),
            '—' => o.push_str("---"),
            '–' => o.push_str("--"),
            '§' => o.push_str("\\S{}"),
            '×' => o.push_str("$\\times$"),
            c if c.is_ascii() => o.push(c),
            _ => o.push('?'),
        }
    }
    o
}

/// A header cell starting with this is set rotated (`\\rot{...}`, defined
/// in `numbers.tex`).
const ROT: &str = "\u{1}rot:";

fn head_cell(h: &str) -> String {
    match h.strip_prefix(ROT) {
        Some(r) => format!("\\rot{{{}}}", tex(r)),
        None => tex(h),
    }
}

/// A bare booktabs `tabular` (`spec` like `lrrr`); cells are escaped.
pub fn tabular(spec: &str, head: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n");
    s.push_str(
        &head
            .iter()
            .map(|h| head_cell(h))
            .collect::<Vec<_>>()
            .join(" & "),
    );
    s.push_str(" \\\\\n\\midrule\n");
    for r in rows {
        s.push_str(&r.iter().map(|c| tex(c)).collect::<Vec<_>>().join(" & "));
        s.push_str(" \\\\\n");
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    s
}

fn letter(outcome: &str) -> String {
    match outcome {
        "holds" => "H".into(),
        "fails" => "F".into(),
        "measured" => "m".into(),
        "not measured" => "--".into(),
        o => o.into(),
    }
}

/// Short keys of the security rows (`sec.P.R`).
pub fn row_key(property: &str, variant: &str) -> String {
    match (property, variant) {
        ("confidentiality_coverage", _) => "coverage".into(),
        ("loss_reorder_tolerance", _) => "lossreorder".into(),
        ("forward_secrecy", _) => "fs".into(),
        ("post_compromise_security", v) => format!("pcs-{v}"),
        ("message_repudiation", v) => format!("repud-{v}"),
        ("participation_repudiation", _) => "participation".into(),
        ("identity_protection", v) => format!("idprot-{v}"),
        ("mitm_detection", v) => format!(
            "mitm-{}",
            v.replace('/', "-").replace("first-contact", "first")
        ),
        ("downgrade_resistance", _) => "downgrade".into(),
        ("identity_misbinding", "key-registration") => "misbinding-keyreg".into(),
        ("identity_misbinding", _) => "misbinding-subst".into(),
        (p, _) => p.into(),
    }
}

/// Everything, from the files in `results`.
pub struct Inputs {
    /// results.json.
    pub r: Results,
    /// security.json.
    pub sec: SecurityRun,
    /// server.json.
    pub srv: crate::xmpp::ServerResults,
    /// requirements.json.
    pub req: ReqRun,
}

/// Read the four files.
pub fn read(results: &Path) -> crate::Result<Inputs> {
    Ok(Inputs {
        r: crate::compare::read(results)?,
        sec: SecurityRun::read(&results.join("security.json"))?,
        srv: crate::xmpp::read(results)?.ok_or("no server.json in the results")?,
        req: ReqRun::read(&results.join("requirements.json"))?,
    })
}

/// The numbers.
pub fn numbers(i: &Inputs) -> Numbers {
    let mut n = Numbers::default();
    let p = &i.r.provenance;
    let rev: String = p.git_revision.chars().take(7).collect();
    n.put(
        "run.rev",
        rev,
        "results.json: provenance.git_revision (prefix 7)".into(),
        &p.git_revision,
    );
    n.put(
        "run.date",
        p.date.chars().take(10).collect(),
        "results.json: provenance.date (prefix 10)".into(),
        &p.date,
    );
    n.int(
        "run.cpus",
        p.cpus as u64,
        "results.json: provenance.cpus".into(),
    );
    n.put(
        "run.cpu",
        p.cpu_model.clone(),
        "results.json: provenance.cpu_model".into(),
        &p.cpu_model,
    );
    n.put(
        "run.kernel",
        p.kernel.clone(),
        "results.json: provenance.kernel".into(),
        &p.kernel,
    );
    n.put(
        "run.openssl",
        p.openssl.clone(),
        "results.json: provenance.openssl".into(),
        &p.openssl,
    );
    n.put(
        "run.libotr",
        p.libotr.clone(),
        "results.json: provenance.libotr".into(),
        &p.libotr,
    );
    n.put(
        "run.libgcrypt",
        p.libgcrypt.clone(),
        "results.json: provenance.libgcrypt".into(),
        &p.libgcrypt,
    );
    n.put(
        "run.rustc",
        p.rustc.clone(),
        "results.json: provenance.rustc".into(),
        &p.rustc,
    );
    n.int(
        "run.reps",
        i.r.plan.reps as u64,
        "results.json: plan.reps".into(),
    );
    let wall = p.reproduce_wall_seconds.unwrap_or(p.wall_seconds);
    n.num(
        "run.wallmin",
        wall / 60.0,
        "results.json: provenance.reproduce_wall_seconds / 60".into(),
    );
    n.int(
        "run.profiles",
        i.r.profiles.len() as u64,
        "results.json: profiles (count)".into(),
    );
    n.int(
        "sec.controls",
        i.sec.profiles.iter().filter(|x| x.control).count() as u64,
        "security.json: profiles[control=true] (count)".into(),
    );
    n.int(
        "sec.checks",
        i.sec.controls.len() as u64,
        "security.json: controls (count)".into(),
    );
    n.int(
        "sec.wrong",
        i.sec.control_failures().len() as u64,
        "security.json: controls[ok=false] (count)".into(),
    );
    if let Some(ins) = &i.r.instructions {
        let max = ins
            .rows
            .iter()
            .filter(|r| r.headline)
            .map(|r| r.spread_percent)
            .fold(0.0, f64::max);
        n.num(
            "instr.spread",
            max,
            "results.json: instructions.rows[headline=true].spread_percent (max)".into(),
        );
    }
    n.int(
        "req.checks",
        i.req.checks.len() as u64,
        "requirements.json: checks (count)".into(),
    );
    n.int(
        "req.wrong",
        i.req.checks.iter().filter(|c| !c.ok).count() as u64,
        "requirements.json: checks[ok=false] (count)".into(),
    );
    for prof in &i.r.profiles {
        let id = prof.id.as_str();
        if let Some(h) = i.r.handshake.iter().find(|h| h.protocol == id) {
            n.int(
                &format!("hs.{id}.stanzas"),
                h.messages,
                format!("results.json: handshake[protocol={id}].messages"),
            );
            n.num(
                &format!("hs.{id}.rtt"),
                h.round_trips,
                format!("results.json: handshake[protocol={id}].round_trips"),
            );
            n.num(
                &format!("hs.{id}.bytes"),
                h.bytes_initiator.median + h.bytes_responder.median,
                format!(
                    "results.json: handshake[protocol={id}].bytes_initiator.median + handshake[protocol={id}].bytes_responder.median"
                ),
            );
            n.num(
                &format!("hs.{id}.cpu"),
                h.cpu_us_total.median / 1000.0,
                format!("results.json: handshake[protocol={id}].cpu_us_total.median / 1000"),
            );
            n.put(
                &format!("hs.{id}.pk"),
                pk_text(&h.ops_initiator),
                format!("results.json: handshake[protocol={id}].ops_initiator (pk)"),
                pk_text(&h.ops_initiator),
            );
        }
        if let Some(c) = i.r.cold.iter().find(|c| c.protocol == id) {
            n.num(
                &format!("cold.{id}"),
                c.cold_cpu_us.median / 1000.0,
                format!("results.json: cold[protocol={id}].cold_cpu_us.median / 1000"),
            );
            n.num(
                &format!("warm.{id}"),
                c.warm_cpu_us.median / 1000.0,
                format!("results.json: cold[protocol={id}].warm_cpu_us.median / 1000"),
            );
        }
        if let Some(m) =
            i.r.messages
                .iter()
                .find(|m| m.protocol == id && m.size == 1024)
        {
            n.num(
                &format!("msg.{id}.cpu"),
                m.total_cpu_us.median,
                format!("results.json: messages[protocol={id},size=1024].total_cpu_us.median"),
            );
            n.num(
                &format!("msg.{id}.wire"),
                m.wire_bytes.median,
                format!("results.json: messages[protocol={id},size=1024].wire_bytes.median"),
            );
        }
        if let Some(f) =
            i.r.floors
                .iter()
                .find(|f| f.protocol == id && f.size == Some(1024))
        {
            n.num(
                &format!("msg.{id}.ratio"),
                f.ratio.median,
                format!("results.json: floors[protocol={id},size=1024].ratio.median"),
            );
            if let Some(l) = &f.ratio_library {
                n.num(
                    &format!("msg.{id}.libratio"),
                    l.median,
                    format!("results.json: floors[protocol={id},size=1024].ratio_library.median"),
                );
            }
        }
        if let Some(f) =
            i.r.floors
                .iter()
                .find(|f| f.protocol == id && f.phase == "handshake")
        {
            n.num(
                &format!("hs.{id}.ratio"),
                f.ratio.median,
                format!("results.json: floors[protocol={id},phase=handshake].ratio.median"),
            );
        }
        if let Some(c) = i
            .sec
            .cells
            .iter()
            .find(|c| c.protocol == id && c.property == "loss_reorder_tolerance")
        {
            let rec = &c.attack["recovery"];
            let from =
                format!("security.json: cells[protocol={id},property=loss_reorder_tolerance].attack.recovery");
            if let (Some(sent), Some(lost)) =
                (rec["messages"].as_u64(), rec["messages_lost"].as_u64())
            {
                n.int(&format!("rob.{id}.sent"), sent, format!("{from}.messages"));
                n.int(
                    &format!("rob.{id}.lost"),
                    lost,
                    format!("{from}.messages_lost"),
                );
                let (text, raw) = match rec["recovery_ms"].as_u64() {
                    Some(ms) => (format!("{ms} ms"), ms.to_string()),
                    None => ("not in the window".to_string(), "null".to_string()),
                };
                n.put(
                    &format!("rob.{id}.recover"),
                    text,
                    format!("{from}.recovery_ms (ms)"),
                    raw,
                );
            }
        }
        for l in i.r.latency.iter().filter(|l| l.protocol == id) {
            let net = l.network.to_lowercase();
            n.num(
                &format!("ttfm.{id}.{net}"),
                l.ttfm_ms.median,
                format!(
                    "results.json: latency[protocol={id},network={}].ttfm_ms.median",
                    l.network
                ),
            );
        }
        if let Some(s) =
            i.r.scale
                .iter()
                .filter(|s| s.protocol == id)
                .max_by_key(|s| (s.pairs, s.run))
        {
            n.num(
                &format!("mem.{id}"),
                s.heap_bytes_per_session,
                format!(
                    "results.json: scale[protocol={id},pairs={},run={}].heap_bytes_per_session",
                    s.pairs, s.run
                ),
            );
        }
        if let Some(s) = i
            .srv
            .profiles
            .iter()
            .find(|s| s.protocol == id && s.mode == "tcp")
        {
            n.int(
                &format!("srv.{id}.intact"),
                s.delivered_exact + s.delivered_with_stamp,
                format!("server.json: profiles[protocol={id},mode=tcp].delivered_exact + profiles[protocol={id},mode=tcp].delivered_with_stamp"),
            );
            n.int(
                &format!("srv.{id}.stanzas"),
                s.stanzas,
                format!("server.json: profiles[protocol={id},mode=tcp].stanzas"),
            );
        }
        for c in i.sec.cells.iter().filter(|c| c.protocol == id) {
            let k = row_key(&c.property, &c.variant);
            n.put(
                &format!("sec.{id}.{k}"),
                c.outcome.name().into(),
                format!(
                    "security.json: cells[protocol={id},property={},variant={}].outcome",
                    c.property, c.variant
                ),
                c.outcome.name(),
            );
        }
        for c in i.req.cells.iter().filter(|c| c.protocol == id) {
            n.put(
                &format!("req.{id}.{}", c.requirement),
                c.verdict.name().into(),
                format!(
                    "requirements.json: cells[protocol={id},requirement={}].verdict (verdict)",
                    c.requirement
                ),
                c.verdict.name(),
            );
        }
    }
    n
}

/// Every table; its numbers are registered in `n` (key `tab.<table>.<profile>.<column>`).
pub fn tables(i: &Inputs, n: &mut Numbers) -> Vec<(&'static str, String)> {
    let ids: Vec<&str> = i.r.profiles.iter().map(|p| p.id.as_str()).collect();
    let mut out = Vec::new();
    let mut reg = |t: &str, id: &str, col: &str, text: String, from: String| -> String {
        n.put(&format!("tab.{t}.{id}.{col}"), text.clone(), from, &text);
        text
    };
    // Handshake.
    let rows: Vec<Vec<String>> = ids
        .iter()
        .filter_map(|id| i.r.handshake.iter().find(|h| h.protocol == *id))
        .map(|h| {
            let id = h.protocol.as_str();
            let f = |c: &str| format!("results.json: handshake[protocol={id}].{c}");
            vec![
                h.protocol.clone(),
                reg(
                    "handshake",
                    id,
                    "stanzas",
                    h.messages.to_string(),
                    f("messages"),
                ),
                reg(
                    "handshake",
                    id,
                    "rtt",
                    sig3(h.round_trips),
                    f("round_trips"),
                ),
                reg(
                    "handshake",
                    id,
                    "bytes",
                    sig3(h.bytes_initiator.median + h.bytes_responder.median),
                    format!("results.json: handshake[protocol={id}].bytes_initiator.median + handshake[protocol={id}].bytes_responder.median"),
                ),
                reg(
                    "handshake",
                    id,
                    "cpu",
                    sig3(h.cpu_us_total.median / 1000.0),
                    f("cpu_us_total.median / 1000"),
                ),
                reg(
                    "handshake",
                    id,
                    "pk",
                    pk_text(&h.ops_initiator),
                    f("ops_initiator (pk)"),
                ),
            ]
        })
        .collect();
    out.push((
        "tab-handshake.tex",
        tabular(
            "lrrrrl",
            &s(&[
                "profile",
                "stanzas",
                "RTT",
                "bytes",
                "CPU ms",
                "public-key ops (initiator)",
            ]),
            &rows,
        ),
    ));
    // Messages at 1 KiB.
    let rows: Vec<Vec<String>> = ids
        .iter()
        .filter_map(|id| {
            let m =
                i.r.messages
                    .iter()
                    .find(|m| m.protocol == *id && m.size == 1024)?;
            let f =
                i.r.floors
                    .iter()
                    .find(|f| f.protocol == *id && f.size == Some(1024));
            Some(vec![
                id.to_string(),
                reg(
                    "messages",
                    id,
                    "wire",
                    sig3(m.wire_bytes.median),
                    format!("results.json: messages[protocol={id},size=1024].wire_bytes.median"),
                ),
                reg(
                    "messages",
                    id,
                    "cpu",
                    sig3(m.total_cpu_us.median),
                    format!("results.json: messages[protocol={id},size=1024].total_cpu_us.median"),
                ),
                match f {
                    Some(f) => reg(
                        "messages",
                        id,
                        "ratio",
                        sig3(f.ratio.median),
                        format!("results.json: floors[protocol={id},size=1024].ratio.median"),
                    ),
                    None => "--".into(),
                },
            ])
        })
        .collect();
    out.push((
        "tab-messages.tex",
        tabular(
            "lrrr",
            &s(&["profile", "wire bytes", "CPU µs", "floor ratio"]),
            &rows,
        ),
    ));
    // Time to first protected message.
    let mut nets: Vec<String> = Vec::new();
    for l in &i.r.latency {
        if !nets.contains(&l.network) {
            nets.push(l.network.clone());
        }
    }
    let mut head = vec!["profile".to_string()];
    for net in &nets {
        let rtt =
            i.r.latency
                .iter()
                .find(|l| &l.network == net)
                .map(|l| l.rtt_ms)
                .unwrap_or(0.0);
        let t = reg(
            "ttfm",
            "rtt",
            net,
            sig3(rtt),
            format!("results.json: latency[network={net}].rtt_ms"),
        );
        head.push(format!("{net} ({t} ms)"));
    }
    let rows: Vec<Vec<String>> = ids
        .iter()
        .map(|id| {
            let mut r = vec![id.to_string()];
            for net in &nets {
                r.push(
                    i.r.latency
                        .iter()
                        .find(|l| l.protocol == *id && &l.network == net)
                        .map(|l| {
                            reg(
                                "ttfm",
                                id,
                                net,
                                sig3(l.ttfm_ms.median),
                                format!("results.json: latency[protocol={id},network={net}].ttfm_ms.median"),
                            )
                        })
                        .unwrap_or_else(|| "--".into()),
                );
            }
            r
        })
        .collect();
    out.push((
        "tab-ttfm.tex",
        tabular(&format!("l{}", "r".repeat(nets.len())), &head, &rows),
    ));
    // Scale.
    let rows: Vec<Vec<String>> = ids
        .iter()
        .filter_map(|id| {
            let s =
                i.r.scale
                    .iter()
                    .filter(|s| s.protocol == *id)
                    .max_by_key(|s| (s.pairs, s.run))?;
            let f = |c: &str| {
                format!(
                    "results.json: scale[protocol={id},pairs={},run={}].{c}",
                    s.pairs, s.run
                )
            };
            Some(vec![
                id.to_string(),
                reg("scale", id, "pairs", s.pairs.to_string(), f("pairs")),
                reg(
                    "scale",
                    id,
                    "mem",
                    sig3(s.heap_bytes_per_session),
                    f("heap_bytes_per_session"),
                ),
                reg(
                    "scale",
                    id,
                    "setup",
                    sig3(s.setup_seconds),
                    f("setup_seconds"),
                ),
                reg(
                    "scale",
                    id,
                    "cpu",
                    sig3(s.mix_cpu_us_per_message),
                    f("mix_cpu_us_per_message"),
                ),
            ])
        })
        .collect();
    out.push((
        "tab-scale.tex",
        tabular(
            "lrrrr",
            &s(&["profile", "pairs", "B/session", "setup s", "µs/message"]),
            &rows,
        ),
    ));
    // Server.
    let rows: Vec<Vec<String>> = ids
        .iter()
        .filter_map(|id| {
            let r = i
                .srv
                .profiles
                .iter()
                .find(|s| s.protocol == *id && s.mode == "tcp")?;
            let f = |c: &str| format!("server.json: profiles[protocol={id},mode=tcp].{c}");
            Some(vec![
                id.to_string(),
                reg(
                    "server",
                    id,
                    "hs",
                    sig3(r.handshake_ms.median),
                    f("handshake_ms.median"),
                ),
                reg(
                    "server",
                    id,
                    "ttfm",
                    sig3(r.ttfm_ms.median),
                    f("ttfm_ms.median"),
                ),
                reg("server", id, "stanzas", r.stanzas.to_string(), f("stanzas")),
                reg(
                    "server",
                    id,
                    "intact",
                    (r.delivered_exact + r.delivered_with_stamp).to_string(),
                    format!("server.json: profiles[protocol={id},mode=tcp].delivered_exact + profiles[protocol={id},mode=tcp].delivered_with_stamp"),
                ),
                reg("server", id, "altered", r.altered.to_string(), f("altered")),
                reg("server", id, "lost", r.lost.to_string(), f("lost")),
            ])
        })
        .collect();
    out.push((
        "tab-server.tex",
        tabular(
            "lrrrrrr",
            &s(&[
                "profile",
                "handshake ms",
                "first msg ms",
                "stanzas",
                "app. intact",
                "altered",
                "lost",
            ]),
            &rows,
        ),
    ));
    // Security matrix: rows x profiles.
    let mut head = vec!["property".to_string()];
    head.extend(ids.iter().map(|s| format!("{ROT}{s}")));
    let rows: Vec<Vec<String>> = i
        .sec
        .rows
        .iter()
        .map(|row| {
            let mut v = vec![row_key(&row.property, &row.variant)];
            for id in &ids {
                v.push(
                    i.sec
                        .cells
                        .iter()
                        .find(|c| {
                            c.protocol == *id
                                && c.property == row.property
                                && c.variant == row.variant
                        })
                        .map(|c| letter(c.outcome.name()))
                        .unwrap_or_else(|| "--".into()),
                );
            }
            v
        })
        .collect();
    out.push((
        "tab-security.tex",
        tabular(&format!("l{}", "c".repeat(ids.len())), &head, &rows),
    ));
    // Requirements matrix: requirements x profiles.
    let rows: Vec<Vec<String>> = i
        .req
        .requirements
        .iter()
        .map(|q| {
            let mut v = vec![q.name.clone()];
            for id in &ids {
                v.push(
                    i.req
                        .cell(id, &q.key)
                        .map(|c| letter(c.verdict.name()))
                        .unwrap_or_else(|| "--".into()),
                );
            }
            v
        })
        .collect();
    let mut head = vec!["requirement".to_string()];
    head.extend(ids.iter().map(|s| format!("{ROT}{s}")));
    out.push((
        "tab-requirements.tex",
        tabular(&format!("l{}", "c".repeat(ids.len())), &head, &rows),
    ));
    // Disagreements with the specs.
    let rows: Vec<Vec<String>> = i
        .sec
        .findings
        .iter()
        .filter(|f| f.against == "spec")
        .map(|f| {
            vec![
                f.protocol.clone(),
                row_key(&f.property, &f.variant),
                f.expected.clone(),
                f.measured.name().to_string(),
            ]
        })
        .collect();
    out.push((
        "tab-claims.tex",
        tabular(
            "llp{0.5\\linewidth}l",
            &s(&["profile", "row", "the spec says", "measured"]),
            &rows,
        ),
    ));
    // Every cell the SoK rates, beside the measurement; a disagreement is
    // marked (security.json's findings against the SoK).
    let mut rows = Vec::new();
    for (c, (_, sok)) in i.sec.cells.iter().zip(&i.sec.references) {
        let Some(sok) = sok else { continue };
        let disagrees = i.sec.findings.iter().any(|f| {
            f.against == "sok"
                && f.protocol == c.protocol
                && f.property == c.property
                && f.variant == c.variant
        });
        rows.push(vec![
            c.protocol.clone(),
            row_key(&c.property, &c.variant),
            format!("{}: {}", sok.column, sok.rating),
            format!(
                "{}{}",
                c.outcome.name(),
                if disagrees { " (disagrees)" } else { "" }
            ),
        ]);
    }
    out.push((
        "tab-sok.tex",
        tabular(
            "llp{0.4\\linewidth}l",
            &s(&["profile", "row", "SoK column: rating", "measured"]),
            &rows,
        ),
    ));
    out
}

/// Public-key operations as "2.00 modexp, 1.00 sign", or "none".
pub fn pk_text(o: &crate::cost::PkOps) -> String {
    let v: Vec<String> = o
        .items()
        .iter()
        .filter(|(_, x)| *x > 0.0)
        .map(|(name, x)| format!("{} {name}", sig3(*x)))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `numbers.tex`.
pub fn numbers_tex(n: &Numbers) -> String {
    let mut s = String::from(
        "% Generated by `e2elab paper` from results/: do not edit.\n\\providecommand{\\rot}[1]{\\rotatebox{90}{#1}}\n\\makeatletter\n\\newcommand{\\res}[1]{\\ifcsname e2elab@#1\\endcsname\\csname e2elab@#1\\endcsname\\else\\PackageError{e2elab}{unknown result #1}{}\\fi}\n",
    );
    for (k, v) in &n.0 {
        s.push_str(&format!(
            "\\expandafter\\def\\csname e2elab@{k}\\endcsname{{{}}}\n",
            tex(&v.text)
        ));
    }
    s.push_str("\\makeatother\n");
    s
}

/// Write everything into `out`; returns the files.
pub fn generate(results: &Path, out: &Path) -> crate::Result<Vec<PathBuf>> {
    let i = read(results)?;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out.display().to_string(), e))?;
    let mut n = numbers(&i);
    let tabs = tables(&i, &mut n);
    let mut files: Vec<(String, String)> = vec![("numbers.tex".into(), numbers_tex(&n))];
    for (f, t) in tabs {
        files.push((
            f.into(),
            format!("% Generated by `e2elab paper` from results/: do not edit.\n{t}"),
        ));
    }
    files.push((
        "provenance.json".into(),
        serde_json::to_string_pretty(&n.0).map_err(crate::Error::msg)? + "\n",
    ));
    let mut all = Vec::new();
    for (f, t) in &files {
        all.extend_from_slice(f.as_bytes());
        all.push(0);
        all.extend_from_slice(t.as_bytes());
        all.push(0);
    }
    let hash: String = openssl::sha::sha256(&all)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    files.push(("inputs.sha256".into(), format!("{hash}\n")));
    files.push((
        "hash.tex".into(),
        format!("\\newcommand{{\\genhash}}{{{hash}}}\n"),
    ));
    let mut written = Vec::new();
    for (f, t) in files {
        let p = out.join(f);
        std::fs::write(&p, t).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
        written.push(p);
    }
    Ok(written)
}
