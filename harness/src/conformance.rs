//! The conformance suite: one generic set of checks, run for every protocol,
//! that tests what the protocol's spec *claims* (its [`ProtocolInfo`](e2elab_core::ProtocolInfo)).
//!
//! Every check returns `Err(description)` on a violation. Rules applied to any
//! bad input (tampered, replayed, reordered, garbage):
//! - the session never panics (a panic fails the test that runs the check);
//! - an `Err` leaves the session as [`AfterBadInput`] says: *unchanged* (same
//!   state, nothing emitted) or *terminated* (state `Closed`);
//! - where the protocol claims [`Property::Integrity`], nothing is delivered as
//!   protected whose content differs from a stanza the peer really sent, and
//!   garbage is never delivered as protected.
//!
//! A protocol joins the suite with one line: `e2elab::conformance_suite!(name, "id");`
//! in `harness/tests/conformance.rs` (see [`crate::conformance_suite`]).

use crate::driver::{self, full_jid};
use crate::link::{Delivery, Dir, Link, Phase};
use e2elab_core::{
    minidom::Node, stanza, AfterBadInput, Element, Options, Property, Protocol, SessionState,
    StanzaKind,
};

/// Result of one check.
pub type Check = crate::Result<()>;

/// A check over one protocol.
pub type CheckFn = fn(&dyn Protocol) -> Check;

/// Every check, by name.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("round_trip", round_trip),
    ("tamper", tamper),
    ("random_mutations", random_mutations),
    ("replay", replay),
    ("reorder", reorder),
    ("garbage", garbage),
    ("close", close),
    ("labels", labels),
];

const SEED: u64 = 0x5eed_c0f0;

/// An established link (handshake done, phase `Data`).
pub fn established(proto: &dyn Protocol, seed: u64) -> crate::Result<Link> {
    let ids = driver::provision(proto, seed)?;
    established_with(proto, &ids, seed)
}

/// An established link between parties with the given identities (checks
/// that re-establish after a terminating error reuse identities: long-term
/// key generation is slow and not what they test).
pub fn established_with(
    proto: &dyn Protocol,
    ids: &driver::Identities,
    seed: u64,
) -> crate::Result<Link> {
    let mut link = driver::link_for(proto, ids, seed, &Options::new())?;
    link.handshake()?;
    link.set_phase(Phase::Data);
    Ok(link)
}

fn el(name: &str, ns: &str) -> Element {
    Element::bare(name, ns)
}

fn attr(mut e: Element, k: &str, v: &str) -> crate::Result<Element> {
    stanza::set_attr(&mut e, k, v).map_err(crate::Error::msg)?;
    Ok(e)
}

fn addressed(kind: StanzaKind, from: usize, jids: [&str; 2]) -> crate::Result<Element> {
    let e = stanza::new(kind);
    let e = attr(e, "from", jids[from])?;
    attr(e, "to", jids[1 - from])
}

/// The varied application stanzas from party `from`, for the kinds the protocol protects.
pub fn varied_stanzas(
    proto: &dyn Protocol,
    from: usize,
) -> crate::Result<Vec<(&'static str, Element)>> {
    varied_stanzas_between(proto, from, [&full_jid(0), &full_jid(1)])
}

