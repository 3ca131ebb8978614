//! Renderings of a [`SecurityRun`], from its data alone (what
//! `security.json` holds): the Markdown the report embeds and
//! `e2elab security --format md` prints, and the plain-text table.

use super::{Outcome, SecurityRun};

fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
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
    let mut s = String::new();
    let real: Vec<_> = r.profiles.iter().filter(|p| !p.control).collect();
    let controls: Vec<_> = r.profiles.iter().filter(|p| p.control).collect();
    s.push_str("## Security properties, measured\n\n");
    let bad = r.control_failures();
    s.push_str(&format!(
        "Every cell is an executable attack on real sessions (`e2elab security`, seed {}, {} cells in {:.1} s). Each row was run, in the same invocation, on at least one known-bad control (a profile built to fail it): {} of {} control checks came out as designed{}. Every experiment first ran an honest baseline and would have been an error had the alarm it measures fired there; an experiment that could not run would have failed the run. Measured outcome first; for real profiles then the spec's claim and the SoK rating (Unger et al., IEEE S&P 2015; ● full, ◐ partial, ○ none), where they speak of that row.\n\n",
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
    ));
    // The matrix of real profiles.
    s.push_str("| property (variant) |");
    for p in &real {
        s.push_str(&format!(" {} |", p.id));
    }
    s.push_str("\n|---|");
    for _ in &real {
        s.push_str("---|");
    }
    s.push('\n');
    for row in &r.rows {
        s.push_str(&format!("| {} |", row_name(&row.property, &row.variant)));
        for p in &real {
            let i = r.cells.iter().position(|c| {
                c.protocol == p.id && c.property == row.property && c.variant == row.variant
            });
            let txt = match i {
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
            };
            s.push_str(&format!(" {txt} |"));
        }
        s.push('\n');
    }
    s.push_str("\nEach cell: measured [/ spec claim] [/ SoK].\n\n");
    // Controls.
    s.push_str("### Known-bad controls\n\n");
    s.push_str("| control | what it lacks | rows it must fail | measured there | as designed |\n|---|---|---|---|---|\n");
    for p in &controls {
        let checks: Vec<_> = r.controls.iter().filter(|c| c.protocol == p.id).collect();
        let rows: Vec<String> = checks
            .iter()
            .map(|c| row_name(&c.property, &c.variant))
            .collect();
        let measured: Vec<String> = checks
            .iter()
            .map(|c| c.measured.name().to_string())
            .collect();
        let ok = checks.iter().all(|c| c.ok);
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            p.id,
            esc(&p.summary),
            rows.join(", "),
            measured.join(", "),
            if ok { "yes" } else { "**NO**" }
        ));
    }
    s.push_str("\nEvery control on every row (a control fails what it was built to fail; its other cells are measured like any profile's):\n\n| property (variant) | known-bad for it |");
    for p in &controls {
        s.push_str(&format!(" {} |", p.id));
    }
    s.push_str("\n|---|---|");
    for _ in &controls {
        s.push_str("---|");
    }
    s.push('\n');
    for row in &r.rows {
        s.push_str(&format!(
            "| {} | {} |",
            row_name(&row.property, &row.variant),
            row.known_bad.join(", ")
        ));
        for p in &controls {
            let c = r.cells.iter().find(|c| {
                c.protocol == p.id && c.property == row.property && c.variant == row.variant
            });
            let designed = row.known_bad.contains(&p.id);
            s.push_str(&match c {
                Some(c) if designed => format!(" **{}** ✗ |", mark(c.outcome)),
                Some(c) => format!(" {} |", mark(c.outcome)),
                None => " – |".into(),
            });
        }
        s.push('\n');
    }
    s.push_str("\n✗ = the control was built to fail this row.\n\n");
    // Findings.
    s.push_str(&format!(
        "### Findings ({} disagreements with a spec claim or a SoK rating)\n\n",
        r.findings.len()
    ));
    if r.findings.is_empty() {
        s.push_str("None.\n\n");
    } else {
        s.push_str("| protocol | property (variant) | against | expected | measured | evidence |\n|---|---|---|---|---|---|\n");
        for f in &r.findings {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.protocol,
                row_name(&f.property, &f.variant),
                f.against,
                esc(&f.expected),
                f.measured.name(),
                esc(&f.summary)
            ));
        }
        s.push('\n');
    }
    // Options.
    s.push_str("### Configuration of each profile\n\n| profile | options | why |\n|---|---|---|\n");
    for p in &r.profiles {
        let o: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            p.id,
            if o.is_empty() {
                "–".into()
            } else {
                o.join(", ")
            },
            esc(&p.options_reason)
        ));
    }
    s.push_str("\n### What each row asks\n\n");
    for row in &r.rows {
        s.push_str(&format!(
            "- **{}**: {}\n",
            row_name(&row.property, &row.variant),
            row.question
        ));
    }
    s.push_str("\n### Evidence\n\nOne line per cell; `security.json` holds the baseline and the attack of each as structured data.\n\n");
    for p in &r.profiles {
        s.push_str(&format!("#### {}\n\n", p.id));
        for c in r.cells.iter().filter(|c| c.protocol == p.id) {
            s.push_str(&format!(
                "- **{}**: {}. {}\n",
                row_name(&c.property, &c.variant),
                c.outcome.name(),
                esc(&c.summary)
            ));
        }
        s.push('\n');
    }
    s
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
