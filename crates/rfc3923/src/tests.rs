//! Session-level tests: the named negative cases and every DECISION.

use super::*;
use e2elab_core::{Error, Options};
use std::sync::{Arc, OnceLock};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";
const CAROL: &str = "carol@example.com";

/// Identities are costly (RSA-2048); make them once per profile.
fn ids(profile: Profile) -> &'static [Arc<Identity>; 3] {
    static C: OnceLock<[Arc<Identity>; 3]> = OnceLock::new();
    static M: OnceLock<[Arc<Identity>; 3]> = OnceLock::new();
    let cell = match profile {
        Profile::Classic => &C,
        Profile::Modern => &M,
    };
    cell.get_or_init(|| {
        let p = Rfc3923 {
            profile,
            memory: Default::default(),
        };
        let mut env = Env::for_party(9, "ids");
        [ALICE, BOB, CAROL].map(|j| Arc::new(p.generate_identity(&mut env, j).unwrap()))
    })
}

fn idx(j: &str) -> usize {
    [ALICE, BOB, CAROL].iter().position(|x| *x == j).unwrap()
}

fn full(j: &str) -> String {
    format!("{j}/lab")
}

/// A session for `me` talking to `peer`, with `pinned` as the peer's public identity.
fn session_with(
    profile: Profile,
    me: &str,
    peer: &str,
    pinned: PublicIdentity,
) -> Box<dyn Session> {
    let p = Rfc3923 {
        profile,
        memory: Default::default(),
    };
    let mut env = Env::for_party(1, me);
    p.new_session(
        &mut env,
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(&full(me)).unwrap(),
            peer_jid: e2elab_core::Jid::new(&full(peer)).unwrap(),
            identity: ids(profile)[idx(me)].clone(),
            peer_public: Some(pinned),
            options: Options::new(),
        },
    )
    .unwrap()
}

