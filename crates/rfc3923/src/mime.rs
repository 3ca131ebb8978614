//! MIME as RFC 3923 uses it: the `Message/CPIM` object of RFC 3862 (exact
//! syntax: CRLF, one space after the colon, escapes), a MIME entity (headers,
//! blank line, body), and the RFC 1847 `multipart/signed` wrapper with a
//! detached `application/pkcs7-signature` part.

use e2elab_core::{DecodeError, Result};

const CRLF: &str = "\r\n";

fn invalid(field: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::invalid(field, reason)
}

// ---------------------------------------------------------------------------
// MIME entities
// ---------------------------------------------------------------------------

/// A MIME entity: header fields (name as written, value unfolded) and the body octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The body, exactly.
    pub body: Vec<u8>,
}

impl Entity {
    /// The first header named `name` (case-insensitive, as MIME header names are).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parsed `Content-Type`, required.
    pub fn content_type(&self) -> Result<ContentType, DecodeError> {
        let v = self
            .header("Content-Type")
            .ok_or_else(|| DecodeError::Missing("Content-Type".into()))?;
        ContentType::parse(v)
    }

    /// Serialize with CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(CRLF.as_bytes());
        }
        out.extend_from_slice(CRLF.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parse header fields up to the first empty line. Line ends are CRLF,
    /// or bare LF when `lenient_eol` (what `openssl cms` writes without
    /// `-crlfeol`); folded lines are unfolded.
    pub fn parse(input: &[u8], lenient_eol: bool) -> Result<Entity, DecodeError> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut pos = 0;
        loop {
            let (line, next) = next_line(input, pos, lenient_eol)
                .ok_or_else(|| DecodeError::Truncated("MIME header".into()))?;
            pos = next;
            if line.is_empty() {
                break;
            }
            let line =
                std::str::from_utf8(line).map_err(|_| invalid("MIME header", "not UTF-8"))?;
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .ok_or_else(|| invalid("MIME header", "continuation without a field"))?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| invalid("MIME header", "no colon"))?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid("MIME header", "bad field name"));
            }
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Ok(Entity {
            headers,
            body: input[pos..].to_vec(),
        })
    }
}

/// The line starting at `pos` (without its end) and the position after it.
fn next_line(input: &[u8], pos: usize, lenient_eol: bool) -> Option<(&[u8], usize)> {
    let rest = input.get(pos..)?;
    let lf = rest.iter().position(|b| *b == b'\n')?;
    if lf > 0 && rest[lf - 1] == b'\r' {
        Some((&rest[..lf - 1], pos + lf + 1))
    } else if lenient_eol {
        Some((&rest[..lf], pos + lf + 1))
    } else {
        None
    }
}

/// A parsed `Content-Type` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower-cased.
    pub mime: String,
    /// Parameters, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// Parse `type/subtype *(; name=value)`.
    pub fn parse(v: &str) -> Result<ContentType, DecodeError> {
        let mut parts = split_params(v)?.into_iter();
        let mime = parts
            .next()
            .ok_or_else(|| invalid("Content-Type", "empty"))?
            .trim()
            .to_ascii_lowercase();
        if mime.split('/').count() != 2 || mime.contains(char::is_whitespace) {
            return Err(invalid("Content-Type", "not type/subtype"));
        }
        let mut params = Vec::new();
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (k, val) = p
                .split_once('=')
                .ok_or_else(|| invalid("Content-Type", "parameter without '='"))?;
            let val = val.trim();
            let val = match val.strip_prefix('"') {
                Some(q) => unquote(q)?,
                None => val.to_string(),
            };
            params.push((k.trim().to_ascii_lowercase(), val));
        }
        Ok(ContentType { mime, params })
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Split on `;` outside quoted strings.
fn split_params(v: &str) -> Result<Vec<String>, DecodeError> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        if let Some(cur) = out.last_mut() {
            if escaped {
                escaped = false;
                cur.push(c);
                continue;
            }
            match c {
                '\\' if quoted => {
                    escaped = true;
                    cur.push(c);
                }
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ';' if !quoted => out.push(String::new()),
                _ => cur.push(c),
            }
        }
    }
    if quoted {
        return Err(invalid("Content-Type", "unterminated quoted string"));
    }
    Ok(out)
}

