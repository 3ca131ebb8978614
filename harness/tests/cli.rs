//! The `e2elab` binary, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn e2elab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_e2elab"))
}

fn ok(args: &[&str]) -> String {
    let out = e2elab().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "e2elab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn list_json_has_plaintext_with_claims() {
    let v: serde_json::Value = serde_json::from_str(&ok(&["list", "--format", "json"])).unwrap();
    let arr = v.as_array().unwrap();
    let p = arr.iter().find(|p| p["id"] == "plaintext").unwrap();
    assert_eq!(p["family"], "control");
    assert_eq!(p["claims"].as_array().unwrap().len(), 13);
    assert!(p["spec"].as_str().unwrap().contains("RFC 6120"));
    // The known-bad controls are listed, each with the rows it must fail.
    let controls: Vec<&serde_json::Value> = arr
        .iter()
        .filter(|p| p["id"].as_str().unwrap().starts_with("control-"))
        .collect();
    assert_eq!(controls.len(), 10);
    for c in controls {
        assert_eq!(c["family"], "control");
        assert!(!c["control_for"].as_array().unwrap().is_empty(), "{c}");
    }
}

#[test]
fn run_json_plaintext_figures_are_the_serialized_stanzas() {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "run",
        "--protocol",
        "plaintext",
        "--messages",
        "100",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["protocol"], "plaintext");
    let h = &v["handshake"];
    for k in [
        "messages",
        "round_trips",
        "bytes_initiator",
        "bytes_responder",
    ] {
        assert_eq!(h[k].as_f64(), Some(0.0), "{k}");
    }
    assert!(h["cpu_us_initiator"].as_f64().is_some());
    assert!(h["cpu_us_responder"].as_f64().is_some());
    let m = &v["messages"];
    assert_eq!(m["count"], 200);
    let pt = m["plaintext_bytes"].as_u64().unwrap();
    assert_eq!(m["wire_bytes"].as_u64(), Some(pt));
    // Each stanza is the serialized workload message: recompute the sum independently.
    let mut expect = 0;
    for n in 0..100 {
        for from in 0..2 {
            expect += e2elab_core::stanza::wire_size(
                &e2elab::driver::workload_stanza(1, from, n, 64).unwrap(),
            ) as u64;
        }
    }
    assert_eq!(pt, expect);
}

#[test]
fn run_csv_and_table() {
    let csv = ok(&["run", "--messages", "3", "--format", "csv"]);
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("protocol,hs_messages,hs_round_trips"));
    assert!(lines.next().unwrap().starts_with("plaintext,0,0.0,0,0,"));
    let table = ok(&["run", "--messages", "3"]);
    assert!(table.contains("plaintext"));
    assert!(table.contains("overhead"));
}

#[test]
fn unknown_protocol_and_bad_args_fail_cleanly() {
    let out = e2elab()
        .args(["run", "--protocol", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown protocol 'nope'") && err.contains("plaintext"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    let out = e2elab()
        .args(["run", "--messages", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = e2elab().args(["run", "--opt", "novalue"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn transcript_lists_every_stanza_with_sizes() {
    let dir = std::env::temp_dir().join(format!("e2elab-tr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.xml");
    ok(&[
        "transcript",
        "--protocol",
        "plaintext",
        "--messages",
        "2",
        "--out",
        file.to_str().unwrap(),
    ]);
    let t = std::fs::read_to_string(&file).unwrap();
    let stanzas: Vec<&str> = t.lines().filter(|l| l.starts_with("<message")).collect();
    assert_eq!(stanzas.len(), 4);
    for s in &stanzas {
        let size = format!("{} bytes", s.len());
        assert!(t.contains(&size), "size annotation for {s}");
        e2elab_core::stanza::parse(s).unwrap();
    }
    assert!(t.contains("initiator->responder") && t.contains("responder->initiator"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two `e2elab peer` processes talk with no link in between: this test only
/// relays `wire` lines from one's stdout to the other's stdin.
#[test]
fn two_peer_processes_exchange_stanzas() {
    let dir = std::env::temp_dir().join(format!("e2elab-peer-{}", std::process::id()));
    let (a, b) = (dir.join("alice"), dir.join("bob"));
    ok(&[
        "keygen",
        "--protocol",
        "plaintext",
        "--jid",
        "alice@example.org",
        "--out",
        a.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    ok(&[
        "keygen",
        "--protocol",
        "plaintext",
        "--jid",
        "bob@example.net",
        "--out",
        b.to_str().unwrap(),
        "--seed",
        "2",
    ]);
    assert!(a.join("identity.json").exists() && b.join("public.json").exists());
    let spawn = |role: &str, me: &str, peer: &str, id: &std::path::Path, pid: &std::path::Path| {
        e2elab()
            .args([
                "peer",
                "--protocol",
                "plaintext",
                "--role",
                role,
                "--jid",
                me,
                "--peer",
                peer,
            ])
            .args([
                "--identity",
                id.to_str().unwrap(),
                "--peer-identity",
                pid.to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut alice = spawn(
        "initiator",
        "alice@example.org/lab",
        "bob@example.net/lab",
        &a,
        &b,
    );
    let mut bob = spawn(
        "responder",
        "bob@example.net/lab",
        "alice@example.org/lab",
        &b,
        &a,
    );
    let mut a_in = alice.stdin.take().unwrap();
    let mut b_in = bob.stdin.take().unwrap();
    let mut a_out = BufReader::new(alice.stdout.take().unwrap());
    let mut b_out = BufReader::new(bob.stdout.take().unwrap());
    let msg = "<message xmlns='jabber:client' from='alice@example.org/lab' to='bob@example.net/lab' type='chat'><body>line one&#xa;line two</body></message>";
    writeln!(a_in, "send {msg}").unwrap();
    let mut line = String::new();
    a_out.read_line(&mut line).unwrap();
    let wire = line.trim_end().strip_prefix("wire ").unwrap().to_string();
    writeln!(b_in, "recv {wire}").unwrap();
    line.clear();
    b_out.read_line(&mut line).unwrap();
    let delivered = line.trim_end().strip_prefix("deliver ").unwrap();
    assert_eq!(
        e2elab_core::stanza::parse(delivered).unwrap(),
        e2elab_core::stanza::parse(msg).unwrap()
    );
    writeln!(b_in, "bogus").unwrap();
    drop(a_in);
    drop(b_in);
    assert!(alice.wait().unwrap().success());
    let out = bob.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad line is counted as an error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown command 'bogus'"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conformance_command_passes_for_plaintext() {
    let out = ok(&["conformance", "--protocol", "plaintext"]);
    assert_eq!(
        out.matches(" pass").count(),
        e2elab::conformance::CHECKS.len(),
        "{out}"
    );
}
