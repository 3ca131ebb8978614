//! Session-level tests: every DECISION and the named bad inputs.

use super::*;
use e2elab_core::{Error, Options, PeerMisbehaved};
use std::sync::{Arc, OnceLock};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";
const CAROL: &str = "carol@example.com";

/// RSA-2048 identities, made once per profile.
fn ids(profile: Profile) -> &'static [Arc<Identity>; 3] {
    static D: OnceLock<[Arc<Identity>; 3]> = OnceLock::new();
    static E: OnceLock<[Arc<Identity>; 3]> = OnceLock::new();
    let cell = match profile {
        Profile::Dsig => &D,
        Profile::XmlEnc => &E,
    };
    cell.get_or_init(|| {
        let p = proto(profile);
        let mut env = Env::for_party(9, "ids");
        [ALICE, BOB, CAROL].map(|j| Arc::new(p.generate_identity(&mut env, j).unwrap()))
    })
}

fn proto(profile: Profile) -> XmlDsig {
    match profile {
        Profile::Dsig => XmlDsig::dsig(),
        Profile::XmlEnc => XmlDsig::xmlenc(),
    }
}

fn idx(j: &str) -> usize {
    [ALICE, BOB, CAROL].iter().position(|x| *x == j).unwrap()
}

fn full(j: &str) -> String {
    format!("{j}/lab")
}

fn session_opts(profile: Profile, me: &str, peer: &str, options: Options) -> Box<dyn Session> {
    let mut env = Env::for_party(1, me);
    proto(profile)
        .new_session(
            &mut env,
            SessionConfig {
                role: Role::Initiator,
                local_jid: e2elab_core::Jid::new(&full(me)).unwrap(),
                peer_jid: e2elab_core::Jid::new(&full(peer)).unwrap(),
                identity: ids(profile)[idx(me)].clone(),
                peer_public: Some(ids(profile)[idx(peer)].public.clone()),
                options,
            },
        )
        .unwrap()
}

fn session(profile: Profile, me: &str, peer: &str) -> Box<dyn Session> {
    session_opts(profile, me, peer, Options::new())
}

fn env_at(t: Timestamp) -> Env {
    let mut e = Env::for_party(2, "t");
    e.set_now(t);
    e
}

fn t0() -> Timestamp {
    Timestamp::DEFAULT_START
}

fn later(secs: u64) -> Timestamp {
    t0().plus(Duration::from_secs(secs))
}

fn msg(from: &str, to: &str, id: &str, body: &str) -> Element {
    stanza::chat_message(&full(from), &full(to), id, body).unwrap()
}

/// Protect `app` on `s` at `t`; the wire stanza as the peer parses it.
fn wire(s: &mut dyn Session, t: Timestamp, app: &Element) -> Element {
    let mut out = Outbox::new();
    s.send(&mut env_at(t), app.clone(), &mut out).unwrap();
    let w = out.poll_transmit().unwrap();
    assert!(out.poll_transmit().is_none());
    reparse(&w)
}

fn reparse(w: &Element) -> Element {
    stanza::parse(&stanza::serialize(w)).unwrap()
}

struct Got {
    result: Result<()>,
    delivered: Vec<(Element, Protection)>,
    unprotected: Vec<Element>,
    warnings: Vec<Warning>,
}

fn receive(s: &mut dyn Session, t: Timestamp, w: Element) -> Got {
    let mut out = Outbox::new();
    let before = s.state();
    let result = s.handle_inbound(&mut env_at(t), w, &mut out);
    let transmitted = out.pending_transmits();
    let mut g = Got {
        result,
        delivered: vec![],
        unprotected: vec![],
        warnings: vec![],
    };
    while let Some(e) = out.poll_event() {
        match e {
            Event::Delivered {
                stanza: x,
                protection,
            } => g.delivered.push((x, protection)),
            Event::DeliveredUnprotected(x) => g.unprotected.push(x),
            Event::Warning(w) => g.warnings.push(w),
            _ => {}
        }
    }
    assert_eq!(transmitted, 0, "a receiver never transmits");
    if g.result.is_err() {
        assert_eq!(s.state(), before, "state changed on error");
        assert!(g.delivered.is_empty() && g.unprotected.is_empty() && g.warnings.is_empty());
    }
    g
}

