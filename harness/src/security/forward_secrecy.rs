//! Forward secrecy as key recovery: Alice and Bob talk (two exchanges with
//! canary bodies) and close; then both long-term keys leak. The attacker
//! feeds the recorded transcript to the profile's attacker
//! ([`super::hooks::Attacker`]) holding both keys, which derives every key
//! they make derivable (and anything readable without a key counts too).
//!
//! Baselines: (1) the same reader holding nothing reads no canary that is
//! not already in clear on the wire; (2) holding Bob's session state taken
//! before the second exchange (and his key), it reads at least one canary
//! of that exchange: the reader does read this profile's traffic, so a
//! failure to read with the long-term keys means something. Outcome:
//! `fails` when any canary is read.

use super::hooks::{Knowledge, Seen};
use super::world::{converse, seen, World};
use super::{cell, wire, Cell, Outcome, R};
use crate::link::{Dir, Phase};
use e2elab_core::Property;
use serde_json::json;

/// What an attacker read: (transcript index, content, which key).
pub type Read = Vec<(usize, String, String)>;

/// Feed `t` to the profile's attacker holding `k`; what it read, and its notes.
pub fn read_transcript(w: &World, t: &[Seen], k: &Knowledge) -> R<(Read, Vec<String>)> {
    let mut a = w.hooks.attacker(w, k)?;
    let mut out = Vec::new();
    for (i, s) in t.iter().enumerate() {
        let r = a.observe(s)?;
        if let Some(c) = r.content {
            out.push((i, c, r.how.unwrap_or_default()));
        }
    }
    Ok((out, a.notes()))
}

/// The canaries of `bodies` found in what was read or in clear on the wire.
pub fn canaries_read(
    bodies: &[(Dir, String)],
    read: &[(usize, String, String)],
    t: &[Seen],
) -> (Vec<String>, Vec<String>) {
    let mut by_key = Vec::new();
    let mut in_clear = Vec::new();
    for (_, b) in bodies {
        if t.iter().any(|s| wire::readable_in(&s.xml, b.as_bytes())) {
            in_clear.push(b.clone());
        } else if read.iter().any(|(_, c, _)| c.contains(b.as_str())) {
            by_key.push(b.clone());
        }
    }
    (by_key, in_clear)
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut link = w.established()?;
    let first = converse(&mut link, 1, "FS")?;
    let bob_state = link
        .party(1)
        .session()
        .dangerous_export_state()
        .map_err(crate::Error::msg)?;
    let mark = link.emissions.len();
    let second = converse(&mut link, 1, "FT")?;
    link.set_phase(Phase::Close);
    link.close(0).map_err(crate::Error::msg)?;
    let _ = link.pump();
    let t = seen(&link);
    let all: Vec<(Dir, String)> = first.iter().chain(second.iter()).cloned().collect();
    // Baseline 1: nothing held.
    let (r0, _) = read_transcript(w, &t, &Knowledge::none())?;
    let (by_key0, clear) = canaries_read(&all, &r0, &t);
    if !by_key0.is_empty() {
        return Err(crate::fail!(
            "baseline: the attacker read {by_key0:?} holding no secret although they are not in clear"
        ));
    }
    // Baseline 2: the reader reads this profile with the session state.
    let k_state = Knowledge {
        identities: vec![w.bob.id.clone()],
        states: vec![bob_state],
    };
    let (r1, _) = read_transcript(w, &t[mark..], &k_state)?;
    let (by_state, _) = canaries_read(&second, &r1, &t[mark..]);
    if by_state.is_empty() && clear.is_empty() {
        return Err("baseline: holding Bob's session state, the attacker read nothing of the exchange after it: the reader cannot read this profile, so nothing can be concluded".into());
    }
    // The attack: both long-term keys.
    let k = Knowledge {
        identities: vec![w.alice.id.clone(), w.bob.id.clone()],
        states: Vec::new(),
    };
    let (r, notes) = read_transcript(w, &t, &k)?;
    let (by_key, clear2) = canaries_read(&all, &r, &t);
    let read_total = by_key.len() + clear2.len();
    Ok(vec![cell(
        w,
        Property::ForwardSecrecy,
        "",
        Outcome::unless(read_total > 0),
        format!(
            "after the session closed, with both long-term keys the attacker read {} of {} canary bodies ({} with keys, {} in clear on the wire)",
            read_total,
            all.len(),
            by_key.len(),
            clear2.len()
        ),
        json!({
            "without_any_secret": {"read_with_keys": by_key0, "in_clear": clear},
            "with_bobs_session_state": {"read": by_state, "stanzas": t.len() - mark},
        }),
        json!({
            "leaked": k.describe(),
            "stanzas": t.len(),
            "canaries": all.len(),
            "read_with_keys": by_key,
            "in_clear": clear2,
            "how": r.iter().map(|(i, _, h)| format!("#{}: {h}", i + 1)).collect::<Vec<_>>(),
            "notes": notes,
        }),
    )])
}
