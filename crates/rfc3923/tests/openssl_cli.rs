//! Interop with the real `openssl cms` command-line tool, an independent
//! S/MIME implementation. These tests FAIL (they do not skip) when `openssl`
//! is not installed: scripts/setup.sh installs it.
//!
//! - ours → openssl: `openssl cms -decrypt` then `openssl cms -verify` accept
//!   what a session puts in `<e2e/>` and yield the exact CPIM object;
//! - openssl → ours: a CPIM object signed with `openssl cms -sign` and
//!   encrypted with `openssl cms -encrypt` is delivered by a session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use e2elab_core::stanza;
use e2elab_core::{
    Env, Event, Identity, Options, Outbox, Protocol, Role, Session, SessionConfig, Timestamp,
    Warning,
};
use e2elab_rfc3923::{payload, Rfc3923, NS_E2E};
use openssl::pkey::PKey;
use openssl::x509::X509;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("the `openssl` CLI is required for these tests (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Party {
    id: Arc<Identity>,
}

struct World {
    dir: tempfile::TempDir,
    alice: Party,
    bob: Party,
    proto: Rfc3923,
}

fn world(proto: Rfc3923) -> World {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("KEEP_DIR").is_some() {
        eprintln!("dir {:?}", dir.path());
    }
    let mut env = Env::for_party(42, "openssl-cli");
    let mut mk = |jid: &str, name: &str| {
        let id = Arc::new(proto.generate_identity(&mut env, jid).unwrap());
        let cert = X509::from_der(&id.public.data).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.pem")),
            cert.to_pem().unwrap(),
        )
        .unwrap();
        let key = PKey::private_key_from_pkcs8(id.secret().expose()).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.key")),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        Party { id }
    };
    let alice = mk(ALICE, "alice");
    let bob = mk(BOB, "bob");
    World {
        dir: if std::env::var_os("KEEP_DIR").is_some() {
            let p = dir.keep();
            tempfile::TempDir::new_in(p).unwrap()
        } else {
            dir
        },
        alice,
        bob,
        proto,
    }
}

impl World {
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn session(&self, me: &Party, peer: &Party) -> Box<dyn Session> {
        let mut env = Env::for_party(1, "s");
        self.proto
            .new_session(
                &mut env,
                SessionConfig {
                    role: Role::Initiator,
                    local_jid: e2elab_core::Jid::new(&format!("{}/lab", me.id.jid())).unwrap(),
                    peer_jid: e2elab_core::Jid::new(&format!("{}/lab", peer.id.jid())).unwrap(),
                    identity: me.id.clone(),
                    peer_public: Some(peer.id.public.clone()),
                    options: Options::new(),
                },
            )
            .unwrap()
    }
}

fn at(t: Timestamp) -> Env {
    let mut e = Env::for_party(7, "cli");
    e.set_now(t);
    e
}

fn now() -> Timestamp {
    Timestamp::DEFAULT_START.plus(Duration::from_secs(90))
}

fn cpim(body: &str, t: Timestamp) -> String {
    format!(
        "Content-type: Message/CPIM\r\n\r\nFrom: <im:{ALICE}>\r\nTo: <im:{BOB}>\r\nDateTime: {}\r\n\r\nContent-type: text/plain; charset=utf-8\r\n\r\n{}",
        payload::format_timestamp(t),
        body.replace('\n', "\r\n")
    )
}

