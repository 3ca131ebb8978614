//! `e2elab report`: DIR/report.md, DIR/report.html and charts (SVG and PNG)
//! generated from DIR/results.json only: every figure is read from the
//! measured run, none is typed here.

use crate::compare::{self, Results, Stat};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The font all charts use, read at run time.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|e| {
            format!("{FONT_PATH}: {e} (install fonts-dejavu-core: scripts/setup.sh)")
        })?;
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
            .map_err(|_| format!("{FONT_PATH}: not a usable font"))
    })
    .clone()
}

// ---------------------------------------------------------------------------
// Document model, rendered to Markdown and HTML.

enum Block {
    H(u8, String),
    P(String),
    Table(Vec<String>, Vec<Vec<String>>),
    Img(String, String),
    /// Markdown generated elsewhere from this run's files (the security section).
    Raw(String),
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn markdown(doc: &[Block]) -> String {
    let mut s = String::new();
    for b in doc {
        match b {
            Block::H(l, t) => s.push_str(&format!("{} {t}\n\n", "#".repeat(*l as usize))),
            Block::P(t) => s.push_str(&format!("{t}\n\n")),
            Block::Table(h, rows) => {
                s.push_str(&format!("| {} |\n", h.join(" | ")));
                s.push_str(&format!("|{}\n", "---|".repeat(h.len())));
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
                    s.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                s.push('\n');
            }
            Block::Img(file, alt) => s.push_str(&format!(
                "![{alt}]({file}.svg)\n\n([PNG]({file}.png), [SVG]({file}.svg))\n\n"
            )),
            Block::Raw(md) => {
                s.push_str(md);
                s.push('\n');
            }
        }
    }
    s
}

fn html(doc: &[Block], title: &str) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
table{{border-collapse:collapse;margin:1em 0;font-size:90%}}td,th{{border:1px solid #bbb;padding:2px 6px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}code{{background:#f3f3f3}}\
</style></head><body>\n",
        esc(title)
    );
    for b in doc {
        match b {
            Block::H(l, t) => s.push_str(&format!("<h{l}>{}</h{l}>\n", esc(t))),
            Block::P(t) => s.push_str(&format!("<p>{}</p>\n", esc(t))),
            Block::Table(h, rows) => {
                s.push_str("<table><thead><tr>");
                for c in h {
                    s.push_str(&format!("<th>{}</th>", esc(c)));
                }
                s.push_str("</tr></thead><tbody>\n");
                for r in rows {
                    s.push_str("<tr>");
                    for c in r {
                        s.push_str(&format!("<td>{}</td>", esc(c)));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody></table>\n");
            }
            Block::Img(file, alt) => s.push_str(&format!(
                "<figure><img src=\"{file}.svg\" alt=\"{a}\"><figcaption>{a} (<a href=\"{file}.png\">PNG</a>)</figcaption></figure>\n",
                a = esc(alt)
            )),
            Block::Raw(md) => s.push_str(&format!(
                "<p>Security section (Markdown, also in <a href=\"security.md\">security.md</a>):</p><pre>{}</pre>\n",
                esc(md)
            )),
        }
    }
    s.push_str("</body></html>\n");
    s
}

// ---------------------------------------------------------------------------
// Number formatting

fn n(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn stat(s: &Stat) -> String {
    format!("{} [{}–{}]", n(s.median), n(s.q1), n(s.q3))
}

fn ops(o: &compare::Ops5) -> String {
    let mut v = Vec::new();
    for (k, x) in [
        ("modexp", o.modexp),
        ("sign", o.sign),
        ("verify", o.verify),
        ("enc", o.pk_encrypt),
        ("dec", o.pk_decrypt),
    ] {
        if x > 0.0 {
            v.push(format!("{} {k}", n(x)));
        }
    }
    if v.is_empty() {
        "0".into()
    } else {
        v.join(", ")
    }
}

fn size_label(s: usize) -> String {
    if s >= 1024 {
        format!("{} KiB", s / 1024)
    } else {
        format!("{s} B")
    }
}

// ---------------------------------------------------------------------------
// Charts

type Series = (String, Vec<(f64, f64)>);

fn perr<E: std::fmt::Debug>(e: E) -> String {
    format!("chart: {e:?}")
}

/// Horizontal bars, stacked: `stacks` = (legend, value per label).
fn hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xdesc: &str,
    labels: &[String],
    stacks: &[(String, Vec<f64>)],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr)?;
    let nl = labels.len().max(1);
    let max = (0..labels.len())
        .map(|i| {
            stacks
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        // A segmented 0..k has k + 1 segments: one per label.
        .build_cartesian_2d(0f64..max, (0..nl.max(2) - 1).into_segmented())
        .map_err(perr)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(xdesc)
        .y_labels(nl)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    let mut base = vec![0.0; labels.len()];
    for (k, (legend, vals)) in stacks.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let rects: Vec<_> = vals
            .iter()
            .enumerate()
            .take(labels.len())
            .map(|(i, v)| {
                let mut r = Rectangle::new(
                    [
                        (base[i], SegmentValue::Exact(i)),
                        (base[i] + v, SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                );
                r.set_margin(4, 4, 0, 0);
                base[i] += v;
                r
            })
            .collect();
        if stacks.len() > 1 {
            chart
                .draw_series(rects)
                .map_err(perr)?
                .label(legend.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        } else {
            chart.draw_series(rects).map_err(perr)?;
        }
    }
    if stacks.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(perr)?;
    }
    root.present().map_err(perr)?;
    Ok(())
}

/// Log-log lines with points, one series per protocol.
fn loglog<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &[Series],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr)?;
    let pts = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (1.0, 10.0, 1.0, 10.0);
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc(ydesc)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    for (k, (name, v)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let v: Vec<(f64, f64)> = v
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(v.clone(), color.stroke_width(2)))
            .map_err(perr)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(v.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(perr)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(perr)?;
    root.present().map_err(perr)?;
    Ok(())
}

enum Chart<'a> {
    Bars(&'a str, &'a str, Vec<String>, Vec<(String, Vec<f64>)>),
    Lines(&'a str, &'a str, &'a str, Vec<Series>),
}

fn draw_on<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    match c {
        Chart::Bars(t, x, l, s) => hbars(&root, t, x, l, s),
        Chart::Lines(t, x, y, s) => loglog(&root, t, x, y, s),
    }
}

/// Write `name.svg` and `name.png`.
fn render(dir: &Path, name: &str, c: &Chart, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let rows = match c {
        Chart::Bars(_, _, l, _) => l.len(),
        _ => 12,
    };
    let size = (1000u32, (140 + 34 * rows as u32).max(420));
    let svg = dir.join(format!("{name}.svg"));
    draw_on(SVGBackend::new(&svg, size).into_drawing_area(), c)?;
    let png = dir.join(format!("{name}.png"));
    draw_on(BitMapBackend::new(&png, size).into_drawing_area(), c)?;
    files.push(svg);
    files.push(png);
    Ok(())
}

// ---------------------------------------------------------------------------
// The report

/// Generate the report from `dir/results.json`; returns the files written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let r = compare::read(dir)?;
    register_font()?;
    let mut files = Vec::new();
    let doc = build(&r, dir, &mut files)?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(&doc)).map_err(|e| format!("{}: {e}", md.display()))?;
    let h = dir.join("report.html");
    std::fs::write(&h, html(&doc, "xmpp-e2e-lab: comparison report"))
        .map_err(|e| format!("{}: {e}", h.display()))?;
    files.push(md);
    files.push(h);
    Ok(files)
}

fn hs_ms<'a>(r: &'a Results, id: &str) -> Option<&'a compare::HandshakeRow> {
    r.handshake.iter().find(|h| h.protocol == id)
}

