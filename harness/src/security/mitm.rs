//! Man-in-the-middle detection under explicit user models.
//!
//! Mallory holds her own keys labelled with Alice's and Bob's JIDs and runs
//! one session with each victim (as Bob towards Alice, as Alice towards
//! Bob), relaying Alice's message. Every variant is run twice with the same
//! clients' memory and keys: honestly (Alice and Bob talk directly) and
//! attacked.
//!
//! - Keys: *first-contact*: fresh clients that remember nothing, no peer
//!   key where the profile accepts that (trust on first use), else the key
//!   a directory returns (the real one honestly, Mallory's under attack);
//!   *pinned*: the victims' own clients after earlier sessions, with the
//!   real peer keys provisioned.
//! - User models: *none*: users compare nothing and see what their client
//!   shows (failure, errors, warnings); *oob*: users also compare what the
//!   protocol shows out of band: the SAS, each side's displayed peer
//!   fingerprint against the peer's own, the OTR secure session id.
//!
//! The signals of a run are what its model lets users see. Baseline: the
//! honest run shows none of the alarm signals (not established, message
//! lost, errors, key-change warning, mismatched SAS or fingerprint); a
//! standing prompt such as "unauthenticated: compare the SAS" is allowed.
//! The attack is *detected* when it shows a signal the honest run does not.
//! Outcome: `fails` when not detected.

use super::world::{message, same_content, warning_kind, World};
use super::{cell, Cell, Outcome, R};
use crate::link::{Link, Phase};
use e2elab_core::{Identity, Property, Protocol, PublicIdentity};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

struct RunOut {
    signals: BTreeSet<String>,
    facts: serde_json::Value,
}

fn norm(f: &str) -> String {
    f.replace([':', ' ', '[', ']'], "").to_lowercase()
}

/// A victim's session, and which key it holds for its peer.
fn victim_session(
    w: &World,
    client: &dyn Protocol,
    idx: usize,
    first_contact: bool,
    directory_key: &PublicIdentity,
) -> R<(crate::driver::SessionWithEnv, &'static str)> {
    let me: Arc<Identity> = w.ids()[idx].clone();
    if first_contact {
        if let Ok(s) = w.side_session(client, idx, me.clone(), None, None) {
            return Ok((s, "no peer key (trust on first use)"));
        }
        return Ok((
            w.side_session(client, idx, me, Some(directory_key.clone()), None)?,
            "the peer key a directory returned",
        ));
    }
    Ok((
        w.side_session(client, idx, me, Some(w.ids()[1 - idx].public.clone()), None)?,
        "the real peer key, pinned after an earlier session",
    ))
}

fn signals_of(
    w: &World,
    a: &crate::link::Party,
    b: &crate::link::Party,
    delivered: bool,
    oob: bool,
) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for (who, p) in [("alice", a), ("bob", b)] {
        if p.established.is_none() || p.session().state() != e2elab_core::SessionState::Established
        {
            s.insert(format!("{who}: not established"));
        }
        for e in &p.errors {
            s.insert(format!("{who}: error {}", e.kind()));
        }
        for x in &p.warnings {
            s.insert(format!("{who}: warning {}", warning_kind(x)));
        }
    }
    if !delivered {
        s.insert("message not delivered".into());
    }
    if oob {
        let sas = |p: &crate::link::Party| p.established.as_ref().and_then(|e| e.sas.clone());
        match (sas(a), sas(b)) {
            (Some(x), Some(y)) if norm(&x) != norm(&y) => {
                s.insert("SAS differ".into());
            }
            (Some(_), None) | (None, Some(_)) => {
                s.insert("SAS shown on one side only".into());
            }
            _ => {}
        }
        let own = [
            w.alice.id.public.fingerprint.as_deref().map(norm),
            w.bob.id.public.fingerprint.as_deref().map(norm),
        ];
        for (who, p, peer_own) in [("alice", a, &own[1]), ("bob", b, &own[0])] {
            let shown = p
                .established
                .as_ref()
                .and_then(|e| e.fingerprint.as_deref().map(norm));
            if peer_own.is_some() && shown.is_some() && shown != *peer_own {
                s.insert(format!("{who}: shown fingerprint is not the peer's own"));
            }
        }
    }
    s
}

fn is_alarm(sig: &str) -> bool {
    !(sig.ends_with("warning unauthenticated") || sig.ends_with("warning other"))
}

/// The victims' clients: fresh ones; for the pinned variants after one
/// honest session between them (so each remembers the other: keys,
/// retained secrets).
fn clients(w: &World, first_contact: bool) -> R<[Box<dyn Protocol>; 2]> {
    let c = [w.fresh_client(), w.fresh_client()];
    if !first_contact {
        let a = w.side_session(
            c[0].as_ref(),
            0,
            w.alice.id.clone(),
            Some(w.bob.id.public.clone()),
            None,
        )?;
        let b = w.side_session(
            c[1].as_ref(),
            1,
            w.bob.id.clone(),
            Some(w.alice.id.public.clone()),
            None,
        )?;
        let mut l = Link::new(a, b);
        l.handshake()
            .map_err(|e| crate::fail!("earlier honest session: {e}"))?;
        l.set_phase(Phase::Data);
        let _ = l.send(0, message(0, "earlier", "an earlier session")?);
        let _ = l.pump();
    }
    Ok(c)
}

