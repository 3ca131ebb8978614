//! Independent checks with libotr's own toolkit (Debian package libotr5-bin):
//! `otr_parse` reads every wire message we send, and `otr_sesskeys` +
//! `otr_mackey` + `otr_readforge` recompute our session keys from the DH values
//! exported by the session's research hook (`dangerous_state`) and decrypt our data
//! messages with them. The tools must be installed: these tests fail, never
//! skip, when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use e2elab_core::{Element, Options, Session};
use e2elab_otr::{Otr, OTR_V2, OTR_V3};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

fn run_tool(tool: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is required (apt-get install libotr5-bin): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `otr_parse`'s output as (title, field -> value).
fn parse(body: &str) -> (String, HashMap<String, String>) {
    let out = run_tool("otr_parse", &[], &format!("{body}\n"));
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let title = lines.next().unwrap_or_default().trim().to_string();
    let fields = lines
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (title, fields)
}

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no field {k} in {f:?}"))
}

fn usg(h: &str) -> String {
    let mut h = h.to_lowercase();
    while h.starts_with("00") {
        h.drain(..2);
    }
    h
}

fn tool_line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no '{prefix}' in {out}"))
}

fn conversation(proto: Otr) -> (Pair, Vec<(usize, String)>) {
    let mut p = Pair::established(proto, &Options::new());
    let mut texts = Vec::new();
    for (n, from) in [0usize, 1, 0, 1, 1, 0].into_iter().enumerate() {
        let t = format!("message {n} from {from}: tools check");
        p.send_deliver(from, msg(from, &n.to_string(), &t));
        texts.push((from, t));
    }
    let side = &mut p.p[0];
    side.s.close(&mut side.env, &mut side.out).unwrap();
    let w = p.drain(0);
    p.deliver(1, w[0].clone()).0.unwrap();
    (p, texts)
}

fn check_parse(proto: Otr, v: &str) {
    let (p, texts) = conversation(proto);
    let tag = |i: usize| format!("{}", p.p[1 - i].s.their_instance());
    let wire: Vec<(usize, Element)> = p.wire.clone();
    assert_eq!(wire.len(), 5 + texts.len() + 1);
    let q = body_of(&wire[0].1);
    assert!(q.starts_with(&format!("?OTRv{}?", &v[1..])), "{q}");
    let expect = [
        (1, "D-H Commit Message:"),
        (0, "D-H Key Message:"),
        (1, "Reveal Signature Message:"),
        (0, "Signature Message:"),
    ];
    for ((from, e), (want_from, title)) in wire[1..5].iter().zip(expect) {
        assert_eq!(*from, want_from);
        let (t, f) = parse(&body_of(e));
        assert_eq!(t, title);
        assert_eq!(field(&f, "Version"), v);
        if v == "03" {
            assert_eq!(field(&f, "Sender instance"), tag(*from));
            let rcpt = if title.starts_with("D-H Commit") {
                "0".to_string()
            } else {
                tag(1 - *from)
            };
            assert_eq!(field(&f, "Receiver instance"), rcpt);
        } else {
            assert!(!f.contains_key("Sender instance"));
        }
        match title {
            "D-H Commit Message:" => {
                assert_eq!(field(&f, "Hashed Key").len(), 64);
                assert!(field(&f, "Encrypted Key").len() >= 380);
            }
            "D-H Key Message:" => assert!(field(&f, "D-H Key").len() >= 380),
            "Reveal Signature Message:" => {
                assert_eq!(field(&f, "Key").len(), 32);
                assert_eq!(field(&f, "MAC").len(), 40);
            }
            _ => assert_eq!(field(&f, "MAC").len(), 40),
        }
    }
    let mut last_ctr: HashMap<(usize, String, String), u64> = HashMap::new();
    for ((from, e), (tfrom, text)) in wire[5..5 + texts.len()].iter().zip(&texts) {
        assert_eq!(from, tfrom);
        let (t, f) = parse(&body_of(e));
        assert_eq!(t, "Data Message:");
        assert_eq!(field(&f, "Version"), v);
        assert_eq!(field(&f, "Flags"), "0");
        // AES-CTR: the ciphertext is the text plus libotr's NUL terminator.
        assert_eq!(field(&f, "Encrypted message").len(), 2 * (text.len() + 1));
        assert_eq!(field(&f, "MAC").len(), 40);
        let key = (
            *from,
            field(&f, "Sender keyid").to_string(),
            field(&f, "Rcpt keyid").to_string(),
        );
        let ctr = u64::from_str_radix(field(&f, "Counter"), 16).unwrap();
        assert!(
            ctr > last_ctr.get(&key).copied().unwrap_or(0),
            "counter rule"
        );
        last_ctr.insert(key, ctr);
        if v == "03" {
            assert_eq!(field(&f, "Sender instance"), tag(*from));
        }
    }
    // The disconnect is a data message too (an empty text with TLV 1).
    let (t, f) = parse(&body_of(&wire.last().unwrap().1));
    assert_eq!(t, "Data Message:");
    assert_eq!(field(&f, "Version"), v);
}