fn err(g: &Got) -> &Error {
    g.result.as_ref().expect_err("an error")
}

/// Edit a wire stanza as text (what an attacker on the path does).
fn edit(w: &Element, f: impl FnOnce(String) -> String) -> Element {
    let s = stanza::serialize(w);
    let e = f(s.clone());
    assert_ne!(s, e, "the edit changed nothing");
    stanza::parse(&e).unwrap()
}

/// Insert `xml` as the stanza's last child (before the final end tag: the
/// manifest has a `</message>` of its own).
fn append(s: String, xml: &str) -> String {
    let i = s.rfind("</").unwrap();
    format!("{}{xml}{}", &s[..i], &s[i..])
}

const PROFILES: [Profile; 2] = [Profile::Dsig, Profile::XmlEnc];

#[test]
fn round_trip_both_profiles_with_labels_and_op_counts() {
    for (profile, opts) in [
        (Profile::Dsig, Options::new()),
        (Profile::XmlEnc, Options::new()),
        (Profile::XmlEnc, Options::new().set("cipher", "aes128-cbc")),
    ] {
        let mut a = session_opts(profile, ALICE, BOB, opts.clone());
        let mut b = session_opts(profile, BOB, ALICE, opts);
        let app = msg(ALICE, BOB, "m1", "Wherefore art thou, Romeo? <&>");
        let (w, sent_ops) = e2elab_core::ops::recorded(|| wire(a.as_mut(), t0(), &app));
        let text = stanza::serialize(&w);
        match profile {
            Profile::Dsig => assert!(text.contains("Wherefore art thou")),
            Profile::XmlEnc => {
                assert!(!text.contains("Wherefore") && !text.contains("stanza-desc"))
            }
        }
        let (g, recv_ops) = e2elab_core::ops::recorded(|| receive(b.as_mut(), later(1), w));
        g.result.as_ref().unwrap();
        assert_eq!(g.delivered.len(), 1);
        let (d, label) = &g.delivered[0];
        assert_eq!(
            stanza::body(d).as_deref(),
            Some("Wherefore art thou, Romeo? <&>")
        );
        assert_eq!(d.attr("id"), Some("m1"));
        assert!(
            d.children().all(|c| c.attrs().iter().count() == 0),
            "d:id removed"
        );
        assert_eq!(label.covered, vec!["{jabber:client}body".to_string()]);
        assert!(label.clear.is_empty() && label.authenticated);
        assert_eq!(label.confidential, profile == Profile::XmlEnc);
        assert!(label.key.starts_with("x509:"));
        use e2elab_core::ops::OpClass;
        assert_eq!(sent_ops.calls_in(OpClass::Sign), 1);
        assert_eq!(recv_ops.calls_in(OpClass::Verify), 1);
        let enc = u64::from(profile == Profile::XmlEnc);
        assert_eq!(sent_ops.calls_in(OpClass::PkEncrypt), enc);
        assert_eq!(recv_ops.calls_in(OpClass::PkDecrypt), enc);
    }
}

#[test]
fn only_the_chosen_algorithms_are_accepted() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    for (from, to) in [
        (
            dsig::ALG_RSA_SHA256,
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        ),
        (dsig::ALG_SHA256, "http://www.w3.org/2000/09/xmldsig#sha1"),
        (c14n::ALG_EXC_C14N, "http://www.w3.org/2006/12/xml-c14n11"),
    ] {
        let bad = edit(&w, |s| s.replacen(from, to, 1));
        let g = receive(b.as_mut(), later(1), bad);
        assert!(
            matches!(err(&g), Error::Unsupported(_)),
            "{from}: {:?}",
            g.result
        );
    }
    receive(b.as_mut(), later(1), w).result.unwrap();
}

