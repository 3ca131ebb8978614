//! JEP-0027's armor: OpenPGP ASCII armor (RFC 4880 §6.2) "with the headers
//! removed" (XEP-0027 §1): no `-----BEGIN PGP …-----` armor header line, no
//! armor headers (`Version:`, `Comment:`), no blank separator line and no
//! `-----END PGP …-----` tail line; what remains is the radix-64 body and the
//! `=XXXX` CRC-24 line. To decode, the stripped text is re-wrapped with the
//! header and tail lines and handed to Sequoia's armor reader, as a JEP-0027
//! client handed it to GnuPG.
//!
//! Sequoia's armor reader deliberately ignores a CRC-24 that disagrees (RFC
//! 9580 §6.1); GnuPG 2.2, like the clients of the JEP-0027 era, rejects it.
//! We check the CRC ourselves (when present) so that a corrupted armor is a
//! typed [`DecodeError`], not a later, opaque decryption failure.

use e2elab_core::DecodeError;
use sequoia_openpgp as openpgp;
use std::io::Read;

/// Which OpenPGP object an armor carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmorKind {
    /// `PGP MESSAGE` (`jabber:x:encrypted`).
    Message,
    /// `PGP SIGNATURE` (`jabber:x:signed`).
    Signature,
}

impl ArmorKind {
    fn label(self) -> &'static str {
        match self {
            ArmorKind::Message => "PGP MESSAGE",
            ArmorKind::Signature => "PGP SIGNATURE",
        }
    }

    fn sequoia(self) -> openpgp::armor::Kind {
        match self {
            ArmorKind::Message => openpgp::armor::Kind::Message,
            ArmorKind::Signature => openpgp::armor::Kind::Signature,
        }
    }
}

/// The CRC-24 of RFC 4880 §6.1.
pub fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Full RFC 4880 armor of `data` (header line, no armor headers, 64-column
/// radix-64 lines, CRC line, tail line), lines ending in `\n`.
pub fn armor(kind: ArmorKind, data: &[u8]) -> String {
    format!(
        "-----BEGIN {l}-----\n\n{body}\n-----END {l}-----\n",
        l = kind.label(),
        body = strip_body(data)
    )
}

/// The JEP-0027 form of `data`: radix-64 lines of 64 characters and the
/// `=XXXX` CRC-24 line, joined by `\n`, with no leading or trailing line break.
pub fn strip_body(data: &[u8]) -> String {
    let b64 = e2elab_core::b64::encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 8);
    for (i, chunk) in b64.as_bytes().chunks(64).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Radix-64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
    }
    let crc = crc24(data).to_be_bytes();
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('=');
    out.push_str(&e2elab_core::b64::encode(&crc[1..4]));
    out
}

/// Strip a full armor down to the JEP-0027 form: drop the armor header line,
/// every armor header, the blank separator and the tail line; keep the body
/// and the CRC line.
pub fn strip(full: &str) -> Result<String, DecodeError> {
    let mut lines = full.lines().map(str::trim_end);
    let first = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| bad("empty armor"))?;
    if !(first.starts_with("-----BEGIN PGP ") && first.ends_with("-----")) {
        return Err(bad("no armor header line"));
    }
    // Armor headers run until the first blank line.
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        if !l.contains(": ") {
            return Err(bad("armor header without a blank line after it"));
        }
    }
    let mut kept = Vec::new();
    let mut ended = false;
    for l in lines {
        if l.starts_with("-----END PGP ") {
            ended = true;
            break;
        }
        if !l.trim().is_empty() {
            kept.push(l.trim());
        }
    }
    if !ended {
        return Err(bad("no armor tail line"));
    }
    Ok(kept.join("\n"))
}

/// The decoded parts of a stripped armor.
struct Parsed {
    body: String,
    crc: Option<u32>,
}

fn bad(reason: &str) -> DecodeError {
    DecodeError::invalid("armor", reason)
}

