//! Integrity of the protected content: the attacker changes the protected
//! payload of Alice's stanza (a canary message with a 1 KiB body) in flight
//! (one bit at sixteen spread positions of the decoded payload, or half of
//! it cut off), wraps it (a changed copy of the child that carries the
//! payload placed before it, the same copy without its attributes so no
//! referenced id is duplicated, or the copy in its place with the original
//! moved into an unknown element: XML signature wrapping), or replaces the
//! whole stanza with one Mallory wrote with her own key under Alice's JID.
//! Clear parts of the stanza are left alone here: what they let an attacker
//! rewrite is data of the coverage row.
//!
//! Baseline: the unmodified stanza is delivered intact with no error.
//! Outcome: `fails` when any changed stanza is delivered with content that
//! differs from what Alice sent.

use super::hooks::forger_stanza;
use super::wire::{mutate_payload, wrap_payload, Mutation, Wrap};
use super::world::{canary_stanza, capture, carrier, error_kinds, same_content, short, World};
use super::{cell, Cell, Outcome, R};
use crate::link::{Dir, Link};
use e2elab_core::{stanza, Property, SessionState, StanzaKind};
use serde_json::json;

fn live(link: &Link) -> bool {
    (0..2).all(|i| link.party(i).session().state() == SessionState::Established)
}

/// A canary message whose body is 1 KiB long, so that its protected
/// payload is the largest text of the wire stanza (larger than, e.g., a
/// rekey's DH value travelling beside it).
fn long_canary(n: u64) -> R<e2elab_core::Element> {
    let (mut el, _) = canary_stanza(StanzaKind::Message, 0, n)?;
    if let Some(b) = el.get_child_mut("body", stanza::NS_CLIENT) {
        let t = b.text();
        let _ = b.take_nodes();
        b.append_text(format!("{t} {}", crate::driver::body_text(n, 0, 1024)));
    }
    Ok(el)
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    // Baseline.
    let mut link = w.established()?;
    let el = long_canary(100)?;
    let wires = capture(&mut link, 0, &el)?;
    let e0 = link.party(1).errors.len();
    let mut got = Vec::new();
    for (d, x) in &wires {
        got.extend(link.deliver_raw(*d, x).delivered);
    }
    let _ = link.pump();
    if !got.iter().any(|g| same_content(g, &el)) || link.party(1).errors.len() > e0 {
        return Err(crate::fail!(
            "baseline: the unmodified stanza was not delivered intact (errors: {:?})",
            error_kinds(&link, 1, e0)
        ));
    }
    type Change = Box<dyn Fn(&str) -> Option<String>>;
    let mut changes: Vec<(String, Change)> = Vec::new();
    let mut mutations: Vec<Mutation> = (0..16).map(|k| Mutation::Flip(2 * k + 1, 32)).collect();
    mutations.push(Mutation::Truncate);
    for m in mutations {
        changes.push((m.describe(), Box::new(move |x: &str| mutate_payload(x, m))));
    }
    for how in [
        Wrap::CopyBefore,
        Wrap::BareCopyBefore,
        Wrap::MoveIntoWrapper,
    ] {
        changes.push((
            how.describe(),
            Box::new(move |x: &str| wrap_payload(x, how)),
        ));
    }
    let mut attempts = Vec::new();
    let mut modified = Vec::new();
    for (i, (what, change)) in changes.iter().enumerate() {
        if !live(&link) {
            link = w.established()?;
        }
        let el = long_canary(101 + i as u64)?;
        let wires = capture(&mut link, 0, &el)?;
        let Some(ci) = carrier(&wires, Dir::AtoB) else {
            return Err("Alice's send put nothing on the wire towards Bob".into());
        };
        let Some(forged) = change(&wires[ci].1) else {
            return Err(crate::fail!(
                "no protected payload to change in {}",
                short(&wires[ci].1)
            ));
        };
        let e0 = link.party(1).errors.len();
        let mut got = Vec::new();
        for (j, (d, x)) in wires.iter().enumerate() {
            let x = if j == ci { &forged } else { x };
            got.extend(link.deliver_raw(*d, x).delivered);
        }
        let _ = link.pump();
        let bad: Vec<String> = got
            .iter()
            .filter(|g| !same_content(g, &el))
            .map(|g| short(&stanza::serialize(g)))
            .collect();
        let result = if !bad.is_empty() {
            modified.push(what.clone());
            "delivered_modified"
        } else if !got.is_empty() {
            "delivered_intact"
        } else {
            "rejected"
        };
        attempts.push(json!({
            "attack": what,
            "result": result,
            "errors": error_kinds(&link, 1, e0),
            "delivered_modified": bad,
        }));
    }
    // Replacement: Mallory's own stanza under Alice's JID.
    if !live(&link) {
        link = w.established()?;
    }
    let (mine, _) = canary_stanza(StanzaKind::Message, 0, 199)?;
    let mut mine_body = mine.clone();
    if let Some(b) = mine_body.get_child_mut("body", stanza::NS_CLIENT) {
        let _ = b.take_nodes();
        b.append_text("F0RGED by Mallory".to_string());
    }
    let replacement = forger_stanza(w, &mine_body, link.now())?;
    match &replacement {
        Some(x) => {
            let e0 = link.party(1).errors.len();
            let w0 = link.party(1).warnings.len();
            let d = link.deliver_raw(Dir::AtoB, x);
            let _ = link.pump();
            let warned: Vec<&str> = link.party(1).warnings[w0..]
                .iter()
                .map(super::world::warning_kind)
                .collect();
            let accepted = d.delivered.iter().any(|g| {
                g.get_child("body", stanza::NS_CLIENT)
                    .is_some_and(|b| b.text().contains("F0RGED"))
            });
            let result = match (accepted, warned.is_empty()) {
                (true, true) => {
                    modified.push("replaced by Mallory's own stanza".into());
                    "delivered_modified"
                }
                (true, false) => "delivered_with_warning",
                (false, _) if d.delivered.is_empty() => "rejected",
                _ => "delivered_intact",
            };
            attempts.push(json!({
                "attack": "stanza replaced by one Mallory wrote with her own key under Alice's JID",
                "result": result,
                "warnings": warned,
                "errors": error_kinds(&link, 1, e0),
            }));
        }
        None => attempts.push(json!({
            "attack": "stanza replaced by one Mallory wrote with her own key under Alice's JID",
            "result": "not_produced",
            "why": "Mallory's session emits no protected stanza without a handshake with Bob",
        })),
    }
    let count = |r: &str| attempts.iter().filter(|a| a["result"] == r).count();
    let flips = modified
        .iter()
        .filter(|m| m.starts_with("bit flipped"))
        .count();
    let others: Vec<&String> = modified
        .iter()
        .filter(|m| !m.starts_with("bit flipped"))
        .collect();
    Ok(vec![cell(
        w,
        Property::Integrity,
        "",
        Outcome::unless(!modified.is_empty()),
        format!(
            "{} attacks on the protected payload: {} delivered modified content{}, {} rejected, {} delivered the original intact, {} delivered with a warning, {} not producible",
            attempts.len(),
            modified.len(),
            if modified.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} of 16 bit flips{}{})",
                    flips,
                    if others.is_empty() { "" } else { ", " },
                    others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            },
            count("rejected"),
            count("delivered_intact"),
            count("delivered_with_warning"),
            count("not_produced")
        ),
        json!({"unmodified_delivered_intact": true}),
        json!({"attempts": attempts}),
    )])
}