fn session(profile: Profile, me: &str, peer: &str) -> Box<dyn Session> {
    session_with(profile, me, peer, ids(profile)[idx(peer)].public.clone())
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

/// Protect `app` on `s` at time `t`; the wire stanza.
fn wire(s: &mut dyn Session, t: Timestamp, app: &Element) -> Element {
    let mut out = Outbox::new();
    s.send(&mut env_at(t), app.clone(), &mut out).unwrap();
    let w = out.poll_transmit().unwrap();
    assert!(out.poll_transmit().is_none());
    // What the link does: serialize and parse.
    stanza::parse(&stanza::serialize(&w)).unwrap()
}

struct Got {
    result: Result<()>,
    delivered: Vec<Element>,
    unprotected: Vec<Element>,
    warnings: Vec<Warning>,
    transmitted: usize,
}

fn receive(s: &mut dyn Session, t: Timestamp, w: Element) -> Got {
    let mut out = Outbox::new();
    let before = s.state();
    let result = s.handle_inbound(&mut env_at(t), w, &mut out);
    let mut g = Got {
        result,
        delivered: vec![],
        unprotected: vec![],
        warnings: vec![],
        transmitted: out.pending_transmits(),
    };
    while let Some(e) = out.poll_event() {
        match e {
            Event::Delivered { stanza: x, .. } => g.delivered.push(x),
            Event::DeliveredUnprotected(x) => g.unprotected.push(x),
            Event::Warning(w) => g.warnings.push(w),
            _ => {}
        }
    }
    if g.result.is_err() {
        assert_eq!(s.state(), before, "state changed on error");
        assert!(g.delivered.is_empty() && g.unprotected.is_empty() && g.warnings.is_empty());
        assert_eq!(g.transmitted, 0, "emitted on error");
    }
    g
}

fn e2e_text(w: &Element) -> String {
    w.get_child("e2e", NS_E2E).unwrap().text()
}

fn with_e2e_text(w: &Element, text: &str) -> Element {
    let mut c = Element::bare(w.name(), NS_CLIENT);
    *c.attrs_mut() = w.attrs().clone();
    c.append_child(stanza::text_element("e2e", NS_E2E, text));
    c
}

fn b64(d: &[u8]) -> String {
    e2elab_core::b64::encode(d)
}

fn unb64(s: &str) -> Vec<u8> {
    e2elab_core::b64::decode(s).unwrap()
}

#[test]
fn round_trip_both_profiles_with_op_counts() {
    for profile in [Profile::Classic, Profile::Modern] {
        let mut a = session(profile, ALICE, BOB);
        let mut b = session(profile, BOB, ALICE);
        assert_eq!(a.state(), SessionState::Established);
        let mut out = Outbox::new();
        a.start(&mut env_at(t0()), &mut out).unwrap();
        assert_eq!(out.pending_transmits(), 0, "no handshake");
        let m = msg(ALICE, BOB, "1", "Wherefore art thou, Romeo?");
        let (w, sent) = e2elab_core::ops::recorded(|| wire(a.as_mut(), later(1), &m));
        assert_eq!(w.attr("from"), m.attr("from"));
        assert_eq!(w.attr("type"), Some("chat"));
        let (g, got) = e2elab_core::ops::recorded(|| receive(b.as_mut(), later(2), w));
        g.result.unwrap();
        assert_eq!(g.delivered, vec![m]);
        use e2elab_core::ops::OpClass::*;
        let classes = |l: &e2elab_core::OpLog| {
            [Sign, PkEncrypt, Verify, PkDecrypt, Modexp].map(|c| l.calls_in(c))
        };
        assert_eq!(classes(&sent), [1, 1, 0, 0, 0]);
        assert_eq!(classes(&got), [0, 0, 1, 1, 0]);
        // The signature is ours (counted), the key transport OpenSSL's (derived).
        let hash = profile.digest_alg();
        let sign = sent.get(&e2elab_core::Op::RsaSign {
            bits: 2048,
            hash,
            crt: true,
        });
        assert!(sign.calls == 1 && !sign.derived);
        assert!(
            sent.get(&e2elab_core::Op::RsaEncrypt { bits: 2048 })
                .derived
        );
        // The content cipher ran over at least the message's bytes.
        let cbc = |decrypt| {
            sent.iter()
                .chain(got.iter())
                .filter(|(o, _)| {
                    matches!(o, e2elab_core::Op::Cipher { decrypt: d, .. } if *d == decrypt)
                })
                .map(|(_, t)| t.bytes)
                .sum::<u64>()
        };
        assert!(cbc(false) > 26 && cbc(true) > 26);
        // The micalg names the profile's digest.
        let env_der = unb64(&e2e_text(&wire(
            a.as_mut(),
            later(3),
            &msg(ALICE, BOB, "2", "x"),
        )));
        let key = cert::load_key(ids(profile)[1].secret().expose()).unwrap();
        let c = cert::load_cert(&ids(profile)[1].public.data).unwrap();
        let signed = cms::decrypt(&env_der, &key, &c, profile.cipher()).unwrap();
        let parts = mime::parse_multipart_signed(&signed).unwrap();
        assert_eq!(parts.micalg, profile.digest().micalg());
    }
}

#[test]
fn framing_is_base64_text_and_cdata_is_accepted() {
    let mut a = session(Profile::Classic, ALICE, BOB);
    let mut b = session(Profile::Classic, BOB, ALICE);
    let m = msg(ALICE, BOB, "1", "hi");
    let w = wire(a.as_mut(), later(1), &m);
    let kids: Vec<&Element> = w.children().collect();
    assert_eq!(kids.len(), 1, "only <e2e/> on the wire");
    let text = e2e_text(&w);
    assert!(text
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)));
    // The same object as a CDATA section wrapped at 64 columns, as RFC 3923 prints it.
    let wrapped: Vec<String> = text
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let xml = stanza::serialize(&w).replace(
        &text,
        &format!("\n<![CDATA[\n{}\n]]>\n", wrapped.join("\n")),
    );
    let g = receive(b.as_mut(), later(2), stanza::parse(&xml).unwrap());
    g.result.unwrap();
    assert_eq!(g.delivered, vec![m]);
}

