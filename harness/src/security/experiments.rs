//! The experiments: each runs real sessions through the [`Protocol`]/[`Session`]
//! traits and the [`Link`], with an attacker acting on the wire, and returns an
//! outcome with the evidence (which stanza, what the attacker did, what the
//! receiver delivered or rejected).

use super::wire;
use super::{Outcome, PropertyResult};
use crate::adversary::{Adversary, Forward, Wire};
use crate::driver::{self, full_jid, Identities, ALICE, BOB, RESOURCE};
use crate::link::{Dir, Link, Phase};
use e2elab_core::{
    minidom::Node, stanza, Element, Env, Event, Identity, Options, Outbox, Protocol,
    PublicIdentity, Role, Session, SessionConfig, SessionState, StanzaKind, Timestamp, Warning,
};
use std::sync::Arc;
use std::time::Duration;

/// The third party of the misbinding and relay experiments.
pub const EVE: &str = "eve@example.com";
const CANARY_NS: &str = "urn:example:e2elab:canary";

type R<T> = Result<T, String>;

/// Everything an experiment needs: the protocol, both provisioned identities,
/// the attacker's own identities (one per victim JID) and the seed.
pub struct Ctx<'a> {
    /// The protocol under test.
    pub proto: &'a dyn Protocol,
    /// Alice's and Bob's long-term identities (as `driver::provision` makes them).
    pub ids: Identities,
    /// Mallory's own identities, labelled with Alice's and Bob's JIDs.
    pub mallory: [Arc<Identity>; 2],
    /// The run seed.
    pub seed: u64,
    counter: std::cell::Cell<u64>,
}

impl<'a> Ctx<'a> {
    /// Provision both parties and the attacker.
    pub fn new(proto: &'a dyn Protocol, seed: u64) -> R<Self> {
        let ids = driver::provision(proto, seed)?;
        let mallory = [
            Arc::new(attacker_identity(proto, seed, ALICE, &ids.ids[0])?),
            Arc::new(attacker_identity(proto, seed, BOB, &ids.ids[1])?),
        ];
        Ok(Ctx {
            proto,
            ids,
            mallory,
            seed,
            counter: std::cell::Cell::new(0),
        })
    }

    /// A fresh seed for the next session (deterministic in the run seed).
    fn next_seed(&self) -> u64 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(n.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    /// An honest established link between Alice and Bob (fresh session randomness).
    pub fn established(&self) -> R<Link> {
        let mut link = driver::link_for(self.proto, &self.ids, self.next_seed(), &Options::new())?;
        link.handshake()?;
        link.set_phase(Phase::Data);
        Ok(link)
    }

    fn id(&self) -> &'static str {
        self.proto.info().id
    }

    fn has_handshake(&self) -> R<bool> {
        let mut link = driver::link_for(self.proto, &self.ids, self.next_seed(), &Options::new())?;
        link.handshake()?;
        Ok(link.counters(Phase::Handshake, Dir::AtoB).messages
            + link.counters(Phase::Handshake, Dir::BtoA).messages
            > 0)
    }

    fn has_keys(&self) -> bool {
        !self.ids.ids[0].public.data.is_empty()
    }
}

/// Mallory's own long-term identity for `jid`: generated from another seed; if
/// the backend hands back the victim's key (libotr keys are cached per JID),
/// generated for a JID of Mallory's and relabelled.
fn attacker_identity(proto: &dyn Protocol, seed: u64, jid: &str, victim: &Identity) -> R<Identity> {
    let mut env = Env::for_party(seed ^ 0x006d_616c_6c6f_7279, &format!("mallory:{jid}"));
    let id = proto
        .generate_identity(&mut env, jid)
        .map_err(|e| format!("attacker identity: {e}"))?;
    if id.public.data != victim.public.data || victim.public.data.is_empty() {
        return Ok(id);
    }
    let own = format!("mallory.{}", jid.replace('@', ".at."));
    let own = format!("{own}@evil.example");
    let id = proto
        .generate_identity(&mut env, &own)
        .map_err(|e| format!("attacker identity: {e}"))?;
    // A key file that names its account (libotr's) is renamed as an attacker
    // would edit her own file.
    let secret = match std::str::from_utf8(id.secret().expose()) {
        Ok(t) if t.contains(&own) => {
            e2elab_core::SecretBytes::new(t.replace(&own, jid).into_bytes())
        }
        _ => id.secret().clone(),
    };
    let mut public = id.public.clone();
    public.jid = jid.to_string();
    Ok(Identity::new(public, secret))
}

fn relabel_public(p: &PublicIdentity, jid: &str) -> PublicIdentity {
    let mut q = p.clone();
    q.jid = jid.to_string();
    q
}

/// One session outside any link: the attacker's or a judge's, fed by hand.
struct Solo {
    s: Box<dyn Session>,
    env: Env,
    out: Outbox,
    delivered: Vec<Element>,
    errors: Vec<String>,
}

impl Solo {
    #[allow(clippy::too_many_arguments)]
    fn new(
        proto: &dyn Protocol,
        seed: u64,
        role: Role,
        local: &str,
        peer: &str,
        identity: Arc<Identity>,
        peer_public: Option<PublicIdentity>,
        now: Timestamp,
    ) -> R<Solo> {
        let mut env = Env::for_party(seed, role.name());
        env.set_now(now);
        let cfg = SessionConfig {
            role,
            local_jid: local.to_string(),
            peer_jid: peer.to_string(),
            identity,
            peer_public,
            options: Options::new(),
        };
        let s = proto
            .new_session(&mut env, cfg)
            .map_err(|e| format!("new session: {e}"))?;
        Ok(Solo {
            s,
            env,
            out: Outbox::new(),
            delivered: Vec::new(),
            errors: Vec::new(),
        })
    }

    fn drain(&mut self) {
        while let Some(ev) = self.out.poll_event() {
            if let Event::Delivered(el) = ev {
                self.delivered.push(el);
            }
        }
        while self.out.poll_transmit().is_some() {}
    }

    fn start(&mut self) {
        if let Err(e) = self.s.start(&mut self.env, &mut self.out) {
            self.errors.push(format!("start: {e}"));
        }
        self.drain();
    }

    /// Feed one serialized stanza; the number delivered.
    fn feed(&mut self, xml: &str) -> usize {
        let before = self.delivered.len();
        match stanza::parse(xml) {
            Err(e) => self.errors.push(e.to_string()),
            Ok(el) => {
                if let Err(e) = self.s.handle_inbound(&mut self.env, el, &mut self.out) {
                    self.errors.push(e.kind().to_string());
                }
            }
        }
        self.drain();
        self.delivered.len() - before
    }
}

/// Same name, namespace, text and child elements, in any order: XEP-0200
/// keeps `<thread/>` in clear and the receiver puts it back after the
/// decrypted children, which is the same stanza to an XMPP application.
pub fn same_content(a: &Element, b: &Element) -> bool {
    let kids = |e: &Element| {
        let mut v: Vec<String> = e.children().map(stanza::serialize).collect();
        v.sort();
        v
    };
    a.name() == b.name() && a.ns() == b.ns() && a.text() == b.text() && kids(a) == kids(b)
}

fn attr(mut e: Element, k: &str, v: &str) -> R<Element> {
    stanza::set_attr(&mut e, k, v).map_err(|e| e.to_string())?;
    Ok(e)
}

fn canary(tag: &str, n: u64) -> String {
    format!("c4n4ry{tag}Q{n:x}Z")
}

/// A chat message from `from` whose body carries `body`.
fn message(from: usize, id: &str, body: &str) -> R<Element> {
    stanza::chat_message(&full_jid(from), &full_jid(1 - from), id, body).map_err(|e| e.to_string())
}

/// A message with a canary in every part: body, subject, thread, an
/// extension element's text and attribute, and the `id` attribute.
fn canary_message(from: usize, n: u64) -> R<(Element, Vec<(String, String)>)> {
    let ns = stanza::NS_CLIENT;
    let parts = [
        ("body", canary("BODY", n)),
        ("subject", canary("SUBJ", n)),
        ("thread", canary("THRD", n)),
        ("extension text", canary("EXTT", n)),
        ("extension attribute", canary("EXTA", n)),
        ("id attribute (outer)", canary("IDAT", n)),
    ];
    let m = attr(stanza::new(StanzaKind::Message), "from", &full_jid(from))?;
    let m = attr(m, "to", &full_jid(1 - from))?;
    let m = attr(m, "type", "chat")?;
    let mut m = attr(m, "id", &parts[5].1)?;
    m.append_child(stanza::text_element("subject", ns, &parts[1].1));
    m.append_child(stanza::text_element("body", ns, &parts[0].1));
    m.append_child(stanza::text_element("thread", ns, &parts[2].1));
    let x = attr(
        stanza::text_element("x", CANARY_NS, &parts[3].1),
        "note",
        &parts[4].1,
    )?;
    m.append_child(x);
    Ok((
        m,
        parts
            .iter()
            .map(|(a, b)| (format!("message {a}"), b.clone()))
            .collect(),
    ))
}

