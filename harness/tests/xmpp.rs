//! Every protocol through a real XMPP server: a throwaway Prosody on loopback,
//! started and stopped here (scripts/prosody.sh; scripts/setup.sh installs
//! prosody). A missing server fails these tests, it does not skip them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab::driver;
use e2elab::registry;
use e2elab::xmpp::conn::ServerSpec;
use e2elab::xmpp::run::ServerPair;
use e2elab::xmpp::server::Prosody;
use e2elab::xmpp::{load, DEFAULT_STANZA_LIMIT};
use e2elab_core::{Options, Protocol};
use std::rc::Rc;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Handshake, workload messages and every varied stanza each way; every
/// application stanza must be delivered equal to the original and every wire
/// stanza must arrive as it was sent (but for the server's `from` stamp).
async fn through(spec: &ServerSpec, proto: &dyn Protocol) -> ServerPair {
    let id = proto.info().id;
    let res = format!("t-{id}-{}", spec.mode());
    let (mut pair, _) = ServerPair::open(
        spec,
        proto,
        ["alice", "bob"],
        &res,
        None,
        7,
        &Options::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(pair.jids[0], format!("alice@localhost/{res}"));
    pair.handshake()
        .await
        .unwrap_or_else(|e| panic!("{id} ({}): {e}", spec.mode()));
    let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
    for (n, size) in [0usize, 64, 4096].into_iter().enumerate() {
        for from in 0..2 {
            let el = driver::workload_stanza_between(7, from, n as u64, size, [&jids[0], &jids[1]])
                .unwrap();
            pair.send_expect(from, &el)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for from in 0..2 {
        for (name, el) in
            e2elab::conformance::varied_stanzas_between(proto, from, [&jids[0], &jids[1]]).unwrap()
        {
            pair.send_expect(from, &el)
                .await
                .unwrap_or_else(|e| panic!("{id} ({}), {name}: {e}", spec.mode()));
        }
    }
    assert!(pair.rec.lost.is_empty(), "{id}: lost {:?}", pair.rec.lost);
    assert!(
        pair.rec.altered.is_empty(),
        "{id} ({}): the server altered stanzas: {:#?}",
        spec.mode(),
        pair.rec.altered
    );
    // Bytes really crossed both sockets, and at least the serialized stanzas.
    let b = pair.socket_bytes();
    let serialized: u64 = pair
        .link
        .emissions
        .iter()
        .map(|(_, _, x)| x.len() as u64)
        .sum();
    assert!(
        b[0].0 + b[1].0 >= serialized,
        "{id}: socket {b:?} < serialized {serialized}"
    );
    pair
}

#[test]
fn every_protocol_survives_prosody_over_tcp_and_starttls() {
    // Every compared profile: the known-bad controls serve the security
    // experiments only (control-signed-clear signs the stanza's attributes,
    // which Prosody's xml:lang stamp changes).
    let server = Prosody::start(DEFAULT_STANZA_LIMIT, 0).unwrap();
    let plain = ServerSpec::plain(server.addr);
    let tls = plain.with_tls(server.certificate());
    let rt = rt();
    for spec in [&plain, &tls] {
        for p in registry::compared() {
            let pair = rt.block_on(through(spec, p.as_ref()));
            assert!(pair.rec.stanzas > 0);
            // Prosody adds the stream's xml:lang to every stanza that has none
            // (RFC 6120 §8.1.5): each wire stanza arrives stamped.
            assert_eq!(pair.rec.lang_stamped, pair.rec.stanzas, "{}", p.info().id);
            let sent = 6 + 2 * e2elab::conformance::varied_stanzas(p.as_ref(), 0)
                .unwrap()
                .len() as u64;
            assert_eq!(
                pair.rec.delivered_exact + pair.rec.delivered_with_stamp,
                sent
            );
            if p.info().id == "plaintext" {
                // The control row delivers the stanza as it arrived.
                assert_eq!(pair.rec.delivered_with_stamp, sent);
            }
        }
    }
    // STARTTLS really happened: TLS records make the same exchange larger.
    let p = registry::get("plaintext").unwrap();
    let a = rt.block_on(through(&plain, p.as_ref())).socket_bytes();
    let b = rt.block_on(through(&tls, p.as_ref())).socket_bytes();
    assert!(
        b[0].0 > a[0].0,
        "STARTTLS run wrote {} B, plain {} B",
        b[0].0,
        a[0].0
    );
    server.stop().unwrap();
}

#[test]
fn starttls_refuses_an_untrusted_certificate() {
    let server = Prosody::start(DEFAULT_STANZA_LIMIT, 0).unwrap();
    let other = tempfile::tempdir().unwrap();
    // A certificate that is not the server's.
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(other.path().join("k.pem"))
        .arg("-out")
        .arg(other.path().join("c.pem"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let spec = ServerSpec::plain(server.addr).with_tls(other.path().join("c.pem"));
    let r = rt().block_on(e2elab::xmpp::conn::Conn::open(&spec, "alice", "x"));
    let e = r
        .err()
        .expect("login must fail against an untrusted certificate");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
}

#[test]
fn a_stanza_over_the_limit_is_rejected_and_otr_fragments_under_it() {
    let limit = 16 * 1024;
    let server = Prosody::start(limit, 0).unwrap();
    let spec = ServerSpec::plain(server.addr);
    let rt = rt();
    // Plaintext 64 KiB: the server closes the sender's stream.
    let p = registry::get("plaintext").unwrap();
    let r = rt.block_on(async {
        let (mut pair, _) = ServerPair::open(
            &spec,
            p.as_ref(),
            ["alice", "bob"],
            "big",
            None,
            1,
            &Options::new(),
        )
        .await
        .unwrap();
        pair.handshake().await.unwrap();
        let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
        let el = driver::workload_stanza_between(1, 0, 0, 64 * 1024, [&jids[0], &jids[1]]).unwrap();
        let r = pair.send_expect(0, &el).await;
        (r, pair.rec.lost.clone())
    });
    assert!(r.0.is_err());
    assert_eq!(r.1.len(), 1, "{:?}", r.1);
    assert!(r.1[0].why.contains("policy-violation"), "{:?}", r.1[0]);
    // OTR told the maximum size fragments the same message below the limit.
    let p = registry::get("otr-v3").unwrap();
    let opts = Options::new().set("max_msg_size", "8192");
    let (n, largest) = rt.block_on(async {
        let (mut pair, _) =
            ServerPair::open(&spec, p.as_ref(), ["alice", "bob"], "frag", None, 1, &opts)
                .await
                .unwrap();
        pair.handshake().await.unwrap();
        let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
        let el = driver::workload_stanza_between(1, 0, 0, 64 * 1024, [&jids[0], &jids[1]]).unwrap();
        let s0 = pair.rec.stanzas;
        let e0 = pair.link.emissions.len();
        pair.send_expect(0, &el).await.unwrap();
        let largest = pair.link.emissions[e0..]
            .iter()
            .map(|(_, _, x)| x.len())
            .max()
            .unwrap();
        (pair.rec.stanzas - s0, largest)
    });
    assert!(n > 8, "{n} fragments");
    assert!(
        (largest as u64) < limit,
        "largest fragment stanza {largest} B"
    );
}

#[test]
fn load_of_concurrent_pairs_completes_and_stops_by_itself() {
    let server = Prosody::start(DEFAULT_STANZA_LIMIT, 40).unwrap();
    let spec = ServerSpec::plain(server.addr);
    let rt = rt();
    for id in ["plaintext", "esessions-simplified"] {
        let proto: Rc<dyn Protocol> = Rc::from(registry::get(id).unwrap());
        let mut ids = Vec::new();
        load::provision(proto.as_ref(), 3, "localhost", &mut ids, 20).unwrap();
        let local = tokio::task::LocalSet::new();
        let row = rt.block_on(local.run_until(load::step(
            &spec,
            proto.clone(),
            &ids,
            20,
            3,
            64,
            3,
            Duration::from_secs(60),
            id,
        )));
        assert_eq!(row.completed_pairs, 20, "{row:?}");
        assert_eq!(row.failed_pairs, 0);
        assert_eq!(row.messages_delivered, 20 * 3 * 2);
        assert_eq!(row.latency_ms.n, 120);
        assert!(row.throughput_msg_s > 0.0);
        assert_eq!(row.stopped, "completed");
        assert_eq!(row.altered, 0);
    }
    // A deadline cuts a step short and says so.
    let proto: Rc<dyn Protocol> = Rc::from(registry::get("plaintext").unwrap());
    let mut ids = Vec::new();
    load::provision(proto.as_ref(), 3, "localhost", &mut ids, 20).unwrap();
    let local = tokio::task::LocalSet::new();
    let row = rt.block_on(local.run_until(load::step(
        &spec,
        proto,
        &ids,
        20,
        1000,
        64,
        3,
        Duration::from_millis(300),
        "deadline",
    )));
    assert!(row.stopped.starts_with("deadline"), "{row:?}");
    assert!(row.failed_pairs > 0);
}

/// The test server counts bytes itself (mod_e2elab_bytes, Prosody's bytes/in
/// and bytes/out filters). Over plain TCP its counts equal what crossed the
/// client sockets, byte for byte; under STARTTLS it counts the XML inside TLS,
/// fewer bytes than the sockets carried.
#[test]
fn prosody_counted_bytes_match_the_sockets_over_tcp() {
    let server = Prosody::start(DEFAULT_STANZA_LIMIT, 0).unwrap();
    let plain = ServerSpec::plain(server.addr);
    let tls = plain.with_tls(server.certificate());
    let rt = rt();
    for spec in [&plain, &tls] {
        let p = registry::get("esessions-sigma-i").unwrap();
        let (server_in, server_out, sock_out, sock_in) = rt.block_on(async {
            let res = format!("bytes-{}", spec.mode());
            let (mut pair, _) = ServerPair::open(
                spec,
                p.as_ref(),
                ["alice", "bob"],
                &res,
                None,
                3,
                &Options::new(),
            )
            .await
            .unwrap();
            pair.handshake().await.unwrap();
            let cal = pair.calibrate_server_bytes().await.unwrap();
            // Fixed-size queries and answers.
            assert_eq!(cal, pair.calibrate_server_bytes().await.unwrap());
            let s0 = pair.server_bytes().await.unwrap();
            let b0 = pair.socket_bytes();
            let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
            for (n, size) in [10usize, 1000, 20000].into_iter().enumerate() {
                for from in 0..2 {
                    let el = driver::workload_stanza_between(
                        3,
                        from,
                        n as u64,
                        size,
                        [&jids[0], &jids[1]],
                    )
                    .unwrap();
                    pair.send_expect(from, &el).await.unwrap();
                }
            }
            let b1 = pair.socket_bytes();
            let s1 = pair.server_bytes().await.unwrap();
            let (mut si, mut so, mut ko, mut ki) = (0, 0, 0, 0);
            for i in 0..2 {
                si += s1[i].0 - s0[i].0 - cal[i].0;
                so += s1[i].1 - s0[i].1 - cal[i].1;
                ko += b1[i].0 - b0[i].0;
                ki += b1[i].1 - b0[i].1;
            }
            (si, so, ko, ki)
        });
        assert!(server_in > 40_000, "{server_in}");
        if spec.mode() == "tcp" {
            assert_eq!(server_in, sock_out, "server read vs clients wrote");
            assert_eq!(server_out, sock_in, "server wrote vs clients read");
        } else {
            assert!(server_in < sock_out, "{server_in} vs {sock_out}");
            assert!(server_out < sock_in, "{server_out} vs {sock_in}");
        }
    }
}

/// XEP-0274's question through the real server: the unprotected baseline
/// and the exclusive canonicalization deliver everything; a signature over
/// inclusive C14N, which imports the stanza's `xml:lang` into every child's
/// canonical form, is refused exactly when the server stamped `xml:lang`.
#[test]
fn xml_signatures_through_prosody_depend_on_the_servers_xml_lang_stamp() {
    let p = Prosody::start(DEFAULT_STANZA_LIMIT, 4).unwrap();
    let spec = ServerSpec::plain(p.addr);
    let rt = rt();
    for (id, options) in e2elab::xmpp::SIGNATURE_RUNS {
        let proto = (registry::entry(id).unwrap().make)();
        let row = rt.block_on(e2elab::xmpp::signature_run(
            &spec,
            proto.as_ref(),
            options,
            7,
        ));
        eprintln!("{row:?}");
        assert!(row.error.is_none(), "{id} {options}: {:?}", row.error);
        assert_eq!(row.sent, e2elab::xmpp::SIGNATURE_STANZAS);
        assert_eq!(row.lost, 0, "{id} {options}");
        assert_eq!(row.sent, row.delivered + row.refused, "{id} {options}");
        if options.contains("inclusive") {
            // Every stamped stanza breaks the signature, and only those.
            assert_eq!(
                row.refused,
                row.lang_stamped.min(row.sent),
                "{id} {options}: {row:?}"
            );
            if row.refused > 0 {
                assert!(
                    row.receiver_errors
                        .iter()
                        .any(|e| e.contains("signature") || e.contains("decryption")),
                    "{row:?}"
                );
            }
        } else {
            assert_eq!(row.refused, 0, "{id} {options}: {row:?}");
        }
    }
    p.stop().unwrap();
}
