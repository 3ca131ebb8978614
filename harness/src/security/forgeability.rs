//! Forgeability: can someone other than Alice, holding only the wire and
//! public keys, write a stanza that verifies under Bob's keys as hers, with
//! content she never sent?
//!
//! Two ways are tried. (1) From the transcript of a conversation, with
//! whatever the protocol publishes on the wire (OTR's revealed MAC keys,
//! XEP-0200's `<old/>` keys) and its malleable encryption
//! ([`super::hooks::Hooks::forge_from_wire`]); the forgery is shown to the
//! online judge holding Bob's state from just before the original stanza,
//! and counts when that judge accepts it with content other than Alice's.
//! (2) Mallory writes a stanza with her own key under Alice's JID; it counts
//! when the online judge (Bob's keys and latest state) accepts it. Here the
//! judge is what Bob's client would accept: a receiver that checks nothing
//! accepts any forgery, which is what forgeability means.
//!
//! Baseline: Bob delivered every one of Alice's stanzas of the conversation,
//! and the online judge accepts the genuine stanza a forgery replaces (else
//! the judge is broken and the experiment an error). Outcome: `holds`
//! (forgeable) when either way succeeds.

use super::hooks::{forger_stanza, JudgeKnowledge};
use super::world::{message, seen, World};
use super::{cell, Cell, Outcome, R};
use e2elab_core::Property;
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
                    .map_err(crate::Error::msg)?;
                states.insert(link.emissions.len(), st);
            }
            let before = link.party(1 - from).delivered.len();
            link.send(from, el).map_err(crate::Error::msg)?;
            link.pump().map_err(crate::Error::msg)?;
            if link.party(1 - from).delivered.len() == before {
                return Err(crate::fail!(
                    "baseline: message {n} from party {from} was not delivered"
                ));
            }
            sent.push(body);
        }
    }
    let t = seen(&link);
    let judge_for = |state: e2elab_core::StateExport, at| JudgeKnowledge {
        alice: w.alice.id.public.clone(),
        judge_identity: w.bob.id.clone(),
        state: Some(state),
        online: true,
        at,
    };
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
        let j = judge_for(st, t[f.index].at);
        let original = w.hooks.judge(w, &t[f.index].xml, &j)?;
        if !original.authentic {
            return Err(crate::fail!(
                "baseline: holding Bob's state, the judge rejects Alice's genuine stanza #{}: the judge is broken ({})",
                f.index + 1,
                original.reason
            ));
        }
        let v = w.hooks.judge(w, &f.xml, &j)?;
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
    // (2) Mallory's own stanza, shown to the online judge as if it were
    // Alice's next one.
    let forged = message(0, "fgm", "c4n4ryMALLORYZ")?;
    let now = link.now();
    let mallory = match forger_stanza(w, &forged, now)? {
        Some(x) => {
            let st = link
                .party(1)
                .session()
                .dangerous_export_state()
                .map_err(crate::Error::msg)?;
            let v = w.hooks.judge(w, &x, &judge_for(st, now))?;
            let got = v
                .content
                .as_deref()
                .is_some_and(|c| c.contains("c4n4ryMALLORYZ"));
            if v.authentic && got {
                accepted.push("Mallory's own stanza".into());
            }
            json!({"produced": true, "judge": {"authentic": v.authentic, "reason": v.reason}})
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
                "{} forgery(ies) from the wire judged, Mallory's own stanza {}: nothing accepted as Alice's",
                wire_forgeries.len(),
                if mallory["produced"] == false {
                    "not producible"
                } else {
                    "refused"
                }
            )
        },
        json!({"alices_stanzas_delivered": sent.len()}),
        json!({"from_the_wire": wire_forgeries, "mallorys_own_stanza": mallory}),
    )])
}
