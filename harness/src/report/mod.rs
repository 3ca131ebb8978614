//! `e2elab report`: DIR/report.md, DIR/report.html and charts (SVG and PNG)
//! generated from the run's JSON files only (results.json, security.json,
//! fuzz.json, and server.json when the run measured through a server): every figure is
//! read from the measured run, none is typed here, and a missing input is an
//! error naming the file. Tables come from the column specs of
//! [`crate::compare::tables`]; numbers have three significant digits, timed
//! figures are "median [95% interval]".

pub mod charts;
pub mod server;

use crate::compare::tables::{self, grid, sig3, stat_text};
use crate::compare::{self, Results, Stat, GOAL_MESSAGE_SIZE};
use crate::doc::{self, Block};
use charts::{render, Chart, Series};
use std::path::{Path, PathBuf};

/// The goals the report measures against.
pub mod goals {
    /// ESessions handshake / floor.
    pub const ESESSIONS_HANDSHAKE: f64 = 1.05;
    /// OTR adapter handshake / libotr floor.
    pub const OTR_HANDSHAKE: f64 = 1.05;
    /// 1 KiB message / per-message floor.
    pub const MESSAGE: f64 = 1.5;
    /// Instruction counts of two runs, percent.
    pub const INSTRUCTION_SPREAD: f64 = 1.0;
    /// Established pairs.
    pub const SESSIONS: usize = 10_000;
    /// `e2elab reproduce` wall time, seconds.
    pub const REPRODUCE_SECONDS: f64 = 15.0 * 60.0;
}

/// Three significant digits (for the server section).
pub(crate) fn n(x: f64) -> String {
    sig3(x)
}

/// Median [interval].
pub(crate) fn stat(s: &Stat) -> String {
    stat_text(s)
}

pub(crate) fn size_label(s: usize) -> String {
    if s >= 1024 {
        format!("{} KiB", s / 1024)
    } else {
        format!("{s} B")
    }
}

/// Generate the report from DIR's JSON files; returns the files written.
pub fn generate(dir: &Path) -> crate::Result<Vec<PathBuf>> {
    let r = compare::read(dir)?;
    let sec_path = dir.join("security.json");
    if !sec_path.exists() {
        return Err(crate::fail!(
            "{}: missing (written by e2elab compare with the run)",
            sec_path.display()
        ));
    }
    let sec = crate::security::SecurityRun::read(&sec_path)?;
    let server = if r.provenance.server {
        let p = dir.join("server.json");
        match crate::xmpp::read(dir)? {
            Some(s) => Some(s),
            None => {
                return Err(crate::fail!(
                    "{}: missing (results.json says this run measured through a server)",
                    p.display()
                ))
            }
        }
    } else {
        None
    };
    charts::register_font()?;
    let mut files = Vec::new();
    let mut d = build(&r, dir, &mut files)?;
    let ids: Vec<String> = r.profiles.iter().map(|x| x.id.clone()).collect();
    if let Some(sv) = &server {
        d.extend(server::section(&r, sv, &ids, dir, &mut files)?);
    }
    d.extend(crate::security::render::blocks(&sec));
    // The XEP-0210 matrix, when the run made one (`e2elab reproduce` does).
    let req = dir.join("requirements.json");
    if req.exists() {
        d.extend(crate::requirements::blocks(
            &crate::requirements::ReqRun::read(&req)?,
        ));
    } else {
        d.push(crate::doc::Block::P(format!(
            "No XEP-0210 requirement matrix in this report: {} has no requirements.json (`e2elab requirements --in {}` writes it; `e2elab reproduce` runs it).",
            dir.display(),
            dir.display()
        )));
    }
    // The fuzzing campaign is not part of a comparison run (it takes hours:
    // scripts/fuzz.sh); its section is shown from DIR/fuzz.json when there
    // is one, and its absence is said, not hidden.
    if dir.join("fuzz.json").exists() {
        d.extend(crate::fuzz::report_blocks(dir)?);
    } else {
        d.push(crate::doc::Block::P(format!(
            "No fuzzing campaign in this report: {} has no fuzz.json (scripts/fuzz.sh campaign, then scripts/fuzz.sh results, writes results/fuzz.json).",
            dir.display()
        )));
    }
    d.extend(closing(&r));
    let md = dir.join("report.md");
    std::fs::write(&md, doc::markdown(&d))
        .map_err(|e| crate::Error::io(md.display().to_string(), e))?;
    let h = dir.join("report.html");
    std::fs::write(&h, doc::html(&d, "xmpp-e2e-lab: comparison report"))
        .map_err(|e| crate::Error::io(h.display().to_string(), e))?;
    files.push(md);
    files.push(h);
    Ok(files)
}

