//! The adapter's decisions, one test each (see the crate's DECISIONS).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use e2elab_core::{
    stanza, ApiMisuse, Element, Error, Event, Options, PeerMisbehaved, Protocol, Role, Session,
    SessionConfig, SessionState, Warning,
};
use e2elab_otr::carriage;
use e2elab_otr::{SmpStatus, Version, OTR_V2, OTR_V3};
use std::sync::Arc;

fn otr_type(e: &Element) -> u8 {
    // "?OTR:" + base64; the third decoded byte is the message type.
    let b = body_of(e);
    let b64 = b.strip_prefix("?OTR:").expect("an OTR binary message");
    let dec = decode_b64_prefix(&b64[..8]);
    dec[2]
}

fn decode_b64_prefix(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let v: Vec<u32> = s
        .bytes()
        .map(|c| A.iter().position(|a| *a == c).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for ch in v.chunks(4) {
        let n = ch.iter().fold(0u32, |acc, x| (acc << 6) | x);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out
}

#[test]
fn handshake_is_query_plus_four_ake_messages() {
    for (proto, v) in [(OTR_V3, 3u8), (OTR_V2, 2u8)] {
        let p = Pair::established(proto, &Options::new());
        let hs: Vec<&(usize, Element)> = p.wire.iter().collect();
        assert_eq!(hs.len(), 5, "query + DH-Commit, DH-Key, Reveal-Sig, Sig");
        assert_eq!(hs[0].0, 0);
        assert!(body_of(&hs[0].1).starts_with(&format!("?OTRv{v}?")));
        let types: Vec<(usize, u8)> = hs[1..].iter().map(|(i, e)| (*i, otr_type(e))).collect();
        assert_eq!(types, vec![(1, 0x02), (0, 0x0a), (1, 0x11), (0, 0x12)]);
        // Established events name the peer's fingerprint, and both ends show
        // the same secure session id (16 hex digits in two halves).
        let mut ssids = Vec::new();
        for i in 0..2 {
            let est = p.p[i]
                .events
                .iter()
                .find_map(|e| match e {
                    Event::Established(pi) => Some(pi.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(est.fingerprint.as_ref().unwrap().len(), 40);
            let ssid = est.sas.unwrap();
            assert_eq!(ssid.len(), 17, "{ssid}");
            assert!(ssid.chars().all(|c| c.is_ascii_hexdigit() || c == ' '));
            ssids.push(ssid);
            assert_eq!(
                p.p[i].s.version(),
                if v == 3 { Version::V3 } else { Version::V2 }
            );
        }
        assert_eq!(ssids[0], ssids[1], "both ends compare the same id");
        if v == 3 {
            assert!(p.p[0].s.their_instance() >= 0x100);
        } else {
            assert_eq!(p.p[0].s.their_instance(), 0);
        }
        // Both ends agree on the fingerprints they saw.
        let fp = |i: usize| {
            p.p[i]
                .events
                .iter()
                .find_map(|e| match e {
                    Event::Established(pi) => pi.fingerprint.clone(),
                    _ => None,
                })
                .unwrap()
        };
        assert_ne!(fp(0), fp(1));
    }
}

#[test]
fn ops_are_derived_and_grow_with_the_ratchet() {
    use e2elab_core::ops::OpClass::{Modexp, Sign, Verify};
    use e2elab_core::Op;
    let mut p = Pair::established(OTR_V3, &Options::new());
    for side in &p.p {
        let c0 = &side.ops;
        assert!(c0.public_key_derived());
        assert_eq!(
            (c0.calls_in(Modexp), c0.calls_in(Sign), c0.calls_in(Verify)),
            (5, 1, 1)
        );
        // 2 key pairs (base-2 powms) and 3 agreements (other bases).
        assert_eq!(
            (
                c0.get(&Op::OtrDhKeypair).calls,
                c0.get(&Op::OtrDhSession).calls
            ),
            (2, 3)
        );
    }
    p.send_deliver(0, msg(0, "1", "one"));
    p.send_deliver(1, msg(1, "2", "two"));
    p.send_deliver(0, msg(0, "3", "three"));
    assert!(p.p[0].ops.calls_in(Modexp) > 5);
    assert!(p.p[1].ops.calls_in(Modexp) > 5);
    assert_eq!(p.p[0].ops.calls_in(Sign), 1);
    // Every data message: AES-CTR over its text, both ways.
    let aes = |i: usize| {
        p.p[i]
            .ops
            .iter()
            .filter(|(o, _)| matches!(o, Op::Cipher { .. }))
            .map(|(_, t)| t.bytes)
            .sum::<u64>()
    };
    assert_eq!(aes(0), ("one".len() + "three".len() + "two".len()) as u64);
    assert_eq!(aes(0), aes(1));
}

#[test]
fn data_stanza_keeps_everything_but_the_body_in_clear_with_hints() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let mut m = msg(0, "x1", "secret words");
    m.append_child(stanza::text_element(
        "subject",
        stanza::NS_CLIENT,
        "clear subject",
    ));
    let w = p.send(0, m.clone());
    assert_eq!(w.len(), 1);
    let wire = stanza::serialize(&w[0]);
    assert!(!wire.contains("secret words"));
    assert!(wire.contains("clear subject"));
    assert!(body_of(&w[0]).starts_with("?OTR:AAMD"));
    let names: Vec<&str> = w[0].children().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "body",
            "subject",
            "encryption",
            "no-copy",
            "no-permanent-store",
            "private"
        ]
    );
    let (r, _) = p.deliver(1, w[0].clone());
    r.unwrap();
    assert_eq!(p.p[1].delivered, vec![m]);
}

#[test]
fn own_hints_of_the_application_survive() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let mut m = msg(0, "h", "with my own hints");
    for h in carriage::hints() {
        m.append_child(h);
    }
    p.send_deliver(0, m.clone());
    assert_eq!(p.p[1].delivered, vec![m]);
}

#[test]
fn bodyless_and_empty_body_pass_in_clear() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let mut m = stanza::new(stanza::StanzaKind::Message);
    stanza::set_attr(&mut m, "from", ALICE).unwrap();
    stanza::set_attr(&mut m, "to", BOB).unwrap();
    m.append_child(Element::bare(
        "composing",
        "http://jabber.org/protocol/chatstates",
    ));
    let w = p.send_deliver(0, m.clone());
    assert_eq!(w, vec![m.clone()]);
    let mut e = msg(0, "e", "");
    assert_eq!(body_of(&e), "");
    let w = p.send_deliver(0, e.clone());
    assert_eq!(w, vec![e.clone()]);
    // Nothing OTR protects went on the wire in clear: delivered labelled
    // unprotected, each after the warning every profile gives (issue 16.4).
    assert!(p.p[1].delivered.is_empty());
    assert_eq!(p.p[1].unprotected, vec![m, e.clone()]);
    let warned = p.p[1]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Warning(Warning::UnprotectedStanza { .. })))
        .count();
    assert_eq!(warned, 2);
    // Two bodies are refused (one would leak).
    e.append_child(stanza::text_element("body", stanza::NS_CLIENT, "a"));
    e.append_child(stanza::text_element("body", stanza::NS_CLIENT, "b"));
    let side = &mut p.p[0];
    let r = side.s.send(&mut side.env, e, &mut side.out);
    assert!(matches!(r, Err(Error::Api(ApiMisuse::CannotProtect(_)))));
    assert_eq!(side.out.pending_transmits(), 0);
}

