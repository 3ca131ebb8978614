//! Session-level tests: every DECISION and the named bad inputs.

use super::*;
use e2elab_core::ops::{Lib, Op};
use e2elab_core::{stanza, Element, Error, Event, Options, Outbox, PeerMisbehaved, Protocol};
use e2elab_core::{Role, SessionConfig};
use std::sync::{Arc, OnceLock};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

fn ids() -> &'static [Arc<Identity>; 2] {
    static I: OnceLock<[Arc<Identity>; 2]> = OnceLock::new();
    I.get_or_init(|| {
        let mut env = Env::for_party(9, "ids");
        [ALICE, BOB].map(|j| Arc::new(Omemo::new().generate_identity(&mut env, j).unwrap()))
    })
}

fn full(j: &str) -> String {
    format!("{j}/lab")
}

fn config(me: usize, local: &str, peer_public: PublicIdentity, options: Options) -> SessionConfig {
    let jids = [ALICE, BOB];
    SessionConfig {
        role: if me == 0 {
            Role::Initiator
        } else {
            Role::Responder
        },
        local_jid: e2elab_core::Jid::new(&full(local)).unwrap(),
        peer_jid: e2elab_core::Jid::new(&full(jids[1 - me])).unwrap(),
        identity: ids()[me].clone(),
        peer_public: Some(peer_public),
        options,
    }
}

fn session_with(me: usize, seed: u64, options: Options) -> (Box<dyn Session>, Env) {
    session_on(&Omemo::new(), me, seed, options)
}

/// A session of `client` (one device: its memory is shared).
fn session_on(client: &Omemo, me: usize, seed: u64, options: Options) -> (Box<dyn Session>, Env) {
    let mut env = Env::for_party(seed, if me == 0 { "a" } else { "b" });
    let cfg = config(me, [ALICE, BOB][me], ids()[1 - me].public.clone(), options);
    (client.new_session(&mut env, cfg).unwrap(), env)
}

fn pair() -> [(Box<dyn Session>, Env); 2] {
    [
        session_with(0, 1, Options::new()),
        session_with(1, 2, Options::new()),
    ]
}

fn msg(from: usize, id: &str, body: &str) -> Element {
    let j = [ALICE, BOB];
    stanza::chat_message(&full(j[from]), &full(j[1 - from]), id, body).unwrap()
}

/// Send `app` from `s`; the wire stanzas, reparsed.
fn send(s: &mut (Box<dyn Session>, Env), app: Element) -> Vec<Element> {
    let mut out = Outbox::new();
    s.0.send(&mut s.1, app, &mut out).unwrap();
    drain(&mut out).0
}

fn drain(out: &mut Outbox) -> (Vec<Element>, Vec<Element>) {
    let mut wire = Vec::new();
    while let Some(w) = out.poll_transmit() {
        wire.push(stanza::parse(&stanza::serialize(&w)).unwrap());
    }
    let mut delivered = Vec::new();
    while let Some(e) = out.poll_event() {
        if let Event::Delivered { stanza, .. } = e {
            delivered.push(stanza);
        }
    }
    (wire, delivered)
}

/// Feed `w` to `s`: (replies on the wire, delivered stanzas).
fn recv(s: &mut (Box<dyn Session>, Env), w: &Element) -> Result<(Vec<Element>, Vec<Element>)> {
    let mut out = Outbox::new();
    s.0.handle_inbound(&mut s.1, w.clone(), &mut out)?;
    Ok(drain(&mut out))
}

fn key_el(w: &Element) -> &Element {
    w.get_child("encrypted", NS_OMEMO)
        .unwrap()
        .get_child("header", NS_OMEMO)
        .unwrap()
        .get_child("keys", NS_OMEMO)
        .unwrap()
        .get_child("key", NS_OMEMO)
        .unwrap()
}

fn body(d: &Element) -> String {
    stanza::body(d).unwrap()
}

