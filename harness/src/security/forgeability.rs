//! Forgeability: can someone other than Alice, holding only the wire and
//! public keys, write a stanza that verifies under Bob's keys as hers, with
//! content she never sent?
//!
//! Two ways are tried. (1) From the transcript of a conversation, with
//! whatever the protocol publishes on the wire (OTR's revealed MAC keys,
//! XEP-0200's `<old/>` keys) and its malleable encryption
//! ([`super::hooks::Hooks::forge_from_wire`]); the forgery is shown to the
//! online judge holding Bob's state from just before the original stanza,
//! and counts when that judge accepts it (checked against a tampered copy)
//! with content other than Alice's. (2) Mallory writes a stanza with her
//! own key under Alice's JID and sends it to Bob's live session; it counts
//! when Bob delivers it as protected without a warning.
//!
//! Baseline: Bob delivered every one of Alice's stanzas of the conversation.
//! Outcome: `holds` (forgeable) when either way succeeds.

use super::hooks::{forger_stanza, judge_checked, JudgeKnowledge};
use super::world::{message, seen, World};
use super::{cell, Cell, Outcome, R};
use crate::link::Dir;
use e2elab_core::{stanza, Property};
use serde_json::json;
use std::collections::HashMap;

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut link = w.established()?;
    let mut states = HashMap::new();
    let mut sent = Vec::new();
    for n in 0..4u64 {
        for from in 0..2 {
            let body = super::world::canary(&format!("FG{from}"), n);
            let el = message(from, &format!("fg{from}-{n}"), &body)?;
            link.advance(crate::driver::MESSAGE_INTERVAL);
            if from == 0 {
                let st = link
                    .party(1)
                    .session()
                    .dangerous_export_state()
                    .map_err(|e| e.to_string())?;
                states.insert(link.emissions.len(), st);
            }
            let before = link.party(1 - from).delivered.len();
            link.send(from, el).map_err(|e| e.to_string())?;
            link.pump().map_err(|e| e.to_string())?;
            if link.party(1 - from).delivered.len() == before {
                return Err(format!(
                    "baseline: message {n} from party {from} was not delivered"
                ));
            }
            sent.push(body);
        }
    }
    let t = seen(&link);
    // (1) From the wire.
    let mut wire_forgeries = Vec::new();
    let mut accepted = Vec::new();
    for f in w.hooks.forge_from_wire(w, &t)? {
        if !t[f.index].from_initiator {
            continue;
        }
        // Bob's state just before the original stanza: the latest snapshot
        // taken at or before its index.
        let Some(st) = states
            .iter()
            .filter(|(i, _)| **i <= f.index)
            .max_by_key(|(i, _)| **i)
            .map(|(_, s)| s.clone())
        else {
            continue;
        };
        let j = JudgeKnowledge {
            alice: w.alice.id.public.clone(),
            judge_identity: w.bob.id.clone(),
            state: Some(st),
            online: true,
            at: t[f.index].at,
        };
        let v = judge_checked(w.hooks.as_ref(), w, &f.xml, &j)?;
        let original = judge_checked(w.hooks.as_ref(), w, &t[f.index].xml, &j)?;
        let differs = v.content.is_some() && v.content != original.content;
        let ok = v.authentic && differs;
        if ok {
            accepted.push(format!("stanza #{}", f.index + 1));
        }
        wire_forgeries.push(json!({
            "stanza": f.index + 1,
            "how": f.how,
            "judge": {"authentic": v.authentic, "reason": v.reason},
            "content_differs": differs,
            "accepted_as_alices": ok,
        }));
    }
    // (2) Mallory's own stanza to Bob's live session.
    let forged = message(0, "fgm", "c4n4ryMALLORYZ")?;
    let mallory = match forger_stanza(w, &forged, link.now())? {
        Some(x) => {
            let w0 = link.party(1).warnings.len();
            let d = link.deliver_raw(Dir::AtoB, &x);
            let _ = link.pump();
            let silent = link.party(1).warnings.len() == w0;
            let got = d
                .delivered
                .iter()
                .any(|g| stanza::serialize(g).contains("c4n4ryMALLORYZ"));
            if got && silent {
                accepted.push("Mallory's own stanza".into());
            }
            json!({"delivered_as_protected": got, "warned": !silent, "error": d.result.err().map(|e| e.kind().to_string())})
        }
        None => {
            json!({"produced": false, "why": "Mallory's session emits no protected stanza without a handshake with Bob"})
        }
    };
    let forgeable = !accepted.is_empty();
    Ok(vec![cell(
        w,
        Property::Forgeability,
        "",
        if forgeable {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        if forgeable {
            format!(
                "forged without Alice's keys and accepted as hers: {}",
                accepted.join(", ")
            )
        } else {
            format!(
                "{} forgery from the wire tried, Mallory's own stanza {}: nothing accepted as Alice's",
                wire_forgeries.len(),
                if mallory["produced"] == false { "not producible" } else { "refused" }
            )
        },
        json!({"alices_stanzas_delivered": sent.len()}),
        json!({"from_the_wire": wire_forgeries, "mallorys_own_stanza": mallory}),
    )])
}
