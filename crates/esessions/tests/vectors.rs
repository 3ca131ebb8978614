//! Known-answer vectors: with fixed long-term keys and a seeded `Env`, each
//! profile's whole transcript (handshake, two messages each way, termination)
//! is reproducible byte for byte. The JSON file holds hex fields; set
//! `E2ELAB_WRITE_VECTORS=1` to regenerate it after a deliberate wire change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use e2elab_core::{Identity, Options, PublicIdentity, SecretBytes};
use e2elab_esessions::{keys, ssh, Esessions, Profile};
use serde_json::{json, Value};
use std::sync::Arc;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/esessions.json");

fn identity(profile: Profile, jid: &str, der: &[u8]) -> Identity {
    if der.is_empty() {
        return Identity::new(
            PublicIdentity {
                protocol: profile.id().into(),
                jid: jid.into(),
                data: vec![],
                fingerprint: None,
            },
            SecretBytes::default(),
        );
    }
    let k = keys::private_from_der(der).unwrap();
    let data = if profile == Profile::Ssh {
        ssh::rsa_blob(&k).unwrap()
    } else {
        keys::key_value_of(&k).unwrap()
    };
    Identity::new(
        PublicIdentity {
            protocol: profile.id().into(),
            jid: jid.into(),
            data,
            fingerprint: None,
        },
        SecretBytes::new(der.to_vec()),
    )
}

fn transcript(
    profile: Profile,
    opts: &Options,
    seed: u64,
    ders: [&[u8]; 2],
) -> (Vec<Value>, Option<String>) {
    let proto = Esessions::new(profile);
    let ids = [
        Arc::new(identity(profile, "alice@example.org", ders[0])),
        Arc::new(identity(profile, "bob@example.net", ders[1])),
    ];
    let mut p = pair_from(&proto, ids, [opts.clone(), opts.clone()], seed);
    p.handshake();
    for n in 0..2 {
        for i in 0..2 {
            p.send(i, msg(i, &format!("vector message {n} from {i}")))
                .unwrap();
            p.pump();
        }
    }
    let mut out = e2elab_core::Outbox::new();
    p.s[0].close(&mut p.env[0], &mut out).unwrap();
    let term = e2elab_core::stanza::serialize(&out.poll_transmit().unwrap());
    p.log.push((1, term));
    let sas = p.established(0).and_then(|e| e.sas);
    (
        p.log
            .iter()
            .map(|(to, x)| json!({"to": to, "stanza_hex": hex::encode(x)}))
            .collect(),
        sas,
    )
}

fn cases() -> Vec<(Profile, Options, u64)> {
    vec![
        (Profile::SigmaR, Options::new(), 1),
        (
            Profile::SigmaR,
            Options::new()
                .set("init_pubkey", "hash")
                .set("resp_pubkey", "none")
                .set("modp", "5,14"),
            2,
        ),
        (Profile::SigmaR, Options::new().set("rekey_every", "2"), 3),
        (Profile::SigmaI, Options::new(), 4),
        (Profile::Simplified, Options::new(), 5),
        (Profile::Ssh, Options::new(), 6),
        (
            Profile::SigmaR,
            Options::new().set("gajim-compat", "true"),
            7,
        ),
    ]
}

#[test]
fn vectors_reproduce() {
    if std::env::var("E2ELAB_WRITE_VECTORS").is_ok() {
        // Keep the committed keys (tests/kat.rs uses them too); new ones only for a new file.
        let old: Option<Vec<Value>> = std::fs::read_to_string(FILE)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let keys: Vec<Vec<u8>> = match old {
            Some(v) => ["alice_pkcs8_hex", "bob_pkcs8_hex"]
                .iter()
                .map(|k| hex::decode(v[0][*k].as_str().unwrap()).unwrap())
                .collect(),
            None => (0..2)
                .map(|_| {
                    e2elab_esessions::prim::rsa_generate(2048)
                        .unwrap()
                        .private_key_to_pkcs8()
                        .unwrap()
                })
                .collect(),
        };
        let mut all = Vec::new();
        for (profile, opts, seed) in cases() {
            let ders: [&[u8]; 2] = if profile == Profile::Simplified {
                [&[], &[]]
            } else {
                [&keys[0], &keys[1]]
            };
            let (t, sas) = transcript(profile, &opts, seed, ders);
            all.push(json!({
                "profile": profile.id(),
                "options": opts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "seed": seed,
                "alice_pkcs8_hex": hex::encode(ders[0]),
                "bob_pkcs8_hex": hex::encode(ders[1]),
                "sas": sas,
                "transcript": t,
            }));
        }
        std::fs::write(FILE, serde_json::to_string_pretty(&all).unwrap()).unwrap();
    }
    let text = std::fs::read_to_string(FILE).expect("vector file is committed");
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(vectors.len(), cases().len());
    for v in vectors {
        let profile = match v["profile"].as_str().unwrap() {
            "esessions-sigma-r" => Profile::SigmaR,
            "esessions-sigma-i" => Profile::SigmaI,
            "esessions-simplified" => Profile::Simplified,
            "esessions-ssh" => Profile::Ssh,
            other => panic!("unknown profile {other}"),
        };
        let opts = Options::parse(
            v["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap()),
        )
        .unwrap();
        let a = hex::decode(v["alice_pkcs8_hex"].as_str().unwrap()).unwrap();
        let b = hex::decode(v["bob_pkcs8_hex"].as_str().unwrap()).unwrap();
        let (t, sas) = transcript(profile, &opts, v["seed"].as_u64().unwrap(), [&a, &b]);
        let want = v["transcript"].as_array().unwrap();
        assert_eq!(t.len(), want.len(), "{}: stanza count", profile.id());
        for (i, (got, want)) in t.iter().zip(want).enumerate() {
            assert_eq!(
                got,
                want,
                "{} {:?} stanza {i} differs:\n got {}\nwant {}",
                profile.id(),
                opts,
                String::from_utf8_lossy(&hex::decode(got["stanza_hex"].as_str().unwrap()).unwrap()),
                String::from_utf8_lossy(
                    &hex::decode(want["stanza_hex"].as_str().unwrap()).unwrap()
                ),
            );
        }
        assert_eq!(sas.as_deref(), v["sas"].as_str(), "{} SAS", profile.id());
    }
}