fn canary_presence(from: usize, n: u64) -> R<(Element, Vec<(String, String)>)> {
    let ns = stanza::NS_CLIENT;
    let parts = [
        ("status", canary("STAT", n)),
        ("extension text", canary("PEXT", n)),
        ("id attribute (outer)", canary("PIDA", n)),
    ];
    let p = attr(stanza::new(StanzaKind::Presence), "from", &full_jid(from))?;
    let p = attr(p, "to", &full_jid(1 - from))?;
    let mut p = attr(p, "id", &parts[2].1)?;
    p.append_child(stanza::text_element("show", ns, "away"));
    p.append_child(stanza::text_element("status", ns, &parts[0].1));
    p.append_child(stanza::text_element("x", CANARY_NS, &parts[1].1));
    Ok((
        p,
        parts
            .iter()
            .map(|(a, b)| (format!("presence {a}"), b.clone()))
            .collect(),
    ))
}

fn canary_iq(from: usize, n: u64) -> R<(Element, Vec<(String, String)>)> {
    let parts = [
        ("payload text", canary("IQPL", n)),
        ("payload attribute", canary("IQAT", n)),
        ("id attribute (outer)", canary("IQID", n)),
    ];
    let q = attr(stanza::new(StanzaKind::Iq), "from", &full_jid(from))?;
    let q = attr(q, "to", &full_jid(1 - from))?;
    let q = attr(q, "type", "set")?;
    let mut q = attr(q, "id", &parts[2].1)?;
    let query = attr(
        stanza::text_element("query", CANARY_NS, &parts[0].1),
        "item",
        &parts[1].1,
    )?;
    q.append_child(query);
    Ok((
        q,
        parts
            .iter()
            .map(|(a, b)| (format!("iq {a}"), b.clone()))
            .collect(),
    ))
}

/// Send `el` from `from` and take what it put on the wire, undelivered.
fn capture(link: &mut Link, from: usize, el: &Element) -> R<Vec<(Dir, String)>> {
    link.send(from, el.clone())
        .map_err(|e| format!("send failed: {e}"))?;
    let w = link.take_in_flight();
    if w.is_empty() {
        return Err("send emitted no stanza".into());
    }
    Ok(w)
}

/// Deliver captured stanzas in order, then pump; the stanzas delivered as protected.
fn deliver_all(link: &mut Link, wires: &[(Dir, String)]) -> Vec<Element> {
    let mut got = Vec::new();
    for (d, x) in wires {
        got.extend(link.deliver_raw(*d, x).delivered);
    }
    let _ = link.pump();
    got
}

/// The largest captured stanza in direction `dir` (the one carrying the content).
fn carrier(wires: &[(Dir, String)], dir: Dir) -> Option<usize> {
    wires
        .iter()
        .enumerate()
        .filter(|(_, (d, _))| *d == dir)
        .max_by_key(|(_, (_, x))| x.len())
        .map(|(i, _)| i)
}

fn errs_full(link: &Link, idx: usize) -> String {
    let e: Vec<String> = link
        .party(idx)
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    if e.is_empty() {
        "no error".into()
    } else {
        short(&e.join("; "))
    }
}

/// What differs between the original and a delivered stanza, child by child.
fn diff_children(orig: &Element, got: &Element) -> String {
    let ser = |e: &Element| -> Vec<String> { e.children().map(stanza::serialize).collect() };
    let (o, g) = (ser(orig), ser(got));
    let added: Vec<String> = g
        .iter()
        .filter(|x| !o.contains(x))
        .map(|x| short(x))
        .collect();
    let lost: Vec<String> = o
        .iter()
        .filter(|x| !g.contains(x))
        .map(|x| short(x))
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("delivered but never sent: {}", added.join(" ")));
    }
    if !lost.is_empty() {
        parts.push(format!("sent but not delivered: {}", lost.join(" ")));
    }
    if orig.text() != got.text() {
        parts.push("text nodes differ".into());
    }
    parts.join("; ")
}

fn short(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s
    }
}

fn errs(link: &Link, idx: usize, from: usize) -> String {
    let e: Vec<String> = link.party(idx).errors[from.min(link.party(idx).errors.len())..]
        .iter()
        .map(|e| e.kind().to_string())
        .collect();
    if e.is_empty() {
        "no error".into()
    } else {
        e.join(", ")
    }
}

// ---------------------------------------------------------------------------
// 1. confidentiality coverage

/// Canaries in every part of every stanza kind the protocol protects; which
/// can be read on the wire without a key.
pub fn confidentiality(ctx: &Ctx) -> R<PropertyResult> {
    let mut link = ctx.established()?;
    let protects = ctx.proto.info().protects;
    let mut leaked = Vec::new();
    let mut hidden = Vec::new();
    let mut sent = Vec::new();
    for (n, kind) in protects.iter().enumerate() {
        let (el, parts) = match kind {
            StanzaKind::Message => canary_message(0, n as u64)?,
            StanzaKind::Presence => canary_presence(0, n as u64)?,
            StanzaKind::Iq => canary_iq(0, n as u64)?,
        };
        let wires = capture(&mut link, 0, &el)?;
        let got = deliver_all(&mut link, &wires);
        sent.push(format!(
            "{} ({} wire stanza(s), {} delivered intact)",
            kind.name(),
            wires.len(),
            got.iter().filter(|g| same_content(g, &el)).count()
        ));
        for (part, c) in parts {
            if wires
                .iter()
                .any(|(_, x)| wire::readable_in(x, c.as_bytes()))
            {
                leaked.push(part);
            } else {
                hidden.push(part);
            }
        }
    }
    let counted: Vec<&String> = leaked.iter().filter(|p| !p.contains("(outer)")).collect();
    let outer: Vec<&String> = leaked.iter().filter(|p| p.contains("(outer)")).collect();
    let evidence = format!(
        "sent from Alice, each part carrying a distinct canary: {}. Searched the wire forms raw, base64- and hex-decoded. In clear: [{}]; outer routing attributes in clear (not counted): [{}]; hidden: [{}]",
        sent.join("; "),
        counted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        outer.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        hidden.join(", ")
    );
    Ok(PropertyResult::new(
        if counted.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        evidence,
    ))
}

// ---------------------------------------------------------------------------
// 2. integrity

type Mutation = (&'static str, fn(&mut Element) -> bool);

/// Replace an element's text (its child elements stay, after the text).
fn set_text(e: &mut Element, text: &str) {
    let nodes = e.take_nodes();
    e.append_text(text.to_string());
    for n in nodes {
        if let Node::Element(c) = n {
            e.append_child(c);
        }
    }
}

/// The path (child indexes) to the descendant element with the longest own text.
fn longest_text_path(e: &Element) -> (usize, Vec<usize>) {
    let mut best = (e.texts().map(str::len).sum::<usize>(), Vec::new());
    for (i, c) in e.children().enumerate() {
        let (l, mut p) = longest_text_path(c);
        if l > best.0 {
            p.insert(0, i);
            best = (l, p);
        }
    }
    best
}

fn at_path<'a>(e: &'a mut Element, path: &[usize]) -> Option<&'a mut Element> {
    match path.split_first() {
        None => Some(e),
        Some((i, rest)) => at_path(e.children_mut().nth(*i)?, rest),
    }
}

fn edit_text(el: &mut Element, f: impl FnOnce(&str) -> String) -> bool {
    let (len, path) = longest_text_path(el);
    if len == 0 {
        return false;
    }
    let Some(t) = at_path(el, &path) else {
        return false;
    };
    let old = t.text();
    let new = f(&old);
    if new == old {
        return false;
    }
    set_text(t, &new);
    true
}

fn flip_at(frac_num: usize) -> impl FnOnce(&str) -> String {
    move |s: &str| {
        let chars: Vec<char> = s.chars().collect();
        // Skip a leading protocol tag such as "?OTR:" and trailing padding.
        let i = (chars.len() * frac_num / 10).min(chars.len().saturating_sub(1));
        let mut out = chars.clone();
        out[i] = match chars[i] {
            'A' => 'B',
            'a' => 'b',
            '0' => '1',
            c if c.is_ascii_alphanumeric() => 'A',
            '+' | '/' => 'Q',
            _ => 'Q',
        };
        out.into_iter().collect()
    }
}

const MUTATIONS: &[Mutation] = &[
    ("bit flip at 20% of the payload text", |e| {
        edit_text(e, flip_at(2))
    }),
    ("bit flip at 50% of the payload text", |e| {
        edit_text(e, flip_at(5))
    }),
    ("bit flip at 90% of the payload text", |e| {
        edit_text(e, flip_at(9))
    }),
    ("payload text truncated to half", |e| {
        edit_text(e, |s| s.chars().take(s.chars().count() / 2).collect())
    }),
    ("child elements in reverse order", |e| {
        if e.children().count() < 2 {
            return false;
        }
        let nodes = e.take_nodes();
        for n in nodes.into_iter().rev() {
            e.append_node(n);
        }
        true
    }),
    ("clear canary texts rewritten", |e| {
        fn walk(e: &mut Element) -> bool {
            let mut changed = false;
            let t = e.text();
            if t.contains("c4n4ry") && e.children().next().is_none() {
                set_text(e, &t.replace("c4n4ry", "F0RGED"));
                return true;
            }
            for c in e.children_mut() {
                changed |= walk(c);
            }
            changed
        }
        walk(e)
    }),
    ("an extra element appended", |e| {
        e.append_child(stanza::text_element(
            "x",
            "urn:example:e2elab:evil",
            "injected by the attacker",
        ));
        true
    }),
];