/// [`varied_stanzas`] between these full JIDs (initiator first).
pub fn varied_stanzas_between(
    proto: &dyn Protocol,
    from: usize,
    jids: [&str; 2],
) -> crate::Result<Vec<(&'static str, Element)>> {
    let ns = stanza::NS_CLIENT;
    let msg = |id: &str| -> crate::Result<Element> {
        let m = addressed(StanzaKind::Message, from, jids)?;
        let m = attr(m, "type", "chat")?;
        attr(m, "id", id)
    };
    let mut v = Vec::new();
    let mut m = msg("body")?;
    m.append_child(stanza::text_element("body", ns, "Hello, Bob."));
    v.push(("body", m));

    let mut m = msg("subject-thread")?;
    m.append_child(stanza::text_element("subject", ns, "A subject line"));
    m.append_child(stanza::text_element(
        "body",
        ns,
        "Body with a subject and a thread",
    ));
    let t = attr(
        stanza::text_element("thread", ns, "e0ffe42b28561960c6b12b944a092794b9683a38"),
        "parent",
        "7edac73ab41e45c4aafa7b2d7b749080",
    )?;
    m.append_child(t);
    v.push(("subject_thread", m));

    let mut m = msg("extension")?;
    m.append_child(stanza::text_element("body", ns, "with an extension"));
    let mut x = attr(el("x", "urn:example:e2elab:ext"), "kind", "test")?;
    x.append_child(attr(
        stanza::text_element("item", "urn:example:e2elab:ext", "value & <escaped>"),
        "n",
        "1",
    )?);
    x.append_child(el("empty", "urn:example:e2elab:ext"));
    m.append_child(x);
    v.push(("extension", m));

    let mut m = msg("unicode")?;
    m.append_child(stanza::text_element(
        "body",
        ns,
        "Grüße, 世界! עברית مرحبا e\u{0301} 🙂🔐 \"quotes\" 'apos' \t tab\nnew line",
    ));
    v.push(("unicode", m));

    let mut m = msg("empty-body")?;
    m.append_child(el("body", ns));
    v.push(("empty_body", m));

    let mut only_ext = msg("ext-only")?;
    only_ext.append_child(el("composing", "http://jabber.org/protocol/chatstates"));
    v.push(("extension_only", only_ext));

    let mut m = msg("large")?;
    m.append_child(stanza::text_element(
        "body",
        ns,
        &driver::body_text(SEED, 1, 64 * 1024),
    ));
    v.push(("body_64k", m));

    let protects = proto.info().protects;
    if protects.contains(&StanzaKind::Presence) {
        let mut p = addressed(StanzaKind::Presence, from, jids)?;
        p.append_child(stanza::text_element("show", ns, "away"));
        p.append_child(stanza::text_element(
            "status",
            ns,
            "Out to lunch — back at 2",
        ));
        p.append_child(stanza::text_element("priority", ns, "5"));
        v.push(("presence", p));
    }
    if protects.contains(&StanzaKind::Iq) {
        let q = attr(addressed(StanzaKind::Iq, from, jids)?, "type", "get")?;
        let mut q = attr(q, "id", "iq-1")?;
        q.append_child(el("query", "jabber:iq:version"));
        v.push(("iq", q));
    }
    Ok(v)
}

/// Send `el` from `from`, pump, and require it arrives intact as exactly one protected stanza.
fn send_expect(link: &mut Link, from: usize, e: &Element, what: &str) -> Check {
    let mark = link.delivery_mark(1 - from);
    link.send(from, e.clone())
        .map_err(|x| crate::fail!("{what}: send failed: {x}"))?;
    link.pump().map_err(|x| crate::fail!("{what}: {x}"))?;
    // Delivered once: protected, or (a stanza with nothing the profile
    // protects, which its sender put on the wire as it was) unprotected.
    let got = link.delivered_since(1 - from, mark);
    if got != std::slice::from_ref(e) {
        return Err(crate::fail!(
            "{what}: expected the original stanza delivered once, got {} stanza(s){}; receiver errors: {:?}",
            got.len(),
            got.first()
                .map(|g| format!(" (first: {})", stanza::serialize(g)))
                .unwrap_or_default(),
            link.party(1 - from).errors
        ));
    }
    Ok(())
}

/// Send `el` from `from` and take what it put on the wire, without delivering it.
fn capture(link: &mut Link, from: usize, e: &Element) -> crate::Result<Vec<(Dir, String)>> {
    link.send(from, e.clone())
        .map_err(|x| crate::fail!("send failed: {x}"))?;
    let w = link.take_in_flight();
    if w.is_empty() {
        return Err("send emitted no stanza".into());
    }
    Ok(w)
}

/// Same name, same children (elements and text): the content a protocol protects.
pub fn content_eq(a: &Element, b: &Element) -> bool {
    a.name() == b.name() && a.ns() == b.ns() && a.nodes().eq(b.nodes())
}

