//! The security experiments (issue 8) for every profile, with the outcome
//! each one establishes: a protocol change that alters what an attack
//! achieves fails here. The OTR forgeability check needs libotr's tools
//! (`libotr5-bin`): without them it fails, it does not skip. The suite builds
//! e2elab with its test-only `dangerous-testing` feature (a dev-dependency on
//! itself), so OTR's post-compromise experiment runs here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::registry;
use e2elab::security::{self, Outcome, ProtocolSecurity};
use e2elab_core::Property;

const SEED: u64 = 8;

const H: Outcome = Outcome::Holds;
const F: Outcome = Outcome::Fails;
const N: Outcome = Outcome::NotApplicable;

/// Expected outcomes in `Property::ALL` order: confidentiality_coverage,
/// integrity, replay, loss_reorder_tolerance, forward_secrecy,
/// post_compromise_security, message_repudiation, forgeability,
/// identity_protection, mitm_detection, downgrade_resistance,
/// identity_misbinding.
fn check(id: &str, expected: [Outcome; 12]) -> ProtocolSecurity {
    let proto = registry::get(id).unwrap();
    let r = security::run_protocol(proto.as_ref(), SEED).unwrap();
    assert_eq!(r.properties.len(), 12, "{id}: every property reported");
    let mut wrong = Vec::new();
    for (p, want) in Property::ALL.iter().zip(expected) {
        let got = r.get(*p).unwrap();
        assert!(!got.evidence.is_empty(), "{id} {}: evidence", p.name());
        assert!(
            !got.evidence.starts_with("experiment could not run"),
            "{id} {}: {}",
            p.name(),
            got.evidence
        );
        if got.outcome != want {
            wrong.push(format!(
                "{}: expected {}, measured {} ({})",
                p.name(),
                want.name(),
                got.outcome.name(),
                got.evidence
            ));
        }
    }
    assert!(wrong.is_empty(), "{id}:\n{}", wrong.join("\n"));
    r
}

#[test]
fn plaintext() {
    check("plaintext", [F, F, F, H, F, F, H, H, N, F, N, N]);
}

#[test]
fn esessions_sigma_r() {
    check("esessions-sigma-r", [F, F, H, F, H, N, H, H, H, H, H, F]);
}

#[test]
fn esessions_sigma_i() {
    check("esessions-sigma-i", [F, F, H, F, H, N, H, H, H, H, H, F]);
}

#[test]
fn esessions_simplified() {
    check("esessions-simplified", [F, F, H, F, H, N, H, F, N, H, H, N]);
}

#[test]
fn esessions_ssh() {
    check("esessions-ssh", [F, F, H, F, H, N, H, F, F, H, N, H]);
}

#[test]
fn rfc3923() {
    check("rfc3923", [H, H, F, H, F, F, F, F, F, F, N, H]);
}

#[test]
fn rfc3923_modern() {
    check("rfc3923-modern", [H, H, F, H, F, F, F, F, F, F, N, H]);
}

#[test]
fn jep0027() {
    check("jep0027", [F, F, F, H, F, F, F, H, F, F, F, F]);
}

#[test]
fn xep0373_ox() {
    check("xep0373-ox", [H, H, F, H, F, F, F, F, F, F, N, H]);
}

#[test]
fn otr_v3() {
    check("otr-v3", [F, F, H, F, H, H, H, H, H, H, H, F]);
}

#[test]
fn otr_v2() {
    check("otr-v2", [F, F, H, F, H, H, H, H, H, H, N, F]);
}

#[test]
fn evidence_names_what_the_attacker_did() {
    let r = check("jep0027", [F, F, F, H, F, F, F, H, F, F, F, F]);
    let fs = &r.get(Property::ForwardSecrecy).unwrap().evidence;
    assert!(fs.contains("leaked"), "{fs}");
    let rp = &r.get(Property::Replay).unwrap().evidence;
    assert!(rp.contains("delivered AGAIN"), "{rp}");
    let md = security::markdown(&[r]);
    assert!(md.contains("### Findings"));
    assert!(md.contains("| forward_secrecy |"));
}

#[test]
fn findings_compare_claims_and_sok() {
    use e2elab_core::ClaimLevel;
    assert!(security::claim_disagrees(ClaimLevel::Claimed, F));
    assert!(!security::claim_disagrees(ClaimLevel::Claimed, H));
    assert!(security::claim_disagrees(ClaimLevel::NotClaimed, H));
    assert!(!security::claim_disagrees(ClaimLevel::Partial, F));
    assert!(!security::claim_disagrees(ClaimLevel::Partial, H));
    assert!(!security::claim_disagrees(ClaimLevel::NotApplicable, N));
    assert!(security::sok_disagrees(security::sok::Rating::Full, F));
    assert!(!security::sok_disagrees(security::sok::Rating::Partial, F));
}

#[test]
fn cli_json_has_every_property() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_e2elab"))
        .args(["security", "-p", "plaintext", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["protocol"], "plaintext");
    for p in Property::ALL {
        let o = r["properties"][p.name()]["outcome"].as_str().unwrap();
        assert!(["holds", "fails", "not_applicable"].contains(&o), "{o}");
        assert!(!r["properties"][p.name()]["evidence"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    assert!(v["findings"].is_array());
    let md = std::process::Command::new(env!("CARGO_BIN_EXE_e2elab"))
        .args(["security", "-p", "plaintext", "--format", "md"])
        .output()
        .unwrap();
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.contains("### SoK ratings used"));
    assert!(md.contains("| replay | fails / not_claimed |"), "{md}");
}
