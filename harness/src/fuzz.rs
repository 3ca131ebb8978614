//! The fuzzing campaign's targets, as plain functions.
//!
//! Each [`Target`] takes arbitrary bytes and drives one receive path with
//! them: the stanza parser, ESessions' negotiation and SSH-style handshake
//! receivers, the content of a decrypted XEP-0200 `<c/>`, JEP-0027, OX,
//! RFC 3923 and the OTR adapter (libotr underneath). The engine in `fuzz/`
//! (cargo-fuzz, libFuzzer) calls [`run`]; so do the corpus replay test
//! (`cargo test -p e2elab --test fuzz_corpus`) and `e2elab fuzz-seeds`, so
//! the campaign's inputs replay in the ordinary build too.
//!
//! A target fails (panics) on:
//! - a panic anywhere under it (the peer must survive any input);
//! - a broken bad-input contract: a session whose profile says
//!   [`AfterBadInput::Unchanged`] returned an error but changed state,
//!   emitted a stanza or delivered anything;
//! - for the parser: a stanza that parses, serializes and does not parse
//!   back to an equal tree.
//!
//! Input layout: the first byte picks the variant (profile, and fresh or
//! established receiver), the rest is the stanza's text (UTF-8; anything
//! else is dropped as the peer drops a bad line).
//!
//! ## DECISIONS
//! - *Getting past the MAC.* No test-only backend weakens any code path:
//!   the `esessions-content` target feeds the bytes to
//!   [`e2elab_esessions::channel::parse_content`] and the checks a session
//!   runs on what a `<c/>` decrypted to (terminate form, forms, rekey
//!   elements): exactly the code that runs after a MAC verifies. The
//!   published results and this campaign run the same crypto.
//! - *Established receivers* (OTR, the OpenPGP and S/MIME profiles) are
//!   kept across inputs and rebuilt every [`REBUILD_EVERY`] inputs, or as
//!   soon as one closed: their contract is that bad input changes nothing,
//!   and the contract check above holds them to it, so an input replays the
//!   same way.
//! - ESessions receivers terminate on a bad `<c/>` (XEP-0200), so a kept
//!   established ESessions session would cost a handshake (milliseconds)
//!   per input; the established path is fuzzed through `esessions-content`.
// A finding is reported to the engine by panicking: that is this module's
// whole output channel.
#![allow(clippy::panic)]

use crate::driver::{self, Identities};
use crate::link::{Dir, Link, Phase};
use crate::registry;
use e2elab_core::claims::AfterBadInput;
use e2elab_core::{stanza, Options, Protocol, SessionState};
use std::cell::RefCell;
use std::collections::HashMap;

/// Largest seed kept (and the engine's `-max_len`): the varied stanzas'
/// 64 KiB bodies would slow every mutation and find nothing a 16 KiB one
/// does not (the size limits have their own tests).
pub const MAX_SEED: usize = 16 * 1024;

/// Inputs a kept established receiver serves before it is rebuilt.
pub const REBUILD_EVERY: u32 = 256;

/// One fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `stanza::parse` and `stanza::serialize`.
    Stanza,
    /// ESessions' receivers in a fresh responder: SIGMA-R, SIGMA-I, simplified, SSH-style.
    EsessionsHandshake,
    /// What a verified `<c/>` decrypted to.
    EsessionsContent,
    /// JEP-0027.
    Jep0027,
    /// XEP-0373/0374 (OX).
    Ox,
    /// RFC 3923 (both profiles): CPIM, PIDF, MIME and CMS framing.
    Rfc3923,
    /// OTR v3 and v2 over libotr.
    Otr,
    /// XEP-0290 signatures and XML Encryption: the manifest, C14N, references.
    Xmldsig,
}

/// Every target, in the order the campaign runs them.
pub const ALL: &[Target] = &[
    Target::Stanza,
    Target::EsessionsHandshake,
    Target::EsessionsContent,
    Target::Jep0027,
    Target::Ox,
    Target::Rfc3923,
    Target::Otr,
    Target::Xmldsig,
];

