//! The world an experiment runs in: the profile, its attack hooks, and the
//! parties, each with a client of its own.
//!
//! Every party owns its own [`Protocol`] value (the profile's *client*: the
//! store of retained secrets, remembered keys, replay memory), made fresh
//! from the registry entry, so no party ever sees another's memory: Alice,
//! Bob, Mallory, Eve and every judge are separate clients. Alice and Bob
//! keep their clients for the honest sessions of the whole run (their
//! retained secrets grow over the experiments, as a real client's would);
//! wherever a victim talks to Mallory or Eve (MITM, identity protection,
//! misbinding), the victim gets a fresh client, so that an attack never
//! leaves its traces in the stores of the honest sessions that follow.

use super::hooks::{Hooks, Seen};
use super::R;
use crate::driver::{full_jid, ALICE, BOB, MESSAGE_INTERVAL, RESOURCE};
use crate::link::{Dir, Link, Phase};
use crate::registry::Entry;
use e2elab_core::{
    stanza, Element, Env, Event, Identity, Options, Outbox, Protocol, ProtocolInfo, PublicIdentity,
    Role, Session, SessionConfig, StanzaKind, Timestamp, Warning,
};
use std::cell::Cell;
use std::sync::Arc;

/// Eve: a legitimate user with her own key, the third party of the misbinding experiments.
pub const EVE: &str = "eve@example.com";
/// The namespace of canary extension elements.
pub const CANARY_NS: &str = "urn:example:e2elab:canary";

/// One party: its own client and its long-term identity.
pub struct Party {
    /// The party's client.
    pub client: Box<dyn Protocol>,
    /// Its identity.
    pub id: Arc<Identity>,
}

/// Everything an experiment needs.
pub struct World {
    /// The registry entry.
    pub entry: &'static Entry,
    /// The profile's description.
    pub info: &'static ProtocolInfo,
    /// The profile's attack hooks.
    pub hooks: Box<dyn Hooks>,
    /// Options every session of the run uses (from the hooks), with the reason.
    pub options: Options,
    /// Why these options.
    pub options_reason: &'static str,
    /// The run seed.
    pub seed: u64,
    /// Alice (initiator).
    pub alice: Party,
    /// Bob (responder).
    pub bob: Party,
    /// Mallory's client.
    pub mallory_client: Box<dyn Protocol>,
    /// Mallory's own identities, labelled with Alice's and Bob's JIDs.
    pub mallory: [Arc<Identity>; 2],
    /// Eve's client.
    pub eve_client: Box<dyn Protocol>,
    /// Eve's own identity under her own JID.
    pub eve: Arc<Identity>,
    /// A third party's own identity under Bob's JID (the offline judge, and
    /// the identity-protection baseline's stranger).
    pub stranger: Arc<Identity>,
    counter: Cell<u64>,
    clock: Cell<Timestamp>,
}

/// How far the world's virtual clock moves for each new session: more than
/// any experiment advances one link (11 minutes), so sessions never overlap
/// in time and RFC 3923's 10-minute replay memory is clean between them.
pub const SESSION_SPACING: std::time::Duration = std::time::Duration::from_secs(20 * 60);

fn gen(proto: &dyn Protocol, seed: u64, label: &str, jid: &str) -> R<Identity> {
    let mut env = Env::for_party(seed, label);
    proto
        .generate_identity(&mut env, jid)
        .map_err(|e| crate::fail!("{}: identity for {jid}: {e}", proto.info().id))
}

/// An identity of someone else's key for `jid`: generated for `jid`; if the
/// backend hands back the victim's own key (libotr's keys are cached per
/// JID), generated for a JID of the attacker's and relabelled, as an
/// attacker edits her own key file.
fn foreign_identity(
    proto: &dyn Protocol,
    seed: u64,
    label: &str,
    jid: &str,
    victim: &Identity,
) -> R<Identity> {
    let id = gen(proto, seed, label, jid)?;
    if id.public.data != victim.public.data || victim.public.data.is_empty() {
        return Ok(id);
    }
    let own = format!(
        "{}.{}@evil.example",
        label.replace(':', "-"),
        jid.replace('@', ".at.")
    );
    let id = gen(proto, seed, label, &own)?;
    // Bytes, not text: a libotr key file may hold a key part as a quoted
    // binary string (libgcrypt's advanced S-expression format picks that
    // for mostly printable values), so it is not always UTF-8.
    let secret = match replace_bytes(id.secret().expose(), own.as_bytes(), jid.as_bytes()) {
        Some(relabelled) => e2elab_core::SecretBytes::new(relabelled),
        None => id.secret().clone(),
    };
    let mut public = id.public.clone();
    public.jid = jid.to_string();
    Ok(Identity::new(public, secret))
}

