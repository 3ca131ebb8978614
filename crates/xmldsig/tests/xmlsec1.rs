//! Interop with libxmlsec1's CLI (Debian `xmlsec1`, installed by
//! scripts/setup.sh) in both directions, for both profiles, with the
//! manifest's child digests recomputed independently by lxml
//! (tests/xep0290.py). A missing xmlsec1 or lxml fails these tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2elab_core::{
    stanza, Element, Env, Event, Identity, Options, Outbox, Protocol, PublicIdentity, Role,
    Session, SessionConfig, Timestamp,
};
use e2elab_xmldsig::XmlDsig;
use openssl::pkey::PKey;
use openssl::x509::X509;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";
const ID_ATTR: &str = "urn:xmpp:dsig:0:stanza-desc";

struct Party {
    id: Identity,
    key_pem: PathBuf,
    cert_pem: PathBuf,
}

struct Keys {
    _dir: tempfile::TempDir,
    alice: Party,
    bob: Party,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env::for_party(5, "xmlsec1");
        let mk = |env: &mut Env, jid: &str, name: &str| {
            let id = XmlDsig::dsig().generate_identity(env, jid).unwrap();
            let key = PKey::private_key_from_pkcs8(id.secret().expose()).unwrap();
            let cert = X509::from_der(&id.public.data).unwrap();
            let key_pem = dir.path().join(format!("{name}.key"));
            let cert_pem = dir.path().join(format!("{name}.pem"));
            std::fs::write(&key_pem, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
            std::fs::write(&cert_pem, cert.to_pem().unwrap()).unwrap();
            Party {
                id,
                key_pem,
                cert_pem,
            }
        };
        let alice = mk(&mut env, ALICE, "alice");
        let bob = mk(&mut env, BOB, "bob");
        Keys {
            _dir: dir,
            alice,
            bob,
        }
    })
}

/// The same key pair labelled for `profile`.
fn as_profile(id: &Identity, profile: &str) -> Arc<Identity> {
    Arc::new(Identity::new(
        PublicIdentity {
            protocol: profile.to_string(),
            ..id.public.clone()
        },
        id.secret().clone(),
    ))
}

fn session(profile: &str, me: &Party, peer: &Party, opts: Options) -> Box<dyn Session> {
    let p = match profile {
        "xep0290-dsig" => XmlDsig::dsig(),
        _ => XmlDsig::xmlenc(),
    };
    let mut env = Env::for_party(1, me.id.jid());
    p.new_session(
        &mut env,
        SessionConfig {
            role: Role::Initiator,
            local_jid: e2elab_core::Jid::new(&format!("{}/lab", me.id.jid())).unwrap(),
            peer_jid: e2elab_core::Jid::new(&format!("{}/lab", peer.id.jid())).unwrap(),
            identity: as_profile(&me.id, profile),
            peer_public: Some(as_profile(&peer.id, profile).public.clone()),
            options: opts,
        },
    )
    .unwrap()
}

fn env_at(t: Timestamp) -> Env {
    let mut e = Env::for_party(2, "t");
    e.set_now(t);
    e
}

fn t0() -> Timestamp {
    Timestamp::DEFAULT_START
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?} runs (scripts/setup.sh installs xmlsec1 and python3-lxml): {e}")
    });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `xmlsec1 --verify` of `file` with `cert` as the signer's key (trusted
/// too, for a certificate attached in KeyInfo).
fn xmlsec1_verify(cert: &Path, file: &Path) -> (bool, String) {
    run(Command::new("xmlsec1")
        .args(["--verify", "--pubkey-cert-pem"])
        .arg(cert)
        .args(["--trusted-pem"])
        .arg(cert)
        .args(["--id-attr:id", ID_ATTR])
        .arg(file))
}

fn python() -> Command {
    // Debian's interpreter, where python3-lxml is installed.
    let mut c = Command::new("/usr/bin/python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xep0290.py"));
    c
}

fn send(s: &mut dyn Session, app: Element) -> String {
    let mut out = Outbox::new();
    s.send(&mut env_at(t0()), app, &mut out).unwrap();
    stanza::serialize(&out.poll_transmit().unwrap())
}

fn strip_decl(s: &str) -> &str {
    match s.find("?>") {
        Some(i) if s.starts_with("<?xml") => s[i + 2..].trim(),
        _ => s.trim(),
    }
}