#[test]
fn presence_and_iq_are_refused() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let side = &mut p.p[0];
    let pres = stanza::new(stanza::StanzaKind::Presence);
    assert!(matches!(
        side.s.send(&mut side.env, pres.clone(), &mut side.out),
        Err(Error::Api(ApiMisuse::CannotProtect(_)))
    ));
    let (r, out) = p.deliver(1, pres);
    assert_eq!(r.unwrap_err().kind(), "decode");
    assert!(out.is_empty());
}

#[test]
fn send_before_established_is_held_and_never_plain() {
    let mut p = Pair::new(OTR_V3, &Options::new());
    let m = msg(0, "early", "sent before the AKE");
    let w = p.send(0, m.clone());
    assert_eq!(w.len(), 1, "only the query goes out");
    assert!(body_of(&w[0]).starts_with("?OTRv3?"));
    assert_eq!(p.p[0].s.state(), SessionState::Handshaking);
    for (from, e) in p.wire.clone() {
        let _ = from;
        assert!(!stanza::serialize(&e).contains("sent before the AKE"));
    }
    // Deliver the query and pump: the held message arrives after the AKE.
    let (r, out) = p.deliver(1, w[0].clone());
    r.unwrap();
    let mut q: Vec<(usize, Element)> = out.into_iter().map(|e| (0, e)).collect();
    while let Some((to, e)) = (!q.is_empty()).then(|| q.remove(0)) {
        let (r, out) = p.deliver(to, e);
        r.unwrap();
        q.extend(out.into_iter().map(|e| (1 - to, e)));
    }
    assert_eq!(p.p[1].delivered, vec![m]);
    for (_, e) in &p.wire {
        assert!(!stanza::serialize(e).contains("sent before the AKE"));
    }
}

