//! Confidentiality coverage: a distinct canary in every part of every stanza
//! kind the profile protects; which can a passive observer read on the wire
//! (raw, base64- or hex-decoded), and which clear parts can an attacker
//! rewrite without the receiver noticing?
//!
//! Labels: every delivery says which children it vouches for
//! ([`e2elab_core::Protection`]). A child labelled covered *and encrypted*
//! whose canary text or attribute the observer read on the wire is a label
//! that overclaims; a rewritten clear part delivered under a label that
//! calls it covered is one too. Either fails the row.
//!
//! Baseline: each canary stanza is delivered intact by the honest receiver,
//! and canaries that were never sent are not "found" on the wire (the
//! detector has no false positive). Outcome: `fails` when any part other
//! than the routing attributes (`id`, `to`, `from`, `type`) is readable.

use super::world::{canary, canary_stanza, capture, carrier, same_content, World};
use super::{cell, wire, Cell, Outcome, R};
use crate::link::Dir;
use e2elab_core::Property;
use serde_json::json;

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut link = w.established()?;
    let mut kinds = Vec::new();
    let (mut in_clear, mut routing, mut hidden) = (Vec::new(), Vec::new(), Vec::new());
    let mut all_wires = Vec::new();
    let mut overclaims = Vec::new();
    for (n, kind) in w.info.protects.iter().enumerate() {
        let (el, parts) = canary_stanza(*kind, 0, n as u64)?;
        let wires = capture(&mut link, 0, &el)?;
        let mut got = Vec::new();
        let mut labels = Vec::new();
        for (d, x) in &wires {
            let r = link.deliver_raw(*d, x);
            got.extend(r.delivered);
            labels.extend(r.labels);
        }
        let _ = link.pump();
        for (g, l) in got.iter().zip(&labels) {
            if !l.confidential {
                continue;
            }
            for c in g.children() {
                if !l.covered.contains(&e2elab_core::outbox::child_name(c)) {
                    continue;
                }
                let mut secrets: Vec<String> = vec![c.text()];
                secrets.extend(c.attrs().into_iter().map(|(_, v)| v.to_string()));
                let shown = secrets.iter().any(|t| {
                    t.len() >= 8
                        && wires
                            .iter()
                            .any(|(_, x)| wire::readable_in(x, t.as_bytes()))
                });
                if shown {
                    overclaims.push(format!(
                        "{} <{}/> labelled encrypted but readable on the wire",
                        kind.name(),
                        c.name()
                    ));
                }
            }
        }
        let intact = got.iter().filter(|g| same_content(g, &el)).count();
        if intact == 0 {
            return Err(crate::fail!(
                "baseline: the honest receiver did not deliver the {} intact",
                kind.name()
            ));
        }
        kinds.push(
            json!({"kind": kind.name(), "wire_stanzas": wires.len(), "delivered_intact": intact}),
        );
        for (part, c) in parts {
            let readable = wires
                .iter()
                .any(|(_, x)| wire::readable_in(x, c.as_bytes()));
            match (readable, part.contains("(outer)")) {
                (true, true) => routing.push(part),
                (true, false) => in_clear.push((part, c)),
                (false, _) => hidden.push(part),
            }
        }
        all_wires.extend(wires);
    }
    // The detector must not find what was never sent.
    for ghost in [canary("GHOST", 7), canary("BODY", 999)] {
        if all_wires
            .iter()
            .any(|(_, x)| wire::readable_in(x, ghost.as_bytes()))
        {
            return Err(crate::fail!(
                "baseline: the wire search found {ghost}, which was never sent"
            ));
        }
    }
    // Which clear parts of a message can be rewritten on the path?
    let mut rewritable = Vec::new();
    let mut not_rewritable = Vec::new();
    let msg_n = w
        .info
        .protects
        .iter()
        .position(|k| *k == e2elab_core::StanzaKind::Message)
        .unwrap_or(0) as u64;
    for (part, c50) in in_clear.iter().filter(|(p, _)| p.starts_with("message")) {
        let mut l = w.established()?;
        // The same canary stanza again, on a fresh session.
        let (el, _) = canary_stanza(e2elab_core::StanzaKind::Message, 0, msg_n)?;
        let wires = capture(&mut l, 0, &el)?;
        let Some(ci) = carrier(&wires, Dir::AtoB) else {
            continue;
        };
        let forged_text = c50.replacen("c4n4ry", "F0RGED", 1);
        if !wires[ci].1.contains(c50.as_str()) {
            not_rewritable.push(format!("{part} (readable only after decoding)"));
            continue;
        }
        let mut got = Vec::new();
        let mut labels = Vec::new();
        for (j, (d, x)) in wires.iter().enumerate() {
            let x = if j == ci {
                x.replace(c50.as_str(), &forged_text)
            } else {
                x.clone()
            };
            let r = l.deliver_raw(*d, &x);
            got.extend(r.delivered);
            labels.extend(r.labels);
        }
        let _ = l.pump();
        let forged: Vec<(&e2elab_core::Element, &e2elab_core::Protection)> = got
            .iter()
            .zip(&labels)
            .filter(|(g, _)| e2elab_core::stanza::serialize(g).contains(&forged_text))
            .collect();
        if !forged.is_empty() {
            for (g, lab) in &forged {
                for c in g.children() {
                    let name = e2elab_core::outbox::child_name(c);
                    if lab.covered.contains(&name)
                        && lab.authenticated
                        && e2elab_core::stanza::serialize(c).contains(&forged_text)
                    {
                        overclaims.push(format!(
                            "{part}: rewritten on the path, delivered in <{}/> labelled authenticated",
                            c.name()
                        ));
                    }
                }
            }
            rewritable.push(part.clone());
        } else {
            not_rewritable.push(part.clone());
        }
    }
    let readable: Vec<&String> = in_clear.iter().map(|(p, _)| p).collect();
    let outcome = Outcome::unless(!readable.is_empty() || !overclaims.is_empty());
    Ok(vec![cell(
        w,
        Property::ConfidentialityCoverage,
        "",
        outcome,
        format!(
            "in clear: [{}]; routing attributes in clear (not counted): {}; hidden: {}; clear parts an attacker rewrote and the receiver delivered: [{}]; labels that overclaim: [{}]",
            readable.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            routing.len(),
            hidden.len(),
            rewritable.join(", "),
            overclaims.join("; ")
        ),
        json!({"kinds": kinds, "ghost_canaries_found": 0}),
        json!({
            "in_clear": readable,
            "routing_in_clear": routing,
            "hidden": hidden,
            "rewritable_clear_parts": rewritable,
            "labels_overclaiming": overclaims,
            "clear_parts_not_rewritable": not_rewritable,
            "search": "raw text, every base64 run at each alignment, every hex run",
        }),
    )])
}