impl Target {
    /// The name used by `fuzz/`, the corpora and results/fuzz.json.
    pub fn name(self) -> &'static str {
        match self {
            Target::Stanza => "stanza",
            Target::EsessionsHandshake => "esessions_handshake",
            Target::EsessionsContent => "esessions_content",
            Target::Jep0027 => "jep0027",
            Target::Ox => "ox",
            Target::Rfc3923 => "rfc3923",
            Target::Otr => "otr",
            Target::Xmldsig => "xmldsig",
        }
    }

    /// By name.
    pub fn from_name(s: &str) -> Option<Target> {
        ALL.iter().copied().find(|t| t.name() == s)
    }

    /// The profiles a session target drives; the first byte of an input
    /// picks one (and, where [`Target::keeps_established`], whether the
    /// receiver is fresh or established).
    pub fn profiles(self) -> &'static [&'static str] {
        match self {
            Target::Stanza | Target::EsessionsContent => &[],
            Target::EsessionsHandshake => &[
                "esessions-sigma-r",
                "esessions-sigma-i",
                "esessions-simplified",
                "esessions-ssh",
            ],
            Target::Jep0027 => &["jep0027"],
            Target::Ox => &["xep0373-ox"],
            Target::Rfc3923 => &["rfc3923", "rfc3923-modern"],
            Target::Otr => &["otr-v3", "otr-v2"],
            Target::Xmldsig => &["xep0290-dsig", "xmlenc-dsig"],
        }
    }

    /// Whether inputs may go to an established receiver.
    pub fn keeps_established(self) -> bool {
        matches!(
            self,
            Target::Jep0027 | Target::Ox | Target::Rfc3923 | Target::Otr | Target::Xmldsig
        )
    }

    /// The XML names and words this target's receivers read, for the
    /// engine's dictionary (`fuzz/dict/<name>.dict`).
    pub fn dictionary(self) -> &'static [&'static str] {
        const XML: &[&str] = &[
            "<",
            ">",
            "</",
            "/>",
            "='",
            "\"",
            "xmlns",
            "jabber:client",
            "message",
            "presence",
            "iq",
            "body",
            "thread",
            "subject",
            "from",
            "to",
            "type",
            "id",
            "chat",
            "error",
            "alice@example.org/lab",
            "bob@example.net/lab",
            "&amp;",
            "&lt;",
            "<![CDATA[",
            "]]>",
            "<?xml",
            "<!--",
            "-->",
        ];
        const ESS: &[&str] = &[
            "feature",
            "http://jabber.org/protocol/feature-neg",
            "jabber:x:data",
            "x",
            "field",
            "var",
            "value",
            "FORM_TYPE",
            "urn:xmpp:ssn",
            "form",
            "submit",
            "result",
            "accept",
            "terminate",
            "nonce",
            "dhkeys",
            "modp",
            "crypt_algs",
            "hash_algs",
            "sign_algs",
            "compress",
            "aes128-ctr",
            "sha256",
            "hmac-sha256",
            "rsa-sha256",
            "identity",
            "mac",
            "init_pubkey",
            "resp_pubkey",
            "rekey_freq",
            "c",
            "data",
            "key",
            "http://www.xmpp.org/extensions/xep-0200.html#ns",
            "packet",
            "ssh",
            "0",
            "1",
            "14",
            "5",
            "2",
        ];
        const PGP: &[&str] = &[
            "jabber:x:encrypted",
            "jabber:x:signed",
            "status",
            "-----BEGIN PGP MESSAGE-----",
            "-----END PGP MESSAGE-----",
            "-----BEGIN PGP SIGNATURE-----",
            "openpgp",
            "urn:xmpp:openpgp:0",
            "signcrypt",
            "sign",
            "crypt",
            "rpad",
            "time",
            "stamp",
            "payload",
            "Version:",
            "Charset:",
        ];
        const SMIME: &[&str] = &[
            "e2e",
            "urn:ietf:params:xml:ns:xmpp-e2e",
            "Content-Type:",
            "application/pkcs7-mime",
            "application/pkcs7-signature",
            "multipart/signed",
            "message/cpim",
            "application/xmpp+xml",
            "application/pidf+xml",
            "boundary=",
            "smime-type=",
            "enveloped-data",
            "signed-data",
            "Content-Transfer-Encoding: base64",
            "From:",
            "To:",
            "DateTime:",
            "MIME-Version: 1.0",
            "\r\n",
            "--",
        ];
        const OTR: &[&str] = &[
            "?OTR",
            "?OTRv",
            "?OTR?v2?",
            "?OTRv23?",
            "?OTR:AAI",
            "?OTR:AAM",
            "?OTR:AAIC",
            "?OTR:AAMC",
            "?OTR:AAMK",
            "?OTR:AAMR",
            "?OTR:AAMS",
            "?OTR:AAMD",
            "?OTR:AAID",
            "?OTR Error:",
            " \t  \t\t\t\t \t \t \t  ",
            "  \t\t  \t ",
            "  \t\t  \t\t",
            ".",
            ",",
        ];
        const DSIG: &[&str] = &[
            "Signature",
            "http://www.w3.org/2000/09/xmldsig#",
            "SignedInfo",
            "CanonicalizationMethod",
            "SignatureMethod",
            "Reference",
            "Transforms",
            "Transform",
            "DigestMethod",
            "DigestValue",
            "SignatureValue",
            "KeyInfo",
            "X509Data",
            "X509Certificate",
            "Object",
            "Algorithm",
            "URI",
            "#stanza-desc",
            "stanza-desc",
            "urn:xmpp:dsig:0",
            "urn:xmpp:dsig:ref:0#",
            "urn:xmpp:dsig:transform:0",
            "d:id",
            "signer",
            "reference",
            "timestamp",
            "http://www.w3.org/2001/10/xml-exc-c14n#",
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256",
            "EncryptedData",
            "EncryptedKey",
            "EncryptionMethod",
            "CipherData",
            "CipherValue",
            "http://www.w3.org/2001/04/xmlenc#",
            "http://www.w3.org/2001/04/xmlenc#Content",
            "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
            "delay",
            "urn:xmpp:delay",
            "stamp",
            "xml:lang",
        ];
        match self {
            Target::Stanza => XML,
            Target::Xmldsig => DSIG,
            Target::EsessionsHandshake | Target::EsessionsContent => ESS,
            Target::Jep0027 | Target::Ox => PGP,
            Target::Rfc3923 => SMIME,
            Target::Otr => OTR,
        }
    }
}

