//! Loss and reordering: the attacker drops Alice's first data stanza, then
//! (fresh session) swaps her next two.
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
            return Err(format!(
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
    Ok(vec![cell(
        w,
        Property::LossReorderTolerance,
        "",
        Outcome::unless(!ok),
        format!(
            "after one lost stanza Alice's next was {} and Bob's reply {}; of two swapped stanzas the second was {} and the late first {}",
            if after { "delivered" } else { "NOT delivered" },
            if reply { "delivered" } else { "NOT delivered" },
            if d2 { "delivered" } else { "NOT delivered" },
            if d1 { "delivered" } else { "NOT delivered" },
        ),
        json!({"in_order_delivered": 2}),
        json!({
            "loss": {"next_delivered": after, "reply_delivered": reply, "receiver_errors": loss_errors, "sender_errors": alice_errors},
            "reorder": {"second_delivered": d2, "late_first_delivered": d1, "errors": error_kinds(&link, 1, e0)},
        }),
    )])
}