#[test]
fn inclusive_c14n_option_round_trips_and_is_named() {
    let mut a = session_opts(
        Profile::Dsig,
        ALICE,
        BOB,
        Options::new().set("c14n", "inclusive"),
    );
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    assert!(stanza::serialize(&w).contains(c14n::ALG_C14N));
    // A server stamping xml:lang on the stanza: inclusive C14N imports it
    // into every child's canonical form, so the digests no longer match;
    // exclusive does not.
    let stamp = |w: &Element| {
        let mut w = w.clone();
        w.set_attr(
            minidom::rxml::Namespace::from(c14n::NS_XML),
            stanza::ncname("lang").unwrap(),
            "en",
        );
        reparse(&w)
    };
    let g = receive(b.as_mut(), later(1), stamp(&w));
    assert_eq!(
        err(&g),
        &Error::PeerMisbehaved(PeerMisbehaved::BadSignature)
    );
    receive(b.as_mut(), later(1), w).result.unwrap();
    let mut a2 = session(Profile::Dsig, ALICE, BOB);
    let w2 = wire(a2.as_mut(), later(2), &msg(ALICE, BOB, "m2", "y"));
    assert!(stanza::serialize(&w2).contains(c14n::ALG_EXC_C14N));
    receive(b.as_mut(), later(3), stamp(&w2)).result.unwrap();
    // Unknown option values are refused.
    let mut env = Env::for_party(1, "x");
    let r = proto(Profile::Dsig).new_session(
        &mut env,
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(&full(ALICE)).unwrap(),
            peer_jid: e2elab_core::Jid::new(&full(BOB)).unwrap(),
            identity: ids(Profile::Dsig)[0].clone(),
            peer_public: Some(ids(Profile::Dsig)[1].public.clone()),
            options: Options::new().set("c14n", "c14n11"),
        },
    );
    assert!(matches!(r, Err(Error::Api(ApiMisuse::BadOption { .. }))));
}

#[test]
fn prefix_renaming_on_the_path_is_accepted_by_the_namespace_aware_check() {
    // DECISIONS 3: the model has no prefixes, so a prefix renamed on the
    // path (which W3C C14N of the bytes would see) changes nothing here.
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    let renamed = edit(&w, |s| {
        // (The serializer of a parsed stanza names the namespace tns0.)
        s.replace("xmlns:tns0=", "xmlns:q=")
            .replace(" tns0:id=", " q:id=")
    });
    receive(b.as_mut(), later(1), renamed).result.unwrap();
}

#[test]
fn forwarded_message_is_refused() {
    for profile in PROFILES {
        let mut a = session(profile, ALICE, BOB);
        let mut b = session(profile, BOB, ALICE);
        let mut c = session(profile, CAROL, ALICE);
        let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "for Bob"));
        // Bob reads it, then passes Alice's signed content to Carol.
        let forwarded = match profile {
            Profile::Dsig => edit(&w, |s| {
                s.replacen(
                    &format!("to='{}'", full(BOB)),
                    &format!("to='{}'", full(CAROL)),
                    1,
                )
            }),
            Profile::XmlEnc => {
                let bob_key = cert::load_key(ids(profile)[1].secret().expose()).unwrap();
                let ed = xmlenc::find(&w).unwrap().unwrap();
                let plain = xmlenc::decrypt(ed, &bob_key, ContentCipher::Aes128Gcm).unwrap();
                let carol = cert::load_cert(&ids(profile)[2].public.data)
                    .unwrap()
                    .public_key()
                    .unwrap();
                let ed2 =
                    xmlenc::encrypt(&mut env_at(t0()), &plain, &carol, ContentCipher::Aes128Gcm)
                        .unwrap();
                let mut o = Element::bare("message", NS_CLIENT);
                *o.attrs_mut() = w.attrs().clone();
                stanza::set_attr(&mut o, "to", &full(CAROL)).unwrap();
                o.append_child(ed2);
                reparse(&o)
            }
        };
        let g = receive(c.as_mut(), later(1), forwarded);
        assert!(
            matches!(
                err(&g),
                Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_))
            ),
            "{profile:?}: {:?}",
            g.result
        );
        receive(b.as_mut(), later(1), w).result.unwrap();
    }
}