#[test]
fn unencrypted_text_is_delivered_unprotected_only() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let plain = msg(0, "p", "plain text sneaking in");
    let (r, out) = p.deliver(1, plain.clone());
    r.unwrap();
    assert!(out.is_empty());
    assert!(p.p[1].delivered.is_empty());
    assert_eq!(p.p[1].unprotected, vec![plain]);
    assert!(p.p[1]
        .events
        .iter()
        .any(|e| matches!(e, Event::Warning(Warning::UnprotectedStanza { .. }))));
}

#[test]
fn wrong_sender_is_rejected_and_changes_nothing() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let w = p.send(0, msg(0, "w", "hello"));
    let mut forged = w[0].clone();
    stanza::set_attr(&mut forged, "from", "mallory@example.com/x").unwrap();
    let (r, out) = p.deliver(1, forged);
    assert!(matches!(
        r,
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    assert!(out.is_empty());
    assert_eq!(p.p[1].s.state(), SessionState::Established);
    let (r, _) = p.deliver(1, w[0].clone());
    r.unwrap();
    assert_eq!(p.p[1].delivered.len(), 1);
}

#[test]
fn tampered_and_replayed_data_are_typed_errors_without_output() {
    let mut p = Pair::established(OTR_V2, &Options::new());
    let w = p.send(0, msg(0, "t", "tamper target"));
    let mut bad = w[0].clone();
    let b = body_of(&bad);
    let mut chars: Vec<char> = b.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    carriage::set_body(&mut bad, &chars.into_iter().collect::<String>());
    let (r, out) = p.deliver(1, bad);
    assert!(r.is_err());
    assert!(out.is_empty(), "no ?OTR Error reply is sent");
    let (r, _) = p.deliver(1, w[0].clone());
    r.unwrap();
    let (r, out) = p.deliver(1, w[0].clone());
    assert_eq!(r.unwrap_err(), Error::DecryptFailed);
    assert!(out.is_empty());
    assert_eq!(p.p[1].delivered.len(), 1);
}

#[test]
fn close_sends_disconnect_and_peer_closes() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let side = &mut p.p[0];
    side.s.close(&mut side.env, &mut side.out).unwrap();
    let w = p.drain(0);
    assert_eq!(w.len(), 1);
    assert_eq!(p.p[0].s.state(), SessionState::Closed);
    let (r, _) = p.deliver(1, w[0].clone());
    r.unwrap();
    assert!(p.p[1].events.contains(&Event::PeerClosed));
    assert_eq!(p.p[1].s.state(), SessionState::Closed);
    assert!(p.p[1].delivered.is_empty());
    let side = &mut p.p[0];
    assert!(matches!(
        side.s.send(&mut side.env, msg(0, "z", "x"), &mut side.out),
        Err(Error::Api(ApiMisuse::Closed))
    ));
}