/// Modify protected stanzas in flight; is modified content ever delivered as genuine?
pub fn integrity(ctx: &Ctx) -> R<PropertyResult> {
    let mut lines = Vec::new();
    let mut accepted_modified = Vec::new();
    let mut link = ctx.established()?;
    for (i, (name, f)) in MUTATIONS.iter().enumerate() {
        if link.party(1).session().state() != SessionState::Established
            || link.party(0).session().state() != SessionState::Established
        {
            link = ctx.established()?;
        }
        let (el, _) = canary_message(0, 100 + i as u64)?;
        let wires = capture(&mut link, 0, &el)?;
        let Some(ci) = carrier(&wires, Dir::AtoB) else {
            continue;
        };
        let mut parsed = stanza::parse(&wires[ci].1).map_err(|e| e.to_string())?;
        if !f(&mut parsed) {
            lines.push(format!("{name}: not applicable to this wire form"));
            deliver_all(&mut link, &wires);
            continue;
        }
        let forged = stanza::serialize(&parsed);
        let errs_before = link.party(1).errors.len();
        let mut got = Vec::new();
        for (j, (d, x)) in wires.iter().enumerate() {
            let x = if j == ci { &forged } else { x };
            got.extend(link.deliver_raw(*d, x).delivered);
        }
        let _ = link.pump();
        let bad: Vec<&Element> = got.iter().filter(|g| !same_content(g, &el)).collect();
        let good = got.len() - bad.len();
        let verdict = if !bad.is_empty() {
            accepted_modified.push(if i < 4 { "payload" } else { *name });
            format!(
                "DELIVERED MODIFIED content ({})",
                diff_children(&el, bad[0])
            )
        } else if good > 0 {
            "delivered the original content intact (the change reached no content)".to_string()
        } else {
            format!("rejected ({})", errs(&link, 1, errs_before))
        };
        lines.push(format!("{name}: {verdict}"));
    }
    let outcome = if accepted_modified.is_empty() {
        Outcome::Holds
    } else {
        Outcome::Fails
    };
    let payload_ok = !accepted_modified.contains(&"payload");
    let clear: Vec<&str> = accepted_modified
        .iter()
        .copied()
        .filter(|m| *m != "payload")
        .collect();
    Ok(PropertyResult::new(
        outcome,
        format!(
            "Alice sent a canary message per mutation; the attacker modified its wire stanza (the largest one) before Bob got it. Encrypted payload: {}; clear or structural changes delivered as genuine: [{}]. {}",
            if payload_ok { "no modification delivered" } else { "MODIFIED PAYLOAD DELIVERED" },
            clear.join(", "),
            lines.join("; ")
        ),
    ))
}

// ---------------------------------------------------------------------------
// 3. replay

/// Re-inject an earlier stanza in the same session, after the clock moved on,
/// and into a new session between the same identities.
pub fn replay(ctx: &Ctx) -> R<PropertyResult> {
    let mut lines = Vec::new();
    let mut accepted = Vec::new();
    // (a) same session, right away.
    {
        let mut link = ctx.established()?;
        let el = message(0, "r1", "replay me")?;
        let wires = capture(&mut link, 0, &el)?;
        let first = deliver_all(&mut link, &wires).len();
        let e0 = link.party(1).errors.len();
        let again = deliver_all(&mut link, &wires);
        let n = again.iter().filter(|g| same_content(g, &el)).count();
        if n > 0 {
            accepted.push("same session");
        }
        lines.push(format!(
            "same session: Bob delivered the original {first}x, the attacker re-sent its {} wire stanza(s): {}",
            wires.len(),
            if n > 0 {
                format!("delivered AGAIN {n}x")
            } else {
                format!("rejected ({})", errs(&link, 1, e0))
            }
        ));
    }
    // (b) same session, 11 minutes later (past RFC 3923's windows).
    {
        let mut link = ctx.established()?;
        let el = message(0, "r2", "replay me later")?;
        let wires = capture(&mut link, 0, &el)?;
        deliver_all(&mut link, &wires);
        link.advance(Duration::from_secs(660));
        let e0 = link.party(1).errors.len();
        let again = deliver_all(&mut link, &wires);
        let n = again.iter().filter(|g| same_content(g, &el)).count();
        if n > 0 {
            accepted.push("after the clock moved 11 min");
        }
        lines.push(format!(
            "same session after the virtual clock moved 11 min: {}",
            if n > 0 {
                format!("delivered AGAIN {n}x")
            } else {
                format!("rejected ({})", errs(&link, 1, e0))
            }
        ));
    }
    // (c) into a new session between the same identities.
    {
        let mut link = ctx.established()?;
        let el = message(0, "r3", "replay me elsewhere")?;
        let wires = capture(&mut link, 0, &el)?;
        deliver_all(&mut link, &wires);
        let mut link2 = ctx.established()?;
        let e0 = link2.party(1).errors.len();
        let again = deliver_all(&mut link2, &wires);
        let n = again.iter().filter(|g| same_content(g, &el)).count();
        if n > 0 {
            accepted.push("new session");
        }
        lines.push(format!(
            "recorded stanza(s) injected into a new established session between the same identities: {}",
            if n > 0 {
                format!("delivered {n}x")
            } else {
                format!("rejected ({})", errs(&link2, 1, e0))
            }
        ));
    }
    Ok(PropertyResult::new(
        if accepted.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        lines.join("; "),
    ))
}

// ---------------------------------------------------------------------------
// 4. loss and reordering

/// Drop one stanza, then reorder two: does the session carry on?
pub fn loss_reorder(ctx: &Ctx) -> R<PropertyResult> {
    let mut ok = true;
    let mut lines = Vec::new();
    // Drop.
    {
        let mut link = ctx.established()?;
        let m1 = message(0, "l1", "this one is lost")?;
        let _lost = capture(&mut link, 0, &m1)?;
        let e0 = link.party(1).errors.len();
        let m2 = message(0, "l2", "after the loss")?;
        let w2 = capture(&mut link, 0, &m2).unwrap_or_default();
        let got2 = deliver_all(&mut link, &w2);
        let m3 = message(1, "l3", "reply after the loss")?;
        let w3 = capture(&mut link, 1, &m3).unwrap_or_default();
        let got3 = deliver_all(&mut link, &w3);
        let after = got2.iter().any(|g| same_content(g, &m2));
        let reply = got3.iter().any(|g| same_content(g, &m3));
        ok &= after && reply;
        lines.push(format!(
            "attacker dropped Alice's 1st data stanza: her 2nd {}, Bob's reply {} ({})",
            if after { "delivered" } else { "NOT delivered" },
            if reply { "delivered" } else { "NOT delivered" },
            errs(&link, 1, e0)
        ));
    }
    // Reorder.
    {
        let mut link = ctx.established()?;
        let m1 = message(0, "o1", "first")?;
        let m2 = message(0, "o2", "second")?;
        let w1 = capture(&mut link, 0, &m1)?;
        let w2 = capture(&mut link, 0, &m2).unwrap_or_default();
        let e0 = link.party(1).errors.len();
        let got_2 = deliver_all(&mut link, &w2);
        let got_1 = deliver_all(&mut link, &w1);
        let d2 = got_2.iter().any(|g| same_content(g, &m2));
        let d1 = got_1.iter().any(|g| same_content(g, &m1));
        ok &= d1 && d2;
        lines.push(format!(
            "attacker swapped Alice's two data stanzas: the 2nd {}, the 1st (late) {} ({})",
            if d2 { "delivered" } else { "NOT delivered" },
            if d1 { "delivered" } else { "NOT delivered" },
            errs(&link, 1, e0)
        ));
    }
    Ok(PropertyResult::new(
        if ok { Outcome::Holds } else { Outcome::Fails },
        lines.join("; "),
    ))
}

// ---------------------------------------------------------------------------
// 5. forward secrecy (and, for sessions whose state is the long-term key, 6.)

struct Recording {
    link: Link,
    /// (direction, phase, wire form) of everything emitted.
    emissions: Vec<(Dir, Phase, String)>,
    /// Canary bodies sent, with their direction.
    bodies: Vec<(Dir, String)>,
}

