//! `e2elab requirements` (issue 19): the committed matrix is complete and
//! its controls came out as designed; the offline-sessions experiment
//! through a real Prosody can come out both ways; the interoperability
//! probe recognizes what GnuPG itself writes and nothing random; the
//! implementability figures name real crates and specifications.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::registry;
use e2elab::requirements::{self, implementability, interop, offline, ReqRun, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_committed_matrix_is_complete_and_its_controls_held() {
    let r = ReqRun::read(&root().join("results/requirements.json")).unwrap();
    assert_eq!(r.requirements.len(), 18);
    assert!(r.checks.iter().all(|c| c.ok), "{:?}", r.checks);
    assert!(r.checks.iter().any(|c| c.role == "known-bad"));
    assert!(r.checks.iter().any(|c| c.role == "baseline"));
    for p in &r.profiles {
        for q in &r.requirements {
            let c = r.cell(p, &q.key).unwrap_or_else(|| panic!("{p} {}", q.key));
            assert!(!c.summary.is_empty(), "{p} {}", q.key);
            assert!(c.evidence.is_object(), "{p} {}", q.key);
            if c.verdict == Verdict::NotMeasured {
                assert!(
                    c.summary.contains("no ") || c.summary.contains("not"),
                    "{p} {}: says why",
                    q.key
                );
            }
        }
    }
    // The Markdown renders from the JSON alone.
    let md = requirements::markdown(&r);
    for q in &r.requirements {
        assert!(md.contains(&q.name));
    }
}

#[test]
fn offline_sessions_through_prosody_come_out_both_ways() {
    let entries: Vec<_> = ["plaintext", "control-anon-dh", "omemo"]
        .iter()
        .map(|id| registry::entry(id).unwrap())
        .collect();
    let (_, rows) = offline::run(&entries, 3, |_| {}).unwrap();
    let get = |id: &str| rows.iter().find(|r| r.protocol == id).unwrap();
    // The server kept plaintext's message and handed it over, stamped.
    assert!(get("plaintext").delivered);
    assert!(get("plaintext").delay_stamped >= 1);
    // An interactive handshake cannot finish with Bob offline.
    assert!(!get("control-anon-dh").delivered);
    // The key exchange rides on OMEMO's first message.
    assert!(get("omemo").delivered, "{:?}", get("omemo"));
}

#[test]
fn the_openpgp_probe_recognizes_gnupg_output_and_not_noise() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let gpg = |args: &[&str], input: &[u8]| {
        use std::io::Write;
        let mut c = Command::new("gpg")
            .args(["--homedir", h, "--batch", "--yes"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("gpg (scripts/setup.sh installs it)");
        c.stdin.take().unwrap().write_all(input).unwrap();
        c.wait_with_output().unwrap().stdout
    };
    gpg(
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "probe@example.org",
            "default",
            "default",
            "never",
        ],
        b"",
    );
    let armored = gpg(
        &[
            "--trust-model",
            "always",
            "-r",
            "probe@example.org",
            "-e",
            "-a",
        ],
        b"hello",
    );
    let text = String::from_utf8(armored).unwrap();
    assert!(text.contains("BEGIN PGP MESSAGE"), "gpg wrote no message");
    let carrier = format!(
        "<message xmlns='jabber:client' to='b@x/r' from='a@x/r'><x xmlns='urn:e2elab:test'>{}</x></message>",
        text.replace('\n', "&#10;")
    );
    let found = interop::probe(&carrier).unwrap();
    assert!(
        found
            .iter()
            .any(|t| t.recognized && t.tool.starts_with("gpg")),
        "{found:?}"
    );
    let _ = Command::new("gpgconf")
        .args(["--homedir", h, "--kill", "all"])
        .status();
    // Random base64 is no OpenPGP message.
    let noise: String = (0..600u32)
        .map(|i| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [((i * 7919 + 13) % 64) as usize],
            )
        })
        .collect();
    // Nor are packets gpg lists that are no message: a public-key encrypted
    // session key packet with an unknown version, and one of version 3 with
    // an algorithm the registry does not have.
    let mut inputs = vec![noise];
    for (version, algo) in [(7u8, 1u8), (3, 99)] {
        let mut pkt = vec![0x84, 20, version];
        pkt.extend_from_slice(&[0x11; 8]);
        pkt.push(algo);
        pkt.extend_from_slice(&[0x22; 10]);
        inputs.push(e2elab_core::b64::encode(&pkt));
    }
    for text in inputs {
        let carrier = format!(
            "<message xmlns='jabber:client' to='b@x/r' from='a@x/r'><x xmlns='urn:e2elab:test'>{text}</x></message>"
        );
        assert!(
            interop::probe(&carrier)
                .unwrap()
                .iter()
                .all(|t| !t.recognized),
            "{text} taken for a protected object"
        );
    }
}

#[test]
fn implementability_names_the_crates_and_the_specifications() {
    let graph = implementability::Graph::load(&root()).unwrap();
    for e in registry::entries().iter().filter(|e| !e.is_control()) {
        let krate = implementability::crate_of((e.make)().implementation());
        assert!(krate.starts_with("e2elab-"), "{}: {krate}", e.info().id);
        let (lines, _, _) = graph.measure(&krate).unwrap();
        assert!(lines > 100, "{krate}: {lines} lines");
        if e.info().id != "plaintext" {
            let specs = implementability::spec_files(e.info().spec, Path::new("/nonexistent"));
            assert!(
                !specs.is_empty(),
                "{}: no specification named in {:?}",
                e.info().id,
                e.info().spec
            );
        }
    }
}