#[test]
fn changed_type_or_id_is_refused() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m7", "x"));
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| s.replacen("type='chat'", "type='groupchat'", 1)),
    );
    assert!(matches!(
        err(&g),
        Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_))
    ));
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| s.replacen("id='m7'", "id='m8'", 1)),
    );
    assert!(matches!(err(&g), Error::Decode(_)), "{:?}", g.result);
    // A message without type is signed as type='normal' and sent so.
    let mut untyped = msg(ALICE, BOB, "m9", "x");
    stanza::remove_attr(&mut untyped, "type");
    let w = wire(a.as_mut(), later(2), &untyped);
    assert_eq!(w.attr("type"), Some("normal"));
    receive(b.as_mut(), later(3), w).result.unwrap();
}

#[test]
fn signature_wrapping_is_refused() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "pay 10"));
    // A second element with the manifest's id.
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| {
            s.replacen(
                "<body",
                "<x xmlns=\"urn:evil\" id=\"stanza-desc\"/><body",
                1,
            )
        }),
    );
    assert!(matches!(err(&g), Error::Decode(_)), "{:?}", g.result);
    // The signed body's d:id moved to a new body, the signed one kept beside it.
    let id = w
        .get_child("body", NS_CLIENT)
        .unwrap()
        .attr_ns(c14n::NS_DSIG_ID, "id")
        .unwrap()
        .to_string();
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| {
            s.replacen(
                "<body",
                &format!("<body xmlns:d=\"urn:xmpp:dsig:0\" d:id=\"{id}\">pay 1000</body><body"),
                1,
            )
        }),
    );
    assert!(
        matches!(err(&g), Error::Decode(_)),
        "duplicate d:id: {:?}",
        g.result
    );
    // The body changed in place.
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| s.replacen("pay 10", "pay 99", 1)),
    );
    assert_eq!(
        err(&g),
        &Error::PeerMisbehaved(PeerMisbehaved::BadSignature)
    );
    // The signature stripped: delivered as unprotected, never as protected.
    let mut stripped = Element::bare("message", NS_CLIENT);
    *stripped.attrs_mut() = w.attrs().clone();
    for c in w.children().filter(|c| !c.is("Signature", dsig::NS_DS)) {
        stripped.append_child(c.clone());
    }
    let g = receive(b.as_mut(), later(1), stripped);
    g.result.as_ref().unwrap();
    assert!(g.delivered.is_empty() && g.unprotected.len() == 1);
    assert!(g
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::UnprotectedStanza { .. })));
    receive(b.as_mut(), later(1), w).result.unwrap();
}

#[test]
fn unreferenced_child_is_not_delivered() {
    for profile in PROFILES {
        let mut a = session(profile, ALICE, BOB);
        let mut b = session(profile, BOB, ALICE);
        let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "real"));
        let injected = edit(&w, |s| {
            append(s, "<body>injected</body><x xmlns=\"urn:x\"/>")
        });
        let g = receive(b.as_mut(), later(1), injected);
        g.result.as_ref().unwrap();
        let (d, label) = &g.delivered[0];
        assert_eq!(stanza::body(d).as_deref(), Some("real"));
        assert_eq!(d.children().count(), 1, "{profile:?}");
        assert!(label.clear.is_empty());
        assert!(g
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::UnprotectedExtras { elements } if elements.len() == 2)));
    }
}

