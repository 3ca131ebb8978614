//! Named tests of the SIGMA profiles: round trips, negative cases, SAS, retained secrets, rekey.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use e2elab_core::ops::OpClass;
use e2elab_core::Op;
use e2elab_core::{stanza, Error, Event, Options, PeerMisbehaved, SessionState, Warning};
use e2elab_esessions::Esessions;

fn roundtrip(p: &mut Pair) {
    for (i, body) in ["hello bob", "hello alice"].iter().enumerate() {
        let m = msg(i, body);
        p.send(i, m.clone()).unwrap();
        p.pump();
        assert_eq!(p.delivered(1 - i).last(), Some(&m));
    }
}

fn classes(l: &e2elab_core::OpLog) -> (u64, u64, u64) {
    (
        l.calls_in(OpClass::Modexp),
        l.calls_in(OpClass::Sign),
        l.calls_in(OpClass::Verify),
    )
}

#[test]
fn sigma_r_four_messages_and_matching_sas() {
    let mut p = pair(&Esessions::sigma_r());
    assert_eq!(p.handshake(), 4);
    let (a, b) = (p.established(0).unwrap(), p.established(1).unwrap());
    assert_eq!(a.sas.as_ref().unwrap().len(), 5);
    assert_eq!(a.sas, b.sas, "both sides compute the same SAS");
    assert!(a.fingerprint.is_some() && b.fingerprint.is_some());
    roundtrip(&mut p);
    for ops in &p.ops {
        assert_eq!(classes(ops), (2, 1, 1));
        // One key pair (base 2) and one agreement (the peer's base).
        assert_eq!(
            ops.iter()
                .filter(|(o, _)| matches!(o, Op::ModexpBase2 { .. }))
                .map(|(_, t)| t.calls)
                .sum::<u64>(),
            1
        );
    }
}

#[test]
fn sigma_i_three_messages() {
    let mut p = pair(&Esessions::sigma_i());
    assert_eq!(p.handshake(), 3);
    assert!(p.established(0).unwrap().sas.is_none());
    roundtrip(&mut p);
}

#[test]
fn simplified_no_keys_and_retained_secret_on_second_session() {
    let proto = Esessions::simplified();
    let mut p = pair(&proto);
    assert_eq!(p.handshake(), 4);
    let first = p.established(0).unwrap();
    assert_eq!(first.method, "sas");
    assert!(p.events[0]
        .iter()
        .any(|e| matches!(e, Event::Warning(Warning::Unauthenticated { .. }))));
    roundtrip(&mut p);
    assert_eq!(p.ops[0].calls_in(OpClass::Sign), 0);
    // Second session with the same factory: the retained secret is found on both sides.
    let mut q = pair(&proto);
    q.handshake();
    assert_eq!(q.established(0).unwrap().method, "sas + retained secret");
    assert_eq!(q.established(1).unwrap().method, "sas + retained secret");
    roundtrip(&mut q);
}

#[test]
fn key_modes_hash_and_none() {
    for (i, r) in [
        ("hash", "hash"),
        ("none", "none"),
        ("key", "hash"),
        ("none", "key"),
    ] {
        let o = Options::new().set("init_pubkey", i).set("resp_pubkey", r);
        let mut p = pair_with(&Esessions::sigma_r(), [o.clone(), o], 3);
        p.handshake();
        roundtrip(&mut p);
    }
}

#[test]
fn all_groups_and_ciphers_and_short_exponents() {
    for (modp, crypt, exp) in [
        ("1", "aes128-ctr", "full"),
        ("2,5", "aes192-ctr", "short"),
        ("15", "aes256-ctr", "short"),
    ] {
        let o = Options::new()
            .set("modp", modp)
            .set("crypt", crypt)
            .set("exponent", exp);
        let mut p = pair_with(&Esessions::sigma_r(), [o.clone(), o], 5);
        p.handshake();
        roundtrip(&mut p);
    }
}