/// The rest of a quoted string after its opening quote.
fn unquote(q: &str) -> Result<String, DecodeError> {
    let mut out = String::new();
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(
                chars
                    .next()
                    .ok_or_else(|| invalid("Content-Type", "bad quoted string"))?,
            ),
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(invalid("Content-Type", "text after quoted string"))
                };
            }
            c => out.push(c),
        }
    }
    Err(invalid("Content-Type", "unterminated quoted string"))
}

// ---------------------------------------------------------------------------
// Message/CPIM (RFC 3862)
// ---------------------------------------------------------------------------

/// One CPIM message header (RFC 3862 §3): `Name:` `*(;param)` SP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimHeader {
    /// Header name, exact (case-sensitive), possibly `prefix.name`.
    pub name: String,
    /// Parameters as written (`lang=fr`), without the leading `;`.
    pub params: Vec<String>,
    /// The value with escapes decoded.
    pub value: String,
}

impl CpimHeader {
    /// A header without parameters.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            params: Vec::new(),
            value: value.to_string(),
        }
    }

    /// The `lang` parameter, if any.
    pub fn lang(&self) -> Option<&str> {
        self.params.iter().find_map(|p| p.strip_prefix("lang="))
    }
}

/// A `Message/CPIM` object: its MIME header, the message headers, and the
/// encapsulated MIME entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpim {
    /// Message headers in order.
    pub headers: Vec<CpimHeader>,
    /// The encapsulated MIME entity.
    pub content: Entity,
}

/// The CPIM MIME header line, exactly as RFC 3862 §2.1 writes it.
pub const CPIM_MIME_HEADER: &str = "Content-type: Message/CPIM";

/// Whether a header value can be written at all (no leading SP is fine; a
/// trailing space or tab would end the line in whitespace, which RFC 3862
/// §2.2 forbids, and spaces have no escape).
pub fn header_value_writable(v: &str) -> bool {
    !v.is_empty() && !v.ends_with(' ')
}

/// RFC 3862 §2.3.1 escaping of a header value.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// RFC 3862 §2.3 unescaping: known escapes decoded, an unknown one is the
/// character after the backslash, a trailing lone backslash is dropped.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('b') => out.push('\u{8}'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match (hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()))
                    .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                    .flatten()
                {
                    Some(ch) => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    None => out.push('u'),
                }
            }
            Some(other) => out.push(other),
        }
    }
    out
}

fn is_namechar(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x27 | 0x2a | 0x2b | 0x2d | 0x5e..=0x60 | 0x7c | 0x7e)
        || b.is_ascii_alphanumeric()
}

fn valid_header_name(n: &str) -> bool {
    let mut parts = n.split('.');
    let ok = |p: &str| !p.is_empty() && p.bytes().all(is_namechar);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), None, _) => ok(a),
        (Some(a), Some(b), None) => ok(a) && ok(b),
        _ => false,
    }
}

impl Cpim {
    /// The values of every header named exactly `name`.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &CpimHeader> {
        let name = name.to_string();
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The single header named `name`: missing or repeated is an error.
    pub fn one(&self, name: &str) -> Result<&CpimHeader, DecodeError> {
        let mut it = self.all(name);
        let first = it
            .next()
            .ok_or_else(|| DecodeError::Missing(format!("CPIM {name}")))?;
        if it.next().is_some() {
            return Err(invalid(&format!("CPIM {name}"), "repeated"));
        }
        Ok(first)
    }