#[test]
fn bad_references_are_typed_errors() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let mut app = msg(ALICE, BOB, "m", "x");
    app.append_child(stanza::text_element("thread", NS_CLIENT, "t1"));
    let w = wire(a.as_mut(), t0(), &app);
    // A referenced child removed: the manifest names a missing child.
    let mut missing = Element::bare("message", NS_CLIENT);
    *missing.attrs_mut() = w.attrs().clone();
    for c in w.children().filter(|c| !c.is("thread", NS_CLIENT)) {
        missing.append_child(c.clone());
    }
    let g = receive(b.as_mut(), later(1), missing);
    assert!(
        matches!(err(&g), Error::Decode(DecodeError::Invalid { .. })),
        "{:?}",
        g.result
    );
    // Garbage in the manifest or SignedInfo: bad signature, never a panic.
    for (from, to) in [
        ("#stanza-desc", "#other"),
        ("urn:xmpp:dsig:ref:0#", "urn:xmpp:dsig:ref:1#"),
        ("<timestamp>", "<timestamp>x"),
    ] {
        let g = receive(b.as_mut(), later(1), edit(&w, |s| s.replacen(from, to, 1)));
        assert!(g.result.is_err(), "{from}");
    }
    // Entity declarations never reach the session: the parser refuses them.
    let doc = "<!DOCTYPE m [<!ENTITY a \"aaaa\">]><message xmlns='jabber:client'>&a;</message>";
    assert!(stanza::parse(doc).is_err());
    receive(b.as_mut(), later(1), w).result.unwrap();
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    for profile in PROFILES {
        let mut a = session(profile, ALICE, BOB);
        let mut b = session(profile, BOB, ALICE);
        let w = wire(a.as_mut(), later(1000), &msg(ALICE, BOB, "m", "x"));
        let g = receive(b.as_mut(), later(1000 + 301), w.clone());
        assert!(
            matches!(err(&g), Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(r)) if r.starts_with("old"))
        );
        let g = receive(b.as_mut(), later(1000 - 301), w.clone());
        assert!(
            matches!(err(&g), Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(r)) if r.starts_with("future"))
        );
        receive(b.as_mut(), later(1000 + 299), w).result.unwrap();
    }
    assert_eq!(
        dsig::format_timestamp(Timestamp(1_289_482_380_123_456)),
        "2010-11-11T13:33:00.123Z"
    );
    assert!(dsig::parse_timestamp("2010-11-11T13:33:00Z").is_none());
    assert!(dsig::parse_timestamp("2010-11-11T13:33:00.12Z").is_none());
}

#[test]
fn replay_within_the_window_is_refused() {
    for profile in PROFILES {
        let mut a = session(profile, ALICE, BOB);
        let mut b = session(profile, BOB, ALICE);
        let app = msg(ALICE, BOB, "m", "x");
        let w1 = wire(a.as_mut(), t0(), &app);
        let w2 = wire(a.as_mut(), t0(), &app);
        receive(b.as_mut(), later(1), w1.clone()).result.unwrap();
        let g = receive(b.as_mut(), later(2), w1.clone());
        assert_eq!(err(&g), &Error::PeerMisbehaved(PeerMisbehaved::Replay));
        // Same clock, next stanza: one millisecond later, not a replay.
        receive(b.as_mut(), later(2), w2).result.unwrap();
        // Still remembered later in the window.
        let g = receive(b.as_mut(), later(200), w1);
        assert_eq!(err(&g), &Error::PeerMisbehaved(PeerMisbehaved::Replay));
    }
}

