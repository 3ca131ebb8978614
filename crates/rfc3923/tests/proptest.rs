//! Property tests: CPIM and PIDF build/parse round trips, parsers never
//! panic, and arbitrary mutations of the `<e2e/>` content never panic and
//! never deliver anything but the original.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use e2elab_core::stanza::{self, NS_CLIENT};
use e2elab_core::{
    Element, Env, Event, Identity, Options, Outbox, Protocol, Role, Session, SessionConfig,
    StanzaKind, Timestamp,
};
use e2elab_rfc3923::mime::{self, Cpim, CpimHeader, Entity};
use e2elab_rfc3923::{cms, payload, Rfc3923, NS_E2E};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

fn header_value() -> impl Strategy<Value = String> {
    // Any characters, control characters and backslashes included.
    "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{1,40}".prop_filter("writable", |v| {
        mime::header_value_writable(&mime::escape(v))
    })
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("From".to_string()),
        Just("To".to_string()),
        Just("DateTime".to_string()),
        Just("Subject".to_string()),
        Just("cc".to_string()),
        "[A-Za-z0-9!#$%&'*+^_`|~-]{1,12}",
        "[A-Za-z0-9-]{1,8}\\.[A-Za-z0-9-]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cpim_build_parse_round_trip(
        headers in proptest::collection::vec((header_name(), proptest::option::of("[a-z]{2}(-[A-Z]{2})?"), header_value()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        ctype in prop_oneof![Just("text/plain; charset=utf-8"), Just("application/xmpp+xml; charset=utf-8")],
    ) {
        let c = Cpim {
            headers: headers
                .iter()
                .map(|(n, lang, v)| CpimHeader {
                    name: n.clone(),
                    params: lang.iter().map(|l| format!("lang={l}")).collect(),
                    value: v.clone(),
                })
                .collect(),
            content: Entity { headers: vec![("Content-type".into(), ctype.to_string())], body },
        };
        let bytes = c.to_bytes().unwrap();
        // Exact syntax: every header line ends in CRLF and has no control character.
        let text = String::from_utf8_lossy(&bytes);
        let head = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        for line in head.split("\r\n") {
            prop_assert!(!line.chars().any(|ch| (ch as u32) < 0x20 || ch as u32 == 0x7f));
            prop_assert!(!line.ends_with(' '));
        }
        prop_assert_eq!(Cpim::parse(&bytes).unwrap(), c);
    }

    #[test]
    fn text_message_round_trip(
        body in "[^\\r]{0,200}",
        subject in proptest::option::of(header_value().prop_filter("no CR", |s| !s.contains('\r'))),
        micros in 0u64..1_000_000_000,
    ) {
        let mut m = stanza::chat_message("alice@example.org/lab", "bob@example.net/lab", "p", "").unwrap();
        let _ = m.take_nodes();
        if let Some(s) = &subject {
            m.append_child(stanza::text_element("subject", NS_CLIENT, s));
        }
        m.append_child(stanza::text_element("body", NS_CLIENT, &body));
        prop_assert_eq!(payload::form_of(&m), payload::Form::CpimText);
        let t = Timestamp(Timestamp::DEFAULT_START.0 + micros);
        let obj = payload::encode(&m, ALICE, BOB, t, "t1").unwrap();
        let d = payload::decode(&obj, &m).unwrap();
        prop_assert_eq!(d.timestamp, t);
        prop_assert_eq!(d.to, vec![BOB.to_string()]);
        prop_assert_eq!(d.stanza, m);
    }

    #[test]
    fn pidf_build_parse_round_trip(
        available in any::<bool>(),
        show in proptest::option::of(prop_oneof![Just("away"), Just("chat"), Just("dnd"), Just("xa")]),
        status in proptest::option::of("\\PC{0,80}"),
        priority in proptest::option::of(any::<i8>()),
        micros in 0u64..1_000_000_000,
    ) {
        let mut p = stanza::new(StanzaKind::Presence);
        stanza::set_attr(&mut p, "from", "alice@example.org/lab").unwrap();
        stanza::set_attr(&mut p, "to", "bob@example.net/lab").unwrap();
        if !available {
            stanza::set_attr(&mut p, "type", "unavailable").unwrap();
        }
        if let (Some(s), true) = (show, available) {
            p.append_child(stanza::text_element("show", NS_CLIENT, s));
        }
        if let Some(s) = &status {
            p.append_child(stanza::text_element("status", NS_CLIENT, s));
        }
        if let Some(n) = priority {
            p.append_child(stanza::text_element("priority", NS_CLIENT, &n.to_string()));
        }
        prop_assert_eq!(payload::form_of(&p), payload::Form::Pidf);
        let t = Timestamp(Timestamp::DEFAULT_START.0 + micros);
        let obj = payload::encode(&p, ALICE, BOB, t, "tuple-1").unwrap();
        let text = String::from_utf8(obj.clone()).unwrap();
        prop_assert!(text.starts_with("Content-type: application/pidf+xml"));
        let d = payload::decode(&obj, &p).unwrap();
        prop_assert_eq!(d.form, payload::Form::Pidf);
        prop_assert_eq!(d.from, ALICE);
        prop_assert_eq!(d.timestamp, t);
        prop_assert_eq!(d.stanza, p);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Cpim::parse(&bytes);
        let _ = mime::parse_multipart_signed(&bytes);
        let _ = Entity::parse(&bytes, true);
        let outer = stanza::new(StanzaKind::Message);
        let _ = payload::decode(&bytes, &outer);
        let _ = cms::parse(&bytes, "x");
    }
}

struct Fixture {
    alice: Arc<Identity>,
    bob: Arc<Identity>,
    original: Element,
    wire: Element,
    /// The decrypted multipart/signed of `wire`.
    signed: Vec<u8>,
}

fn now() -> Timestamp {
    Timestamp::DEFAULT_START.plus(std::time::Duration::from_secs(10))
}

fn session(me: &Arc<Identity>, peer: &Arc<Identity>) -> Box<dyn Session> {
    let mut env = Env::for_party(3, "s");
    Rfc3923::classic()
        .new_session(
            &mut env,
            SessionConfig {
                role: Role::Responder,
                local_jid: e2elab_core::Jid::new(&format!("{}/lab", me.jid())).unwrap(),
                peer_jid: e2elab_core::Jid::new(&format!("{}/lab", peer.jid())).unwrap(),
                identity: me.clone(),
                peer_public: Some(peer.public.clone()),
                options: Options::new(),
            },
        )
        .unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = Rfc3923::classic();
        let mut env = Env::for_party(11, "prop");
        env.set_now(now());
        let alice = Arc::new(p.generate_identity(&mut env, ALICE).unwrap());
        let bob = Arc::new(p.generate_identity(&mut env, BOB).unwrap());
        let mut original = stanza::chat_message(
            "alice@example.org/lab",
            "bob@example.net/lab",
            "m1",
            "mutate me",
        )
        .unwrap();
        original.append_child(Element::bare("x", "urn:example:ext"));
        let mut a = session(&alice, &bob);
        let mut out = Outbox::new();
        a.send(&mut env, original.clone(), &mut out).unwrap();
        let wire = out.poll_transmit().unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(wire.get_child("e2e", NS_E2E).unwrap().text())
            .unwrap();
        let key = openssl::pkey::PKey::private_key_from_pkcs8(bob.secret().expose()).unwrap();
        let cert = openssl::x509::X509::from_der(&bob.public.data).unwrap();
        let signed = cms::decrypt(&der, &key, &cert, openssl::symm::Cipher::aes_128_cbc()).unwrap();
        Fixture {
            alice,
            bob,
            original,
            wire,
            signed,
        }
    })
}

