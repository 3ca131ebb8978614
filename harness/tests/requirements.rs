//! `e2elab requirements` (issue 19): the committed matrix is complete and
//! its controls came out as designed; the offline-sessions experiment
//! through a real Prosody can come out both ways; the interoperability
//! probe recognizes what GnuPG itself writes and nothing random; the
//! implementability figures name real crates and specifications.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::registry;
use e2elab::requirements::{self, implementability, interop, offline, ReqRun, Verdict};
use std::path::{Path, PathBuf};

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
fn the_probe_recognizes_the_tools_own_output_and_not_noise() {
    // GnuPG's own encrypted message and openssl's own enveloped data, each
    // in a stanza (the probe's baseline in every requirements run).
    for (tool, recognized) in interop::self_check().unwrap() {
        assert!(recognized, "{tool}");
    }
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