#[test]
fn offline_delay_moves_the_window() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    let stamp = later(5).to_rfc3339();
    let delayed = edit(&w, |s| {
        append(
            s,
            &format!("<delay xmlns=\"urn:xmpp:delay\" from=\"example.net\" stamp=\"{stamp}\"/>"),
        )
    });
    let g = receive(b.as_mut(), later(3600), delayed);
    g.result.as_ref().unwrap();
    assert!(g.warnings.iter().any(|w| matches!(w, Warning::UnprotectedExtras { elements } if elements == &vec!["{urn:xmpp:delay}delay".to_string()])));
    // Without the delay the hour-old timestamp is refused.
    let mut a2 = session(Profile::Dsig, ALICE, BOB);
    let w2 = wire(a2.as_mut(), later(1), &msg(ALICE, BOB, "m2", "y"));
    assert!(receive(b.as_mut(), later(3601), w2).result.is_err());
}

#[test]
fn certificate_attached_at_most_every_five_minutes() {
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut b = session(Profile::Dsig, BOB, ALICE);
    let has_cert = |w: &Element| stanza::serialize(w).contains("X509Certificate");
    let w1 = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "1", "x"));
    let w2 = wire(a.as_mut(), later(299), &msg(ALICE, BOB, "2", "x"));
    let w3 = wire(a.as_mut(), later(300), &msg(ALICE, BOB, "3", "x"));
    assert!(has_cert(&w1) && !has_cert(&w2) && has_cert(&w3));
    for (w, t) in [(w1, 1), (w2, 299), (w3, 301)] {
        let g = receive(b.as_mut(), later(t), w);
        g.result.as_ref().unwrap();
        assert!(g.warnings.is_empty());
    }
    // Carol's certificate attached to Alice's signature: the pinned key
    // still decides; the other certificate is reported.
    let carol_cert = e2elab_core::b64::encode(&ids(Profile::Dsig)[2].public.data);
    let alice_cert = e2elab_core::b64::encode(&ids(Profile::Dsig)[0].public.data);
    let w4 = wire(a.as_mut(), later(700), &msg(ALICE, BOB, "4", "x"));
    let g = receive(
        b.as_mut(),
        later(701),
        edit(&w4, |s| s.replace(&alice_cert, &carol_cert)),
    );
    g.result.as_ref().unwrap();
    assert!(g
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::KeyChanged { .. })));
}