#[test]
fn otr_parse_reads_every_v3_message() {
    check_parse(OTR_V3, "03");
}

#[test]
fn otr_parse_reads_every_v2_message() {
    check_parse(OTR_V2, "02");
}

fn check_sesskeys(proto: Otr) {
    let mut p = Pair::established(proto, &Options::new());
    // Alice answered Bob's DH-Commit with her DH-Key: her AKE key (key id 1).
    let dh_key_msg = body_of(&p.wire[2].1);
    let (_, akef) = parse(&dh_key_msg);
    let alice_ake_pub = field(&akef, "D-H Key").to_string();
    let mut first = true;
    for (n, from) in [0usize, 0, 1, 0, 1, 1].into_iter().enumerate() {
        // The pair our next data message uses: our previous key (id
        // our_keyid - 1) and the peer's current one.
        let st = p.p[from].s.dangerous_state().unwrap();
        let ours = st
            .ours
            .iter()
            .find(|k| k.keyid + 1 == st.our_keyid)
            .unwrap();
        let their = st
            .theirs
            .iter()
            .find(|(id, _)| *id == st.their_keyid)
            .unwrap();
        let (our_private, our_keyid) = (ours.private.clone().unwrap(), ours.keyid);
        let (their_public, their_keyid) = (their.1.clone().unwrap(), their.0);
        let keys = run_tool(
            "otr_sesskeys",
            &[&usg(&our_private), &usg(&their_public)],
            "",
        );
        if first {
            assert_eq!(tool_line(&keys, "Our public key:"), alice_ake_pub);
            first = false;
        }
        let aes = tool_line(&keys, "Sending   AES key:").to_string();
        let mac = tool_line(&keys, "Sending   MAC key:").to_string();
        assert_eq!(aes.len(), 32);
        let mk = run_tool("otr_mackey", &[&aes], "");
        assert!(mk.contains(&mac), "otr_mackey {aes}: {mk} (want {mac})");
        let text = format!("secret number {n} from party {from}");
        let w = p.send_deliver(from, msg(from, &n.to_string(), &text));
        assert_eq!(w.len(), 1);
        let body = body_of(&w[0]);
        let (_, f) = parse(&body);
        assert_eq!(field(&f, "Sender keyid"), our_keyid.to_string());
        assert_eq!(field(&f, "Rcpt keyid"), their_keyid.to_string());
        let dec = run_tool("otr_readforge", &[&aes], &format!("{body}\n"));
        assert!(
            dec.contains(&format!("Plaintext: ``{text}''")),
            "otr_readforge with our exported keys: {dec}"
        );
        // A wrong key does not verify.
        let wrong = format!("{:032x}", u128::from_str_radix(&aes, 16).unwrap() ^ 1);
        let bad = run_tool("otr_readforge", &[&wrong], &format!("{body}\n"));
        assert!(!bad.contains(&text));
    }
}

#[test]
fn otr_sesskeys_reproduces_v3_session_keys() {
    check_sesskeys(OTR_V3);
}

#[test]
fn otr_sesskeys_reproduces_v2_session_keys() {
    check_sesskeys(OTR_V2);
}