/// Deliver to a fresh Bob: never a panic; an error emits nothing; a success
/// delivers exactly the original.
fn deliver(w: Element) -> Result<(), TestCaseError> {
    let f = fixture();
    let mut b = session(&f.bob, &f.alice);
    let mut env = Env::for_party(4, "b");
    env.set_now(now());
    let mut out = Outbox::new();
    let r = b.handle_inbound(&mut env, w, &mut out);
    let mut delivered = Vec::new();
    while let Some(e) = out.poll_event() {
        if let Event::Delivered { stanza: x, .. } = e {
            delivered.push(x);
        }
    }
    match r {
        Err(_) => {
            prop_assert!(delivered.is_empty());
            prop_assert_eq!(out.pending_transmits(), 0);
        }
        Ok(()) => {
            for d in delivered {
                prop_assert_eq!(&d, &f.original);
            }
        }
    }
    Ok(())
}

fn with_text(text: &str) -> Element {
    let f = fixture();
    let mut c = Element::bare("message", NS_CLIENT);
    *c.attrs_mut() = f.wire.attrs().clone();
    c.append_child(stanza::text_element("e2e", NS_E2E, text));
    c
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let one = prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..20)
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    proptest::collection::vec(one, 1..4)
}

fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = v.len().max(1);
        match e {
            Edit::Flip(i, x) => {
                if let Some(b) = v.get_mut(i % n) {
                    *b ^= x;
                }
            }
            Edit::Delete(i, k) => {
                let s = (i % n).min(v.len());
                let end = (s + k).min(v.len());
                v.drain(s..end);
            }
            Edit::Insert(i, bytes) => {
                let s = (i % n).min(v.len());
                v.splice(s..s, bytes.iter().copied());
            }
            Edit::Truncate(i) => v.truncate(i % n),
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_e2e_text_never_panics(e in edits()) {
        let f = fixture();
        let text = f.wire.get_child("e2e", NS_E2E).unwrap().text().into_bytes();
        let bad = String::from_utf8_lossy(&apply(text, &e)).into_owned();
        deliver(with_text(&bad))?;
    }

    #[test]
    fn mutated_cms_der_never_panics(e in edits()) {
        let f = fixture();
        let der = base64::engine::general_purpose::STANDARD
            .decode(f.wire.get_child("e2e", NS_E2E).unwrap().text())
            .unwrap();
        let bad = apply(der, &e);
        deliver(with_text(&base64::engine::general_purpose::STANDARD.encode(bad)))?;
    }

    /// Mutations inside the envelope (re-encrypted to Bob, as a sender
    /// holding only Bob's certificate can): exercise the MIME, CPIM and CMS
    /// SignedData parsers after decryption.
    #[test]
    fn mutated_signed_content_never_panics(e in edits()) {
        let f = fixture();
        let bad = apply(f.signed.clone(), &e);
        let cert = openssl::x509::X509::from_der(&f.bob.public.data).unwrap();
        let env_der = cms::encrypt(&bad, &cert, openssl::symm::Cipher::aes_128_cbc()).unwrap();
        deliver(with_text(&base64::engine::general_purpose::STANDARD.encode(env_der)))?;
    }
}

#[test]
fn the_unmutated_fixture_is_delivered() {
    let f = fixture();
    let text = f.wire.get_child("e2e", NS_E2E).unwrap().text();
    let mut b = session(&f.bob, &f.alice);
    let mut env = Env::for_party(4, "b");
    env.set_now(now());
    let mut out = Outbox::new();
    b.handle_inbound(&mut env, with_text(&text), &mut out)
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = out.poll_event() {
        if let Event::Delivered { stanza: x, .. } = e {
            got.push(x);
        }
    }
    assert_eq!(got, vec![f.original.clone()]);
}