/// Apply the bad-input rules to one delivery of a bad stanza. `genuine` holds
/// the stanzas the peer really sent (content a delivery may legitimately carry).
fn judge(proto: &dyn Protocol, d: &Delivery, genuine: &[Element], what: &str) -> Check {
    let info = proto.info();
    if info.claims(Property::Integrity) {
        for got in &d.delivered {
            if !genuine.iter().any(|g| content_eq(g, got)) {
                return Err(crate::fail!(
                    "{what}: modified content delivered as protected: {}",
                    stanza::serialize(got)
                ));
            }
        }
    }
    if d.result.is_err() {
        match info.after_bad_input {
            AfterBadInput::Unchanged => {
                if d.state_after != d.state_before {
                    return Err(crate::fail!(
                        "{what}: error changed state {:?} -> {:?}",
                        d.state_before,
                        d.state_after
                    ));
                }
                if d.emitted != 0 {
                    return Err(crate::fail!(
                        "{what}: error but {} stanza(s) emitted",
                        d.emitted
                    ));
                }
                if !d.delivered.is_empty() {
                    return Err(crate::fail!("{what}: error but stanzas delivered"));
                }
            }
            AfterBadInput::Terminate => {
                // Closed, or back to negotiating a new session (a profile
                // that re-negotiates after a failure), or unchanged.
                let ended = matches!(
                    d.state_after,
                    SessionState::Closed | SessionState::Idle | SessionState::Handshaking
                );
                if !ended && d.state_after != d.state_before {
                    return Err(crate::fail!("{what}: error left state {:?}", d.state_after));
                }
            }
        }
    }
    Ok(())
}

/// Whether the session works after bad input: always where bad input
/// changes nothing; for a terminating profile, once whatever it does about
/// it (tell the peer, re-negotiate) has run, both sides are established.
fn usable(proto: &dyn Protocol, link: &mut Link) -> bool {
    if proto.info().after_bad_input == AfterBadInput::Unchanged {
        return true;
    }
    let _ = link.pump();
    link.party(0).session().state() == SessionState::Established
        && link.party(1).session().state() == SessionState::Established
}

/// Every varied stanza, both directions, arrives equal to the original.
pub fn round_trip(proto: &dyn Protocol) -> Check {
    let mut link = established(proto, SEED)?;
    for from in 0..2 {
        for (name, e) in varied_stanzas(proto, from)? {
            send_expect(&mut link, from, &e, &format!("{name} from party {from}"))?;
        }
    }
    Ok(())
}

/// Every delivery says what protected it.
/// - Each [`e2elab_core::Event::Delivered`] of an honest varied stanza
///   carries a label naming exactly the delivered stanza's children, each
///   once, as covered or clear.
/// - Where the profile's honest deliveries are labelled covered (it has a
///   protection layer), every stanza injected in clear into the established
///   session (a clear message, an XHTML-IM body only, an empty message, a
///   body in a foreign namespace) is refused, or delivered as
///   `DeliveredUnprotected` right after a `Warning::UnprotectedStanza`;
///   never under a label that covers any of it. Where no honest delivery
///   is labelled covered, no label may cover anything.
pub fn labels(proto: &dyn Protocol) -> Check {
    let mut link = established(proto, SEED)?;
    let mut protects = false;
    for (name, e) in varied_stanzas(proto, 0)? {
        let l0 = link.party(1).labels.len();
        link.send(0, e.clone())
            .map_err(|x| crate::fail!("{name}: send failed: {x}"))?;
        link.pump().map_err(|x| crate::fail!("{name}: {x}"))?;
        let p = link.party(1);
        for (d, l) in p.delivered[l0..].iter().zip(&p.labels[l0..]) {
            let mut named: Vec<String> = l.covered.iter().chain(&l.clear).cloned().collect();
            let mut kids: Vec<String> = d.children().map(e2elab_core::outbox::child_name).collect();
            named.sort();
            kids.sort();
            if named != kids {
                return Err(crate::fail!(
                    "{name}: the label names {named:?}, the delivered stanza has {kids:?}"
                ));
            }
            if l.covered.is_empty() && (l.confidential || l.authenticated) {
                return Err(crate::fail!(
                    "{name}: a label covering nothing claims protection"
                ));
            }
            if !l.covered.is_empty() && l.key.is_empty() {
                return Err(crate::fail!(
                    "{name}: a label covering {:?} names no key",
                    l.covered
                ));
            }
            protects |= !l.covered.is_empty();
        }
    }
    for (what, el) in crate::security::downgrade::injected()? {
        let (w0, u0, l0) = {
            let p = link.party(1);
            (
                p.warnings.len(),
                p.delivered_unprotected.len(),
                p.labels.len(),
            )
        };
        let d = link.deliver_raw(Dir::AtoB, &stanza::serialize(&el));
        let p = link.party(1);
        if let Some(l) = p.labels[l0..].iter().find(|l| !l.covered.is_empty()) {
            return Err(crate::fail!(
                "{what} injected in clear: delivered under a label covering {:?}",
                l.covered
            ));
        }
        if protects {
            if !d.delivered.is_empty() {
                return Err(crate::fail!(
                    "{what} injected in clear: delivered as an ordinary delivery"
                ));
            }
            let unprotected = p.delivered_unprotected.len() - u0;
            let warned = p.warnings[w0..]
                .iter()
                .filter(|w| matches!(w, e2elab_core::Warning::UnprotectedStanza { .. }))
                .count();
            if d.result.is_ok() && (unprotected != 1 || warned != 1) {
                return Err(crate::fail!(
                    "{what} injected in clear: accepted with {unprotected} unprotected deliveries and {warned} UnprotectedStanza warnings (want 1 and 1)"
                ));
            }
        }
    }
    Ok(())
}

