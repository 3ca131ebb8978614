//! The link, its counters and its adversary hooks, and the conformance suite's
//! power to catch a protocol that lies about its claims.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::adversary::{Action, Scripted, Target};
use e2elab::conformance;
use e2elab::driver::{self, full_jid};
use e2elab::link::{Dir, Link, Outcome, Phase};
use e2elab_core::claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
use e2elab_core::{
    stanza, ApiMisuse, DecodeError, Element, Env, Event, Identity, Options, Outbox, PeerIdentity,
    PeerMisbehaved, Protocol, PublicIdentity, Result, Role, SecretBytes, Session, SessionConfig,
    SessionState, StanzaKind,
};
use std::sync::OnceLock;

fn plaintext_link() -> Link {
    let p = e2elab_plaintext::Plaintext;
    let ids = driver::provision(&p, 1).unwrap();
    let mut l = driver::link_for(&p, &ids, 1, &Options::new()).unwrap();
    l.handshake().unwrap();
    l.set_phase(Phase::Data);
    l
}

fn msg(from: usize, body: &str) -> Element {
    stanza::chat_message(&full_jid(from), &full_jid(1 - from), body, body).unwrap()
}

fn bodies(l: &Link, idx: usize) -> Vec<String> {
    l.party(idx)
        .delivered
        .iter()
        .map(|m| stanza::body(m).unwrap())
        .collect()
}

#[test]
fn counts_bytes_per_direction_on_serialized_stanzas() {
    let mut l = plaintext_link();
    let (a, b) = (msg(0, "one"), msg(1, "two-two"));
    l.send(0, a.clone()).unwrap();
    l.send(1, b.clone()).unwrap();
    l.pump().unwrap();
    assert_eq!(
        l.counters(Phase::Data, Dir::AtoB).bytes,
        stanza::wire_size(&a) as u64
    );
    assert_eq!(
        l.counters(Phase::Data, Dir::BtoA).bytes,
        stanza::wire_size(&b) as u64
    );
    assert_eq!(l.counters(Phase::Data, Dir::AtoB).messages, 1);
    assert_eq!(l.flights(Phase::Data), 2);
    assert_eq!(l.transcript.len(), 2);
    assert!(l
        .samples
        .iter()
        .any(|s| s.party == 1 && s.kind == e2elab::link::CallKind::Receive));
}

#[test]
fn adversary_drop_duplicate_replay_reorder_modify() {
    let mut l = plaintext_link();
    l.set_adversary(Box::new(
        Scripted::new()
            .rule(Target::Nth(Dir::AtoB, 0), Action::Drop)
            .rule(Target::Nth(Dir::AtoB, 1), Action::Duplicate)
            .rule(Target::Nth(Dir::AtoB, 2), Action::ReplayAfter(1))
            .rule(Target::Nth(Dir::AtoB, 4), Action::Reorder)
            .rule(
                Target::Nth(Dir::AtoB, 6),
                Action::ModifyBytes(Box::new(|s: &str| s.replace("m6", "XX"))),
            )
            .rule(
                Target::Nth(Dir::AtoB, 7),
                Action::ModifyXml(Box::new(|e: &mut Element| {
                    e.append_child(stanza::text_element(
                        "subject",
                        stanza::NS_CLIENT,
                        "injected",
                    ));
                })),
            ),
    ));
    for i in 0..8 {
        l.send(0, msg(0, &format!("m{i}"))).unwrap();
    }
    l.pump().unwrap();
    assert_eq!(
        bodies(&l, 1),
        ["m1", "m1", "m2", "m3", "m2", "m5", "m4", "XX", "m7"],
        "drop m0, duplicate m1, replay m2 after one more, m4 after m5, m6 rewritten"
    );
    let last = l.party(1).delivered.last().unwrap();
    assert!(last.get_child("subject", stanza::NS_CLIENT).is_some());
    assert!(l
        .transcript
        .iter()
        .any(|e| e.action == "drop" && e.outcome == Outcome::Dropped));
    assert!(l.transcript.iter().any(|e| e.action == "replay"));
    assert!(l.transcript.iter().any(|e| e.action == "reordered"));
    // What the senders emitted is counted once each, whatever the adversary did.
    assert_eq!(l.counters(Phase::Data, Dir::AtoB).messages, 8);
}