    /// Serialize: MIME header, blank line, message headers, blank line, entity.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = String::new();
        out.push_str(CPIM_MIME_HEADER);
        out.push_str(CRLF);
        out.push_str(CRLF);
        for h in &self.headers {
            if !valid_header_name(&h.name) {
                return Err(invalid("CPIM header name", h.name.clone()));
            }
            let value = escape(&h.value);
            if !header_value_writable(&value) {
                return Err(invalid("CPIM header value", "empty or ends in a space"));
            }
            out.push_str(&h.name);
            out.push(':');
            for p in &h.params {
                out.push(';');
                out.push_str(p);
            }
            out.push(' ');
            out.push_str(&value);
            out.push_str(CRLF);
        }
        out.push_str(CRLF);
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.content.to_bytes());
        Ok(bytes)
    }

    /// Parse with RFC 3862's strict rules (CRLF, single space, no control
    /// characters, no whitespace at either end of a line).
    pub fn parse(input: &[u8]) -> Result<Cpim, DecodeError> {
        let outer = Entity::parse(input, false)?;
        let ct = outer.content_type()?;
        if ct.mime != "message/cpim" {
            return Err(DecodeError::UnexpectedStanza(format!(
                "content type {} (expected Message/CPIM)",
                ct.mime
            )));
        }
        let body = &outer.body;
        let mut headers = Vec::new();
        let mut pos = 0;
        loop {
            let (line, next) = next_line(body, pos, false)
                .ok_or_else(|| DecodeError::Truncated("CPIM headers".into()))?;
            pos = next;
            if line.is_empty() {
                break;
            }
            headers.push(parse_cpim_header(line)?);
        }
        let content = Entity::parse(&body[pos..], false)?;
        content.content_type()?;
        Ok(Cpim { headers, content })
    }
}

fn parse_cpim_header(line: &[u8]) -> Result<CpimHeader, DecodeError> {
    let f = "CPIM header";
    let line = std::str::from_utf8(line).map_err(|_| invalid(f, "not UTF-8"))?;
    if line.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
        return Err(invalid(f, "control character"));
    }
    if line.starts_with([' ', '\t']) || line.ends_with([' ', '\t']) {
        return Err(invalid(f, "whitespace at the start or end of the line"));
    }
    let colon = line.find(':').ok_or_else(|| invalid(f, "no colon"))?;
    let name = &line[..colon];
    if !valid_header_name(name) {
        return Err(invalid(f, "bad header name"));
    }
    let mut rest = &line[colon + 1..];
    let mut params = Vec::new();
    while let Some(r) = rest.strip_prefix(';') {
        // Parameter = Name "=" ( Token / Number / String )
        let eq = r
            .find('=')
            .ok_or_else(|| invalid(f, "parameter without '='"))?;
        let pname = &r[..eq];
        if pname.is_empty() || !pname.bytes().all(is_namechar) {
            return Err(invalid(f, "bad parameter name"));
        }
        let after = &r[eq + 1..];
        let vlen = if let Some(q) = after.strip_prefix('"') {
            let mut esc = false;
            let mut end = None;
            for (i, c) in q.char_indices() {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    end = Some(i + 2);
                    break;
                }
            }
            end.ok_or_else(|| invalid(f, "unterminated parameter string"))?
        } else {
            let n = after
                .find([';', ' '])
                .ok_or_else(|| invalid(f, "no space after the header name"))?;
            if n == 0 {
                return Err(invalid(f, "empty parameter value"));
            }
            n
        };
        params.push(r[..eq + 1 + vlen].to_string());
        rest = &after[vlen..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| invalid(f, "the colon must be followed by exactly one space"))?;
    Ok(CpimHeader {
        name: name.to_string(),
        params,
        value: unescape(value),
    })
}

/// Parse a CPIM address header value: `[Formal-name] "<" URI ">"`; the URI.
pub fn address_uri(v: &str) -> Result<&str, DecodeError> {
    let v = v
        .strip_suffix('>')
        .ok_or_else(|| invalid("CPIM address", "no '<URI>'"))?;
    let lt = v
        .rfind('<')
        .ok_or_else(|| invalid("CPIM address", "no '<URI>'"))?;
    let uri = &v[lt + 1..];
    if uri.is_empty() || uri.contains(char::is_whitespace) {
        return Err(invalid("CPIM address", "bad URI"));
    }
    Ok(uri)
}

