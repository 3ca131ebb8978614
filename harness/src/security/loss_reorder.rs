//! Loss and reordering: the attacker drops Alice's first data stanza, then
//! (fresh session) swaps her next two.
//!
//! Robustness (XEP-0210's requirement, as figures): Alice and Bob
//! alternate [`RECOVERY_MESSAGES`] messages one second apart on the virtual
//! clock, 100 ms one way; the attacker drops Alice's third. Measured: the
//! messages that never arrive (the dropped one included), and the time
//! from the first receive error the loss causes until both sides are
//! established in a new session, or else until a later message of Alice's
//! is delivered (0 when no error follows the loss; none when neither
//! happens in the window). The
//! profile's own behaviour decides (ESessions' SIGMA profiles re-negotiate
//! by themselves, option `renegotiate`); nothing here knows a profile.
//!
//! Baseline: two stanzas in order are both delivered. Outcome: `fails`
//! when, after the loss, Alice's next stanza or Bob's reply is not
//! delivered, or when either swapped stanza is not.

use super::world::{capture, deliver_all, error_kinds, message, same_content, World};
use super::{cell, Cell, Outcome, R};
use e2elab_core::Property;
use serde_json::json;

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    // Baseline.
    let mut link = w.established()?;
    for (i, t) in ["in order 1", "in order 2"].iter().enumerate() {
        let m = message(0, &format!("b{i}"), t)?;
        let wires = capture(&mut link, 0, &m)?;
        if !deliver_all(&mut link, &wires)
            .iter()
            .any(|g| same_content(g, &m))
        {
            return Err(crate::fail!(
                "baseline: in-order stanza {} was not delivered",
                i + 1
            ));
        }
    }
    // Loss.
    let mut link = w.established()?;
    let lost = message(0, "l1", "this one is lost")?;
    let _ = capture(&mut link, 0, &lost)?;
    let e0 = link.party(1).errors.len();
    let m2 = message(0, "l2", "after the loss")?;
    let w2 = capture(&mut link, 0, &m2).unwrap_or_default();
    let after = deliver_all(&mut link, &w2)
        .iter()
        .any(|g| same_content(g, &m2));
    let m3 = message(1, "l3", "reply after the loss")?;
    let w3 = capture(&mut link, 1, &m3).unwrap_or_default();
    let reply = deliver_all(&mut link, &w3)
        .iter()
        .any(|g| same_content(g, &m3));
    let loss_errors = error_kinds(&link, 1, e0);
    let alice_errors = error_kinds(&link, 0, 0);
    // Reorder.
    let mut link = w.established()?;
    let o1 = message(0, "o1", "first")?;
    let o2 = message(0, "o2", "second")?;
    let w1 = capture(&mut link, 0, &o1)?;
    let w2 = capture(&mut link, 0, &o2).unwrap_or_default();
    let e0 = link.party(1).errors.len();
    let d2 = deliver_all(&mut link, &w2)
        .iter()
        .any(|g| same_content(g, &o2));
    let d1 = deliver_all(&mut link, &w1)
        .iter()
        .any(|g| same_content(g, &o1));
    let ok = after && reply && d1 && d2;
    let rec = recovery(w)?;
    Ok(vec![cell(
        w,
        Property::LossReorderTolerance,
        "",
        Outcome::unless(!ok),
        format!(
            "after one lost stanza Alice's next was {} and Bob's reply {}; of two swapped stanzas the second was {} and the late first {}; robustness: {}",
            if after { "delivered" } else { "NOT delivered" },
            if reply { "delivered" } else { "NOT delivered" },
            if d2 { "delivered" } else { "NOT delivered" },
            if d1 { "delivered" } else { "NOT delivered" },
            rec.1,
        ),
        json!({"in_order_delivered": 2}),
        json!({
            "loss": {"next_delivered": after, "reply_delivered": reply, "receiver_errors": loss_errors, "sender_errors": alice_errors},
            "reorder": {"second_delivered": d2, "late_first_delivered": d1, "errors": error_kinds(&link, 1, e0)},
            "recovery": rec.0,
        }),
    )])
}

/// Messages of the robustness run (alternating, Alice first).
pub const RECOVERY_MESSAGES: usize = 12;

/// The robustness figures: (evidence, one-line summary).
fn recovery(w: &World) -> R<(serde_json::Value, String)> {
    use crate::link::{Dir, Outcome as Seen};
    use std::time::Duration;
    let mut link = w.established()?;
    link.set_one_way_delay(Duration::from_millis(100));
    let drop_at = 4; // Alice's third message
    let mut sent = Vec::new();
    let mut t_loss = None;
    let mut t_fail = None;
    let mut send_errors = 0;
    for i in 0..RECOVERY_MESSAGES {
        let from = i % 2;
        link.advance(Duration::from_secs(1));
        let m = message(from, &format!("r{i}"), &format!("robustness {i}"))?;
        if link.send(from, m.clone()).is_err() {
            send_errors += 1;
        }
        sent.push((from, m));
        if i == drop_at {
            let dropped = link.take_in_flight();
            if !dropped.iter().any(|(d, _)| *d == Dir::AtoB) {
                return Err("robustness: Alice's message put nothing on the wire to drop".into());
            }
            t_loss = Some(link.now());
            continue;
        }
        let t0 = link.transcript.len();
        let _ = link.pump();
        if t_loss.is_some() && t_fail.is_none() {
            t_fail = link.transcript[t0..]
                .iter()
                .find(|e| matches!(e.outcome, Seen::Rejected { .. }))
                .map(|e| e.at);
        }
    }
    let _ = link.pump();
    let mut lost = Vec::new();
    for (from, m) in &sent {
        let p = link.party(1 - from);
        let got = p
            .delivered
            .iter()
            .chain(&p.delivered_unprotected)
            .any(|g| same_content(g, m));
        if !got {
            lost.push(m.attr("id").unwrap_or("?").to_string());
        }
    }
    if !lost.iter().any(|id| id == &format!("r{drop_at}")) {
        return Err("robustness: the dropped message was delivered anyway".into());
    }
    // Recovered: both sides established again after the error (a new
    // session), or else a later message of Alice's delivered.
    let recovery_ms = match t_fail {
        None => Some(0),
        Some(tf) => {
            let again = |i: usize| {
                link.party(i)
                    .established_at
                    .iter()
                    .find(|t| **t > tf)
                    .copied()
            };
            match (again(0), again(1)) {
                (Some(a), Some(b)) => Some(a.max(b).since(tf).as_millis() as u64),
                _ => link
                    .transcript
                    .iter()
                    .find(|e| {
                        e.at > tf
                            && e.dir == Dir::AtoB
                            && matches!(e.outcome, Seen::Accepted { delivered } if delivered > 0)
                    })
                    .map(|e| e.at.since(tf).as_millis() as u64),
            }
        }
    };
    let summary = format!(
        "{} of {} messages lost to one dropped stanza, {}",
        lost.len(),
        RECOVERY_MESSAGES,
        match recovery_ms {
            Some(0) => "no recovery needed".to_string(),
            Some(ms) =>
                format!("recovered {ms} ms after the first error (virtual clock, 100 ms one way)"),
            None => "never recovered in the window".to_string(),
        }
    );
    Ok((
        json!({
            "messages": RECOVERY_MESSAGES,
            "dropped": format!("r{drop_at}"),
            "lost": lost,
            "messages_lost": lost.len(),
            "recovery_ms": recovery_ms,
            "one_way_delay_ms": 100,
            "send_errors": send_errors,
            "errors": [error_kinds(&link, 0, 0), error_kinds(&link, 1, 0)],
        }),
        summary,
    ))
}