#[test]
fn smp_succeeds_with_equal_secrets_and_fails_otherwise() {
    for (a, b, want) in [
        (
            &b"correct horse"[..],
            &b"correct horse"[..],
            SmpStatus::Succeeded,
        ),
        (
            &b"correct horse"[..],
            &b"battery staple"[..],
            SmpStatus::Failed,
        ),
    ] {
        let mut p = Pair::established(OTR_V3, &Options::new());
        {
            let side = &mut p.p[0];
            side.s
                .smp_start(Some("our pet's name?"), a, &mut side.out)
                .unwrap();
        }
        p.pump();
        assert_eq!(
            p.p[1].s.smp_status(),
            &SmpStatus::AskedForSecret(Some("our pet's name?".into()))
        );
        {
            let side = &mut p.p[1];
            side.s.smp_respond(b, &mut side.out).unwrap();
        }
        p.pump();
        assert_eq!(p.p[0].s.smp_status(), &want);
        assert_eq!(p.p[1].s.smp_status(), &want);
        // The session still works and nothing was delivered by SMP.
        assert!(p.p[0].delivered.is_empty() && p.p[1].delivered.is_empty());
        p.send_deliver(0, msg(0, "after", "after smp"));
        assert_eq!(p.p[1].delivered.len(), 1);
    }
}

#[test]
fn pinned_fingerprint_mismatch_warns() {
    let mut env = e2elab_core::Env::for_party(3, "x");
    let alice = OTR_V3
        .generate_identity(&mut env, "alice@example.org")
        .unwrap();
    let bob = OTR_V3
        .generate_identity(&mut env, "bob@example.net")
        .unwrap();
    let mut wrong = bob.public.clone();
    wrong.fingerprint = Some("00".repeat(20));
    let mk = |role, local: &str, peer: &str, id: &e2elab_core::Identity, pin| {
        let mut env = e2elab_core::Env::for_party(3, local);
        OTR_V3
            .new_otr_session(
                &mut env,
                SessionConfig {
                    role,
                    local_jid: e2elab_core::Jid::new(local).unwrap(),
                    peer_jid: e2elab_core::Jid::new(peer).unwrap(),
                    identity: Arc::new(id.clone()),
                    peer_public: Some(pin),
                    options: Options::new(),
                },
            )
            .unwrap()
    };
    let mut p = Pair::new(OTR_V3, &Options::new());
    p.p[0].s = mk(Role::Initiator, ALICE, BOB, &alice, wrong);
    p.p[1].s = mk(Role::Responder, BOB, ALICE, &bob, alice.public.clone());
    p.start();
    p.pump();
    assert!(p.p[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Warning(Warning::KeyChanged { .. }))));
    assert!(!p.p[1]
        .events
        .iter()
        .any(|e| matches!(e, Event::Warning(Warning::KeyChanged { .. }))));
}

