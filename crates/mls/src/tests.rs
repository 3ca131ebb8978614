//! Session-level tests: every DECISION and the named bad inputs.

use super::*;
use e2elab_core::ops::{Lib, Op};
use e2elab_core::{
    stanza, Element, Event, IdentityError, Options, Outbox, PeerMisbehaved, Protocol, Role,
};
use openmls::prelude::tls_codec::Deserialize as _;
use std::sync::OnceLock;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

fn ids() -> &'static [Arc<Identity>; 2] {
    static I: OnceLock<[Arc<Identity>; 2]> = OnceLock::new();
    I.get_or_init(|| {
        let mut env = Env::for_party(9, "ids");
        [ALICE, BOB].map(|j| Arc::new(Mls::new().generate_identity(&mut env, j).unwrap()))
    })
}

fn full(j: &str) -> String {
    format!("{j}/lab")
}

fn config(me: usize, peer_public: PublicIdentity, options: Options) -> SessionConfig {
    let jids = [ALICE, BOB];
    SessionConfig {
        role: if me == 0 {
            Role::Initiator
        } else {
            Role::Responder
        },
        local_jid: e2elab_core::Jid::new(&full(jids[me])).unwrap(),
        peer_jid: e2elab_core::Jid::new(&full(jids[1 - me])).unwrap(),
        identity: ids()[me].clone(),
        peer_public: Some(peer_public),
        options,
    }
}

type S = (Box<dyn Session>, Env);

fn session_on(client: &Mls, me: usize, seed: u64, options: Options) -> S {
    let mut env = Env::for_party(seed, if me == 0 { "a" } else { "b" });
    let cfg = config(me, ids()[1 - me].public.clone(), options);
    (client.new_session(&mut env, cfg).unwrap(), env)
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

fn start(s: &mut S) -> Vec<Element> {
    let mut out = Outbox::new();
    s.0.start(&mut s.1, &mut out).unwrap();
    drain(&mut out).0
}

fn send(s: &mut S, app: Element) -> Vec<Element> {
    let mut out = Outbox::new();
    s.0.send(&mut s.1, app, &mut out).unwrap();
    drain(&mut out).0
}

fn recv(s: &mut S, w: &Element) -> Result<(Vec<Element>, Vec<Element>)> {
    let mut out = Outbox::new();
    s.0.handle_inbound(&mut s.1, w.clone(), &mut out)?;
    Ok(drain(&mut out))
}

fn msg(from: usize, id: &str, body: &str) -> Element {
    let j = [ALICE, BOB];
    stanza::chat_message(&full(j[from]), &full(j[1 - from]), id, body).unwrap()
}

fn body(d: &Element) -> String {
    stanza::body(d).unwrap()
}

/// Alice and Bob, Bob joined from Alice's Welcome.
fn pair_with(options: Options) -> (S, S) {
    let mut a = session_on(&Mls::new(), 0, 1, options.clone());
    let mut b = session_on(&Mls::new(), 1, 2, options);
    let w = start(&mut a);
    assert_eq!(w.len(), 1);
    recv(&mut b, &w[0]).unwrap();
    assert_eq!(b.0.state(), SessionState::Established);
    (a, b)
}

fn kinds(w: &Element) -> Vec<String> {
    w.children()
        .filter(|c| c.is("mls", NS_MLS))
        .map(|c| c.attr("kind").unwrap_or("").to_string())
        .collect()
}

use e2elab_core::SessionState;

#[test]
fn messages_flow_both_ways() {
    let (mut a, mut b) = pair_with(Options::new());
    for i in 0..3 {
        let w = send(&mut a, msg(0, &format!("a{i}"), &format!("hello {i}")));
        let (_, d) = recv(&mut b, &w[0]).unwrap();
        assert_eq!(body(&d[0]), format!("hello {i}"));
        assert!(!stanza::serialize(&w[0]).contains("hello"));
        let w = send(&mut b, msg(1, &format!("b{i}"), &format!("reply {i}")));
        let (_, d) = recv(&mut a, &w[0]).unwrap();
        assert_eq!(body(&d[0]), format!("reply {i}"));
    }
}

#[test]
fn decision_carriage() {
    let mut a = session_on(&Mls::new(), 0, 1, Options::new());
    let w = start(&mut a);
    assert_eq!(kinds(&w[0]), ["welcome"]);
    let text = w[0].get_child("mls", NS_MLS).unwrap().text();
    let bytes = e2elab_core::b64::decode(text.as_bytes()).unwrap();
    assert!(matches!(
        MlsMessageIn::tls_deserialize_exact(&bytes)
            .unwrap()
            .extract(),
        MlsMessageBodyIn::Welcome(_)
    ));
    let app = send(&mut a, msg(0, "1", "x"));
    assert_eq!(kinds(&app[0]), ["application"]);
}

#[test]
fn decision_peer_keys_are_checked() {
    // Bob's KeyPackage labelled as someone else's JID.
    let mut public = ids()[1].public.clone();
    public.jid = "carol@example.com".into();
    let mut env = Env::for_party(1, "a");
    let mut cfg = config(0, public, Options::new());
    cfg.peer_jid = e2elab_core::Jid::new("carol@example.com/lab").unwrap();
    assert!(matches!(
        Mls::new().new_session(&mut env, cfg),
        Err(Error::Identity(IdentityError::JidMismatch(_)))
    ));
    // A changed byte in the KeyPackage: its signature fails.
    let mut public = ids()[1].public.clone();
    let n = public.data.len();
    public.data[n - 10] ^= 1;
    let r = Mls::new().new_session(&mut env, config(0, public, Options::new()));
    assert!(r.is_err());
    // A Welcome from someone whose key is not the one Bob holds: Bob holds
    // Bob's own KeyPackage as "Alice's".
    let mut a = session_on(&Mls::new(), 0, 1, Options::new());
    let w = start(&mut a);
    let mut env = Env::for_party(2, "b");
    let mut cfg = config(1, ids()[1].public.clone(), Options::new());
    cfg.peer_jid = e2elab_core::Jid::new(&full(BOB)).unwrap();
    let mut b = (Mls::new().new_session(&mut env, cfg).unwrap(), env);
    assert!(recv(&mut b, &w[0]).is_err());
    assert_eq!(b.0.state(), SessionState::Idle);
}

#[test]
fn decision_welcome_replay_refused() {
    let bob = Mls::new();
    let mut a = session_on(&Mls::new(), 0, 1, Options::new());
    let w = start(&mut a);
    let mut b = session_on(&bob, 1, 2, Options::new());
    recv(&mut b, &w[0]).unwrap();
    let mut b2 = session_on(&bob, 1, 3, Options::new());
    assert!(matches!(
        recv(&mut b2, &w[0]),
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay))
    ));
    // The last-resort KeyPackage serves a second group too.
    let mut a2 = session_on(&Mls::new(), 0, 4, Options::new());
    let w2 = start(&mut a2);
    recv(&mut b2, &w2[0]).unwrap();
    // A new Welcome for a group id seen before (the same seed): not a replay.
    let mut a3 = session_on(&Mls::new(), 0, 1, Options::new());
    let w3 = start(&mut a3);
    let mut b3 = session_on(&bob, 1, 5, Options::new());
    recv(&mut b3, &w3[0]).unwrap();
}

