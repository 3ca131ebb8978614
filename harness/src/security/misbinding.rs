//! Identity misbinding (unknown key share), on both sides of a session.
//!
//! Eve relays between Alice and Bob and rewrites the addressing, so that one
//! victim's session has Eve as its peer while the other talks to the real
//! victim. *Initiator side*: Bob thinks he talks to Eve, Alice to Bob; the
//! question is whether Bob attributes Alice's message to Eve. *Responder
//! side*: Alice thinks she talks to Eve, Bob to Alice; does Alice attribute
//! Bob's reply to Eve?
//!
//! - *key-registration*: Eve registers the victim's public key as hers
//!   ([`super::hooks::Hooks::register`]; a key format that names its owner
//!   can make that impossible, and the client's check can refuse it); where
//!   the profile trusts on first use, the variant with no key at all
//!   (first contact with Eve) is run too.
//! - *identity-substitution*: Eve, with her own honestly registered key,
//!   replaces the victim's identity proof in what she relays with hers
//!   ([`super::hooks::Hooks::substitute_identity`]: a handshake's proof, or,
//!   for protocols that sign each stanza, the stanza re-signed by her where
//!   she can read it), the attack SIGMA was designed to stop; how many
//!   stanzas she changed is in the evidence.
//!
//! Baseline: the honest session attributes each message to its real sender.
//! Outcome: `fails` when a message is attributed to Eve on either side.

use super::hooks::{Hooks, Seen, Substitution};
use super::world::{eve_full, message, same_content, World};
use super::{cell, Cell, Outcome, R};
use crate::adversary::{Adversary, Forward, Wire};
use crate::driver::full_jid;
use crate::link::{Dir, Link, Phase};
use e2elab_core::{stanza, Env, Property, PublicIdentity, Role};
use serde_json::json;

struct Relay {
    /// Eve is Bob's peer (initiator side), or Alice's (responder side).
    initiator_side: bool,
    substitute: Option<(Box<dyn Hooks>, Substitution, Env)>,
    seen: Vec<Seen>,
    substituted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Adversary for Relay {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        let Ok(mut el) = stanza::parse(&w.xml) else {
            return vec![Forward::pass(w)];
        };
        let from_alice = w.dir == Dir::AtoB;
        // Every stanza of the victim's (handshake proofs, and the stanzas
        // of protocols that sign each one).
        let victims = from_alice == self.initiator_side;
        if victims {
            if let Some((h, sub, env)) = &mut self.substitute {
                sub.at = w.at;
                match h.substitute_identity(sub, &mut el, &self.seen, env) {
                    Ok(true) => {
                        self.substituted
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        if let Ok(mut slot) = self.error.lock() {
                            slot.get_or_insert(e.to_string());
                        }
                    }
                }
            }
        }
        self.seen.push(Seen {
            from_initiator: from_alice,
            xml: w.xml.clone(),
            at: w.at,
        });
        let eve = eve_full();
        let set = |el: &mut e2elab_core::Element, k: &str, v: &str| {
            let _ = stanza::set_attr(el, k, v);
        };
        match (self.initiator_side, from_alice) {
            (true, true) => set(&mut el, "from", &eve),
            (true, false) => {
                set(&mut el, "from", &full_jid(1));
                set(&mut el, "to", &full_jid(0));
            }
            (false, true) => {
                set(&mut el, "to", &full_jid(1));
                set(&mut el, "from", &full_jid(0));
            }
            (false, false) => {
                set(&mut el, "from", &eve);
                set(&mut el, "to", &full_jid(0));
            }
        }
        vec![Forward {
            dir: w.dir,
            xml: stanza::serialize(&el),
            action: "modified",
        }]
    }
}