fn floor<'a>(r: &'a Results, id: &str, size: Option<usize>) -> Option<&'a compare::FloorRow> {
    r.floors.iter().find(|f| {
        f.protocol == id
            && match size {
                Some(s) => f.phase == "message" && f.size == Some(s),
                None => f.phase == "handshake",
            }
    })
}

fn met(ok: bool) -> String {
    if ok {
        "yes".into()
    } else {
        "**no**".into()
    }
}

/// The goals table: each goal, its measured value with interval, met or not.
fn goals_table(r: &Results) -> Block {
    let mut rows = Vec::new();
    let ratio_row =
        |rows: &mut Vec<Vec<String>>, goal: &str, id: &str, f: &compare::FloorRow, target: f64| {
            let instr = f
                .instructions
                .as_ref()
                .map(|i| sig3(i.ratio))
                .unwrap_or_else(|| "not measured".into());
            rows.push(vec![
                goal.to_string(),
                id.to_string(),
                stat_text(&f.ratio),
                instr,
                format!("<= {}", sig3(target)),
                met(f.ratio.median <= target),
            ]);
        };
    for p in &r.profiles {
        if let Some(f) = floor(r, &p.id, None) {
            if p.family == "esessions" {
                ratio_row(
                    &mut rows,
                    "ESessions handshake / floor",
                    &p.id,
                    f,
                    goals::ESESSIONS_HANDSHAKE,
                );
            } else if p.family == "otr" {
                ratio_row(
                    &mut rows,
                    "OTR adapter handshake / libotr floor",
                    &p.id,
                    f,
                    goals::OTR_HANDSHAKE,
                );
            }
        }
    }
    for p in &r.profiles {
        if let Some(f) = floor(r, &p.id, Some(GOAL_MESSAGE_SIZE)) {
            ratio_row(
                &mut rows,
                "1 KiB message / per-message floor",
                &p.id,
                f,
                goals::MESSAGE,
            );
        }
    }
    match &r.instructions {
        Some(i) => {
            rows.push(vec![
                "run-to-run spread of instruction counts (headline figures)".into(),
                format!("{} regions", i.rows.iter().filter(|r| r.headline).count()),
                "–".into(),
                format!("largest {}%", sig3(i.headline_max_spread_percent)),
                format!("<= {}%", sig3(goals::INSTRUCTION_SPREAD)),
                met(i.headline_max_spread_percent <= goals::INSTRUCTION_SPREAD),
            ]);
            rows.push(vec![
                "run-to-run spread of instruction counts (every region)".into(),
                format!("{} regions", i.rows.len()),
                "–".into(),
                format!("largest {}%", sig3(i.max_spread_percent)),
                format!("<= {}%", sig3(goals::INSTRUCTION_SPREAD)),
                met(i.max_spread_percent <= goals::INSTRUCTION_SPREAD),
            ]);
        }
        None => rows.push(vec![
            "run-to-run spread of instruction counts".into(),
            "–".into(),
            "–".into(),
            "not measured in this run".into(),
            format!("<= {}%", sig3(goals::INSTRUCTION_SPREAD)),
            "–".into(),
        ]),
    }
    if !r.spread.is_empty() {
        let outside = r
            .spread
            .iter()
            .filter(|s| s.diff_percent > s.tolerance_percent)
            .count();
        let worst = r.spread.iter().map(|s| s.diff_percent).fold(0.0, f64::max);
        rows.push(vec![
            "run-to-run spread of timed figures".into(),
            format!("{} figures", r.spread.len()),
            format!("largest difference {}%", sig3(worst)),
            "–".into(),
            "within each figure's 95% interval".into(),
            format!("{} of {} within", r.spread.len() - outside, r.spread.len()),
        ]);
    }
    let top = r.plan.scale_points.iter().copied().max().unwrap_or(0);
    for p in r.scale_curve.iter().filter(|p| p.pairs == top) {
        rows.push(vec![
            format!("{} sessions held", 2 * p.pairs),
            p.protocol.clone(),
            format!(
                "{} B/session, set-up {} s",
                stat_text(&p.heap_bytes_per_session),
                stat_text(&p.setup_seconds)
            ),
            "–".into(),
            format!(">= {} pairs", goals::SESSIONS),
            met(p.pairs >= goals::SESSIONS),
        ]);
    }
    if r.scale_curve.is_empty() {
        rows.push(vec![
            "10,000 sessions".into(),
            "–".into(),
            "not measured in this run".into(),
            "–".into(),
            format!(">= {} pairs", goals::SESSIONS),
            "–".into(),
        ]);
    }
    rows.push(match r.provenance.reproduce_wall_seconds {
        Some(w) => vec![
            "reproduction wall time".into(),
            "all".into(),
            format!("{} min", sig3(w / 60.0)),
            "–".into(),
            format!("< {} min", sig3(goals::REPRODUCE_SECONDS / 60.0)),
            met(w < goals::REPRODUCE_SECONDS),
        ],
        None => vec![
            "reproduction wall time".into(),
            "–".into(),
            format!(
                "not a reproduction (this compare: {} min)",
                sig3(r.provenance.wall_seconds / 60.0)
            ),
            "–".into(),
            format!("< {} min", sig3(goals::REPRODUCE_SECONDS / 60.0)),
            "–".into(),
        ],
    });
    Block::Table(
        [
            "goal",
            "profile",
            "measured (time)",
            "measured (instructions)",
            "target",
            "met",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
    )
}

fn pivot(r: &Results, ids: &[String], f: &dyn Fn(&compare::MessageRow) -> String) -> Block {
    let mut head = vec!["protocol".to_string()];
    head.extend(r.plan.sizes.iter().map(|s| size_label(*s)));
    Block::Table(
        head,
        ids.iter()
            .map(|id| {
                let mut v = vec![id.clone()];
                for s in &r.plan.sizes {
                    v.push(
                        r.messages
                            .iter()
                            .find(|m| &m.protocol == id && m.size == *s)
                            .map(f)
                            .unwrap_or_else(|| "–".into()),
                    );
                }
                v
            })
            .collect(),
    )
}

fn build(r: &Results, dir: &Path, files: &mut Vec<PathBuf>) -> crate::Result<Vec<Block>> {
    let p = &r.provenance;
    let ids: Vec<String> = r.profiles.iter().map(|x| x.id.clone()).collect();
    let mut d = vec![
        Block::H(1, "xmpp-e2e-lab: comparison report".into()),
        Block::P(format!(
            "Generated by `e2elab report` from the JSON files of one run ({} mode): every figure below was measured in \
             that run. Timed figures are medians over {} measured repetitions (after {} warm-up repetition(s), discarded), \
             with the profiles in a fresh random order in every repetition; brackets give the bootstrap 95% confidence \
             interval of the median ({} resamples); every sample is kept in results.json. CPU is the thread CPU time of the \
             session calls, serializing what a call sends and parsing what it receives included (both parties run on one \
             thread). Numbers have three significant digits.",
            r.plan.mode,
            r.plan.reps,
            r.plan.warmup,
            compare::stats::RESAMPLES
        )),
    ];
    // Provenance.
    d.push(Block::H(2, "Provenance".into()));
    let mut prow: Vec<Vec<String>> = tables::provenance_rows(r)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("phase: "))
        .map(|(k, v)| vec![k, v])
        .collect();
    prow.retain(|v| !v[1].is_empty());
    d.push(Block::Table(vec!["item".into(), "value".into()], prow));
    if let Some(w) = &p.busy_warning {
        d.push(Block::P(format!(
            "**Warning: the machine was busy during this run** ({w}); timed figures may be inflated and their \
             intervals wide. Instruction counts are not affected."
        )));
    } else {
        d.push(Block::P(format!(
            "The machine was quiet: steal {}% of CPU time, all processes together busy {}% of the time (the run \
             itself keeps at least one of {} CPUs busy).",
            sig3(p.steal_percent),
            sig3(p.busy_percent),
            p.cpus
        )));
    }
    // Goals.
    d.push(Block::H(2, "Goals".into()));
    d.push(Block::P("Each goal with its measured value in this run (time: median ratio and 95% interval over repetitions; instructions: one callgrind run, whose spread against the second is its own row).".into()));
    d.push(goals_table(r));

    // Handshake.
    d.push(Block::H(2, "Handshake".into()));
    d.push(Block::P("Stanzas until both sessions are established; flights are maximal runs of stanzas in one direction (round trips = flights / 2); bytes are serialized stanzas; CPU per side includes serializing its stanzas and parsing the peer's. Public-key operations are counted at each call, or derived from the library's code path where it cannot be instrumented (libotr). Protocols without a handshake show only the cost of `start`.".into()));
    d.push(Block::grid(grid(&tables::handshake(), &r.handshake)));
    let hs: Vec<&compare::HandshakeRow> = r.handshake.iter().filter(|h| h.messages > 0).collect();
    render(
        dir,
        "handshake_cpu",
        &Chart::Bars(
            "Handshake CPU per protocol, stacked by side (median)",
            "CPU time, ms",
            hs.iter().map(|h| h.protocol.clone()).collect(),
            vec![
                (
                    "initiator".into(),
                    hs.iter()
                        .map(|h| h.cpu_us_initiator.median / 1000.0)
                        .collect(),
                ),
                (
                    "responder".into(),
                    hs.iter()
                        .map(|h| h.cpu_us_responder.median / 1000.0)
                        .collect(),
                ),
            ],
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
            hs.iter()
                .map(|h| format!("{} ({} RT)", h.protocol, sig3(h.round_trips)))
                .collect(),
            vec![
                (
                    "initiator → responder".into(),
                    hs.iter().map(|h| h.bytes_initiator.median).collect(),
                ),
                (
                    "responder → initiator".into(),
                    hs.iter().map(|h| h.bytes_responder.median).collect(),
                ),
            ],
        ),
        files,
    )?;
    d.push(Block::Img(
        "handshake_bytes".into(),
        "Handshake bytes each way, with round trips".into(),
    ));

    // Cold and warm.
    if !r.cold.is_empty() {
        d.push(Block::H(2, "Cold first handshake and steady state".into()));
        d.push(Block::P(format!(
            "In {} fresh process(es) per profile: identities read from files as a client reads its key store, then a session pair created and brought to its first protected message ({} more times after the first). Cold = the first (library initialization, key and certificate parsing, first use of every cache); warm = the median of the later ones in the same process. Creating the sessions counts here (it does not in the handshake table).",
            r.plan.cold_processes,
            compare::cold::WARM
        )));
        d.push(Block::grid(grid(&tables::cold(), &r.cold)));
    }

    // Keygen.
    d.push(Block::H(
        2,
        "One-time cost: long-term key generation".into(),
    ));
    d.push(Block::P("CPU to generate one long-term identity, apart from the handshake. Backends that cannot take our RNG (OpenSSL RSA, Sequoia, libotr DSA) generate with their own.".into()));
    d.push(Block::grid(grid(&tables::keygen(), &r.keygen)));

    // Messages.
    d.push(Block::H(2, "Per-message overhead".into()));
    d.push(Block::P(format!(
        "A `<message/>` with a `<body/>` of each size, {} each way per size and repetition, alternating direction (a conversation: a protocol that ratchets on each change of speaker, OTR, pays public-key operations on nearly every message). Wire bytes per message and expansion = wire bytes / the serialized application stanza (what the `plaintext` row puts on the wire, so its expansion is 1). The full per-size table, with intervals, is messages.csv.",
        r.plan.messages_per_size
    )));
    d.push(Block::P("Wire bytes per message (expansion):".into()));
    d.push(pivot(r, &ids, &|m| {
        format!(
            "{} (x{})",
            sig3(m.wire_bytes.median),
            sig3(m.expansion.median)
        )
    }));
    d.push(Block::P("Send + receive CPU per message, µs, median [95% interval] (serializing and parsing the stanza included; send / receive split in messages.csv):".into()));
    d.push(pivot(r, &ids, &|m| stat_text(&m.total_cpu_us)));
    d.extend(message_notes(r));
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
            series(&|m| (m.plaintext_bytes.median, m.total_cpu_us.median)),
        ),
        files,
    )?;
    d.push(Block::Img(
        "message_cpu_vs_size".into(),
        "Per-message CPU vs size, log-log".into(),
    ));

    // Presence.
    d.push(Block::H(2, "Directed presence".into()));
    d.push(Block::P("One directed presence (show, status, priority) each way per repetition, for the profiles that protect presence.".into()));
    d.push(Block::grid(grid(&tables::presence(), &r.presence)));

    // Latency.
    d.push(Block::H(2, "Time to first protected message".into()));
    d.push(Block::P(r.ttfm_formula.clone()));
    let mut nets: Vec<(String, f64)> = Vec::new();
    for l in &r.latency {
        if !nets.iter().any(|(n, _)| n == &l.network) {
            nets.push((l.network.clone(), l.rtt_ms));
        }
    }
    let mut head = vec![
        "protocol".to_string(),
        "legs".into(),
        "CPU on path ms".into(),
    ];
    head.extend(
        nets.iter()
            .map(|(nm, rtt)| format!("{nm} ({} ms RTT) ms", sig3(*rtt))),
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
                    rows.first()
                        .map(|l| stat_text(&l.cpu_ms))
                        .unwrap_or_default(),
                ];
                for (nm, _) in &nets {
                    v.push(
                        rows.iter()
                            .find(|l| &l.network == nm)
                            .map(|l| sig3(l.ttfm_ms.median))
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

    // Floors.
    d.push(Block::H(2, "Cost over floor".into()));
    d.push(Block::P(r.floor_formula.clone()));
    d.push(Block::P("The floor's XML work is a document of the recorded size with one text node: a real stanza with more elements and attributes parses slower than that. Where a library runs an operation more expensively than the standard way (Sequoia's RSA private-key operations build the key from n, e and d for every call, without CRT), the protocol's floor charges the standard way and the library's floor the operation as run: the second ratio isolates the protocol's own overhead, the first includes the library's.".into()));
    d.push(Block::grid(grid(&tables::floors(), &r.floors)));
    d.push(Block::P(
        "The operations charged (per phase; message rows per message at 1 KiB):".into(),
    ));
    d.push(Block::Table(
        vec!["protocol".into(), "phase".into(), "operations".into()],
        r.floors
            .iter()
            .filter(|f| f.phase == "handshake" || f.size == Some(GOAL_MESSAGE_SIZE))
            .map(|f| {
                vec![
                    f.protocol.clone(),
                    match f.size {
                        Some(s) => format!("message {}", size_label(s)),
                        None => "handshake".into(),
                    },
                    tables::ops_list(&f.ops),
                ]
            })
            .collect(),
    ));
    let fl: Vec<&compare::FloorRow> = r
        .floors
        .iter()
        .filter(|f| f.phase == "handshake" || f.size == Some(GOAL_MESSAGE_SIZE))
        .collect();
    render(
        dir,
        "floor_ratios",
        &Chart::Bars(
            "Measured cost / protocol floor (handshakes; 1 KiB messages)",
            "ratio (median)",
            fl.iter()
                .map(|x| {
                    format!(
                        "{} ({})",
                        x.protocol,
                        if x.phase == "handshake" {
                            "handshake"
                        } else {
                            "1 KiB"
                        }
                    )
                })
                .collect(),
            vec![("ratio".into(), fl.iter().map(|x| x.ratio.median).collect())],
        ),
        files,
    )?;
    d.push(Block::Img(
        "floor_ratios".into(),
        "Cost / floor ratios".into(),
    ));
    d.push(Block::H(3, "The primitives, one call each".into()));
    d.push(Block::P(format!(
        "Every operation (with its bytes per call) that a handshake or a 1 KiB message ran, timed alone, {} calls per repetition, interleaved in random order.",
        r.plan.primitive_calls
    )));
    d.push(Block::grid(grid(&tables::primitives(), &r.primitives)));

    // Instructions.
    if let Some(i) = &r.instructions {
        d.push(Block::H(2, "Instruction counts".into()));
        d.push(Block::P(format!(
            "{}: {} fresh worker process(es) per profile, {} message(s) each way per size, collection switched on only inside the measured calls, one dump per call; identities and the floors' keys read from files, so no key generation runs under valgrind. Largest difference between the runs: {}% over the headline regions (handshakes, {} B messages and their floors), {}% over all {} regions. libotr draws fresh DH exponents from libgcrypt's own generator (which cannot be seeded) and the instruction count of a modexp depends on its exponent, so OTR regions differ run to run by that much; everything else differs only by what OpenSSL's blinding and hash-table seeds do.",
            i.tool,
            r.plan.instruction_runs,
            compare::instr::MESSAGES_PER_SIZE,
            sig3(i.headline_max_spread_percent),
            GOAL_MESSAGE_SIZE,
            sig3(i.max_spread_percent),
            i.rows.len()
        )));
        if !i.powm.is_empty() {
            d.push(Block::P("The OTR adapter derives its public-key counts from libotr's code path (libotr cannot be instrumented from outside); callgrind counted the calls:".into()));
            d.push(Block::Table(
                vec![
                    "protocol".into(),
                    "what".into(),
                    "derived".into(),
                    "counted by callgrind".into(),
                    "agree".into(),
                ],
                i.powm
                    .iter()
                    .map(|c| {
                        vec![
                            c.protocol.clone(),
                            c.what.clone(),
                            c.derived.to_string(),
                            c.counted.to_string(),
                            met(c.derived == c.counted),
                        ]
                    })
                    .collect(),
            ));
        }
        d.push(Block::grid(grid(&tables::instructions(), &i.rows)));
    }

    // Scale.
    if !r.scale_curve.is_empty() {
        d.push(Block::H(2, "Scale: many established sessions".into()));
        d.push(Block::P(format!(
            "{} run(s) per profile, each in a fresh process; the first builds up to {} established pairs and is read at each of {:?} pairs, the others at {:?} only (10,000 pairs cost minutes of handshakes per profile and run: the run-to-run spread is measured where it is affordable, the largest point once). Memory is the growth of the malloc heap in use (glibc mallinfo2: Rust, OpenSSL, libotr and libgcrypt outside its secure pool all allocate there) per session (one side); set-up is the wall time to create and establish the pairs so far; then a mix of up to {} messages round-robin over the pairs (14 in 20 bodies of 64 B, 5 in 20 of 1 KiB, 1 in 20 of 16 KiB, directions alternating), each serialized, parsed and delivered, on one thread. Two runs went at once (one per core).",
            r.plan.scale_reps,
            r.plan.scale_points.iter().max().copied().unwrap_or(0),
            r.plan.scale_points,
            if r.plan.scale_repeat_points.is_empty() {
                &r.plan.scale_points
            } else {
                &r.plan.scale_repeat_points
            },
            compare::scale::MIX_MESSAGES
        )));
        d.push(Block::grid(grid(&tables::scale_curve(), &r.scale_curve)));
        let curve = |f: &dyn Fn(&compare::ScalePoint) -> f64| -> Vec<Series> {
            ids.iter()
                .map(|id| {
                    (
                        id.clone(),
                        r.scale_curve
                            .iter()
                            .filter(|p| &p.protocol == id)
                            .map(|p| (p.pairs as f64, f(p)))
                            .collect(),
                    )
                })
                .collect()
        };
        render(
            dir,
            "scale_memory",
            &Chart::Lines(
                "Heap per established session vs pairs held (log-log)",
                "established pairs",
                "bytes per session (median)",
                curve(&|p| p.heap_bytes_per_session.median),
            ),
            files,
        )?;
        d.push(Block::Img(
            "scale_memory".into(),
            "Memory per established session vs pairs".into(),
        ));
        render(
            dir,
            "scale_setup",
            &Chart::Lines(
                "Wall time to establish the pairs vs pairs (log-log)",
                "established pairs",
                "seconds (median)",
                curve(&|p| p.setup_seconds.median),
            ),
            files,
        )?;
        d.push(Block::Img(
            "scale_setup".into(),
            "Set-up time vs pairs".into(),
        ));
    }

    // Spread.
    if !r.spread.is_empty() {
        d.push(Block::H(2, "Run to run".into()));
        d.push(Block::P("The in-memory measurement ran twice in this invocation (different seeds for the workload, same binary and machine). Each headline figure's difference between the two runs beside the half-width of the first run's 95% interval: a difference inside it is what the interval predicts.".into()));
        d.push(Block::grid(grid(&tables::spread(), &r.spread)));
    }
    Ok(d)
}

/// Notes on figures a protocol's design shapes, from the data.
fn message_notes(r: &Results) -> Vec<Block> {
    let mut notes = Vec::new();
    for m in r.messages.iter().filter(|m| m.size == 0) {
        if m.protocol != "plaintext" && m.expansion.median == 1.0 && m.ops.total() == 0.0 {
            notes.push(format!(
                "{} at 0 B: {} wire bytes, the application stanza itself (expansion 1, no operation): an empty body is passed through unprotected (the adapter's DECISION: OTR protects only a non-empty body), so this column is not protected traffic.",
                m.protocol,
                sig3(m.wire_bytes.median)
            ));
        }
    }
    for l in r
        .latency
        .iter()
        .filter(|l| l.network == "LAN" && l.legs == 1)
    {
        let hs = r.handshake.iter().find(|h| h.protocol == l.protocol);
        let first = r
            .messages
            .iter()
            .find(|m| m.protocol == l.protocol && m.size == compare::FIRST_MESSAGE_SIZE);
        if let (Some(h), Some(m)) = (hs, first) {
            let why = if l.protocol.starts_with("rfc3923") {
                Some("RFC 3923 §6.2")
            } else if l.protocol.ends_with("-dsig") {
                Some("in XML-DSig KeyInfo, crates/xmldsig DECISIONS 8")
            } else {
                None
            };
            if h.messages == 0 && l.protocol == "omemo" {
                notes.push(format!(
                    "{}: no handshake; its first message carries the key exchange (Olm's 3DH, XEP-0384 §4.2: \"just-in-time\") and is answered by an empty message, so the time to first message includes both, while the per-message sweep at {} B ({} wire bytes, median) carries only the ratchet's steps.",
                    l.protocol,
                    compare::FIRST_MESSAGE_SIZE,
                    sig3(m.wire_bytes.median)
                ));
            }
            if let (0, Some(why)) = (h.messages, why) {
                notes.push(format!(
                    "{}: no handshake; its first message carries the sender's certificate ({why}; attached again at most every 5 minutes of virtual time), so the time to first message includes sending and parsing it, while the per-message sweep at {} B ({} wire bytes, median) mostly does not.",
                    l.protocol,
                    compare::FIRST_MESSAGE_SIZE,
                    sig3(m.wire_bytes.median)
                ));
            }
        }
    }
    if notes.is_empty() {
        Vec::new()
    } else {
        vec![
            Block::P("Where a design shapes these figures:".into()),
            Block::List(notes),
        ]
    }
}

/// The closing note: per-profile floor ratios and the run's wall time by phase.
fn closing(r: &Results) -> Vec<Block> {
    let mut d = vec![Block::H(2, "Closing note".into())];
    let mut items = Vec::new();
    for p in &r.profiles {
        let id = &p.id;
        let hs = floor(r, id, None);
        let msg = floor(r, id, Some(GOAL_MESSAGE_SIZE));
        let part = |f: &compare::FloorRow| {
            format!(
                "{} ({} µs over {} µs)",
                stat_text(&f.ratio),
                sig3(f.measured_us.median),
                sig3(f.floor_us.median)
            )
        };
        items.push(match (hs, msg) {
            (Some(h), Some(m)) => format!(
                "{id}: handshake / floor {}; 1 KiB message / floor {}.",
                part(h),
                part(m)
            ),
            (None, Some(m)) => format!("{id}: no handshake; 1 KiB message / floor {}.", part(m)),
            (Some(h), None) => format!("{id}: handshake / floor {}.", part(h)),
            (None, None) => format!("{id}: no floor."),
        });
    }
    d.push(Block::List(items));
    let p = &r.provenance;
    let phases: Vec<String> = p
        .phases
        .iter()
        .map(|x| format!("{} {} s", x.name, sig3(x.seconds)))
        .collect();
    d.push(Block::P(match p.reproduce_wall_seconds {
        Some(w) => format!(
            "`e2elab reproduce` took {} s ({} min) of wall time: {}.",
            sig3(w),
            sig3(w / 60.0),
            phases.join("; ")
        ),
        None => format!(
            "This `e2elab compare` took {} s of wall time: {}.",
            sig3(p.wall_seconds),
            phases.join("; ")
        ),
    }));
    d
}
