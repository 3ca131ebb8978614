//! Independent known answers: a second implementation of the ESessions
//! formulas, written from the XEP text only (`tests/kat/esessions_kat.py`,
//! Python with hashlib/hmac/cryptography, never derived from this crate's
//! code), verifies transcripts this crate produced and answers with K, the
//! keys, the SIGMA MACs, the SAS, the retained-secret hashes, every stanza's
//! counter and plaintext, and one stanza per direction of its own making.
//! The test checks that
//! 1. the transcripts still come out of the seeds (`tests/kat/transcripts.json`),
//! 2. the script, run now, gives the committed answers (`tests/kat/expected.json`),
//! 3. this crate agrees with every answer it can be asked about: the SAS,
//!    the final keys and counters, each delivered plaintext, the retained
//!    secret being found, and the script's own stanzas decrypting here,
//!
//! in the spec's reading and in the gajim-compat one. Set
//! `E2ELAB_WRITE_VECTORS=1` to rewrite both files after a deliberate change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use e2elab_core::{stanza, Identity, Options, PublicIdentity, SecretBytes, Session as _};
use e2elab_esessions::sigma::SigmaExport;
use e2elab_esessions::{keys, Esessions, Profile};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kat")
}

/// The two fixed RSA keys of the crate's vectors.
fn fixed_keys() -> [Vec<u8>; 2] {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/esessions.json");
    let v: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let k = |f: &str| hex::decode(v[0][f].as_str().unwrap()).unwrap();
    [k("alice_pkcs8_hex"), k("bob_pkcs8_hex")]
}

fn identity(profile: Profile, jid: &str, der: &[u8]) -> Identity {
    let k = keys::private_from_der(der).unwrap();
    Identity::new(
        PublicIdentity {
            protocol: profile.id().into(),
            jid: jid.into(),
            data: keys::key_value_of(&k).unwrap(),
            fingerprint: None,
        },
        SecretBytes::new(der.to_vec()),
    )
}