/// One relayed run: `eve_key` is what the victim's client holds for Eve
/// (`None`: nothing, first contact). Err(reason) when the victim's client
/// refused to open a session with Eve under that key.
fn relayed(
    w: &World,
    initiator_side: bool,
    eve_key: Option<PublicIdentity>,
    substitute: bool,
) -> R<crate::Result<serde_json::Value>> {
    let ca = w.fresh_client();
    let cb = w.fresh_client();
    let (a_peer, a_key, b_peer, b_key) = if initiator_side {
        (
            full_jid(1),
            Some(w.bob.id.public.clone()),
            eve_full(),
            eve_key,
        )
    } else {
        (
            eve_full(),
            eve_key,
            full_jid(0),
            Some(w.alice.id.public.clone()),
        )
    };
    let a = match w.session(
        ca.as_ref(),
        Role::Initiator,
        &full_jid(0),
        &a_peer,
        w.alice.id.clone(),
        a_key,
        &w.options,
    ) {
        Ok(s) => s,
        Err(e) if !initiator_side => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    let b = match w.session(
        cb.as_ref(),
        Role::Responder,
        &full_jid(1),
        &b_peer,
        w.bob.id.clone(),
        b_key,
        &w.options,
    ) {
        Ok(s) => s,
        Err(e) if initiator_side => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    let mut link = Link::new(a, b);
    let substituted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let error = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (victim, target) = if initiator_side {
        (
            (full_jid(0), w.alice.id.public.clone()),
            (full_jid(1), w.bob.id.public.clone()),
        )
    } else {
        (
            (full_jid(1), w.bob.id.public.clone()),
            (full_jid(0), w.alice.id.public.clone()),
        )
    };
    link.set_adversary(Box::new(Relay {
        initiator_side,
        substitute: substitute.then(|| {
            (
                (w.entry.hooks)(),
                Substitution {
                    entry: w.entry,
                    eve: w.eve.clone(),
                    eve_jid: eve_full(),
                    victim,
                    target,
                    options: w.options.clone(),
                    at: e2elab_core::Timestamp::DEFAULT_START,
                },
                Env::for_party(w.next_seed(), "eve"),
            )
        }),
        seen: Vec::new(),
        substituted: substituted.clone(),
        error: error.clone(),
    }));
    let hs = link.handshake();
    link.set_phase(Phase::Data);
    let m = message(0, "uks", "c4n4ryUKSZ")?;
    let _ = link.send(0, m.clone());
    let _ = link.pump();
    let r = message(1, "uks-r", "c4n4ryUKSREPLYZ")?;
    let _ = link.send(1, r.clone());
    let _ = link.pump();
    if let Some(e) = error.lock().map_err(|_| "relay poisoned")?.take() {
        return Err(crate::fail!("Eve's identity substitution: {e}"));
    }
    let (victim, msg) = if initiator_side { (1, &m) } else { (0, &r) };
    let misbound = link
        .party(victim)
        .delivered
        .iter()
        .any(|g| same_content(g, msg));
    Ok(Ok(json!({
        "handshake": hs.err(),
        "identity_proofs_substituted": substituted.load(std::sync::atomic::Ordering::SeqCst),
        "victim": if initiator_side { "Bob" } else { "Alice" },
        "victims_peer": "eve",
        "attributed_to_eve": misbound,
        "victim_errors": super::world::error_kinds(&link, victim, 0),
    })))
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    // Baseline.
    let mut link = w.established()?;
    let m = message(0, "b", "c4n4ryBASEZ")?;
    let _ = link.send(0, m.clone());
    let _ = link.pump();
    let to_alice = |p: &crate::link::Party| {
        p.established
            .as_ref()
            .map(|e| stanza::bare_jid(&e.jid).to_string())
    };
    if !link.party(1).delivered.iter().any(|g| same_content(g, &m))
        || to_alice(link.party(1)).as_deref() != Some(crate::driver::ALICE)
    {
        return Err(
            "baseline: the honest session did not attribute Alice's message to Alice".into(),
        );
    }
    let mut cells = Vec::new();
    for (variant, substitute) in [("key-registration", false), ("identity-substitution", true)] {
        let mut runs = Vec::new();
        let mut misbound = Vec::new();
        for initiator_side in [true, false] {
            let side = if initiator_side {
                "initiator side (Bob's peer is Eve)"
            } else {
                "responder side (Alice's peer is Eve)"
            };
            let victim_key = if initiator_side {
                &w.alice.id.public
            } else {
                &w.bob.id.public
            };
            let mut attempts = Vec::new();
            if substitute {
                attempts.push((
                    "Eve's own key, her proof substituted",
                    Some(w.eve.public.clone()),
                ));
            } else {
                match w.hooks.register(victim_key, crate::security::world::EVE) {
                    Ok(p) => attempts.push(("the victim's key registered as Eve's", Some(p))),
                    Err(e) => {
                        runs.push(json!({"side": side, "registration": format!("impossible: {e}")}))
                    }
                }
                attempts.push(("no key for Eve (first contact)", None));
            }
            for (what, key) in attempts {
                match relayed(w, initiator_side, key, substitute)? {
                    Ok(r) => {
                        if r["attributed_to_eve"] == true {
                            misbound.push(format!("{side}, {what}"));
                        }
                        runs.push(json!({"side": side, "keys": what, "run": r}));
                    }
                    Err(e) => {
                        runs.push(json!({"side": side, "keys": what, "victims_client_refused": e}))
                    }
                }
            }
        }
        cells.push(cell(
            w,
            Property::IdentityMisbinding,
            variant,
            Outcome::unless(!misbound.is_empty()),
            if misbound.is_empty() {
                "no message was attributed to Eve".into()
            } else {
                format!("a message was attributed to Eve: {}", misbound.join("; "))
            },
            json!({"honest_attribution": "Alice's message to Alice"}),
            json!({"runs": runs}),
        ));
    }
    Ok(cells)
}
