//! The in-memory experiments of `e2elab requirements`: what no security
//! row measures yet (XEP-0210's Generality, Object Encryption, Usability and
//! the self-generated-keys half of PKI Independence). Each runs the
//! profile's own sessions through the harness's link; nothing here looks at
//! which profile it is.

use crate::link::{Dir, Link};
use crate::security::world::{canary_stanza, deliver_all, same_content, World};
use crate::security::R;
use e2elab_core::StanzaKind;
use serde::{Deserialize, Serialize};

/// One stanza kind through an established session (Generality).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindOut {
    /// `message`, `presence`, `iq`.
    pub kind: String,
    /// Sent, nothing of its content on the wire, delivered as protected.
    pub covered: bool,
    /// Parts of the content seen on the wire.
    pub leaked: Vec<String>,
    /// The peer delivered it intact as protected.
    pub delivered: bool,
    /// Why it was not sent, if it was not.
    pub refused: Option<String>,
}

/// Object encryption: one message with an extension element of a namespace
/// no profile knows, sent with no session before it, and only Alice's
/// stanzas reaching Bob (his answers are dropped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectOut {
    /// Stanzas Alice emitted; stanzas of Bob's that were dropped.
    pub alice_stanzas: usize,
    /// Bob's answers, dropped.
    pub bob_dropped: usize,
    /// Bob delivered the message intact from Alice's stanzas alone.
    pub delivered_alone: bool,
    /// Parts of the content (the extension's text and attribute among them)
    /// seen on the wire.
    pub leaked: Vec<String>,
    /// Baseline: the same message through an established link with both
    /// directions carried is delivered intact.
    pub baseline_delivered: bool,
    /// Errors the sessions returned.
    pub errors: Vec<String>,
}

/// What a user sees and must do (Usability).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsabilityOut {
    /// The string the established session offers for verification: the SAS
    /// where there is one, else the fingerprint.
    pub verification: Option<String>,
    /// Its kind (`sas` / `fingerprint` / none).
    pub kind: String,
    /// Alphanumeric characters in it.
    pub alphanumeric: usize,
    /// A session pair with no peer key given in advance established and
    /// delivered a message (the key travelled in-band).
    pub without_prior_key: bool,
    /// Why not, when it did not.
    pub without_prior_key_error: Option<String>,
}

/// Self-generated keys (PKI Independence): identities the profile generated
/// now from a fresh seed, no issuer but themselves, each side holding the
/// other's public key as given by the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfKeysOut {
    /// Handshake completed and a message was delivered intact.
    pub works: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Every in-memory result of one profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InMemory {
    /// Generality.
    pub kinds: Vec<KindOut>,
    /// Object encryption.
    pub object: ObjectOut,
    /// Usability.
    pub usability: UsabilityOut,
    /// PKI independence.
    pub self_keys: SelfKeysOut,
    /// Alice's stanza carrying a 1-line message, for the interoperability
    /// probe.
    pub carrier: String,
}

