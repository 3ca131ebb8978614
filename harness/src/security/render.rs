//! Renderings of a [`SecurityRun`], from its data alone (what
//! `security.json` holds): the Markdown the report embeds and
//! `e2elab security --format md` prints, and the plain-text table.

use super::{Outcome, SecurityRun};
use crate::doc::Block;

fn esc(s: &str) -> String {
    s.replace('\n', " ")
}

fn row_name(property: &str, variant: &str) -> String {
    if variant.is_empty() {
        property.to_string()
    } else {
        format!("{property} ({variant})")
    }
}

fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Holds => "holds",
        Outcome::Fails => "FAILS",
    }
}

/// The Markdown security section.
pub fn markdown(r: &SecurityRun) -> String {
    crate::doc::markdown(&blocks(r))
}

/// The security section as document blocks (the report embeds them).
pub fn blocks(r: &SecurityRun) -> Vec<Block> {
    let mut d = Vec::new();
    let real: Vec<_> = r.profiles.iter().filter(|p| !p.control).collect();
    let controls: Vec<_> = r.profiles.iter().filter(|p| p.control).collect();
    d.push(Block::H(2, "Security properties, measured".into()));
    let bad = r.control_failures();
    d.push(Block::P(format!(
        "Every cell is an executable attack on real sessions (`e2elab security`, seed {}, {} cells in {:.1} s). Each row was run, in the same invocation, on at least one known-bad control (a profile built to fail it): {} of {} control checks came out as designed{}. Every experiment first ran an honest baseline and would have been an error had the alarm it measures fired there; an experiment that could not run would have failed the run. Measured outcome first; for real profiles then the spec's claim and the SoK rating (Unger et al., IEEE S&P 2015; ● full, ◐ partial, ○ none), where they speak of that row.",
        r.seed,
        r.cells.len(),
        r.wall_seconds,
        r.controls.len() - bad.len(),
        r.controls.len(),
        if bad.is_empty() {
            String::new()
        } else {
            format!(
                " (**{} came out wrong: this run does not show what it claims**)",
                bad.len()
            )
        }
    )));
    // The matrix of real profiles.
    let mut head = vec!["property (variant)".to_string()];
    head.extend(real.iter().map(|p| p.id.clone()));
    let mut rows = Vec::new();
    for row in &r.rows {
        let mut v = vec![row_name(&row.property, &row.variant)];
        for p in &real {
            let i = r.cells.iter().position(|c| {
                c.protocol == p.id && c.property == row.property && c.variant == row.variant
            });
            v.push(match i {
                Some(i) => {
                    let c = &r.cells[i];
                    let (claim, sok) = &r.references[i];
                    let mut t = mark(c.outcome).to_string();
                    if let Some(k) = claim {
                        t.push_str(&format!(" / {}", k.level));
                    }
                    if let Some(k) = sok {
                        t.push_str(&format!(" / {}", k.rating));
                    }
                    t
                }
                None => "–".into(),
            });
        }
        rows.push(v);
    }
    d.push(Block::Table(head, rows));
    d.push(Block::P(
        "Each cell: measured [/ spec claim] [/ SoK].".into(),
    ));
    // Controls.
    d.extend(robustness(r));
    d.push(Block::H(3, "Known-bad controls".into()));
    let mut rows = Vec::new();
    for p in &controls {
        let checks: Vec<_> = r.controls.iter().filter(|c| c.protocol == p.id).collect();
        let names: Vec<String> = checks
            .iter()
            .map(|c| row_name(&c.property, &c.variant))
            .collect();
        let measured: Vec<String> = checks
            .iter()
            .map(|c| c.measured.name().to_string())
            .collect();
        let ok = checks.iter().all(|c| c.ok);
        rows.push(vec![
            p.id.clone(),
            esc(&p.summary),
            names.join(", "),
            measured.join(", "),
            if ok { "yes".into() } else { "**NO**".into() },
        ]);
    }
    d.push(Block::Table(
        [
            "control",
            "what it lacks",
            "rows it must fail",
            "measured there",
            "as designed",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
    ));
    d.push(Block::P("Every control on every row (a control fails what it was built to fail; its other cells are measured like any profile's):".into()));
    let mut head = vec!["property (variant)".to_string(), "known-bad for it".into()];
    head.extend(controls.iter().map(|p| p.id.clone()));
    let mut rows = Vec::new();
    for row in &r.rows {
        let mut v = vec![
            row_name(&row.property, &row.variant),
            row.known_bad.join(", "),
        ];
        for p in &controls {
            let c = r.cells.iter().find(|c| {
                c.protocol == p.id && c.property == row.property && c.variant == row.variant
            });
            let designed = row.known_bad.contains(&p.id);
            v.push(match c {
                Some(c) if designed => format!("**{}** ✗", mark(c.outcome)),
                Some(c) => mark(c.outcome).to_string(),
                None => "–".into(),
            });
        }
        rows.push(v);
    }
    d.push(Block::Table(head, rows));
    d.push(Block::P(
        "✗ = the control was built to fail this row.".into(),
    ));
    // Findings.
    d.push(Block::H(
        3,
        format!(
            "Findings ({} disagreements with a spec claim or a SoK rating)",
            r.findings.len()
        ),
    ));
    if r.findings.is_empty() {
        d.push(Block::P("None.".into()));
    } else {
        d.push(Block::Table(
            [
                "protocol",
                "property (variant)",
                "against",
                "expected",
                "measured",
                "evidence",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            r.findings
                .iter()
                .map(|f| {
                    vec![
                        f.protocol.clone(),
                        row_name(&f.property, &f.variant),
                        f.against.clone(),
                        esc(&f.expected),
                        f.measured.name().to_string(),
                        esc(&f.summary),
                    ]
                })
                .collect(),
        ));
    }
    // Options.
    d.push(Block::H(3, "Configuration of each profile".into()));
    d.push(Block::Table(
        vec!["profile".into(), "options".into(), "why".into()],
        r.profiles
            .iter()
            .map(|p| {
                let o: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                vec![
                    p.id.clone(),
                    if o.is_empty() {
                        "–".into()
                    } else {
                        o.join(", ")
                    },
                    esc(&p.options_reason),
                ]
            })
            .collect(),
    ));
    d.push(Block::H(3, "What each row asks".into()));
    d.push(Block::List(
        r.rows
            .iter()
            .map(|row| {
                format!(
                    "**{}**: {}",
                    row_name(&row.property, &row.variant),
                    row.question
                )
            })
            .collect(),
    ));
    d.push(Block::H(3, "Evidence".into()));
    d.push(Block::P("One line per cell; `security.json` holds the baseline and the attack of each as structured data.".into()));
    for p in &r.profiles {
        d.push(Block::H(4, p.id.clone()));
        d.push(Block::List(
            r.cells
                .iter()
                .filter(|c| c.protocol == p.id)
                .map(|c| {
                    format!(
                        "**{}**: {}. {}",
                        row_name(&c.property, &c.variant),
                        c.outcome.name(),
                        esc(&c.summary)
                    )
                })
                .collect(),
        ));
    }
    d
}

/// The plain-text table (`e2elab security`).
pub fn table(r: &SecurityRun) -> String {
    let mut t = crate::output::Table::new(&[
        "protocol", "property", "variant", "measured", "claim", "sok", "summary",
    ]);
    for (i, c) in r.cells.iter().enumerate() {
        let (claim, sok) = &r.references[i];
        let control = r.profiles.iter().any(|p| p.id == c.protocol && p.control);
        t.row(vec![
            c.protocol.clone(),
            c.property.clone(),
            c.variant.clone(),
            c.outcome.name().to_string(),
            if control {
                "(control)".into()
            } else {
                claim
                    .as_ref()
                    .map(|k| k.level.clone())
                    .unwrap_or_else(|| "-".into())
            },
            sok.as_ref().map(|k| k.rating.clone()).unwrap_or_default(),
            c.summary.chars().take(150).collect(),
        ]);
    }
    let mut s = t.render();
    let bad = r.control_failures();
    s.push_str(&format!(
        "\n{} cells; {} control checks ({} wrong); {} finding(s) against spec claims or SoK ratings; full evidence: --format json or md\n",
        r.cells.len(),
        r.controls.len(),
        bad.len(),
        r.findings.len()
    ));
    for f in &r.findings {
        s.push_str(&format!(
            "  {} {} {}: measured {}, {} says {}\n",
            f.protocol,
            f.property,
            f.variant,
            f.measured.name(),
            f.against,
            f.expected
        ));
    }
    s
}

/// XEP-0210's robustness requirement as figures, from the loss/reorder
/// cells' evidence (`attack.recovery`): messages lost to one dropped
/// stanza and the time to recover, per profile.
fn robustness(r: &SecurityRun) -> Vec<Block> {
    let mut rows = Vec::new();
    for p in &r.profiles {
        let Some(c) = r
            .cells
            .iter()
            .find(|c| c.protocol == p.id && c.property == "loss_reorder_tolerance")
        else {
            continue;
        };
        let rec = &c.attack["recovery"];
        if rec.is_null() {
            continue;
        }
        rows.push(vec![
            p.id.clone(),
            format!("{} of {}", rec["messages_lost"], rec["messages"]),
            match rec["recovery_ms"].as_u64() {
                Some(0) => "0 (nothing to recover)".to_string(),
                Some(ms) => format!("{ms} ms"),
                None => "never (in the window)".to_string(),
            },
            rec["lost"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        ]);
    }
    if rows.is_empty() {
        return Vec::new();
    }
    vec![
        Block::H(3, "Robustness (XEP-0210): one dropped stanza".into()),
        Block::P(format!(
            "Alice and Bob alternate {} messages a second apart (virtual clock, 100 ms one way); the attacker drops Alice's third (`r4`). Lost: messages never delivered, the dropped one included. Time to recover: from the first receive error the loss caused until both sides are established in a new session, or else until a later message of Alice's is delivered; 0 when no error followed the loss. Measured in this run; see the loss/reorder cells' evidence.",
            super::loss_reorder::RECOVERY_MESSAGES
        )),
        Block::Table(
            ["profile", "messages lost", "time to recover", "lost messages"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
        ),
    ]
}