fn honest(w: &World, first_contact: bool, oob: bool) -> R<RunOut> {
    let c = clients(w, first_contact)?;
    let (a, how) = victim_session(w, c[0].as_ref(), 0, first_contact, &w.bob.id.public)?;
    let (b, _) = victim_session(w, c[1].as_ref(), 1, first_contact, &w.alice.id.public)?;
    let mut link = Link::new(a, b);
    let hs = link.handshake();
    link.set_phase(Phase::Data);
    let m = message(0, "mitm0", "c4n4ryHONESTZ")?;
    let _ = link.send(0, m.clone());
    let _ = link.pump();
    let delivered = link.party(1).delivered.iter().any(|g| same_content(g, &m));
    let signals = signals_of(w, link.party(0), link.party(1), delivered, oob);
    Ok(RunOut {
        facts: json!({"keys": how, "handshake": hs.err(), "delivered": delivered, "signals": signals}),
        signals,
    })
}

fn attacked(w: &World, first_contact: bool, oob: bool) -> R<RunOut> {
    let c = clients(w, first_contact)?;
    let (a, how) = victim_session(w, c[0].as_ref(), 0, first_contact, &w.mallory[1].public)?;
    let (b, _) = victim_session(w, c[1].as_ref(), 1, first_contact, &w.mallory[0].public)?;
    let mb = w.side_session(
        w.mallory_client.as_ref(),
        1,
        w.mallory[1].clone(),
        Some(w.alice.id.public.clone()),
        None,
    )?;
    let ma = w.side_session(
        w.mallory_client.as_ref(),
        0,
        w.mallory[0].clone(),
        Some(w.bob.id.public.clone()),
        None,
    )?;
    let mut l1 = Link::new(a, mb);
    let mut l2 = Link::new(ma, b);
    let _ = l1.handshake();
    let _ = l2.handshake();
    l1.set_phase(Phase::Data);
    l2.set_phase(Phase::Data);
    let m = message(0, "mitm1", "c4n4ryMITMZ")?;
    let mut mallory_read = false;
    let mut delivered = false;
    if l1.send(0, m.clone()).is_ok() {
        let _ = l1.pump();
        if let Some(got) = l1
            .party(1)
            .delivered
            .iter()
            .find(|g| same_content(g, &m))
            .cloned()
        {
            mallory_read = true;
            if l2.send(0, got).is_ok() {
                let _ = l2.pump();
                delivered = l2.party(1).delivered.iter().any(|g| same_content(g, &m));
            }
        }
    }
    let signals = signals_of(w, l1.party(0), l2.party(1), delivered, oob);
    let mallory_errors: Vec<String> = [l1.party(1), l2.party(0)]
        .iter()
        .flat_map(|p| p.errors.iter().map(|e| e.kind().to_string()))
        .collect();
    Ok(RunOut {
        facts: json!({
            "keys": how,
            "mallory_read": mallory_read,
            "mallory_errors": mallory_errors,
            "delivered": delivered,
            "sas": [l1.party(0).established.as_ref().and_then(|e| e.sas.clone()), l2.party(1).established.as_ref().and_then(|e| e.sas.clone())],
            "signals": signals,
        }),
        signals,
    })
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut cells = Vec::new();
    for (variant, oob, first) in [
        ("none/first-contact", false, true),
        ("none/pinned", false, false),
        ("oob/first-contact", true, true),
        ("oob/pinned", true, false),
    ] {
        let h = honest(w, first, oob)?;
        let alarms: Vec<&String> = h.signals.iter().filter(|s| is_alarm(s)).collect();
        if !alarms.is_empty() {
            return Err(crate::fail!(
                "baseline ({variant}): the honest run raised {alarms:?}"
            ));
        }
        let a = attacked(w, first, oob)?;
        let new: Vec<&String> = a.signals.difference(&h.signals).collect();
        // A relay that failed on Mallory's side, with nothing for the
        // victims to see but the lost message, is not a detection.
        if a.facts["mallory_read"] == false
            && new.iter().all(|s| s.as_str() == "message not delivered")
        {
            return Err(crate::fail!(
                "{variant}: Mallory's relay failed on her side ({}) and the victims saw nothing else: nothing can be concluded",
                a.facts["mallory_errors"]
            ));
        }
        let detected = !new.is_empty();
        cells.push(cell(
            w,
            Property::MitmDetection,
            variant,
            Outcome::unless(!detected),
            if detected {
                format!(
                    "detected: {}",
                    new.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!(
                    "undetected: the attacked run shows nothing the honest run does not{}",
                    if a.facts["mallory_read"] == true {
                        " (Mallory read the message)"
                    } else {
                        ""
                    }
                )
            },
            h.facts,
            json!({"run": a.facts, "signals_not_in_the_honest_run": new}),
        ));
    }
    Ok(cells)
}
