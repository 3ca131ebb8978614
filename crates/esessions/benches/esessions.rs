//! Criterion benches: each handshake beside its primitive floor (the
//! modexps and RSA operations it performs, measured in the same run), and a
//! 1 KiB message (encrypt + decrypt) beside raw AES-CTR + HMAC-SHA256 +
//! base64 + stanza serialization and parsing of the same bytes.
//! Correctness is asserted outside the timed code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use e2elab_core::b64;
use e2elab_core::{
    stanza, Element, Env, Event, Identity, Options, Outbox, Protocol, Role, Session, SessionConfig,
    SessionState,
};
use e2elab_esessions::prim::{self, ExponentSize, Group, Ops};
use e2elab_esessions::{Esessions, Profile};
use openssl::hash::MessageDigest;
use std::hint::black_box;
use std::sync::Arc;

const A: &str = "alice@example.org/lab";
const B: &str = "bob@example.net/lab";

fn ids(proto: &Esessions) -> [Arc<Identity>; 2] {
    let mut env = Env::for_party(1, "ids");
    [
        Arc::new(
            proto
                .generate_identity(&mut env, "alice@example.org")
                .unwrap(),
        ),
        Arc::new(
            proto
                .generate_identity(&mut env, "bob@example.net")
                .unwrap(),
        ),
    ]
}

struct Pair {
    s: [Box<dyn Session>; 2],
    env: [Env; 2],
}

fn pair(proto: &Esessions, ids: &[Arc<Identity>; 2], seed: u64, opts: &Options) -> Pair {
    let mut env = [Env::for_party(seed, "i"), Env::for_party(seed, "r")];
    let mk = |role, i: usize, env: &mut Env| {
        proto
            .new_session(
                env,
                SessionConfig {
                    role,
                    local_jid: e2elab_core::Jid::new([A, B][i]).unwrap(),
                    peer_jid: e2elab_core::Jid::new([A, B][1 - i]).unwrap(),
                    identity: ids[i].clone(),
                    peer_public: Some(ids[1 - i].public.clone()),
                    options: opts.clone(),
                },
            )
            .unwrap()
    };
    let s0 = mk(Role::Initiator, 0, &mut env[0]);
    let s1 = mk(Role::Responder, 1, &mut env[1]);
    Pair { s: [s0, s1], env }
}

/// Run the handshake; stanzas cross as serialized strings, as on a wire.
/// Returns the time spent inside session calls (both sides): the protocol's
/// CPU, without the transport's serialization and parsing.
fn handshake(p: &mut Pair) -> std::time::Duration {
    let mut spent = std::time::Duration::ZERO;
    let mut out = Outbox::new();
    let t = std::time::Instant::now();
    p.s[0].start(&mut p.env[0], &mut out).unwrap();
    spent += t.elapsed();
    let mut wire: Vec<(usize, String)> = Vec::new();
    while let Some(e) = out.poll_transmit() {
        wire.push((1, stanza::serialize(&e)));
    }
    while let Some((to, w)) = (!wire.is_empty()).then(|| wire.remove(0)) {
        let mut out = Outbox::new();
        let el = stanza::parse(&w).unwrap();
        let t = std::time::Instant::now();
        p.s[to]
            .handle_inbound(&mut p.env[to], el, &mut out)
            .unwrap();
        spent += t.elapsed();
        while let Some(e) = out.poll_transmit() {
            wire.push((1 - to, stanza::serialize(&e)));
        }
    }
    spent
}

fn profiles() -> Vec<(Profile, Options)> {
    vec![
        (Profile::SigmaR, Options::new()),
        (Profile::SigmaI, Options::new()),
        (Profile::Simplified, Options::new()),
        (Profile::Ssh, Options::new()),
        (Profile::SigmaR, Options::new().set("exponent", "short")),
    ]
}

