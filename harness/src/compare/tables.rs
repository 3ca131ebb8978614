//! Every table of a run, described once: a list of columns, rendered to
//! CSV (every column; statistics expanded into median, interval, quartiles,
//! extremes and sample count; full precision) and to the report's
//! Markdown/HTML grids (the columns marked for the report; statistics as
//! "median [95% interval]"; three significant digits).

use super::schema::*;

/// A value of one cell.
#[derive(Debug, Clone)]
pub enum Value {
    /// Text.
    Text(String),
    /// A number.
    Num(f64),
    /// An integer.
    Int(u64),
    /// Repeated measurements.
    Stat(Stat),
    /// Nothing (not measured for this row, e.g. no library floor).
    None,
}

/// One column.
pub struct Col<R> {
    /// Header (CSV: the prefix of a statistic's columns).
    pub head: &'static str,
    /// Shown in the report (CSV shows every column).
    pub report: bool,
    /// The cell of a row.
    pub get: Box<dyn Fn(&R) -> Value>,
}

/// A column shown in the report too.
pub fn col<R>(head: &'static str, get: impl Fn(&R) -> Value + 'static) -> Col<R> {
    Col {
        head,
        report: true,
        get: Box::new(get),
    }
}

/// A column in the CSV only.
pub fn csv_only<R>(head: &'static str, get: impl Fn(&R) -> Value + 'static) -> Col<R> {
    Col {
        head,
        report: false,
        get: Box::new(get),
    }
}

/// A table: its CSV file name and its columns.
pub struct Spec<R> {
    /// CSV file name.
    pub file: &'static str,
    /// Columns.
    pub cols: Vec<Col<R>>,
}

/// A rendered grid (header and rows of text).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Header.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// `x` with three significant digits (no exponent for everyday magnitudes).
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-6..=12).contains(&mag) {
        return format!("{x:.2e}");
    }
    let decimals = (2 - mag).max(0) as usize;
    let scale = 10f64.powi(mag - 2);
    let rounded = (x / scale).round() * scale;
    // Rounding can carry into a new digit (999.5 -> 1000).
    let mag2 = rounded.abs().log10().floor() as i32;
    let decimals = if mag2 > mag {
        (2 - mag2).max(0) as usize
    } else {
        decimals
    };
    format!("{rounded:.decimals$}")
}

/// Full precision for CSV: integers as integers, others with 6 significant digits.
pub fn full(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (5 - mag).clamp(0, 12) as usize;
    format!("{x:.decimals$}")
}

/// A statistic in the report: median and interval.
pub fn stat_text(s: &Stat) -> String {
    if s.n == 0 {
        return "n/a".into();
    }
    if s.n == 1 || s.ci_lo == s.ci_hi {
        return sig3(s.median);
    }
    format!("{} [{}, {}]", sig3(s.median), sig3(s.ci_lo), sig3(s.ci_hi))
}

const STAT_PARTS: [&str; 8] = ["median", "ci_lo", "ci_hi", "q1", "q3", "min", "max", "n"];

fn stat_cells(s: &Stat) -> Vec<String> {
    if s.n == 0 {
        return vec![String::new(); STAT_PARTS.len()];
    }
    [s.median, s.ci_lo, s.ci_hi, s.q1, s.q3, s.min, s.max]
        .iter()
        .map(|x| full(*x))
        .chain(std::iter::once(s.n.to_string()))
        .collect()
}

fn is_stat<R>(c: &Col<R>, rows: &[R]) -> bool {
    rows.iter().any(|r| matches!((c.get)(r), Value::Stat(_)))
}

/// The CSV of `rows`.
pub fn csv<R>(spec: &Spec<R>, rows: &[R]) -> String {
    let stat_cols: Vec<bool> = spec.cols.iter().map(|c| is_stat(c, rows)).collect();
    let mut header = Vec::new();
    for (c, st) in spec.cols.iter().zip(&stat_cols) {
        if *st {
            header.extend(STAT_PARTS.iter().map(|p| format!("{}_{p}", c.head)));
        } else {
            header.push(c.head.to_string());
        }
    }
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = crate::output::Table::new(&hdr);
    for r in rows {
        let mut cells = Vec::new();
        for (c, st) in spec.cols.iter().zip(&stat_cols) {
            match ((c.get)(r), st) {
                (Value::Stat(s), _) => cells.extend(stat_cells(&s)),
                (Value::None, true) => cells.extend(vec![String::new(); STAT_PARTS.len()]),
                (Value::Text(t), _) => cells.push(t),
                (Value::Num(x), _) => cells.push(full(x)),
                (Value::Int(x), _) => cells.push(x.to_string()),
                (Value::None, false) => cells.push(String::new()),
            }
        }
        t.row(cells);
    }
    t.csv()
}

