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

/// A change to a stanza's protected payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Flip the lowest bit of the payload byte at `num/den` of its length.
    Flip(usize, usize),
    /// Cut the payload to half its length.
    Truncate,
}

impl Mutation {
    /// A few words for evidence.
    pub fn describe(self) -> String {
        match self {
            Mutation::Flip(n, d) => format!("bit flipped at {n}/{d} of the payload"),
            Mutation::Truncate => "payload truncated to half".into(),
        }
    }
}

fn path_to_longest_text(e: &e2elab_core::Element) -> (usize, Vec<usize>) {
    let mut best = (e.texts().map(str::len).sum::<usize>(), Vec::new());
    for (i, c) in e.children().enumerate() {
        let (l, mut p) = path_to_longest_text(c);
        if l > best.0 {
            p.insert(0, i);
            best = (l, p);
        }
    }
    best
}

fn at_path<'a>(
    e: &'a mut e2elab_core::Element,
    path: &[usize],
) -> Option<&'a mut e2elab_core::Element> {
    match path.split_first() {
        None => Some(e),
        Some((i, rest)) => at_path(e.children_mut().nth(*i)?, rest),
    }
}

fn mutate_bytes(b: &mut Vec<u8>, m: Mutation) -> bool {
    if b.is_empty() {
        return false;
    }
    match m {
        Mutation::Flip(n, d) => {
            let i = (b.len() * n / d.max(1)).min(b.len() - 1);
            b[i] ^= 0x01;
        }
        Mutation::Truncate => b.truncate(b.len() / 2),
    }
    true
}

/// Apply `m` to the protected payload of a serialized stanza: the longest
/// text node; within it, the longest run of base64 (at least 16
/// characters) is decoded, changed and encoded again; a payload with no
/// such run is changed as text. `None` when there is no payload.
pub fn mutate_payload(xml: &str, m: Mutation) -> Option<String> {
    let mut el = e2elab_core::stanza::parse(xml).ok()?;
    let (len, path) = path_to_longest_text(&el);
    if len == 0 {
        return None;
    }
    let t = at_path(&mut el, &path)?;
    let text = t.text();
    let bytes = text.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=';
    let (mut best, mut i) = ((0usize, 0usize), 0usize);
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let s = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        if i - s > best.1 - best.0 {
            best = (s, i);
        }
    }
    let new_text = if best.1 - best.0 >= 16 {
        let run = &text[best.0..best.1];
        let mut raw = b64_decode(run)?;
        if !mutate_bytes(&mut raw, m) {
            return None;
        }
        let mut enc = b64_encode(&raw);
        if !run.ends_with('=') {
            enc = enc.trim_end_matches('=').to_string();
        }
        format!("{}{}{}", &text[..best.0], enc, &text[best.1..])
    } else {
        let mut raw = text.clone().into_bytes();
        if !mutate_bytes(&mut raw, m) {
            return None;
        }
        String::from_utf8(raw).ok()?
    };
    if new_text == text {
        return None;
    }
    let kids: Vec<e2elab_core::Element> = t.children().cloned().collect();
    let _ = t.take_nodes();
    t.append_text(new_text);
    for k in kids {
        t.append_child(k);
    }
    Some(e2elab_core::stanza::serialize(&el))
}

/// Signature-wrapping moves (McIntyre et al.'s XSW, on XMPP's terms): the
/// top-level child of the stanza that holds the protected payload gets a
/// copy whose payload is changed ([`Mutation::Flip`] at the middle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// The changed copy placed before the original.
    CopyBefore,
    /// The changed copy, its attributes dropped (so an id a signature
    /// references is not duplicated), placed before the original.
    BareCopyBefore,
    /// The changed copy in the original's place, the original moved into
    /// an element of an unknown namespace.
    MoveIntoWrapper,
}

impl Wrap {
    /// A few words for evidence.
    pub fn describe(self) -> String {
        match self {
            Wrap::CopyBefore => "wrapping: a changed copy of the protected child before it".into(),
            Wrap::BareCopyBefore => {
                "wrapping: a changed copy of the protected child, its attributes dropped, before it".into()
            }
            Wrap::MoveIntoWrapper => {
                "wrapping: a changed copy in the protected child's place, the original moved into an unknown element".into()
            }
        }
    }
}

