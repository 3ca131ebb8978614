//! Session behaviour of both profiles: the DECISIONS of the crate docs, typed
//! errors, replay, op counts, identities, key types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab_core::ops::OpClass::{self, Modexp, PkDecrypt, PkEncrypt, Sign, Verify};
use e2elab_core::{
    stanza, DecodeError, Element, Env, Error, Event, Identity, IdentityError, Options, Outbox,
    PeerMisbehaved, Protocol, Role, Session, SessionConfig, StanzaKind, Timestamp, Warning,
};
use e2elab_openpgp::openpgp::parse::{PacketParser, PacketParserResult, Parse};
use e2elab_openpgp::openpgp::types::SignatureType;
use e2elab_openpgp::openpgp::Packet;
use e2elab_openpgp::{armor, jep0027, ox, pgp, Jep0027, KeyAlgo, Ox};
use std::sync::Arc;

const A: &str = "alice@example.org/lab";
const B: &str = "bob@example.net/lab";
const C: &str = "carol@example.com/lab";

/// Delivered, delivered-unprotected, warnings.
type Received = (Vec<Element>, Vec<Element>, Vec<Warning>);

struct Party {
    id: Identity,
    s: Box<dyn Session>,
    env: Env,
    out: Outbox,
    /// Every operation this party's session calls recorded.
    ops: e2elab_core::OpLog,
}

fn ident(proto: &dyn Protocol, jid: &str) -> Identity {
    let mut e = Env::for_party(9, jid);
    proto
        .generate_identity(&mut e, stanza::bare_jid(jid))
        .unwrap()
}

fn open(
    proto: &dyn Protocol,
    me: &str,
    my_id: &Identity,
    peer: &str,
    peer_id: &Identity,
    opts: Options,
) -> Party {
    let mut env = Env::for_party(7, me);
    let s = proto
        .new_session(
            &mut env,
            SessionConfig {
                role: Role::Initiator,
                local_jid: e2elab_core::Jid::new(me).unwrap(),
                peer_jid: e2elab_core::Jid::new(peer).unwrap(),
                identity: Arc::new(my_id.clone()),
                peer_public: Some(peer_id.public.clone()),
                options: opts,
            },
        )
        .unwrap();
    env.advance(std::time::Duration::from_secs(1));
    Party {
        id: my_id.clone(),
        s,
        env,
        out: Outbox::new(),
        ops: e2elab_core::OpLog::new(),
    }
}

fn pair_with(proto: &dyn Protocol, opts: Options) -> (Party, Party) {
    let ia = ident(proto, A);
    let ib = ident(proto, B);
    (
        open(proto, A, &ia, B, &ib, opts.clone()),
        open(proto, B, &ib, A, &ia, opts),
    )
}

fn pair(proto: &dyn Protocol) -> (Party, Party) {
    pair_with(proto, Options::new())
}

impl Party {
    fn send(&mut self, st: Element) -> Element {
        let (r, ops) = e2elab_core::ops::recorded(|| self.s.send(&mut self.env, st, &mut self.out));
        self.ops.merge(&ops);
        r.unwrap();
        let w = self.out.poll_transmit().unwrap();
        assert!(self.out.poll_transmit().is_none());
        w
    }

    /// Feed a stanza; return (delivered, delivered-unprotected, warnings).
    fn recv(&mut self, st: Element) -> Result<Received, Error> {
        let before = self.out.checkpoint();
        let state = self.s.state();
        let (r, ops) =
            e2elab_core::ops::recorded(|| self.s.handle_inbound(&mut self.env, st, &mut self.out));
        self.ops.merge(&ops);
        if let Err(e) = r {
            assert_eq!(self.out.checkpoint(), before, "error must emit nothing");
            assert_eq!(self.s.state(), state, "error must not change state");
            return Err(e);
        }
        let (mut d, mut u, mut w) = (vec![], vec![], vec![]);
        while let Some(ev) = self.out.poll_event() {
            match ev {
                Event::Delivered { stanza: x, .. } => d.push(x),
                Event::DeliveredUnprotected(x) => u.push(x),
                Event::Warning(x) => w.push(x),
                _ => {}
            }
        }
        Ok((d, u, w))
    }

    /// Receive `st`, which must give one protected delivery, and check its label.
    fn recv_labelled(&mut self, st: Element, check: impl FnOnce(&e2elab_core::Protection)) {
        self.s
            .handle_inbound(&mut self.env, st, &mut self.out)
            .unwrap();
        let mut labels = Vec::new();
        while let Some(ev) = self.out.poll_event() {
            if let Event::Delivered { protection, .. } = ev {
                labels.push(protection);
            }
        }
        assert_eq!(labels.len(), 1, "{labels:?}");
        check(&labels[0]);
    }

    fn cert(&self) -> e2elab_openpgp::openpgp::Cert {
        pgp::parse_tsk(self.id.secret().expose()).unwrap()
    }
}

fn msg(from: &str, to: &str, body: &str) -> Element {
    stanza::chat_message(from, to, "id1", body).unwrap()
}

fn presence(from: &str, statuses: &[&str]) -> Element {
    let mut p = stanza::new(StanzaKind::Presence);
    stanza::set_attr(&mut p, "from", from).unwrap();
    for s in statuses {
        p.append_child(stanza::text_element("status", stanza::NS_CLIENT, s));
    }
    p
}

fn first_packets(bin: &[u8]) -> Vec<Packet> {
    let mut v = Vec::new();
    let mut ppr = PacketParser::from_bytes(bin).unwrap();
    while let PacketParserResult::Some(pp) = ppr {
        let (p, next) = pp.next().unwrap();
        v.push(p);
        ppr = next;
    }
    v
}