/// Deliver `wire` to `s`; the delivered body, or the error.
fn receive(s: &mut dyn Session, wire: &str) -> Result<String, e2elab_core::Error> {
    let el = stanza::parse(strip_decl(wire)).unwrap();
    let mut out = Outbox::new();
    s.handle_inbound(&mut env_at(t0()), el, &mut out)?;
    while let Some(e) = out.poll_event() {
        if let Event::Delivered {
            stanza: d,
            protection,
        } = e
        {
            assert!(protection.authenticated);
            return Ok(stanza::body(&d).unwrap_or_default());
        }
    }
    panic!("nothing delivered");
}

fn app(body: &str) -> Element {
    stanza::chat_message(&format!("{ALICE}/lab"), &format!("{BOB}/lab"), "m1", body).unwrap()
}

#[test]
fn our_signatures_verify_in_xmlsec1_and_lxml_recomputes_the_manifest() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    for c14n in ["exclusive", "inclusive"] {
        let mut a = session(
            "xep0290-dsig",
            &k.alice,
            &k.bob,
            Options::new().set("c14n", c14n),
        );
        // The first stanza carries the certificate in KeyInfo, the second not.
        for (i, body) in ["Wherefore art thou, Romeo? <&>", "second"]
            .iter()
            .enumerate()
        {
            let wire = send(a.as_mut(), app(body));
            assert_eq!(wire.contains("X509Certificate"), i == 0);
            let f = dir.path().join(format!("{c14n}-{i}.xml"));
            std::fs::write(&f, &wire).unwrap();
            let (ok, log) = xmlsec1_verify(&k.alice.cert_pem, &f);
            assert!(ok, "xmlsec1 --verify ({c14n}, {i}): {log}\n{wire}");
            let (ok, log) = run(python().arg("check").arg(&f).arg(c14n));
            assert!(ok && log.starts_with("ok 1"), "lxml ({c14n}): {log}");
            // A changed body: xmlsec1 still verifies the signed manifest
            // (it does not read XEP-0290's references) but lxml does not
            // match the digest: the manifest check is the receiver's.
            std::fs::write(
                &f,
                wire.replacen("second", "Second", 1)
                    .replacen("Romeo", "romeo", 1),
            )
            .unwrap();
            let (ok, _) = run(python().arg("check").arg(&f).arg(c14n));
            assert!(!ok, "lxml accepted a changed body");
            // A changed manifest: xmlsec1 refuses.
            std::fs::write(&f, wire.replacen("<signer>alice@", "<signer>mallory@", 1)).unwrap();
            let (ok, _) = xmlsec1_verify(&k.alice.cert_pem, &f);
            assert!(!ok, "xmlsec1 accepted a changed manifest");
        }
    }
}

#[test]
fn our_encryption_decrypts_in_xmlsec1_and_the_content_verifies() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    for cipher in ["aes128-gcm", "aes128-cbc"] {
        let mut a = session(
            "xmlenc-dsig",
            &k.alice,
            &k.bob,
            Options::new().set("cipher", cipher),
        );
        let wire = send(a.as_mut(), app("for Bob only"));
        assert!(!wire.contains("for Bob only"));
        let f = dir.path().join(format!("{cipher}.xml"));
        let d = dir.path().join(format!("{cipher}-dec.xml"));
        std::fs::write(&f, &wire).unwrap();
        let (ok, log) = run(Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(&k.bob.key_pem)
            .arg("--output")
            .arg(&d)
            .arg(&f));
        assert!(ok, "xmlsec1 --decrypt ({cipher}): {log}");
        let dec = std::fs::read_to_string(&d).unwrap();
        assert!(dec.contains(">for Bob only</body>"), "{dec}");
        let (ok, log) = xmlsec1_verify(&k.alice.cert_pem, &d);
        assert!(
            ok,
            "xmlsec1 --verify of the decrypted content ({cipher}): {log}"
        );
        let (ok, log) = run(python().arg("check").arg(&d));
        assert!(ok, "lxml: {log}");
    }
}