fn record_conversation(ctx: &Ctx, rounds: u64, tag: &str) -> R<Recording> {
    let mut link = ctx.established()?;
    let mut bodies = Vec::new();
    for n in 0..rounds {
        for from in 0..2 {
            let body = canary(&format!("{tag}{from}"), n);
            let el = message(from, &format!("{tag}{from}-{n}"), &body)?;
            link.advance(driver::MESSAGE_INTERVAL);
            link.send(from, el).map_err(|e| e.to_string())?;
            link.pump().map_err(|e| e.to_string())?;
            bodies.push((Dir::from_party(from), body));
        }
    }
    let emissions = link.emissions.clone();
    Ok(Recording {
        link,
        emissions,
        bodies,
    })
}

/// Feed a recording's stanzas for `dir` into a fresh session of the receiver
/// built from `identity`; which canary bodies it delivers.
#[allow(clippy::too_many_arguments)]
fn replay_into_fresh(
    ctx: &Ctx,
    rec: &[(Dir, Phase, String)],
    dir: Dir,
    identity: Arc<Identity>,
    peer_public: PublicIdentity,
    data_only: bool,
    now: Timestamp,
    bodies: &[(Dir, String)],
) -> R<(usize, usize, Vec<String>)> {
    let to = dir.to_idx();
    let role = if to == 0 {
        Role::Initiator
    } else {
        Role::Responder
    };
    let mut s = Solo::new(
        ctx.proto,
        ctx.next_seed(),
        role,
        &full_jid(to),
        &full_jid(1 - to),
        identity,
        Some(peer_public),
        now,
    )?;
    if role == Role::Initiator && !data_only {
        s.start();
    }
    let mut fed = 0;
    for (d, ph, x) in rec {
        if *d != dir || (data_only && *ph != Phase::Data) {
            continue;
        }
        fed += 1;
        s.feed(x);
    }
    let read: Vec<String> = bodies
        .iter()
        .filter(|(d, b)| {
            *d == dir
                && s.delivered
                    .iter()
                    .any(|e| stanza::body(e).is_some_and(|t| t == *b))
        })
        .map(|(_, b)| b.clone())
        .collect();
    let mut errors = s.errors.clone();
    errors.dedup();
    Ok((fed, read.len(), errors))
}