#[test]
fn messages_flow_both_ways_and_only_the_content_is_delivered() {
    let [mut a, mut b] = pair();
    for i in 0..3 {
        let w = send(&mut a, msg(0, &format!("a{i}"), &format!("hello {i}")));
        assert_eq!(w.len(), 1);
        let (_, d) = recv(&mut b, &w[0]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(body(&d[0]), format!("hello {i}"));
        // Clear on the wire: nothing of the body.
        assert!(!stanza::serialize(&w[0]).contains("hello"));
    }
    for i in 0..3 {
        let w = send(&mut b, msg(1, &format!("b{i}"), &format!("reply {i}")));
        let (_, d) = recv(&mut a, &w[0]).unwrap();
        assert_eq!(body(&d[0]), format!("reply {i}"));
    }
}

#[test]
fn decision_key_exchange_counts_three_agreements() {
    let [mut a, mut b] = pair();
    let (w, log) = e2elab_core::ops::recorded(|| send(&mut a, msg(0, "1", "x")));
    let dh = Op::X25519Dh {
        lib: Lib::RustCrypto,
    };
    let kg = Op::X25519Keygen {
        lib: Lib::RustCrypto,
    };
    assert_eq!(log.get(&dh).calls, 3);
    assert_eq!(log.get(&kg).calls, 2);
    // Two bundle signatures checked on OpenSSL at session creation, not here.
    assert_eq!(log.get(&Op::Ed25519Verify).calls, 0);
    let (r, log) = e2elab_core::ops::recorded(|| recv(&mut b, &w[0]).unwrap());
    // Three to build the session, one key pair and one agreement for the
    // empty message that answers it (the ratchet's first step).
    assert_eq!(log.get(&dh).calls, 4);
    assert_eq!(log.get(&kg).calls, 1);
    assert_eq!(r.0.len(), 1);
    // Alice receiving the answer: a new ratchet key, one agreement.
    let (_, log) = e2elab_core::ops::recorded(|| recv(&mut a, &r.0[0]).unwrap());
    assert_eq!(log.get(&dh).calls, 1);
    assert_eq!(log.get(&kg).calls, 0);
}

#[test]
fn decision_bundle_signatures_are_checked() {
    let good = Bundle::from_bytes(&ids()[1].public.data).unwrap();
    good.verify().unwrap();
    for tamper in 0..3 {
        let mut b = good.clone();
        match tamper {
            0 => b.spk[0] ^= 1,
            1 => b.cik[5] ^= 1,
            _ => b.spks[63] ^= 1,
        }
        let mut public = ids()[1].public.clone();
        public.data = b.to_item_bytes().unwrap();
        let mut env = Env::for_party(1, "a");
        let r = Omemo::new().new_session(&mut env, config(0, ALICE, public, Options::new()));
        assert!(
            matches!(r, Err(Error::PeerMisbehaved(PeerMisbehaved::BadSignature))),
            "tamper {tamper}: {:?}",
            r.err()
        );
    }
    assert_eq!(
        good.fingerprint(),
        ids()[1].public.fingerprint.clone().unwrap()
    );
}

#[test]
fn decision_spk_used_only_without_prekeys() {
    // Identities of this test's own (the republished-bundle store is
    // process-wide, and other tests use up the shared identities' prekeys).
    let mut env = Env::for_party(31, "spk-ids");
    let alice = Arc::new(Omemo::new().generate_identity(&mut env, ALICE).unwrap());
    let bob = Arc::new(Omemo::new().generate_identity(&mut env, BOB).unwrap());
    let bundle = Bundle::from_bytes(&bob.public.data).unwrap();
    assert_eq!(bundle.prekeys.len(), PREKEYS);
    let otk_of = |w: &Element| -> [u8; 32] {
        let bytes = e2elab_core::b64::decode(key_el(w).text().as_bytes()).unwrap();
        match vodozemac::olm::OlmMessage::from_parts(0, &bytes).unwrap() {
            vodozemac::olm::OlmMessage::PreKey(p) => p.one_time_key().to_bytes(),
            vodozemac::olm::OlmMessage::Normal(_) => panic!("not a key exchange"),
        }
    };
    let make = |me: usize, bob_public: PublicIdentity, seed: u64| {
        let mut cfg = config(me, [ALICE, BOB][me], bob_public, Options::new());
        cfg.identity = [&alice, &bob][me].clone();
        if me == 1 {
            cfg.peer_public = Some(alice.public.clone());
        }
        let mut env = Env::for_party(seed, "spk");
        (Omemo::new().new_session(&mut env, cfg).unwrap(), env)
    };
    let mut a = make(0, bob.public.clone(), 1);
    let w = send(&mut a, msg(0, "1", "x"));
    let used = otk_of(&w[0]);
    assert!(bundle.prekeys.iter().any(|(_, k)| *k == used));
    assert_ne!(used, bundle.spk);
    let mut b = make(1, bob.public.clone(), 2);
    recv(&mut b, &w[0]).unwrap();
    // The next initiator takes another prekey: the used one left the
    // republished bundle.
    let mut a2 = make(0, bob.public.clone(), 1);
    let w2 = send(&mut a2, msg(0, "2", "y"));
    assert_ne!(otk_of(&w2[0]), used);
    // The same bundle without prekeys: the signed prekey (still valid: the
    // signatures do not cover the prekeys), which Bob's account accepts.
    let mut bare = bundle.clone();
    bare.prekeys.clear();
    let mut public = bob.public.clone();
    public.data = bare.to_item_bytes().unwrap();
    let mut a3 = make(0, public, 3);
    let w3 = send(&mut a3, msg(0, "3", "via spk"));
    assert_eq!(otk_of(&w3[0]), bundle.spk);
    let mut b3 = make(1, bob.public.clone(), 4);
    let (_, d) = recv(&mut b3, &w3[0]).unwrap();
    assert_eq!(body(&d[0]), "via spk");
}

#[test]
fn decision_key_element_is_an_olm_message() {
    let [mut a, mut b] = pair();
    let w1 = send(&mut a, msg(0, "1", "x"));
    let k = key_el(&w1[0]);
    assert_eq!(k.attr("kex"), Some("true"));
    let bytes = e2elab_core::b64::decode(k.text().as_bytes()).unwrap();
    assert!(matches!(
        vodozemac::olm::OlmMessage::from_parts(0, &bytes).unwrap(),
        vodozemac::olm::OlmMessage::PreKey(_)
    ));
    // Before anything came back Alice keeps sending key exchanges (Olm).
    let w2 = send(&mut a, msg(0, "2", "y"));
    assert_eq!(key_el(&w2[0]).attr("kex"), Some("true"));
    let (reply, _) = recv(&mut b, &w1[0]).unwrap();
    recv(&mut b, &w2[0]).unwrap();
    recv(&mut a, &reply[0]).unwrap();
    let w3 = send(&mut a, msg(0, "3", "z"));
    let k3 = key_el(&w3[0]);
    assert_eq!(k3.attr("kex"), None);
    let bytes = e2elab_core::b64::decode(k3.text().as_bytes()).unwrap();
    // Olm v1: an 8-byte MAC after the ratchet message carrying 48 bytes.
    assert!(matches!(
        vodozemac::olm::OlmMessage::from_parts(1, &bytes).unwrap(),
        vodozemac::olm::OlmMessage::Normal(_)
    ));
    assert_eq!(body(&recv(&mut b, &w3[0]).unwrap().1[0]), "z");
}

#[test]
fn decision_device_memory_refuses_replayed_key_exchanges() {
    let bob_device = Omemo::new();
    let mut a = session_with(0, 1, Options::new());
    let mut b = session_on(&bob_device, 1, 2, Options::new());
    let w = send(&mut a, msg(0, "1", "x"));
    recv(&mut b, &w[0]).unwrap();
    // The same key exchange again, same session: the message key is spent.
    assert!(recv(&mut b, &w[0]).is_err());
    // A new session of the same device: the base key is remembered.
    let mut b2 = session_on(&bob_device, 1, 3, Options::new());
    assert!(matches!(
        recv(&mut b2, &w[0]),
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay))
    ));
    // A new device from the same identity (a restored backup) accepts it.
    let mut b3 = session_with(1, 7, Options::new());
    assert_eq!(body(&recv(&mut b3, &w[0]).unwrap().1[0]), "x");
}