#[test]
fn downgraded_form_is_detected() {
    // The attacker strips aes256-ctr from Alice's offer; Bob accepts aes128-ctr,
    // but Alice's MAC over her form_A no longer matches what Bob received.
    let o = Options::new().set("crypt", "aes256-ctr,aes128-ctr");
    let mut p = pair_with(&Esessions::sigma_r(), [o.clone(), o], 9);
    p.start();
    let (to, w1) = p.next().unwrap();
    let stripped = w1.replacen("<option><value>aes256-ctr</value></option>", "", 1);
    assert_ne!(stripped, w1);
    p.deliver(to, &stripped).unwrap();
    let (to, w2) = p.next().unwrap();
    assert!(w2.contains("aes128-ctr"));
    p.deliver(to, &w2).unwrap();
    let (to, w3) = p.next().unwrap();
    let err = p.deliver(to, &w3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DecryptFailed | Error::PeerMisbehaved(PeerMisbehaved::BadSignature)
        ),
        "Alice's proof fails over the downgraded form: {err:?}"
    );
    assert_eq!(p.s[1].state(), SessionState::Closed);
}

#[test]
fn commitment_mismatch() {
    let mut p = pair(&Esessions::sigma_r());
    p.start();
    let (to, w1) = p.next().unwrap();
    p.deliver(to, &w1).unwrap();
    let (to, w2) = p.next().unwrap();
    p.deliver(to, &w2).unwrap();
    let (to, w3) = p.next().unwrap();
    // Replace e in message 3 by another value: SHA256(e) no longer matches He.
    let el = stanza::parse(&w3).unwrap();
    let x = el
        .get_child("feature", "http://jabber.org/protocol/feature-neg")
        .unwrap()
        .get_child("x", "jabber:x:data")
        .unwrap();
    let e_b64 = x
        .children()
        .find(|f| f.attr("var") == Some("dhkeys"))
        .unwrap()
        .children()
        .next()
        .unwrap()
        .text();
    let bad = w3.replace(&e_b64, "Ag==");
    assert_eq!(
        p.deliver(to, &bad).unwrap_err(),
        Error::PeerMisbehaved(PeerMisbehaved::CommitmentMismatch)
    );
}

#[test]
fn e_or_d_out_of_range() {
    use base64::Engine;
    let g = e2elab_esessions::prim::Group::get(14).unwrap();
    let b64 = |v: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(v);
    let bad_values = [b64(vec![0]), b64(vec![1]), b64(g.p_minus_1.to_vec())];
    for bad in bad_values {
        // d in Bob's response (both variants).
        for proto in [Esessions::sigma_r(), Esessions::sigma_i()] {
            let mut p = pair(&proto);
            p.start();
            let (to, w1) = p.next().unwrap();
            p.deliver(to, &w1).unwrap();
            let (to, w2) = p.next().unwrap();
            let el = stanza::parse(&w2).unwrap();
            let x = el
                .get_child("feature", "http://jabber.org/protocol/feature-neg")
                .unwrap()
                .get_child("x", "jabber:x:data")
                .unwrap();
            let d = x
                .children()
                .find(|f| f.attr("var") == Some("dhkeys"))
                .unwrap()
                .children()
                .next()
                .unwrap()
                .text();
            let err = p.deliver(to, &w2.replace(&d, &bad)).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::PeerMisbehaved(PeerMisbehaved::IllegalParameter(_))
                ),
                "{err:?}"
            );
        }
        // e in Alice's SIGMA-I request.
        let mut p = pair(&Esessions::sigma_i());
        p.start();
        let (to, w1) = p.next().unwrap();
        let el = stanza::parse(&w1).unwrap();
        let x = el
            .get_child("feature", "http://jabber.org/protocol/feature-neg")
            .unwrap()
            .get_child("x", "jabber:x:data")
            .unwrap();
        let e = x
            .children()
            .find(|f| f.attr("var") == Some("dhkeys"))
            .unwrap()
            .children()
            .next()
            .unwrap()
            .text();
        let err = p.deliver(to, &w1.replace(&e, &bad)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PeerMisbehaved(PeerMisbehaved::IllegalParameter(_))
            ),
            "{err:?}"
        );
    }
}

#[test]
fn unknown_group_is_not_acceptable() {
    let mut p = pair(&Esessions::sigma_r());
    p.start();
    let (to, w1) = p.next().unwrap();
    let bad = w1.replace(
        "<option><value>14</value></option>",
        "<option><value>3</value></option>",
    );
    let err = p.deliver(to, &bad).unwrap_err();
    assert!(
        matches!(err, Error::PeerMisbehaved(PeerMisbehaved::IllegalParameter(ref f)) if f.contains("modp")),
        "{err:?}"
    );
    let (_, reply) = p.next().unwrap();
    assert!(
        reply.contains("not-acceptable") && reply.contains("var='modp'"),
        "{reply}"
    );
    assert_eq!(p.s[1].state(), SessionState::Idle);
}