/// Record a conversation, close it, leak both long-term identities; can an
/// attacker with fresh sessions built from them read the recording?
pub fn forward_secrecy(ctx: &Ctx) -> R<PropertyResult> {
    let mut rec = record_conversation(ctx, 2, "FS")?;
    rec.link.set_phase(Phase::Close);
    rec.link.close(0).map_err(|e| e.to_string())?;
    let _ = rec.link.pump();
    let now = rec.link.now();
    let clear = rec
        .bodies
        .iter()
        .filter(|(_, b)| {
            rec.emissions
                .iter()
                .any(|(_, _, x)| wire::readable_in(x, b.as_bytes()))
        })
        .count();
    let mut lines = vec![format!(
        "recorded {} stanzas ({} canary bodies, {} of them readable without any key), closed the session, leaked both long-term identities",
        rec.emissions.len(),
        rec.bodies.len(),
        clear
    )];
    let mut read_total = clear;
    for dir in [Dir::AtoB, Dir::BtoA] {
        let to = dir.to_idx();
        for data_only in [true, false] {
            let (fed, read, errors) = replay_into_fresh(
                ctx,
                &rec.emissions,
                dir,
                ctx.ids.ids[to].clone(),
                ctx.ids.ids[1 - to].public.clone(),
                data_only,
                now,
                &rec.bodies,
            )?;
            read_total += read;
            lines.push(format!(
                "fresh {} session from the leaked {} identity fed the {} {} stanzas ({}): read {} of {} bodies (errors: {})",
                if to == 0 { "initiator" } else { "responder" },
                if to == 0 { "Alice" } else { "Bob" },
                fed,
                dir.label(),
                if data_only { "data only" } else { "handshake and data" },
                read,
                rec.bodies.iter().filter(|(d, _)| *d == dir).count(),
                if errors.is_empty() { "none".to_string() } else { errors.join(", ") }
            ));
        }
    }
    Ok(PropertyResult::new(
        if read_total == 0 {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        lines.join("; "),
    ))
}

/// Post-compromise security: possible as a black-box experiment only where
/// the whole session state is the long-term identity (no handshake) or
/// nothing is encrypted; otherwise not applicable (no trait exposes state).
pub fn post_compromise(ctx: &Ctx) -> R<PropertyResult> {
    if ctx.has_handshake()? {
        return Ok(PropertyResult::new(
            Outcome::NotApplicable,
            format!(
                "{} keeps ephemeral session state (handshake keys, ratchets) that neither the Session trait nor the crate exposes, so 'leak one side's session state mid-session' cannot be run black-box; not measured{}",
                ctx.id(),
                if ctx.proto.info().family == "otr" {
                    " (OTR is measured through its test-only DH export when e2elab is built with --features dangerous-testing, as its test suite is)"
                } else {
                    ""
                }
            ),
        ));
    }
    // No handshake: the session state is the long-term key (and any replay
    // window). Leak Bob's identity after one exchange, continue 3 more
    // exchanges, then read the last message with a fresh session.
    let rec = record_conversation(ctx, 4, "PCS")?;
    let now = rec.link.now();
    let last: Vec<(Dir, String)> = rec
        .bodies
        .iter()
        .filter(|(d, _)| *d == Dir::AtoB)
        .skip(3)
        .cloned()
        .collect();
    let clear = last.iter().any(|(_, b)| {
        rec.emissions
            .iter()
            .any(|(_, _, x)| wire::readable_in(x, b.as_bytes()))
    });
    let (fed, read, errors) = replay_into_fresh(
        ctx,
        &rec.emissions,
        Dir::AtoB,
        ctx.ids.ids[1].clone(),
        ctx.ids.ids[0].public.clone(),
        true,
        now,
        &last,
    )?;
    let fails = clear || read > 0;
    Ok(PropertyResult::new(
        if fails { Outcome::Fails } else { Outcome::Holds },
        format!(
            "no handshake: Bob's whole session state is his long-term identity. Leaked it after the 1st exchange; after 3 further exchanges, a fresh responder session built from it was fed the {fed} recorded data stanzas and read {read} of Alice's {} later bodies{} (errors: {})",
            last.len(),
            if clear { " (they are also in clear on the wire)" } else { "" },
            if errors.is_empty() { "none".to_string() } else { errors.join(", ") }
        ),
    ))
}

// ---------------------------------------------------------------------------
// 7. message repudiation and forgeability

/// For each protected kind (message, presence): does a judge holding only
/// long-term keys (Bob cooperates and hands over his) accept the recorded
/// stanza, and does the same judge accept one forged by someone without
/// Alice's private key? Returns (repudiation, forgeability).
pub fn repudiation(ctx: &Ctx) -> R<(PropertyResult, PropertyResult)> {
    let protects = ctx.proto.info().protects;
    let mut lines = Vec::new();
    let mut transferable = Vec::new();
    let mut forged_ok = Vec::new();
    let mut judged_any = false;
    for kind in [StanzaKind::Message, StanzaKind::Presence] {
        if !protects.contains(&kind) {
            continue;
        }
        let (el, _) = match kind {
            StanzaKind::Presence => canary_presence(0, 300)?,
            _ => canary_message(0, 300)?,
        };
        // Alice's genuine stanza on an honest link.
        let mut link = ctx.established()?;
        let wires = capture(&mut link, 0, &el)?;
        deliver_all(&mut link, &wires);
        let now = link.now();
        let data: Vec<&String> = wires
            .iter()
            .filter(|(d, _)| *d == Dir::AtoB)
            .map(|(_, x)| x)
            .collect();
        let judge = |xmls: &[&String]| -> R<(bool, Vec<String>)> {
            let mut j = Solo::new(
                ctx.proto,
                ctx.next_seed(),
                Role::Responder,
                &full_jid(1),
                &full_jid(0),
                ctx.ids.ids[1].clone(),
                Some(ctx.ids.ids[0].public.clone()),
                now,
            )?;
            for x in xmls {
                j.feed(x);
            }
            let ok = j.delivered.iter().any(|g| same_content(g, &el));
            Ok((ok, j.errors))
        };
        let (genuine_ok, gerr) = judge(&data)?;
        // The forger: Mallory's own key labelled as Alice, writing to Bob's public key.
        let mut f = Solo::new(
            ctx.proto,
            ctx.next_seed(),
            Role::Initiator,
            &full_jid(0),
            &full_jid(1),
            ctx.mallory[0].clone(),
            Some(ctx.ids.ids[1].public.clone()),
            now,
        )?;
        let mut forged = Vec::new();
        f.start();
        let _ = f.s.send(&mut f.env, el.clone(), &mut f.out);
        while let Some(t) = f.out.poll_transmit() {
            forged.push(stanza::serialize(&t));
        }
        f.drain();
        let forged_refs: Vec<&String> = forged.iter().collect();
        let (forged_accepted, ferr) = if forged.is_empty() {
            (
                false,
                vec!["the forger's session emitted nothing".to_string()],
            )
        } else {
            judge(&forged_refs)?
        };
        if genuine_ok {
            judged_any = true;
        }
        if genuine_ok && !forged_accepted {
            transferable.push(kind.name());
        }
        if forged_accepted {
            forged_ok.push(kind.name());
        }
        lines.push(format!(
            "{}: a judge session built from Bob's identity and Alice's public key {} Alice's recorded {} stanza(s) ({}); a {} stanza forged with a key that is not Alice's, under her JID, was {} by the same judge ({})",
            kind.name(),
            if genuine_ok { "ACCEPTED" } else { "rejected" },
            data.len(),
            if gerr.is_empty() { "no error".into() } else { gerr.join(", ") },
            kind.name(),
            if forged_accepted { "ACCEPTED" } else { "rejected" },
            if ferr.is_empty() { "no error".into() } else { ferr.join(", ") }
        ));
    }
    let rep = if transferable.is_empty() {
        Outcome::Holds
    } else {
        Outcome::Fails
    };
    let rep_ev = format!(
        "{}. Transferable proof = the judge accepts the genuine stanza and rejects the forgery, so only Alice's key could have made it: [{}]{}",
        lines.join("; "),
        transferable.join(", "),
        if judged_any {
            ""
        } else {
            ". No stanza is verifiable outside its session (session keys, not long-term keys, authenticate content); the handshake's own signatures are not judged here"
        }
    );
    let forge = if !forged_ok.is_empty() {
        PropertyResult::new(
            Outcome::Holds,
            format!(
                "{}. Forged stanzas the judge accepted: [{}]",
                lines.join("; "),
                forged_ok.join(", ")
            ),
        )
    } else if judged_any {
        PropertyResult::new(
            Outcome::Fails,
            format!(
                "{}. No forgery accepted: only the holder of Alice's private key writes stanzas that verify",
                lines.join("; ")
            ),
        )
    } else {
        PropertyResult::new(
            Outcome::NotApplicable,
            format!(
                "{}. Content is authenticated by session MAC keys, so a forgery needs those keys (from the receiver's session state or published MAC keys); the Session trait exposes neither, so forging was not attempted black-box",
                lines.join("; ")
            ),
        )
    };
    Ok((PropertyResult::new(rep, rep_ev), forge))
}

// ---------------------------------------------------------------------------
// 8. identity protection

/// Do Alice's or Bob's long-term public keys, fingerprints or certificates
/// appear on the wire to a passive observer?
pub fn identity_protection(ctx: &Ctx) -> R<PropertyResult> {
    if !ctx.has_keys() {
        return Ok(PropertyResult::new(
            Outcome::NotApplicable,
            format!("{} has no long-term public keys to hide", ctx.id()),
        ));
    }
    let rec = record_conversation(ctx, 1, "IP")?;
    const W: usize = 12;
    let mut found = Vec::new();
    let mut first: Option<(usize, Dir, &str)> = None;
    for idx in 0..2 {
        let me = &ctx.ids.ids[idx].public;
        let other = &ctx.ids.ids[1 - idx].public;
        let m = &ctx.mallory[idx].public;
        let windows =
            wire::distinctive_windows(&me.data, W, &[other.data.as_slice(), m.data.as_slice()]);
        let fp = me
            .fingerprint
            .as_ref()
            .map(|f| f.replace([':', ' '], "").to_lowercase());
        let keyid = fp
            .as_ref()
            .filter(|f| f.len() >= 16)
            .map(|f| f[f.len() - 16..].to_string());
        let fp_bytes = fp.as_ref().map(|f| hex::decode(f).unwrap_or_default());
        let key_ids = openpgp_key_ids(&me.data);
        let mut hits = Vec::new();
        for (i, (dir, ph, x)) in rec.emissions.iter().enumerate() {
            let lower = x.to_lowercase();
            let mut what = Vec::new();
            if let Some(k) = key_ids
                .iter()
                .find(|k| wire::readable_in(x, k) || lower.contains(&hex::encode(k)))
            {
                what.push(format!("OpenPGP key id {}", hex::encode_upper(k)));
            }
            let n = wire::count_windows_in(x, &windows, W);
            if n >= 2 {
                what.push(format!(
                    "public key material ({n} distinct {W}-byte windows)"
                ));
            }
            if fp.as_ref().is_some_and(|f| lower.contains(f.as_str()))
                || fp_bytes
                    .as_ref()
                    .is_some_and(|b| b.len() >= 8 && wire::readable_in(x, b))
            {
                what.push("fingerprint".into());
            } else if keyid.as_ref().is_some_and(|k| lower.contains(k.as_str())) {
                what.push("key id (fingerprint tail)".into());
            }
            if !what.is_empty() {
                if first.is_none_or(|(f, _, _)| i < f) {
                    first = Some((i, *dir, if idx == 0 { "Alice" } else { "Bob" }));
                }
                hits.push(format!(
                    "#{} {} {}: {}",
                    i + 1,
                    dir.label(),
                    match ph {
                        Phase::Handshake => "handshake",
                        Phase::Data => "data",
                        Phase::Close => "close",
                    },
                    what.join(" + ")
                ));
            }
        }
        if !hits.is_empty() {
            found.push(format!(
                "{}'s identity readable in {} stanza(s): {}",
                if idx == 0 { "Alice" } else { "Bob" },
                hits.len(),
                hits.into_iter().take(3).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let norm = |f: &str| f.replace([':', ' '], "").to_lowercase();
    let active = match mitm_run(ctx, true) {
        _ if !ctx.has_handshake()? => {
            "Active attacker: no handshake, nothing more to learn than the passive observer"
                .to_string()
        }
        Ok((r, _)) => {
            let learned = |i: usize, who: &str, role: &str| {
                let real = ctx.ids.ids[i].public.fingerprint.as_deref().map(norm);
                match r.mallory_learned[i].as_deref().map(norm) {
                    Some(f) if Some(&f) == real.as_ref() => {
                        format!("Mallory, acting as {role} with her own key, got {who}'s key authenticated")
                    }
                    _ => format!("Mallory, acting as {role} with her own key, did not get {who}'s key authenticated"),
                }
            };
            format!(
                "Active attacker: {}; {}",
                learned(0, "Alice (initiator)", "the responder"),
                learned(1, "Bob (responder)", "the initiator")
            )
        }
        Err(e) => format!("Active attacker: not runnable ({e})"),
    };
    let ev = format!(
        "passive observer of an honest session ({} stanzas: handshake and one exchange) searched every stanza raw, base64- and hex-decoded for each party's public key bytes, fingerprint and key id. {}{}. {active}",
        rec.emissions.len(),
        if found.is_empty() {
            "Nothing found".to_string()
        } else {
            found.join("; ")
        },
        first
            .map(|(i, d, who)| format!("; first exposed: {who}, in stanza #{} ({})", i + 1, d.label()))
            .unwrap_or_default()
    );
    Ok(PropertyResult::new(
        if found.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        ev,
    ))
}

// ---------------------------------------------------------------------------
// 9. MITM detection

struct MitmRun {
    established: [bool; 2],
    warnings: [Vec<Warning>; 2],
    sas: [Option<String>; 2],
    fp: [Option<String>; 2],
    eve_read: bool,
    bob_got: bool,
    errors: [String; 2],
    /// The victim fingerprint each of Mallory's sessions authenticated
    /// (as Bob towards Alice, as Alice towards Bob).
    mallory_learned: [Option<String>; 2],
}

fn session_for(
    ctx: &Ctx,
    idx: usize,
    identity: Arc<Identity>,
    peer_public: Option<PublicIdentity>,
) -> R<(Box<dyn Session>, Env)> {
    let role = if idx == 0 {
        Role::Initiator
    } else {
        Role::Responder
    };
    let mut env = Env::for_party(ctx.next_seed(), role.name());
    let cfg = SessionConfig {
        role,
        local_jid: full_jid(idx),
        peer_jid: full_jid(1 - idx),
        identity,
        peer_public,
        options: Options::new(),
    };
    let s = ctx
        .proto
        .new_session(&mut env, cfg)
        .map_err(|e| format!("new session: {e}"))?;
    Ok((s, env))
}

/// Mallory runs two sessions: as Bob towards Alice (L1) and as Alice towards
/// Bob (L2), each with her own keys, and relays Alice's message.
fn mitm_run(ctx: &Ctx, pinned: bool) -> R<(MitmRun, &'static str)> {
    // Pinned: each victim holds the real peer key. First contact: no key
    // (trust on first use) where the profile allows it, else the key a
    // directory under Mallory's control returns for the peer's JID (hers).
    let mut how = "real peer keys pinned";
    let mut victim = |i: usize, peer: usize| -> R<(Box<dyn Session>, Env)> {
        if pinned {
            return session_for(
                ctx,
                i,
                ctx.ids.ids[i].clone(),
                Some(ctx.ids.ids[peer].public.clone()),
            );
        }
        match session_for(ctx, i, ctx.ids.ids[i].clone(), None) {
            Ok(s) => {
                how = "no peer key (trust on first use)";
                Ok(s)
            }
            Err(_) => {
                how = "peer key fetched from a directory Mallory controls (hers)";
                session_for(
                    ctx,
                    i,
                    ctx.ids.ids[i].clone(),
                    Some(ctx.mallory[peer].public.clone()),
                )
            }
        }
    };
    let a = victim(0, 1)?;
    let b = victim(1, 0)?;
    let eb = session_for(
        ctx,
        1,
        ctx.mallory[1].clone(),
        Some(ctx.ids.ids[0].public.clone()),
    )?;
    let ea = session_for(
        ctx,
        0,
        ctx.mallory[0].clone(),
        Some(ctx.ids.ids[1].public.clone()),
    )?;
    let mut l1 = Link::new(a, eb);
    let mut l2 = Link::new(ea, b);
    let _ = l1.handshake();
    let _ = l2.handshake();
    l1.set_phase(Phase::Data);
    l2.set_phase(Phase::Data);
    let el = message(0, "mitm", &canary("MITM", 1))?;
    let mut eve_read = false;
    let mut bob_got = false;
    if l1.send(0, el.clone()).is_ok() {
        let _ = l1.pump();
        if let Some(got) = l1
            .party(1)
            .delivered
            .iter()
            .find(|g| same_content(g, &el))
            .cloned()
        {
            eve_read = true;
            if l2.send(0, got).is_ok() {
                let _ = l2.pump();
                bob_got = l2.party(1).delivered.iter().any(|g| same_content(g, &el));
            }
        }
    }
    let est = |l: &Link, i: usize| l.party(i).session().state() == SessionState::Established;
    let errs = |l: &Link, i: usize| {
        let v: Vec<String> = l.party(i).errors.iter().map(|e| e.to_string()).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            short(&v.join("; "))
        }
    };
    Ok((
        MitmRun {
            established: [est(&l1, 0), est(&l2, 1)],
            warnings: [l1.party(0).warnings.clone(), l2.party(1).warnings.clone()],
            sas: [
                l1.party(0).established.as_ref().and_then(|p| p.sas.clone()),
                l2.party(1).established.as_ref().and_then(|p| p.sas.clone()),
            ],
            fp: [
                l1.party(0)
                    .established
                    .as_ref()
                    .and_then(|p| p.fingerprint.clone()),
                l2.party(1)
                    .established
                    .as_ref()
                    .and_then(|p| p.fingerprint.clone()),
            ],
            eve_read,
            bob_got,
            errors: [errs(&l1, 0), errs(&l2, 1)],
            mallory_learned: [
                l1.party(1)
                    .established
                    .as_ref()
                    .and_then(|p| p.fingerprint.clone()),
                l2.party(0)
                    .established
                    .as_ref()
                    .and_then(|p| p.fingerprint.clone()),
            ],
        },
        how,
    ))
}

fn warning_name(w: &Warning) -> String {
    match w {
        Warning::KeyChanged { .. } => "KeyChanged".into(),
        Warning::Unauthenticated { .. } => "Unauthenticated".into(),
        Warning::Suspicious { reason } => format!("Suspicious({})", short(reason)),
        Warning::Other(s) => format!("Other({})", short(s)),
        _ => "warning".into(),
    }
}

/// An attacker with her own keys for both JIDs in the middle: is it noticed?
pub fn mitm(ctx: &Ctx) -> R<PropertyResult> {
    let mut lines = Vec::new();
    let mut undetected = Vec::new();
    for pinned in [true, false] {
        let (r, how) = match mitm_run(ctx, pinned) {
            Ok(r) => r,
            Err(e) => {
                lines.push(format!(
                    "{}: not runnable ({e})",
                    if pinned {
                        "peer keys pinned"
                    } else {
                        "first contact"
                    }
                ));
                continue;
            }
        };
        let alarm = |i: usize| {
            r.warnings[i].iter().any(|w| {
                matches!(
                    w,
                    Warning::KeyChanged { .. } | Warning::Unauthenticated { .. }
                )
            })
        };
        let sas_differ = matches!((&r.sas[0], &r.sas[1]), (Some(a), Some(b)) if a != b);
        let real_fp = [
            ctx.ids.ids[1].public.fingerprint.clone(),
            ctx.ids.ids[0].public.fingerprint.clone(),
        ];
        let fp_wrong = (0..2).any(|i| r.fp[i].is_some() && r.fp[i] != real_fp[i]);
        let blocked = !r.established[0] || !r.established[1] || !r.eve_read || !r.bob_got;
        let detected = blocked || alarm(0) || alarm(1) || sas_differ;
        let label = if pinned {
            "peer keys pinned (as provisioned)".to_string()
        } else {
            format!("first contact: {how}")
        };
        if !detected {
            undetected.push(label.clone());
        }
        lines.push(format!(
            "{label}: Alice {} (warnings [{}], errors: {}), Bob {} (warnings [{}], errors: {}); Mallory {} Alice's message and Bob {} it; SAS {}; fingerprints shown {}",
            if r.established[0] { "established" } else { "did NOT establish" },
            r.warnings[0].iter().map(warning_name).collect::<Vec<_>>().join(", "),
            r.errors[0],
            if r.established[1] { "established" } else { "did NOT establish" },
            r.warnings[1].iter().map(warning_name).collect::<Vec<_>>().join(", "),
            r.errors[1],
            if r.eve_read { "READ" } else { "could not read" },
            if r.bob_got { "received" } else { "did not receive" },
            match (&r.sas[0], &r.sas[1]) {
                (Some(a), Some(b)) if a != b => format!("DIFFER ({a} vs {b})"),
                (Some(a), Some(_)) => format!("equal ({a})"),
                _ => "none".into(),
            },
            if fp_wrong { "are Mallory's (a fingerprint check would catch it)" } else { "n/a or genuine" }
        ));
    }
    Ok(PropertyResult::new(
        if undetected.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        format!(
            "Mallory holds her own keys labelled alice and bob and runs one session with each victim, relaying. {}{}",
            lines.join("; "),
            if undetected.is_empty() {
                String::new()
            } else {
                format!(". Undetected (no failure, no KeyChanged/Unauthenticated warning, no SAS mismatch) in: {}", undetected.join(", "))
            }
        ),
    ))
}

// ---------------------------------------------------------------------------
// 10. downgrade

/// Rewrites negotiation stanzas in flight.
struct Stripper {
    edit: fn(&mut Element) -> bool,
    edited: Vec<u64>,
}

impl Adversary for Stripper {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        if w.phase == Phase::Handshake && w.dir == Dir::AtoB {
            if let Ok(mut el) = stanza::parse(&w.xml) {
                if (self.edit)(&mut el) {
                    self.edited.push(w.seq);
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

/// Remove the first (preferred) option of the `modp` and `crypt_algs` fields
/// of an ESessions offer form, and with the first `modp` option the first
/// `dhhashes` (or SIGMA-I `dhkeys`) value made for that group, so that the
/// offer stays self-consistent.
fn strip_esessions_offer(el: &mut Element) -> bool {
    fn first_removed(e: &mut Element, child: &str) {
        let nodes = e.take_nodes();
        let mut skipped = false;
        for n in nodes {
            if !skipped && matches!(&n, Node::Element(c) if c.name() == child) {
                skipped = true;
                continue;
            }
            e.append_node(n);
        }
    }
    fn walk(e: &mut Element, modp_stripped: &mut bool) -> bool {
        let mut changed = false;
        if e.name() == "field" {
            let var = e.attr("var").unwrap_or("").to_string();
            let opts = e.children().filter(|c| c.name() == "option").count();
            if (var == "modp" || var == "crypt_algs") && opts > 1 {
                first_removed(e, "option");
                if var == "modp" {
                    *modp_stripped = true;
                }
                return true;
            }
            if (var == "dhhashes" || var == "dhkeys") && *modp_stripped {
                first_removed(e, "value");
                return true;
            }
        }
        for c in e.children_mut() {
            changed |= walk(c, modp_stripped);
        }
        changed
    }
    // The form lists modp before its commitments (dhhashes, or dhkeys in
    // the 3-message SIGMA-I), so one pass in document order suffices.
    let mut modp = false;
    walk(el, &mut modp)
}

/// Replace an OTR v3 offer (`?OTRv3?`, or a whitespace tag with the v3 tag) by a v2-only one.
fn strip_otr_v3(el: &mut Element) -> bool {
    let Some(body) = el.get_child("body", stanza::NS_CLIENT).map(Element::text) else {
        return false;
    };
    const V3_TAG: &str = "  \t\t  \t\t";
    let new = if body.starts_with("?OTRv") && body.contains('3') {
        let end = body[5..].find('?').map(|i| i + 5).unwrap_or(body.len());
        let versions: String = body[5..end].chars().filter(|c| *c != '3').collect();
        let versions = if versions.is_empty() {
            "2".to_string()
        } else {
            versions
        };
        format!("?OTRv{versions}{}", &body[end..])
    } else if body.contains(V3_TAG) {
        body.replace(V3_TAG, "  \t\t  \t ")
    } else {
        return false;
    };
    match el.get_child_mut("body", stanza::NS_CLIENT) {
        Some(b) => {
            set_text(b, &new);
            true
        }
        None => false,
    }
}

fn negotiated_esessions(link: &Link) -> String {
    // The responder's submit form names what it chose.
    for t in &link.transcript {
        if t.dir != Dir::BtoA {
            continue;
        }
        if let Ok(el) = stanza::parse(&t.xml) {
            let mut out = Vec::new();
            fn walk(e: &Element, out: &mut Vec<String>) {
                if e.name() == "field" && matches!(e.attr("var"), Some("modp") | Some("crypt_algs"))
                {
                    let v: Vec<String> = e
                        .children()
                        .filter(|c| c.name() == "value")
                        .map(Element::text)
                        .collect();
                    out.push(format!("{}={}", e.attr("var").unwrap_or(""), v.join(",")));
                }
                for c in e.children() {
                    walk(c, out);
                }
            }
            walk(&el, &mut out);
            if !out.is_empty() {
                return out.join(" ");
            }
        }
    }
    "nothing".into()
}

fn otr_version_on_wire(link: &Link) -> String {
    for (_, ph, x) in &link.emissions {
        if *ph == Phase::Data {
            if x.contains("?OTR:AAMD") {
                return "v3".into();
            }
            if x.contains("?OTR:AAID") {
                return "v2".into();
            }
        }
    }
    "none".into()
}

/// Strip the strong options from the negotiation.
pub fn downgrade(ctx: &Ctx) -> R<PropertyResult> {
    let id = ctx.id();
    let (opts, edit, what): (Options, fn(&mut Element) -> bool, &str) = match id {
        "esessions-sigma-r" | "esessions-sigma-i" | "esessions-simplified" => (
            Options::new().set("modp", "16,14"),
            strip_esessions_offer,
            "Alice offers modp 16,14; the attacker removes the preferred option (16) of every modp/crypt_algs field with more than one option, and the DH commitment made for group 16, so the offer stays consistent",
        ),
        "otr-v3" => (
            Options::new(),
            strip_otr_v3,
            "the attacker rewrites Alice's OTR offer so that it no longer names version 3 (?OTRv3? becomes ?OTRv2?)",
        ),
        "jep0027" => return jep0027_strip_signature(ctx),
        "otr-v2" => {
            return Ok(PropertyResult::new(
                Outcome::NotApplicable,
                "the otr-v2 profile offers only version 2, the weakest: there is nothing stronger to strip".into(),
            ))
        }
        _ => {
            return Ok(PropertyResult::new(
                Outcome::NotApplicable,
                format!("{id} negotiates nothing on the wire (fixed algorithms, no version or option offer in any stanza), so there is nothing to strip"),
            ))
        }
    };
    // Honest baseline with the same options.
    let mut honest = driver::link_for(ctx.proto, &ctx.ids, ctx.next_seed(), &opts)?;
    honest.handshake()?;
    honest.set_phase(Phase::Data);
    let hm = message(0, "dg0", "honest")?;
    let _ = honest.send(0, hm);
    let _ = honest.pump();
    let base = if id.starts_with("otr") {
        otr_version_on_wire(&honest)
    } else {
        negotiated_esessions(&honest)
    };
    let mut link = driver::link_for(ctx.proto, &ctx.ids, ctx.next_seed(), &opts)?;
    link.set_adversary(Box::new(Stripper {
        edit,
        edited: Vec::new(),
    }));
    let hs = link.handshake();
    link.set_phase(Phase::Data);
    let m = message(0, "dg1", "after the downgrade")?;
    let sent = link.send(0, m.clone()).is_ok();
    let _ = link.pump();
    let delivered = sent && link.party(1).delivered.iter().any(|g| same_content(g, &m));
    let got = if id.starts_with("otr") {
        otr_version_on_wire(&link)
    } else {
        negotiated_esessions(&link)
    };
    let edited = link
        .transcript
        .iter()
        .filter(|t| t.action == "modified")
        .count();
    let warned = link.party(0).warnings.len() + link.party(1).warnings.len();
    let downgraded = hs.is_ok() && delivered && got != base && warned == 0;
    let ev = format!(
        "{what}. Honest run negotiated: {base}. Attacked run ({edited} stanza(s) modified): handshake {}, a message was {}, negotiated: {got}; warnings: {warned}; errors: Alice [{}], Bob [{}]",
        match &hs {
            Ok(()) => "completed".to_string(),
            Err(e) => format!("FAILED ({})", short(e)),
        },
        if delivered { "delivered" } else { "not delivered" },
        errs_full(&link, 0),
        errs_full(&link, 1)
    );
    Ok(PropertyResult::new(
        if downgraded {
            Outcome::Fails
        } else {
            Outcome::Holds
        },
        ev,
    ))
}

// ---------------------------------------------------------------------------
// 11. identity misbinding

/// Rewrites the outer addressing as Eve's server-level relay would.
struct EveRelay;

impl Adversary for EveRelay {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        let xml = match stanza::parse(&w.xml) {
            Ok(mut el) => {
                let eve = format!("{EVE}/{RESOURCE}");
                match w.dir {
                    Dir::AtoB => {
                        let _ = stanza::set_attr(&mut el, "from", &eve);
                    }
                    Dir::BtoA => {
                        let _ = stanza::set_attr(&mut el, "to", &full_jid(0));
                        let _ = stanza::set_attr(&mut el, "from", &full_jid(1));
                    }
                }
                stanza::serialize(&el)
            }
            Err(_) => w.xml.clone(),
        };
        vec![Forward {
            dir: w.dir,
            xml,
            action: "modified",
        }]
    }
}

/// The unknown-key-share attack: Eve registers Alice's public key under her
/// own JID and relays Alice's stanzas to Bob as her own.
pub fn misbinding(ctx: &Ctx) -> R<PropertyResult> {
    if !ctx.has_keys() {
        return Ok(PropertyResult::new(
            Outcome::NotApplicable,
            format!("{} binds no long-term public key to a JID: an unknown-key-share has no key to share", ctx.id()),
        ));
    }
    let eve_full = format!("{EVE}/{RESOURCE}");
    let a = session_for(
        ctx,
        0,
        ctx.ids.ids[0].clone(),
        Some(ctx.ids.ids[1].public.clone()),
    )?;
    let mut env = Env::for_party(ctx.next_seed(), "responder");
    let cfg = SessionConfig {
        role: Role::Responder,
        local_jid: full_jid(1),
        peer_jid: eve_full.clone(),
        identity: ctx.ids.ids[1].clone(),
        peer_public: Some(relabel_public(&ctx.ids.ids[0].public, EVE)),
        options: Options::new(),
    };
    let b = match ctx.proto.new_session(&mut env, cfg) {
        Ok(b) => b,
        Err(e) => {
            return Ok(PropertyResult::new(
                Outcome::Holds,
                format!(
                    "Eve registered Alice's public key as eve@example.com's; Bob's client refused to create a session with eve@example.com/lab under that key ({e}): the key itself names its owner's JID, so Eve cannot present Alice's key as hers"
                ),
            ))
        }
    };
    let mut link = Link::new(a, (b, env));
    link.set_adversary(Box::new(EveRelay));
    let hs = link.handshake();
    link.set_phase(Phase::Data);
    let m = message(0, "uks", &canary("UKS", 1))?;
    let sent = link.send(0, m.clone());
    let _ = link.pump();
    let got = link.party(1).delivered.iter().any(|g| same_content(g, &m));
    let bob_peer = link.party(1).established.as_ref().map(|p| p.jid.clone());
    let alice_peer = link.party(0).established.as_ref().map(|p| p.jid.clone());
    let fails = got;
    Ok(PropertyResult::new(
        if fails { Outcome::Fails } else { Outcome::Holds },
        format!(
            "Eve registered Alice's public key as eve@example.com's; Bob's session expects eve@example.com/lab with that key; Eve relays Alice's stanzas to Bob with from rewritten to her JID (and Bob's back to Alice). Handshake {}; Alice's peer: {}; Bob's peer: {}; Alice's message (send {}) {} by Bob as coming from {} (errors: Alice [{}], Bob [{}])",
            match &hs { Ok(()) => "completed".to_string(), Err(e) => format!("did not complete ({})", short(e)) },
            alice_peer.unwrap_or_else(|| "none".into()),
            bob_peer.unwrap_or_else(|| "none".into()),
            if sent.is_ok() { "ok" } else { "failed" },
            if got { "was DELIVERED" } else { "was not delivered" },
            eve_full,
            errs(&link, 0, 0),
            errs(&link, 1, 0)
        ),
    ))
}

/// The key ids of every (sub)key of an OpenPGP certificate (empty for other key formats).
fn openpgp_key_ids(data: &[u8]) -> Vec<Vec<u8>> {
    use e2elab_openpgp::openpgp::parse::Parse;
    match e2elab_openpgp::openpgp::Cert::from_bytes(data) {
        Ok(c) => c
            .keys()
            .map(|k| k.key().keyid().as_bytes().to_vec())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// OTR forgeability with libotr's tools: the MAC keys data messages reveal in
/// clear reproduce earlier messages' MACs, so anyone can write a valid one.
pub fn otr_forgeability(ctx: &Ctx) -> R<PropertyResult> {
    let mut rec = record_conversation(ctx, 3, "FG")?;
    rec.link.set_phase(Phase::Close);
    let _ = rec.link.close(0);
    let _ = rec.link.pump();
    let bodies: Vec<String> = rec
        .link
        .emissions
        .iter()
        .filter(|(_, ph, _)| *ph != Phase::Handshake)
        .filter_map(|(_, _, x)| stanza::parse(x).ok())
        .filter_map(|e| stanza::body(&e))
        .filter(|b| b.starts_with("?OTR:"))
        .collect();
    let (n, revealed, hit) = super::otr_tools::forge(&bodies)?;
    Ok(match hit {
        Some(f) if f.remac_agrees != Some(false) && f.forged_parses_as == "Data Message:" => PropertyResult::new(
            Outcome::Holds,
            format!(
                "recorded {n} data messages (3 exchanges and the disconnect); otr_parse read {revealed} MAC key(s) revealed in clear. The key {} revealed by data message #{} is data message #{}'s MAC key (HMAC-SHA1 over its header and ciphertext equals its MAC{}), so anyone can write a different message: ciphertext's last byte flipped, MAC recomputed, which otr_parse reads as a '{}': {}",
                f.key,
                f.revealer + 1,
                f.victim + 1,
                match f.remac_agrees {
                    Some(true) => "; libotr's otr_remac reproduces the same MAC with it",
                    _ => "",
                },
                f.forged_parses_as.trim_end_matches(':'),
                short(&f.forged)
            ),
        ),
        Some(f) => PropertyResult::new(
            Outcome::Fails,
            format!(
                "a revealed key matched data message #{} by HMAC, but libotr's tools disagree (otr_remac agrees: {:?}; forged message parses as '{}')",
                f.victim + 1,
                f.remac_agrees,
                f.forged_parses_as
            ),
        ),
        None => PropertyResult::new(
            Outcome::Fails,
            format!(
                "recorded {n} data messages; otr_parse read {revealed} revealed MAC key(s), none of which is an earlier message's MAC key: no public key to forge with"
            ),
        ),
    })
}

const NS_XEP0200: &str = "http://www.xmpp.org/extensions/xep-0200.html#ns";

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> R<Vec<u8>> {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let k = PKey::hmac(key).map_err(|e| e.to_string())?;
    let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(|e| e.to_string())?;
    for p in parts {
        s.update(p).map_err(|e| e.to_string())?;
    }
    s.sign_to_vec().map_err(|e| e.to_string())
}

fn minimal_be(c: u128) -> Vec<u8> {
    let b = c.to_be_bytes();
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// ESessions forgeability from the wire: XEP-0200 publishes retired MAC keys
/// in `<old/>`; the block counters start from the `counter` the handshake
/// form carries in clear. A published key and a counter near the announced
/// start that reproduce a recorded `<c/>`'s HMAC-SHA256 make that stanza
/// forgeable by anyone.
pub fn esessions_forgeability(ctx: &Ctx) -> R<PropertyResult> {
    let opts = if ctx.id() == "esessions-sigma-r" || ctx.id() == "esessions-sigma-i" {
        Options::new().set("rekey_every", "1")
    } else {
        Options::new()
    };
    let mut link = driver::link_for(ctx.proto, &ctx.ids, ctx.next_seed(), &opts)?;
    link.handshake()?;
    link.set_phase(Phase::Data);
    for n in 0..4u64 {
        for from in 0..2 {
            let el = message(from, &format!("fg{from}-{n}"), &canary("FGES", n))?;
            link.send(from, el).map_err(|e| e.to_string())?;
            link.pump().map_err(|e| e.to_string())?;
        }
    }
    // What a passive observer collects.
    let mut counters: Vec<u128> = Vec::new();
    let mut cs: Vec<(usize, Element)> = Vec::new();
    let mut published: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, (_, _, x)) in link.emissions.iter().enumerate() {
        let Ok(el) = stanza::parse(x) else { continue };
        fn walk(e: &Element, counters: &mut Vec<u128>) {
            if e.name() == "field" && e.attr("var") == Some("counter") {
                for v in e.children().filter(|c| c.name() == "value") {
                    if let Some(b) = wire::b64_decode(v.text().trim()) {
                        if b.len() <= 16 {
                            let mut a = [0u8; 16];
                            a[16 - b.len()..].copy_from_slice(&b);
                            counters.push(u128::from_be_bytes(a));
                        }
                    }
                }
            }
            for c in e.children() {
                walk(c, counters);
            }
        }
        walk(&el, &mut counters);
        if let Some(c) = el.get_child("c", NS_XEP0200) {
            for o in c.children().filter(|k| k.name() == "old") {
                if let Some(k) = wire::b64_decode(o.text().trim()) {
                    published.push((i, k));
                }
            }
            cs.push((i, c.clone()));
        }
    }
    let bases: Vec<u128> = counters
        .iter()
        .flat_map(|c| [*c, *c ^ (1u128 << 127)])
        .collect();
    for (pi, key) in &published {
        for (ci, c) in cs.iter().filter(|(ci, _)| ci < pi) {
            let mut content = String::new();
            let mut mac = None;
            for k in c.children() {
                if k.name() == "mac" {
                    mac = wire::b64_decode(k.text().trim());
                } else {
                    content.push_str(&format!("<{0}>{1}</{0}>", k.name(), k.text().trim()));
                }
            }
            let Some(mac) = mac else { continue };
            for base in &bases {
                for off in 0..512u128 {
                    let ctr = minimal_be(base.wrapping_add(off));
                    if hmac_sha256(key, &[content.as_bytes(), &ctr])? != mac {
                        continue;
                    }
                    // Forge: a different <data/> with a valid MAC under the public key.
                    let forged_content = content.replacen("<data>", "<data>AAAA", 1);
                    let fmac = hmac_sha256(key, &[forged_content.as_bytes(), &ctr])?;
                    return Ok(PropertyResult::new(
                        Outcome::Holds,
                        format!(
                            "conversation with rekeys ({}); a passive observer read {} MAC key(s) published in clear in <old/> and the initial counters from the handshake forms. The key published in stanza #{} and counter start+{off} reproduce the HMAC-SHA256 of the recorded <c/> in stanza #{} exactly, so anyone can write a different <c/> (4 more ciphertext bytes) with the valid MAC {}",
                            if opts.get("rekey_every").is_some() { "rekey_every=1" } else { "defaults" },
                            published.len(),
                            pi + 1,
                            ci + 1,
                            wire::b64_encode(&fmac)
                        ),
                    ));
                }
            }
        }
    }
    Ok(PropertyResult::new(
        Outcome::Fails,
        format!(
            "recorded {} stanzas ({} <c/>, options: {}); {} MAC key(s) published in clear{}: no public key reproduces a recorded MAC, so only the session holders can write valid stanzas",
            link.emissions.len(),
            cs.len(),
            if opts.get("rekey_every").is_some() { "rekey_every=1" } else { "defaults (this profile does not rekey or publish)" },
            published.len(),
            if published.is_empty() { "" } else { " but none matched (counter search window 512 blocks)" }
        ),
    ))
}

/// JEP-0027's only capability signal is the signed presence: strip the
/// signature in flight and see what Bob's application is told.
fn jep0027_strip_signature(ctx: &Ctx) -> R<PropertyResult> {
    let mut link = ctx.established()?;
    let (p, _) = canary_presence(0, 500)?;
    let wires = capture(&mut link, 0, &p)?;
    let mut stripped = 0;
    let e0 = link.party(1).errors.len();
    let w0 = link.party(1).warnings.len();
    let mut got = Vec::new();
    let mut unprotected = 0;
    for (d, x) in &wires {
        let mut el = stanza::parse(x).map_err(|e| e.to_string())?;
        if el.remove_child("x", "jabber:x:signed").is_some() {
            stripped += 1;
        }
        let dl = link.deliver_raw(*d, &stanza::serialize(&el));
        unprotected += dl.unprotected;
        got.extend(dl.delivered);
    }
    let _ = link.pump();
    let warned = link.party(1).warnings.len() > w0;
    let rejected = link.party(1).errors.len() > e0;
    let silent = stripped > 0 && !warned && !rejected && (unprotected > 0 || !got.is_empty());
    Ok(PropertyResult::new(
        if silent { Outcome::Fails } else { Outcome::Holds },
        format!(
            "JEP-0027 negotiates nothing; a signed presence is the only sign that Alice uses OpenPGP. The attacker removed the <x xmlns='jabber:x:signed'/> from Alice's presence ({stripped} stanza(s)): Bob's session delivered it {} ({}), raised {} warning(s); to Bob this is exactly a peer without OpenPGP support, so the capability signal is lost without notice",
            if !got.is_empty() {
                "as protected".to_string()
            } else if unprotected > 0 {
                "as an unprotected presence".to_string()
            } else {
                "not at all".to_string()
            },
            errs(&link, 1, e0),
            usize::from(warned)
        ),
    ))
}