#[test]
fn iq_travels_in_an_iq_and_kind_mismatch_is_refused() {
    let mut a = session(Profile::Classic, ALICE, BOB);
    let mut b = session(Profile::Classic, BOB, ALICE);
    let mut iq = stanza::new(StanzaKind::Iq);
    for (k, v) in [
        ("from", full(ALICE)),
        ("to", full(BOB)),
        ("type", "get".into()),
        ("id", "q1".into()),
    ] {
        stanza::set_attr(&mut iq, k, &v).unwrap();
    }
    iq.append_child(Element::bare("query", "jabber:iq:version"));
    let w = wire(a.as_mut(), later(1), &iq);
    assert_eq!(w.name(), "iq");
    assert_eq!(w.attr("type"), Some("get"));
    // Carried as a message instead: refused.
    let mut as_msg = Element::bare("message", NS_CLIENT);
    *as_msg.attrs_mut() = w.attrs().clone();
    as_msg.append_child(w.get_child("e2e", NS_E2E).unwrap().clone());
    assert!(receive(b.as_mut(), later(2), as_msg).result.is_err());
    let g = receive(b.as_mut(), later(2), w);
    g.result.unwrap();
    assert_eq!(g.delivered, vec![iq]);
}

#[test]
fn directed_presence_goes_as_pidf_and_broadcast_is_refused() {
    let mut a = session(Profile::Classic, ALICE, BOB);
    let mut b = session(Profile::Classic, BOB, ALICE);
    let mut p = stanza::new(StanzaKind::Presence);
    stanza::set_attr(&mut p, "from", &full(ALICE)).unwrap();
    stanza::set_attr(&mut p, "to", &full(BOB)).unwrap();
    p.append_child(stanza::text_element("show", NS_CLIENT, "dnd"));
    assert_eq!(payload::form_of(&p), payload::Form::Pidf);
    let g = receive(b.as_mut(), later(2), wire(a.as_mut(), later(1), &p));
    g.result.unwrap();
    assert_eq!(g.delivered, vec![p.clone()]);
    let mut broadcast = p.clone();
    stanza::remove_attr(&mut broadcast, "to");
    let mut out = Outbox::new();
    let r = a.send(&mut env_at(later(3)), broadcast, &mut out);
    assert!(matches!(r, Err(Error::Api(ApiMisuse::CannotProtect(_)))));
    assert_eq!(out.pending_transmits(), 0);
    let r = a.send(&mut env_at(later(3)), msg(ALICE, CAROL, "x", "y"), &mut out);
    assert!(matches!(r, Err(Error::Api(ApiMisuse::CannotProtect(_)))));
}

fn attached(profile: Profile, w: &Element) -> usize {
    let key = cert::load_key(ids(profile)[1].secret().expose()).unwrap();
    let c = cert::load_cert(&ids(profile)[1].public.data).unwrap();
    let signed = cms::decrypt(&unb64(&e2e_text(w)), &key, &c, profile.cipher()).unwrap();
    cms::attached_certs(&mime::parse_multipart_signed(&signed).unwrap().signature).len()
}

#[test]
fn certificate_attached_at_most_every_five_minutes() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    let mut counts = Vec::new();
    for (i, secs) in [1u64, 2, 100, 299, 301, 302, 600, 601].iter().enumerate() {
        let w = wire(
            a.as_mut(),
            later(*secs),
            &msg(ALICE, BOB, &i.to_string(), "x"),
        );
        counts.push(attached(p, &w));
        receive(b.as_mut(), later(*secs), w).result.unwrap();
    }
    assert_eq!(counts, [1, 0, 0, 0, 1, 0, 0, 1]);
}

#[test]
fn attached_certificate_other_than_pinned_warns() {
    // Alice's session signs with Alice's key but we hand Bob a certificate
    // list containing another certificate: build that stanza by hand.
    let p = Profile::Classic;
    let mut b = session(p, BOB, ALICE);
    let akey = cert::load_key(ids(p)[0].secret().expose()).unwrap();
    let bcert = cert::load_cert(&ids(p)[1].public.data).unwrap();
    let m = msg(ALICE, BOB, "1", "hello");
    let obj = payload::encode(&m, ALICE, BOB, later(1), "t").unwrap();
    // Attach Carol's certificate in place of Alice's.
    let sig = cms::sign_detached(
        &obj,
        &ids(p)[0].public.data,
        &akey,
        p.digest(),
        later(1),
        false,
    )
    .unwrap();
    let carol_cert = &ids(p)[2].public.data;
    let sig = splice_cert(&sig, carol_cert);
    let signed = mime::multipart_signed(&obj, &sig, "bnd", "sha1");
    let e = cms::encrypt(&signed, &bcert, p.cipher()).unwrap();
    let mut w = Element::bare("message", NS_CLIENT);
    *w.attrs_mut() = m.attrs().clone();
    w.append_child(stanza::text_element("e2e", NS_E2E, &b64(&e)));
    let g = receive(b.as_mut(), later(2), w);
    g.result.unwrap();
    assert_eq!(g.delivered, vec![m]);
    assert!(matches!(
        g.warnings.as_slice(),
        [Warning::KeyChanged { .. }]
    ));
}