fn x_of(wire: &Element, ns: &str) -> String {
    wire.get_child("x", ns).unwrap().text()
}

// ---------------------------------------------------------------- jep0027

#[test]
fn jep0027_message_wire_form() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let mut m = msg(A, B, "Hi");
    m.append_child(stanza::text_element("subject", stanza::NS_CLIENT, "leaks"));
    let wire = a.send(m.clone());
    // Placeholder body in place, everything else untouched, <x> appended.
    assert_eq!(stanza::body(&wire).as_deref(), Some(jep0027::PLACEHOLDER));
    assert_eq!(
        wire.get_child("subject", stanza::NS_CLIENT).unwrap().text(),
        "leaks"
    );
    let x = x_of(&wire, jep0027::NS_ENCRYPTED);
    assert!(!x.contains("BEGIN") && !x.contains("Version") && !x.contains("END"));
    assert!(x.lines().last().unwrap().starts_with('='), "CRC line kept");
    // The OpenPGP message: PKESK v3 to Bob only, SEIPDv1 (gpg 2.2 readable).
    let bin = armor::decode(armor::ArmorKind::Message, &x).unwrap();
    let pk = first_packets(&bin);
    let pkesks: Vec<_> = pk
        .iter()
        .filter(|p| matches!(p, Packet::PKESK(_)))
        .collect();
    assert_eq!(pkesks.len(), 1);
    assert!(pk
        .iter()
        .any(|p| matches!(p, Packet::SEIP(s) if s.version() == 1)));
    let (d, u, _) = b.recv(wire).unwrap();
    assert_eq!(d, vec![m]);
    assert!(u.is_empty());
}

#[test]
fn jep0027_decision_encrypt_to_self_option() {
    let (mut a, _b) = pair_with(
        &Jep0027::default(),
        Options::new().set("encrypt_to_self", "true"),
    );
    let wire = a.send(msg(A, B, "to both"));
    let bin = armor::decode(
        armor::ArmorKind::Message,
        &x_of(&wire, jep0027::NS_ENCRYPTED),
    )
    .unwrap();
    let n = first_packets(&bin)
        .iter()
        .filter(|p| matches!(p, Packet::PKESK(_)))
        .count();
    assert_eq!(n, 2);
    // Alice can read her own sent body back with her own key.
    let me = a.cert();
    let plain = pgp::decrypt(&bin, &me, &me, pgp::SigRule::Ignore, a.env.now(), false).unwrap();
    assert_eq!(&plain[..], b"to both");
    assert_eq!(a.ops.calls_in(OpClass::PkEncrypt), 2);
}

#[test]
fn jep0027_decision_placeholder_option_and_bad_options() {
    let (mut a, mut b) = pair_with(
        &Jep0027::default(),
        Options::new().set("placeholder", "[encrypted]"),
    );
    let m = msg(A, B, "x");
    let wire = a.send(m.clone());
    assert_eq!(stanza::body(&wire).as_deref(), Some("[encrypted]"));
    assert_eq!(b.recv(wire).unwrap().0, vec![m]);
    let ia = ident(&Jep0027::default(), A);
    let r = Jep0027::default().new_session(
        &mut Env::for_party(1, "x"),
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(A).unwrap(),
            peer_jid: e2elab_core::Jid::new(B).unwrap(),
            identity: Arc::new(ia.clone()),
            peer_public: Some(ia.public.clone()),
            options: Options::new().set("nope", "1"),
        },
    );
    assert!(matches!(r, Err(Error::Api(_))));
}

#[test]
fn jep0027_presence_signed_over_status_text_mode_detached() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let mut p = presence(A, &["Out to lunch"]);
    p.append_child(stanza::text_element("show", stanza::NS_CLIENT, "away"));
    let wire = a.send(p.clone());
    let x = x_of(&wire, jep0027::NS_SIGNED);
    let bin = armor::decode(armor::ArmorKind::Signature, &x).unwrap();
    let pk = first_packets(&bin);
    assert_eq!(
        pk.len(),
        1,
        "a detached signature: one signature packet, no literal data"
    );
    match &pk[0] {
        Packet::Signature(s) => assert_eq!(s.typ(), SignatureType::Text),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv(wire.clone()).unwrap().0, vec![p.clone()]);
    // Integrity covers only the <status> text: <show> can be changed at will...
    let mut w2 = wire.clone();
    let show = w2.get_child_mut("show", stanza::NS_CLIENT).unwrap();
    let _ = show.take_nodes();
    show.append_text("dnd");
    let (d, _, _) = b.recv(w2).unwrap();
    assert_eq!(
        d[0].get_child("show", stanza::NS_CLIENT).unwrap().text(),
        "dnd"
    );
    // ...but a changed status is a typed bad signature.
    let mut w3 = wire;
    let st = w3.get_child_mut("status", stanza::NS_CLIENT).unwrap();
    let _ = st.take_nodes();
    st.append_text("Online");
    assert_eq!(
        b.recv(w3).unwrap_err(),
        Error::PeerMisbehaved(PeerMisbehaved::BadSignature)
    );
}

