//! Replay: Alice's stanza, recorded, is delivered again (a) in the same
//! session right away, (b) in the same session after the virtual clock
//! moved 11 minutes (past RFC 3923's 5/10-minute windows), (c) into a new
//! session of the same receiving client (what the client keeps across
//! sessions is its own: retained secrets, replay memory). When the run's
//! options differ from the profile's defaults, (a) again under the defaults,
//! so that no option (a rekey, say) stands in for the protection. As data, (d) into
//! a brand-new client that remembers nothing (a receiver that lost its
//! state): not counted, since no protocol can refuse what it cannot know.
//!
//! Baseline: the original is delivered exactly once. Outcome: `fails` when
//! (a), (b), (c) or (a) under the defaults delivers it again.

use super::world::{capture, deliver_all, error_kinds, message, same_content, World};
use super::{cell, Cell, Outcome, R};
use crate::link::Link;
use e2elab_core::Property;
use serde_json::json;
use std::time::Duration;

fn again(
    link: &mut Link,
    wires: &[(crate::link::Dir, String)],
    el: &e2elab_core::Element,
) -> (usize, Vec<String>) {
    let e0 = link.party(1).errors.len();
    let got = deliver_all(link, wires);
    (
        got.iter().filter(|g| same_content(g, el)).count(),
        error_kinds(link, 1, e0),
    )
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut variants = Vec::new();
    let mut accepted = Vec::new();
    let record =
        |link: &mut Link, id: &str| -> R<(Vec<(crate::link::Dir, String)>, e2elab_core::Element)> {
            let el = message(0, id, &format!("replay me ({id})"))?;
            let wires = capture(link, 0, &el)?;
            let first = deliver_all(link, &wires);
            let n = first.iter().filter(|g| same_content(g, &el)).count();
            if n != 1 {
                return Err(crate::fail!(
                    "baseline: the original was delivered {n} times, not once"
                ));
            }
            Ok((wires, el))
        };
    // (a)
    let mut link = w.established()?;
    let (wires, el) = record(&mut link, "r1")?;
    let (n, errs) = again(&mut link, &wires, &el);
    if n > 0 {
        accepted.push("same session");
    }
    variants.push(json!({"variant": "same session", "delivered_again": n, "errors": errs}));
    // (b)
    let mut link = w.established()?;
    let (wires, el) = record(&mut link, "r2")?;
    link.advance(Duration::from_secs(660));
    let (n, errs) = again(&mut link, &wires, &el);
    if n > 0 {
        accepted.push("same session, 11 minutes later");
    }
    variants.push(
        json!({"variant": "same session after 11 minutes", "delivered_again": n, "errors": errs}),
    );
    // (c): the new session starts a second later (within every window).
    let mut link = w.established()?;
    let (wires, el) = record(&mut link, "r3")?;
    w.resume_at(link.now());
    let mut link2 = w.established()?;
    let (n, errs) = again(&mut link2, &wires, &el);
    if n > 0 {
        accepted.push("new session of the same client");
    }
    variants.push(json!({"variant": "new session of the same receiving client", "delivered_again": n, "errors": errs}));
    // (a') the same session, under the profile's own defaults, when the run
    // uses other options: a mechanism those options switch on (a rekey,
    // say) must not stand in for the replay protection itself.
    if w.options != e2elab_core::Options::new() {
        let mut link = w.established_with(Some(&e2elab_core::Options::new()))?;
        let (wires, el) = record(&mut link, "r4")?;
        let (n, errs) = again(&mut link, &wires, &el);
        if n > 0 {
            accepted.push("same session, the profile's defaults");
        }
        variants.push(json!({"variant": "same session, the profile's default options", "delivered_again": n, "errors": errs}));
    }
    // (d) data only: a client that lost its state.
    let fresh = w.fresh_client();
    let b = w.side_session(
        fresh.as_ref(),
        1,
        w.bob.id.clone(),
        Some(w.alice.id.public.clone()),
        None,
    )?;
    w.resume_at(link2.now());
    let [a, _] = w.honest_sessions(None)?;
    let mut link3 = Link::new(a, b);
    let state_lost = match link3.handshake() {
        Ok(()) => {
            link3.set_phase(crate::link::Phase::Data);
            let (n, errs) = again(&mut link3, &wires, &el);
            json!({"variant": "a new client that remembers nothing (not counted)", "delivered_again": n, "errors": errs})
        }
        Err(e) => {
            json!({"variant": "a new client that remembers nothing (not counted)", "handshake": e})
        }
    };
    variants.push(state_lost);
    Ok(vec![cell(
        w,
        Property::Replay,
        "",
        Outcome::unless(!accepted.is_empty()),
        if accepted.is_empty() {
            "the recorded stanza was refused in the same session, 11 minutes later, and in a new session of the same client".into()
        } else {
            format!(
                "the recorded stanza was delivered again: {}",
                accepted.join(", ")
            )
        },
        json!({"original_delivered_once": true}),
        json!({"variants": variants}),
    )])
}
