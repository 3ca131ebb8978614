//! OTR forgeability with libotr's own toolkit (Debian package `libotr5-bin`):
//! `otr_parse` reads the recorded data messages off the wire, including the
//! MAC keys each one *reveals* in clear. A revealed key under which
//! HMAC-SHA1 over an earlier message's header and ciphertext equals that
//! message's MAC is its MAC key, now public: with it anyone writes a
//! different message (here: the ciphertext's last byte flipped, MAC
//! recomputed) that verifies. For v3 messages, libotr's `otr_remac` must
//! reproduce the same MAC with the key (a second, independent computation);
//! `otr_remac` writes only v3 messages, so v2 relies on the HMAC alone.
//!
//! The tools are required: without them the experiment reports an error (and
//! the test suite, which expects `holds`, fails).

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Run one of libotr's tools with `args` and `stdin`; stdout and stderr together.
pub fn run_tool(tool: &str, args: &[&str], stdin: &str) -> crate::Result<String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            crate::Error::tool(tool, format!("required (apt-get install libotr5-bin): {e}"))
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())
            .map_err(|e| crate::Error::tool(tool, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| crate::Error::tool(tool, e))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A data message as `otr_parse` reads it.
#[derive(Debug, Clone)]
pub struct DataMsg {
    /// Field name -> value.
    pub f: HashMap<String, String>,
    /// Revealed MAC keys (hex), in order.
    pub revealed: Vec<String>,
}

impl DataMsg {
    fn get(&self, k: &str) -> &str {
        self.f.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Parse one OTR wire message; `None` unless it is a data message.
pub fn parse(body: &str) -> crate::Result<Option<DataMsg>> {
    let out = run_tool("otr_parse", &[], &format!("{body}\n"))?;
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    if lines.next().map(str::trim) != Some("Data Message:") {
        return Ok(None);
    }
    let mut f = HashMap::new();
    let mut revealed = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.trim().split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.starts_with("Key ") {
                revealed.push(v.to_string());
            } else {
                f.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(Some(DataMsg { f, revealed }))
}

/// `otr_remac` with `m`'s parts (ciphertext replaced by `encdata`) under `mackey`.
pub fn remac(m: &DataMsg, mackey: &str, encdata: &str) -> crate::Result<String> {
    let num = |k: &str| -> String {
        let v = m.get(k);
        if v.is_empty() {
            "0".into()
        } else {
            v.to_string()
        }
    };
    let args = [
        mackey.to_string(),
        num("Sender instance"),
        num("Receiver instance"),
        num("Flags"),
        num("Sender keyid"),
        num("Rcpt keyid"),
        m.get("DH y").to_string(),
        m.get("Counter").to_string(),
        encdata.to_string(),
        m.revealed.concat(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_tool("otr_remac", &refs, "")?;
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("?OTR:"))
        .map(str::to_string)
        .ok_or_else(|| crate::fail!("otr_remac printed no message: {}", out.trim()))
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> crate::Result<Vec<u8>> {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let k = PKey::hmac(key).map_err(crate::Error::msg)?;
    let mut s = Signer::new(MessageDigest::sha1(), &k).map_err(crate::Error::msg)?;
    s.update(data).map_err(crate::Error::msg)?;
    s.sign_to_vec().map_err(crate::Error::msg)
}

/// A data message's bytes split as the spec lays them out: the MACed part,
/// the 20-byte MAC, and the revealed-keys field after it.
fn split(body: &str, revealed: usize) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let b64 = body.strip_prefix("?OTR:")?.trim_end().trim_end_matches('.');
    let raw = crate::security::wire::b64_decode(b64)?;
    let tail = 4 + 20 * revealed;
    let mac_at = raw.len().checked_sub(tail + 20)?;
    Some((
        raw[..mac_at].to_vec(),
        raw[mac_at..mac_at + 20].to_vec(),
        raw[mac_at + 20..].to_vec(),
    ))
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct Forgery {
    /// Index (in the recorded data messages) of the message whose MAC key was revealed.
    pub victim: usize,
    /// Index of the message that revealed it.
    pub revealer: usize,
    /// The key (hex).
    pub key: String,
    /// Whether `otr_remac` (libotr's implementation) reproduced the victim's MAC with it too.
    pub remac_agrees: Option<bool>,
    /// The forged wire message.
    pub forged: String,
    /// `otr_parse`'s title line for it.
    pub forged_parses_as: String,
}

/// Over recorded data-message bodies: find every earlier message whose MAC
/// (HMAC-SHA1 over its header and ciphertext) a later-revealed key
/// reproduces, and forge a variant of each (last ciphertext byte flipped,
/// MAC recomputed). Returns (data messages, revealed keys, forgeries).
pub fn forge(bodies: &[String]) -> crate::Result<(usize, usize, Vec<Forgery>)> {
    let mut found: Vec<Forgery> = Vec::new();
    let mut parsed = Vec::new();
    for b in bodies {
        if let Some(m) = parse(b)? {
            parsed.push((b.clone(), m));
        }
    }
    let revealed_total: usize = parsed.iter().map(|(_, m)| m.revealed.len()).sum();
    for (j, (_, later)) in parsed.iter().enumerate() {
        for k in &later.revealed {
            let Ok(key) = hex::decode(k) else { continue };
            for (i, (body, m)) in parsed.iter().enumerate().take(j) {
                let Some((authed, mac, tail)) = split(body, m.revealed.len()) else {
                    continue;
                };
                if hmac_sha1(&key, &authed)? != mac {
                    continue;
                }
                let remac_agrees = if m.get("Version") == "03" {
                    let again = remac(m, k, m.get("Encrypted message"))?;
                    Some(parse(&again)?.is_some_and(|re| re.get("MAC") == m.get("MAC")))
                } else {
                    None
                };
                let mut forged_authed = authed.clone();
                if let Some(last) = forged_authed.last_mut() {
                    *last ^= 0x01;
                }
                let mut raw = forged_authed.clone();
                raw.extend(hmac_sha1(&key, &forged_authed)?);
                raw.extend(tail);
                let forged = format!("?OTR:{}.", crate::security::wire::b64_encode(&raw));
                let out = run_tool("otr_parse", &[], &format!("{forged}\n"))?;
                let title = out
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("")
                    .to_string();
                if !found.iter().any(|f| f.victim == i) {
                    found.push(Forgery {
                        victim: i,
                        revealer: j,
                        key: k.clone(),
                        remac_agrees,
                        forged,
                        forged_parses_as: title,
                    });
                }
            }
        }
    }
    Ok((parsed.len(), revealed_total, found))
}