#[test]
fn wrong_sas_is_visible_under_mitm_without_keys() {
    // Mallory runs one simplified session with Alice and one with Bob.
    let proto_alice_side = Esessions::simplified();
    let proto_bob_side = Esessions::simplified();
    let mut am = pair_with(&proto_alice_side, [Options::new(), Options::new()], 21);
    let mut mb = pair_with(&proto_bob_side, [Options::new(), Options::new()], 22);
    am.handshake();
    mb.handshake();
    assert_ne!(
        am.established(0).unwrap().sas,
        mb.established(1).unwrap().sas,
        "Alice and Bob see different SAS"
    );
}

#[test]
fn wrong_mac_replayed_reordered_truncated_c_terminate() {
    type Case = fn(&mut Pair, String, String) -> Result<(), Error>;
    let cases: [(&str, Case); 4] = [
        ("wrong mac", |p, w1, _| {
            let el = stanza::parse(&w1).unwrap();
            let mac = el
                .get_child("c", e2elab_esessions::channel::NS_C)
                .unwrap()
                .get_child("mac", e2elab_esessions::channel::NS_C)
                .unwrap()
                .text();
            let mut chars: Vec<char> = mac.chars().collect();
            chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
            p.deliver(1, &w1.replace(&mac, &chars.into_iter().collect::<String>()))
        }),
        ("replayed", |p, w1, _| {
            p.deliver(1, &w1).unwrap();
            p.deliver(1, &w1)
        }),
        ("reordered", |p, w1, w2| {
            let r = p.deliver(1, &w2);
            let _ = w1;
            r
        }),
        ("truncated", |p, w1, _| {
            let el = stanza::parse(&w1).unwrap();
            let data = el
                .get_child("c", e2elab_esessions::channel::NS_C)
                .unwrap()
                .get_child("data", e2elab_esessions::channel::NS_C)
                .unwrap()
                .text();
            p.deliver(1, &w1.replace(&data, &data[..data.len() / 2]))
        }),
    ];
    for (name, f) in cases {
        let mut p = pair(&Esessions::sigma_r());
        p.handshake();
        p.send(0, msg(0, "one")).unwrap();
        p.send(0, msg(0, "two")).unwrap();
        let (_, w1) = p.next().unwrap();
        let (_, w2) = p.next().unwrap();
        let before = p.delivered(1).len();
        let err = f(&mut p, w1, w2).unwrap_err();
        assert!(
            matches!(err, Error::DecryptFailed | Error::Decode(_)),
            "{name}: {err:?}"
        );
        assert_eq!(
            p.s[1].state(),
            SessionState::Closed,
            "{name}: the session terminates"
        );
        assert!(p.delivered(1).len() <= before + 1, "{name}");
        assert!(
            p.delivered(1)
                .iter()
                .all(|m| stanza::body(m).as_deref() == Some("one")),
            "{name}: nothing modified delivered"
        );
    }
}

#[test]
fn handshake_message_out_of_order() {
    let mut p = pair(&Esessions::sigma_r());
    p.start();
    let (_, w1) = p.next().unwrap();
    // Message 1 delivered to Alice (the initiator) is not something she expects.
    let err = p
        .deliver(
            0,
            &w1.replace("from='alice@example.org/lab'", "from='bob@example.net/lab'"),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PeerMisbehaved(PeerMisbehaved::UnexpectedMessage { .. })
        ),
        "{err:?}"
    );
    assert_eq!(p.s[0].state(), SessionState::Handshaking, "state unchanged");
    // An encrypted stanza before the handshake finished.
    let c = format!("<message xmlns='jabber:client' from='{B}'><c xmlns='{}'><data>AAAA</data><mac>AAAA</mac></c></message>", e2elab_esessions::channel::NS_C);
    assert!(p.deliver(0, &c).is_err());
    assert_eq!(p.s[0].state(), SessionState::Handshaking);
    // The genuine flow still completes.
    p.deliver(1, &w1).unwrap();
    p.pump();
    assert_eq!(p.s[0].state(), SessionState::Established);
}