#[test]
fn jep0027_decision_no_status_signs_empty_string_and_first_status_only() {
    let (mut a, mut b) = pair(&Jep0027::default());
    // No <status>: signed over the empty string.
    let p = presence(A, &[]);
    let wire = a.send(p.clone());
    assert!(wire.has_child("x", jep0027::NS_SIGNED));
    assert_eq!(b.recv(wire.clone()).unwrap().0, vec![p]);
    // Adding a status afterwards breaks it.
    let mut w = wire;
    w.append_child(stanza::text_element(
        "status",
        stanza::NS_CLIENT,
        "injected",
    ));
    assert!(matches!(
        b.recv(w),
        Err(Error::PeerMisbehaved(PeerMisbehaved::BadSignature))
    ));
    // Several <status>: the first (document order) is signed, the others are not.
    let p = presence(A, &["first", "second"]);
    let wire = a.send(p.clone());
    let mut w = wire.clone();
    let second = w
        .children_mut()
        .filter(|c| c.is("status", stanza::NS_CLIENT))
        .nth(1)
        .unwrap();
    let _ = second.take_nodes();
    second.append_text("changed");
    assert!(b.recv(w).is_ok(), "the second status is unprotected");
    let mut w = wire;
    let first = w.get_child_mut("status", stanza::NS_CLIENT).unwrap();
    let _ = first.take_nodes();
    first.append_text("changed");
    assert!(b.recv(w).is_err());
}

#[test]
fn jep0027_decision_bodyless_message_passes_in_clear_and_is_delivered_unprotected() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let mut m = stanza::new(StanzaKind::Message);
    stanza::set_attr(&mut m, "to", B).unwrap();
    m.append_child(Element::bare(
        "composing",
        "http://jabber.org/protocol/chatstates",
    ));
    let wire = a.send(m.clone());
    assert_eq!(wire, m, "nothing the spec encrypts: sent as is");
    assert_eq!(a.ops.public_key_calls(), 0);
    // Nothing protected it: delivered as unprotected, with the warning
    // every profile gives (issue 16.4; before, it came as a protected delivery).
    let unprotected_warning = |w: &[Warning]| {
        w.iter()
            .any(|w| matches!(w, Warning::UnprotectedStanza { .. }))
    };
    let (d, u, w) = b.recv(wire).unwrap();
    assert!(d.is_empty());
    assert_eq!(u, vec![m]);
    assert!(unprotected_warning(&w), "{w:?}");
    // A body without <x xmlns='jabber:x:encrypted'>: an ordinary clear message.
    let clear = msg(A, B, "in clear");
    let (d, u, w) = b.recv(clear.clone()).unwrap();
    assert!(d.is_empty());
    assert_eq!(u, vec![clear]);
    assert!(unprotected_warning(&w), "{w:?}");
    // An unsigned presence: unprotected.
    let (d, u, w) = b.recv(presence(A, &["s"])).unwrap();
    assert!(d.is_empty() && u.len() == 1);
    assert!(unprotected_warning(&w), "{w:?}");
}

#[test]
fn jep0027_decision_refuses_several_bodies_iq_and_double_protection() {
    let (mut a, _b) = pair(&Jep0027::default());
    let mut m = msg(A, B, "one");
    let mut other = stanza::text_element("body", stanza::NS_CLIENT, "two");
    stanza::set_attr(&mut other, "lang", "de").unwrap();
    m.append_child(other);
    let e = a.s.send(&mut a.env, m, &mut a.out).unwrap_err();
    assert_eq!(e.kind(), "api_misuse");
    let iq = stanza::new(StanzaKind::Iq);
    assert_eq!(
        a.s.send(&mut a.env, iq, &mut a.out).unwrap_err().kind(),
        "api_misuse"
    );
    let mut m = msg(A, B, "x");
    m.append_child(Element::bare("x", jep0027::NS_ENCRYPTED));
    assert!(a.s.send(&mut a.env, m, &mut a.out).is_err());
    assert_eq!(a.out.pending_transmits(), 0);
}

#[test]
fn jep0027_accepts_replay_and_any_addressing() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let m = msg(A, B, "say it twice");
    let wire = a.send(m.clone());
    assert_eq!(b.recv(wire.clone()).unwrap().0, vec![m.clone()]);
    // Replay: delivered again (the spec has no protection, §4).
    assert_eq!(b.recv(wire.clone()).unwrap().0, vec![m.clone()]);
    // No recipient binding: the same ciphertext "from" someone else, to someone else, is accepted.
    let mut moved = wire;
    stanza::set_attr(&mut moved, "from", C).unwrap();
    stanza::set_attr(&mut moved, "to", "dave@example.com").unwrap();
    let (d, _, _) = b.recv(moved).unwrap();
    assert_eq!(stanza::body(&d[0]).as_deref(), Some("say it twice"));
    assert_eq!(d[0].attr("from"), Some(C));
}