/// A copy of `e` with its k-th text node (document order) edited by `f`.
fn edit_text(e: &Element, k: usize, f: impl FnOnce(&mut String)) -> Element {
    let mut c = e.clone();
    stanza::edit_nth_text(&mut c, k, f);
    c
}

/// Replace the character at `pos` (by chars) with a different one of the same class.
fn flip_char(s: &mut String, pos: usize) {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        s.push('A');
        return;
    }
    let i = pos.min(chars.len() - 1);
    let c = chars[i];
    chars[i] = match c {
        'A'..='Y' | 'a'..='y' | '0'..='8' => char::from(c as u8 + 1),
        'Z' => 'A',
        'z' => 'a',
        '9' => '0',
        '+' => '/',
        '/' => '+',
        '=' => 'A',
        _ => 'x',
    };
    *s = chars.into_iter().collect();
}

/// Structured mutations of a wire stanza: text edits (start, middle, end,
/// truncation) in every text node, child removal and reordering, attribute
/// changes, and byte truncation.
pub fn mutations(wire: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(e) = stanza::parse(wire) else {
        return out;
    };
    let texts = stanza::count_texts(&e);
    for k in 0..texts {
        for (label, which) in [
            ("start", 0usize),
            ("middle", usize::MAX / 2),
            ("end", usize::MAX),
        ] {
            let m = edit_text(&e, k, |t| {
                let n = t.chars().count();
                let pos = match which {
                    0 => 0,
                    x if x == usize::MAX => n.saturating_sub(1),
                    _ => n / 2,
                };
                flip_char(t, pos);
            });
            out.push((format!("text#{k} flip {label}"), stanza::serialize(&m)));
        }
        let m = edit_text(&e, k, |t| {
            let n = t.chars().count();
            *t = t.chars().take(n / 2).collect();
        });
        out.push((format!("text#{k} truncate half"), stanza::serialize(&m)));
        let m = edit_text(&e, k, |t| t.push_str("AAAA"));
        out.push((format!("text#{k} append"), stanza::serialize(&m)));
    }
    // Structure edits, at the top level and one level down.
    let kids: Vec<Element> = e.children().cloned().collect();
    for i in 0..kids.len() {
        let mut m = e.clone();
        m.remove_all_children_for_test(i);
        out.push((format!("remove child #{i}"), stanza::serialize(&m)));
    }
    if kids.len() > 1 {
        let mut m = e.clone();
        let mut ks = kids.clone();
        ks.reverse();
        m.replace_children_for_test(ks);
        out.push(("reverse children".into(), stanza::serialize(&m)));
    }
    for (i, k) in kids.iter().enumerate() {
        let sub: Vec<Element> = k.children().cloned().collect();
        if sub.len() > 1 {
            let mut kk = k.clone();
            let mut s2 = sub.clone();
            s2.reverse();
            kk.replace_children_for_test(s2);
            let mut m = e.clone();
            let mut ks = kids.clone();
            ks[i] = kk;
            m.replace_children_for_test(ks);
            out.push((format!("reverse children of #{i}"), stanza::serialize(&m)));
        }
        for (j, _) in sub.iter().enumerate() {
            let mut kk = k.clone();
            kk.remove_all_children_for_test(j);
            let mut m = e.clone();
            let mut ks = kids.clone();
            ks[i] = kk;
            m.replace_children_for_test(ks);
            out.push((format!("remove grandchild #{i}.{j}"), stanza::serialize(&m)));
        }
    }
    let mut m = e.clone();
    let _ = stanza::set_attr(&mut m, "type", "normal");
    out.push(("type=normal".into(), stanza::serialize(&m)));
    // Byte truncations: what a broken transport might hand over.
    for frac in [2usize, 4] {
        let cut = wire.len() * (frac - 1) / frac;
        let cut = (0..=cut)
            .rev()
            .find(|c| wire.is_char_boundary(*c))
            .unwrap_or(0);
        out.push((format!("bytes truncated to {cut}"), wire[..cut].to_string()));
    }
    out
}

