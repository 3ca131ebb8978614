//! Fragmentation through libotr: a 64 KiB message through a 1 KiB limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use e2elab_core::{stanza, Element, Error, Options, PeerMisbehaved, Session, SessionState};
use e2elab_otr::{carriage, OTR_V2, OTR_V3};

fn big(from: usize) -> Element {
    let body: String = (0..64 * 1024)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789"[i % 47]))
        .collect();
    let mut m = msg(from, "big", &body);
    m.append_child(stanza::text_element("subject", stanza::NS_CLIENT, "large"));
    m
}

fn limit() -> Options {
    Options::new().set("max_msg_size", "1024")
}

#[test]
fn v3_64k_through_1k_reassembles_in_order() {
    let mut p = Pair::established(OTR_V3, &limit());
    let m = big(0);
    let w = p.send(0, m.clone());
    // ~ (64 KiB plaintext + 252) * 4/3 base64 over (1024 - 37) chars per piece.
    assert!(w.len() >= 88, "{} fragments", w.len());
    eprintln!(
        "64 KiB body through max_msg_size=1024: {} fragments",
        w.len()
    );
    for (k, e) in w.iter().enumerate() {
        let b = body_of(e);
        assert!(b.len() <= 1024, "fragment {k} has {} chars", b.len());
        assert!(b.starts_with("?OTR|"), "v3 fragment format: {}", &b[..20]);
        let is_last = k + 1 == w.len();
        assert_eq!(e.get_child("subject", stanza::NS_CLIENT).is_some(), is_last);
        assert_eq!(e.attr("id"), Some("big"));
    }
    for (k, e) in w.iter().enumerate() {
        let (r, out) = p.deliver(1, e.clone());
        r.unwrap();
        assert!(out.is_empty());
        let want = usize::from(k + 1 == w.len());
        assert_eq!(p.p[1].delivered.len(), want, "after fragment {k}");
    }
    assert_eq!(p.p[1].delivered, vec![m]);
    // Short messages are not fragmented, in both directions.
    let w = p.send_deliver(1, msg(1, "s", "short"));
    assert_eq!(w.len(), 1);
    assert!(body_of(&w[0]).starts_with("?OTR:"));
}

#[test]
fn v2_64k_through_1k_reassembles() {
    let mut p = Pair::established(OTR_V2, &limit());
    let m = big(1);
    let w = p.send(1, m.clone());
    assert!(w.len() >= 88);
    assert!(body_of(&w[0]).starts_with("?OTR,"));
    for e in &w {
        assert!(body_of(e).len() <= 1024);
        p.deliver(0, e.clone()).0.unwrap();
    }
    assert_eq!(p.p[0].delivered, vec![m]);
}

#[test]
fn out_of_order_fragments_are_discarded_as_libotr_does() {
    let mut p = Pair::established(OTR_V3, &limit());
    let m = big(0);
    let w = p.send(0, m.clone());
    let mut shuffled = w.clone();
    shuffled.swap(0, 1);
    for e in &shuffled {
        let (r, out) = p.deliver(1, e.clone());
        r.unwrap();
        assert!(out.is_empty());
    }
    assert!(
        p.p[1].delivered.is_empty(),
        "a reordered sequence never completes"
    );
    assert_eq!(p.p[1].s.state(), SessionState::Established);
    // The discarded message was never decrypted: its in-order fragments still deliver it.
    for e in &w {
        p.deliver(1, e.clone()).0.unwrap();
    }
    assert_eq!(p.p[1].delivered, vec![m]);
    // And a dropped middle fragment loses only that message.
    let m2 = big(0);
    let w2 = p.send(0, m2);
    for (k, e) in w2.iter().enumerate() {
        if k != 5 {
            p.deliver(1, e.clone()).0.unwrap();
        }
    }
    assert_eq!(p.p[1].delivered.len(), 1);
    p.send_deliver(0, msg(0, "n", "next"));
    assert_eq!(p.p[1].delivered.len(), 2);
}

#[test]
fn fragment_for_another_instance_is_rejected() {
    let mut p = Pair::established(OTR_V3, &limit());
    let w = p.send(0, big(0));
    // "?OTR|<sender>|<receiver>,k,n,piece,": change the receiver tag.
    let b = body_of(&w[0]);
    let parts: Vec<&str> = b.splitn(3, '|').collect();
    let (recv, rest) = parts[2].split_once(',').unwrap();
    let other = format!(
        "{:08x}",
        u32::from_str_radix(recv, 16).unwrap() ^ 0x0101_0000
    );
    let forged_body = format!("{}|{}|{other},{rest}", parts[0], parts[1]);
    let mut forged = w[0].clone();
    carriage::set_body(&mut forged, &forged_body);
    let (r, out) = p.deliver(1, forged);
    assert!(matches!(
        r,
        Err(Error::PeerMisbehaved(PeerMisbehaved::WrongAddress(_)))
    ));
    assert!(out.is_empty());
    assert_eq!(p.p[1].s.state(), SessionState::Established);
    for e in &w {
        p.deliver(1, e.clone()).0.unwrap();
    }
    assert_eq!(p.p[1].delivered.len(), 1);
}
