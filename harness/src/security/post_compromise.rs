//! Post-compromise security as key recovery: after one exchange, Alice's
//! whole state leaks (her session's keys and DH values, and her long-term
//! key); three more exchanges run; then one canary each way. Can the
//! attacker read those last two?
//!
//! - *passive*: the attacker only reads the wire with what the leak and
//!   the wire give it.
//! - *active*: the attacker also rewrites every stanza whose healing
//!   material (a rekey's or a ratchet's next DH value) it can authenticate
//!   with the leaked keys, putting in DH values of its own
//!   ([`super::hooks::Attacker::hijack`]).
//!
//! Baseline: holding the leak, the reader reads the next stanza Bob sends
//! before anything else happens (a probe): Alice's own session decrypts it
//! with exactly the state that leaked, so a reader that cannot is broken
//! (the leak is real, and the reader reads this profile). A ratchet that
//! heals on Alice's very next message (Olm) still leaves the probe
//! readable; the exchange after it may not be. Outcome,
//! *passive*: `fails` when either of the last two canaries is read. The
//! passive run also shows where the protocol healed: the first canary
//! after which the passive attacker read nothing more. *Active*: `fails`
//! when the active attacker reads a canary at or after that position (she
//! defeated the healing; whether the victims' sessions survived it is in
//! the evidence), or when the passive attacker never lost access.

use super::forward_secrecy::{canaries_read, read_transcript};
use super::hooks::{Attacker, Knowledge, Reading, Seen};
use super::world::{converse, delivered_seen, seen, World};
use super::{cell, Cell, Outcome, R};
use crate::adversary::{Adversary, Forward, Wire};
use crate::link::{Dir, Link};
use e2elab_core::Property;
use serde_json::json;
use std::sync::{Arc, Mutex};

const K: u64 = 3;

fn leak(w: &World, link: &Link) -> R<Knowledge> {
    Ok(Knowledge {
        identities: vec![w.alice.id.clone()],
        states: vec![link
            .party(0)
            .session()
            .dangerous_export_state()
            .map_err(crate::Error::msg)?],
    })
}

/// Hijacks every stanza after the leak; keeps what it read.
struct Hijacker {
    a: Box<dyn Attacker>,
    log: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    read: Vec<(usize, String, String)>,
    replaced: usize,
    seen: usize,
    error: Option<String>,
}

impl Adversary for Hijacker {
    fn on_wire(&mut self, wire: &Wire) -> Vec<Forward> {
        let s = Seen {
            from_initiator: wire.dir == Dir::AtoB,
            xml: wire.xml.clone(),
            at: wire.at,
        };
        let mut log = match self.log.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let i = log.seen;
        log.seen += 1;
        match self.a.hijack(&s) {
            Ok((new, Reading { content, how })) => {
                if let Some(c) = content {
                    log.read.push((i, c, how.unwrap_or_default()));
                }
                match new {
                    Some(x) => {
                        log.replaced += 1;
                        vec![Forward {
                            dir: wire.dir,
                            xml: x,
                            action: "modified",
                        }]
                    }
                    None => vec![Forward::pass(wire)],
                }
            }
            Err(e) => {
                log.error.get_or_insert(e.to_string());
                vec![Forward::pass(wire)]
            }
        }
    }
}

/// The baseline's probe: one canary from Bob, right after the leak.
fn probe(link: &mut Link) -> R<Vec<(Dir, String)>> {
    let body = super::world::canary("PB1", 0);
    let el = super::world::message(1, "PB1-0", &body)?;
    link.advance(crate::driver::MESSAGE_INTERVAL);
    link.send(1, el).map_err(crate::Error::msg)?;
    link.pump().map_err(crate::Error::msg)?;
    Ok(vec![(Dir::from_party(1), body)])
}