trait ChildEdit {
    fn remove_all_children_for_test(&mut self, i: usize);
    fn replace_children_for_test(&mut self, kids: Vec<Element>);
}

impl ChildEdit for Element {
    /// Remove the i-th child element, keeping text nodes.
    fn remove_all_children_for_test(&mut self, i: usize) {
        let nodes = self.take_nodes();
        let mut idx = 0;
        for n in nodes {
            match n {
                Node::Element(c) => {
                    if idx != i {
                        self.append_child(c);
                    }
                    idx += 1;
                }
                Node::Text(t) => self.append_text_node(t),
            }
        }
    }

    /// Replace all child elements (text nodes are dropped; stanzas carry none at top level).
    fn replace_children_for_test(&mut self, kids: Vec<Element>) {
        let _ = self.take_nodes();
        for k in kids {
            self.append_child(k);
        }
    }
}

fn probe_message(from: usize, id: &str, body: &str) -> crate::Result<Element> {
    let mut m = stanza::chat_message(&full_jid(from), &full_jid(1 - from), id, body)
        .map_err(crate::Error::msg)?;
    let mut x = el("x", "urn:example:e2elab:ext");
    x.append_child(stanza::text_element(
        "item",
        "urn:example:e2elab:ext",
        "payload",
    ));
    m.append_child(x);
    Ok(m)
}

/// Deliver a bad form to the responder, judge it, and re-establish when the
/// protocol terminates sessions on bad input.
fn deliver_bad(
    proto: &dyn Protocol,
    link: &mut Link,
    xml: &str,
    genuine: &[Element],
    what: &str,
) -> Check {
    let d = link.deliver_raw(Dir::AtoB, xml);
    judge(proto, &d, genuine, what)
}

/// Structured mutations of protected stanzas (both directions): typed errors,
/// state rules, and never modified content delivered where integrity is claimed.
pub fn tamper(proto: &dyn Protocol) -> Check {
    let m = probe_message(0, "t1", &driver::body_text(SEED, 7, 200))?;
    let ids = driver::provision(proto, SEED)?;
    let mut link = established_with(proto, &ids, SEED)?;
    let wires = capture(&mut link, 0, &m)?;
    let mut delivered_genuine = false;
    for (w_i, (_, w)) in wires.iter().enumerate() {
        for (label, bad) in mutations(w) {
            if bad == *w {
                continue;
            }
            if !usable(proto, &mut link) {
                link = established_with(proto, &ids, SEED)?;
                let _ = capture(&mut link, 0, &m)?;
            }
            let what = format!("wire stanza {w_i}, {label}");
            let d = link.deliver_raw(Dir::AtoB, &bad);
            // A mutation the session accepted (genuine or, where integrity
            // is not claimed, modified) is input, not bad input: it may move
            // the session on (a sequence number, say).
            delivered_genuine |= !d.delivered.is_empty();
            judge(proto, &d, std::slice::from_ref(&m), &what)?;
        }
    }
    if proto.info().after_bad_input == AfterBadInput::Unchanged {
        // The untouched stanzas still go through (unless a mutation was accepted already).
        let before = link.party(1).delivered.len();
        for (_, w) in &wires {
            let d = link.deliver_raw(Dir::AtoB, w);
            if !delivered_genuine {
                d.result
                    .map_err(|e| crate::fail!("genuine stanza rejected after tampering: {e}"))?;
            }
        }
        if !delivered_genuine && link.party(1).delivered[before..] != [m.clone()] {
            return Err("genuine stanza not delivered after tampered copies".into());
        }
        let m2 = probe_message(0, "t2", "after tampering")?;
        send_expect(&mut link, 0, &m2, "message after tampering")?;
        let m3 = probe_message(1, "t3", "reply after tampering")?;
        send_expect(&mut link, 1, &m3, "reply after tampering")?;
    }
    Ok(())
}

