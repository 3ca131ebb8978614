//! Downgrade resistance, as two attacks run on every profile.
//!
//! 1. *Offer stripping*: where the profile's offer can carry a weaker
//!    alternative ([`super::hooks::Hooks::weak_offer`]: MODP groups and
//!    ciphers in ESessions, a v2+v3 policy in OTR), the attacker removes the
//!    preferred one from Alice's offer in flight
//!    ([`super::hooks::Hooks::strip_offer`]). Downgraded: the attacked
//!    session establishes, delivers, negotiates something other than the
//!    honest one, and nobody is warned. Where no stanza carries an offer,
//!    the attacker finds nothing to strip, and the evidence says why.
//! 2. *Encryption stripping*: in an established session the attacker
//!    injects, as from Alice, unprotected stanzas: the message in clear, one
//!    with only an XHTML-IM body, an empty one, one with a body in a foreign
//!    namespace. Stripped: the receiver's label vouches for any of its
//!    children ([`e2elab_core::Protection::covered`]), or it delivers one
//!    as an ordinary delivery with no warning (delivering it as
//!    unprotected with `Warning::UnprotectedStanza`, or refusing it, is
//!    not a downgrade).
//!
//! Baselines: the honest session with the weak offer establishes, delivers
//! and warns nobody; an honest protected stanza is delivered as protected.
//! Outcome: `fails` when either attack succeeds.

use super::hooks::Hooks;
use super::world::{canary, message, same_content, seen, warning_kind, World};
use super::{cell, Cell, Outcome, R};
use crate::adversary::{Adversary, Forward, Wire};
use crate::driver::full_jid;
use crate::link::{Dir, Phase};
use e2elab_core::Property;
use e2elab_core::{stanza, Element, StanzaKind};
use serde_json::json;

struct Stripper {
    hooks: Box<dyn Hooks>,
    edited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Adversary for Stripper {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        if w.phase == Phase::Handshake && w.dir == Dir::AtoB {
            if let Ok(mut el) = stanza::parse(&w.xml) {
                if self.hooks.strip_offer(&mut el) {
                    self.edited
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return vec![Forward {
                        dir: w.dir,
                        xml: stanza::serialize(&el),
                        action: "modified",
                    }];
                }
            }
        }
        vec![Forward::pass(w)]
    }
}

