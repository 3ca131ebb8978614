//! Identity protection.
//!
//! - *passive*: an observer of an honest session (handshake and one
//!   exchange) searches every stanza, raw and base64-/hex-decoded, for each
//!   party's public-key bytes (12-byte windows no other key in the run
//!   shares, at least two), fingerprint (hex or bytes) or key id (the last
//!   16 hex digits of the fingerprint, or an OpenPGP subkey id).
//! - *active*: Mallory runs the protocol with each victim, with her own key
//!   under the other party's JID (as the responder towards Alice, as the
//!   initiator towards Bob); the victim holds its real peer's key, so
//!   Mallory cannot pass as that peer: does the victim reveal its key to
//!   her anyway (her session authenticates the victim's real key, and would
//!   have refused a wrong one)?
//!
//! Baselines: the search finds neither Eve's nor a stranger's key material
//! (keys not in the session); in an honest session each side is shown the
//! other's real fingerprint (so the active comparison means something).
//! Outcome: `fails` when found (passive); when authenticated, or found by
//! the passive observer she also is (active).

use super::world::{converse, seen, World};
use super::{cell, wire, Cell, Outcome, R};
use crate::link::Link;
use e2elab_core::{Property, PublicIdentity};
use serde_json::json;

const W: usize = 12;

fn openpgp_key_ids(data: &[u8]) -> Vec<Vec<u8>> {
    use e2elab_openpgp::openpgp::parse::Parse;
    match e2elab_openpgp::openpgp::Cert::from_bytes(data) {
        Ok(c) => c
            .keys()
            .map(|k| k.key().keyid().as_bytes().to_vec())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn norm(f: &str) -> String {
    f.replace([':', ' '], "").to_lowercase()
}

/// Where `me`'s key material shows in `xmls` (others' keys excluded from the windows).
fn search(me: &PublicIdentity, others: &[&PublicIdentity], xmls: &[String]) -> Vec<String> {
    let ex: Vec<&[u8]> = others.iter().map(|o| o.data.as_slice()).collect();
    let windows = wire::distinctive_windows(&me.data, W, &ex);
    let fp = me.fingerprint.as_deref().map(norm);
    let keyid = fp
        .as_ref()
        .filter(|f| f.len() >= 16)
        .map(|f| f[f.len() - 16..].to_string());
    let fp_bytes = fp.as_ref().and_then(|f| hex::decode(f).ok());
    let key_ids = openpgp_key_ids(&me.data);
    let mut hits = Vec::new();
    for (i, x) in xmls.iter().enumerate() {
        let lower = x.to_lowercase();
        let mut what = Vec::new();
        if key_ids
            .iter()
            .any(|k| wire::readable_in(x, k) || lower.contains(&hex::encode(k)))
        {
            what.push("OpenPGP key id");
        }
        if wire::count_windows_in(x, &windows, W) >= 2 {
            what.push("public key bytes");
        }
        if fp.as_ref().is_some_and(|f| lower.contains(f.as_str()))
            || fp_bytes
                .as_ref()
                .is_some_and(|b| b.len() >= 8 && wire::readable_in(x, b))
        {
            what.push("fingerprint");
        } else if keyid.as_ref().is_some_and(|k| lower.contains(k.as_str())) {
            what.push("key id (fingerprint tail)");
        }
        if !what.is_empty() {
            hits.push(format!("#{}: {}", i + 1, what.join(" + ")));
        }
    }
    hits
}

/// Mallory plays the other role with her own key towards `victim`, with
/// `victims_key` as what her client holds for the victim (`None`: first
/// contact). Whether the victim's stanzas were accepted by Mallory's
/// session, the fingerprint it shows, and a description.
/// Mallory's run: (she accepted the victim's key, the fingerprint her
/// session showed, a line of evidence).
type MalloryRun = (bool, Option<String>, String);

fn mallory_run(
    w: &World,
    victim: usize,
    victims_key: Option<PublicIdentity>,
) -> R<Result<MalloryRun, String>> {
    let them = victim;
    let her = 1 - victim;
    // The victim knows its real peer's key: Mallory cannot pass as the
    // peer, she can only run the protocol and see what the victim reveals.
    let victims_client = w.fresh_client();
    let v = w.side_session(
        victims_client.as_ref(),
        them,
        w.ids()[them].clone(),
        Some(w.ids()[her].public.clone()),
        None,
    )?;
    let fresh = w.fresh_client();
    // A profile may refuse a session without the peer's key: the caller
    // then retries with one, and reports both reasons if that fails too.
    let m = match w.side_session(
        fresh.as_ref(),
        her,
        w.mallory[her].clone(),
        victims_key,
        None,
    ) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut link = if them == 0 {
        Link::new(v, m)
    } else {
        Link::new(m, v)
    };
    let hs = link.handshake();
    link.set_phase(crate::link::Phase::Data);
    let msg = super::world::message(them, "ip", "c4n4ryIDPROTZ")?;
    let _ = link.send(them, msg);
    let _ = link.pump();
    let p = link.party(her);
    let warned = p
        .warnings
        .iter()
        .any(|x| super::world::warning_kind(x) == "key_changed");
    // Mallory's own session is what matters: did it authenticate the victim
    // (established, or a stanza of the victim's checked out), whatever the
    // victim then made of Mallory?
    let mallory_established =
        p.session().state() == e2elab_core::SessionState::Established && p.established.is_some();
    let accepted =
        (mallory_established || !p.delivered.is_empty()) && !warned && p.errors.is_empty();
    let fp = p.established.as_ref().and_then(|e| e.fingerprint.clone());
    Ok(Ok((
        accepted,
        fp,
        format!(
            "handshake {}, {} of the victim's stanzas delivered, {} error(s){}",
            if hs.is_ok() {
                "completed"
            } else {
                "did not complete"
            },
            p.delivered.len(),
            p.errors.len(),
            if warned { ", key-change warning" } else { "" }
        ),
    )))
}

/// Does Mallory get `victim`'s key authenticated? Her client first
/// contacts the victim holding no key for it (or, where the profile needs
/// one in advance, the victim's public key from a directory); the same run
/// with a key that is not the victim's must then not be accepted alike
/// (else no key was checked).
fn mallory_learns(w: &World, victim: usize) -> R<(bool, serde_json::Value)> {
    let (first, how) = match mallory_run(w, victim, None)? {
        Ok(r) => (r, "no key for the victim (first contact)"),
        Err(without) => (
            mallory_run(w, victim, Some(w.ids()[victim].public.clone()))?.map_err(|with| {
                crate::fail!(
                    "Mallory's session could not be created: without the victim's key: \
                     {without}; with it: {with}"
                )
            })?,
            "the victim's public key from a directory",
        ),
    };
    let mut wrong = w.mallory[victim].public.clone();
    wrong.jid = w.ids()[victim].public.jid.clone();
    let control = mallory_run(w, victim, Some(wrong))?.ok();
    let real = w.ids()[victim].public.fingerprint.as_deref().map(norm);
    let checked = control.as_ref().is_none_or(|(acc, _, _)| !acc);
    let learned = first.0 && real.is_some() && first.1.as_deref().map(norm) == real && checked;
    Ok((
        learned,
        json!({
            "mallory_holds": how,
            "run": first.2,
            "fingerprint_shown_is_the_victims": first.1.as_deref().map(norm) == real,
            "with_a_key_not_the_victims": control.map(|c| c.2).unwrap_or_else(|| "session refused".into()),
            "victims_key_authenticated": learned,
        }),
    ))
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut link = w.established()?;
    converse(&mut link, 1, "IP")?;
    let t: Vec<String> = seen(&link).into_iter().map(|s| s.xml).collect();
    let ids = [&w.alice.id.public, &w.bob.id.public];
    let all: Vec<&PublicIdentity> = vec![
        ids[0],
        ids[1],
        &w.mallory[0].public,
        &w.mallory[1].public,
        &w.eve.public,
        &w.stranger.public,
    ];
    // Baseline: keys that are not in the session are not found.
    for (name, k) in [("Eve", &w.eve.public), ("a stranger", &w.stranger.public)] {
        let others: Vec<&PublicIdentity> = all.iter().copied().filter(|o| *o != k).collect();
        let hits = search(k, &others, &t);
        if !hits.is_empty() {
            return Err(crate::fail!("baseline: the search found {name}'s key material, which is not in the session: {hits:?}"));
        }
    }
    let mut found = Vec::new();
    let mut evidence = Vec::new();
    for (i, who) in ["Alice", "Bob"].iter().enumerate() {
        let others: Vec<&PublicIdentity> = all.iter().copied().filter(|o| *o != ids[i]).collect();
        let hits = search(ids[i], &others, &t);
        if !hits.is_empty() {
            found.push(*who);
        }
        evidence
            .push(json!({"party": who, "key_material_bytes": ids[i].data.len(), "found_in": hits}));
    }
    let passive = cell(
        w,
        Property::IdentityProtection,
        "passive",
        Outcome::unless(!found.is_empty()),
        if found.is_empty() {
            format!(
                "a passive observer of {} stanzas found neither party's key material",
                t.len()
            )
        } else {
            format!(
                "a passive observer found the key material of [{}]",
                found.join(", ")
            )
        },
        json!({"keys_not_in_the_session_found": 0, "stanzas": t.len()}),
        json!({"parties": evidence}),
    );
    // Active.
    let real = |i: usize| w.ids()[i].public.fingerprint.as_deref().map(norm);
    let shown: Vec<Option<String>> = (0..2)
        .map(|i| {
            link.party(1 - i)
                .established
                .as_ref()
                .and_then(|p| p.fingerprint.as_deref().map(norm))
        })
        .collect();
    for (i, shown) in shown.iter().enumerate() {
        if real(i).is_some() && shown.is_some() && *shown != real(i) {
            return Err(crate::fail!(
                "baseline: in the honest session the peer was shown {shown:?}, not the real fingerprint"
            ));
        }
    }
    let mut learned = Vec::new();
    let mut runs = Vec::new();
    for (victim, who, her_role) in [(0, "Alice", "responder"), (1, "Bob", "initiator")] {
        let (got, ev) = mallory_learns(w, victim)?;
        if got {
            learned.push(format!("{who}'s (Mallory as {her_role})"));
        }
        runs.push(json!({"victim": who, "mallory_as": her_role, "result": ev}));
    }
    // An active attacker also sees what a passive one sees.
    let active = cell(
        w,
        Property::IdentityProtection,
        "active",
        Outcome::unless(!learned.is_empty() || !found.is_empty()),
        match (learned.is_empty(), found.is_empty()) {
            (true, true) => "Mallory, running the protocol with her own key, got neither victim's key authenticated, and a passive observer finds none".into(),
            (true, false) => format!(
                "Mallory got neither victim's key authenticated, but as an observer she reads the key material of [{}] anyway",
                found.join(", ")
            ),
            _ => format!("Mallory got {} key authenticated", learned.join(" and ")),
        },
        json!({"honest_peers_shown_real_fingerprints": true}),
        json!({"runs": runs, "passive_observer_found": found}),
    );
    Ok(vec![passive, active])
}