/// Seeded random byte flips anywhere in the wire form: never a panic, the state rules hold.
pub fn random_mutations(proto: &dyn Protocol) -> Check {
    let m = probe_message(0, "r1", &driver::body_text(SEED, 8, 120))?;
    let ids = driver::provision(proto, SEED)?;
    let mut link = established_with(proto, &ids, SEED)?;
    let wires = capture(&mut link, 0, &m)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..200u32 {
        if !usable(proto, &mut link) {
            link = established_with(proto, &ids, SEED)?;
            let _ = capture(&mut link, 0, &m)?;
        }
        let (_, w) = &wires[round as usize % wires.len()];
        let mut bytes = w.clone().into_bytes();
        let flips = 1 + (round % 3) as usize;
        for _ in 0..flips {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pos = (x % bytes.len().max(1) as u64) as usize;
            if let Some(b) = bytes.get_mut(pos) {
                *b ^= 1 << (x >> 61);
            }
        }
        let bad = String::from_utf8_lossy(&bytes).into_owned();
        if bad == *w {
            continue;
        }
        deliver_bad(
            proto,
            &mut link,
            &bad,
            std::slice::from_ref(&m),
            &format!("random mutation {round}"),
        )?;
    }
    Ok(())
}

/// The same protected stanza delivered twice.
pub fn replay(proto: &dyn Protocol) -> Check {
    let m = probe_message(0, "p1", "replay me")?;
    let mut link = established(proto, SEED)?;
    let wires = capture(&mut link, 0, &m)?;
    for (_, w) in &wires {
        link.deliver_raw(Dir::AtoB, w)
            .result
            .map_err(|e| crate::fail!("first delivery rejected: {e}"))?;
    }
    if link.party(1).delivered != [m.clone()] {
        return Err("first delivery did not deliver the stanza".into());
    }
    for (_, w) in &wires {
        let d = link.deliver_raw(Dir::AtoB, w);
        judge(proto, &d, std::slice::from_ref(&m), "replayed stanza")?;
        if proto.info().claims(Property::Replay) && !d.delivered.is_empty() {
            return Err("replay accepted although the spec claims replay protection".into());
        }
    }
    if usable(proto, &mut link) {
        send_expect(
            &mut link,
            0,
            &probe_message(0, "p2", "after replay")?,
            "message after replay",
        )?;
    }
    Ok(())
}

/// Two stanzas delivered in the opposite order.
pub fn reorder(proto: &dyn Protocol) -> Check {
    let m1 = probe_message(0, "o1", "first")?;
    let m2 = probe_message(0, "o2", "second")?;
    let mut link = established(proto, SEED)?;
    let w1 = capture(&mut link, 0, &m1)?;
    let w2 = capture(&mut link, 0, &m2)?;
    let genuine = [m1.clone(), m2.clone()];
    for (_, w) in w2.iter().chain(w1.iter()) {
        let d = link.deliver_raw(Dir::AtoB, w);
        judge(proto, &d, &genuine, "reordered stanza")?;
    }
    let got = &link.party(1).delivered;
    if proto.info().claims(Property::LossReorderTolerance) {
        if got.len() != 2 || !got.contains(&m1) || !got.contains(&m2) {
            return Err(crate::fail!(
                "claims loss/reorder tolerance but delivered {} of 2",
                got.len()
            ));
        }
        send_expect(
            &mut link,
            0,
            &probe_message(0, "o3", "third")?,
            "message after reorder",
        )?;
    }
    Ok(())
}

