//! A two-party driver for the adapter's own tests (the harness is not a dependency).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab_core::{
    stanza, Element, Env, Event, Options, Outbox, Protocol, Role, Session, SessionConfig,
};
use e2elab_otr::{Otr, OtrSession};
use std::sync::Arc;

pub const ALICE: &str = "alice@example.org/lab";
pub const BOB: &str = "bob@example.net/lab";

pub struct Side {
    pub s: OtrSession,
    pub env: Env,
    pub out: Outbox,
    pub delivered: Vec<Element>,
    pub unprotected: Vec<Element>,
    pub events: Vec<Event>,
    pub errors: Vec<e2elab_core::Error>,
    /// Every operation this side's session calls recorded.
    pub ops: e2elab_core::OpLog,
}

pub struct Pair {
    pub p: [Side; 2],
    /// Every stanza put on the wire: (from party, stanza).
    pub wire: Vec<(usize, Element)>,
}

pub fn jid(i: usize) -> &'static str {
    if i == 0 {
        ALICE
    } else {
        BOB
    }
}

pub fn session(proto: Otr, i: usize, options: &Options, seed: u64) -> OtrSession {
    let mut env = Env::for_party(seed, "id");
    let me = proto
        .generate_identity(&mut env, stanza::bare_jid(jid(i)))
        .unwrap();
    let peer = proto
        .generate_identity(&mut env, stanza::bare_jid(jid(1 - i)))
        .unwrap();
    let mut env = Env::for_party(seed, if i == 0 { "initiator" } else { "responder" });
    proto
        .new_otr_session(
            &mut env,
            SessionConfig {
                role: if i == 0 {
                    Role::Initiator
                } else {
                    Role::Responder
                },
                local_jid: e2elab_core::Jid::new(jid(i)).unwrap(),
                peer_jid: e2elab_core::Jid::new(jid(1 - i)).unwrap(),
                identity: Arc::new(me),
                peer_public: Some(peer.public.clone()),
                options: options.clone(),
            },
        )
        .unwrap()
}

impl Pair {
    pub fn new(proto: Otr, options: &Options) -> Pair {
        let mk = |i: usize| Side {
            s: session(proto, i, options, 7),
            env: Env::for_party(7, &format!("call{i}")),
            out: Outbox::new(),
            delivered: Vec::new(),
            unprotected: Vec::new(),
            events: Vec::new(),
            errors: Vec::new(),
            ops: e2elab_core::OpLog::new(),
        };
        Pair {
            p: [mk(0), mk(1)],
            wire: Vec::new(),
        }
    }

    pub fn established(proto: Otr, options: &Options) -> Pair {
        let mut p = Pair::new(proto, options);
        p.start();
        p.pump();
        assert_eq!(p.p[0].s.state(), e2elab_core::SessionState::Established);
        assert_eq!(p.p[1].s.state(), e2elab_core::SessionState::Established);
        p
    }

    pub fn start(&mut self) {
        let side = &mut self.p[0];
        let (r, ops) = e2elab_core::ops::recorded(|| side.s.start(&mut side.env, &mut side.out));
        side.ops.merge(&ops);
        r.unwrap();
    }

    /// Take what party `i` queued (stanzas) and record its events.
    pub fn drain(&mut self, i: usize) -> Vec<Element> {
        let side = &mut self.p[i];
        while let Some(ev) = side.out.poll_event() {
            match &ev {
                Event::Delivered { stanza: e, .. } => side.delivered.push(e.clone()),
                Event::DeliveredUnprotected(e) => side.unprotected.push(e.clone()),
                _ => {}
            }
            side.events.push(ev);
        }
        let mut v = Vec::new();
        while let Some(e) = side.out.poll_transmit() {
            self.wire.push((i, e.clone()));
            v.push(e);
        }
        v
    }

    /// Party `i` protects `el`; returns the wire stanzas (not delivered).
    pub fn send(&mut self, i: usize, el: Element) -> Vec<Element> {
        let side = &mut self.p[i];
        let (r, ops) = e2elab_core::ops::recorded(|| side.s.send(&mut side.env, el, &mut side.out));
        side.ops.merge(&ops);
        r.unwrap();
        self.drain(i)
    }

    /// Hand `el` to party `to`; returns the call's result and what it emitted.
    pub fn deliver(
        &mut self,
        to: usize,
        el: Element,
    ) -> (Result<(), e2elab_core::Error>, Vec<Element>) {
        let side = &mut self.p[to];
        let (r, ops) =
            e2elab_core::ops::recorded(|| side.s.handle_inbound(&mut side.env, el, &mut side.out));
        side.ops.merge(&ops);
        if let Err(e) = &r {
            side.errors.push(e.clone());
        }
        let out = self.drain(to);
        (r, out)
    }

    /// Deliver everything queued on both sides until quiet.
    pub fn pump(&mut self) {
        let mut queue: Vec<(usize, Element)> = Vec::new();
        for i in 0..2 {
            for e in self.drain(i) {
                queue.push((1 - i, e));
            }
        }
        let mut steps = 0;
        while let Some((to, e)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            steps += 1;
            assert!(steps < 10_000, "pump stalled");
            let (_, out) = self.deliver(to, e);
            for o in out {
                queue.push((1 - to, o));
            }
        }
    }

    /// Send and deliver; returns the wire stanzas.
    pub fn send_deliver(&mut self, from: usize, el: Element) -> Vec<Element> {
        let w = self.send(from, el);
        for e in &w {
            let (r, out) = self.deliver(1 - from, e.clone());
            r.unwrap();
            assert!(out.is_empty() || out.len() < 3);
        }
        w
    }
}

pub fn msg(from: usize, id: &str, body: &str) -> Element {
    stanza::chat_message(jid(from), jid(1 - from), id, body).unwrap()
}

pub fn body_of(e: &Element) -> String {
    stanza::body(e).unwrap_or_default()
}