/// Apply `how` to a serialized stanza. `None` when there is no payload.
pub fn wrap_payload(xml: &str, how: Wrap) -> Option<String> {
    let el = e2elab_core::stanza::parse(xml).ok()?;
    let (len, path) = path_to_longest_text(&el);
    let &i = path.first()?;
    if len == 0 {
        return None;
    }
    let original = el.children().nth(i)?.clone();
    // The changed copy: the child alone in a stanza, mutated, taken back.
    let mut alone = e2elab_core::Element::bare(el.name(), el.ns());
    alone.append_child(original.clone());
    let changed = mutate_payload(
        &e2elab_core::stanza::serialize(&alone),
        Mutation::Flip(1, 2),
    )?;
    let mut copy = e2elab_core::stanza::parse(&changed)
        .ok()?
        .children()
        .next()?
        .clone();
    if how == Wrap::BareCopyBefore {
        copy.attrs_mut().clear();
    }
    let mut out = e2elab_core::Element::bare(el.name(), el.ns());
    *out.attrs_mut() = el.attrs().clone();
    for (j, c) in el.children().enumerate() {
        if j != i {
            out.append_child(c.clone());
            continue;
        }
        out.append_child(copy.clone());
        match how {
            Wrap::CopyBefore | Wrap::BareCopyBefore => out.append_child(original.clone()),
            Wrap::MoveIntoWrapper => {
                let mut w = e2elab_core::Element::bare("wrapper", "urn:e2elab:wrapping");
                w.append_child(original.clone());
                out.append_child(w)
            }
        };
    }
    Some(e2elab_core::stanza::serialize(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_puts_a_changed_copy_beside_or_around_the_payload() {
        let xml = "<message xmlns='jabber:client' to='b@x'><thread>t</thread><body>aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=</body></message>";
        let a = wrap_payload(xml, Wrap::CopyBefore).unwrap();
        let el = e2elab_core::stanza::parse(&a).unwrap();
        let bodies: Vec<String> = el
            .children()
            .filter(|c| c.name() == "body")
            .map(|c| c.text())
            .collect();
        assert_eq!(bodies.len(), 2);
        assert_ne!(bodies[0], bodies[1]);
        assert_eq!(bodies[1], "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=");
        let xml_id = "<message xmlns='jabber:client'><body xmlns:d='urn:xmpp:dsig:0' d:id='b1'>aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=</body></message>";
        let c = wrap_payload(xml_id, Wrap::BareCopyBefore).unwrap();
        let el = e2elab_core::stanza::parse(&c).unwrap();
        let ids: Vec<Option<&str>> = el
            .children()
            .map(|c| c.attr_ns("urn:xmpp:dsig:0", "id"))
            .collect();
        assert_eq!(ids, [None, Some("b1")]);
        let b = wrap_payload(xml, Wrap::MoveIntoWrapper).unwrap();
        let el = e2elab_core::stanza::parse(&b).unwrap();
        let names: Vec<&str> = el.children().map(|c| c.name()).collect();
        assert_eq!(names, ["thread", "body", "wrapper"]);
        assert_eq!(
            el.get_child("wrapper", "urn:e2elab:wrapping")
                .unwrap()
                .children()
                .next()
                .unwrap()
                .text(),
            "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ="
        );
    }

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
    fn payload_mutations_change_the_decoded_bytes() {
        let payload = b64_encode(b"0123456789abcdef0123456789abcdef");
        let xml = format!("<message xmlns='jabber:client'><body>short</body><x xmlns='urn:a'>{payload}</x></message>");
        let f = mutate_payload(&xml, Mutation::Flip(1, 2)).unwrap();
        assert_ne!(f, xml);
        assert!(f.contains("<body>short</body>"));
        let el = e2elab_core::stanza::parse(&f).unwrap();
        let got = b64_decode(&el.children().nth(1).unwrap().text()).unwrap();
        let diff: Vec<usize> = (0..32)
            .filter(|i| got[*i] != b"0123456789abcdef0123456789abcdef"[*i])
            .collect();
        assert_eq!(diff, vec![16]);
        let t = mutate_payload(&xml, Mutation::Truncate).unwrap();
        let el = e2elab_core::stanza::parse(&t).unwrap();
        assert_eq!(
            b64_decode(&el.children().nth(1).unwrap().text())
                .unwrap()
                .len(),
            16
        );
        let plain = "<message xmlns='jabber:client'><body>hello world</body></message>";
        assert!(mutate_payload(plain, Mutation::Flip(0, 4))
            .unwrap()
            .contains("iello world"));
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
