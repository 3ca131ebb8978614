//! XEP-0210's Interoperability ("exchange encrypted messages with users of
//! non-XMPP messaging systems"), probed with the tools of such systems: the
//! protected object Alice's stanza carries is handed to GnuPG (OpenPGP
//! e-mail), `openssl cms` (S/MIME e-mail) and libotr's `otr_parse` (OTR, on
//! any IM network). A tool counts when it parses the object as its own
//! protected format. Every tool sees every profile's stanza.

use e2elab_core::{stanza, Element};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::process::{Command, Stdio};

/// What one tool made of the stanza.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolOut {
    /// The tool and the system it stands for.
    pub tool: String,
    /// It parsed a protected object of its own format.
    pub recognized: bool,
    /// What it recognized (the first line of its report).
    pub what: Option<String>,
}

fn run(cmd: &str, args: &[&str], input: &[u8]) -> crate::Result<(bool, String)> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| crate::Error::tool(cmd, format!("{e} (scripts/setup.sh installs it)")))?;
    if let Some(mut i) = child.stdin.take() {
        // A tool may stop reading early; that is its answer, not an error.
        let _ = i.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| crate::Error::tool(cmd, e.to_string()))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn texts(el: &Element, out: &mut Vec<String>) {
    let t = el.text();
    if t.trim().len() >= 24 {
        out.push(t);
    }
    for c in el.children() {
        texts(c, out);
    }
}