fn label(p: Profile, o: &Options) -> String {
    match o.get("exponent") {
        Some(e) => format!("{}+{e}-exponent", p.id()),
        None => p.id().to_string(),
    }
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.sample_size(20);
    for (profile, opts) in profiles() {
        let proto = Esessions::new(profile);
        let ids = ids(&proto);
        // Correctness, outside the timed code.
        let mut p = pair(&proto, &ids, 1, &opts);
        let (_, log) = e2elab_core::ops::recorded(|| handshake(&mut p));
        assert_eq!(p.s[0].state(), SessionState::Established);
        assert_eq!(p.s[1].state(), SessionState::Established);
        let name = label(profile, &opts);
        let mut seed = 0u64;
        // Time inside the session calls only (the transport's XML parsing and
        // serialization are not the protocol's); the same factory, so keys are
        // loaded once, as a client does.
        g.bench_function(BenchmarkId::new("protocol", &name), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    seed += 1;
                    let mut p = pair(&proto, &ids, seed, &opts);
                    total += handshake(&mut p);
                }
                total
            })
        });
        // The floor: exactly the public-key operations counted above, same sizes.
        let group = Group::get(14).unwrap();
        let exp = if opts.get("exponent") == Some("short") {
            ExponentSize::Short
        } else {
            ExponentSize::Full
        };
        let key = e2elab_esessions::keys::private_from_der(ids[0].secret().expose()).ok();
        let md = if profile == Profile::Ssh {
            MessageDigest::sha1()
        } else {
            MessageDigest::sha256()
        };
        use e2elab_core::ops::OpClass;
        let modexps = log.calls_in(OpClass::Modexp);
        let signs = log.calls_in(OpClass::Sign);
        let verifies = log.calls_in(OpClass::Verify);
        let mut env = Env::for_party(9, "floor");
        let xs: Vec<_> = (0..modexps)
            .map(|_| prim::draw_exponent(&mut env, &group, 128, exp).unwrap())
            .collect();
        // One g^x per side (key generation, OpenSSL's word-base path); the others
        // raise the peer's value (an arbitrary base), as in the protocol.
        let base = { Ops.modexp_g(&group, &xs[0]).unwrap() };
        let pubkey = key.as_ref().map(|k| {
            openssl::pkey::PKey::public_key_from_der(&k.public_key_to_der().unwrap()).unwrap()
        });
        g.bench_function(BenchmarkId::new("primitive_floor", &name), |b| {
            b.iter(|| {
                let ops = Ops;
                let mut acc = Vec::new();
                for (i, x) in xs.iter().enumerate() {
                    if i < 2 {
                        acc.push(ops.modexp_g(&group, x).unwrap());
                    } else {
                        acc.push(ops.modexp(&group, &base, x).unwrap());
                    }
                }
                let mut sig = Vec::new();
                if let Some(k) = &key {
                    for _ in 0..signs {
                        sig = ops
                            .rsa_sign(k, md, b"0123456789abcdef0123456789abcdef")
                            .unwrap();
                    }
                }
                if let Some(k) = &pubkey {
                    for _ in 0..verifies {
                        assert!(ops
                            .rsa_verify(k, md, b"0123456789abcdef0123456789abcdef", &sig)
                            .unwrap());
                    }
                }
                black_box(acc)
            })
        });
    }
    g.finish();
}

/// Protect `m` on the initiator, serialize, parse, unprotect on the
/// responder; the responder's first event.
fn send_one(p: &mut Pair, m: &Element) -> Option<Event> {
    let mut out = Outbox::new();
    p.s[0].send(&mut p.env[0], m.clone(), &mut out).unwrap();
    let w = stanza::serialize(&out.poll_transmit().unwrap());
    let mut out = Outbox::new();
    p.s[1]
        .handle_inbound(&mut p.env[1], stanza::parse(&w).unwrap(), &mut out)
        .unwrap();
    out.poll_event()
}

fn bench_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    let body = "x".repeat(1024);
    g.throughput(Throughput::Bytes(1024));
    for (profile, opts) in profiles()
        .into_iter()
        .filter(|(_, o)| o.get("exponent").is_none())
    {
        let proto = Esessions::new(profile);
        let ids = ids(&proto);
        let mut p = pair(&proto, &ids, 1, &opts);
        handshake(&mut p);
        let m = stanza::chat_message(A, B, "1", &body).unwrap();
        // Correctness outside the timed loop.
        assert!(matches!(send_one(&mut p, &m), Some(Event::Delivered { stanza: d, .. }) if d == m));
        g.bench_function(BenchmarkId::new(profile.id(), 1024), |b| {
            b.iter(|| black_box(send_one(&mut p, &m)))
        });
    }
    // The raw floor for the same bytes.
    let kc = [7u8; 16];
    let km = [9u8; 32];
    let m = stanza::chat_message(A, B, "1", &body).unwrap();
    let content: Vec<Element> = m.children().cloned().collect();
    g.bench_function(BenchmarkId::new("raw_floor", 1024), |b| {
        let mut ctr = 1u128;
        b.iter(|| {
            let mut s = String::new();
            for c in &content {
                s.push_str(&stanza::serialize(c));
            }
            let ct = prim::aes_ctr(&kc, ctr, s.as_bytes()).unwrap();
            let d = b64::encode(&ct);
            let mac = prim::hmac_sha256(&km, &[d.as_bytes(), &prim::counter_bytes(ctr)]).unwrap();
            let mut w = stanza::new(e2elab_core::StanzaKind::Message);
            w.append_child(stanza::text_element("data", "urn:x", &d));
            w.append_child(stanza::text_element("mac", "urn:x", &b64::encode(mac)));
            let wire = stanza::serialize(&w);
            // receive
            let r = stanza::parse(&wire).unwrap();
            let d2 = r.get_child("data", "urn:x").unwrap().text();
            let mac2 = prim::hmac_sha256(&km, &[d2.as_bytes(), &prim::counter_bytes(ctr)]).unwrap();
            assert_eq!(mac, mac2);
            let pt = prim::aes_ctr(&kc, ctr, &b64::decode(d2).unwrap()).unwrap();
            let back = e2elab_esessions::channel::parse_content(&pt).unwrap();
            ctr += 70;
            black_box(back)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshake, bench_message);
criterion_main!(benches);