fn ours_to_openssl(proto: Rfc3923, digest_name: &str, cipher_name: &str) {
    let w = world(proto);
    let mut alice = w.session(&w.alice, &w.bob);
    let body = "Wherefore art thou, Romeo?\nDeny thy father — and refuse thy name.";
    let m =
        stanza::chat_message(&format!("{ALICE}/lab"), &format!("{BOB}/lab"), "r1", body).unwrap();
    let mut out = Outbox::new();
    alice.send(&mut at(now()), m, &mut out).unwrap();
    let wire = out.poll_transmit().unwrap();
    let text = wire.get_child("e2e", NS_E2E).unwrap().text();
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    std::fs::write(w.path("e2e.der"), &der).unwrap();
    let dir = w.dir.path();
    // The envelope: the profile's cipher, RSA key transport.
    let printed = String::from_utf8(openssl(
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "e2e.der",
        ],
        dir,
    ))
    .unwrap();
    assert!(printed.contains("pkcs7-envelopedData"), "{printed}");
    assert!(printed.contains(cipher_name), "{printed}");
    assert!(printed.contains("rsaEncryption"), "{printed}");
    openssl(
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "e2e.der",
            "-recip",
            "bob.pem",
            "-inkey",
            "bob.key",
            "-out",
            "signed.mime",
        ],
        dir,
    );
    let signed = std::fs::read(w.path("signed.mime")).unwrap();
    assert!(signed.starts_with(b"Content-Type: multipart/signed;"));
    // The signature: the profile's digest.
    let printed = String::from_utf8(openssl(
        &["cms", "-cmsout", "-print", "-in", "signed.mime"],
        dir,
    ))
    .unwrap();
    assert!(printed.contains(digest_name), "{printed}");
    let attime = now().secs().to_string();
    // Without -binary: OpenSSL reads the multipart in canonical (CRLF) form,
    // which is the form we signed. (With -binary its reader keeps the CR of
    // the CRLF before the boundary in the part, which RFC 2046 assigns to the
    // delimiter.)
    openssl(
        &[
            "cms",
            "-verify",
            "-in",
            "signed.mime",
            "-CAfile",
            "alice.pem",
            "-attime",
            &attime,
            "-out",
            "cpim.txt",
        ],
        dir,
    );
    let got = std::fs::read(w.path("cpim.txt")).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), cpim(body, now()));
    // And openssl refuses it against the wrong trust anchor.
    let bad = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-in",
            "signed.mime",
            "-CAfile",
            "bob.pem",
            "-attime",
            &attime,
            "-out",
            "x.txt",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn openssl_cms_decrypts_and_verifies_what_we_send_classic() {
    ours_to_openssl(Rfc3923::classic(), "sha1", "aes-128-cbc");
}

#[test]
fn openssl_cms_decrypts_and_verifies_what_we_send_modern() {
    ours_to_openssl(Rfc3923::modern(), "sha256", "aes-256-cbc");
}

fn openssl_to_ours(proto: Rfc3923, md: &str, cipher: &str, crlfeol: bool) {
    let w = world(proto);
    let dir = w.dir.path();
    let body = "Thou art thyself,\nthough not a Montague.";
    std::fs::write(w.path("cpim.txt"), cpim(body, now())).unwrap();
    let mut sign = vec![
        "cms",
        "-sign",
        "-binary",
        "-md",
        md,
        "-in",
        "cpim.txt",
        "-signer",
        "alice.pem",
        "-inkey",
        "alice.key",
        "-out",
        "signed.mime",
    ];
    if crlfeol {
        sign.push("-crlfeol");
    }
    openssl(&sign, dir);
    openssl(
        &[
            "cms",
            "-encrypt",
            "-binary",
            cipher,
            "-in",
            "signed.mime",
            "-outform",
            "DER",
            "-out",
            "e2e.der",
            "bob.pem",
        ],
        dir,
    );
    let der = std::fs::read(w.path("e2e.der")).unwrap();
    let mut m = stanza::new(e2elab_core::StanzaKind::Message);
    for (k, v) in [
        ("from", format!("{ALICE}/lab")),
        ("to", format!("{BOB}/lab")),
        ("type", "chat".to_string()),
        ("id", "o1".to_string()),
    ] {
        stanza::set_attr(&mut m, k, &v).unwrap();
    }
    m.append_child(stanza::text_element(
        "e2e",
        NS_E2E,
        &base64::engine::general_purpose::STANDARD.encode(&der),
    ));
    let mut bob = w.session(&w.bob, &w.alice);
    let mut out = Outbox::new();
    let (r, ops) = e2elab_core::ops::recorded(|| {
        bob.handle_inbound(&mut at(now().plus(Duration::from_secs(2))), m, &mut out)
    });
    r.unwrap();
    let mut delivered = Vec::new();
    while let Some(e) = out.poll_event() {
        match e {
            Event::Delivered { stanza: x, .. } => delivered.push(x),
            Event::Warning(Warning::KeyChanged { .. }) => {
                panic!("openssl attached Alice's own certificate")
            }
            _ => {}
        }
    }
    // chat_message sets the same four attributes the outer stanza had.
    let want =
        stanza::chat_message(&format!("{ALICE}/lab"), &format!("{BOB}/lab"), "o1", body).unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(stanza::body(&delivered[0]).as_deref(), Some(body));
    assert_eq!(delivered[0], want);
    use e2elab_core::ops::OpClass;
    assert_eq!(
        (
            ops.calls_in(OpClass::PkDecrypt),
            ops.calls_in(OpClass::Verify)
        ),
        (1, 1)
    );
}