/// gpg's first packet line names a public-key algorithm of the OpenPGP
/// registry (RFC 4880 §9.1, RFC 9580 §9.1) for that packet: random bytes
/// that happen to parse rarely do.
fn openpgp_packet(line: &str) -> bool {
    let algo = |rest: &str| -> Option<u32> {
        let i = rest.find("algo ")? + 5;
        rest[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    if let Some(rest) = line.strip_prefix(":pubkey enc packet: version 3,") {
        algo(rest).is_some_and(|a| matches!(a, 1 | 2 | 16 | 18 | 25 | 26))
    } else if let Some(rest) = line.strip_prefix(":signature packet:") {
        algo(rest).is_some_and(|a| matches!(a, 1 | 3 | 17 | 19 | 22 | 27 | 28))
    } else {
        false
    }
}

/// Probe Alice's carrier stanza with every tool.
pub fn probe(carrier: &str) -> crate::Result<Vec<ToolOut>> {
    let el = stanza::parse(carrier).map_err(|e| crate::fail!("carrier: {e}"))?;
    let mut candidates = Vec::new();
    texts(&el, &mut candidates);
    let gnupg = tempfile::tempdir().map_err(|e| crate::fail!("temporary directory: {e}"))?;
    let home = gnupg.path().display().to_string();
    let mut gpg = None;
    let mut cms = None;
    let mut otr = None;
    for t in &candidates {
        let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = e2elab_core::b64::decode(compact.as_bytes()).ok();
        let mut forms: Vec<Vec<u8>> = vec![t.as_bytes().to_vec()];
        if let Some(d) = &decoded {
            forms.push(d.clone());
        }
        // JEP-0027's <x> holds an ASCII-armored body without its armor lines.
        forms.push(
            format!(
                "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
                t.trim()
            )
            .into_bytes(),
        );
        for f in &forms {
            if gpg.is_none() {
                let (ok, s) = run("gpg", &["--homedir", &home, "--batch", "--list-packets"], f)?;
                // Without the key gpg exits non-zero after listing the
                // packets; the listing is the answer. Random bytes rarely
                // make these packets: each needs a version, an algorithm
                // and a key id in place.
                let _ = ok;
                let first = s.lines().find(|l| l.starts_with(':')).map(str::to_string);
                gpg = first.filter(|l| openpgp_packet(l));
            }
            if cms.is_none() {
                for inform in ["DER", "SMIME", "PEM"] {
                    let (ok, s) = run(
                        "openssl",
                        &["cms", "-cmsout", "-print", "-inform", inform],
                        f,
                    )?;
                    if ok {
                        if let Some(l) = s.lines().find(|l| l.contains("contentType")) {
                            cms = Some(l.trim().to_string());
                            break;
                        }
                    }
                }
            }
        }
        if otr.is_none() && t.contains("?OTR") {
            if let Some(m) = crate::security::otr_tools::parse(t.trim())? {
                otr = Some(format!(
                    "Data Message, {} field(s), {} revealed MAC key(s)",
                    m.f.len(),
                    m.revealed.len()
                ));
            }
        }
    }
    Ok(vec![
        ToolOut {
            tool: "gpg --list-packets (OpenPGP e-mail)".into(),
            recognized: gpg.is_some(),
            what: gpg,
        },
        ToolOut {
            tool: "openssl cms -cmsout (S/MIME e-mail)".into(),
            recognized: cms.is_some(),
            what: cms,
        },
        ToolOut {
            tool: "otr_parse (OTR on any IM network)".into(),
            recognized: otr.is_some(),
            what: otr,
        },
    ])
}

fn carrier_of(text: &str) -> String {
    let mut m = Element::bare("message", stanza::NS_CLIENT);
    m.append_child(stanza::text_element(
        "x",
        "urn:e2elab:requirements:probe",
        text,
    ));
    stanza::serialize(&m)
}

/// The probe's baseline, run with it: an OpenPGP message GnuPG encrypts and
/// a CMS enveloped object `openssl cms` writes, each in a stanza, must be
/// recognized by the tool of its kind (libotr has no tool that writes a data
/// message on its own; `otr-v3`'s stanzas, written by libotr, stand for it).
pub fn self_check() -> crate::Result<Vec<(String, bool)>> {
    let dir = tempfile::tempdir().map_err(|e| crate::fail!("temporary directory: {e}"))?;
    let home = dir.path().join("gnupg");
    std::fs::create_dir_all(&home).map_err(|e| crate::Error::io(home.display().to_string(), e))?;
    let h = home.display().to_string();
    let base = ["--homedir", h.as_str(), "--batch", "--yes"];
    let (ok, _) = run(
        "gpg",
        &[
            &base[..],
            &[
                "--passphrase",
                "",
                "--quick-gen-key",
                "probe@example.org",
                "default",
                "default",
                "never",
            ],
        ]
        .concat(),
        b"",
    )?;
    if !ok {
        return Err(crate::Error::tool(
            "gpg",
            "could not make a key for the probe's baseline",
        ));
    }
    let (ok, armored) = run(
        "gpg",
        &[
            &base[..],
            &[
                "--trust-model",
                "always",
                "-r",
                "probe@example.org",
                "-e",
                "-a",
            ],
        ]
        .concat(),
        b"probe",
    )?;
    let _ = run("gpgconf", &["--homedir", &h, "--kill", "all"], b"");
    if !ok {
        return Err(crate::Error::tool(
            "gpg",
            "could not encrypt the probe's baseline",
        ));
    }
    let gpg_ok = probe(&carrier_of(&armored))?
        .iter()
        .any(|t| t.recognized && t.tool.starts_with("gpg"));
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let (ok, _) = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=probe",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ],
        b"",
    )?;
    if !ok {
        return Err(crate::Error::tool(
            "openssl",
            "could not make a certificate for the probe's baseline",
        ));
    }
    let out = Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-outform", "DER", "-recip"])
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(b"probe");
            }
            c.wait_with_output()
        })
        .map_err(|e| crate::Error::tool("openssl", e))?;
    if !out.status.success() {
        return Err(crate::Error::tool(
            "openssl",
            "could not encrypt the probe's baseline",
        ));
    }
    let cms_ok = probe(&carrier_of(&e2elab_core::b64::encode(&out.stdout)))?
        .iter()
        .any(|t| t.recognized && t.tool.starts_with("openssl"));
    Ok(vec![
        ("gpg (GnuPG's own message)".into(), gpg_ok),
        ("openssl cms (openssl's own enveloped data)".into(), cms_ok),
    ])
}