/// `haystack` with every `from` replaced by `to`; `None` when `from` does
/// not occur.
fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(haystack.len() + to.len());
    let (mut i, mut found) = (0, false);
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            found = true;
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    found.then_some(out)
}

impl World {
    /// Provision every party for `entry` from `seed`.
    pub fn new(entry: &'static Entry, seed: u64) -> R<World> {
        let reference = (entry.make)();
        let info = entry.info();
        let hooks = (entry.hooks)();
        let (options, options_reason) = hooks.options();
        let alice_client = (entry.make)();
        let bob_client = (entry.make)();
        let alice = Arc::new(gen(alice_client.as_ref(), seed, "identity:alice", ALICE)?);
        let bob = Arc::new(gen(bob_client.as_ref(), seed, "identity:bob", BOB)?);
        let mallory_client = (entry.make)();
        let ms = seed ^ 0x006d_616c_6c6f_7279;
        let mallory = [
            Arc::new(foreign_identity(
                mallory_client.as_ref(),
                ms,
                "mallory:a",
                ALICE,
                &alice,
            )?),
            Arc::new(foreign_identity(
                mallory_client.as_ref(),
                ms,
                "mallory:b",
                BOB,
                &bob,
            )?),
        ];
        let eve_client = (entry.make)();
        let eve = Arc::new(gen(eve_client.as_ref(), seed, "identity:eve", EVE)?);
        let stranger = Arc::new(foreign_identity(
            reference.as_ref(),
            seed ^ 0x0073_7472,
            "stranger",
            BOB,
            &bob,
        )?);
        Ok(World {
            entry,
            info,
            hooks,
            options,
            options_reason,
            seed,
            alice: Party {
                client: alice_client,
                id: alice,
            },
            bob: Party {
                client: bob_client,
                id: bob,
            },
            mallory_client,
            mallory,
            eve_client,
            eve,
            stranger,
            counter: Cell::new(0),
            clock: Cell::new(Timestamp::DEFAULT_START),
        })
    }

    /// The profile id.
    pub fn id(&self) -> &'static str {
        self.info.id
    }

    /// The virtual time for a new session: each initiator session moves
    /// the world's clock [`SESSION_SPACING`] on (a link runs at the later of
    /// its two sessions' clocks), a responder session starts at the clock.
    fn time_for(&self, role: Role) -> Timestamp {
        if role == Role::Initiator {
            self.clock.set(self.clock.get().plus(SESSION_SPACING));
        }
        self.clock.get()
    }

    /// Make the next link start one second after `t` (for experiments that
    /// need a second session within a protocol's time window).
    pub fn resume_at(&self, t: Timestamp) {
        let next = t.plus(std::time::Duration::from_secs(1));
        self.clock.set(Timestamp(
            next.0.saturating_sub(SESSION_SPACING.as_micros() as u64),
        ));
    }

    /// A fresh seed for the next session (deterministic in the run seed).
    pub fn next_seed(&self) -> u64 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(n.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    /// A new client of the profile (a party that remembers nothing).
    pub fn fresh_client(&self) -> Box<dyn Protocol> {
        (self.entry.make)()
    }

    /// The party's identities by index (0 Alice, 1 Bob).
    pub fn ids(&self) -> [&Arc<Identity>; 2] {
        [&self.alice.id, &self.bob.id]
    }

    /// A session of `client`.
    #[allow(clippy::too_many_arguments)]
    pub fn session(
        &self,
        client: &dyn Protocol,
        role: Role,
        local: &str,
        peer: &str,
        identity: Arc<Identity>,
        peer_public: Option<PublicIdentity>,
        options: &Options,
    ) -> R<(Box<dyn Session>, Env)> {
        let mut env = Env::for_party(self.next_seed(), role.name());
        env.set_now(self.time_for(role));
        let cfg = SessionConfig {
            role,
            local_jid: crate::driver::jid(local)?,
            peer_jid: crate::driver::jid(peer)?,
            identity,
            peer_public,
            options: options.clone(),
        };
        let s = client
            .new_session(&mut env, cfg)
            .map_err(|e| crate::fail!("{}: new session ({}): {e}", self.id(), role.name()))?;
        Ok((s, env))
    }

    /// A session on `side` (0: Alice's JID, initiating; 1: Bob's JID,
    /// responding) of `client` with `identity`, the key it holds for the
    /// peer, and `options` (the run's options when `None`).
    pub fn side_session(
        &self,
        client: &dyn Protocol,
        side: usize,
        identity: Arc<Identity>,
        peer_public: Option<PublicIdentity>,
        options: Option<&Options>,
    ) -> R<(Box<dyn Session>, Env)> {
        let role = if side == 0 {
            Role::Initiator
        } else {
            Role::Responder
        };
        self.session(
            client,
            role,
            &full_jid(side),
            &full_jid(1 - side),
            identity,
            peer_public,
            options.unwrap_or(&self.options),
        )
    }

    /// Alice's and Bob's sessions from their own clients, with the real peer
    /// keys and `options` (the run's options when `None`).
    pub fn honest_sessions(&self, options: Option<&Options>) -> R<[(Box<dyn Session>, Env); 2]> {
        Ok([
            self.side_session(
                self.alice.client.as_ref(),
                0,
                self.alice.id.clone(),
                Some(self.bob.id.public.clone()),
                options,
            )?,
            self.side_session(
                self.bob.client.as_ref(),
                1,
                self.bob.id.clone(),
                Some(self.alice.id.public.clone()),
                options,
            )?,
        ])
    }

    /// An honest link between Alice and Bob, handshake done, in the data phase.
    pub fn established(&self) -> R<Link> {
        self.established_with(None)
    }

    /// [`World::established`] with other options.
    pub fn established_with(&self, options: Option<&Options>) -> R<Link> {
        let [a, b] = self.honest_sessions(options)?;
        let mut link = Link::new(a, b);
        link.handshake()
            .map_err(|e| crate::fail!("{}: honest handshake: {e}", self.id()))?;
        link.set_phase(Phase::Data);
        Ok(link)
    }
}