/// Parts of the content seen on the wire; the outer `id` attribute is
/// routing (XEP-0210 §Confidentiality lets the server see it) and left out.
fn leaked(parts: &[(String, String)], wires: &[(Dir, String)]) -> Vec<String> {
    parts
        .iter()
        .filter(|(n, _)| !n.contains("(outer)"))
        .filter(|(_, c)| wires.iter().any(|(_, x)| x.contains(c.as_str())))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Alice sends canary message `n` over `link` and everything she emits is
/// delivered: whether Bob delivered it intact as protected.
fn delivers(link: &mut Link, n: u64) -> R<bool> {
    let (el, _) = canary_stanza(StanzaKind::Message, 0, n)?;
    link.send(0, el.clone())
        .map_err(|e| crate::fail!("send: {e}"))?;
    let wires = link.take_in_flight();
    Ok(deliver_all(link, &wires)
        .iter()
        .any(|g| same_content(g, &el)))
}

fn generality(w: &World) -> R<Vec<KindOut>> {
    let mut out = Vec::new();
    for (i, kind) in [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq]
        .into_iter()
        .enumerate()
    {
        let (el, parts) = canary_stanza(kind, 0, 700 + i as u64)?;
        let mut link = w.established()?;
        if let Err(e) = link.send(0, el.clone()) {
            out.push(KindOut {
                kind: kind.name().into(),
                covered: false,
                leaked: Vec::new(),
                delivered: false,
                refused: Some(e.to_string()),
            });
            continue;
        }
        let wires = link.take_in_flight();
        let seen = leaked(&parts, &wires);
        let got = deliver_all(&mut link, &wires);
        let delivered = got.iter().any(|g| same_content(g, &el));
        out.push(KindOut {
            kind: kind.name().into(),
            covered: seen.is_empty() && delivered && !wires.is_empty(),
            leaked: seen,
            delivered,
            refused: None,
        });
    }
    Ok(out)
}

fn object(w: &World) -> R<ObjectOut> {
    let (el, parts) = canary_stanza(StanzaKind::Message, 0, 800)?;
    let [a, b] = w.honest_sessions(None)?;
    let mut link = Link::new(a, b);
    let mut errors = Vec::new();
    if let Err(e) = link.start() {
        errors.push(format!("start: {e}"));
    }
    if let Err(e) = link.send(0, el.clone()) {
        errors.push(format!("send: {e}"));
    }
    let (mut alice, mut dropped) = (0, 0);
    let mut all = Vec::new();
    for _ in 0..16 {
        let f = link.take_in_flight();
        if f.is_empty() {
            break;
        }
        for (d, x) in f {
            if d == Dir::AtoB {
                alice += 1;
                let r = link.deliver_raw(d, &x);
                if let Err(e) = r.result {
                    errors.push(format!("Bob: {e}"));
                }
                all.push((d, x));
            } else {
                dropped += 1;
            }
        }
    }
    let delivered_alone = link.party(1).delivered.iter().any(|g| same_content(g, &el));
    let baseline_delivered = delivers(&mut w.established()?, 800)?;
    Ok(ObjectOut {
        alice_stanzas: alice,
        bob_dropped: dropped,
        delivered_alone,
        leaked: leaked(&parts, &all),
        baseline_delivered,
        errors,
    })
}

fn usability(w: &World) -> R<UsabilityOut> {
    let link = w.established()?;
    let pi = link.party(0).established.clone();
    let (verification, kind) = match pi {
        Some(p) => match (p.sas, p.fingerprint) {
            (Some(s), _) => (Some(s), "sas"),
            (None, Some(f)) => (Some(f), "fingerprint"),
            (None, None) => (None, "none"),
        },
        None => (None, "none"),
    };
    let alphanumeric = verification
        .as_deref()
        .map(|v| v.chars().filter(char::is_ascii_alphanumeric).count())
        .unwrap_or(0);
    // No key in advance: each side is given nothing for its peer.
    let attempt = (|| -> R<()> {
        let a = w.side_session(w.alice.client.as_ref(), 0, w.alice.id.clone(), None, None)?;
        let b = w.side_session(w.bob.client.as_ref(), 1, w.bob.id.clone(), None, None)?;
        let mut link = Link::new(a, b);
        link.handshake()?;
        if delivers(&mut link, 810)? {
            Ok(())
        } else {
            Err("the message was not delivered".into())
        }
    })();
    Ok(UsabilityOut {
        verification,
        kind: kind.into(),
        alphanumeric,
        without_prior_key: attempt.is_ok(),
        without_prior_key_error: attempt.err().map(|e| e.to_string()),
    })
}

fn self_keys(w: &World, seed: u64) -> R<SelfKeysOut> {
    let attempt = (|| -> R<()> {
        let proto = (w.entry.make)();
        let ids = crate::driver::provision(proto.as_ref(), seed ^ 0x5e1f)?;
        let mut link = crate::driver::link_between(
            proto.as_ref(),
            &ids,
            seed,
            &w.options,
            [&crate::driver::full_jid(0), &crate::driver::full_jid(1)],
        )?;
        link.handshake()?;
        if delivers(&mut link, 820)? {
            Ok(())
        } else {
            Err("the message was not delivered".into())
        }
    })();
    Ok(SelfKeysOut {
        works: attempt.is_ok(),
        error: attempt.err().map(|e| e.to_string()),
    })
}

/// Run them all for one profile.
pub fn run(entry: &'static crate::registry::Entry, seed: u64) -> R<InMemory> {
    let w = World::new(entry, seed)?;
    let mut link = w.established()?;
    let m =
        crate::security::world::message(0, "interop", "a message for the interoperability probe")?;
    link.send(0, m).map_err(|e| crate::fail!("send: {e}"))?;
    let carrier = link
        .take_in_flight()
        .into_iter()
        .filter(|(d, _)| *d == Dir::AtoB)
        .map(|(_, x)| x)
        .max_by_key(String::len)
        .ok_or("no stanza carried the message")?;
    Ok(InMemory {
        kinds: generality(&w)?,
        object: object(&w)?,
        usability: usability(&w)?,
        self_keys: self_keys(&w, seed)?,
        carrier,
    })
}