#[test]
fn identity_and_options_are_checked() {
    let mut env = e2elab_core::Env::for_party(4, "x");
    let alice = Arc::new(
        OTR_V3
            .generate_identity(&mut env, "alice@example.org")
            .unwrap(),
    );
    let cfg = |local: &str, opts: Options, id: Arc<e2elab_core::Identity>| SessionConfig {
        role: Role::Initiator,
        local_jid: e2elab_core::Jid::new(local).unwrap(),
        peer_jid: e2elab_core::Jid::new(BOB).unwrap(),
        identity: id,
        peer_public: None,
        options: opts,
    };
    assert!(OTR_V3
        .new_session(
            &mut env,
            cfg("carol@example.org/x", Options::new(), alice.clone())
        )
        .is_err());
    assert!(OTR_V3
        .new_session(
            &mut env,
            cfg(ALICE, Options::new().set("nope", "1"), alice.clone())
        )
        .is_err());
    assert!(OTR_V3
        .new_session(
            &mut env,
            cfg(
                ALICE,
                Options::new().set("max_msg_size", "10"),
                alice.clone()
            )
        )
        .is_err());
    assert!(
        OTR_V2
            .new_session(&mut env, cfg(ALICE, Options::new(), alice.clone()))
            .is_err(),
        "an otr-v3 identity is not an otr-v2 one"
    );
    // Cached: the same key for the same JID, and its fingerprint is the public data.
    let again = OTR_V3
        .generate_identity(&mut env, "alice@example.org/other")
        .unwrap();
    assert_eq!(again.public.fingerprint, alice.public.fingerprint);
    assert_eq!(
        hex::encode(&again.public.data),
        alice.public.fingerprint.clone().unwrap()
    );
    // Debug never shows the key.
    assert!(!format!("{alice:?}").contains("privkeys"));
    let s = OTR_V3
        .new_session(&mut env, cfg(ALICE, Options::new(), alice))
        .unwrap();
    assert!(!format!("{:?}", s.info()).is_empty());
}

#[test]
fn responder_cannot_start_and_start_is_once() {
    let mut p = Pair::new(OTR_V3, &Options::new());
    let side = &mut p.p[1];
    assert!(matches!(
        side.s.start(&mut side.env, &mut side.out),
        Err(Error::Api(ApiMisuse::NotInitiator))
    ));
    p.start();
    let side = &mut p.p[0];
    assert!(matches!(
        side.s.start(&mut side.env, &mut side.out),
        Err(Error::Api(ApiMisuse::AlreadyStarted))
    ));
}

#[test]
fn key_generation_cost_is_measurable() {
    let t = std::time::Instant::now();
    let (text, fp) = e2elab_otr::generate_key_file("keygen-timing@example.org").unwrap();
    let dt = t.elapsed();
    assert!(std::str::from_utf8(&text).unwrap().starts_with("(privkeys"));
    assert_eq!(fp.len(), 40);
    eprintln!("DSA-1024 key generation through libotr: {dt:?}");
    assert!(dt.as_micros() > 0);
}

#[test]
fn libotr_primitives_for_the_floor_work() {
    let mut env = e2elab_core::Env::for_party(5, "p");
    let id = OTR_V3
        .generate_identity(&mut env, "alice@example.org")
        .unwrap();
    let mut p =
        e2elab_otr::ffi::Primitives::new(id.secret().expose(), "alice@example.org").unwrap();
    p.dh_keygen().unwrap();
    p.dh_session().unwrap();
    let sig = p.dsa_sign().unwrap();
    assert_eq!(sig.len(), 40, "DSA-1024: r and s of 20 bytes");
    p.dsa_verify(&sig).unwrap();
    let mut bad = sig.clone();
    bad[3] ^= 1;
    assert!(p.dsa_verify(&bad).is_err());
    assert!(e2elab_otr::ffi::Primitives::new(id.secret().expose(), "carol@example.org").is_err());
}

#[test]
fn whitespace_start_offers_with_the_bare_tag() {
    for (proto, v) in [(OTR_V3, 3u8), (OTR_V2, 2u8)] {
        let p = Pair::established(proto, &Options::new().set("start", "whitespace"));
        assert_eq!(p.wire.len(), 5);
        let tag = body_of(&p.wire[0].1);
        assert_eq!(tag.len(), 24);
        assert!(tag.chars().all(|c| c == ' ' || c == '\t'));
        assert_eq!(tag, proto.version().whitespace_tag());
        assert_eq!(
            otr_type(&p.wire[1].1),
            0x02,
            "the responder answers with a DH-Commit"
        );
        assert_eq!(decode_b64_prefix(&body_of(&p.wire[1].1)[5..13])[1], v);
        assert!(p.p[1].unprotected.is_empty());
        assert!(!p.p[1].events.iter().any(|e| matches!(e, Event::Warning(_))));
        let mut env = e2elab_core::Env::for_party(4, "x");
        let bob = proto
            .generate_identity(&mut env, "bob@example.net")
            .unwrap();
        assert_eq!(
            p.p[0].s.peer_fingerprint(),
            bob.public.fingerprint.as_deref()
        );
    }
    let mut env = e2elab_core::Env::for_party(4, "x");
    let alice = Arc::new(
        OTR_V3
            .generate_identity(&mut env, "alice@example.org")
            .unwrap(),
    );
    let bad = OTR_V3.new_session(
        &mut env,
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(ALICE).unwrap(),
            peer_jid: e2elab_core::Jid::new(BOB).unwrap(),
            identity: alice,
            peer_public: None,
            options: Options::new().set("start", "smoke-signals"),
        },
    );
    assert!(bad.is_err());
}

