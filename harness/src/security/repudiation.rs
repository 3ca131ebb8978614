//! Message repudiation: is there transferable proof that Alice wrote a
//! message (and a presence, where protected)?
//!
//! A judge holds either the transcript and every public key (*offline*) or,
//! in addition, everything Bob holds: his long-term key and his session
//! state just before the stanza arrived (*online*: Bob cooperates). The
//! judge's check ([`super::hooks::Hooks::judge`], counted only when it also
//! rejects a tampered copy) is run on Alice's genuine stanza and on what the
//! judge's knowledge holder (anyone offline; Bob online) can write "from
//! Alice" with other content ([`super::hooks::Hooks::simulate`]). The proof
//! is transferable when the judge accepts the genuine stanza and rejects the
//! simulation: only Alice could have made it.
//!
//! Baseline: Bob's own session delivered the genuine stanza intact; the
//! online judge, holding what Bob held, accepts it too (else the judge is
//! broken and the experiment an error); whatever the judge accepts carries
//! the content Alice sent. Outcome per judge: `fails` when any stanza kind
//! gives transferable proof.

use super::hooks::{judge_checked, JudgeKnowledge, Verdict};
use super::world::{canary_stanza, capture, carrier, deliver_all, same_content, World};
use super::{cell, Cell, Outcome, R};
use crate::link::Dir;
use e2elab_core::{Property, StanzaKind};
use serde_json::json;

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut results = [Vec::new(), Vec::new()];
    let mut transferable: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
    for kind in [StanzaKind::Message, StanzaKind::Presence] {
        if !w.info.protects.contains(&kind) {
            continue;
        }
        let (el, parts) = canary_stanza(kind, 0, 300)?;
        let marker = parts.first().map(|(_, c)| c.clone()).unwrap_or_default();
        let mut link = w.established()?;
        let bob_state = link
            .party(1)
            .session()
            .dangerous_export_state()
            .map_err(crate::Error::msg)?;
        let sent_at = link.now();
        let wires = capture(&mut link, 0, &el)?;
        let got = deliver_all(&mut link, &wires);
        if !got.iter().any(|g| same_content(g, &el)) {
            return Err(crate::fail!(
                "baseline: Bob did not deliver Alice's {} intact",
                kind.name()
            ));
        }
        let ci = carrier(&wires, Dir::AtoB).ok_or("no stanza towards Bob")?;
        let genuine = wires[ci].1.clone();
        let (other, _) = canary_stanza(kind, 0, 301)?;
        for (ji, online) in [false, true].into_iter().enumerate() {
            let j = JudgeKnowledge {
                alice: w.alice.id.public.clone(),
                judge_identity: if online {
                    w.bob.id.clone()
                } else {
                    w.stranger.clone()
                },
                state: online.then(|| bob_state.clone()),
                online,
                at: sent_at,
            };
            if online && !w.hooks.judge(w, &genuine, &j)?.authentic {
                return Err(crate::fail!(
                    "baseline: holding Bob's keys and state, the judge rejects Alice's {} that Bob's own session delivered: the judge is broken",
                    kind.name()
                ));
            }
            let g = judge_checked(w.hooks.as_ref(), w, &genuine, &j)?;
            if g.authentic && !g.content.as_deref().is_some_and(|c| c.contains(&marker)) {
                return Err(crate::fail!(
                    "baseline: the judge accepted Alice's {} but recovered other content",
                    kind.name()
                ));
            }
            let sim = match w.hooks.simulate(w, &genuine, &other, &j)? {
                Some(x) => judge_checked(w.hooks.as_ref(), w, &x, &j)?,
                None => Verdict {
                    authentic: false,
                    content: None,
                    reason: "the knowledge holder could write no such stanza".into(),
                },
            };
            let proof = g.authentic && !sim.authentic;
            if proof {
                transferable[ji].push(kind.name());
            }
            results[ji].push(json!({
                "kind": kind.name(),
                "genuine": {"authentic": g.authentic, "reason": g.reason},
                "simulated": {"authentic": sim.authentic, "reason": sim.reason},
                "transferable": proof,
            }));
        }
    }
    let mut cells = Vec::new();
    for (ji, variant) in ["offline", "online"].into_iter().enumerate() {
        let who = if ji == 0 {
            "a judge with the transcript and public keys"
        } else {
            "a judge holding Bob's key and session state"
        };
        cells.push(cell(
            w,
            Property::MessageRepudiation,
            variant,
            Outcome::unless(!transferable[ji].is_empty()),
            if transferable[ji].is_empty() {
                format!("{who} found no transferable proof of authorship")
            } else {
                format!(
                    "{who} accepts Alice's [{}] and rejects what {} writes in her name: transferable proof",
                    transferable[ji].join(", "),
                    if ji == 0 { "anyone else" } else { "Bob" }
                )
            },
            json!({"bob_delivered_intact": true, "judge_rejects_tampered_copies": "checked per verdict"}),
            json!({"judged": results[ji]}),
        ));
    }
    Ok(cells)
}