/// A stanza signed by xmlsec1 from a template whose manifest lxml computed.
fn xmlsec1_signed(dir: &Path, prefix: &str, body: &str) -> String {
    let k = keys();
    let ts = e2elab_xmldsig::dsig::format_timestamp(t0());
    let (ok, template) = run(python().args([
        "template",
        ALICE,
        &format!("{ALICE}/lab"),
        &format!("{BOB}/lab"),
        "x1",
        "chat",
        &ts,
        body,
        prefix,
    ]));
    assert!(ok, "{template}");
    let t = dir.join(format!("template-{prefix}.xml"));
    let s = dir.join(format!("signed-{prefix}.xml"));
    std::fs::write(&t, template.trim()).unwrap();
    let (ok, log) = run(Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem"])
        .arg(&k.alice.key_pem)
        .args(["--id-attr:id", ID_ATTR, "--output"])
        .arg(&s)
        .arg(&t));
    assert!(ok, "xmlsec1 --sign: {log}");
    std::fs::read_to_string(&s).unwrap()
}

#[test]
fn xmlsec1_signatures_from_templates_are_accepted() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let signed = xmlsec1_signed(dir.path(), "none", "signed by xmlsec1");
    let mut b = session("xep0290-dsig", &k.bob, &k.alice, Options::new());
    assert_eq!(receive(b.as_mut(), &signed).unwrap(), "signed by xmlsec1");
    // Tampered: refused.
    let mut b = session("xep0290-dsig", &k.bob, &k.alice, Options::new());
    let bad = signed.replacen("signed by xmlsec1", "signed by mallory", 1);
    assert!(receive(b.as_mut(), &bad).is_err());
    // DECISIONS 3: a signature computed over a ds:-prefixed serialization
    // (valid for xmlsec1) fails closed here.
    let prefixed = xmlsec1_signed(dir.path(), "ds", "prefixed");
    let f = dir.path().join("prefixed.xml");
    std::fs::write(&f, &prefixed).unwrap();
    let (ok, log) = xmlsec1_verify(&k.alice.cert_pem, &f);
    assert!(ok, "xmlsec1 verifies its own prefixed signature: {log}");
    let mut b = session("xep0290-dsig", &k.bob, &k.alice, Options::new());
    let r = receive(b.as_mut(), &prefixed);
    assert!(
        matches!(
            r,
            Err(e2elab_core::Error::PeerMisbehaved(
                e2elab_core::PeerMisbehaved::BadSignature
            ))
        ),
        "{r:?}"
    );
}

#[test]
fn xmlsec1_encryptions_are_accepted() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let signed = xmlsec1_signed(dir.path(), "none", "sealed by xmlsec1");
    let s = dir.path().join("signed.xml");
    std::fs::write(&s, strip_decl(&signed)).unwrap();
    for (cipher, uri) in [
        ("aes128-gcm", "http://www.w3.org/2009/xmlenc11#aes128-gcm"),
        ("aes128-cbc", "http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
    ] {
        let t = dir.path().join(format!("enc-template-{cipher}.xml"));
        std::fs::write(
            &t,
            format!(
                "<EncryptedData xmlns=\"http://www.w3.org/2001/04/xmlenc#\" Type=\"http://www.w3.org/2001/04/xmlenc#Content\">\
                 <EncryptionMethod Algorithm=\"{uri}\"/>\
                 <KeyInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><EncryptedKey xmlns=\"http://www.w3.org/2001/04/xmlenc#\">\
                 <EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\"/>\
                 <CipherData><CipherValue/></CipherData></EncryptedKey></KeyInfo>\
                 <CipherData><CipherValue/></CipherData></EncryptedData>"
            ),
        )
        .unwrap();
        let e = dir.path().join(format!("enc-{cipher}.xml"));
        let (ok, log) = run(Command::new("xmlsec1")
            .args(["--encrypt", "--pubkey-cert-pem"])
            .arg(&k.bob.cert_pem)
            .args(["--session-key", "aes-128", "--xml-data"])
            .arg(&s)
            .args(["--node-xpath", "/*", "--output"])
            .arg(&e)
            .arg(&t));
        assert!(ok, "xmlsec1 --encrypt ({cipher}): {log}");
        let wire = std::fs::read_to_string(&e).unwrap();
        assert!(!wire.contains("sealed by xmlsec1"));
        let mut b = session(
            "xmlenc-dsig",
            &k.bob,
            &k.alice,
            Options::new().set("cipher", cipher),
        );
        assert_eq!(
            receive(b.as_mut(), &wire).unwrap(),
            "sealed by xmlsec1",
            "{cipher}"
        );
    }
}