/// A canary string: distinctive, ASCII, unlikely in any encoding by chance.
pub fn canary(tag: &str, n: u64) -> String {
    format!("c4n4ry{tag}Q{n:x}Z")
}

fn attr(mut e: Element, k: &str, v: &str) -> R<Element> {
    stanza::set_attr(&mut e, k, v).map_err(crate::Error::msg)?;
    Ok(e)
}

/// A chat message from party `from` whose body carries `body`.
pub fn message(from: usize, id: &str, body: &str) -> R<Element> {
    stanza::chat_message(&full_jid(from), &full_jid(1 - from), id, body).map_err(crate::Error::msg)
}

/// A stanza of `kind` from `from` with a distinct canary in every part, and
/// the list (part name, canary).
pub fn canary_stanza(kind: StanzaKind, from: usize, n: u64) -> R<(Element, Vec<(String, String)>)> {
    let ns = stanza::NS_CLIENT;
    let (el, parts): (Element, Vec<(&str, String)>) = match kind {
        StanzaKind::Message => {
            let parts = vec![
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
            (m, parts)
        }
        StanzaKind::Presence => {
            let parts = vec![
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
            (p, parts)
        }
        StanzaKind::Iq => {
            let parts = vec![
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
            (q, parts)
        }
    };
    Ok((
        el,
        parts
            .into_iter()
            .map(|(a, b)| (format!("{} {a}", kind.name()), b))
            .collect(),
    ))
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

/// Send `el` from `from` and take what went on the wire, undelivered.
pub fn capture(link: &mut Link, from: usize, el: &Element) -> R<Vec<(Dir, String)>> {
    link.send(from, el.clone())
        .map_err(|e| crate::fail!("send failed: {e}"))?;
    let w = link.take_in_flight();
    if w.is_empty() {
        return Err("send emitted no stanza".into());
    }
    Ok(w)
}

/// Deliver captured stanzas in order, then pump; the stanzas delivered as protected.
pub fn deliver_all(link: &mut Link, wires: &[(Dir, String)]) -> Vec<Element> {
    let mut got = Vec::new();
    for (d, x) in wires {
        got.extend(link.deliver_raw(*d, x).delivered);
    }
    let _ = link.pump();
    got
}

/// The largest captured stanza in direction `dir` (the one carrying the content).
pub fn carrier(wires: &[(Dir, String)], dir: Dir) -> Option<usize> {
    wires
        .iter()
        .enumerate()
        .filter(|(_, (d, _))| *d == dir)
        .max_by_key(|(_, (_, x))| x.len())
        .map(|(i, _)| i)
}

/// Error kinds party `idx` raised from error number `from` on.
pub fn error_kinds(link: &Link, idx: usize, from: usize) -> Vec<String> {
    let e = &link.party(idx).errors;
    e[from.min(e.len())..]
        .iter()
        .map(|e| e.kind().to_string())
        .collect()
}

/// Shorten for evidence.
pub fn short(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// A warning's kind.
pub fn warning_kind(w: &Warning) -> &'static str {
    match w {
        Warning::KeyChanged { .. } => "key_changed",
        Warning::Unauthenticated { .. } => "unauthenticated",
        Warning::Suspicious { .. } => "suspicious",
        Warning::UnprotectedExtras { .. } => "unprotected_extras",
        Warning::UnprotectedStanza { .. } => "unprotected_stanza",
        Warning::Other(_) => "other",
        _ => "warning",
    }
}

/// The transcript of a link as a passive observer of the senders saw it.
pub fn seen(link: &Link) -> Vec<Seen> {
    link.emissions
        .iter()
        .zip(&link.emission_times)
        .map(|((d, _, x), at)| Seen {
            from_initiator: *d == Dir::AtoB,
            xml: x.clone(),
            at: *at,
        })
        .collect()
}

/// The transcript as the receivers got it (after the adversary).
pub fn delivered_seen(link: &Link) -> Vec<Seen> {
    link.transcript
        .iter()
        .filter(|t| t.action != "drop")
        .map(|t| Seen {
            from_initiator: t.dir == Dir::AtoB,
            xml: t.xml.clone(),
            at: t.at,
        })
        .collect()
}

/// A conversation of `rounds` exchanges (Alice then Bob, canary bodies),
/// each one [`MESSAGE_INTERVAL`] apart; the bodies sent with their direction.
pub fn converse(link: &mut Link, rounds: u64, tag: &str) -> R<Vec<(Dir, String)>> {
    let mut bodies = Vec::new();
    for n in 0..rounds {
        for from in 0..2 {
            let body = canary(&format!("{tag}{from}"), n);
            let el = message(from, &format!("{tag}{from}-{n}"), &body)?;
            link.advance(MESSAGE_INTERVAL);
            link.send(from, el).map_err(crate::Error::msg)?;
            link.pump().map_err(crate::Error::msg)?;
            bodies.push((Dir::from_party(from), body));
        }
    }
    Ok(bodies)
}

/// One session outside any link (a judge's, a forger's), fed by hand.
pub struct Solo {
    /// The session.
    pub s: Box<dyn Session>,
    /// Its environment.
    pub env: Env,
    out: Outbox,
    /// Stanzas delivered as protected.
    pub delivered: Vec<Element>,
    /// Stanzas delivered as unprotected.
    pub unprotected: Vec<Element>,
    /// Error kinds.
    pub errors: Vec<String>,
    /// Warning kinds raised.
    pub warnings: Vec<String>,
    /// Stanzas it emitted.
    pub emitted: Vec<String>,
}

impl Solo {
    /// Wrap a session.
    pub fn new((s, env): (Box<dyn Session>, Env), now: Timestamp) -> Solo {
        let mut env = env;
        env.set_now(now);
        Solo {
            s,
            env,
            out: Outbox::new(),
            delivered: Vec::new(),
            unprotected: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            emitted: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(ev) = self.out.poll_event() {
            match ev {
                Event::Delivered { stanza, .. } => self.delivered.push(stanza),
                Event::DeliveredUnprotected(el) => self.unprotected.push(el),
                Event::Warning(w) => self.warnings.push(warning_kind(&w).to_string()),
                _ => {}
            }
        }
        while let Some(t) = self.out.poll_transmit() {
            self.emitted.push(stanza::serialize(&t));
        }
    }

    /// `start`.
    pub fn start(&mut self) {
        if let Err(e) = self.s.start(&mut self.env, &mut self.out) {
            self.errors.push(e.kind().to_string());
        }
        self.drain();
    }

    /// `send`; the stanzas it emitted for it.
    pub fn send(&mut self, el: Element) -> Vec<String> {
        let before = self.emitted.len();
        if let Err(e) = self.s.send(&mut self.env, el, &mut self.out) {
            self.errors.push(e.kind().to_string());
        }
        self.drain();
        self.emitted[before..].to_vec()
    }

    /// Feed one serialized stanza; the number delivered as protected.
    pub fn feed(&mut self, xml: &str) -> usize {
        let before = self.delivered.len();
        match stanza::parse(xml) {
            Err(e) => self.errors.push(format!("decode: {e}")),
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

/// Full JID of Eve.
pub fn eve_full() -> String {
    format!("{EVE}/{RESOURCE}")
}

#[cfg(test)]
mod tests {
    use super::replace_bytes;

    #[test]
    fn relabelling_works_on_key_files_that_are_not_utf8() {
        // The shape of a libotr key file whose `x` libgcrypt printed as a
        // quoted binary string (2 of 600 keys generated here).
        let file = b"(name \"m@evil.example\")\n(x \"T\xe9\x92.\xff\")";
        assert!(file.iter().any(|&b| b >= 0x80));
        let out = replace_bytes(file, b"m@evil.example", b"alice@example.org").unwrap();
        assert_eq!(
            out,
            b"(name \"alice@example.org\")\n(x \"T\xe9\x92.\xff\")".to_vec()
        );
        assert_eq!(replace_bytes(file, b"absent", b"x"), None);
        assert_eq!(replace_bytes(b"", b"a", b"b"), None);
        assert_eq!(
            replace_bytes(b"aXa", b"a", b"bb").unwrap(),
            b"bbXbb".to_vec()
        );
    }
}