#[test]
fn markup_in_the_body_is_text() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let m = msg(0, "x", "<b>bold?</b> &amp; <script>alert(1)</script>");
    p.send_deliver(0, m.clone());
    assert_eq!(p.p[1].delivered, vec![m]);
}

#[test]
fn random_bodies_never_panic_and_errors_change_nothing() {
    let mut p = Pair::established(OTR_V3, &Options::new());
    let w = p.send(0, msg(0, "r", "random target"));
    let genuine = body_of(&w[0]);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let prefixes = [
        "?OTR:AAMD",
        "?OTR:AAMC",
        "?OTR:AAIK",
        "?OTR|",
        "?OTR,",
        "?OTRv3?",
        "?OTR Error:",
        "",
    ];
    for round in 0..300 {
        let body = if round % 2 == 0 {
            // Mutate the genuine message.
            let mut b: Vec<u8> = genuine.clone().into_bytes();
            for _ in 0..(1 + round % 4) {
                let n = b.len() as u64;
                let i = (next() % n) as usize;
                b[i] = b"ABCDEFabcdef0123456789+/=.,|?"[(next() % 29) as usize];
            }
            String::from_utf8(b).unwrap()
        } else {
            let pre = prefixes[(next() % prefixes.len() as u64) as usize];
            let len = (next() % 300) as usize;
            let tail: String = (0..len)
                .map(|_| char::from(b"ABCDEFGHab0189+/=.,|"[(next() % 20) as usize]))
                .collect();
            format!("{pre}{tail}")
        };
        let mut bad = w[0].clone();
        carriage::set_body(&mut bad, &body);
        let before = p.p[1].s.state();
        let delivered = p.p[1].delivered.len();
        let (r, out) = p.deliver(1, bad);
        if r.is_err() {
            assert!(out.is_empty(), "round {round}: error but emitted");
            assert_eq!(p.p[1].s.state(), before);
            assert_eq!(p.p[1].delivered.len(), delivered);
        }
        for d in &p.p[1].delivered {
            assert_eq!(
                body_of(d),
                "random target",
                "only genuine content is delivered"
            );
        }
    }
    // The session still works both ways.
    p.send_deliver(0, msg(0, "a", "still alive"));
    p.send_deliver(1, msg(1, "b", "still alive too"));
    assert_eq!(p.p[0].delivered.len(), 1);
}

#[test]
fn plaintext_before_otr_does_not_start_a_handshake() {
    let mut p = Pair::new(OTR_V3, &Options::new());
    let (r, out) = p.deliver(1, msg(0, "pt", "hello in the clear"));
    r.unwrap();
    assert!(out.is_empty());
    assert_eq!(p.p[1].s.state(), SessionState::Idle);
    assert_eq!(p.p[1].unprotected.len(), 1);
    assert!(p.p[1].delivered.is_empty());
}

