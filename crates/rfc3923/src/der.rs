//! Minimal DER: enough to write a CMS SignedData with the algorithms RFC 3923
//! §6.10 mandates (the `openssl` crate's `CMS_sign` wrapper cannot choose the
//! digest), to read the `id-on-xmppAddr` otherName out of a certificate's
//! subjectAltName (the crate has no accessor for it), and to insist that a
//! received DER object has no trailing bytes.

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The identifier octet (only low tag numbers are supported).
    pub tag: u8,
    /// The value octets.
    pub content: &'a [u8],
    /// The whole encoding, header included.
    pub raw: &'a [u8],
}

/// Read one definite-length TLV from the front of `input`.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&l0, mut rest) = rest.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        // 0 = indefinite length (BER, not DER); more than 4 octets is absurd here.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = len.checked_mul(256)?.checked_add(usize::from(b))?;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        raw: &input[..header + len],
    };
    Some((tlv, &rest[len..]))
}

/// `input` must be exactly one TLV, nothing after it.
pub(crate) fn exact(input: &[u8]) -> Option<Tlv<'_>> {
    match read(input)? {
        (t, []) => Some(t),
        _ => None,
    }
}

/// All TLVs in `content`, which must be consumed entirely.
pub(crate) fn children(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut v = Vec::new();
    while !content.is_empty() {
        let (t, rest) = read(content)?;
        v.push(t);
        content = rest;
    }
    Some(v)
}

/// Encode a TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of the given encodings.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// The content of a DER SET OF: the element encodings sorted.
pub(crate) fn set_of_content(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    parts.concat()
}

/// SET OF (sorted, as DER requires).
pub(crate) fn set_of(parts: Vec<Vec<u8>>) -> Vec<u8> {
    tlv(0x31, &set_of_content(parts))
}

/// OBJECT IDENTIFIER from its arcs.
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let (a, b) = match arcs {
        [a, b, ..] => (*a, *b),
        _ => (0, 0),
    };
    push_base128(&mut body, a * 40 + b);
    for &arc in arcs.iter().skip(2) {
        push_base128(&mut body, arc);
    }
    tlv(0x06, &body)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = vec![(v & 0x7f) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

/// A small non-negative INTEGER.
pub(crate) fn small_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        tlv(0x02, &[v])
    } else {
        tlv(0x02, &[0, v])
    }
}

/// OCTET STRING.
pub(crate) fn octets(v: &[u8]) -> Vec<u8> {
    tlv(0x04, v)
}

/// NULL.
pub(crate) fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// UTF8String.
pub(crate) fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// Well-known object identifiers.
pub(crate) mod oids {
    /// id-data.
    pub const DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 1];
    /// id-signedData.
    pub const SIGNED_DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 2];
    /// id-contentType attribute.
    pub const CONTENT_TYPE: &[u64] = &[1, 2, 840, 113_549, 1, 9, 3];
    /// id-messageDigest attribute.
    pub const MESSAGE_DIGEST: &[u64] = &[1, 2, 840, 113_549, 1, 9, 4];
    /// id-signingTime attribute.
    pub const SIGNING_TIME: &[u64] = &[1, 2, 840, 113_549, 1, 9, 5];
    /// rsaEncryption (RFC 3370 §3.2 signature algorithm identifier).
    pub const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];
    /// SHA-1.
    pub const SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
    /// SHA-256.
    pub const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
    /// subjectAltName.
    pub const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
    /// id-on-xmppAddr (RFC 3920 §5.1.1 / RFC 6120 §13.7.1.4).
    pub const XMPP_ADDR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_encodings_match_known_bytes() {
        assert_eq!(oid(oids::SHA1), [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a]);
        assert_eq!(
            oid(oids::SIGNED_DATA),
            [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]
        );
        assert_eq!(
            oid(oids::XMPP_ADDR),
            [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05]
        );
        assert_eq!(oid(oids::SUBJECT_ALT_NAME), [0x06, 0x03, 0x55, 0x1d, 0x11]);
    }

    #[test]
    fn lengths_round_trip_and_trailing_bytes_are_refused() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let t = tlv(0x04, &vec![7u8; n]);
            let back = exact(&t).map(|x| x.content.len());
            assert_eq!(back, Some(n));
            let mut longer = t.clone();
            longer.push(0);
            assert!(exact(&longer).is_none());
            assert!(exact(&t[..t.len() - 1]).is_none() || n == 0);
        }
        // Indefinite length is BER, refused.
        assert!(read(&[0x30, 0x80, 0, 0]).is_none());
    }

    #[test]
    fn set_of_is_sorted() {
        let s = set_of(vec![vec![0x04, 0x01, 0x02], vec![0x02, 0x01, 0x01]]);
        assert_eq!(s, [0x31, 0x06, 0x02, 0x01, 0x01, 0x04, 0x01, 0x02]);
    }
}
