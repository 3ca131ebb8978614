//! Two sessions wired back to back, for the crate's own tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab_core::{
    stanza, Element, Env, Error, Event, Options, Protocol, Role, Session, SessionConfig,
    SessionState,
};
use e2elab_esessions::Esessions;
use std::sync::Arc;

pub const A: &str = "alice@example.org/lab";
pub const B: &str = "bob@example.net/lab";

pub struct Pair<S: Session + ?Sized = dyn Session> {
    pub s: [Box<S>; 2],
    pub env: [Env; 2],
    pub events: [Vec<Event>; 2],
    /// Wire stanzas in flight: (to party, serialized).
    pub wire: Vec<(usize, String)>,
    pub log: Vec<(usize, String)>,
    /// Every operation each party's session calls recorded.
    pub ops: [e2elab_core::OpLog; 2],
}

/// Both parties' identities, generated from the seed.
fn identities(proto: &Esessions, seed: u64) -> [Arc<e2elab_core::Identity>; 2] {
    let mut env = [
        Env::for_party(seed, "initiator"),
        Env::for_party(seed, "responder"),
    ];
    let mut gen =
        |i: usize, jid: &str| Arc::new(proto.generate_identity(&mut env[i], jid).unwrap());
    [gen(0, "alice@example.org"), gen(1, "bob@example.net")]
}

pub fn pair_with(proto: &Esessions, opts: [Options; 2], seed: u64) -> Pair {
    pair_from(proto, identities(proto, seed), opts, seed)
}

pub fn pair_from(
    proto: &Esessions,
    ids: [Arc<e2elab_core::Identity>; 2],
    opts: [Options; 2],
    seed: u64,
) -> Pair {
    build(ids, opts, seed, |env, cfg| {
        proto.new_session(env, cfg).unwrap()
    })
}

/// Both sessions (Alice initiating, Bob responding) made by `mk`.
fn build<S: Session + ?Sized>(
    ids: [Arc<e2elab_core::Identity>; 2],
    opts: [Options; 2],
    seed: u64,
    mk: impl Fn(&mut Env, SessionConfig) -> Box<S>,
) -> Pair<S> {
    let mut env = [
        Env::for_party(seed, "initiator"),
        Env::for_party(seed, "responder"),
    ];
    let [o0, o1] = opts;
    let cfg = |me: usize, options: Options| SessionConfig {
        role: if me == 0 {
            Role::Initiator
        } else {
            Role::Responder
        },
        local_jid: e2elab_core::Jid::new([A, B][me]).unwrap(),
        peer_jid: e2elab_core::Jid::new([A, B][1 - me]).unwrap(),
        identity: ids[me].clone(),
        peer_public: Some(ids[1 - me].public.clone()),
        options,
    };
    let s0 = mk(&mut env[0], cfg(0, o0));
    let s1 = mk(&mut env[1], cfg(1, o1));
    Pair {
        s: [s0, s1],
        env,
        events: [Vec::new(), Vec::new()],
        wire: Vec::new(),
        log: Vec::new(),
        ops: Default::default(),
    }
}

pub fn pair(proto: &Esessions) -> Pair {
    pair_with(proto, [Options::new(), Options::new()], 7)
}

/// Two SIGMA sessions as their concrete type (for the negotiated-parameter
/// accessors), identities generated from the seed.
pub fn sigma_pair(
    proto: &Esessions,
    opts: [Options; 2],
    seed: u64,
) -> Pair<e2elab_esessions::sigma::SigmaSession> {
    sigma_pair_from(proto, identities(proto, seed), opts, seed)
}

/// [`sigma_pair`] with given identities.
pub fn sigma_pair_from(
    proto: &Esessions,
    ids: [Arc<e2elab_core::Identity>; 2],
    opts: [Options; 2],
    seed: u64,
) -> Pair<e2elab_esessions::sigma::SigmaSession> {
    build(ids, opts, seed, |env, cfg| {
        Box::new(proto.sigma_session(env, cfg).unwrap())
    })
}

impl<S: Session + ?Sized> Pair<S> {
    fn drain(&mut self, i: usize, mut out: e2elab_core::Outbox) {
        while let Some(el) = out.poll_transmit() {
            let w = stanza::serialize(&el);
            self.log.push((1 - i, w.clone()));
            self.wire.push((1 - i, w));
        }
        while let Some(ev) = out.poll_event() {
            self.events[i].push(ev);
        }
    }

    pub fn start(&mut self) {
        let mut out = e2elab_core::Outbox::new();
        let (r, ops) = e2elab_core::ops::recorded(|| self.s[0].start(&mut self.env[0], &mut out));
        self.ops[0].merge(&ops);
        r.unwrap();
        self.drain(0, out);
    }

    pub fn send(&mut self, i: usize, el: Element) -> Result<(), Error> {
        let mut out = e2elab_core::Outbox::new();
        let (r, ops) =
            e2elab_core::ops::recorded(|| self.s[i].send(&mut self.env[i], el, &mut out));
        self.ops[i].merge(&ops);
        self.drain(i, out);
        r
    }

    /// Deliver a serialized stanza to party `to`.
    pub fn deliver(&mut self, to: usize, xml: &str) -> Result<(), Error> {
        let el = stanza::parse(xml)?;
        let mut out = e2elab_core::Outbox::new();
        let (r, ops) = e2elab_core::ops::recorded(|| {
            self.s[to].handle_inbound(&mut self.env[to], el, &mut out)
        });
        self.ops[to].merge(&ops);
        self.drain(to, out);
        r
    }

    /// Take the next stanza in flight.
    pub fn next(&mut self) -> Option<(usize, String)> {
        if self.wire.is_empty() {
            None
        } else {
            Some(self.wire.remove(0))
        }
    }

    /// Deliver everything until quiet; panics on an error.
    pub fn pump(&mut self) -> usize {
        let mut n = 0;
        while let Some((to, w)) = self.next() {
            self.deliver(to, &w).unwrap();
            n += 1;
        }
        n
    }

    pub fn handshake(&mut self) -> usize {
        self.start();
        let n = self.pump();
        assert_eq!(self.s[0].state(), SessionState::Established);
        assert_eq!(self.s[1].state(), SessionState::Established);
        n
    }

    pub fn delivered(&self, i: usize) -> Vec<Element> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { stanza: el, .. } => Some(el.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn established(&self, i: usize) -> Option<e2elab_core::PeerIdentity> {
        self.events[i].iter().find_map(|e| match e {
            Event::Established(p) => Some(p.clone()),
            _ => None,
        })
    }
}

pub fn msg(from: usize, body: &str) -> Element {
    let (f, t) = if from == 0 { (A, B) } else { (B, A) };
    stanza::chat_message(f, t, "id1", body).unwrap()
}