/// Run one input through a target. Panics only on a finding.
pub fn run(target: Target, data: &[u8]) {
    match target {
        Target::Stanza => fuzz_stanza(data),
        Target::EsessionsContent => fuzz_content(data),
        _ => fuzz_session(target, data),
    }
}

fn fuzz_stanza(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(el) = stanza::parse(text) else {
        return;
    };
    let out = stanza::serialize(&el);
    match stanza::parse(&out) {
        Ok(back) => assert!(
            back == el,
            "serialize then parse changed the tree: {text:?} -> {out:?}"
        ),
        Err(e) => {
            panic!("a parsed stanza serialized to what does not parse ({e}): {text:?} -> {out:?}")
        }
    }
}

fn fuzz_content(data: &[u8]) {
    use e2elab_esessions::channel;
    use e2elab_esessions::sigma;
    let Ok(content) = channel::parse_content(data) else {
        return;
    };
    let _ = sigma::is_terminate_content(&content);
    for el in &content {
        // What a session does with protected children: serialize them back
        // into the delivered stanza, read forms and keys.
        let _ = stanza::serialize(el);
        for x in el.children() {
            let _ = e2elab_esessions::form::Form::from_element(x);
        }
        let _ = e2elab_esessions::form::Form::from_element(el);
    }
}

struct Kept {
    link: Link,
    served: u32,
}

thread_local! {
    static IDS: RefCell<HashMap<&'static str, std::sync::Arc<Identities>>> = RefCell::new(HashMap::new());
    static KEPT: RefCell<HashMap<&'static str, Kept>> = RefCell::new(HashMap::new());
}

fn proto(id: &str) -> Box<dyn Protocol> {
    registry::get(id).unwrap_or_else(|| panic!("fuzz: no profile {id}"))
}

fn identities(id: &'static str, p: &dyn Protocol) -> std::sync::Arc<Identities> {
    IDS.with(|m| {
        m.borrow_mut()
            .entry(id)
            .or_insert_with(|| {
                std::sync::Arc::new(driver::provision(p, 1).unwrap_or_else(|e| panic!("fuzz: {e}")))
            })
            .clone()
    })
}

fn fresh(id: &'static str) -> Link {
    let p = proto(id);
    let ids = identities(id, p.as_ref());
    driver::link_for(p.as_ref(), &ids, 1, &Options::new()).unwrap_or_else(|e| panic!("fuzz: {e}"))
}

fn established(id: &'static str) -> Link {
    let mut link = fresh(id);
    link.handshake()
        .unwrap_or_else(|e| panic!("fuzz: {id}: honest handshake failed: {e}"));
    link.set_phase(Phase::Data);
    link
}