// ---------------------------------------------------------------------------
// multipart/signed (RFC 1847 + RFC 3851)
// ---------------------------------------------------------------------------

/// The `Content-Disposition` of the signature part, as RFC 3923 §3.2 shows it.
pub const SIGNATURE_DISPOSITION: &str = "attachment;handling=required;filename=smime.p7s";

/// Build `multipart/signed` around `signed` (the exact signed octets) and a
/// DER signature (base64 in its part, 64-column lines).
pub fn multipart_signed(signed: &[u8], sig_der: &[u8], boundary: &str, micalg: &str) -> Vec<u8> {
    let b64 = e2elab_core::b64::encode(sig_der);
    let mut out = String::new();
    out.push_str(&format!(
        "Content-Type: multipart/signed; boundary=\"{boundary}\"; micalg={micalg}; protocol=\"application/pkcs7-signature\"{CRLF}"
    ));
    out.push_str(&format!("Content-Transfer-Encoding: binary{CRLF}{CRLF}"));
    out.push_str(&format!("--{boundary}{CRLF}"));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(signed);
    let mut tail = String::new();
    tail.push_str(&format!("{CRLF}--{boundary}{CRLF}"));
    tail.push_str(&format!(
        "Content-Type: application/pkcs7-signature; name=smime.p7s{CRLF}"
    ));
    tail.push_str(&format!("Content-Transfer-Encoding: base64{CRLF}"));
    tail.push_str(&format!(
        "Content-Disposition: {SIGNATURE_DISPOSITION}{CRLF}{CRLF}"
    ));
    for chunk in b64.as_bytes().chunks(64) {
        tail.push_str(&String::from_utf8_lossy(chunk));
        tail.push_str(CRLF);
    }
    tail.push_str(&format!("{CRLF}--{boundary}--{CRLF}"));
    bytes.extend_from_slice(tail.as_bytes());
    bytes
}

/// The two parts of a `multipart/signed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signed octets (part 1, exactly, its MIME headers included).
    pub content: Vec<u8>,
    /// The DER signature (part 2, base64 decoded).
    pub signature: Vec<u8>,
    /// The `micalg` parameter.
    pub micalg: String,
}

fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (from..=h.len() - n.len()).find(|&i| &h[i..i + n.len()] == n)
}

/// Position of the next delimiter line `--boundary[--]` (preceded by a line
/// end, or at `start` when `at_start`), returning (start of the line end
/// before it, position after the delimiter line, whether it closes).
fn delimiter(body: &[u8], b: &str, from: usize) -> Option<(usize, usize, bool)> {
    let dash = format!("--{b}");
    let mut i = from;
    loop {
        let at = find(body, dash.as_bytes(), i)?;
        let line_start = at == 0 || body[at - 1] == b'\n';
        if line_start {
            let before = if at >= 2 && body[at - 2] == b'\r' {
                at - 2
            } else {
                at.saturating_sub(1)
            };
            let mut end = at + dash.len();
            let closing = body.get(end..end + 2) == Some(b"--");
            if closing {
                end += 2;
            }
            // Transport padding, then the line end (or the end of the body for the closing one).
            while matches!(body.get(end), Some(b' ' | b'\t')) {
                end += 1;
            }
            match body.get(end) {
                Some(b'\n') => return Some((before, end + 1, closing)),
                Some(b'\r') if body.get(end + 1) == Some(&b'\n') => {
                    return Some((before, end + 2, closing))
                }
                None if closing => return Some((before, end, closing)),
                _ => {}
            }
        }
        i = at + 1;
    }
}