fn build(r: &Results, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Vec<Block>, String> {
    let p = &r.provenance;
    let mut d = vec![
        Block::H(1, "xmpp-e2e-lab: comparison report".into()),
        Block::P(format!(
            "Generated by `e2elab report` from results.json of one `e2elab compare` run ({} mode): every figure below was \
             measured in that run. Timed figures are medians over {} measured repetitions (after {} warm-up repetition(s), \
             discarded), protocols interleaved within each repetition; spreads are given as [first quartile–third quartile], \
             min/max are in the CSV files. CPU is the thread CPU time inside the session calls (both parties run on one thread).",
            r.plan.mode, r.plan.reps, r.plan.warmup
        )),
        Block::H(2, "Provenance".into()),
        Block::Table(
            vec!["item".into(), "value".into()],
            vec![
                vec!["git revision".into(), p.git_revision.clone()],
                vec!["date (UTC)".into(), p.date.clone()],
                vec!["seed".into(), p.seed.to_string()],
                vec!["CPU".into(), format!("{} ({} logical)", p.cpu_model, p.cpus)],
                vec!["rustc".into(), p.rustc.clone()],
                vec!["OpenSSL".into(), p.openssl.clone()],
                vec!["libgcrypt".into(), p.libgcrypt.clone()],
                vec!["libotr".into(), p.libotr.clone()],
                vec!["sequoia-openpgp".into(), p.sequoia_openpgp.clone()],
                vec!["e2elab".into(), p.e2elab.clone()],
                vec![
                    "plan".into(),
                    format!(
                        "{} reps + {} warm-up; {} message(s) each way per size; {} keygen(s) per profile; {} calls per primitive per rep",
                        r.plan.reps, r.plan.warmup, r.plan.messages_per_size, r.plan.keygen_reps, r.plan.primitive_calls
                    ),
                ],
                vec!["compare wall time".into(), format!("{:.1} s", p.wall_seconds)],
                vec![
                    "load average (1/5/15 min) at start, end".into(),
                    format!("{}; {}", p.load_average_start, p.load_average_end),
                ],
                vec!["command".into(), p.command.clone()],
            ],
        ),
    ];
    let ids: Vec<String> = r.profiles.iter().map(|x| x.id.clone()).collect();

    // Handshake
    d.push(Block::H(2, "Handshake".into()));
    d.push(Block::P("Stanzas until both sessions are established; flights are maximal runs of stanzas in one direction (round trips = flights / 2); bytes are serialized stanzas; public-key operations per side are counted at the backend call, or derived from the spec where the backend (libotr) cannot be instrumented. Protocols without a handshake (S/MIME, OpenPGP, plaintext) show only the cost of `start`.".into()));
    d.push(Block::Table(
        [
            "protocol",
            "stanzas",
            "flights",
            "round trips",
            "bytes I→R",
            "bytes R→I",
            "CPU initiator µs",
            "CPU responder µs",
            "CPU total µs",
            "pk ops initiator",
            "pk ops responder",
            "ops",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        r.handshake
            .iter()
            .map(|h| {
                vec![
                    h.protocol.clone(),
                    h.messages.to_string(),
                    h.flights.to_string(),
                    n(h.round_trips),
                    n(h.bytes_initiator.median),
                    n(h.bytes_responder.median),
                    stat(&h.cpu_us_initiator),
                    stat(&h.cpu_us_responder),
                    stat(&h.cpu_us_total),
                    ops(&h.ops_initiator),
                    ops(&h.ops_responder),
                    h.ops_source.clone(),
                ]
            })
            .collect(),
    ));
    let hs_ids: Vec<String> = ids
        .iter()
        .filter(|i| hs_ms(r, i).is_some_and(|h| h.messages > 0))
        .cloned()
        .collect();
    let mut cpu_i = Vec::new();
    let mut cpu_r = Vec::new();
    let mut b_i = Vec::new();
    let mut b_r = Vec::new();
    let mut labels_rt = Vec::new();
    for id in &hs_ids {
        if let Some(h) = hs_ms(r, id) {
            cpu_i.push(h.cpu_us_initiator.median / 1000.0);
            cpu_r.push(h.cpu_us_responder.median / 1000.0);
            b_i.push(h.bytes_initiator.median);
            b_r.push(h.bytes_responder.median);
            labels_rt.push(format!("{id} ({} RT)", n(h.round_trips)));
        }
    }
    render(
        dir,
        "handshake_cpu",
        &Chart::Bars(
            "Handshake CPU per protocol, stacked by side (median)",
            "CPU time, ms",
            hs_ids.clone(),
            vec![("initiator".into(), cpu_i), ("responder".into(), cpu_r)],
        ),
        files,
    )?;
    d.push(Block::Img(
        "handshake_cpu".into(),
        "Handshake CPU per protocol, stacked by side".into(),
    ));
    render(
        dir,
        "handshake_bytes",
        &Chart::Bars(
            "Handshake bytes each way and round trips (RT)",
            "serialized stanza bytes",
            labels_rt,
            vec![
                ("initiator → responder".into(), b_i),
                ("responder → initiator".into(), b_r),
            ],
        ),
        files,
    )?;
    d.push(Block::Img(
        "handshake_bytes".into(),
        "Handshake bytes each way, with round trips".into(),
    ));

    // Keygen
    d.push(Block::H(
        2,
        "One-time cost: long-term key generation".into(),
    ));
    d.push(Block::P("CPU to generate one long-term identity (reported apart from the handshake; plaintext has none to speak of). Backends that cannot take our RNG (OpenSSL RSA, Sequoia, libotr DSA) generate with their own.".into()));
    d.push(Block::Table(
        vec!["protocol".into(), "keygen CPU ms".into(), "n".into()],
        r.keygen
            .iter()
            .map(|k| {
                vec![
                    k.protocol.clone(),
                    format!(
                        "{} [{}–{}]",
                        n(k.cpu_us.median / 1000.0),
                        n(k.cpu_us.q1 / 1000.0),
                        n(k.cpu_us.q3 / 1000.0)
                    ),
                    k.cpu_us.n.to_string(),
                ]
            })
            .collect(),
    ));

    // Messages
    d.push(Block::H(2, "Per-message overhead".into()));
    d.push(Block::P(format!(
        "A `<message/>` with a `<body/>` of each size, {} each way per size and repetition. Wire bytes per message (median) and expansion = wire bytes / the serialized application stanza (exactly what the `plaintext` control row puts on the wire, so its expansion is 1). Messages alternate direction (a conversation), so a protocol that ratchets on each change of speaker (OTR's DH key rotation) pays public-key operations on nearly every message; a one-way burst does not (see the criterion benches in harness/benches).",
        r.plan.messages_per_size
    )));
    let sizes = &r.plan.sizes;
    let mut head = vec!["protocol".to_string()];
    head.extend(sizes.iter().map(|s| size_label(*s)));
    let row_for = |id: &str, f: &dyn Fn(&compare::MessageRow) -> String| -> Vec<String> {
        let mut v = vec![id.to_string()];
        for s in sizes {
            v.push(
                r.messages
                    .iter()
                    .find(|m| m.protocol == id && m.size == *s)
                    .map(f)
                    .unwrap_or_default(),
            );
        }
        v
    };
    d.push(Block::P("Wire bytes per message (expansion):".into()));
    d.push(Block::Table(
        head.clone(),
        ids.iter()
            .map(|id| {
                row_for(id, &|m| {
                    format!("{} (×{:.2})", n(m.wire_bytes.median), m.expansion.median)
                })
            })
            .collect(),
    ));
    d.push(Block::P(
        "Send CPU / receive CPU per message, µs (medians):".into(),
    ));
    d.push(Block::Table(
        head.clone(),
        ids.iter()
            .map(|id| {
                row_for(id, &|m| {
                    format!("{} / {}", n(m.send_cpu_us.median), n(m.recv_cpu_us.median))
                })
            })
            .collect(),
    ));
    d.push(Block::P(
        "Public-key operations per message (both sides, mean):".into(),
    ));
    d.push(Block::Table(
        head,
        ids.iter().map(|id| row_for(id, &|m| ops(&m.ops))).collect(),
    ));
    let series = |f: &dyn Fn(&compare::MessageRow) -> (f64, f64)| -> Vec<Series> {
        ids.iter()
            .map(|id| {
                (
                    id.clone(),
                    r.messages
                        .iter()
                        .filter(|m| &m.protocol == id)
                        .map(f)
                        .collect(),
                )
            })
            .collect()
    };
    render(
        dir,
        "overhead_vs_size",
        &Chart::Lines(
            "Wire bytes vs plaintext stanza bytes per message (log-log)",
            "plaintext stanza bytes (body 0 B .. 64 KiB)",
            "wire bytes",
            series(&|m| (m.plaintext_bytes.median, m.wire_bytes.median)),
        ),
        files,
    )?;
    d.push(Block::Img(
        "overhead_vs_size".into(),
        "Overhead vs size, log-log".into(),
    ));
    render(
        dir,
        "message_cpu_vs_size",
        &Chart::Lines(
            "Send + receive CPU per message vs plaintext stanza bytes (log-log)",
            "plaintext stanza bytes",
            "CPU µs (send + receive)",
            series(&|m| {
                (
                    m.plaintext_bytes.median,
                    m.send_cpu_us.median + m.recv_cpu_us.median,
                )
            }),
        ),
        files,
    )?;
    d.push(Block::Img(
        "message_cpu_vs_size".into(),
        "Per-message CPU vs size, log-log".into(),
    ));

    // Presence
    d.push(Block::H(2, "Directed presence".into()));
    d.push(Block::P("One directed presence (show, status, priority) each way per repetition, for the profiles that protect presence (the others leave it to the server in the clear, or only sign it, and are not listed).".into()));
    d.push(Block::Table(
        [
            "protocol",
            "plaintext bytes",
            "wire bytes",
            "expansion",
            "send CPU µs",
            "receive CPU µs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        r.presence
            .iter()
            .map(|x| {
                vec![
                    x.protocol.clone(),
                    n(x.plaintext_bytes.median),
                    n(x.wire_bytes.median),
                    format!("{:.2}", x.expansion.median),
                    stat(&x.send_cpu_us),
                    stat(&x.recv_cpu_us),
                ]
            })
            .collect(),
    ));

    // Latency
    d.push(Block::H(2, "Time to first protected message".into()));
    d.push(Block::P(format!(
        "{} The CPU terms are this run's medians per repetition.",
        r.ttfm_formula
    )));
    let nets: Vec<(String, f64)> = {
        let mut v: Vec<(String, f64)> = Vec::new();
        for l in &r.latency {
            if !v.iter().any(|(n, _)| n == &l.network) {
                v.push((l.network.clone(), l.rtt_ms));
            }
        }
        v
    };
    let mut head = vec![
        "protocol".to_string(),
        "legs".into(),
        "CPU on path ms".into(),
    ];
    head.extend(
        nets.iter()
            .map(|(nm, rtt)| format!("{nm} ({} ms RTT)", n(*rtt))),
    );
    d.push(Block::Table(
        head,
        ids.iter()
            .map(|id| {
                let rows: Vec<&compare::LatencyRow> =
                    r.latency.iter().filter(|l| &l.protocol == id).collect();
                let mut v = vec![
                    id.clone(),
                    rows.first().map(|l| l.legs.to_string()).unwrap_or_default(),
                    rows.first().map(|l| stat(&l.cpu_ms)).unwrap_or_default(),
                ];
                for (nm, _) in &nets {
                    v.push(
                        rows.iter()
                            .find(|l| &l.network == nm)
                            .map(|l| format!("{} ms", n(l.ttfm_ms.median)))
                            .unwrap_or_default(),
                    );
                }
                v
            })
            .collect(),
    ));
    render(
        dir,
        "ttfm_vs_rtt",
        &Chart::Lines(
            "Time to first protected message vs round-trip time (log-log)",
            "RTT ms (LAN, broadband, mobile, satellite)",
            "time to first protected message, ms",
            ids.iter()
                .map(|id| {
                    (
                        id.clone(),
                        r.latency
                            .iter()
                            .filter(|l| &l.protocol == id)
                            .map(|l| (l.rtt_ms, l.ttfm_ms.median))
                            .collect(),
                    )
                })
                .collect(),
        ),
        files,
    )?;
    d.push(Block::Img(
        "ttfm_vs_rtt".into(),
        "Time to first message vs RTT".into(),
    ));

    // Primitives and floors
    d.push(Block::H(
        2,
        "Primitive floors (measured in this run)".into(),
    ));
    d.push(Block::Table(
        vec![
            "primitive".into(),
            "library".into(),
            "CPU µs per call".into(),
            "min–max".into(),
            "n".into(),
        ],
        r.primitives
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    x.library.clone(),
                    stat(&x.cpu_us),
                    format!("{}–{}", n(x.cpu_us.min), n(x.cpu_us.max)),
                    x.cpu_us.n.to_string(),
                ]
            })
            .collect(),
    ));
    d.push(Block::H(2, "Cost over primitive floor".into()));
    d.push(Block::P(r.floor_formula.clone()));
    d.push(Block::Table(
        [
            "protocol",
            "phase",
            "pk ops (both sides)",
            "ops",
            "charged at",
            "floor µs",
            "measured µs",
            "ratio",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        r.floors
            .iter()
            .map(|x| {
                vec![
                    x.protocol.clone(),
                    x.phase.clone(),
                    ops(&x.ops),
                    x.ops_source.clone(),
                    x.primitives
                        .iter()
                        .map(|(k, p)| format!("{k}: {p}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                    n(x.floor_us),
                    n(x.measured_us),
                    format!("{:.2}", x.ratio),
                ]
            })
            .collect(),
    ));
    let fl: Vec<&compare::FloorRow> = r.floors.iter().collect();
    render(
        dir,
        "floor_ratios",
        &Chart::Bars(
            "Measured cost / primitive floor (1 = nothing but the public-key operations)",
            "ratio",
            fl.iter()
                .map(|x| format!("{} ({})", x.protocol, x.phase))
                .collect(),
            vec![("ratio".into(), fl.iter().map(|x| x.ratio).collect())],
        ),
        files,
    )?;
    d.push(Block::Img(
        "floor_ratios".into(),
        "Cost / floor ratios".into(),
    ));

    // Scale
    d.push(Block::H(2, "Scale: many established sessions".into()));
    if r.scale.is_empty() {
        d.push(Block::P("Not measured in this run.".into()));
    } else {
        d.push(Block::P(format!(
            "{} established session pairs held in memory at once per profile (one measurement, not repeated). Memory is the growth of the malloc heap in use (glibc mallinfo2: Rust, OpenSSL, libotr and libgcrypt outside its secure pool all allocate there) per session (one side), after all handshakes. Then 4 messages per pair round-robin over all pairs (14 in 20 bodies of 64 B, 5 in 20 of 1 KiB, 1 in 20 of 16 KiB; directions alternating by round), each serialized, parsed and delivered, on one thread.",
            r.scale.first().map(|x| x.pairs).unwrap_or(0)
        )));
        d.push(Block::Table(
            [
                "protocol",
                "pairs",
                "heap per session",
                "set-up s",
                "mix messages",
                "mix msgs/s",
                "CPU µs/msg",
                "mix wire / body bytes",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            r.scale
                .iter()
                .map(|x| {
                    vec![
                        x.protocol.clone(),
                        x.pairs.to_string(),
                        format!("{:.1} KiB", x.heap_bytes_per_session / 1024.0),
                        format!("{:.2}", x.setup_seconds),
                        x.mix_messages.to_string(),
                        n(x.mix_messages_per_second),
                        n(x.mix_cpu_us_per_message),
                        format!(
                            "{:.2}",
                            x.mix_wire_bytes as f64 / x.mix_body_bytes.max(1) as f64
                        ),
                    ]
                })
                .collect(),
        ));
        render(
            dir,
            "scale_memory",
            &Chart::Bars(
                "Heap per established session (one side), KiB",
                "KiB",
                r.scale.iter().map(|x| x.protocol.clone()).collect(),
                vec![(
                    "KiB".into(),
                    r.scale
                        .iter()
                        .map(|x| (x.heap_bytes_per_session / 1024.0).max(0.0))
                        .collect(),
                )],
            ),
            files,
        )?;
        d.push(Block::Img(
            "scale_memory".into(),
            "Memory per established session".into(),
        ));
    }

    // Through a real server, when this run measured one.
    if let Some(sv) = crate::xmpp::read(dir)? {
        d.extend(server_section(r, &sv, &ids, dir, files)?);
    }

    // Security, rendered from the same run's security.json (written by `compare`).
    let sec = crate::security::SecurityRun::read(&dir.join("security.json"))?;
    d.push(Block::Raw(crate::security::render::markdown(&sec)));

    // Closing note
    d.push(Block::H(2, "Closing note".into()));
    let mut lines = Vec::new();
    for id in &ids {
        let hs = r
            .floors
            .iter()
            .find(|f| &f.protocol == id && f.phase == "handshake");
        let msg = r
            .floors
            .iter()
            .find(|f| &f.protocol == id && f.phase == "message");
        let s = match (hs, msg) {
            (Some(h), Some(m)) => format!(
                "{id}: handshake cost / primitive floor = {:.2} ({} µs over {} µs); per 1 KiB message {:.2}.",
                h.ratio, n(h.measured_us), n(h.floor_us), m.ratio
            ),
            (Some(h), None) => format!(
                "{id}: handshake cost / primitive floor = {:.2} ({} µs over {} µs).",
                h.ratio, n(h.measured_us), n(h.floor_us)
            ),
            (None, Some(m)) => format!(
                "{id}: no public-key operation in the handshake (no handshake); per 1 KiB message cost / floor = {:.2} ({} µs over {} µs).",
                m.ratio, n(m.measured_us), n(m.floor_us)
            ),
            (None, None) => format!("{id}: no public-key operations, no floor."),
        };
        lines.push(s);
    }
    for l in lines {
        d.push(Block::P(l));
    }
    let wall = match p.reproduce_wall_seconds {
        Some(w) => format!(
            "`e2elab reproduce` took {w:.1} s of wall time (compare {:.1} s, then the report).",
            p.wall_seconds
        ),
        None => format!(
            "The `e2elab compare` run took {:.1} s of wall time.",
            p.wall_seconds
        ),
    };
    d.push(Block::P(wall));
    Ok(d)
}

/// The "Through a real XMPP server" section, from DIR/server.json of the same run.
fn server_section(
    r: &Results,
    sv: &crate::xmpp::ServerResults,
    ids: &[String],
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Block>, String> {
    let mut d = vec![Block::H(2, "Through a real XMPP server".into())];
    let limit = sv
        .stanza_limit
        .map(|l| format!("`c2s_stanza_size_limit` set explicitly to {l} bytes"))
        .unwrap_or_else(|| "stanza size limit unknown (external server)".into());
    d.push(Block::P(format!(
        "Measured in the same run by `e2elab compare --transport xmpp`: {}; {limit}; transport modes: {}. Per profile and mode \
         {} handshakes after {} warm-up, then {} message(s) each way per body size, then every stanza of the conformance suite \
         each way; {:.1} s of wall time. The sessions are the very same sans-IO sessions as in memory; each side has its own \
         client connection (tokio-xmpp's XML stream, SASL SCRAM-SHA-256, a bound resource, raw stanzas: tokio-xmpp's typed \
         client would reorder a message's children before the server sees them), both in this process, the server on the other \
         core. Prosody runs with Nagle's algorithm off (`network_settings = {{ nagle = false }}`): with its default, every \
         stanza larger than one TCP segment waited for the peer's 40 ms delayed ACK on loopback, which would swamp the \
         protocol differences. Times are wall-clock: *handshake* from `start` until both sides are established, *first \
         message* from `start` until the first 64-byte application stanza is delivered, *latency* from the `send` call until \
         the receiving session delivers the stanza (both sides' CPU plus two loopback hops through the server). Bytes per message: *serialized* is the in-memory measure \
         of the same stanzas (each with its own `xmlns`; it exceeds the in-memory column by the server accounts' longer \
         JIDs and resources, which every stanza carries); *socket* is what crossed the senders' TCP sockets (below TLS), \
         i.e. what the server read off the wire; *Prosody-counted* is what Prosody itself counted reading from the senders, \
         in its `bytes/in` filter (XML inside TLS), reported by the test server's module mod_e2elab_bytes because \
         Prosody 0.12 has no byte counters of its own.",
        sv.server,
        sv.modes.join(", "),
        sv.plan.reps,
        sv.plan.warmup,
        sv.plan.messages_per_size,
        sv.wall_seconds
    )));
    let row = |id: &str, mode: &str| {
        sv.profiles
            .iter()
            .find(|p| p.protocol == id && p.mode == mode)
    };
    let modes = sv.modes.clone();
    let mut head = vec![
        "protocol".to_string(),
        "stanzas".into(),
        "in memory: first message at LAN (model) ms".into(),
    ];
    for m in &modes {
        head.push(format!("{m}: login ms"));
        head.push(format!("{m}: handshake ms"));
        head.push(format!("{m}: first message ms"));
    }
    head.push("transit per stanza µs (tcp)".into());
    let mut rows = Vec::new();
    for id in ids {
        if !sv.profiles.iter().any(|p| &p.protocol == id) {
            continue;
        }
        let mut v = vec![
            id.clone(),
            row(id, "tcp")
                .map(|p| p.handshake_stanzas.to_string())
                .unwrap_or_default(),
            r.latency
                .iter()
                .find(|l| &l.protocol == id && l.network == "LAN")
                .map(|l| n(l.ttfm_ms.median))
                .unwrap_or_default(),
        ];
        for m in &modes {
            match row(id, m) {
                Some(p) if p.ttfm_ms.n > 0 => {
                    v.push(n(p.login_ms.median));
                    v.push(stat(&p.handshake_ms));
                    v.push(stat(&p.ttfm_ms));
                }
                Some(p) => {
                    v.push(n(p.login_ms.median));
                    v.push("failed".into());
                    v.push(p.error.clone().unwrap_or_default());
                }
                None => v.extend(["".to_string(), "".into(), "".into()]),
            }
        }
        v.push(
            row(id, "tcp")
                .map(|p| stat(&p.transit_us))
                .unwrap_or_default(),
        );
        rows.push(v);
    }
    d.push(Block::H(3, "Handshake and first protected message".into()));
    d.push(Block::Table(head, rows));

    // Per message
    d.push(Block::H(3, "Per message through the server".into()));
    let mut head = vec![
        "protocol".to_string(),
        "body".into(),
        "in memory: wire B".into(),
        "serialized B".into(),
    ];
    for m in &modes {
        head.push(format!("{m}: socket B"));
        head.push(format!("{m}: Prosody-counted B"));
        head.push(format!("{m}: latency ms"));
    }
    head.push("stanzas".into());
    let mut rows = Vec::new();
    for id in ids {
        for &size in &sv.plan.sizes {
            let ms: Vec<Option<&crate::xmpp::ServerMessageRow>> = modes
                .iter()
                .map(|m| {
                    sv.messages
                        .iter()
                        .find(|x| &x.protocol == id && &x.mode == m && x.size == size)
                })
                .collect();
            let Some(first) = ms.iter().flatten().next() else {
                continue;
            };
            let mut v = vec![
                id.clone(),
                size_label(size),
                r.messages
                    .iter()
                    .find(|x| &x.protocol == id && x.size == size)
                    .map(|x| n(x.wire_bytes.median))
                    .unwrap_or_else(|| "–".into()),
                n(first.serialized_bytes),
            ];
            for m in &ms {
                match m {
                    Some(x) => {
                        v.push(n(x.socket_bytes_sent));
                        v.push(x.server_bytes_in.map(n).unwrap_or_else(|| "–".into()));
                        v.push(stat(&x.latency_ms));
                    }
                    None => v.extend(["".to_string(), "".into(), "".into()]),
                }
            }
            v.push(n(first.stanzas));
            rows.push(v);
        }
    }
    d.push(Block::Table(head, rows));
    render(
        dir,
        "server_latency_vs_size",
        &Chart::Lines(
            "Send-to-delivery latency through Prosody (tcp) vs body size (log-log)",
            "body bytes",
            "latency ms (median)",
            ids.iter()
                .map(|id| {
                    (
                        id.clone(),
                        sv.messages
                            .iter()
                            .filter(|x| &x.protocol == id && x.mode == "tcp")
                            .map(|x| (x.size as f64, x.latency_ms.median))
                            .collect(),
                    )
                })
                .collect(),
        ),
        files,
    )?;
    d.push(Block::Img(
        "server_latency_vs_size".into(),
        "Latency through the server vs body size".into(),
    ));

    // What the server did to the stanzas
    d.push(Block::H(3, "Did every stanza survive the server?".into()));
    let mut rows = Vec::new();
    let (mut stamped, mut total) = (0u64, 0u64);
    let (mut with_stamp, mut exact) = (Vec::new(), Vec::new());
    for id in ids {
        for m in &modes {
            let Some(p) = row(id, m) else { continue };
            stamped += p.lang_stamped;
            total += p.stanzas;
            if m == "tcp" {
                let all = p.delivered_exact + p.delivered_with_stamp;
                if p.delivered_with_stamp == all && all > 0 {
                    with_stamp.push(id.clone());
                } else if p.delivered_with_stamp > 0 {
                    with_stamp.push(format!("{id} ({} of {all})", p.delivered_with_stamp));
                } else if p.delivered_exact > 0 {
                    exact.push(id.clone());
                }
            }
            rows.push(vec![
                id.clone(),
                m.clone(),
                p.stanzas.to_string(),
                p.lang_stamped.to_string(),
                p.delivered_exact.to_string(),
                p.delivered_with_stamp.to_string(),
                format!("{}/{}", p.varied_intact, p.varied_sent),
                p.altered.to_string(),
                p.lost.to_string(),
                p.error.clone().unwrap_or_default(),
            ]);
        }
    }
    d.push(Block::Table(
        vec![
            "protocol".into(),
            "mode".into(),
            "wire stanzas".into(),
            "arrived with xml:lang added".into(),
            "delivered exactly".into(),
            "delivered with the server's xml:lang".into(),
            "conformance stanzas intact".into(),
            "altered".into(),
            "lost".into(),
            "error".into(),
        ],
        rows,
    ));
    let mut text = format!(
        "Each wire stanza was compared with what arrived. Expected and not counted as alterations: the `from` stamp \
         (RFC 6120 §8.1.2.1) and an `xml:lang` attribute added to a stanza that had none (§8.1.5: the server SHOULD add the \
         stream's language; Prosody does): {stamped} of {total} wire stanzas arrived with it. "
    );
    if !with_stamp.is_empty() {
        text.push_str(&format!(
            "Protocols that hand the stamp on to the application (their delivered stanza takes its top-level attributes from \
             the unprotected outer stanza, so a server can change them unnoticed): {}. ",
            with_stamp.join(", ")
        ));
    }
    if !exact.is_empty() {
        text.push_str(&format!(
            "Delivered exactly as the sender's application wrote them: {}. ",
            exact.join(", ")
        ));
    }
    if sv.altered.is_empty() && sv.lost.is_empty() {
        text.push_str("No other change: no wire stanza of any protocol was altered or rejected by the server under the main limit.");
    } else {
        text.push_str(&format!(
            "Findings: {} stanza(s) altered, {} lost under the main limit (details in server.json).",
            sv.altered.len(),
            sv.lost.len()
        ));
    }
    d.push(Block::P(text));
    for a in sv.altered.iter().take(10) {
        d.push(Block::P(format!(
            "Altered ({}, {}, {}): {}",
            a.protocol, a.phase, a.dir, a.what
        )));
    }
    for l in sv.lost.iter().take(10) {
        d.push(Block::P(format!(
            "Lost ({}, {}, {}, {} B): {}",
            l.protocol, l.phase, l.dir, l.bytes, l.why
        )));
    }

    // Stanza-limit probe
    if let Some(pl) = sv.probe_limit {
        d.push(Block::H(3, format!("Under a {pl}-byte stanza limit")));
        d.push(Block::P(format!(
            "A second Prosody with `c2s_stanza_size_limit = {pl}`; after the handshake, one message with a {}-byte body. \
             Prosody closes the stream of a client that sends a larger stanza (stream error `policy-violation`), so a \
             protocol that cannot split a message loses it and the connection; OTR is also run with libotr's fragmentation \
             (`max_msg_size`).",
            sv.plan.probe_size
        )));
        d.push(Block::Table(
            vec![
                "protocol".into(),
                "options".into(),
                "outcome".into(),
                "wire stanzas".into(),
                "largest stanza B".into(),
                "why".into(),
            ],
            sv.probe
                .iter()
                .map(|p| {
                    vec![
                        p.protocol.clone(),
                        p.options.clone(),
                        p.outcome.clone(),
                        p.stanzas.to_string(),
                        p.largest_stanza.to_string(),
                        p.why.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ));
    }

    // Load
    if !sv.load.is_empty() {
        d.push(Block::H(
            3,
            "Load: concurrent pairs through one server".into(),
        ));
        d.push(Block::P(format!(
            "Each step starts N pairs at once (two accounts each, one client thread for all of them, the server on the other \
             core): login ({} logins admitted at a time: a storm of 2N simultaneous SCRAM and TLS logins against Prosody's \
             single thread is a test of the login path, not of the protocols) and handshake; when every pair is set up (or has \
             failed), all of them send {} message(s) of {} bytes each way, each awaited before the next; a step is bounded by {:.0} s and every wait by 10 s, and the ramp stops at the \
             first step with a failed pair. The client thread does every session's cryptography, so a step that fails may \
             have found the limit of this one client process rather than of the server; the first failure is quoted. Wall time runs from the first login to the last \
             pair's end, set-up from the first login until every pair was established; throughput is delivered messages over \
             the message window (first application stanza sent to last delivered); latency is per message, send call to \
             delivery. Identities are generated before the timed window \
             (column keygen: what the step needed beyond earlier steps).",
            sv.plan.load_logins_at_once, sv.plan.load_messages, sv.plan.load_size, sv.plan.load_deadline_s
        )));
        d.push(Block::Table(
            vec![
                "protocol".into(),
                "mode".into(),
                "pairs".into(),
                "completed / failed".into(),
                "messages".into(),
                "wall s".into(),
                "set-up s".into(),
                "message window s".into(),
                "throughput msg/s".into(),
                "latency ms p50 / p90 / p99 / max".into(),
                "handshake ms p50 / p99".into(),
                "login ms p50 / p99".into(),
                "keygen s".into(),
                "stopped".into(),
            ],
            sv.load
                .iter()
                .map(|l| {
                    vec![
                        l.protocol.clone(),
                        l.mode.clone(),
                        l.pairs.to_string(),
                        format!("{} / {}", l.completed_pairs, l.failed_pairs),
                        l.messages_delivered.to_string(),
                        n(l.wall_s),
                        n(l.setup_s),
                        n(l.message_window_s),
                        n(l.throughput_msg_s),
                        format!(
                            "{} / {} / {} / {}",
                            n(l.latency_ms.p50),
                            n(l.latency_ms.p90),
                            n(l.latency_ms.p99),
                            n(l.latency_ms.max)
                        ),
                        format!("{} / {}", n(l.handshake_ms.p50), n(l.handshake_ms.p99)),
                        format!("{} / {}", n(l.login_ms.p50), n(l.login_ms.p99)),
                        n(l.keygen_s),
                        match &l.first_error {
                            Some(e) => format!("{}; first failure: {e}", l.stopped),
                            None => l.stopped.clone(),
                        },
                    ]
                })
                .collect(),
        ));
    }
    Ok(d)
}