#[test]
fn jep0027_typed_errors() {
    let proto = Jep0027::default();
    let (mut a, mut b) = pair(&proto);
    // Wrong recipient: Alice encrypts to Carol's key; Bob cannot be the reader.
    let ic = ident(&proto, C);
    let mut to_carol = open(&proto, A, &a.id.clone(), C, &ic, Options::new());
    let wire = to_carol.send(msg(A, C, "for Carol"));
    assert!(matches!(
        b.recv(wire),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    // Unknown key: a presence signed by Carol, whom Bob does not know.
    let mut carol = open(&proto, C, &ic, B, &b.id.clone(), Options::new());
    let wire = carol.send(presence(C, &["hi"]));
    assert!(matches!(
        b.recv(wire),
        Err(Error::Identity(IdentityError::UnknownKey(_)))
    ));
    // Bad signature: a status changed after signing.
    let mut wire = a.send(presence(A, &["genuine"]));
    let st = wire.get_child_mut("status", stanza::NS_CLIENT).unwrap();
    let _ = st.take_nodes();
    st.append_text("forged");
    assert_eq!(
        b.recv(wire).unwrap_err(),
        PeerMisbehaved::BadSignature.into()
    );
    // Corrupted armor: one radix-64 character changed (the CRC-24 catches it).
    let wire = a.send(msg(A, B, "armor"));
    let x = x_of(&wire, jep0027::NS_ENCRYPTED);
    let mut chars: Vec<char> = x.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    let mut bad = wire.clone();
    let xe = bad.get_child_mut("x", jep0027::NS_ENCRYPTED).unwrap();
    let _ = xe.take_nodes();
    xe.append_text(chars.into_iter().collect::<String>());
    assert!(matches!(
        b.recv(bad),
        Err(Error::Decode(DecodeError::Invalid { .. }))
    ));
    // Armor sent with its header lines (not stripped as the spec says): rejected.
    let mut full = wire.clone();
    let xe = full.get_child_mut("x", jep0027::NS_ENCRYPTED).unwrap();
    let _ = xe.take_nodes();
    xe.append_text(format!(
        "-----BEGIN PGP MESSAGE-----\n\n{x}\n-----END PGP MESSAGE-----"
    ));
    assert!(matches!(b.recv(full), Err(Error::Decode(_))));
    // Ciphertext modified but CRC recomputed: the MDC fails, opaque error.
    let mut bin = armor::decode(armor::ArmorKind::Message, &x).unwrap();
    let n = bin.len();
    bin[n - 5] ^= 1;
    let mut modded = wire.clone();
    let xe = modded.get_child_mut("x", jep0027::NS_ENCRYPTED).unwrap();
    let _ = xe.take_nodes();
    xe.append_text(armor::strip_body(&bin));
    assert_eq!(b.recv(modded).unwrap_err(), Error::DecryptFailed);
    // The genuine one still goes through.
    assert_eq!(b.recv(wire).unwrap().0.len(), 1);
}

#[test]
fn jep0027_op_counts_per_message() {
    let (mut a, mut b) = pair(&Jep0027::default());
    for i in 0..3 {
        let w = a.send(msg(A, B, &format!("m{i}")));
        b.recv(w).unwrap();
    }
    let w = a.send(presence(A, &["s"]));
    b.recv(w).unwrap();
    let classes = |l: &e2elab_core::OpLog| {
        [PkEncrypt, Sign, PkDecrypt, Verify, Modexp].map(|c| l.calls_in(c))
    };
    assert_eq!(classes(&a.ops), [3, 1, 0, 0, 0]);
    assert_eq!(classes(&b.ops), [0, 0, 3, 1, 0]);
    // Sequoia's RSA private-key operations run without CRT.
    let dec = b.ops.get(&e2elab_core::Op::RsaDecrypt {
        bits: 2048,
        crt: false,
    });
    assert_eq!((dec.calls, dec.derived), (3, false));
    // The SEIPD symmetric work is derived, over at least the bodies.
    assert!(b
        .ops
        .iter()
        .any(|(o, t)| matches!(o, e2elab_core::Op::Cipher { decrypt: true, .. }) && t.derived));
}

#[test]
fn jep0027_established_without_handshake_and_close() {
    let (mut a, _b) = pair(&Jep0027::default());
    assert_eq!(a.s.state(), e2elab_core::SessionState::Established);
    a.s.start(&mut a.env, &mut a.out).unwrap();
    assert_eq!(
        a.out.pending_transmits(),
        0,
        "start emits nothing on the wire"
    );
    match a.out.poll_event() {
        Some(Event::Established(pi)) => {
            assert_eq!(pi.jid, "bob@example.net");
            assert_eq!(pi.fingerprint, _b.id.public.fingerprint);
        }
        other => panic!("{other:?}"),
    }
    a.s.close(&mut a.env, &mut a.out).unwrap();
    assert!(a.s.send(&mut a.env, msg(A, B, "x"), &mut a.out).is_err());
}

#[test]
fn jep0027_key_types() {
    for algo in [KeyAlgo::Rsa(1024), KeyAlgo::Rsa(3072), KeyAlgo::Cv25519] {
        let proto = Jep0027::with_key(algo);
        let (mut a, mut b) = pair(&proto);
        let m = msg(A, B, &format!("with {}", algo.name()));
        let w = a.send(m.clone());
        assert_eq!(b.recv(w).unwrap().0, vec![m], "{algo:?}");
        let p = presence(A, &["s"]);
        let w = a.send(p.clone());
        assert_eq!(b.recv(w).unwrap().0, vec![p], "{algo:?}");
    }
    assert_eq!(Jep0027::default().key(), KeyAlgo::Rsa(2048));
    let o = Jep0027::from_options(&Options::new().set("key", "rsa4096")).unwrap();
    assert_eq!(o.key(), KeyAlgo::Rsa(4096));
    assert!(Jep0027::from_options(&Options::new().set("key", "dsa")).is_err());
}

#[test]
fn rsa4096_identity() {
    let id = ident(&Jep0027::with_key(KeyAlgo::Rsa(4096)), A);
    let cert = pgp::parse_cert(&id.public.data).unwrap();
    use e2elab_openpgp::openpgp::crypto::mpi::PublicKey;
    match cert.primary_key().key().mpis() {
        PublicKey::RSA { n, .. } => assert_eq!(n.bits(), 4096),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- identities

#[test]
fn identity_provisioning() {
    let proto = Jep0027::default();
    let id = ident(&proto, A);
    assert_eq!(id.public.protocol, "jep0027");
    assert_eq!(id.public.jid, "alice@example.org");
    let cert = pgp::parse_cert(&id.public.data).unwrap();
    assert!(!cert.is_tsk(), "public data carries no secret");
    assert_eq!(
        id.public.fingerprint.as_deref(),
        Some(cert.fingerprint().to_hex().as_str())
    );
    assert_eq!(id.public.fingerprint.as_ref().unwrap().len(), 40);
    assert!(pgp::has_xmpp_uid(&cert, "alice@example.org"));
    // Created on the virtual clock.
    assert_eq!(
        cert.primary_key().key().creation_time(),
        pgp::system_time(Timestamp::DEFAULT_START)
    );
    // Import of the armored form gives the same public identity.
    let armored = armor::armor(armor::ArmorKind::Message, &id.public.data)
        .replace("PGP MESSAGE", "PGP PUBLIC KEY BLOCK");
    let imp =
        e2elab_openpgp::import_public("jep0027", "alice@example.org", armored.as_bytes()).unwrap();
    assert_eq!(imp, id.public);
    // Lookup by key id: primary or subkey.
    let certs = vec![cert.clone()];
    let sub = cert.keys().subkeys().next().unwrap().key().keyid().to_hex();
    assert!(e2elab_openpgp::lookup_by_key_id(&certs, &sub).is_some());
    assert!(
        e2elab_openpgp::lookup_by_key_id(&certs, &cert.keyid().to_hex().to_lowercase()).is_some()
    );
    assert!(e2elab_openpgp::lookup_by_key_id(&certs, "0000000000000000").is_none());
    // Debug never prints the secret.
    let dbg = format!("{id:?}");
    assert!(dbg.contains("redacted"));
    // Garbage and wrong-protocol identities are typed errors.
    assert!(matches!(
        e2elab_openpgp::import_public("jep0027", "x@y", b"garbage"),
        Err(Error::Identity(IdentityError::Malformed(_)))
    ));
    let r = Ox::default().new_session(
        &mut Env::for_party(1, "x"),
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(A).unwrap(),
            peer_jid: e2elab_core::Jid::new(B).unwrap(),
            identity: Arc::new(id.clone()),
            peer_public: Some(id.public.clone()),
            options: Options::new(),
        },
    );
    assert!(matches!(
        r,
        Err(Error::Identity(IdentityError::WrongProtocol { .. }))
    ));
    let r = proto.new_session(
        &mut Env::for_party(1, "x"),
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(A).unwrap(),
            peer_jid: e2elab_core::Jid::new(B).unwrap(),
            identity: Arc::new(id),
            peer_public: None,
            options: Options::new(),
        },
    );
    assert!(matches!(
        r,
        Err(Error::Identity(IdentityError::PeerKeyRequired))
    ));
}

// ---------------------------------------------------------------- OX

#[test]
fn ox_wire_form_and_round_trip() {
    let (mut a, mut b) = pair(&Ox::default());
    let mut m = msg(A, B, "secret");
    m.append_child(stanza::text_element(
        "subject",
        stanza::NS_CLIENT,
        "hidden too",
    ));
    m.append_child(Element::bare(
        "active",
        "http://jabber.org/protocol/chatstates",
    ));
    let wire = a.send(m.clone());
    // Outer: the attributes, the hints and <openpgp>; nothing of the original content.
    assert_eq!(wire.attr("to"), Some(B));
    assert_eq!(stanza::body(&wire).as_deref(), Some(ox::PLACEHOLDER));
    assert!(wire.has_child("store", ox::NS_HINTS));
    assert_eq!(
        wire.get_child("encryption", ox::NS_EME)
            .unwrap()
            .attr("namespace"),
        Some(ox::NS_OX)
    );
    assert!(!stanza::serialize(&wire).contains("hidden too"));
    let (d, _, w) = b.recv(wire).unwrap();
    assert_eq!(d, vec![m]);
    assert!(w.is_empty());
    // Sender: 1 signature + 2 key transports (peer and self); receiver: 1 decryption + 1 verification.
    assert_eq!((a.ops.calls_in(Sign), a.ops.calls_in(PkEncrypt)), (1, 2));
    assert_eq!((b.ops.calls_in(PkDecrypt), b.ops.calls_in(Verify)), (1, 1));
    assert_eq!(a.ops.get(&e2elab_core::Op::Ed25519Sign).calls, 1);
}

#[test]
fn ox_decision_hints_option() {
    let (mut a, mut b) = pair_with(&Ox::default(), Options::new().set("hints", "false"));
    let m = msg(A, B, "no hints");
    let wire = a.send(m.clone());
    assert_eq!(wire.children().count(), 1);
    assert!(wire.has_child("openpgp", ox::NS_OX));
    assert_eq!(b.recv(wire).unwrap().0, vec![m]);
}

#[test]
fn ox_decision_rpad_from_env_reproducible() {
    // Same seed, same padding (Sequoia's own randomness differs; the rpad does not).
    let mut e1 = Env::for_party(3, "x");
    let mut e2 = Env::for_party(3, "x");
    let lens: Vec<usize> = (0..200)
        .map(|_| {
            let (p1, p2) = (ox_rpad(&mut e1), ox_rpad(&mut e2));
            assert_eq!(p1, p2);
            p1.len()
        })
        .collect();
    assert!(lens.iter().all(|l| (1..=ox::RPAD_MAX).contains(l)));
    assert!(
        lens.iter().min() < Some(&40) && lens.iter().max() > Some(&200),
        "{lens:?}"
    );
}

fn ox_rpad(env: &mut Env) -> String {
    // Observe the rpad through a full send, decrypted with the recipient's key.
    let proto = Ox::default();
    thread_local! {
        static IDS: (Identity, Identity) = (ident(&Ox::default(), A), ident(&Ox::default(), B));
    }
    IDS.with(|(ia, ib)| {
        let mut s = proto
            .new_session(
                &mut Env::for_party(1, "s"),
                SessionConfig {
                    role: Role::Initiator,
                    local_jid: e2elab_core::Jid::new(A).unwrap(),
                    peer_jid: e2elab_core::Jid::new(B).unwrap(),
                    identity: Arc::new(ia.clone()),
                    peer_public: Some(ib.public.clone()),
                    options: Options::new(),
                },
            )
            .unwrap();
        let mut out = Outbox::new();
        s.send(env, msg(A, B, "p"), &mut out).unwrap();
        let w = out.poll_transmit().unwrap();
        let sc = decrypt_ox(&w, ib, ia);
        sc.get_child("rpad", ox::NS_OX).unwrap().text()
    })
}

fn decrypt_ox(wire: &Element, me: &Identity, peer: &Identity) -> Element {
    use base64::Engine;
    let b64 = wire.get_child("openpgp", ox::NS_OX).unwrap().text();
    let bin = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    let own = pgp::parse_tsk(me.secret().expose()).unwrap();
    let peer = pgp::parse_cert(&peer.public.data).unwrap();
    let plain = pgp::decrypt(
        &bin,
        &own,
        &peer,
        pgp::SigRule::RequirePeer,
        Timestamp::DEFAULT_START.plus(std::time::Duration::from_secs(5)),
        false,
    )
    .unwrap();
    std::str::from_utf8(&plain).unwrap().parse().unwrap()
}

/// Alice signs and encrypts an arbitrary content element to Bob.
fn craft(a: &Party, b: &Party, content: &Element, outer_to: &str) -> Element {
    use base64::Engine;
    let own = a.cert();
    let peer = pgp::parse_cert(&b.id.public.data).unwrap();
    let ct = pgp::encrypt(
        stanza::serialize(content).as_bytes(),
        &[&peer],
        Some(&own),
        a.env.now(),
    )
    .unwrap();
    let mut m = stanza::new(StanzaKind::Message);
    stanza::set_attr(&mut m, "from", A).unwrap();
    stanza::set_attr(&mut m, "to", outer_to).unwrap();
    m.append_child(stanza::text_element(
        "openpgp",
        ox::NS_OX,
        &base64::engine::general_purpose::STANDARD.encode(ct),
    ));
    m
}

fn content(name: &str, to: Option<&str>, stamp: Option<&str>) -> Element {
    let mut sc = Element::bare(name, ox::NS_OX);
    if let Some(t) = to {
        let mut e = Element::bare("to", ox::NS_OX);
        stanza::set_attr(&mut e, "jid", t).unwrap();
        sc.append_child(e);
    }
    if let Some(s) = stamp {
        let mut e = Element::bare("time", ox::NS_OX);
        stanza::set_attr(&mut e, "stamp", s).unwrap();
        sc.append_child(e);
    }
    sc.append_child(stanza::text_element("rpad", ox::NS_OX, "pad"));
    let mut p = Element::bare("payload", ox::NS_OX);
    p.append_child(stanza::text_element("body", stanza::NS_CLIENT, "crafted"));
    sc.append_child(p);
    sc
}

#[test]
fn ox_rejects_wrong_to() {
    let proto = Ox::default();
    let (a, mut b) = pair(&proto);
    let now = a.env.now().to_rfc3339();
    // Well-formed control: accepted.
    let ok = craft(
        &a,
        &b,
        &content("signcrypt", Some("bob@example.net"), Some(&now)),
        B,
    );
    assert_eq!(
        stanza::body(&b.recv(ok).unwrap().0[0]).as_deref(),
        Some("crafted")
    );
    // Case-insensitive bare-JID comparison (ASCII fold).
    let ok = craft(
        &a,
        &b,
        &content("signcrypt", Some("Bob@Example.NET"), Some(&now)),
        B,
    );
    assert!(b.recv(ok).is_ok());
    // Surreptitious forwarding: signed for Carol, re-encrypted to Bob.
    let fwd = craft(
        &a,
        &b,
        &content("signcrypt", Some("carol@example.com"), Some(&now)),
        B,
    );
    assert!(matches!(
        b.recv(fwd),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    // Outer 'to' not among the signed <to>s.
    let odd = craft(
        &a,
        &b,
        &content("signcrypt", Some("bob@example.net"), Some(&now)),
        C,
    );
    assert!(matches!(
        b.recv(odd),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    // Outer 'from' of another JID than the key's.
    let mut w = a_send(&a, &b);
    stanza::set_attr(&mut w, "from", C).unwrap();
    assert!(matches!(
        b.recv(w),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
}

fn a_send(a: &Party, b: &Party) -> Element {
    let mut a2 = open(&Ox::default(), A, &a.id, B, &b.id, Options::new());
    a2.send(msg(A, B, "from a"))
}

#[test]
fn ox_structure_rules() {
    let (a, mut b) = pair(&Ox::default());
    let now = a.env.now().to_rfc3339();
    for (what, c) in [
        (
            "sign element",
            content("sign", Some("bob@example.net"), Some(&now)),
        ),
        (
            "crypt element",
            content("crypt", Some("bob@example.net"), Some(&now)),
        ),
        ("no to", content("signcrypt", None, Some(&now))),
        (
            "no time",
            content("signcrypt", Some("bob@example.net"), None),
        ),
        (
            "bad time",
            content("signcrypt", Some("bob@example.net"), Some("yesterday")),
        ),
    ] {
        let w = craft(&a, &b, &c, B);
        assert!(matches!(b.recv(w), Err(Error::Decode(_))), "{what}");
    }
    // Not XML at all inside a valid signed message.
    use base64::Engine;
    let own = a.cert();
    let peer = pgp::parse_cert(&b.id.public.data).unwrap();
    let ct = pgp::encrypt(b"not xml", &[&peer], Some(&own), a.env.now()).unwrap();
    let mut m = stanza::new(StanzaKind::Message);
    m.append_child(stanza::text_element(
        "openpgp",
        ox::NS_OX,
        &base64::engine::general_purpose::STANDARD.encode(ct),
    ));
    assert!(matches!(b.recv(m), Err(Error::Decode(_))));
    // Unsigned: bad signature.
    let ct = pgp::encrypt(
        stanza::serialize(&content("signcrypt", Some("bob@example.net"), Some(&now))).as_bytes(),
        &[&peer],
        None,
        a.env.now(),
    )
    .unwrap();
    let mut m = stanza::new(StanzaKind::Message);
    m.append_child(stanza::text_element(
        "openpgp",
        ox::NS_OX,
        &base64::engine::general_purpose::STANDARD.encode(ct),
    ));
    assert_eq!(b.recv(m).unwrap_err(), PeerMisbehaved::BadSignature.into());
    // Not base64.
    let mut m = stanza::new(StanzaKind::Message);
    m.append_child(stanza::text_element("openpgp", ox::NS_OX, "!!!"));
    assert!(matches!(b.recv(m), Err(Error::Decode(_))));
}

#[test]
fn ox_unknown_signer_and_wrong_recipient() {
    let proto = Ox::default();
    let (a, mut b) = pair(&proto);
    let ic = ident(&proto, C);
    // Carol signs (Bob does not know her key), encrypted to Bob.
    let carol = open(&proto, C, &ic, B, &b.id.clone(), Options::new());
    let mut w = craft(
        &carol,
        &b,
        &content(
            "signcrypt",
            Some("bob@example.net"),
            Some(&a.env.now().to_rfc3339()),
        ),
        B,
    );
    stanza::set_attr(&mut w, "from", A).unwrap();
    assert!(matches!(
        b.recv(w),
        Err(Error::Identity(IdentityError::UnknownKey(_)))
    ));
    // Encrypted to Carol only.
    let mut to_c = open(&proto, A, &a.id.clone(), C, &ic, Options::new());
    let w = to_c.send(msg(A, C, "x"));
    let mut w2 = w.clone();
    stanza::set_attr(&mut w2, "to", B).unwrap();
    // (Alice also encrypts to herself; neither key is Bob's.)
    assert!(matches!(
        b.recv(w2),
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    // The peer's certificate must carry xmpp:<peer JID>.
    let r = proto.new_session(
        &mut Env::for_party(1, "x"),
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(A).unwrap(),
            peer_jid: e2elab_core::Jid::new("mallory@example.org/x").unwrap(),
            identity: Arc::new(a.id.clone()),
            peer_public: Some(b.id.public.clone()),
            options: Options::new(),
        },
    );
    assert!(matches!(
        r,
        Err(Error::Identity(IdentityError::JidMismatch(_)))
    ));
}

#[test]
fn ox_decision_time_reported_outside_window() {
    let (mut a, mut b) = pair_with(&Ox::default(), Options::new().set("time_window", "60"));
    let m = msg(A, B, "late");
    let wire = a.send(m.clone());
    // Within the window: no warning.
    b.env.advance(std::time::Duration::from_secs(59));
    let (d, _, w) = b.recv(wire.clone()).unwrap();
    assert_eq!(d, vec![m.clone()]);
    assert!(w.is_empty());
    // A replay (or a delayed offline message) an hour later: delivered, with a warning naming the time.
    b.env.advance(std::time::Duration::from_secs(3600));
    let (d, _, w) = b.recv(wire.clone()).unwrap();
    assert_eq!(d, vec![m.clone()]);
    match &w[..] {
        [Warning::Suspicious { reason }] => {
            assert!(reason.contains(&a.env.now().to_rfc3339()), "{reason}");
            assert!(reason.contains("behind"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A <time> from the future (the OpenPGP signature itself made now): warned too.
    let (a, mut b) = pair(&Ox::default());
    let future = a
        .env
        .now()
        .plus(std::time::Duration::from_secs(3600))
        .to_rfc3339();
    let w = craft(
        &a,
        &b,
        &content("signcrypt", Some("bob@example.net"), Some(&future)),
        B,
    );
    let (d, _, warns) = b.recv(w).unwrap();
    assert_eq!(d.len(), 1);
    assert!(matches!(&warns[..], [Warning::Suspicious { reason }] if reason.contains("ahead")));
    // An OpenPGP signature made an hour in the receiver's future is refused by
    // Sequoia (not yet valid): a typed bad signature, not a warning.
    let (mut a, mut b) = pair(&Ox::default());
    a.env.advance(std::time::Duration::from_secs(3600));
    let w = a.send(m);
    assert_eq!(b.recv(w).unwrap_err(), PeerMisbehaved::BadSignature.into());
}

#[test]
fn ox_refuses_presence_and_iq_and_passes_them_inbound_unprotected() {
    let (mut a, mut b) = pair(&Ox::default());
    assert!(a
        .s
        .send(&mut a.env, presence(A, &["x"]), &mut a.out)
        .is_err());
    assert!(a
        .s
        .send(&mut a.env, stanza::new(StanzaKind::Iq), &mut a.out)
        .is_err());
    let (d, u, _) = b.recv(presence(A, &["x"])).unwrap();
    assert!(d.is_empty() && u.len() == 1);
    let (d, u, _) = b.recv(msg(A, B, "clear")).unwrap();
    assert!(d.is_empty() && u.len() == 1);
    assert!(matches!(
        b.recv(Element::bare("foo", "bar")),
        Err(Error::Decode(_))
    ));
}

#[test]
fn ox_key_types() {
    for algo in [KeyAlgo::Rsa(2048), KeyAlgo::Cv25519] {
        let (mut a, mut b) = pair(&Ox::with_key(algo));
        let m = msg(A, B, "k");
        let w = a.send(m.clone());
        assert_eq!(b.recv(w).unwrap().0, vec![m]);
    }
    assert!(Ox::from_options(&Options::new().set("key", "rsa3072")).is_ok());
}

#[test]
fn regression_short_seipd_is_a_typed_error_not_a_backend_panic() {
    // Sequoia 2.4.2 panics on an SEIPDv1 body shorter than block size + 2
    // (found by the armor-mutation proptest: a truncated armor). The framing
    // check makes it a typed error before Sequoia sees it.
    let (mut a, mut b) = pair(&Jep0027::default());
    let wire = a.send(msg(A, B, "x"));
    let bin = armor::decode(
        armor::ArmorKind::Message,
        &x_of(&wire, jep0027::NS_ENCRYPTED),
    )
    .unwrap();
    let first_len = match bin[1] {
        l @ 0..=191 => 2 + usize::from(l),
        l @ 192..=223 => 3 + (((usize::from(l) - 192) << 8) + usize::from(bin[2]) + 192),
        other => panic!("unexpected length octet {other}"),
    };
    let mut short = bin[..first_len].to_vec();
    short.extend_from_slice(&[0xD2, 0x04, 0x01, 0xAA, 0xBB, 0xCC]);
    assert!(matches!(
        pgp::check_framing(&short),
        Err(DecodeError::Truncated(_))
    ));
    assert_eq!(pgp::check_framing(&bin).unwrap(), vec![1, 18]);
    let mut bad = wire.clone();
    let xe = bad.get_child_mut("x", jep0027::NS_ENCRYPTED).unwrap();
    let _ = xe.take_nodes();
    xe.append_text(armor::strip_body(&short));
    assert!(matches!(
        b.recv(bad),
        Err(Error::Decode(DecodeError::Truncated(_)))
    ));
    // A declared length running past the data: truncated too.
    let cut = &bin[..bin.len() - 1];
    assert!(matches!(
        pgp::check_framing(cut),
        Err(DecodeError::Truncated(_))
    ));
    assert_eq!(b.recv(wire).unwrap().0.len(), 1);
}

#[test]
fn jep0027_decision_bodies_unsigned_body_restored_in_place_or_appended() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let wire = a.send(msg(A, B, "unsigned"));
    let bin = armor::decode(
        armor::ArmorKind::Message,
        &x_of(&wire, jep0027::NS_ENCRYPTED),
    )
    .unwrap();
    // No signature inside: the spec does not sign and encrypt one stanza.
    let alice_pub = pgp::parse_cert(&a.id.public.data).unwrap();
    let r = pgp::decrypt(
        &bin,
        &b.cert(),
        &alice_pub,
        pgp::SigRule::RequirePeer,
        b.env.now(),
        false,
    );
    assert_eq!(r.unwrap_err(), PeerMisbehaved::BadSignature.into());
    // The placeholder <body> removed on the way: the decrypted text comes back as a <body>.
    let mut w = wire.clone();
    let _ = w.remove_child("body", stanza::NS_CLIENT);
    let (d, _, _) = b.recv(w).unwrap();
    assert_eq!(stanza::body(&d[0]).as_deref(), Some("unsigned"));
    assert!(!d[0].has_child("x", jep0027::NS_ENCRYPTED));
    // Two <x xmlns='jabber:x:encrypted'>: a decode error.
    let mut w = wire;
    w.append_child(stanza::text_element("x", jep0027::NS_ENCRYPTED, "AAAA"));
    assert!(matches!(b.recv(w), Err(Error::Decode(_))));
}

#[test]
fn ox_decision_jabber_server_body_accepted_as_client() {
    let (a, mut b) = pair(&Ox::default());
    let now = a.env.now().to_rfc3339();
    let mut sc = content("signcrypt", Some("bob@example.net"), Some(&now));
    let payload = sc.get_child_mut("payload", ox::NS_OX).unwrap();
    let _ = payload.take_nodes();
    payload.append_child(stanza::text_element(
        "body",
        ox::NS_SERVER,
        "server-ns body",
    ));
    let w = craft(&a, &b, &sc, B);
    let (d, _, _) = b.recv(w).unwrap();
    assert_eq!(stanza::body(&d[0]).as_deref(), Some("server-ns body"));
    let body = d[0].children().next().unwrap();
    assert_eq!(body.ns(), stanza::NS_CLIENT);
}

#[test]
fn jep0027_labels_say_body_encrypted_status_signed() {
    let (mut a, mut b) = pair(&Jep0027::default());
    let mut m = msg(A, B, "secret");
    m.append_child(stanza::text_element("subject", stanza::NS_CLIENT, "clear"));
    let wire = a.send(m);
    b.recv_labelled(wire, |l| {
        assert_eq!(l.covered, vec!["{jabber:client}body".to_string()]);
        assert_eq!(l.clear, vec!["{jabber:client}subject".to_string()]);
        assert!(
            l.confidential && !l.authenticated,
            "JEP-0027 signs no message"
        );
        assert!(l.key.starts_with("openpgp:"));
    });
    let wire = a.send(presence(A, &["away"]));
    b.recv_labelled(wire, |l| {
        assert_eq!(l.covered, vec!["{jabber:client}status".to_string()]);
        assert!(!l.confidential && l.authenticated);
    });
}