/// Insert `cert` as the SignedData's certificates field (after encapContentInfo).
fn splice_cert(sig: &[u8], cert: &[u8]) -> Vec<u8> {
    let ci = der::exact(sig).unwrap();
    let parts = der::children(ci.content).unwrap();
    let sd = der::exact(parts[1].content).unwrap();
    let f = der::children(sd.content).unwrap();
    let certs = der::tlv(0xa0, cert);
    let sd2 = der::seq(&[f[0].raw, f[1].raw, f[2].raw, &certs, f[3].raw]);
    der::seq(&[parts[0].raw, &der::tlv(0xa0, &sd2)])
}

#[test]
fn signer_certificate_not_matching_from_is_refused() {
    let p = Profile::Classic;
    // (a) A pinned "Alice" identity whose certificate is really Carol's: the
    // signature verifies but the certificate does not name alice@.
    let mut lying = ids(p)[idx(CAROL)].public.clone();
    lying.jid = ALICE.into();
    let mut b = session_with(p, BOB, ALICE, lying);
    let mut c = session(p, CAROL, BOB);
    // Carol's session writes CPIM From: carol; the server stamps from=alice.
    let mut w = wire(c.as_mut(), later(1), &msg(CAROL, BOB, "1", "I am Alice"));
    stanza::set_attr(&mut w, "from", &full(ALICE)).unwrap();
    let g = receive(b.as_mut(), later(2), w);
    assert!(
        matches!(
            g.result,
            Err(Error::Identity(IdentityError::JidMismatch(_)))
        ),
        "{:?}",
        g.result
    );
    // (b) A genuine stanza whose outer from was rewritten.
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    let mut w = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "hi"));
    stanza::set_attr(&mut w, "from", &full(CAROL)).unwrap();
    let g = receive(b.as_mut(), later(2), w);
    assert!(matches!(
        g.result,
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    let reply = errors::error_reply(&msg(CAROL, BOB, "1", ""), g.result.as_ref().unwrap_err());
    assert_eq!(
        errors::reported_case(&reply.unwrap()),
        Some(errors::Case::UnverifiedSignature)
    );
}

#[test]
fn forwarded_message_is_refused() {
    // Bob decrypts Alice's stanza and re-encrypts the signed object to Carol.
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut carol = session(p, CAROL, ALICE);
    let w = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "for Bob only"));
    let bkey = cert::load_key(ids(p)[1].secret().expose()).unwrap();
    let bcert = cert::load_cert(&ids(p)[1].public.data).unwrap();
    let signed = cms::decrypt(&unb64(&e2e_text(&w)), &bkey, &bcert, p.cipher()).unwrap();
    let ccert = cert::load_cert(&ids(p)[2].public.data).unwrap();
    let again = cms::encrypt(&signed, &ccert, p.cipher()).unwrap();
    let mut fw = with_e2e_text(&w, &b64(&again));
    stanza::set_attr(&mut fw, "to", &full(CAROL)).unwrap();
    let g = receive(carol.as_mut(), later(2), fw);
    assert!(
        matches!(g.result, Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(ref s))) if s.contains("To")),
        "{:?}",
        g.result
    );
}