#[test]
fn decision_update_per_turn() {
    let (mut a, mut b) = pair_with(Options::new());
    // Alice's first message: she made the group, owes nothing.
    let w = send(&mut a, msg(0, "1", "x"));
    assert_eq!(kinds(&w[0]), ["application"]);
    recv(&mut b, &w[0]).unwrap();
    // Bob's first after receiving: a Commit first; his second: none.
    let (w, log) = e2elab_core::ops::recorded(|| send(&mut b, msg(1, "2", "y")));
    assert_eq!(kinds(&w[0]), ["commit", "application"]);
    assert!(
        log.get(&Op::X25519Keygen {
            lib: Lib::RustCrypto
        })
        .calls
            >= 1
    );
    let w2 = send(&mut b, msg(1, "3", "z"));
    assert_eq!(kinds(&w2[0]), ["application"]);
    let (_, d) = recv(&mut a, &w[0]).unwrap();
    assert_eq!(body(&d[0]), "y");
    assert_eq!(body(&recv(&mut a, &w2[0]).unwrap().1[0]), "z");
    // Never: no Commit.
    let (mut a, mut b) = pair_with(Options::new().set("update", "never"));
    let w = send(&mut a, msg(0, "1", "x"));
    recv(&mut b, &w[0]).unwrap();
    assert_eq!(kinds(&send(&mut b, msg(1, "2", "y"))[0]), ["application"]);
}

#[test]
fn decision_bad_input_leaves_the_group_unchanged() {
    let (mut a, mut b) = pair_with(Options::new());
    let w = send(&mut a, msg(0, "1", "genuine"));
    let xml = stanza::serialize(&w[0]);
    let i = xml.find("kind='application'>").unwrap() + "kind='application'>".len() + 40;
    let mut bytes = xml.clone().into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let forged = stanza::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert!(recv(&mut b, &forged).is_err());
    assert_eq!(body(&recv(&mut b, &w[0]).unwrap().1[0]), "genuine");
    // Replayed: refused.
    assert!(recv(&mut b, &w[0]).is_err());
    // Garbage in every way: errors, and the group goes on.
    for bad in [
        xml.replace("kind='application'", "kind='other'"),
        xml.replace("kind='application'>", "kind='application'>!!"),
        xml.replace(
            "from='alice@example.org/lab'",
            "from='mallory@evil.example/x'",
        ),
    ] {
        let el = stanza::parse(&bad).unwrap();
        assert!(recv(&mut b, &el).is_err(), "{bad}");
    }
    let w = send(&mut a, msg(0, "2", "still fine"));
    assert_eq!(body(&recv(&mut b, &w[0]).unwrap().1[0]), "still fine");
}

#[test]
fn state_export_restores_a_reader() {
    let (mut a, mut b) = pair_with(Options::new().set("update", "never"));
    let state = b.0.dangerous_export_state().unwrap();
    assert!(!format!("{state:?}").contains("secret\""));
    let w = send(&mut a, msg(0, "1", "read by the thief"));
    let cfg = config(1, ids()[0].public.clone(), Options::new());
    let mut thief: S = (
        Box::new(restore(&state, cfg).unwrap()),
        Env::for_party(99, "thief"),
    );
    assert_eq!(
        body(&recv(&mut thief, &w[0]).unwrap().1[0]),
        "read by the thief"
    );
    assert_eq!(
        body(&recv(&mut b, &w[0]).unwrap().1[0]),
        "read by the thief"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn edited_stanzas_never_deliver_modified_content(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        ) {
            let (mut a, mut b) = pair_with(Options::new());
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
            let w2 = send(&mut a, msg(0, "2", "next"));
            let (_, d) = recv(&mut b, &w2[0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(d.len(), 1);
        }
    }
}