struct Case {
    name: &'static str,
    profile: Profile,
    options: Options,
    reading: &'static str,
    seed: u64,
    /// Runs right after the case it names, on the same stores.
    retained_from: Option<&'static str>,
    bodies: [Vec<&'static str>; 2],
}

fn cases() -> Vec<Case> {
    let none = || {
        Options::new()
            .set("init_pubkey", "none")
            .set("resp_pubkey", "none")
    };
    let two_k: &'static str = Box::leak("0123456789abcdef".repeat(128).into_boxed_str());
    vec![
        Case {
            name: "sigma-r-none",
            profile: Profile::SigmaR,
            options: none(),
            reading: "spec",
            seed: 101,
            retained_from: None,
            bodies: [
                vec!["hello bob", "grüße, ✓"],
                vec!["hello alice", "<&> escaped"],
            ],
        },
        Case {
            name: "sigma-r-none-retained",
            profile: Profile::SigmaR,
            options: none(),
            reading: "spec",
            seed: 102,
            retained_from: Some("sigma-r-none"),
            bodies: [vec!["again"], vec!["again, from bob"]],
        },
        Case {
            name: "sigma-r-key",
            profile: Profile::SigmaR,
            options: Options::new().set("modp", "5,14"),
            reading: "spec",
            seed: 103,
            retained_from: None,
            bodies: [vec!["signed identities"], vec!["both ways"]],
        },
        Case {
            name: "sigma-i-key",
            profile: Profile::SigmaI,
            options: Options::new(),
            reading: "spec",
            seed: 104,
            retained_from: None,
            bodies: [vec!["three messages"], vec!["and done"]],
        },
        Case {
            name: "simplified",
            profile: Profile::Simplified,
            options: Options::new(),
            reading: "spec",
            seed: 105,
            retained_from: None,
            bodies: [vec!["xep-0217"], vec!["hidden fields"]],
        },
        Case {
            name: "gajim-shapes",
            profile: Profile::SigmaR,
            options: none().set("gajim-shapes", "true"),
            reading: "spec",
            seed: 106,
            retained_from: None,
            bodies: [vec!["labels and order kept"], vec!["clear extras beside"]],
        },
        Case {
            name: "gajim-compat",
            profile: Profile::SigmaR,
            options: Options::new().set("gajim-compat", "true"),
            reading: "gajim",
            seed: 107,
            retained_from: None,
            bodies: [
                vec!["grüße ✓ (ünïcödé)", two_k, "third"],
                vec!["réponse ✓", two_k, "three"],
            ],
        },
    ]
}

/// One case run: its input for the script, and what this crate saw.
struct Run {
    input: Value,
    retained: bool,
    pair: Pair<e2elab_esessions::sigma::SigmaSession>,
}

fn export(p: &Pair<e2elab_esessions::sigma::SigmaSession>, i: usize) -> SigmaExport {
    serde_json::from_slice(p.s[i].dangerous_export_state().unwrap().data.expose()).unwrap()
}

fn run_case(c: &Case, proto: &Esessions, ders: &[Vec<u8>; 2]) -> Run {
    let ids = [
        Arc::new(identity(c.profile, "alice@example.org", &ders[0])),
        Arc::new(identity(c.profile, "bob@example.net", &ders[1])),
    ];
    let mut p = sigma_pair_from(proto, ids, [c.options.clone(), c.options.clone()], c.seed);
    p.handshake();
    // The DH private values the negotiation used, before any stanza.
    let x = export(&p, 0).channel.unwrap().rx_sets[0].2.clone();
    let y = export(&p, 1).channel.unwrap().rx_sets[0].2.clone();
    for n in 0..3 {
        for i in 0..2 {
            if let Some(b) = c.bodies[i].get(n) {
                p.send(i, msg(i, b)).unwrap();
                p.pump();
            }
        }
    }
    let stanzas: Vec<Value> = p
        .log
        .iter()
        .map(|(to, x)| json!({"from": if *to == 1 { "initiator" } else { "responder" }, "xml": x}))
        .collect();
    let input = json!({
        "name": c.name,
        "reading": c.reading,
        "mode": if c.profile == Profile::SigmaI { 3 } else { 4 },
        "initiator_exponent_hex": x,
        "responder_exponent_hex": y,
        "retained_from": c.retained_from,
        "oss": null,
        "stanzas": stanzas,
        "replies": {"initiator": format!("reply from the script to {}", c.name), "responder": "und zurück ✓"},
    });
    Run {
        input,
        retained: c.retained_from.is_some(),
        pair: p,
    }
}

fn write_or_read(name: &str, fresh: &str) -> String {
    let path = dir().join(name);
    if std::env::var("E2ELAB_WRITE_VECTORS").is_ok() {
        std::fs::write(&path, fresh).unwrap();
    }
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn independent_known_answers() {
    let ders = fixed_keys();
    let mut runs = Vec::new();
    let mut proto_of: std::collections::HashMap<&str, Esessions> = Default::default();
    for c in cases() {
        // A retained-secret case reuses its predecessor's stores.
        let proto = match c.retained_from {
            Some(prev) => proto_of.remove(prev).expect("predecessor ran"),
            None => Esessions::new(c.profile),
        };
        let r = run_case(&c, &proto, &ders);
        proto_of.insert(c.name, proto);
        runs.push(r);
    }
    let input = json!({"cases": runs.iter().map(|r| r.input.clone()).collect::<Vec<_>>()});
    let fresh = serde_json::to_string_pretty(&input).unwrap() + "\n";
    let committed = write_or_read("transcripts.json", &fresh);
    if fresh != committed {
        let old: Value = serde_json::from_str(&committed).unwrap();
        let differing: Vec<&str> = old["cases"]
            .as_array()
            .unwrap()
            .iter()
            .zip(input["cases"].as_array().unwrap())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a["name"].as_str().unwrap_or("?"))
            .collect();
        panic!(
            "the transcripts no longer come out of the seeds (cases {differing:?}); \
             E2ELAB_WRITE_VECTORS=1 rewrites them after a deliberate change"
        );
    }
    // The independent implementation, run now: its own checks first.
    let st = std::process::Command::new("python3")
        .arg(dir().join("esessions_kat.py"))
        .arg("--self-test")
        .output()
        .expect("python3 runs (scripts/setup.sh installs python3-cryptography)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = std::process::Command::new("python3")
        .arg(dir().join("esessions_kat.py"))
        .arg(dir().join("transcripts.json"))
        .output()
        .expect("python3 runs (scripts/setup.sh installs python3-cryptography)");
    assert!(
        out.status.success(),
        "the independent implementation rejected a transcript:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = String::from_utf8(out.stdout).unwrap();
    let committed = write_or_read("expected.json", &answers);
    assert_eq!(answers, committed, "the script's answers changed");
    let expected: Value = serde_json::from_str(&committed).unwrap();
    let exp_cases = expected["cases"].as_array().unwrap();
    assert_eq!(exp_cases.len(), runs.len());
    for (run, want) in runs.iter_mut().zip(exp_cases) {
        check(run, want);
    }
}

/// This crate against the script's answers for one case.
fn check(run: &mut Run, want: &Value) {
    let name = want["name"].as_str().unwrap();
    let retained = run.retained;
    let p = &mut run.pair;
    // The SAS both sides show.
    for i in 0..2 {
        assert_eq!(
            p.established(i).and_then(|e| e.sas),
            want["sas"].as_str().map(str::to_string),
            "{name}: SAS of party {i}"
        );
    }
    // Final keys: each side's sending keys are its own, its receiving keys the peer's.
    let key = |who: &str, k: &str| want["keys"][who][k].as_str().unwrap().to_string();
    let (a, b) = (export(p, 0).channel.unwrap(), export(p, 1).channel.unwrap());
    assert_eq!(a.tx_kc, key("initiator", "kc"), "{name}: Alice's KC");
    assert_eq!(a.tx_km, key("initiator", "km"), "{name}: Alice's KM");
    assert_eq!(b.tx_kc, key("responder", "kc"), "{name}: Bob's KC");
    assert_eq!(b.tx_km, key("responder", "km"), "{name}: Bob's KM");
    assert_eq!(
        a.rx_sets[0].0,
        key("responder", "kc"),
        "{name}: Alice's view of Bob's KC"
    );
    assert_eq!(
        b.rx_sets[0].1,
        key("initiator", "km"),
        "{name}: Bob's view of Alice's KM"
    );
    // Counters: the last stanza each side sent ends where the script's count does.
    let last_after = |from: &str| {
        want["protected"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|s| s["from"] == from)
            .map(|s| s["counter_after_hex"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(a.tx_ctr, last_after("initiator"), "{name}: Alice's counter");
    assert_eq!(b.tx_ctr, last_after("responder"), "{name}: Bob's counter");
    assert_eq!(b.rx_ctr, a.tx_ctr, "{name}");
    // Each plaintext the script decrypted is what this crate delivered.
    for s in want["protected"].as_array().unwrap() {
        let pt = s["plaintext"].as_str().unwrap();
        let to = if s["from"] == "initiator" { 1 } else { 0 };
        let body = stanza::parse(&format!("<x xmlns='jabber:client'>{}</x>", pt.trim_end()))
            .unwrap()
            .get_child("body", stanza::NS_CLIENT)
            .map(|b| b.text())
            .unwrap();
        assert!(
            p.delivered(to)
                .iter()
                .any(|d| stanza::body(d).as_deref() == Some(&body)),
            "{name}: the script's plaintext {body:?} was delivered"
        );
    }
    if retained {
        assert_eq!(
            want["srs_matched"], true,
            "{name}: the script found the retained secret"
        );
        for i in 0..2 {
            assert!(
                p.established(i)
                    .unwrap()
                    .method
                    .ends_with("retained secret"),
                "{name}: party {i} found it too"
            );
        }
    }
    // Stanzas the script made decrypt here.
    let thread = p.s[0].session_thread().to_string();
    for made in want["made"].as_array().unwrap() {
        let (to, from_jid, to_jid) = if made["from"] == "initiator" {
            (1, A, B)
        } else {
            (0, B, A)
        };
        let xml = format!(
            "<message xmlns='jabber:client' from='{from_jid}' to='{to_jid}' type='chat'><thread>{thread}</thread>{}</message>",
            made["c_xml"].as_str().unwrap()
        );
        p.deliver(to, &xml)
            .unwrap_or_else(|e| panic!("{name}: the script's stanza from {}: {e}", made["from"]));
        let got = p.delivered(to).last().and_then(stanza::body);
        let text = stanza::parse(&format!(
            "<x xmlns='jabber:client'>{}</x>",
            made["plaintext"].as_str().unwrap()
        ))
        .unwrap()
        .get_child("body", stanza::NS_CLIENT)
        .map(|b| b.text());
        assert_eq!(got, text, "{name}: the script's stanza decrypted here");
    }
}