/// Issue 16, fault 8: a v3 peer and a v2-only peer say why nothing happens.
#[test]
fn a_version_mismatch_is_reported_both_ways() {
    for (a, b, offered) in [(OTR_V3, OTR_V2, "v3"), (OTR_V2, OTR_V3, "v2")] {
        let mut alice = session(a, 0, &Options::new(), 61);
        let mut bob = session(b, 1, &Options::new(), 61);
        let (mut ea, mut eb) = (
            e2elab_core::Env::for_party(61, "initiator"),
            e2elab_core::Env::for_party(61, "responder"),
        );
        let mut out = e2elab_core::Outbox::new();
        alice.start(&mut ea, &mut out).unwrap();
        let query = out.poll_transmit().unwrap();
        let mut out_b = e2elab_core::Outbox::new();
        let err = bob.handle_inbound(&mut eb, query, &mut out_b).unwrap_err();
        assert!(
            matches!(&err, e2elab_core::Error::Unsupported(m) if m.contains("version mismatch") && m.contains(offered)),
            "{err}"
        );
        assert!(out_b.poll_transmit().is_none());
    }
}

#[test]
fn offered_versions_parse_queries_and_tags() {
    use e2elab_otr::offered_versions;
    assert_eq!(offered_versions("?OTRv3? join me"), Some(vec![3]));
    assert_eq!(offered_versions("?OTRv23?"), Some(vec![2, 3]));
    assert_eq!(offered_versions("?OTR?v2?"), Some(vec![1, 2]));
    assert_eq!(offered_versions("?OTR?"), Some(vec![1]));
    assert_eq!(offered_versions("?OTR:AAMC"), None);
    assert_eq!(offered_versions("what is ?OTR anyway"), None);
    assert_eq!(
        offered_versions("hi \t  \t\t\t\t \t \t \t    \t\t  \t "),
        Some(vec![2])
    );
    assert_eq!(offered_versions("plain"), None);
}

/// Issue 16, fault 7: an AKE that stalls (here: the peer never answers)
/// times out on the virtual clock; the held message is reported, not lost.
#[test]
fn a_stalled_ake_times_out_and_reports_the_held_message() {
    let mut alice = session(OTR_V3, 0, &Options::new().set("ake_timeout", "30"), 62);
    let mut env = e2elab_core::Env::for_party(62, "initiator");
    let mut out = e2elab_core::Outbox::new();
    let m = stanza::chat_message(ALICE, BOB, "h", "held").unwrap();
    alice.send(&mut env, m.clone(), &mut out).unwrap();
    let deadline = alice.poll_timeout().expect("a deadline while the AKE runs");
    assert_eq!(deadline, env.now().plus(std::time::Duration::from_secs(30)));
    // Not yet.
    alice.handle_timeout(&mut env, &mut out).unwrap();
    assert_eq!(alice.state(), SessionState::Handshaking);
    env.set_now(deadline);
    while out.poll_event().is_some() {}
    alice.handle_timeout(&mut env, &mut out).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| out.poll_event()).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::NotSent { stanza, .. } if *stanza == m)));
    assert!(events.iter().any(|e| matches!(e, Event::Closed)));
    assert_eq!(alice.state(), SessionState::Closed);
    // ake_timeout=0 waits for ever.
    let mut patient = session(OTR_V3, 0, &Options::new().set("ake_timeout", "0"), 63);
    patient.send(&mut env, m, &mut out).unwrap();
    assert_eq!(patient.poll_timeout(), None);
}

#[test]
fn a_delivery_is_labelled_body_covered_the_rest_clear() {
    // OTR protects the body only: an XHTML-IM child beside it travels in
    // clear, and the label says so (issue 16.4).
    let mut p = Pair::established(OTR_V3, &Options::new());
    let mut m = msg(0, "x", "the body");
    m.append_child(Element::bare("html", "http://jabber.org/protocol/xhtml-im"));
    p.send_deliver(0, m.clone());
    let label = p.p[1]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Delivered { protection, .. } => Some(protection.clone()),
            _ => None,
        })
        .expect("a delivery");
    assert_eq!(label.covered, vec!["{jabber:client}body".to_string()]);
    assert_eq!(
        label.clear,
        vec!["{http://jabber.org/protocol/xhtml-im}html".to_string()]
    );
    assert!(label.confidential && label.authenticated);
    assert!(
        label.key.starts_with("otr:") && label.key.len() > 4,
        "{}",
        label.key
    );
}