/// Garbage delivered to an established session.
pub fn garbage(proto: &dyn Protocol) -> Check {
    let ids = driver::provision(proto, SEED)?;
    let mut link = established_with(proto, &ids, SEED)?;
    let a = full_jid(0);
    let b = full_jid(1);
    let big = "A".repeat(100_000);
    let items = vec![
        "<foo xmlns='urn:example:not-a-stanza'/>".to_string(),
        "<message xmlns='jabber:client'/>".to_string(),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}' type='chat'/>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><body>?OTR:AAMDgarbage.</body></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><body>?OTR,1,2,garbage,</body></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><c xmlns='http://www.xmpp.org/extensions/xep-0200.html#ns'><data>!!!</data><mac>???</mac></c></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><x xmlns='jabber:x:encrypted'>not armor</x><body>x</body></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'>{big}</e2e></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><openpgp xmlns='urn:xmpp:openpgp:0'>AAAA</openpgp></message>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='submit'/></feature></message>"),
        format!("<iq xmlns='jabber:client' from='{a}' to='{b}'/>"),
        format!("<presence xmlns='jabber:client' from='{a}'><x xmlns='jabber:x:signed'>junk</x><status>s</status></presence>"),
        format!("<message xmlns='jabber:client' from='{a}' to='{b}'><body>{big}</body></message>"),
        "<message xmlns='jabber:client'><body>unclosed".to_string(),
        String::new(),
    ];
    for (i, g) in items.iter().enumerate() {
        if !usable(proto, &mut link) {
            link = established_with(proto, &ids, SEED)?;
        }
        deliver_bad(proto, &mut link, g, &[], &format!("garbage #{i}"))?;
    }
    if usable(proto, &mut link) {
        send_expect(
            &mut link,
            0,
            &probe_message(0, "g1", "after garbage")?,
            "message after garbage",
        )?;
    }
    Ok(())
}

/// After `close`, the session refuses to send and emits nothing.
pub fn close(proto: &dyn Protocol) -> Check {
    let mut link = established(proto, SEED)?;
    link.set_phase(Phase::Close);
    link.close(0)
        .map_err(|e| crate::fail!("close failed: {e}"))?;
    link.pump().map_err(crate::Error::msg)?;
    if link.party(0).session().state() != SessionState::Closed {
        return Err(crate::fail!(
            "state after close: {:?}",
            link.party(0).session().state()
        ));
    }
    let before = link.in_flight();
    let r = link.send(0, probe_message(0, "c1", "after close")?);
    if r.is_ok() {
        return Err("send after close succeeded".into());
    }
    if link.in_flight() != before {
        return Err("send after close emitted a stanza".into());
    }
    Ok(())
}

/// Run every check; `(name, result)` per check.
pub fn run_all(proto: &dyn Protocol) -> Vec<(&'static str, Check)> {
    CHECKS
        .iter()
        .map(|(n, f)| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(proto)))
                .unwrap_or_else(|_| Err("panicked".into()));
            (*n, r)
        })
        .collect()
}

/// Generate one `#[test]` per conformance check for a registered protocol id.
///
/// ```text
/// e2elab::conformance_suite!(plaintext, "plaintext");
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $id:expr) => {
        #[allow(clippy::unwrap_used, clippy::expect_used)]
        mod $name {
            fn proto() -> Box<dyn e2elab_core::Protocol> {
                e2elab::registry::get($id).expect("protocol is registered")
            }
            #[test]
            fn round_trip() {
                e2elab::conformance::round_trip(proto().as_ref()).unwrap()
            }
            #[test]
            fn tamper() {
                e2elab::conformance::tamper(proto().as_ref()).unwrap()
            }
            #[test]
            fn random_mutations() {
                e2elab::conformance::random_mutations(proto().as_ref()).unwrap()
            }
            #[test]
            fn replay() {
                e2elab::conformance::replay(proto().as_ref()).unwrap()
            }
            #[test]
            fn reorder() {
                e2elab::conformance::reorder(proto().as_ref()).unwrap()
            }
            #[test]
            fn garbage() {
                e2elab::conformance::garbage(proto().as_ref()).unwrap()
            }
            #[test]
            fn close() {
                e2elab::conformance::close(proto().as_ref()).unwrap()
            }
            #[test]
            fn labels() {
                e2elab::conformance::labels(proto().as_ref()).unwrap()
            }
        }
    };
}