#[test]
fn decision_kex_is_answered_by_an_empty_message() {
    let [mut a, mut b] = pair();
    let w = send(&mut a, msg(0, "1", "x"));
    let (reply, d) = recv(&mut b, &w[0]).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(reply.len(), 1);
    let enc = reply[0].get_child("encrypted", NS_OMEMO).unwrap();
    assert!(enc.get_child("payload", NS_OMEMO).is_none());
    let (again, d) = recv(&mut a, &reply[0]).unwrap();
    assert!(
        again.is_empty() && d.is_empty(),
        "nothing delivered or sent"
    );
    // Off: no answer.
    let mut a = session_with(0, 11, Options::new());
    let mut b = session_with(1, 12, Options::new().set("complete_kex", "false"));
    let w = send(&mut a, msg(0, "1", "x"));
    assert!(recv(&mut b, &w[0]).unwrap().0.is_empty());
}

#[test]
fn decision_envelope_affixes() {
    let env = e2elab_core::sce::envelope(
        vec![stanza::text_element("body", stanza::NS_CLIENT, "hi")],
        Some("pad"),
        ALICE,
    )
    .unwrap();
    let xml = stanza::serialize(&env);
    assert!(xml.contains("<rpad>pad</rpad>") && xml.contains("<from jid='alice@example.org'/>"));
    assert!(!xml.contains("<time") && !xml.contains("<to "));
    let o = e2elab_core::sce::parse_envelope(&xml).unwrap();
    assert_eq!(o.from.as_deref(), Some(ALICE));
    // A sender whose envelope names someone else (Alice's session claims to
    // be Mallory; the stanza has no 'from' to check): refused.
    let mut env_a = Env::for_party(1, "a");
    let cfg = config(
        0,
        "mallory@evil.example",
        ids()[1].public.clone(),
        Options::new(),
    );
    let mut a = (Omemo::new().new_session(&mut env_a, cfg).unwrap(), env_a);
    let mut b = session_with(1, 2, Options::new());
    let mut m = msg(0, "1", "x");
    stanza::remove_attr(&mut m, "from");
    let w = send(&mut a, m);
    assert!(matches!(
        recv(&mut b, &w[0]),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
}

/// `w` with one character of its `<payload>` changed.
fn forge_payload(w: &Element) -> Element {
    let text = stanza::serialize(w);
    let p0 = text.find("<payload>").unwrap() + "<payload>".len();
    let mut bytes = text.into_bytes();
    bytes[p0 + 4] = if bytes[p0 + 4] == b'A' { b'B' } else { b'A' };
    stanza::parse(std::str::from_utf8(&bytes).unwrap()).unwrap()
}

#[test]
fn decision_bad_payload_leaves_the_ratchet_unchanged() {
    let [mut a, mut b] = pair();
    let w1 = send(&mut a, msg(0, "1", "x"));
    // A key exchange whose payload was changed: the Olm message decrypts,
    // the payload does not; the one-time prekey is not spent.
    assert!(matches!(
        recv(&mut b, &forge_payload(&w1[0])),
        Err(Error::DecryptFailed)
    ));
    let (r, d) = recv(&mut b, &w1[0]).unwrap();
    assert_eq!(body(&d[0]), "x");
    recv(&mut a, &r[0]).unwrap();
    let w2 = send(&mut a, msg(0, "2", "the real one"));
    assert!(matches!(
        recv(&mut b, &forge_payload(&w2[0])),
        Err(Error::DecryptFailed)
    ));
    assert_eq!(body(&recv(&mut b, &w2[0]).unwrap().1[0]), "the real one");
}

#[test]
fn bad_inputs_are_typed_errors_and_change_nothing() {
    let [mut a, mut b] = pair();
    let w1 = send(&mut a, msg(0, "1", "x"));
    let (r, _) = recv(&mut b, &w1[0]).unwrap();
    recv(&mut a, &r[0]).unwrap();
    let w2 = send(&mut a, msg(0, "2", "still fine"));
    let xml = stanza::serialize(&w2[0]);
    let key_text = key_el(&w2[0]).text();
    let bad = [
        xml.replace(&key_text, &key_text[..key_text.len() / 2]),
        xml.replace(&key_text, "!!!"),
        xml.replace("rid='", "rid='9"),
        xml.replace("sid='", "sid='9"),
        xml.replace("<header", "<headr")
            .replace("</header>", "</headr>"),
        xml.replace(
            "</encrypted>",
            "</encrypted><encrypted xmlns='urn:xmpp:omemo:2'/>",
        ),
        xml.replace("<payload>", "<payload>AAAA"),
        xml.replace(&format!("jid='{BOB}'"), "jid='carol@example.com'"),
        xml.replace(
            "from='alice@example.org/lab'",
            "from='mallory@evil.example/x'",
        ),
    ];
    for (i, x) in bad.iter().enumerate() {
        assert_ne!(*x, xml, "bad input {i} changed nothing");
        let el = stanza::parse(x).unwrap();
        let r = recv(&mut b, &el);
        assert!(r.is_err(), "bad input {i} was accepted: {x}");
    }
    assert_eq!(body(&recv(&mut b, &w2[0]).unwrap().1[0]), "still fine");
    // Presence and iq: refused on send, delivered unprotected on receipt.
    let mut out = Outbox::new();
    let p = stanza::parse("<presence xmlns='jabber:client'/>").unwrap();
    assert!(b.0.send(&mut b.1, p.clone(), &mut out).is_err());
    b.0.handle_inbound(&mut b.1, p, &mut out).unwrap();
    assert!(std::iter::from_fn(|| out.poll_event())
        .any(|e| matches!(e, Event::DeliveredUnprotected(_))));
}

#[test]
fn state_export_restores_a_reader_of_the_current_chain() {
    let [mut a, mut b] = pair();
    let w1 = send(&mut a, msg(0, "1", "x"));
    recv(&mut b, &w1[0]).unwrap();
    let state = b.0.dangerous_export_state().unwrap();
    assert!(!format!("{state:?}").contains("root_key"));
    let w2 = send(&mut a, msg(0, "2", "read by the thief"));
    let cfg = config(1, BOB, ids()[0].public.clone(), Options::new());
    let mut thief = (
        Box::new(restore(&state, cfg).unwrap()) as Box<dyn Session>,
        Env::for_party(99, "thief"),
    );
    assert_eq!(
        body(&recv(&mut thief, &w2[0]).unwrap().1[0]),
        "read by the thief"
    );
    assert_eq!(
        body(&recv(&mut b, &w2[0]).unwrap().1[0]),
        "read by the thief"
    );
}

#[test]
fn debug_prints_no_key_material() {
    let [a, _] = pair();
    let d = format!("{:?} {:?}", a.0.info().id, ids()[0]);
    let secret = String::from_utf8_lossy(ids()[0].secret().expose()).to_string();
    assert!(!d.contains(&secret[..40]));
    assert!(!format!("{:?}", Bundle::from_bytes(&ids()[0].public.data).unwrap()).contains("ik:"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any byte edit of a protected stanza: an error or the genuine
        /// content, never a panic, never modified content.
        #[test]
        fn edited_stanzas_never_deliver_modified_content(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        ) {
            let [mut a, mut b] = pair();
            let w = send(&mut a, msg(0, "1", "genuine"));
            let mut bytes = stanza::serialize(&w[0]).into_bytes();
            for (i, v) in &edits {
                let k = i.index(bytes.len());
                bytes[k] = *v;
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                if let Ok(el) = stanza::parse(text) {
                    if let Ok((_, d)) = recv(&mut b, &el) {
                        for x in d {
                            prop_assert_eq!(body(&x), "genuine");
                        }
                    }
                }
            }
            // The session still works.
            let w2 = send(&mut a, msg(0, "2", "next"));
            let (_, d) = recv(&mut b, &w2[0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(body(&d[0]), "next");
        }

        /// The bundle parser on arbitrary edits: an error or a bundle, no panic.
        #[test]
        fn bundle_parser_survives_edits(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let mut bytes = ids()[1].public.data.clone();
            for (i, v) in &edits {
                let k = i.index(bytes.len());
                bytes[k] = *v;
            }
            if let Ok(b) = Bundle::from_bytes(&bytes) {
                let _ = b.verify();
            }
        }
    }
}

/// Olm's deniability (module `simulate`): with only his own account and
/// Alice's public bundle, Bob writes a key exchange "from Alice" that a
/// device holding Bob's keys accepts as hers, exactly as it accepts her
/// genuine one; a changed copy of either is refused.
#[test]
fn bob_writes_what_his_device_accepts_as_alices() {
    let [mut a, _] = pair();
    let genuine = send(&mut a, msg(0, "g", "Alice wrote this"));
    let mut env = Env::for_party(77, "bob-simulating");
    let bob_cfg = config(1, BOB, ids()[0].public.clone(), Options::new());
    let sim = simulate::simulate_from_peer(
        bob_cfg,
        &mut env,
        msg(0, "s", "Bob wrote this in Alice's name"),
    )
    .unwrap();
    let sim = stanza::parse(&stanza::serialize(&sim)).unwrap();
    assert_eq!(sim.attr("from"), Some(full(ALICE).as_str()));
    assert_eq!(key_el(&sim).attr("kex"), Some("true"));
    assert!(!stanza::serialize(&sim).contains("Bob wrote"));
    for (w, text) in [
        (&genuine[0], "Alice wrote this"),
        (&sim, "Bob wrote this in Alice's name"),
    ] {
        // A judge: a fresh device holding Bob's keys.
        let mut judge = session_with(1, 5, Options::new());
        assert!(recv(&mut judge, &forge_payload(w)).is_err());
        let (_, d) = recv(&mut judge, w).unwrap();
        assert_eq!(body(&d[0]), text);
    }
    // A config with a stranger's identity cannot simulate: no account
    // holds Bob's one-time prekeys.
    let stranger = Arc::new(
        Omemo::new()
            .generate_identity(&mut Env::for_party(3, "s"), BOB)
            .unwrap(),
    );
    let mut cfg = config(1, BOB, ids()[0].public.clone(), Options::new());
    cfg.identity = stranger;
    let mut judge = session_with(1, 6, Options::new());
    match simulate::simulate_from_peer(cfg, &mut env, msg(0, "t", "x")) {
        Err(_) => {}
        Ok(w) => {
            let w = stanza::parse(&stanza::serialize(&w)).unwrap();
            assert!(recv(&mut judge, &w).is_err());
        }
    }
}
