//! `e2elab compare --quick` for three cheap profiles into a temp dir, then
//! `e2elab report`: the files, the charts and the key fields exist and agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

fn e2elab(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_e2elab"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2elab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn csv_rows(dir: &Path, name: &str) -> Vec<Vec<String>> {
    let s = std::fs::read_to_string(dir.join(name)).unwrap();
    s.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn quick_compare_then_report() {
    let dir = std::env::temp_dir().join(format!("e2elab-compare-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    e2elab(&[
        "compare",
        "--quick",
        "-p",
        "plaintext",
        "-p",
        "esessions-sigma-i",
        "-p",
        "rfc3923",
        "--out",
        d,
        "--seed",
        "7",
        "--runs",
        "2",
    ]);
    let r = e2elab::compare::read(&dir).unwrap();
    assert_eq!(r.schema, e2elab::compare::SCHEMA);
    let ids: Vec<&str> = r.profiles.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["plaintext", "esessions-sigma-i", "rfc3923"]);
    assert_eq!(r.plan.mode, "quick");
    let p = &r.provenance;
    assert_eq!(p.seed, 7);
    assert!(p.openssl.contains("OpenSSL"), "{}", p.openssl);
    assert!(p.sequoia_openpgp.starts_with('2'));
    assert!(p.kernel.starts_with("Linux"));
    assert!(p.valgrind.starts_with("valgrind"), "{}", p.valgrind);
    assert!(p.date.ends_with('Z'));
    assert_eq!(p.load_average_start.split(' ').count(), 3);
    assert_eq!(p.git_dirty, p.git_diff_sha256.is_some());
    // Every phase timed, in order.
    let phases: Vec<&str> = p.phases.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        &phases[..6],
        [
            "identities",
            "in memory (run 1)",
            "cold first handshake",
            "instruction counts (callgrind)",
            "scale curve",
            "in memory (run 2)"
        ]
    );
    assert!(phases.contains(&"security experiments"));

    // Handshakes: SIGMA-I is 3 stanzas in 3 flights, counted operations on
    // both sides; the control and S/MIME have none. Every sample is kept,
    // with an interval around the median.
    let hs = |id: &str| r.handshake.iter().find(|h| h.protocol == id).unwrap();
    let sigma = hs("esessions-sigma-i");
    assert_eq!((sigma.messages, sigma.flights), (3, 3));
    assert_eq!(sigma.round_trips, 1.5);
    assert_eq!(sigma.ops_source, "counted");
    assert_eq!(sigma.ops_initiator.modexp, 2.0);
    let t = &sigma.cpu_us_total;
    assert_eq!(t.n, r.plan.reps);
    assert_eq!(t.samples.len(), r.plan.reps);
    assert!(t.ci_lo <= t.median && t.median <= t.ci_hi);
    assert!(t.min <= t.q1 && t.q1 <= t.median && t.median <= t.q3 && t.q3 <= t.max);
    // Base-2 and other-base modexps are told apart.
    assert!(sigma.ops.iter().any(|o| o.name.starts_with("modexp 2^x")));
    assert!(sigma.ops.iter().any(|o| o.name.starts_with("modexp y^x")));
    assert_eq!(hs("plaintext").messages, 0);
    assert_eq!(hs("rfc3923").messages, 0);

    // The sweep: every size for every profile; the control row's expansion is 1.
    assert_eq!(r.messages.len(), 3 * r.plan.sizes.len());
    for m in r.messages.iter().filter(|m| m.protocol == "plaintext") {
        assert_eq!(m.expansion.median, 1.0, "size {}", m.size);
        assert_eq!(m.wire_bytes.median, m.plaintext_bytes.median);
        // The XML of the stanza is part of the message's cost.
        assert!(m.parse_cpu_us.median > 0.0);
    }
    let big = r
        .messages
        .iter()
        .find(|m| m.protocol == "rfc3923" && m.size == 65536)
        .unwrap();
    assert!(big.wire_bytes.median > 65536.0);
    assert_eq!((big.ops.sign, big.ops.pk_decrypt), (1.0, 1.0));

    // Time to first message grows with the RTT by exactly legs x RTT/2.
    let lat: Vec<_> = r
        .latency
        .iter()
        .filter(|l| l.protocol == "esessions-sigma-i")
        .collect();
    assert_eq!(lat[0].legs, 3);
    let dt = lat[3].ttfm_ms.median - lat[0].ttfm_ms.median;
    assert!((dt - 3.0 * (600.0 - 1.0) / 2.0).abs() < 1e-6, "{dt}");

    // Floors: a handshake floor for SIGMA-I and a message floor at every size
    // for every profile, per repetition, with instruction counts.
    let f = r
        .floors
        .iter()
        .find(|f| f.protocol == "esessions-sigma-i" && f.phase == "handshake")
        .unwrap();
    assert_eq!(f.ratio.n, r.plan.reps);
    assert!(f.floor_us.median > 0.0 && f.ratio.median > 0.0);
    let fi = f.instructions.as_ref().expect("instruction floor");
    assert!(fi.floor > 0.0 && (fi.ratio - fi.measured / fi.floor).abs() < 1e-9);
    assert_eq!(
        r.floors.iter().filter(|f| f.phase == "message").count(),
        3 * r.plan.sizes.len()
    );
    assert!(!r
        .floors
        .iter()
        .any(|f| f.protocol == "plaintext" && f.phase == "handshake"));
    // OpenSSL's RSA with CRT: protocol and library floors are one here.
    assert!(r.floors.iter().all(|f| f.floor_library_us.is_none()));
    assert!(r.primitives.iter().all(|p| p.cpu_us.median > 0.0));
    assert!(r
        .primitives
        .iter()
        .any(|p| p.name.starts_with("XML parse") && p.instructions.is_some()));

    // Instructions: two runs of each region, and they agree closely.
    let ins = r.instructions.as_ref().expect("instruction counts");
    assert!(ins.rows.iter().all(|x| x.runs.len() == 2));
    assert!(ins.max_spread_percent < 5.0, "{}", ins.max_spread_percent);

    // Cold and warm; the scale curve at each point; the spread of two runs.
    assert_eq!(r.cold.len(), 3);
    assert!(r
        .cold
        .iter()
        .all(|c| c.cold_cpu_us.n == r.plan.cold_processes));
    assert_eq!(r.scale_curve.len(), 3 * r.plan.scale_points.len());
    for x in &r.scale {
        assert!(r.plan.scale_points.contains(&x.pairs));
        assert!(x.mix_messages_per_second > 0.0, "{}", x.protocol);
        assert!(x.mix_wire_bytes >= x.mix_body_bytes, "{}", x.protocol);
    }
    // The first run reads every point, the others the repeated points only.
    let per_profile =
        r.plan.scale_points.len() + (r.plan.scale_reps - 1) * r.plan.scale_repeat_points.len();
    assert_eq!(r.scale.len(), 3 * per_profile);
    for x in r.scale_curve.iter() {
        let want = if r.plan.scale_repeat_points.contains(&x.pairs) {
            r.plan.scale_reps
        } else {
            1
        };
        assert_eq!(x.setup_seconds.n, want, "{} at {}", x.protocol, x.pairs);
    }
    assert!(!r.spread.is_empty());

    // The CSV files agree with the JSON; statistics keep their intervals.
    let m = csv_rows(&dir, "messages.csv");
    assert_eq!(m[0][0], "protocol");
    assert_eq!(m.len(), 1 + r.messages.len());
    let exp = m[0].iter().position(|c| c == "expansion").unwrap();
    assert_eq!(m[1][exp], "1");
    assert!(m[0].iter().any(|c| c == "send_cpu_us_ci_hi"));
    let p = csv_rows(&dir, "provenance.csv");
    assert!(p.iter().any(|r| r[0] == "seed" && r[1] == "7"));
    for f in [
        "presence.csv",
        "scale.csv",
        "scale_curve.csv",
        "handshake.csv",
        "keygen.csv",
        "latency.csv",
        "primitives.csv",
        "floors.csv",
        "cold.csv",
        "instructions.csv",
        "spread.csv",
    ] {
        assert!(csv_rows(&dir, f).len() > 1, "{f}");
    }

    // The report, from those files; again, byte for byte.
    e2elab(&["report", "--in", d]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    e2elab(&["report", "--in", d]);
    assert_eq!(md, std::fs::read_to_string(dir.join("report.md")).unwrap());
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let sec = e2elab::security::SecurityRun::read(&dir.join("security.json")).unwrap();
    assert_eq!(sec.profiles.iter().filter(|p| !p.control).count(), 2);
    assert!(sec.control_failures().is_empty());
    for h in [
        "## Goals",
        "## Security properties, measured",
        "### Known-bad controls",
        "## Instruction counts",
        "## Cold first handshake and steady state",
        "## Scale: many established sessions",
        "## Run to run",
        "## Closing note",
    ] {
        assert!(md.contains(h), "{h}");
    }
    assert!(md.contains("| integrity |"));
    assert!(md.contains("ESessions handshake / floor"));
    assert!(md.contains(&format!(
        "esessions-sigma-i: handshake / floor {}",
        e2elab::compare::tables::stat_text(&f.ratio)
    )));
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<td>rfc3923</td>"));
    for c in [
        "handshake_cpu",
        "handshake_bytes",
        "overhead_vs_size",
        "message_cpu_vs_size",
        "ttfm_vs_rtt",
        "floor_ratios",
        "scale_memory",
        "scale_setup",
    ] {
        let svg = std::fs::read_to_string(dir.join(format!("{c}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("esessions-sigma-i"),
            "{c}"
        );
        let png = std::fs::read(dir.join(format!("{c}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{c}");
        assert!(md.contains(&format!("({c}.svg)")), "{c}");
    }
    // A missing input is an error naming the file.
    std::fs::remove_file(dir.join("security.json")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_e2elab"))
        .args(["report", "--in", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("security.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `e2elab compare --quick --transport xmpp`: the in-memory run plus the same
/// profiles through a throwaway Prosody (plain TCP and STARTTLS), the
/// stanza-limit probe and the load ramp; the report sets them side by side.
#[test]
fn quick_compare_through_prosody_then_report() {
    let dir = std::env::temp_dir().join(format!("e2elab-compare-xmpp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    e2elab(&[
        "compare",
        "--quick",
        "--transport",
        "xmpp",
        "-p",
        "plaintext",
        "-p",
        "esessions-sigma-i",
        "-p",
        "otr-v3",
        "--load-protocol",
        "plaintext",
        "--out",
        d,
        "--seed",
        "5",
    ]);
    let s = e2elab::xmpp::read(&dir).unwrap().expect("server.json");
    assert!(s.server.starts_with("Prosody 0.12"), "{}", s.server);
    assert_eq!(s.stanza_limit, Some(e2elab::xmpp::DEFAULT_STANZA_LIMIT));
    assert_eq!(s.modes, ["tcp", "starttls"]);
    assert_eq!(s.profiles.len(), 6);
    for p in &s.profiles {
        assert_eq!(p.error, None, "{p:?}");
        assert_eq!(p.ttfm_ms.n, s.plan.reps);
        assert!(p.ttfm_ms.median > p.handshake_ms.median, "{p:?}");
        assert!(p.login_ms.median > 0.0);
        assert_eq!(p.varied_intact, p.varied_sent);
        assert!(p.varied_sent > 0);
        assert_eq!((p.altered, p.lost), (0, 0));
        // Prosody stamps xml:lang on every stanza (RFC 6120 §8.1.5).
        assert_eq!(p.lang_stamped, p.stanzas);
    }
    let hs = |id: &str| s.profiles.iter().find(|p| p.protocol == id).unwrap();
    assert_eq!(hs("esessions-sigma-i").handshake_stanzas, 3);
    assert_eq!(hs("otr-v3").handshake_stanzas, 5);
    assert_eq!(hs("plaintext").handshake_stanzas, 0);
    assert_eq!(s.messages.len(), 3 * 2 * s.plan.sizes.len());
    for m in &s.messages {
        assert!(
            m.latency_ms.n as u64 == 2 * s.plan.messages_per_size,
            "{m:?}"
        );
        assert!(m.socket_bytes_sent > 0.0 && m.serialized_bytes > 0.0);
        // Prosody's own count (mod_e2elab_bytes) equals the sockets' over TCP
        // and is the smaller XML inside TLS under STARTTLS.
        let counted = m.server_bytes_in.unwrap();
        if m.mode == "tcp" {
            assert_eq!(counted, m.socket_bytes_sent, "{m:?}");
        } else {
            assert!(counted < m.socket_bytes_sent, "{m:?}");
        }
        if m.mode == "starttls" {
            // TLS records cost bytes on top of the plain run's.
            let plain = s
                .messages
                .iter()
                .find(|x| x.protocol == m.protocol && x.size == m.size && x.mode == "tcp")
                .unwrap();
            assert!(
                m.socket_bytes_sent > plain.socket_bytes_sent,
                "{m:?} vs {plain:?}"
            );
        }
    }
    // The probe: nobody gets a 64 KiB body through a 16 KiB limit, except OTR fragmenting.
    assert_eq!(s.probe_limit, Some(16 * 1024));
    let probe = |id: &str, opts: &str| {
        s.probe
            .iter()
            .find(|p| p.protocol == id && p.options == opts)
            .unwrap()
            .clone()
    };
    assert_eq!(probe("plaintext", "").outcome, "rejected");
    assert!(probe("plaintext", "")
        .why
        .unwrap()
        .contains("policy-violation"));
    assert_eq!(probe("esessions-sigma-i", "").outcome, "rejected");
    assert_eq!(probe("otr-v3", "").outcome, "rejected");
    let frag = probe("otr-v3", "max_msg_size=8192");
    assert_eq!(frag.outcome, "delivered");
    assert!(
        frag.stanzas > 1 && (frag.largest_stanza as u64) < 16 * 1024,
        "{frag:?}"
    );
    // Load: the ramp ran in both modes and stopped by itself. Its first step
    // (10 pairs) must complete; later steps may find a limit, but their
    // accounting must add up.
    for mode in ["tcp", "starttls"] {
        let steps: Vec<_> = s.load.iter().filter(|l| l.mode == mode).collect();
        assert!(!steps.is_empty(), "{mode}");
        assert_eq!(steps[0].pairs, s.plan.load_pairs[0]);
        assert_eq!(steps[0].failed_pairs, 0, "{:?}", steps[0]);
        for l in steps {
            assert_eq!(l.protocol, "plaintext");
            assert_eq!(l.completed_pairs + l.failed_pairs, l.pairs);
            assert!(l.messages_delivered >= l.completed_pairs as u64 * l.messages_per_pair * 2);
            assert!(l.messages_delivered <= l.pairs as u64 * l.messages_per_pair * 2);
            assert_eq!(l.latency_ms.n as u64, l.messages_delivered);
            assert!(l.latency_ms.p99 >= l.latency_ms.p50);
            assert!(l.throughput_msg_s > 0.0);
            assert_eq!(l.first_error.is_some(), l.failed_pairs > 0, "{l:?}");
        }
    }
    assert_eq!(csv_rows(&dir, "server_profiles.csv").len(), 7);
    e2elab(&["report", "--in", d]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Through a real XMPP server"));
    assert!(md.contains("Under a 16384-byte stanza limit"));
    assert!(md.contains("Load: concurrent pairs"));
    assert!(dir.join("server_latency_vs_size.svg").exists());
    assert!(dir.join("server_latency_vs_size.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Server-only flags are refused without `--transport xmpp`, and flags that
/// cannot apply together are refused, before anything is measured.
#[test]
fn server_flags_are_checked_before_measuring() {
    let dir = std::env::temp_dir().join(format!("e2elab-compare-flags-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--server", "127.0.0.1:5222"],
            "--server needs --transport xmpp",
        ),
        (
            vec!["--stanza-limit", "1000"],
            "--stanza-limit needs --transport xmpp",
        ),
        (
            vec!["--load-protocol", "plaintext"],
            "--load-protocol needs --transport xmpp",
        ),
        (
            vec!["--transport", "xmpp", "--tls-ca", "/x.pem"],
            "--tls-ca is for --server",
        ),
        (
            vec!["--transport", "xmpp", "--stanza-limit", "0"],
            "--stanza-limit 0",
        ),
        (
            vec![
                "--transport",
                "xmpp",
                "--server",
                "127.0.0.1:5222",
                "--stanza-limit",
                "9",
            ],
            "cannot change --server's",
        ),
        (
            vec!["--transport", "xmpp", "--load-protocol", "nope"],
            "unknown protocol 'nope'",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_e2elab"))
            .args(["compare", "--quick", "-p", "plaintext", "--out", d])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !dir.join("results.json").exists(),
            "{args:?} measured anyway"
        );
    }
}