/// Check that `text` is exactly a stripped armor: radix-64 lines, at most one
/// `=XXXX` CRC line, last; nothing else but whitespace.
fn parse_stripped(text: &str) -> Result<Parsed, DecodeError> {
    use base64::Engine;
    let mut body = String::with_capacity(text.len());
    let mut crc = None;
    for line in text
        .split('\n')
        .map(|l| l.trim_matches(|c| c == ' ' || c == '\t' || c == '\r'))
    {
        if line.is_empty() {
            continue;
        }
        if crc.is_some() {
            return Err(bad("text after the CRC line"));
        }
        if let Some(c) = line.strip_prefix('=') {
            if c.len() == 4 && !body.is_empty() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .map_err(|_| bad("malformed CRC line"))?;
                if bytes.len() != 3 {
                    return Err(bad("malformed CRC line"));
                }
                crc = Some(
                    u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]),
                );
                continue;
            }
        }
        if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return Err(bad("not radix-64 (armor header lines must be stripped)"));
        }
        body.push_str(line);
        body.push('\n');
    }
    if body.is_empty() {
        return Err(bad("no radix-64 data"));
    }
    Ok(Parsed { body, crc })
}

/// Decode a JEP-0027 stripped armor: validate it, re-wrap it with the armor
/// header and tail lines, dearmor with Sequoia, and check the CRC-24.
pub fn decode(kind: ArmorKind, stripped: &str) -> Result<Vec<u8>, DecodeError> {
    let p = parse_stripped(stripped)?;
    // Sequoia's armor reader decodes the radix-64 body with the `base64`
    // crate (derived: one decode of the body's length).
    e2elab_core::ops::derive(
        e2elab_core::Op::Base64Decode {
            lib: e2elab_core::ops::Lib::Rust,
        },
        1,
        p.body.len() as u64,
    );
    let mut full = format!("-----BEGIN {}-----\n\n", kind.label());
    full.push_str(&p.body);
    if let Some(crc) = p.crc {
        full.push('=');
        full.push_str(&e2elab_core::b64::encode(&crc.to_be_bytes()[1..4]));
        full.push('\n');
    }
    full.push_str(&format!("-----END {}-----\n", kind.label()));
    let mut reader = openpgp::armor::Reader::from_bytes(
        full.as_bytes(),
        openpgp::armor::ReaderMode::Tolerant(Some(kind.sequoia())),
    );
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .map_err(|_| bad("radix-64 data does not decode"))?;
    if data.is_empty() {
        return Err(bad("no data"));
    }
    if let Some(crc) = p.crc {
        if crc24(&data) != crc {
            return Err(bad("CRC-24 mismatch"));
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_known_answer() {
        // RFC 4880's CRC-24 of the empty string is its initial value.
        assert_eq!(crc24(b""), 0x00B7_04CE);
        // Cross-checked against Sequoia's armor writer below.
        let data = b"Hello, JEP-0027";
        let mut w = openpgp::armor::Writer::new(Vec::new(), openpgp::armor::Kind::Message).unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
        let full = String::from_utf8(w.finalize().unwrap()).unwrap();
        let stripped = strip(&full).unwrap();
        assert_eq!(stripped, strip_body(data));
    }

    #[test]
    fn round_trip_and_spec_example_shape() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let s = strip_body(&data);
        assert!(!s.contains("-----"));
        assert!(!s.starts_with('\n') && !s.ends_with('\n'));
        assert!(s.lines().all(|l| l.len() <= 64));
        assert!(s.lines().last().unwrap().starts_with('='));
        assert_eq!(decode(ArmorKind::Message, &s).unwrap(), data);
        // Whitespace around and CRLF line ends are tolerated.
        let loose = format!("\n  {}\n ", s.replace('\n', "\r\n"));
        assert_eq!(decode(ArmorKind::Message, &loose).unwrap(), data);
        // A full armor round-trips through strip.
        assert_eq!(strip(&armor(ArmorKind::Signature, &data)).unwrap(), s);
    }

    #[test]
    fn crc_optional_but_checked() {
        let data = b"some packet bytes";
        let s = strip_body(data);
        let no_crc: Vec<&str> = s.lines().filter(|l| !l.starts_with('=')).collect();
        assert_eq!(
            decode(ArmorKind::Message, &no_crc.join("\n")).unwrap(),
            data
        );
        let mut wrong = no_crc.join("\n");
        wrong.push_str("\n=AAAA");
        assert!(matches!(
            decode(ArmorKind::Message, &wrong),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn header_lines_are_rejected() {
        let full = armor(ArmorKind::Message, b"abc");
        assert!(decode(ArmorKind::Message, &full).is_err());
        assert!(decode(ArmorKind::Message, "Version: GnuPG v1\n\nYWJj").is_err());
        assert!(decode(ArmorKind::Message, "").is_err());
        assert!(decode(ArmorKind::Message, "not armor").is_err());
    }
}