/// The stanzas the encryption-stripping attack injects, as from Alice (party 0):
/// a message in clear, an XHTML-IM body only, an empty message, a body in
/// a foreign namespace. Also used by the conformance check `labels`.
pub fn injected() -> R<Vec<(&'static str, Element)>> {
    let ns = stanza::NS_CLIENT;
    let base = || -> R<Element> {
        let mut m = stanza::new(StanzaKind::Message);
        stanza::set_attr(&mut m, "from", &full_jid(0)).map_err(crate::Error::msg)?;
        stanza::set_attr(&mut m, "to", &full_jid(1)).map_err(crate::Error::msg)?;
        stanza::set_attr(&mut m, "type", "chat").map_err(crate::Error::msg)?;
        Ok(m)
    };
    let clear = message(0, "strip1", &canary("STRIP", 1))?;
    let mut xhtml = base()?;
    let mut html = Element::bare("html", "http://jabber.org/protocol/xhtml-im");
    let mut body = Element::bare("body", "http://www.w3.org/1999/xhtml");
    body.append_child(stanza::text_element(
        "p",
        "http://www.w3.org/1999/xhtml",
        &canary("STRIP", 2),
    ));
    html.append_child(body);
    xhtml.append_child(html);
    let empty = base()?;
    let mut foreign = base()?;
    foreign.append_child(stanza::text_element(
        "body",
        "urn:example:e2elab:not-client",
        &canary("STRIP", 4),
    ));
    let _ = ns;
    Ok(vec![
        ("the message in clear", clear),
        ("an XHTML-IM body only", xhtml),
        ("an empty message", empty),
        ("a body in a foreign namespace", foreign),
    ])
}

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut broken = Vec::new();
    // 1. Offer stripping.
    let offer = match w.hooks.weak_offer() {
        Err(why) => json!({"offer": "none", "why": why}),
        Ok((opts, what)) => {
            let mut h = w.established_with(Some(&opts))?;
            let m = message(0, "dg0", "honest")?;
            let _ = h.send(0, m.clone());
            let _ = h.pump();
            let ok = h.party(1).delivered.iter().any(|g| same_content(g, &m));
            let warned: Vec<&str> = (0..2)
                .flat_map(|i| h.party(i).warnings.iter().map(warning_kind))
                .collect();
            if !ok || !warned.is_empty() {
                return Err(crate::fail!("baseline: the honest session with the weak offer delivered {ok}, warned {warned:?}"));
            }
            let base = w.hooks.negotiated(&seen(&h));
            let [a, b] = w.honest_sessions(Some(&opts))?;
            let mut link = crate::link::Link::new(a, b);
            let edited = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            link.set_adversary(Box::new(Stripper {
                hooks: (w.entry.hooks)(),
                edited: edited.clone(),
            }));
            let hs = link.handshake();
            link.set_phase(Phase::Data);
            let m = message(0, "dg1", "after the downgrade")?;
            let sent = link.send(0, m.clone()).is_ok();
            let _ = link.pump();
            let delivered = sent && link.party(1).delivered.iter().any(|g| same_content(g, &m));
            let got = w.hooks.negotiated(&seen(&link));
            let warned: Vec<&str> = (0..2)
                .flat_map(|i| link.party(i).warnings.iter().map(warning_kind))
                .collect();
            let n = edited.load(std::sync::atomic::Ordering::SeqCst);
            if n == 0 {
                return Err(crate::fail!(
                    "the hooks declare an offer ({what}) but the attacker found nothing to strip in Alice's handshake"
                ));
            }
            let downgraded = hs.is_ok() && delivered && got != base && warned.is_empty() && n > 0;
            if downgraded {
                broken.push(format!(
                    "offer stripped: negotiated {got} instead of {base}"
                ));
            }
            json!({
                "offer": what,
                "honest_negotiated": base,
                "stanzas_modified": n,
                "handshake": hs.err(),
                "delivered": delivered,
                "negotiated": got,
                "warnings": warned,
                "errors": (0..2).flat_map(|i| super::world::error_kinds(&link, i, 0)).collect::<Vec<_>>(),
                "downgraded": downgraded,
            })
        }
    };
    // 2. Encryption stripping.
    let mut link = w.established()?;
    let m = message(0, "dg2", "protected")?;
    let _ = link.send(0, m.clone());
    let _ = link.pump();
    if !link.party(1).delivered.iter().any(|g| same_content(g, &m)) {
        return Err("baseline: an honest protected message was not delivered as protected".into());
    }
    let mut strips = Vec::new();
    for (what, el) in injected()? {
        let w0 = link.party(1).warnings.len();
        let u0 = link.party(1).delivered_unprotected.len();
        let d = link.deliver_raw(Dir::AtoB, &stanza::serialize(&el));
        let _ = link.pump();
        let warned: Vec<&str> = link.party(1).warnings[w0..]
            .iter()
            .map(warning_kind)
            .collect();
        // A label that vouches for any child of a stanza injected in clear
        // is a downgrade whatever the warnings say; a delivery with no
        // label of its own (the unlabelled `Delivered` of a session with no
        // protection layer) and no warning is one too.
        let claimed: Vec<String> = d.labels.iter().flat_map(|l| l.covered.clone()).collect();
        let silent = !d.delivered.is_empty() && warned.is_empty();
        if !claimed.is_empty() {
            broken.push(format!(
                "{what} delivered labelled protected ({})",
                claimed.join(", ")
            ));
        } else if silent {
            broken.push(format!("{what} delivered as protected"));
        }
        strips.push(json!({
            "injected": what,
            "delivered_as_protected": d.delivered.len(),
            "delivered_as_unprotected": link.party(1).delivered_unprotected.len() - u0,
            "warnings": warned,
            "error": d.result.err().map(|e| e.kind().to_string()),
            "silent": silent,
            "labelled_covered": claimed,
        }));
    }
    Ok(vec![cell(
        w,
        Property::DowngradeResistance,
        "",
        Outcome::unless(!broken.is_empty()),
        if broken.is_empty() {
            format!(
                "{}; no unprotected stanza was delivered as protected",
                if offer["offer"] == "none" {
                    "no offer to strip".to_string()
                } else if offer["stanzas_modified"] == 0 {
                    "nothing in the offer to strip".to_string()
                } else {
                    "the stripped offer was detected or refused".to_string()
                }
            )
        } else {
            format!("downgraded silently: {}", broken.join("; "))
        },
        json!({"weak_offer_honest": "established, delivered, no warning", "protected_delivered": true}),
        json!({"offer_stripping": offer, "encryption_stripping": strips}),
    )])
}