#[test]
fn other_cipher_is_refused() {
    let mut a = session_opts(
        Profile::XmlEnc,
        ALICE,
        BOB,
        Options::new().set("cipher", "aes128-cbc"),
    );
    let mut b = session(Profile::XmlEnc, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    let g = receive(b.as_mut(), later(1), w);
    assert!(matches!(err(&g), Error::Unsupported(_)), "{:?}", g.result);
}

#[test]
fn cbc_failures_after_decryption_are_indistinguishable() {
    let cbc = || Options::new().set("cipher", "aes128-cbc");
    let mut a = session_opts(Profile::XmlEnc, ALICE, BOB, cbc());
    let mut b = session_opts(Profile::XmlEnc, BOB, ALICE, cbc());
    let bob_cert = cert::load_cert(&ids(Profile::XmlEnc)[1].public.data)
        .unwrap()
        .public_key()
        .unwrap();
    let w = wire(a.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    let with = |plain: &[u8], cipher| {
        let mut o = Element::bare("message", NS_CLIENT);
        *o.attrs_mut() = w.attrs().clone();
        o.append_child(xmlenc::encrypt(&mut env_at(t0()), plain, &bob_cert, cipher).unwrap());
        reparse(&o)
    };
    // Not XML; XML with no signature; a forged signature: one error.
    let alice_plain = {
        let bob_key = cert::load_key(ids(Profile::XmlEnc)[1].secret().expose()).unwrap();
        xmlenc::decrypt(
            xmlenc::find(&w).unwrap().unwrap(),
            &bob_key,
            ContentCipher::Aes128Cbc,
        )
        .unwrap()
    };
    let forged = String::from_utf8(alice_plain.to_vec())
        .unwrap()
        .replacen(">x<", ">y<", 1);
    for plain in [
        b"<not xml".to_vec(),
        b"<body>hi</body>".to_vec(),
        forged.into_bytes(),
    ] {
        let g = receive(b.as_mut(), later(1), with(&plain, ContentCipher::Aes128Cbc));
        assert_eq!(err(&g), &Error::DecryptFailed);
    }
    // Modified ciphertext: the same error.
    let ct = xmlenc::find(&w)
        .unwrap()
        .unwrap()
        .children()
        .nth(2)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .text();
    let mut raw = e2elab_core::b64::decode(&ct).unwrap();
    let n = raw.len();
    raw[n - 20] ^= 1;
    let g = receive(
        b.as_mut(),
        later(1),
        edit(&w, |s| s.replacen(&ct, &e2elab_core::b64::encode(&raw), 1)),
    );
    assert_eq!(err(&g), &Error::DecryptFailed);
    // GCM: a modified ciphertext fails the tag.
    let mut ag = session(Profile::XmlEnc, ALICE, BOB);
    let mut bg = session(Profile::XmlEnc, BOB, ALICE);
    let wg = wire(ag.as_mut(), t0(), &msg(ALICE, BOB, "m", "x"));
    let ct = xmlenc::find(&wg)
        .unwrap()
        .unwrap()
        .children()
        .nth(2)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .text();
    let mut raw = e2elab_core::b64::decode(&ct).unwrap();
    raw[14] ^= 1;
    let g = receive(
        bg.as_mut(),
        later(1),
        edit(&wg, |s| s.replacen(&ct, &e2elab_core::b64::encode(&raw), 1)),
    );
    assert_eq!(err(&g), &Error::DecryptFailed);
    receive(b.as_mut(), later(1), w).result.unwrap();
    receive(bg.as_mut(), later(1), wg).result.unwrap();
}

#[test]
fn unprotected_stanza_is_marked() {
    for profile in PROFILES {
        let mut b = session(profile, BOB, ALICE);
        let g = receive(b.as_mut(), t0(), msg(ALICE, BOB, "m", "clear"));
        g.result.as_ref().unwrap();
        assert!(g.delivered.is_empty() && g.unprotected.len() == 1);
        assert!(g
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::UnprotectedStanza { .. })));
        // From someone else: refused.
        let g = receive(b.as_mut(), t0(), msg(CAROL, BOB, "m", "clear"));
        assert!(g.result.is_err());
    }
}

#[test]
fn close_drops_the_key() {
    for profile in PROFILES {
        let mut a = session(profile, ALICE, BOB);
        let mut out = Outbox::new();
        a.close(&mut env_at(t0()), &mut out).unwrap();
        assert_eq!(a.state(), SessionState::Closed);
        let r = a.send(&mut env_at(t0()), msg(ALICE, BOB, "m", "x"), &mut out);
        assert_eq!(r, Err(Error::Api(ApiMisuse::Closed)));
    }
}

#[test]
fn iq_is_refused_by_the_signature_profile() {
    let iq = stanza::parse(&format!(
        "<iq xmlns='jabber:client' from='{}' to='{}' id='q' type='get'><query xmlns='jabber:iq:version'/></iq>",
        full(ALICE),
        full(BOB)
    ))
    .unwrap();
    let mut a = session(Profile::Dsig, ALICE, BOB);
    let mut out = Outbox::new();
    let r = a.send(&mut env_at(t0()), iq.clone(), &mut out);
    assert!(
        matches!(r, Err(Error::Api(ApiMisuse::CannotProtect(_)))),
        "{r:?}"
    );
    assert_eq!(out.pending_transmits(), 0);
    // xmlenc-dsig: one <EncryptedData/> child, delivered.
    let mut a = session(Profile::XmlEnc, ALICE, BOB);
    let mut b = session(Profile::XmlEnc, BOB, ALICE);
    let w = wire(a.as_mut(), t0(), &iq);
    assert_eq!(w.children().count(), 1);
    let g = receive(b.as_mut(), later(1), w);
    g.result.as_ref().unwrap();
    assert!(g.delivered[0].0.has_child("query", "jabber:iq:version"));
}
