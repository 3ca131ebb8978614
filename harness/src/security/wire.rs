//! What a passive observer can read off serialized stanzas: text in clear,
//! and bytes hidden only by an encoding (base64 runs, hex runs).
//!
//! A search for a secret on the wire looks in three places: the raw text,
//! every run of base64 characters decoded at each of its four alignments
//! (armored OpenPGP, S/MIME, OTR data messages, ESessions forms), and every
//! run of hex digits decoded. A string that appears in any of them is *in
//! clear*: no key is needed to read it.

use std::collections::HashSet;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_val(c: u8) -> Option<u8> {
    B64.iter().position(|&x| x == c).map(|p| p as u8)
}

/// Standard base64 encoding (with padding).
pub fn b64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decode the complete 4-character groups of a run of base64 characters
/// (padding and any trailing partial group ignored).
fn b64_decode_groups(run: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(run.len() / 4 * 3);
    for g in run.chunks_exact(4) {
        let v: Vec<u8> = g.iter().filter_map(|&c| b64_val(c)).collect();
        if v.len() != 4 {
            break;
        }
        let n = (u32::from(v[0]) << 18)
            | (u32::from(v[1]) << 12)
            | (u32::from(v[2]) << 6)
            | u32::from(v[3]);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out
}

/// Decode standard base64 (with or without padding); `None` on a bad character.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let t = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in t.bytes() {
        acc = (acc << 6) | u32::from(b64_val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn hex_decode(run: &[u8]) -> Vec<u8> {
    run.chunks_exact(2)
        .filter_map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// Everything a passive observer can read from one serialized stanza
/// without a key: the raw bytes, plus each base64 and hex run decoded.
pub fn readable_blobs(xml: &str) -> Vec<Vec<u8>> {
    let bytes = xml.as_bytes();
    let mut blobs = vec![bytes.to_vec()];
    let mut runs = |is: fn(u8) -> bool, min: usize, hex: bool| {
        let mut i = 0;
        while i < bytes.len() {
            if !is(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is(bytes[i]) {
                i += 1;
            }
            let run = &bytes[start..i];
            if run.len() < min {
                continue;
            }
            if hex {
                blobs.push(hex_decode(run));
                blobs.push(hex_decode(&run[1..]));
            } else {
                for off in 0..4 {
                    if run.len() > off + 8 {
                        blobs.push(b64_decode_groups(&run[off..]));
                    }
                }
            }
        }
    };
    runs(
        |c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/',
        12,
        false,
    );
    runs(|c| c.is_ascii_hexdigit(), 24, true);
    blobs
}

/// Whether `needle` can be read in clear in `xml` (raw, base64- or hex-decoded).
pub fn readable_in(xml: &str, needle: &[u8]) -> bool {
    readable_blobs(xml)
        .iter()
        .any(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// Windows of `len` bytes of `data` that are not windows of any of `exclude`
/// (so a match names this key and not a structure every key shares).
pub fn distinctive_windows(data: &[u8], len: usize, exclude: &[&[u8]]) -> HashSet<Vec<u8>> {
    let mut common = HashSet::new();
    for e in exclude {
        for w in e.windows(len) {
            common.insert(w.to_vec());
        }
    }
    data.windows(len)
        .filter(|w| !common.contains(*w))
        .map(<[u8]>::to_vec)
        .collect()
}

/// How many of `windows` (all of length `len`) can be read in `xml`.
pub fn count_windows_in(xml: &str, windows: &HashSet<Vec<u8>>, len: usize) -> usize {
    if windows.is_empty() {
        return 0;
    }
    let mut hit = HashSet::new();
    for b in readable_blobs(xml) {
        for w in b.windows(len) {
            if windows.contains(w) {
                hit.insert(w.to_vec());
            }
        }
    }
    hit.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_clear_base64_and_hex_at_any_alignment() {
        let secret = b"c4n4ry-secret-text";
        for pre in ["", "a", "ab", "abc"] {
            let mut data = pre.as_bytes().to_vec();
            data.extend_from_slice(secret);
            data.extend_from_slice(b"tail");
            let xml = format!("<m><b>{}</b></m>", b64_encode(&data));
            assert!(readable_in(&xml, secret), "prefix {pre:?}");
        }
        let xml = format!("<m a='{}'/>", hex::encode(b"xx-c4n4ry-secret-text-yy"));
        assert!(readable_in(&xml, secret));
        assert!(readable_in("<m>c4n4ry-secret-text</m>", secret));
        assert!(!readable_in("<m>c4n4ry-secret-tex</m>", secret));
        assert_eq!(b64_encode(b"ab"), "YWI=");
        assert_eq!(b64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(
            b64_decode(&b64_encode(b"hello world")).unwrap(),
            b"hello world"
        );
        assert!(b64_decode("a*b").is_none());
    }

    #[test]
    fn distinctive_windows_skip_shared_structure() {
        let a = b"HEADERaaaaaaaaaaaa";
        let b = b"HEADERbbbbbbbbbbbb";
        let w = distinctive_windows(a, 6, &[b]);
        assert!(!w.contains(b"HEADER".as_slice()));
        assert!(w.contains(b"aaaaaa".as_slice()));
        assert_eq!(count_windows_in("<x>aaaaaaaaaaaa</x>", &w, 6), 1);
        assert_eq!(count_windows_in("<x>HEADERbbb</x>", &w, 6), 0);
    }
}