/// Exchanges that tolerate a broken session (the active attack may break it).
fn talk(link: &mut Link, rounds: u64, tag: &str) -> Vec<(Dir, String)> {
    let mut bodies = Vec::new();
    for n in 0..rounds {
        for from in 0..2 {
            let body = super::world::canary(&format!("{tag}{from}"), n);
            if let Ok(el) = super::world::message(from, &format!("{tag}{from}-{n}"), &body) {
                link.advance(crate::driver::MESSAGE_INTERVAL);
                let _ = link.send(from, el);
                let _ = link.pump();
            }
            bodies.push((Dir::from_party(from), body));
        }
    }
    bodies
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    // Passive.
    let mut link = w.established()?;
    converse(&mut link, 1, "PA")?;
    let k = leak(w, &link)?;
    let mark = link.emissions.len();
    let probe = probe(&mut link)?;
    let first = converse(&mut link, 1, "PF")?;
    let middle = converse(&mut link, K, "PK")?;
    let last = converse(&mut link, 1, "PL")?;
    let t = seen(&link)[mark..].to_vec();
    let (read, notes) = read_transcript(w, &t, &k)?;
    let (probe_read, probe_clear) = canaries_read(&probe, &read, &t);
    if probe_read.is_empty() && probe_clear.is_empty() {
        return Err("baseline: with the leaked state the attacker did not read Bob's next stanza, which Alice's session decrypts with that state: the leak or the reader does not work for this profile".into());
    }
    let (first_read, first_clear) = canaries_read(&first, &read, &t);
    let (last_read, last_clear) = canaries_read(&last, &read, &t);
    let passive_broken = !last_read.is_empty() || !last_clear.is_empty();
    let sequence: Vec<(Dir, String)> = first.iter().chain(&middle).chain(&last).cloned().collect();
    let positions =
        |bodies: &[(Dir, String)], rd: &[(usize, String, String)], tt: &[Seen]| -> Vec<usize> {
            let (a, b) = canaries_read(bodies, rd, tt);
            bodies
                .iter()
                .enumerate()
                .filter(|(_, (_, c))| a.contains(c) || b.contains(c))
                .map(|(i, _)| i)
                .collect()
        };
    let passive_positions = positions(&sequence, &read, &t);
    // Healed after the last canary the passive attacker read.
    let healed_at = passive_positions.iter().max().map_or(0, |p| p + 1);
    let passive = cell(
        w,
        Property::PostCompromiseSecurity,
        "passive",
        Outcome::unless(passive_broken),
        format!(
            "with Alice's whole state leaked, after {K} more exchanges a passive attacker read {} of the 2 last canaries",
            last_read.len() + last_clear.len()
        ),
        json!({
            "probe_read": probe_read,
            "probe_in_clear": probe_clear,
            "right_after_the_leak_read": first_read,
            "in_clear": first_clear,
        }),
        json!({
            "leaked": k.describe(),
            "exchanges_after_the_leak": K,
            "canaries_read_by_position": passive_positions,
            "healed_after_canary": if passive_broken { serde_json::Value::Null } else { json!(healed_at) },
            "last_read": last_read,
            "last_in_clear": last_clear,
            "how": read.iter().map(|(i, _, h)| format!("#{}: {h}", i + 1)).collect::<Vec<_>>(),
            "notes": notes,
        }),
    );
    // Active.
    let mut link = w.established()?;
    converse(&mut link, 1, "QA")?;
    let k = leak(w, &link)?;
    let log = Arc::new(Mutex::new(Log::default()));
    link.set_adversary(Box::new(Hijacker {
        a: w.hooks.attacker(w, &k)?,
        log: log.clone(),
    }));
    let e0 = [link.party(0).errors.len(), link.party(1).errors.len()];
    let mut sequence = talk(&mut link, 1, "QF");
    sequence.extend(talk(&mut link, K, "QK"));
    sequence.extend(talk(&mut link, 1, "QL"));
    let log = match log.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    if let Some(e) = &log.error {
        return Err(crate::fail!("active attacker: {e}"));
    }
    let t = delivered_seen(&link);
    let active_positions = positions(&sequence, &log.read, &t);
    let beyond: Vec<usize> = active_positions
        .iter()
        .copied()
        .filter(|p| *p >= healed_at)
        .collect();
    if !passive_broken && log.replaced == 0 {
        return Err(crate::fail!(
            "the passive attacker lost access after canary {healed_at}, but the active attacker found no healing value she could authenticate and replace: the hooks cannot attack this profile's healing, so nothing can be concluded"
        ));
    }
    let broken = passive_broken || !beyond.is_empty();
    let victims_errors: Vec<String> = (0..2)
        .flat_map(|i| super::world::error_kinds(&link, i, e0[i]))
        .collect();
    let active = cell(
        w,
        Property::PostCompromiseSecurity,
        "active",
        Outcome::unless(broken),
        if passive_broken {
            "a passive attacker already keeps access; the active one needs nothing more".to_string()
        } else {
            format!(
                "the attacker replaced {} stanza(s) with her own healing values and read {} canary(ies) sent after the point where the passive attacker lost access (the victims' sessions raised {} error(s))",
                log.replaced,
                beyond.len(),
                victims_errors.len()
            )
        },
        json!({"see": "the passive variant's baseline"}),
        json!({
            "leaked": k.describe(),
            "stanzas_replaced": log.replaced,
            "passive_attacker_healed_after_canary": healed_at,
            "canaries_read_by_position": active_positions,
            "read_after_healing": beyond,
            "victims_errors": victims_errors,
            "how": log.read.iter().map(|(i, _, h)| format!("#{}: {h}", i + 1)).collect::<Vec<_>>(),
        }),
    );
    Ok(vec![passive, active])
}