#[test]
fn expired_and_future_timestamps_are_refused() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    // Sent at t+1s, arrives 5 min + 2 s later: old.
    let w = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "late"));
    let g = receive(b.as_mut(), later(303), w.clone());
    assert!(
        matches!(g.result, Err(Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(ref s))) if s.starts_with("old"))
    );
    let reply = errors::error_reply(&w, g.result.as_ref().unwrap_err()).unwrap();
    assert_eq!(
        errors::reported_case(&reply),
        Some(errors::Case::BadTimestamp)
    );
    // Exactly at the edge is still fine.
    receive(b.as_mut(), later(301), w).result.unwrap();
    // A sender clock 6 minutes ahead: future.
    let w = wire(a.as_mut(), later(1000), &msg(ALICE, BOB, "2", "early"));
    let g = receive(b.as_mut(), later(1000 - 360), w);
    assert!(
        matches!(g.result, Err(Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(ref s))) if s.starts_with("future"))
    );
}

#[test]
fn decreasing_timestamp_is_flagged_and_delivered() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    let m1 = msg(ALICE, BOB, "1", "first");
    let m2 = msg(ALICE, BOB, "2", "second");
    let w1 = wire(a.as_mut(), later(1), &m1);
    let w2 = wire(a.as_mut(), later(2), &m2);
    let g = receive(b.as_mut(), later(3), w2);
    g.result.unwrap();
    assert!(g.warnings.is_empty());
    let g = receive(b.as_mut(), later(3), w1);
    g.result.unwrap();
    assert_eq!(g.delivered, vec![m1]);
    assert!(
        matches!(g.warnings.as_slice(), [Warning::Suspicious { reason }] if reason.contains("decreasing timestamp"))
    );
}

#[test]
fn exact_replay_is_refused_and_same_clock_timestamps_increase() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    // Two stanzas at the same virtual instant get distinct timestamps.
    let w1 = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "a"));
    let w2 = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "2", "b"));
    receive(b.as_mut(), later(1), w1.clone()).result.unwrap();
    receive(b.as_mut(), later(1), w2).result.unwrap();
    let g = receive(b.as_mut(), later(60), w1.clone());
    assert!(matches!(
        g.result,
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay))
    ));
    // Later than the window: refused as old.
    let g = receive(b.as_mut(), later(400), w1);
    assert!(matches!(
        g.result,
        Err(Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(_)))
    ));
}

#[test]
fn replay_memory_outlives_the_session() {
    let p = Profile::Classic;
    let client_b = Rfc3923::classic();
    let mut a = session(p, ALICE, BOB);
    let open = |client: &Rfc3923| {
        let mut env = Env::for_party(2, BOB);
        client
            .new_session(
                &mut env,
                SessionConfig {
                    role: Role::Responder,
                    local_jid: e2elab_core::Jid::new(&full(BOB)).unwrap(),
                    peer_jid: e2elab_core::Jid::new(&full(ALICE)).unwrap(),
                    identity: ids(p)[idx(BOB)].clone(),
                    peer_public: Some(ids(p)[idx(ALICE)].public.clone()),
                    options: Options::new(),
                },
            )
            .unwrap()
    };
    let w = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "once"));
    let mut b1 = open(&client_b);
    receive(b1.as_mut(), later(1), w.clone()).result.unwrap();
    // A new session object of the same client still refuses the replay...
    let mut b2 = open(&client_b);
    let g = receive(b2.as_mut(), later(30), w.clone());
    assert!(matches!(
        g.result,
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay))
    ));
    // ...while another client, which never saw it, accepts it.
    let mut other = open(&Rfc3923::classic());
    receive(other.as_mut(), later(30), w).result.unwrap();
}

#[test]
fn wrong_recipient_certificate_is_decryption_failed() {
    let p = Profile::Classic;
    // Alice believes Carol's certificate is Bob's.
    let mut lying = ids(p)[idx(CAROL)].public.clone();
    lying.jid = BOB.into();
    let mut a = session_with(p, ALICE, BOB, lying);
    let mut b = session(p, BOB, ALICE);
    let w = wire(
        a.as_mut(),
        later(1),
        &msg(ALICE, BOB, "1", "for Carol's key"),
    );
    let g = receive(b.as_mut(), later(2), w.clone());
    assert_eq!(g.result, Err(Error::DecryptFailed));
    let reply = errors::error_reply(&w, g.result.as_ref().unwrap_err()).unwrap();
    assert_eq!(
        errors::reported_case(&reply),
        Some(errors::Case::DecryptionFailed)
    );
}