/// The report's grid of `rows` (report columns only).
pub fn grid<R>(spec: &Spec<R>, rows: &[R]) -> Grid {
    let cols: Vec<&Col<R>> = spec.cols.iter().filter(|c| c.report).collect();
    Grid {
        header: cols.iter().map(|c| c.head.replace('_', " ")).collect(),
        rows: rows
            .iter()
            .map(|r| {
                cols.iter()
                    .map(|c| match (c.get)(r) {
                        Value::Text(t) => t,
                        Value::Num(x) => sig3(x),
                        Value::Int(x) => x.to_string(),
                        Value::Stat(s) => stat_text(&s),
                        Value::None => "–".into(),
                    })
                    .collect()
            })
            .collect(),
    }
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn st(s: &Stat) -> Value {
    Value::Stat(s.clone())
}

fn ops_text(o: &PkOps) -> String {
    let parts: Vec<String> = o
        .items()
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(k, n)| format!("{} {k}", sig3(*n)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The operations of a floor row, one per line in the report.
pub fn ops_list(ops: &[OpEntry]) -> String {
    ops.iter()
        .map(|o| {
            let b = if o.bytes > 0.0 {
                format!(" on {} B", sig3(o.bytes))
            } else {
                String::new()
            };
            format!(
                "{} x {}{b}{}",
                sig3(o.calls),
                o.name,
                if o.derived { " (derived)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Handshakes.
pub fn handshake() -> Spec<HandshakeRow> {
    Spec {
        file: "handshake.csv",
        cols: vec![
            col("protocol", |r: &HandshakeRow| t(&r.protocol)),
            col("stanzas", |r: &HandshakeRow| Value::Int(r.messages)),
            col("flights", |r: &HandshakeRow| Value::Int(r.flights)),
            col("round_trips", |r: &HandshakeRow| Value::Num(r.round_trips)),
            col("bytes_I", |r: &HandshakeRow| {
                Value::Num(r.bytes_initiator.median)
            }),
            col("bytes_R", |r: &HandshakeRow| {
                Value::Num(r.bytes_responder.median)
            }),
            col("cpu_us_I", |r: &HandshakeRow| st(&r.cpu_us_initiator)),
            col("cpu_us_R", |r: &HandshakeRow| st(&r.cpu_us_responder)),
            col("cpu_us_total", |r: &HandshakeRow| st(&r.cpu_us_total)),
            col("pk_ops_I", |r: &HandshakeRow| {
                t(&ops_text(&r.ops_initiator))
            }),
            col("pk_ops_R", |r: &HandshakeRow| {
                t(&ops_text(&r.ops_responder))
            }),
            col("ops_source", |r: &HandshakeRow| t(&r.ops_source)),
        ],
    }
}

/// Key generation.
pub fn keygen() -> Spec<KeygenRow> {
    Spec {
        file: "keygen.csv",
        cols: vec![
            col("protocol", |r: &KeygenRow| t(&r.protocol)),
            col("cpu_us", |r: &KeygenRow| st(&r.cpu_us)),
        ],
    }
}

/// The per-message sweep.
pub fn messages() -> Spec<MessageRow> {
    Spec {
        file: "messages.csv",
        cols: vec![
            col("protocol", |r: &MessageRow| t(&r.protocol)),
            col("size", |r: &MessageRow| Value::Int(r.size as u64)),
            col("plaintext_bytes", |r: &MessageRow| {
                Value::Num(r.plaintext_bytes.median)
            }),
            col("wire_bytes", |r: &MessageRow| {
                Value::Num(r.wire_bytes.median)
            }),
            csv_only("wire_stanzas", |r: &MessageRow| {
                Value::Num(r.wire_stanzas.median)
            }),
            col("expansion", |r: &MessageRow| Value::Num(r.expansion.median)),
            col("send_cpu_us", |r: &MessageRow| st(&r.send_cpu_us)),
            col("recv_cpu_us", |r: &MessageRow| st(&r.recv_cpu_us)),
            csv_only("total_cpu_us", |r: &MessageRow| st(&r.total_cpu_us)),
            csv_only("parse_cpu_us", |r: &MessageRow| st(&r.parse_cpu_us)),
            col("pk_ops", |r: &MessageRow| t(&ops_text(&r.ops))),
        ],
    }
}

/// Time to first protected message.
pub fn latency() -> Spec<LatencyRow> {
    Spec {
        file: "latency.csv",
        cols: vec![
            col("protocol", |r: &LatencyRow| t(&r.protocol)),
            col("network", |r: &LatencyRow| t(&r.network)),
            col("rtt_ms", |r: &LatencyRow| Value::Num(r.rtt_ms)),
            col("legs", |r: &LatencyRow| Value::Int(r.legs)),
            col("cpu_ms", |r: &LatencyRow| st(&r.cpu_ms)),
            col("ttfm_ms", |r: &LatencyRow| st(&r.ttfm_ms)),
        ],
    }
}

/// The primitives.
pub fn primitives() -> Spec<PrimitiveRow> {
    Spec {
        file: "primitives.csv",
        cols: vec![
            col("primitive", |r: &PrimitiveRow| t(&r.name)),
            col("library", |r: &PrimitiveRow| t(&r.library)),
            col("bytes", |r: &PrimitiveRow| Value::Int(r.bytes)),
            col("cpu_us", |r: &PrimitiveRow| st(&r.cpu_us)),
            col("instructions", |r: &PrimitiveRow| {
                r.instructions.map(Value::Num).unwrap_or(Value::None)
            }),
        ],
    }
}

/// Costs over floors.
pub fn floors() -> Spec<FloorRow> {
    Spec {
        file: "floors.csv",
        cols: vec![
            col("protocol", |r: &FloorRow| t(&r.protocol)),
            col("phase", |r: &FloorRow| {
                t(&match r.size {
                    Some(s) => format!("message {s} B"),
                    None => r.phase.clone(),
                })
            }),
            col("measured_us", |r: &FloorRow| st(&r.measured_us)),
            col("floor_us", |r: &FloorRow| st(&r.floor_us)),
            col("ratio", |r: &FloorRow| st(&r.ratio)),
            col("library_floor_us", |r: &FloorRow| {
                r.floor_library_us.as_ref().map(st).unwrap_or(Value::None)
            }),
            col("ratio_library", |r: &FloorRow| {
                r.ratio_library.as_ref().map(st).unwrap_or(Value::None)
            }),
            col("instr_ratio", |r: &FloorRow| {
                r.instructions
                    .as_ref()
                    .map(|i| Value::Num(i.ratio))
                    .unwrap_or(Value::None)
            }),
            csv_only("instr_measured", |r: &FloorRow| {
                r.instructions
                    .as_ref()
                    .map(|i| Value::Num(i.measured))
                    .unwrap_or(Value::None)
            }),
            csv_only("instr_floor", |r: &FloorRow| {
                r.instructions
                    .as_ref()
                    .map(|i| Value::Num(i.floor))
                    .unwrap_or(Value::None)
            }),
            csv_only("instr_ratio_library", |r: &FloorRow| {
                r.instructions
                    .as_ref()
                    .and_then(|i| i.ratio_library)
                    .map(Value::Num)
                    .unwrap_or(Value::None)
            }),
            csv_only("ops_source", |r: &FloorRow| t(&r.ops_source)),
            csv_only("operations", |r: &FloorRow| t(&ops_list(&r.ops))),
        ],
    }
}

/// Directed presence.
pub fn presence() -> Spec<PresenceRow> {
    Spec {
        file: "presence.csv",
        cols: vec![
            col("protocol", |r: &PresenceRow| t(&r.protocol)),
            col("plaintext_bytes", |r: &PresenceRow| {
                Value::Num(r.plaintext_bytes.median)
            }),
            col("wire_bytes", |r: &PresenceRow| {
                Value::Num(r.wire_bytes.median)
            }),
            col("expansion", |r: &PresenceRow| {
                Value::Num(r.expansion.median)
            }),
            col("send_cpu_us", |r: &PresenceRow| st(&r.send_cpu_us)),
            col("recv_cpu_us", |r: &PresenceRow| st(&r.recv_cpu_us)),
        ],
    }
}

/// Cold against warm.
pub fn cold() -> Spec<ColdRow> {
    Spec {
        file: "cold.csv",
        cols: vec![
            col("protocol", |r: &ColdRow| t(&r.protocol)),
            col("cold_cpu_us", |r: &ColdRow| st(&r.cold_cpu_us)),
            col("warm_cpu_us", |r: &ColdRow| st(&r.warm_cpu_us)),
            col("cold_over_warm", |r: &ColdRow| st(&r.ratio)),
            col("cold_instructions", |r: &ColdRow| {
                r.instructions
                    .map(|(c, _)| Value::Int(c))
                    .unwrap_or(Value::None)
            }),
            col("warm_instructions", |r: &ColdRow| {
                r.instructions
                    .map(|(_, w)| Value::Int(w))
                    .unwrap_or(Value::None)
            }),
        ],
    }
}

/// Every scale reading.
pub fn scale() -> Spec<ScaleRow> {
    Spec {
        file: "scale.csv",
        cols: vec![
            col("protocol", |r: &ScaleRow| t(&r.protocol)),
            col("run", |r: &ScaleRow| Value::Int(r.run as u64)),
            col("pairs", |r: &ScaleRow| Value::Int(r.pairs as u64)),
            col("heap_bytes_per_session", |r: &ScaleRow| {
                Value::Num(r.heap_bytes_per_session)
            }),
            col("setup_seconds", |r: &ScaleRow| Value::Num(r.setup_seconds)),
            col("mix_messages", |r: &ScaleRow| Value::Int(r.mix_messages)),
            csv_only("mix_body_bytes", |r: &ScaleRow| {
                Value::Int(r.mix_body_bytes)
            }),
            csv_only("mix_wire_bytes", |r: &ScaleRow| {
                Value::Int(r.mix_wire_bytes)
            }),
            col("mix_messages_per_second", |r: &ScaleRow| {
                Value::Num(r.mix_messages_per_second)
            }),
            col("mix_cpu_us_per_message", |r: &ScaleRow| {
                Value::Num(r.mix_cpu_us_per_message)
            }),
        ],
    }
}

/// The scale curve.
pub fn scale_curve() -> Spec<ScalePoint> {
    Spec {
        file: "scale_curve.csv",
        cols: vec![
            col("protocol", |r: &ScalePoint| t(&r.protocol)),
            col("pairs", |r: &ScalePoint| Value::Int(r.pairs as u64)),
            col("heap_bytes_per_session", |r: &ScalePoint| {
                st(&r.heap_bytes_per_session)
            }),
            col("setup_seconds", |r: &ScalePoint| st(&r.setup_seconds)),
            col("mix_messages_per_second", |r: &ScalePoint| {
                st(&r.mix_messages_per_second)
            }),
            col("mix_cpu_us_per_message", |r: &ScalePoint| {
                st(&r.mix_cpu_us_per_message)
            }),
        ],
    }
}

/// Instruction counts.
pub fn instructions() -> Spec<InstrRow> {
    Spec {
        file: "instructions.csv",
        cols: vec![
            col("protocol", |r: &InstrRow| t(&r.protocol)),
            col("what", |r: &InstrRow| t(&r.what)),
            csv_only("headline", |r: &InstrRow| {
                t(if r.headline { "yes" } else { "no" })
            }),
            col("run_1", |r: &InstrRow| {
                r.runs
                    .first()
                    .map(|x| Value::Int(*x))
                    .unwrap_or(Value::None)
            }),
            col("run_2", |r: &InstrRow| {
                r.runs.get(1).map(|x| Value::Int(*x)).unwrap_or(Value::None)
            }),
            col("spread_percent", |r: &InstrRow| {
                Value::Num(r.spread_percent)
            }),
        ],
    }
}

/// Run-to-run differences.
pub fn spread() -> Spec<SpreadRow> {
    Spec {
        file: "spread.csv",
        cols: vec![
            col("figure", |r: &SpreadRow| t(&r.figure)),
            col("run_1", |r: &SpreadRow| Value::Num(r.run1)),
            col("run_2", |r: &SpreadRow| Value::Num(r.run2)),
            col("difference_percent", |r: &SpreadRow| {
                Value::Num(r.diff_percent)
            }),
            col("interval_half_width_percent", |r: &SpreadRow| {
                Value::Num(r.tolerance_percent)
            }),
        ],
    }
}

/// Provenance as key/value rows.
pub fn provenance_rows(r: &Results) -> Vec<(String, String)> {
    let p = &r.provenance;
    let mut v: Vec<(String, String)> = vec![
        ("git_revision".into(), p.git_revision.clone()),
        ("git_dirty".into(), p.git_dirty.to_string()),
        (
            "git_diff_sha256".into(),
            p.git_diff_sha256.clone().unwrap_or_default(),
        ),
        ("rustc".into(), p.rustc.clone()),
        ("kernel".into(), p.kernel.clone()),
        ("cpu_model".into(), p.cpu_model.clone()),
        ("cpus".into(), p.cpus.to_string()),
        ("openssl".into(), p.openssl.clone()),
        ("libgcrypt".into(), p.libgcrypt.clone()),
        ("libotr".into(), p.libotr.clone()),
        ("valgrind".into(), p.valgrind.clone()),
        ("sequoia_openpgp".into(), p.sequoia_openpgp.clone()),
        ("e2elab".into(), p.e2elab.clone()),
        ("seed".into(), p.seed.to_string()),
        ("date".into(), p.date.clone()),
        ("wall_seconds".into(), full(p.wall_seconds)),
        ("load_average_start".into(), p.load_average_start.clone()),
        ("load_average_end".into(), p.load_average_end.clone()),
        ("steal_percent".into(), full(p.steal_percent)),
        ("busy_percent".into(), full(p.busy_percent)),
        (
            "busy_warning".into(),
            p.busy_warning.clone().unwrap_or_default(),
        ),
        ("mode".into(), r.plan.mode.clone()),
        ("warmup".into(), r.plan.warmup.to_string()),
        ("reps".into(), r.plan.reps.to_string()),
        (
            "messages_per_size".into(),
            r.plan.messages_per_size.to_string(),
        ),
        ("keygen_reps".into(), r.plan.keygen_reps.to_string()),
        ("primitive_calls".into(), r.plan.primitive_calls.to_string()),
        ("command".into(), p.command.clone()),
    ];
    for ph in &p.phases {
        v.push((format!("phase: {}", ph.name), full(ph.seconds)));
    }
    v
}

/// The CSV files of a run: (file name, content).
pub fn csv_files(r: &Results) -> Vec<(&'static str, String)> {
    let mut prov = crate::output::Table::new(&["key", "value"]);
    for (k, v) in provenance_rows(r) {
        prov.row(vec![k, v]);
    }
    let instr: Vec<InstrRow> = r
        .instructions
        .as_ref()
        .map(|i| i.rows.clone())
        .unwrap_or_default();
    vec![
        ("provenance.csv", prov.csv()),
        ("handshake.csv", csv(&handshake(), &r.handshake)),
        ("keygen.csv", csv(&keygen(), &r.keygen)),
        ("messages.csv", csv(&messages(), &r.messages)),
        ("latency.csv", csv(&latency(), &r.latency)),
        ("primitives.csv", csv(&primitives(), &r.primitives)),
        ("floors.csv", csv(&floors(), &r.floors)),
        ("presence.csv", csv(&presence(), &r.presence)),
        ("cold.csv", csv(&cold(), &r.cold)),
        ("scale.csv", csv(&scale(), &r.scale)),
        ("scale_curve.csv", csv(&scale_curve(), &r.scale_curve)),
        ("instructions.csv", csv(&instructions(), &instr)),
        ("spread.csv", csv(&spread(), &r.spread)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(0.999), "0.999");
        assert_eq!(sig3(0.9996), "1.00");
        assert_eq!(sig3(1.0049), "1.00");
        assert_eq!(sig3(1234.5), "1230");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(0.0001234), "0.000123");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(999.6), "1000");
        assert_eq!(sig3(-2.5), "-2.50");
        assert_eq!(full(3.0), "3");
        assert_eq!(full(1.23456789), "1.23457");
    }

    #[test]
    fn one_spec_two_renderings() {
        let rows = vec![KeygenRow {
            protocol: "p".into(),
            cpu_us: Stat::of(&[1.0, 2.0, 3.0], 1, "k"),
        }];
        let c = csv(&keygen(), &rows);
        let header = c.lines().next().unwrap_or_default();
        assert_eq!(
            header,
            "protocol,cpu_us_median,cpu_us_ci_lo,cpu_us_ci_hi,cpu_us_q1,cpu_us_q3,cpu_us_min,cpu_us_max,cpu_us_n"
        );
        let g = grid(&keygen(), &rows);
        assert_eq!(g.header, vec!["protocol", "cpu us"]);
        assert!(g.rows[0][1].starts_with("2.00"), "{:?}", g.rows);
    }
}