#[test]
fn terminate_then_send() {
    let mut p = pair(&Esessions::sigma_r());
    p.handshake();
    let mut out = e2elab_core::Outbox::new();
    p.s[0].close(&mut p.env[0], &mut out).unwrap();
    let term = stanza::serialize(&out.poll_transmit().unwrap());
    assert!(term.contains("<c xmlns"), "termination is encrypted");
    assert!(p.send(0, msg(0, "after")).is_err());
    p.deliver(1, &term).unwrap();
    assert!(p.events[1].iter().any(|e| matches!(e, Event::PeerClosed)));
    assert_eq!(p.s[1].state(), SessionState::Closed);
    let (to, ack) = p.next().unwrap();
    assert_eq!(to, 0);
    p.deliver(0, &ack).unwrap();
    assert!(p.events[0].iter().any(|e| matches!(e, Event::PeerClosed)));
    assert!(p.send(1, msg(1, "after")).is_err());
}

#[test]
fn rekey_and_mac_key_publishing() {
    let o = Options::new().set("rekey_every", "3");
    let mut p = pair_with(&Esessions::sigma_r(), [o.clone(), Options::new()], 11);
    p.handshake();
    for n in 0..10 {
        for i in 0..2 {
            let m = msg(i, &format!("m{n}-{i}"));
            p.send(i, m.clone()).unwrap();
            p.pump();
            assert_eq!(p.delivered(1 - i).last(), Some(&m));
        }
    }
    assert!(
        p.log.iter().any(|(_, w)| w.contains("<key>")),
        "rekeys happened"
    );
    assert!(
        p.log.iter().any(|(_, w)| w.contains("<new>1</new>")),
        "acknowledged"
    );
    assert!(
        p.log.iter().any(|(_, w)| w.contains("<old>")),
        "old MAC keys published"
    );
    assert!(
        p.ops[0].calls_in(OpClass::Modexp) > 2,
        "a rekey costs its initiator modexps"
    );
}

#[test]
fn rekey_grace_period_on_the_virtual_clock() {
    let o = Options::new().set("rekey_every", "1");
    let mut p = pair_with(&Esessions::sigma_r(), [o, Options::new()], 12);
    p.handshake();
    p.send(0, msg(0, "with key")).unwrap();
    let (_, w) = p.next().unwrap();
    assert!(w.contains("<key>"));
    let t = p.s[0].poll_timeout().expect("old set kept");
    // Bob sends before seeing Alice's key: Alice still decrypts with the old set.
    p.send(1, msg(1, "old keys")).unwrap();
    let (_, wb) = p.next().unwrap();
    p.deliver(0, &wb).unwrap();
    assert_eq!(
        stanza::body(&p.delivered(0)[0]).as_deref(),
        Some("old keys")
    );
    p.env[0].set_now(t);
    let mut out = e2elab_core::Outbox::new();
    p.s[0].handle_timeout(&mut p.env[0], &mut out).unwrap();
    assert!(
        p.s[0].poll_timeout().is_none(),
        "old set destroyed after the grace period"
    );
}