#[test]
fn truncated_cms_is_refused() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    let m = msg(ALICE, BOB, "1", "truncate me");
    let w = wire(a.as_mut(), later(1), &m);
    let der_bytes = unb64(&e2e_text(&w));
    for cut in [
        0,
        1,
        2,
        10,
        100,
        der_bytes.len() / 2,
        der_bytes.len() - 17,
        der_bytes.len() - 1,
    ] {
        let g = receive(
            b.as_mut(),
            later(2),
            with_e2e_text(&w, &b64(&der_bytes[..cut])),
        );
        assert!(g.result.is_err(), "cut at {cut}");
    }
    // Truncated base64 text.
    let t = e2e_text(&w);
    let g = receive(b.as_mut(), later(2), with_e2e_text(&w, &t[..t.len() - 3]));
    assert!(matches!(g.result, Err(Error::Decode(_))));
    // Trailing bytes after the DER object.
    let mut longer = der_bytes.clone();
    longer.extend_from_slice(&[0, 0]);
    assert!(
        receive(b.as_mut(), later(2), with_e2e_text(&w, &b64(&longer)))
            .result
            .is_err()
    );
    // The genuine stanza still goes through afterwards.
    let g = receive(b.as_mut(), later(2), w);
    g.result.unwrap();
    assert_eq!(g.delivered, vec![m]);
}

#[test]
fn inbound_error_stanza_warns() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let w = wire(a.as_mut(), later(1), &msg(ALICE, BOB, "1", "x"));
    let reply = errors::error_reply(&w, &Error::DecryptFailed).unwrap();
    let g = receive(a.as_mut(), later(2), reply);
    g.result.unwrap();
    assert!(g.delivered.is_empty());
    assert!(
        matches!(g.warnings.as_slice(), [Warning::Other(s)] if s.contains("decryption-failed"))
    );
}

#[test]
fn unprotected_stanza_is_marked() {
    let p = Profile::Classic;
    let mut b = session(p, BOB, ALICE);
    let m = msg(ALICE, BOB, "1", "in clear");
    let g = receive(b.as_mut(), later(1), m.clone());
    g.result.unwrap();
    assert!(g.delivered.is_empty());
    assert_eq!(g.unprotected, vec![m]);
    let g = receive(b.as_mut(), later(1), Element::bare("foo", "bar"));
    assert!(matches!(g.result, Err(Error::Decode(_))));
}

#[test]
fn new_session_checks_identities() {
    let p = Rfc3923::classic();
    let mut env = Env::for_party(1, "x");
    let cfg = |peer_public: Option<PublicIdentity>, peer: &str| SessionConfig {
        role: Role::Responder,
        local_jid: e2elab_core::Jid::new(&full(ALICE)).unwrap(),
        peer_jid: e2elab_core::Jid::new(&full(peer)).unwrap(),
        identity: ids(Profile::Classic)[0].clone(),
        peer_public,
        options: Options::new(),
    };
    let bob = ids(Profile::Classic)[1].public.clone();
    assert!(p.new_session(&mut env, cfg(Some(bob.clone()), BOB)).is_ok());
    assert!(matches!(
        p.new_session(&mut env, cfg(None, BOB)),
        Err(Error::Identity(IdentityError::PeerKeyRequired))
    ));
    assert!(matches!(
        p.new_session(&mut env, cfg(Some(bob.clone()), CAROL)),
        Err(Error::Identity(IdentityError::JidMismatch(_)))
    ));
    let mut other = bob.clone();
    other.protocol = "rfc3923-modern".into();
    assert!(p.new_session(&mut env, cfg(Some(other), BOB)).is_err());
    assert!(Rfc3923::modern()
        .new_session(&mut env, cfg(Some(bob), BOB))
        .is_err());
}