#[test]
fn injection_and_unparseable_input() {
    let mut l = plaintext_link();
    let d = l.deliver_raw(Dir::BtoA, &stanza::serialize(&msg(1, "forged")));
    assert!(d.result.is_ok());
    assert_eq!(bodies(&l, 0), ["forged"]);
    let d = l.deliver_raw(Dir::BtoA, "<message xmlns='jabber:client'><body>");
    assert_eq!(d.result.unwrap_err().kind(), "decode");
    assert_eq!(l.transcript.last().unwrap().outcome, Outcome::Unparseable);
}

#[test]
fn virtual_clock_stamps_the_transcript() {
    let mut l = plaintext_link();
    l.set_one_way_delay(std::time::Duration::from_millis(15));
    let t0 = l.now();
    l.send(0, msg(0, "a")).unwrap();
    l.pump().unwrap();
    l.advance(std::time::Duration::from_secs(2));
    l.send(1, msg(1, "b")).unwrap();
    l.pump().unwrap();
    let at: Vec<u64> = l
        .transcript
        .iter()
        .map(|e| e.at.since(t0).as_millis() as u64)
        .collect();
    assert_eq!(at, [15, 2030]);
}

// ---- A toy protocol with a 3-message handshake that lies about its claims ----

const TOY_NS: &str = "urn:example:e2elab:toy";

fn toy_info() -> &'static ProtocolInfo {
    static I: OnceLock<ProtocolInfo> = OnceLock::new();
    I.get_or_init(|| ProtocolInfo {
        id: "toy-liar",
        family: "test",
        spec: "none",
        summary: "claims integrity and replay protection, checks nothing",
        protects: &[StanzaKind::Message],
        after_bad_input: AfterBadInput::Unchanged,
        control_for: &[],
        claims: [Property::Integrity, Property::Replay]
            .into_iter()
            .map(|property| Claim {
                property,
                level: ClaimLevel::Claimed,
                source: "test",
                note: "a lie",
                under: "",
            })
            .collect(),
    })
}

struct Toy;
struct ToySession {
    role: Role,
    step: u8,
    peer: String,
}

impl Protocol for Toy {
    fn info(&self) -> &ProtocolInfo {
        toy_info()
    }
    fn generate_identity(&self, _env: &mut Env, jid: &str) -> Result<Identity> {
        Ok(Identity::new(
            PublicIdentity {
                protocol: "toy-liar".into(),
                jid: jid.into(),
                data: vec![],
                fingerprint: None,
            },
            SecretBytes::default(),
        ))
    }
    fn new_session(&self, _env: &mut Env, c: SessionConfig) -> Result<Box<dyn Session>> {
        Ok(Box::new(ToySession {
            role: c.role,
            step: 0,
            peer: c.peer_jid.to_string(),
        }))
    }
}

fn hs(n: u8) -> Element {
    let mut m = stanza::new(StanzaKind::Message);
    let mut h = Element::bare("hs", TOY_NS);
    stanza::set_attr(&mut h, "n", &n.to_string()).unwrap();
    m.append_child(h);
    m
}

impl Session for ToySession {
    fn info(&self) -> &ProtocolInfo {
        toy_info()
    }
    fn role(&self) -> Role {
        self.role
    }
    fn state(&self) -> SessionState {
        match self.step {
            0 => SessionState::Idle,
            9 => SessionState::Established,
            10 => SessionState::Closed,
            _ => SessionState::Handshaking,
        }
    }
    fn start(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        if self.role != Role::Initiator {
            return Err(ApiMisuse::NotInitiator.into());
        }
        self.step = 1;
        out.send(hs(1));
        Ok(())
    }
    fn send(&mut self, _env: &mut Env, s: Element, out: &mut Outbox) -> Result<()> {
        if self.step == 10 {
            return Err(ApiMisuse::Closed.into());
        }
        out.send(s);
        Ok(())
    }
    fn handle_inbound(&mut self, _env: &mut Env, s: Element, out: &mut Outbox) -> Result<()> {
        if let Some(h) = s.get_child("hs", TOY_NS) {
            let n: u8 = h
                .attr("n")
                .and_then(|n| n.parse().ok())
                .ok_or(DecodeError::Missing("n".into()))?;
            let established = PeerIdentity {
                jid: self.peer.clone(),
                fingerprint: None,
                sas: None,
                method: "none".into(),
            };
            match (self.role, self.step, n) {
                (Role::Responder, 0, 1) => {
                    self.step = 2;
                    out.send(hs(2));
                }
                (Role::Initiator, 1, 2) => {
                    self.step = 9;
                    out.send(hs(3));
                    out.event(Event::Established(established));
                }
                (Role::Responder, 2, 3) => {
                    self.step = 9;
                    out.event(Event::Established(established));
                }
                _ => {
                    return Err(PeerMisbehaved::UnexpectedMessage {
                        got: n.to_string(),
                        expected: self.step.to_string(),
                    }
                    .into())
                }
            }
            return Ok(());
        }
        if StanzaKind::of(&s).is_none() {
            return Err(DecodeError::UnexpectedStanza(s.name().into()).into());
        }
        let label = e2elab_core::Protection::none(&s);
        out.deliver(s, label);
        Ok(())
    }
    fn close(&mut self, _env: &mut Env, _out: &mut Outbox) -> Result<()> {
        self.step = 10;
        Ok(())
    }
}