fn fuzz_session(target: Target, data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let profiles = target.profiles();
    let id = profiles[usize::from(sel) % profiles.len()];
    // The handshake-less profiles are established from creation: a kept
    // session is the same receiver as a fresh one, without the cost of
    // making one per input.
    let keep = target.keeps_established() && (sel / 128 == 1 || target != Target::Otr);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let after = proto(id).info().after_bad_input;
    if keep {
        KEPT.with(|k| {
            let mut k = k.borrow_mut();
            let stale = k.get(id).is_none_or(|e| {
                e.served >= REBUILD_EVERY
                    || e.link.party(0).session().state() != SessionState::Established
                    || e.link.party(1).session().state() != SessionState::Established
            });
            if stale {
                k.insert(
                    id,
                    Kept {
                        link: established(id),
                        served: 0,
                    },
                );
            }
            let e = k.get_mut(id).unwrap_or_else(|| panic!("fuzz: kept link"));
            e.served += 1;
            deliver(&mut e.link, id, after, text);
            e.link.transcript.clear();
        });
    } else {
        let mut link = fresh(id);
        deliver(&mut link, id, after, text);
    }
}

fn deliver(link: &mut Link, id: &str, after: AfterBadInput, text: &str) {
    let d = link.deliver_raw(Dir::AtoB, text);
    if let Err(e) = &d.result {
        if after == AfterBadInput::Unchanged {
            assert!(
                d.state_before == d.state_after && d.emitted == 0 && d.delivered.is_empty(),
                "{id}: the error ({e}) changed the session: state {:?} -> {:?}, {} emitted, {} delivered",
                d.state_before,
                d.state_after,
                d.emitted,
                d.delivered.len()
            );
        }
    }
    // Whatever was answered or delivered must serialize (the peer prints it).
    for el in &d.delivered {
        let _ = stanza::serialize(el);
    }
    let _ = link.pump();
    let _ = link.take_in_flight();
}