#[test]
fn close_drops_the_key_and_refuses_more() {
    let mut a = session(Profile::Classic, ALICE, BOB);
    let mut out = Outbox::new();
    a.close(&mut env_at(t0()), &mut out).unwrap();
    assert_eq!(a.state(), SessionState::Closed);
    assert_eq!(out.pending_transmits(), 0);
    let r = a.send(&mut env_at(t0()), msg(ALICE, BOB, "1", "x"), &mut out);
    assert!(matches!(r, Err(Error::Api(ApiMisuse::Closed))));
    assert!(a
        .handle_inbound(&mut env_at(t0()), msg(BOB, ALICE, "1", "x"), &mut out)
        .is_err());
}

#[test]
fn claims_cover_every_property() {
    for p in [Rfc3923::classic(), Rfc3923::modern()] {
        for prop in Property::ALL {
            assert!(p.info().claim(prop).is_some(), "{prop:?}");
        }
        assert!(p.info().claims(Property::Replay));
        assert!(!p.info().claims(Property::ForwardSecrecy));
    }
    assert_eq!(Rfc3923::classic().info().id, "rfc3923");
    assert_eq!(Rfc3923::modern().info().id, "rfc3923-modern");
}

#[test]
fn unknown_required_header_is_unsupported() {
    // A CPIM object naming a Require we do not implement, signed and
    // encrypted properly by Alice: refused as unsupported, not delivered.
    let p = Profile::Classic;
    let mut b = session(p, BOB, ALICE);
    let akey = cert::load_key(ids(p)[0].secret().expose()).unwrap();
    let bcert = cert::load_cert(&ids(p)[1].public.data).unwrap();
    let m = msg(ALICE, BOB, "1", "x");
    let obj = payload::encode(&m, ALICE, BOB, later(1), "t").unwrap();
    let obj = String::from_utf8(obj).unwrap().replace(
        "DateTime:",
        "NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\nRequire: MyFeatures.VitalMessageOption\r\nDateTime:",
    );
    let sig = cms::sign_detached(
        obj.as_bytes(),
        &ids(p)[0].public.data,
        &akey,
        p.digest(),
        later(1),
        true,
    )
    .unwrap();
    let signed = mime::multipart_signed(obj.as_bytes(), &sig, "bnd", "sha1");
    let e = cms::encrypt(&signed, &bcert, p.cipher()).unwrap();
    let g = receive(b.as_mut(), later(2), with_e2e_text(&m, &b64(&e)));
    assert!(
        matches!(g.result, Err(Error::Unsupported(ref s)) if s.contains("VitalMessageOption")),
        "{:?}",
        g.result
    );
    // Requiring only what we implement is fine.
    let obj = obj.replace("Require: MyFeatures.VitalMessageOption", "Require: Subject");
    let sig = cms::sign_detached(
        obj.as_bytes(),
        &ids(p)[0].public.data,
        &akey,
        p.digest(),
        later(1),
        true,
    )
    .unwrap();
    let signed = mime::multipart_signed(obj.as_bytes(), &sig, "bnd", "sha1");
    let e = cms::encrypt(&signed, &bcert, p.cipher()).unwrap();
    let g = receive(b.as_mut(), later(2), with_e2e_text(&m, &b64(&e)));
    g.result.unwrap();
    assert_eq!(g.delivered, vec![m]);
}

#[test]
fn a_protected_error_stanza_is_delivered() {
    let p = Profile::Classic;
    let mut a = session(p, ALICE, BOB);
    let mut b = session(p, BOB, ALICE);
    let mut iq = stanza::new(StanzaKind::Iq);
    for (k, v) in [
        ("from", full(ALICE)),
        ("to", full(BOB)),
        ("type", "error".into()),
        ("id", "q2".into()),
    ] {
        stanza::set_attr(&mut iq, k, &v).unwrap();
    }
    let mut e = Element::bare("error", NS_CLIENT);
    stanza::set_attr(&mut e, "type", "cancel").unwrap();
    e.append_child(Element::bare("item-not-found", errors::NS_STANZAS));
    iq.append_child(e);
    let w = wire(a.as_mut(), later(1), &iq);
    assert!(
        !w.has_child("error", NS_CLIENT),
        "the error itself is protected"
    );
    let g = receive(b.as_mut(), later(2), w);
    g.result.unwrap();
    assert_eq!(g.delivered, vec![iq]);
    assert!(g.warnings.is_empty());
}
