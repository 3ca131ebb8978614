//! Interop with real GnuPG (`gpg`, Debian package `gnupg`).
//!
//! Every test runs gpg in its own temporary `GNUPGHOME`, with keys exported
//! both ways: gpg's certificate into our identities, ours into gpg's keyring.
//! When gpg is not installed these tests FAIL (they never skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab_core::{
    stanza, Element, Env, Event, Identity, Options, Outbox, Protocol, PublicIdentity, Role,
    Session, SessionConfig, StanzaKind, Timestamp,
};
use e2elab_openpgp::armor::{self, ArmorKind};
use e2elab_openpgp::{import_public, jep0027, ox, Jep0027, KeyAlgo, Ox};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

/// One isolated GnuPG home.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let dir = tempfile::Builder::new()
            .prefix("e2elab-gpg-")
            .tempdir()
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let g = Gpg { dir };
        // Fails (panics) right here when gpg is missing: no silent skip.
        let out = g.run(&["--version"], None);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("GnuPG"),
            "gpg --version did not answer"
        );
        g
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.home().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Run gpg; panic with its stderr unless it exits 0.
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.try_run(args, stdin);
        assert!(
            out.status.success(),
            "gpg {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn try_run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home())
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--trust-model",
                "always",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg (Debian package gnupg) must be installed: run scripts/setup.sh");
        let mut sin = child.stdin.take().unwrap();
        let data = stdin.unwrap_or_default().to_vec();
        let writer = std::thread::spawn(move || {
            let _ = sin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// gpg makes a key for `uid` (primary certify+sign, encryption subkey).
    fn gen_key(&self, uid: &str, algo: KeyAlgo) -> String {
        let (prim, sub) = match algo {
            KeyAlgo::Rsa(b) => (format!("rsa{b}"), format!("rsa{b}")),
            KeyAlgo::Cv25519 => ("ed25519".to_string(), "cv25519".to_string()),
        };
        self.run(&["--quick-gen-key", uid, &prim, "sign,cert", "never"], None);
        let fpr = self.fingerprint(uid);
        self.run(&["--quick-add-key", &fpr, &sub, "encr", "never"], None);
        fpr
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = self.run(&["--with-colons", "--list-keys", uid], None);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    fn export_public(&self, uid: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", uid], None).stdout
    }

    fn import(&self, data: &[u8]) {
        let p = self.file("import.pgp", data);
        self.run(&["--import", p.to_str().unwrap()], None);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// An environment whose clock is the real time (gpg stamps real times).
fn env(label: &str) -> Env {
    let mut e = Env::for_party(42, label);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    e.set_now(Timestamp(now.as_micros() as u64));
    e
}

fn session(
    proto: &dyn Protocol,
    id: &Identity,
    local: &str,
    peer_pub: PublicIdentity,
) -> Box<dyn Session> {
    session_with(proto, id, local, peer_pub, Options::new())
}

fn session_with(
    proto: &dyn Protocol,
    id: &Identity,
    local: &str,
    peer_pub: PublicIdentity,
    options: Options,
) -> Box<dyn Session> {
    proto
        .new_session(
            &mut env("session"),
            SessionConfig {
                role: Role::Initiator,
                local_jid: e2elab_core::Jid::new(&format!("{local}/lab")).unwrap(),
                peer_jid: e2elab_core::Jid::new(&format!("{}/lab", peer_pub.jid)).unwrap(),
                identity: Arc::new(id.clone()),
                peer_public: Some(peer_pub),
                options,
            },
        )
        .unwrap()
}

fn our_cert_armored(id: &PublicIdentity) -> Vec<u8> {
    // Our public identity data is the binary certificate; hand gpg the armored form.
    armor_full("PUBLIC KEY BLOCK", &id.data)
}

fn armor_full(label: &str, data: &[u8]) -> Vec<u8> {
    let body = armor::strip_body(data);
    format!("-----BEGIN PGP {label}-----\n\n{body}\n-----END PGP {label}-----\n").into_bytes()
}

/// The spec's re-wrap of a stripped armor: put the header and tail lines back.
fn rewrap(kind: &str, stripped: &str) -> Vec<u8> {
    format!("-----BEGIN PGP {kind}-----\n\n{stripped}\n-----END PGP {kind}-----\n").into_bytes()
}

fn one_transmit(out: &mut Outbox) -> Element {
    let w = out.poll_transmit().expect("a stanza on the wire");
    assert!(out.poll_transmit().is_none());
    w
}

fn delivered(out: &mut Outbox) -> Vec<Element> {
    let mut v = Vec::new();
    while let Some(e) = out.poll_event() {
        if let Event::Delivered { stanza: s, .. } = e {
            v.push(s);
        }
    }
    v
}

/// Our jep0027 → gpg: gpg decrypts our body and verifies our signed status;
/// gpg → our jep0027: we decrypt gpg's body and verify gpg's signed status.
fn jep0027_both_ways(algo: KeyAlgo) {
    let start = e2elab_core::ops::snapshot();
    let gpg = Gpg::new();
    // Bob lives in gpg; Alice is ours.
    gpg.gen_key(&format!("xmpp:{BOB}"), algo);
    let bob_pub =
        import_public(jep0027::ID, BOB, &gpg.export_public(&format!("xmpp:{BOB}"))).unwrap();
    let proto = Jep0027::with_key(algo);
    let alice = proto
        .generate_identity(&mut env("alice-id"), ALICE)
        .unwrap();
    gpg.import(&our_cert_armored(&alice.public));
    let mut s = session(&proto, &alice, ALICE, bob_pub);
    let mut e = env("alice");
    let mut out = Outbox::new();

    // 1. Our encrypted body, re-armored, decrypted by gpg.
    let body = "Hi Bob — ünïcödé, <xml> & \"quotes\"\nsecond line";
    let m =
        stanza::chat_message(&format!("{ALICE}/lab"), &format!("{BOB}/lab"), "1", body).unwrap();
    s.send(&mut e, m, &mut out).unwrap();
    let wire = one_transmit(&mut out);
    assert_eq!(stanza::body(&wire).as_deref(), Some(jep0027::PLACEHOLDER));
    let x = wire.get_child("x", jep0027::NS_ENCRYPTED).unwrap().text();
    assert!(!x.contains("-----"), "armor header lines must be stripped");
    let f = gpg.file("body.asc", &rewrap("MESSAGE", &x));
    let dec = gpg.run(&["--decrypt", f.to_str().unwrap()], None);
    assert_eq!(String::from_utf8(dec.stdout).unwrap(), body);

    // 2. Our signed presence, verified by gpg over the <status> text.
    let status = "Out to lunch — back at 2";
    let mut p = stanza::new(StanzaKind::Presence);
    stanza::set_attr(&mut p, "from", &format!("{ALICE}/lab")).unwrap();
    p.append_child(stanza::text_element("status", stanza::NS_CLIENT, status));
    s.send(&mut e, p, &mut out).unwrap();
    let wire = one_transmit(&mut out);
    let x = wire.get_child("x", jep0027::NS_SIGNED).unwrap().text();
    let sig = gpg.file("status.sig", &rewrap("SIGNATURE", &x));
    let data = gpg.file("status.txt", status.as_bytes());
    let v = gpg.run(
        &[
            "--status-fd",
            "1",
            "--verify",
            sig.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
        None,
    );
    let st = String::from_utf8_lossy(&v.stdout);
    assert!(st.contains("[GNUPG:] GOODSIG"), "gpg: {st}");
    assert!(
        st.contains(alice.public.fingerprint.as_deref().unwrap()),
        "gpg: {st}"
    );
    // A changed status does not verify in gpg either.
    let other = gpg.file("status2.txt", b"Online");
    let bad = gpg.try_run(
        &[
            "--status-fd",
            "1",
            "--verify",
            sig.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("BADSIG"));

    // 3. gpg encrypts a body to Alice (armored, headers stripped by us as a
    //    JEP-0027 client would); our session decrypts it.
    let text = "Hello Alice, from GnuPG";
    let enc = gpg.run(
        &[
            "--armor",
            "--encrypt",
            "--recipient",
            &format!("xmpp:{ALICE}"),
        ],
        Some(text.as_bytes()),
    );
    let stripped = armor::strip(&String::from_utf8(enc.stdout).unwrap()).unwrap();
    let mut m = stanza::chat_message(
        &format!("{BOB}/lab"),
        &format!("{ALICE}/lab"),
        "g1",
        jep0027::PLACEHOLDER,
    )
    .unwrap();
    m.append_child(stanza::text_element("x", jep0027::NS_ENCRYPTED, &stripped));
    let mut e = env("alice-recv");
    s.handle_inbound(&mut e, m, &mut out).unwrap();
    let got = delivered(&mut out);
    assert_eq!(got.len(), 1);
    assert_eq!(stanza::body(&got[0]).as_deref(), Some(text));
    assert!(got[0].get_child("x", jep0027::NS_ENCRYPTED).is_none());

    // 4. gpg signs a status (detached, text mode, as the spec's example); we verify it.
    let status = "Available for chat";
    let sig = gpg.run(
        &[
            "--armor",
            "--textmode",
            "--detach-sign",
            "--local-user",
            &format!("xmpp:{BOB}"),
        ],
        Some(status.as_bytes()),
    );
    let stripped = armor::strip(&String::from_utf8(sig.stdout).unwrap()).unwrap();
    let mut p = stanza::new(StanzaKind::Presence);
    stanza::set_attr(&mut p, "from", &format!("{BOB}/lab")).unwrap();
    p.append_child(stanza::text_element("status", stanza::NS_CLIENT, status));
    let mut signed = p.clone();
    signed.append_child(stanza::text_element("x", jep0027::NS_SIGNED, &stripped));
    let mut e = env("alice-recv2");
    s.handle_inbound(&mut e, signed.clone(), &mut out).unwrap();
    assert_eq!(delivered(&mut out), vec![p.clone()]);
    // The same signature over another status is a typed bad-signature error.
    let mut forged = stanza::new(StanzaKind::Presence);
    stanza::set_attr(&mut forged, "from", &format!("{BOB}/lab")).unwrap();
    forged.append_child(stanza::text_element("status", stanza::NS_CLIENT, "Away"));
    forged.append_child(stanza::text_element("x", jep0027::NS_SIGNED, &stripped));
    let err = s.handle_inbound(&mut e, forged, &mut out).unwrap_err();
    assert_eq!(err.kind(), "peer_misbehaved", "{err}");
    assert_eq!(out.pending_events(), 0);
    // gpg's binary-mode signature (no --textmode) verifies as well.
    let sig = gpg.run(
        &[
            "--armor",
            "--detach-sign",
            "--local-user",
            &format!("xmpp:{BOB}"),
        ],
        Some(status.as_bytes()),
    );
    let stripped = armor::strip(&String::from_utf8(sig.stdout).unwrap()).unwrap();
    let mut signed = p.clone();
    signed.append_child(stanza::text_element("x", jep0027::NS_SIGNED, &stripped));
    s.handle_inbound(&mut e, signed, &mut out).unwrap();
    assert_eq!(delivered(&mut out), vec![p]);
    // Counted at each call: 1 encryption, 1 signature, 1 decryption, 3
    // verifications (one bad), over the whole exchange on this thread.
    use e2elab_core::ops::OpClass::*;
    let c = e2elab_core::ops::snapshot().since(&start);
    assert_eq!(
        (
            c.calls_in(PkEncrypt),
            c.calls_in(Sign),
            c.calls_in(PkDecrypt)
        ),
        (1, 1, 1)
    );
    assert_eq!(c.calls_in(Verify), 3);
}

#[test]
fn jep0027_rsa2048_interop_with_gpg() {
    jep0027_both_ways(KeyAlgo::Rsa(2048));
}

#[test]
fn jep0027_cv25519_interop_with_gpg() {
    jep0027_both_ways(KeyAlgo::Cv25519);
}

#[test]
fn jep0027_rsa1024_our_key_is_accepted_by_gpg() {
    // Our hand-assembled RSA-1024 certificate (below every Sequoia cipher
    // suite): gpg imports it with its encryption subkey, encrypts a body to it,
    // and our session decrypts it. (Sequoia's StandardPolicy refuses RSA-1024
    // for new signatures and encryption on today's clock; on the harness's
    // 2005 virtual clock it accepts them.)
    let gpg = Gpg::new();
    gpg.gen_key(&format!("xmpp:{BOB}"), KeyAlgo::Rsa(2048));
    let bob_pub =
        import_public(jep0027::ID, BOB, &gpg.export_public(&format!("xmpp:{BOB}"))).unwrap();
    let proto = Jep0027::with_key(KeyAlgo::Rsa(1024));
    let alice = proto
        .generate_identity(&mut env("alice-id"), ALICE)
        .unwrap();
    gpg.import(&our_cert_armored(&alice.public));
    let listing = gpg.run(
        &["--with-colons", "--list-keys", &format!("xmpp:{ALICE}")],
        None,
    );
    let l = String::from_utf8_lossy(&listing.stdout);
    assert!(
        l.lines()
            .any(|x| x.starts_with("pub:") && x.split(':').nth(2) == Some("1024")),
        "{l}"
    );
    assert!(
        l.lines()
            .any(|x| x.starts_with("sub:") && x.contains(":e:")),
        "{l}"
    );
    let mut s = session(&proto, &alice, ALICE, bob_pub);
    let enc = gpg.run(
        &[
            "--armor",
            "--encrypt",
            "--recipient",
            &format!("xmpp:{ALICE}"),
        ],
        Some(b"to a 1024-bit key"),
    );
    let stripped = armor::strip(&String::from_utf8(enc.stdout).unwrap()).unwrap();
    let mut m =
        stanza::chat_message(&format!("{BOB}/lab"), &format!("{ALICE}/lab"), "g1", "x").unwrap();
    m.append_child(stanza::text_element("x", jep0027::NS_ENCRYPTED, &stripped));
    let mut out = Outbox::new();
    s.handle_inbound(&mut env("r"), m, &mut out).unwrap();
    assert_eq!(
        stanza::body(&delivered(&mut out)[0]).as_deref(),
        Some("to a 1024-bit key")
    );
}

#[test]
fn ox_signcrypt_interop_with_gpg() {
    let gpg = Gpg::new();
    gpg.gen_key(&format!("xmpp:{BOB}"), KeyAlgo::Cv25519);
    let bob_pub = import_public(ox::ID, BOB, &gpg.export_public(&format!("xmpp:{BOB}"))).unwrap();
    let proto = Ox::default();
    let alice = proto
        .generate_identity(&mut env("alice-id"), ALICE)
        .unwrap();
    gpg.import(&our_cert_armored(&alice.public));
    let mut s = session(&proto, &alice, ALICE, bob_pub);
    let mut out = Outbox::new();

    // Ours → gpg: gpg decrypts the base64 OpenPGP message, verifies Alice's
    // signature, and the plaintext is the <signcrypt> element.
    let m = stanza::chat_message(
        &format!("{ALICE}/lab"),
        &format!("{BOB}/lab"),
        "o1",
        "Secret for Bob",
    )
    .unwrap();
    s.send(&mut env("alice"), m, &mut out).unwrap();
    let wire = one_transmit(&mut out);
    let b64 = wire.get_child("openpgp", ox::NS_OX).unwrap().text();
    use base64::Engine;
    let bin = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    let f = gpg.file("ox.pgp", &bin);
    let dec = gpg.run(
        &["--status-fd", "2", "--decrypt", f.to_str().unwrap()],
        None,
    );
    let status = String::from_utf8_lossy(&dec.stderr);
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");
    assert!(
        status.contains(alice.public.fingerprint.as_deref().unwrap()),
        "{status}"
    );
    let sc: Element = String::from_utf8(dec.stdout).unwrap().parse().unwrap();
    assert!(sc.is("signcrypt", ox::NS_OX));
    assert_eq!(
        sc.get_child("to", ox::NS_OX).unwrap().attr("jid"),
        Some(BOB)
    );
    assert!(sc
        .get_child("time", ox::NS_OX)
        .unwrap()
        .attr("stamp")
        .is_some());
    assert!(!sc.get_child("rpad", ox::NS_OX).unwrap().text().is_empty());
    let payload = sc.get_child("payload", ox::NS_OX).unwrap();
    assert_eq!(
        payload.get_child("body", stanza::NS_CLIENT).unwrap().text(),
        "Secret for Bob"
    );

    // gpg → ours: gpg signs and encrypts a <signcrypt> to Alice; we deliver its payload.
    let mut sc = Element::bare("signcrypt", ox::NS_OX);
    let mut to = Element::bare("to", ox::NS_OX);
    stanza::set_attr(&mut to, "jid", ALICE).unwrap();
    sc.append_child(to);
    let mut tm = Element::bare("time", ox::NS_OX);
    let now = env("t").now();
    stanza::set_attr(&mut tm, "stamp", &now.to_rfc3339()).unwrap();
    sc.append_child(tm);
    sc.append_child(stanza::text_element("rpad", ox::NS_OX, "xyz"));
    let mut payload = Element::bare("payload", ox::NS_OX);
    payload.append_child(stanza::text_element(
        "body",
        stanza::NS_CLIENT,
        "Hello from gpg",
    ));
    payload.append_child(Element::bare(
        "active",
        "http://jabber.org/protocol/chatstates",
    ));
    sc.append_child(payload);
    let enc = gpg.run(
        &[
            "--sign",
            "--encrypt",
            "--local-user",
            &format!("xmpp:{BOB}"),
            "--recipient",
            &format!("xmpp:{ALICE}"),
            "--recipient",
            &format!("xmpp:{BOB}"),
        ],
        Some(stanza::serialize(&sc).as_bytes()),
    );
    let mut m = stanza::new(StanzaKind::Message);
    stanza::set_attr(&mut m, "from", &format!("{BOB}/lab")).unwrap();
    stanza::set_attr(&mut m, "to", &format!("{ALICE}/lab")).unwrap();
    stanza::set_attr(&mut m, "type", "chat").unwrap();
    m.append_child(stanza::text_element(
        "body",
        stanza::NS_CLIENT,
        ox::PLACEHOLDER,
    ));
    m.append_child(stanza::text_element(
        "openpgp",
        ox::NS_OX,
        &base64::engine::general_purpose::STANDARD.encode(&enc.stdout),
    ));
    s.handle_inbound(&mut env("alice-recv"), m, &mut out)
        .unwrap();
    let got = delivered(&mut out);
    assert_eq!(got.len(), 1);
    assert_eq!(stanza::body(&got[0]).as_deref(), Some("Hello from gpg"));
    assert!(got[0].has_child("active", "http://jabber.org/protocol/chatstates"));
    assert!(!got[0].has_child("openpgp", ox::NS_OX));

    // gpg encrypts without signing (a <crypt>-like message): rejected, typed.
    let enc = gpg.run(
        &["--encrypt", "--recipient", &format!("xmpp:{ALICE}")],
        Some(stanza::serialize(&sc).as_bytes()),
    );
    let mut m = stanza::new(StanzaKind::Message);
    stanza::set_attr(&mut m, "from", &format!("{BOB}/lab")).unwrap();
    m.append_child(stanza::text_element(
        "openpgp",
        ox::NS_OX,
        &base64::engine::general_purpose::STANDARD.encode(&enc.stdout),
    ));
    let err = s
        .handle_inbound(&mut env("alice-recv"), m, &mut out)
        .unwrap_err();
    assert_eq!(err.to_string(), "peer misbehaved: bad signature");
    assert_eq!(out.pending_events(), 0);
}

#[test]
fn armor_strip_matches_gpg_output_shape() {
    // gpg's armor carries a header line, maybe a Version/Comment header, a blank
    // line, the body, the CRC and the tail: strip keeps exactly body and CRC,
    // and the spec's re-wrap reads back in gpg.
    let gpg = Gpg::new();
    let enc = gpg.run(
        &[
            "--armor",
            "--comment",
            "made by the e2elab test",
            "--symmetric",
            "--passphrase",
            "pw",
        ],
        Some(b"payload"),
    );
    let full = String::from_utf8(enc.stdout).unwrap();
    assert!(full.contains("Comment: made by the e2elab test"));
    let stripped = armor::strip(&full).unwrap();
    assert!(!stripped.contains("-----") && !stripped.contains("Comment"));
    assert!(stripped.lines().last().unwrap().starts_with('='));
    let bin = armor::decode(ArmorKind::Message, &stripped).unwrap();
    assert!(!bin.is_empty());
    let f = gpg.file("sym.asc", &rewrap("MESSAGE", &stripped));
    let dec = gpg.run(
        &["--passphrase", "pw", "--decrypt", f.to_str().unwrap()],
        None,
    );
    assert_eq!(dec.stdout, b"payload");
}

/// What gpg produces with 2005-era settings, and with hidden recipients.
fn gpg_message_to_alice(extra: &[&str]) -> (Gpg, Identity, Element) {
    let gpg = Gpg::new();
    gpg.gen_key(&format!("xmpp:{BOB}"), KeyAlgo::Rsa(2048));
    let proto = Jep0027::with_key(KeyAlgo::Rsa(2048));
    let alice = proto
        .generate_identity(&mut env("alice-id"), ALICE)
        .unwrap();
    gpg.import(&our_cert_armored(&alice.public));
    let mut args = vec!["--armor", "--encrypt", "--recipient"];
    let rcpt = format!("xmpp:{ALICE}");
    args.push(&rcpt);
    args.extend_from_slice(extra);
    let enc = gpg.run(&args, Some(b"Hello from 2005"));
    let stripped = armor::strip(&String::from_utf8(enc.stdout).unwrap()).unwrap();
    let mut m = stanza::chat_message(
        &format!("{BOB}/lab"),
        &format!("{ALICE}/lab"),
        "g1",
        jep0027::PLACEHOLDER,
    )
    .unwrap();
    m.append_child(stanza::text_element("x", jep0027::NS_ENCRYPTED, &stripped));
    (gpg, alice, m)
}

/// Issue 16, fault 8: 2005-era ciphers are refused by name (and read
/// under `legacy-algorithms`), and hidden recipients are tried with our keys.
#[test]
fn era_ciphers_and_hidden_recipients_from_gpg() {
    for (extra, refused) in [
        (vec!["--cipher-algo", "CAST5"], Some("CAST5")),
        (vec!["--cipher-algo", "3DES"], Some("3DES")),
        (vec!["--throw-keyids"], None),
    ] {
        let (gpg, alice, m) = gpg_message_to_alice(&extra);
        let bob_pub =
            import_public(jep0027::ID, BOB, &gpg.export_public(&format!("xmpp:{BOB}"))).unwrap();
        let proto = Jep0027::with_key(KeyAlgo::Rsa(2048));
        let mut out = Outbox::new();
        let mut s = session(&proto, &alice, ALICE, bob_pub.clone());
        let r = s.handle_inbound(&mut env("r"), m.clone(), &mut out);
        match refused {
            Some(alg) => {
                let err = r.unwrap_err();
                assert!(
                    matches!(&err, e2elab_core::Error::Unsupported(w) if w.contains("refused by policy") && w.contains(alg)),
                    "{extra:?}: {err}"
                );
                assert!(delivered(&mut out).is_empty());
                // The faithful profile reads it under the documented option.
                let mut legacy = session_with(
                    &proto,
                    &alice,
                    ALICE,
                    bob_pub,
                    Options::new().set("legacy-algorithms", "true"),
                );
                legacy.handle_inbound(&mut env("r2"), m, &mut out).unwrap();
            }
            None => r.unwrap_or_else(|e| panic!("{extra:?}: {e}")),
        }
        let got = delivered(&mut out);
        assert_eq!(got.len(), 1, "{extra:?}");
        assert_eq!(
            stanza::body(&got[0]).as_deref(),
            Some("Hello from 2005"),
            "{extra:?}"
        );
    }
}