/// Seed inputs for a target: wire stanzas of real runs (handshake, a few
/// messages each way of the workload and the varied stanzas, close), each
/// with the selector bytes that reach the profile fresh and established.
pub fn seeds(target: Target) -> crate::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let push = |out: &mut Vec<Vec<u8>>, sel: Option<u8>, xml: &str| {
        let mut v = Vec::with_capacity(xml.len() + 1);
        if let Some(s) = sel {
            v.push(s);
        }
        v.extend_from_slice(xml.as_bytes());
        if v.len() <= MAX_SEED && !out.contains(&v) {
            out.push(v);
        }
    };
    match target {
        Target::Stanza => {
            for id in [
                "plaintext",
                "esessions-sigma-r",
                "rfc3923",
                "otr-v3",
                "xep0373-ox",
            ] {
                for x in transcript_of(id)? {
                    push(&mut out, None, &x);
                }
            }
        }
        Target::EsessionsContent => {
            // The plaintext of every <c/> a real SIGMA-R run carried.
            let p = proto("esessions-sigma-r");
            for (_, e) in crate::conformance::varied_stanzas(p.as_ref(), 0)? {
                let s: String = e.children().map(stanza::serialize).collect();
                push(&mut out, None, &s);
            }
            for f in [true, false] {
                let term = e2elab_esessions::sigma::terminate_content(f);
                push(&mut out, None, &stanza::serialize(&term));
            }
        }
        _ => {
            for (i, id) in target.profiles().iter().enumerate() {
                let sel = u8::try_from(i).map_err(crate::Error::msg)?;
                for x in transcript_of(id)? {
                    push(&mut out, Some(sel), &x);
                    if target.keeps_established() {
                        push(&mut out, Some(sel + 128), &x);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Every stanza a real run of `id` put on the wire, both directions:
/// handshake, three workload messages each way, the varied stanzas, close.
fn transcript_of(id: &str) -> crate::Result<Vec<String>> {
    let p = proto(id);
    let (_, mut link) = driver::run_workload(p.as_ref(), 1, 3, 64, &Options::new(), |_| {})?;
    for from in 0..2 {
        for (_, e) in crate::conformance::varied_stanzas(p.as_ref(), from)? {
            let _ = link.send(from, e);
            let _ = link.pump();
        }
    }
    let _ = link.close(0);
    let _ = link.pump();
    Ok(link
        .transcript
        .iter()
        .filter(|t| t.dir == Dir::AtoB)
        .map(|t| t.xml.clone())
        .collect())
}

/// Write `dir/seeds/<target>/<n>` and `dir/dict/<target>.dict`; the number of seeds.
pub fn write_seeds(target: Target, dir: &std::path::Path) -> crate::Result<usize> {
    let seeds = seeds(target)?;
    let sd = dir.join("seeds").join(target.name());
    if sd.exists() {
        std::fs::remove_dir_all(&sd).map_err(|e| crate::Error::io(sd.display().to_string(), e))?;
    }
    std::fs::create_dir_all(&sd).map_err(|e| crate::Error::io(sd.display().to_string(), e))?;
    for (i, s) in seeds.iter().enumerate() {
        let p = sd.join(format!("seed-{i:04}"));
        std::fs::write(&p, s).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
    }
    let dd = dir.join("dict");
    std::fs::create_dir_all(&dd).map_err(|e| crate::Error::io(dd.display().to_string(), e))?;
    let mut dict = String::new();
    for w in target.dictionary() {
        dict.push('"');
        for b in w.bytes() {
            if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
                dict.push(char::from(b));
            } else {
                dict.push_str(&format!("\\x{b:02x}"));
            }
        }
        dict.push_str("\"\n");
    }
    let p = dd.join(format!("{}.dict", target.name()));
    std::fs::write(&p, dict).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
    Ok(seeds.len())
}

/// Run every file of `dir/seeds/<target>/` and `dir/corpus/<target>/`
/// through the target; the number of inputs and the time taken.
pub fn replay(
    target: Target,
    dir: &std::path::Path,
) -> crate::Result<(usize, std::time::Duration)> {
    let t0 = std::time::Instant::now();
    let mut n = 0;
    for sub in ["seeds", "corpus", "regressions"] {
        let d = dir.join(sub).join(target.name());
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data =
                std::fs::read(&f).map_err(|e| crate::Error::io(f.display().to_string(), e))?;
            let r = std::panic::catch_unwind(|| run(target, &data));
            if r.is_err() {
                return Err(crate::fail!(
                    "{}: {} fails its target",
                    target.name(),
                    f.display()
                ));
            }
            n += 1;
        }
    }
    if n == 0 {
        return Err(crate::fail!(
            "{}: nothing to replay under {}",
            target.name(),
            dir.display()
        ));
    }
    Ok((n, t0.elapsed()))
}

/// The report's fuzzing section, from DIR/fuzz.json (written by
/// `scripts/fuzz.sh results`); a missing file is an error naming it.
pub fn report_blocks(dir: &std::path::Path) -> crate::Result<Vec<crate::doc::Block>> {
    use crate::doc::Block;
    let p = dir.join("fuzz.json");
    let text = std::fs::read_to_string(&p)
        .map_err(|e| crate::fail!("{}: {e} (written by scripts/fuzz.sh results)", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| crate::fail!("{}: {e}", p.display()))?;
    let field = |t: &serde_json::Value, k: &str| -> String {
        match &t[k] {
            serde_json::Value::Null => "-".into(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            x => x.to_string(),
        }
    };
    let targets = v["targets"]
        .as_array()
        .ok_or_else(|| crate::fail!("{}: no targets", p.display()))?;
    let mut rows = Vec::new();
    for t in targets {
        let execs = t["executions"].as_u64().unwrap_or(0);
        rows.push(vec![
            field(t, "target"),
            execs.to_string(),
            field(t, "processes"),
            field(t, "seconds"),
            field(t, "exec_per_sec"),
            field(t, "coverage_edges"),
            field(t, "corpus_inputs"),
            field(t, "findings"),
            field(t, "open_findings"),
            format!(
                "{}{}",
                &field(t, "built_at").chars().take(7).collect::<String>(),
                if t["built_dirty"].as_bool() == Some(true) {
                    " (uncommitted changes)"
                } else {
                    ""
                }
            ),
        ]);
    }
    let findings = v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    format!(
                        "**{}** ({}): {}. Fixed; regression `fuzz/{}`, test {}.",
                        field(f, "id"),
                        field(f, "target"),
                        field(f, "what"),
                        field(f, "input"),
                        field(f, "fixed_by")
                    )
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut d = vec![
        Block::H(2, "Fuzzing campaign".into()),
        Block::P(format!(
            "Every receive path under {} (harness/src/fuzz.rs: a panic, or a bad-input error that changed the session, is a finding). Executions, coverage (edges of the merged corpus, as committed) and findings per target, from fuzz.json: a separate campaign (scripts/fuzz.sh), not this comparison run; the commit each target was built at is in the last column.",
            field(&v, "engine")
        )),
        Block::Table(
            [
                "target", "executions", "processes", "seconds", "exec/s", "coverage edges",
                "corpus", "findings", "open", "built at",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows,
        ),
    ];
    if !findings.is_empty() {
        d.push(Block::List(findings));
    }
    Ok(d)
}