#[test]
fn transcripts_are_reproducible_from_the_seed() {
    use std::sync::Arc;
    let proto = Esessions::simplified();
    let mut env = e2elab_core::Env::for_party(1, "x");
    let ids = [
        Arc::new(
            e2elab_core::Protocol::generate_identity(&proto, &mut env, "alice@example.org")
                .unwrap(),
        ),
        Arc::new(
            e2elab_core::Protocol::generate_identity(&proto, &mut env, "bob@example.net").unwrap(),
        ),
    ];
    let run = |seed| {
        let proto = Esessions::simplified();
        let mut p = pair_from(&proto, ids.clone(), [Options::new(), Options::new()], seed);
        p.handshake();
        p.send(0, msg(0, "x")).unwrap();
        p.pump();
        p.log.clone()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn ssh_reconstruction_three_messages_and_ops() {
    let mut p = pair(&Esessions::ssh());
    assert_eq!(p.handshake(), 3);
    let a = p.established(0).unwrap();
    assert!(
        a.fingerprint.unwrap().contains(':'),
        "MD5 colon fingerprint"
    );
    roundtrip(&mut p);
    for i in 0..2 {
        assert_eq!(classes(&p.ops[i]), (2, 1, 1), "party {i}");
    }
    // A flipped bit in a packet ends the session.
    p.send(0, msg(0, "x")).unwrap();
    let (_, w) = p.next().unwrap();
    let el = stanza::parse(&w).unwrap();
    let pk = el
        .get_child("packet", e2elab_esessions::ssh::NS_SSH)
        .unwrap()
        .text();
    let mut c: Vec<char> = pk.chars().collect();
    c[5] = if c[5] == 'A' { 'B' } else { 'A' };
    let err = p
        .deliver(1, &w.replace(&pk, &c.into_iter().collect::<String>()))
        .unwrap_err();
    assert_eq!(err, Error::DecryptFailed);
    assert_eq!(p.s[1].state(), SessionState::Closed);
}

#[test]
fn ssh_wrong_host_key_is_rejected() {
    let proto = Esessions::ssh();
    let mut env = e2elab_core::Env::for_party(1, "k");
    let mallory =
        e2elab_core::Protocol::generate_identity(&proto, &mut env, "bob@example.net").unwrap();
    let alice =
        e2elab_core::Protocol::generate_identity(&proto, &mut env, "alice@example.org").unwrap();
    let bob =
        e2elab_core::Protocol::generate_identity(&proto, &mut env, "bob@example.net").unwrap();
    use std::sync::Arc;
    // Alice has Bob's real key pinned; "Bob" answers with Mallory's key.
    let mut p = pair_from(
        &proto,
        [Arc::new(alice.clone()), Arc::new(mallory)],
        [Options::new(), Options::new()],
        4,
    );
    let mut alice_cfg = pair_from(
        &proto,
        [Arc::new(alice), Arc::new(bob)],
        [Options::new(), Options::new()],
        4,
    );
    std::mem::swap(&mut p.s[0], &mut alice_cfg.s[0]);
    p.start();
    let (to, w1) = p.next().unwrap();
    p.deliver(to, &w1).unwrap();
    let (to, w2) = p.next().unwrap();
    let err = p.deliver(to, &w2).unwrap_err();
    assert!(matches!(err, Error::Identity(_)), "{err:?}");
    assert_eq!(p.s[0].state(), SessionState::Closed);
}

#[test]
fn gajim_compat_runs_and_differs_from_the_spec_on_the_wire() {
    let o = Options::new().set("gajim-compat", "true");
    let mut p = pair_with(&Esessions::sigma_r(), [o.clone(), o], 13);
    assert_eq!(p.handshake(), 4);
    roundtrip(&mut p);
    let w1 = &p.log[0].1;
    assert!(w1.contains("var='logging'") && !w1.contains("var='otr'"));
    assert!(w1.contains("<value>15</value>"));
    let w2 = &p.log[1].1;
    assert!(w2.contains("type='text-single'"));
    // Options outside its scope are refused.
    let bad = Options::new()
        .set("gajim-compat", "true")
        .set("init_pubkey", "key");
    let mut env = e2elab_core::Env::for_party(1, "x");
    let proto = Esessions::sigma_r();
    let id = std::sync::Arc::new(
        e2elab_core::Protocol::generate_identity(&proto, &mut env, "a@b").unwrap(),
    );
    let r = e2elab_core::Protocol::new_session(
        &proto,
        &mut env,
        e2elab_core::SessionConfig {
            role: e2elab_core::Role::Initiator,
            local_jid: A.into(),
            peer_jid: B.into(),
            identity: id,
            peer_public: None,
            options: bad,
        },
    );
    assert!(r.is_err());
}

#[test]
fn sas28x5_digits() {
    use e2elab_esessions::sigma::sas28x5;
    let s = sas28x5(b"m", b"form", true).unwrap();
    assert_eq!(s.len(), 5);
    assert!(s
        .chars()
        .all(|c| "acdefghikmopqruvwxy123456789".contains(c)));
    assert_eq!(s, sas28x5(b"m", b"form", true).unwrap());
    assert_ne!(s, sas28x5(b"m2", b"form", true).unwrap());
}

#[test]
fn clear_element_added_beside_c_is_not_delivered() {
    for proto in [Esessions::sigma_r(), Esessions::ssh()] {
        let mut p = pair(&proto);
        p.handshake();
        p.send(0, msg(0, "genuine")).unwrap();
        let (to, w) = p.next().unwrap();
        let injected = w
            .replacen("<c xmlns", "<body>forged</body><c xmlns", 1)
            .replacen("<packet xmlns", "<body>forged</body><packet xmlns", 1);
        assert_ne!(injected, w);
        let err = p.deliver(to, &injected).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert!(p.delivered(1).is_empty());
        assert_eq!(
            p.s[1].state(),
            SessionState::Established,
            "rejected before any key was used"
        );
        p.deliver(to, &w).unwrap();
        assert_eq!(stanza::body(&p.delivered(1)[0]).as_deref(), Some("genuine"));
    }
}