/// Parse a `multipart/signed` entity (CRLF, or bare LF as `openssl cms`
/// writes by default, for the MIME structure; the signed part's octets are
/// taken exactly).
pub fn parse_multipart_signed(input: &[u8]) -> Result<Signed, DecodeError> {
    let outer = Entity::parse(input, true)?;
    let ct = outer.content_type()?;
    if ct.mime != "multipart/signed" {
        return Err(invalid(
            "signed entity",
            format!("content type {}", ct.mime),
        ));
    }
    match ct.param("protocol") {
        Some(p)
            if p.eq_ignore_ascii_case("application/pkcs7-signature")
                || p.eq_ignore_ascii_case("application/x-pkcs7-signature") => {}
        _ => {
            return Err(invalid(
                "signed entity",
                "protocol is not application/pkcs7-signature",
            ))
        }
    }
    let boundary = ct
        .param("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or_else(|| invalid("signed entity", "bad boundary"))?;
    let micalg = ct.param("micalg").unwrap_or_default().to_ascii_lowercase();
    let body = &outer.body;
    let (_, p1_start, c0) =
        delimiter(body, boundary, 0).ok_or_else(|| DecodeError::Truncated("multipart".into()))?;
    let (p1_end, p2_start, c1) = delimiter(body, boundary, p1_start)
        .ok_or_else(|| DecodeError::Truncated("multipart".into()))?;
    let (p2_end, _, c2) = delimiter(body, boundary, p2_start)
        .ok_or_else(|| DecodeError::Truncated("multipart".into()))?;
    if c0 || c1 || !c2 {
        return Err(invalid("signed entity", "not exactly two parts"));
    }
    let content = body
        .get(p1_start..p1_end)
        .ok_or_else(|| DecodeError::Truncated("multipart: empty first part".into()))?
        .to_vec();
    let sig_part = Entity::parse(&body[p2_start..p2_end.max(p2_start)], true)?;
    let sct = sig_part.content_type()?;
    if sct.mime != "application/pkcs7-signature" && sct.mime != "application/x-pkcs7-signature" {
        return Err(invalid(
            "signature part",
            format!("content type {}", sct.mime),
        ));
    }
    let cte = sig_part
        .header("Content-Transfer-Encoding")
        .unwrap_or("binary")
        .to_ascii_lowercase();
    let signature = match cte.as_str() {
        "base64" => decode_base64(&sig_part.body, "signature part")?,
        _ => {
            return Err(invalid(
                "signature part",
                format!("transfer encoding {cte}"),
            ))
        }
    };
    Ok(Signed {
        content,
        signature,
        micalg,
    })
}

/// Strict base64 (canonical padding and trailing bits) after removing ASCII whitespace.
pub fn decode_base64(text: &[u8], field: &str) -> Result<Vec<u8>, DecodeError> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    e2elab_core::b64::decode(&compact).map_err(|_| invalid(field, "not base64"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_first_part_is_an_error_not_a_panic() {
        let e = b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha1; boundary=B\r\n\r\n--B\r\n--B\r\n--B--\r\n";
        assert!(super::parse_multipart_signed(e).is_err());
    }

    use super::*;

    fn sample() -> Cpim {
        Cpim {
            headers: vec![
                CpimHeader::new("From", "Juliet Capulet <im:juliet@example.com>"),
                CpimHeader::new("To", "Romeo Montague <im:romeo@example.net>"),
                CpimHeader::new("DateTime", "2003-12-09T11:45:36.66Z"),
                CpimHeader::new("Subject", "Imploring"),
            ],
            content: Entity {
                headers: vec![
                    ("Content-type".into(), "text/plain; charset=utf-8".into()),
                    ("Content-ID".into(), "<1234567890@example.com>".into()),
                ],
                body: b"Wherefore art thou, Romeo?".to_vec(),
            },
        }
    }

    #[test]
    fn rfc3923_example_1_exact_bytes() {
        let want = "Content-type: Message/CPIM\r\n\r\n\
From: Juliet Capulet <im:juliet@example.com>\r\n\
To: Romeo Montague <im:romeo@example.net>\r\n\
DateTime: 2003-12-09T11:45:36.66Z\r\n\
Subject: Imploring\r\n\r\n\
Content-type: text/plain; charset=utf-8\r\n\
Content-ID: <1234567890@example.com>\r\n\r\n\
Wherefore art thou, Romeo?";
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        let back = Cpim::parse(&bytes).unwrap();
        assert_eq!(back, sample());
        assert_eq!(
            address_uri(&back.one("From").unwrap().value).unwrap(),
            "im:juliet@example.com"
        );
    }

    #[test]
    fn strict_syntax_is_enforced() {
        let good = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        for bad in [
            good.replace("Subject: Imploring", "Subject:Imploring"),
            good.replace("Subject: Imploring", "Subject: Imploring "),
            good.replace("Subject: Imploring", "Sub ject: Imploring"),
            good.replace("Subject: Imploring\r\n", "Subject: Imploring\n"),
            good.replace("Subject: Imploring", "Subject: Implo\u{1}ring"),
            good.replace("Content-type: Message/CPIM", "Content-type: text/plain"),
        ] {
            assert!(Cpim::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // A value may itself start with a space (HEADERCHAR includes SP).
        let two = good.replace("Subject: Imploring", "Subject:  Imploring");
        assert_eq!(
            Cpim::parse(two.as_bytes())
                .unwrap()
                .one("Subject")
                .unwrap()
                .value,
            " Imploring"
        );
        let lang = good.replace("Subject: Imploring", "Subject:;lang=fr Objet");
        let c = Cpim::parse(lang.as_bytes()).unwrap();
        assert_eq!(c.one("Subject").unwrap().lang(), Some("fr"));
        assert_eq!(c.one("Subject").unwrap().value, "Objet");
        assert_eq!(c.to_bytes().unwrap(), lang.as_bytes());
    }

    #[test]
    fn escapes() {
        let s = "tab\there\\ nl\n cr\r bell\u{7} del\u{7f} quote\" 'x'";
        let e = escape(s);
        assert!(!e.chars().any(|c| (c as u32) < 0x20));
        assert_eq!(
            e,
            "tab\\there\\\\ nl\\n cr\\r bell\\u0007 del\\u007f quote\" 'x'"
        );
        assert_eq!(unescape(&e), s);
        assert_eq!(unescape("a\\qb\\"), "aqb");
        assert_eq!(unescape("\\u00e9\\uZZ"), "éuZZ");
    }

    #[test]
    fn multipart_round_trip_and_boundary_rules() {
        let m = multipart_signed(b"part one\r\nline", &[1, 2, 3, 250], "b-1", "sha1");
        let s = parse_multipart_signed(&m).unwrap();
        assert_eq!(s.content, b"part one\r\nline");
        assert_eq!(s.signature, [1, 2, 3, 250]);
        assert_eq!(s.micalg, "sha1");
        // The LF-only form `openssl cms -sign` writes by default.
        let lf = "MIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----X\"\n\nThis is an S/MIME signed message\n\n------X\nsigned\r\nbytes\n------X\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7s\"\n\nAQID\n\n------X--\n\n";
        let s = parse_multipart_signed(lf.as_bytes()).unwrap();
        assert_eq!(s.content, b"signed\r\nbytes");
        assert_eq!(s.signature, [1, 2, 3]);
        assert_eq!(s.micalg, "sha-256");
        // Truncations never parse.
        for cut in 0..m.len() - 4 {
            assert!(parse_multipart_signed(&m[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn content_type_parameters() {
        let ct = ContentType::parse("Multipart/Signed; boundary=\"a;b\"; micalg=sha1").unwrap();
        assert_eq!(ct.mime, "multipart/signed");
        assert_eq!(ct.param("boundary"), Some("a;b"));
        assert_eq!(ct.param("micalg"), Some("sha1"));
        assert!(ContentType::parse("text").is_err());
        assert!(ContentType::parse("text/plain; x=\"open").is_err());
    }
}