#[test]
fn we_decrypt_and_verify_what_openssl_cms_produces_classic() {
    openssl_to_ours(Rfc3923::classic(), "sha1", "-aes128", false);
}

#[test]
fn we_decrypt_and_verify_what_openssl_cms_produces_with_crlf_mime() {
    openssl_to_ours(Rfc3923::classic(), "sha1", "-aes128", true);
}

#[test]
fn we_decrypt_and_verify_what_openssl_cms_produces_modern() {
    openssl_to_ours(Rfc3923::modern(), "sha256", "-aes256", false);
}

#[test]
fn openssl_cms_verifies_our_pidf_presence() {
    let w = world(Rfc3923::classic());
    let dir = w.dir.path();
    let mut alice = w.session(&w.alice, &w.bob);
    let mut p = stanza::new(e2elab_core::StanzaKind::Presence);
    stanza::set_attr(&mut p, "from", &format!("{ALICE}/lab")).unwrap();
    stanza::set_attr(&mut p, "to", &format!("{BOB}/lab")).unwrap();
    p.append_child(stanza::text_element("show", stanza::NS_CLIENT, "away"));
    p.append_child(stanza::text_element(
        "status",
        stanza::NS_CLIENT,
        "retired to the chamber",
    ));
    let mut out = Outbox::new();
    alice.send(&mut at(now()), p, &mut out).unwrap();
    let wire = out.poll_transmit().unwrap();
    assert_eq!(wire.name(), "presence");
    let der = base64::engine::general_purpose::STANDARD
        .decode(wire.get_child("e2e", NS_E2E).unwrap().text())
        .unwrap();
    std::fs::write(w.path("e2e.der"), &der).unwrap();
    openssl(
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "e2e.der",
            "-recip",
            "bob.pem",
            "-inkey",
            "bob.key",
            "-out",
            "signed.mime",
        ],
        dir,
    );
    let attime = now().secs().to_string();
    openssl(
        &[
            "cms",
            "-verify",
            "-in",
            "signed.mime",
            "-CAfile",
            "alice.pem",
            "-attime",
            &attime,
            "-out",
            "pidf.txt",
        ],
        dir,
    );
    let got = String::from_utf8(std::fs::read(w.path("pidf.txt")).unwrap()).unwrap();
    assert!(
        got.starts_with("Content-type: application/pidf+xml; charset=utf-8\r\n\r\n<?xml version='1.0' encoding='UTF-8'?>\r\n<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:alice@example.org'>"),
        "{got}"
    );
    assert!(got.contains("<note>retired to the chamber</note>"), "{got}");
    assert!(
        got.contains(&format!(
            "<timestamp>{}</timestamp>",
            payload::format_timestamp(now())
        )),
        "{got}"
    );
}