#[test]
fn handshake_counting_three_flights() {
    let (r, _) = driver::run_workload(&Toy, 1, 3, 16, &Options::new(), |_| {}).unwrap();
    assert_eq!(r.handshake.messages, 3);
    assert_eq!(r.handshake.flights, 3);
    assert_eq!(r.handshake.round_trips, 1.5);
    let hs_len = |n| stanza::wire_size(&hs(n)) as u64;
    assert_eq!(r.handshake.bytes_initiator, hs_len(1) + hs_len(3));
    assert_eq!(r.handshake.bytes_responder, hs_len(2));
    assert_eq!(r.messages.count, 6);
}

#[test]
fn suite_catches_false_integrity_and_replay_claims() {
    let err = conformance::tamper(&Toy).unwrap_err();
    assert!(
        err.to_string().contains("modified content delivered"),
        "{err}"
    );
    let err = conformance::replay(&Toy).unwrap_err();
    assert!(err.to_string().contains("replay accepted"), "{err}");
    let err = conformance::garbage(&Toy).unwrap_err();
    assert!(
        err.to_string().contains("modified content delivered"),
        "{err}"
    );
    // What it does not claim, it is not held to.
    conformance::round_trip(&Toy).unwrap();
    conformance::reorder(&Toy).unwrap();
}

#[test]
fn out_of_order_handshake_is_a_typed_error_and_run_fails_cleanly() {
    let ids = driver::provision(&Toy, 1).unwrap();
    let mut l = driver::link_for(&Toy, &ids, 1, &Options::new()).unwrap();
    let d = l.deliver_raw(Dir::BtoA, &stanza::serialize(&hs(2)));
    assert_eq!(d.result.unwrap_err().kind(), "peer_misbehaved");
    assert_eq!(d.state_after, SessionState::Idle);
}

/// Issue 16, fault 7: a stanza held while a handshake runs is sent or
/// reported as not sent when the session closes first; never dropped
/// silently. Every profile, controls included.
#[test]
fn close_during_a_handshake_reports_every_held_stanza() {
    for proto in e2elab::registry::all() {
        let id = proto.info().id;
        let ids = driver::provision(proto.as_ref(), 3).unwrap();
        let mut env = Env::for_party(3, "initiator");
        let mut s = proto
            .new_session(
                &mut env,
                SessionConfig {
                    role: Role::Initiator,
                    local_jid: e2elab_core::Jid::new(&full_jid(0)).unwrap(),
                    peer_jid: e2elab_core::Jid::new(&full_jid(1)).unwrap(),
                    identity: ids.ids[0].clone(),
                    peer_public: Some(ids.ids[1].public.clone()),
                    options: Options::new(),
                },
            )
            .unwrap();
        let m = stanza::chat_message(&full_jid(0), &full_jid(1), "held", "held body").unwrap();
        let mut out = Outbox::new();
        s.send(&mut env, m.clone(), &mut out).unwrap();
        let mut sent = 0;
        while let Some(w) = out.poll_transmit() {
            sent += usize::from(stanza::serialize(&w).contains("held"));
        }
        s.close(&mut env, &mut out).unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| out.poll_event()).collect();
        let not_sent: Vec<&Element> = events
            .iter()
            .filter_map(|e| match e {
                Event::NotSent { stanza, reason } => {
                    assert!(!reason.is_empty(), "{id}: a reason");
                    Some(stanza)
                }
                _ => None,
            })
            .collect();
        assert!(
            sent > 0 || not_sent == vec![&m],
            "{id}: the held stanza was neither sent nor reported (sent {sent}, reported {})",
            not_sent.len()
        );
    }
}
