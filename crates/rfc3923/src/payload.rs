//! The object that gets signed: a stanza mapped to `Message/CPIM` (around
//! `text/plain` or `application/xmpp+xml`) or to `application/pidf+xml`, and
//! back.

use crate::mime::{self, Cpim, CpimHeader, Entity};
use e2elab_core::minidom::Node;
use e2elab_core::stanza::{self, NS_CLIENT};
use e2elab_core::{DecodeError, Element, Error, Result, StanzaKind, Timestamp};

/// The PIDF namespace (RFC 3863).
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// The PIDF instant-messaging status extension (RFC 3863 examples, RFC 3923 Example 7).
pub const NS_PIDF_IM: &str = "urn:ietf:params:xml:ns:pidf:im";
/// The XML declaration that opens our XML objects.
pub const XML_DECL: &str = "<?xml version='1.0' encoding='UTF-8'?>";

/// Which form the signed object took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Message/CPIM` around `text/plain; charset=utf-8`.
    CpimText,
    /// `Message/CPIM` around `application/xmpp+xml`.
    CpimXmpp,
    /// `application/pidf+xml`.
    Pidf,
}

/// What a decoded object says.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The form.
    pub form: Form,
    /// Sender address (bare JID from the URI).
    pub from: String,
    /// Recipient addresses (bare JIDs; empty for PIDF, which names none).
    pub to: Vec<String>,
    /// The timestamp (CPIM `DateTime` / PIDF `<timestamp>`).
    pub timestamp: Timestamp,
    /// The recovered application stanza.
    pub stanza: Element,
}

/// `2005-11-01T00:00:01.5Z`: UTC, fraction only as needed (RFC 3923 §6.9).
pub fn format_timestamp(t: Timestamp) -> String {
    let base = t.to_rfc3339();
    let micros = t.micros() % 1_000_000;
    if micros == 0 {
        return base;
    }
    let frac = format!("{micros:06}");
    let frac = frac.trim_end_matches('0');
    format!("{}.{frac}Z", base.trim_end_matches('Z'))
}

/// Parse a §6.9 timestamp: RFC 3339, UTC with `Z` and no offset.
pub fn parse_timestamp(s: &str) -> Result<Timestamp, DecodeError> {
    if !s.ends_with('Z') {
        return Err(DecodeError::invalid("timestamp", "not UTC ('Z')"));
    }
    Timestamp::parse_rfc3339(s).ok_or_else(|| DecodeError::invalid("timestamp", "not RFC 3339"))
}

fn lf_to_crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn crlf_to_lf(b: &[u8]) -> Result<String, DecodeError> {
    let s = std::str::from_utf8(b).map_err(|_| DecodeError::invalid("content", "not UTF-8"))?;
    Ok(s.replace("\r\n", "\n"))
}

/// Only element children, each without attributes and holding only text.
fn simple_children(el: &Element) -> Option<Vec<(&str, String)>> {
    let mut v = Vec::new();
    for n in el.nodes() {
        match n {
            Node::Text(_) => return None,
            Node::Element(c) => {
                if c.ns() != NS_CLIENT
                    || c.attrs().iter().next().is_some()
                    || c.children().next().is_some()
                {
                    return None;
                }
                v.push((c.name(), c.text()));
            }
        }
    }
    Some(v)
}

/// Body and optional subject, if the message maps onto CPIM + text/plain exactly.
fn text_form(m: &Element) -> Option<(Option<String>, String)> {
    let kids = simple_children(m)?;
    let (subject, body) = match kids.as_slice() {
        [("body", b)] => (None, b.clone()),
        [("subject", s), ("body", b)] => {
            if !mime::header_value_writable(&mime::escape(s)) {
                return None;
            }
            (Some(s.clone()), b.clone())
        }
        _ => return None,
    };
    // A CR would not survive MIME canonical form (CRLF line ends) unambiguously.
    if body.contains('\r') {
        return None;
    }
    Some((subject, body))
}

/// The presence fields, if the presence maps onto PIDF exactly.
struct PresenceFields {
    available: bool,
    show: Option<String>,
    status: Option<String>,
    priority: Option<String>,
}

fn pidf_form(p: &Element) -> Option<PresenceFields> {
    let available = match p.attr("type") {
        None => true,
        Some("unavailable") => false,
        Some(_) => return None,
    };
    p.attr("to")?;
    let kids = simple_children(p)?;
    let mut f = PresenceFields {
        available,
        show: None,
        status: None,
        priority: None,
    };
    let mut rank = 0;
    for (name, text) in kids {
        let r = match name {
            "show" => 1,
            "status" => 2,
            "priority" => 3,
            _ => return None,
        };
        if r <= rank {
            return None;
        }
        rank = r;
        match name {
            "show" if available && matches!(text.as_str(), "away" | "chat" | "dnd" | "xa") => {
                f.show = Some(text)
            }
            "status" => f.status = Some(text),
            "priority" if text.parse::<i8>().is_ok() => f.priority = Some(text),
            _ => return None,
        }
    }
    Some(f)
}

fn uri(scheme: &str, jid: &str) -> String {
    format!("<{scheme}:{jid}>")
}

fn xml_object(root: &Element) -> Vec<u8> {
    lf_to_crlf(&format!("{XML_DECL}\n{}", stanza::serialize(root))).into_bytes()
}

/// Which form `s` will take.
pub fn form_of(s: &Element) -> Form {
    match StanzaKind::of(s) {
        Some(StanzaKind::Message) if text_form(s).is_some() => Form::CpimText,
        Some(StanzaKind::Presence) if pidf_form(s).is_some() => Form::Pidf,
        _ => Form::CpimXmpp,
    }
}

/// Build the object to sign for stanza `s` from `from` to `to` (bare JIDs).
pub fn encode(s: &Element, from: &str, to: &str, ts: Timestamp, tuple_id: &str) -> Result<Vec<u8>> {
    let kind = StanzaKind::of(s)
        .ok_or_else(|| e2elab_core::ApiMisuse::CannotProtect(s.name().to_string()))?;
    if kind == StanzaKind::Presence {
        if let Some(f) = pidf_form(s) {
            let doc = build_pidf(from, &f, ts, tuple_id)?;
            let entity = Entity {
                headers: vec![(
                    "Content-type".into(),
                    "application/pidf+xml; charset=utf-8".into(),
                )],
                body: xml_object(&doc),
            };
            return Ok(entity.to_bytes());
        }
    }
    let scheme = if kind == StanzaKind::Presence {
        "pres"
    } else {
        "im"
    };
    let mut headers = vec![
        CpimHeader::new("From", &uri(scheme, from)),
        CpimHeader::new("To", &uri(scheme, to)),
        CpimHeader::new("DateTime", &format_timestamp(ts)),
    ];
    let content = match (kind, text_form(s)) {
        (StanzaKind::Message, Some((subject, body))) => {
            if let Some(sub) = subject {
                headers.push(CpimHeader::new("Subject", &sub));
            }
            Entity {
                headers: vec![("Content-type".into(), "text/plain; charset=utf-8".into())],
                body: lf_to_crlf(&body).into_bytes(),
            }
        }
        _ => {
            let mut root = Element::bare("xmpp", NS_CLIENT);
            root.append_child(s.clone());
            Entity {
                headers: vec![(
                    "Content-type".into(),
                    "application/xmpp+xml; charset=utf-8".into(),
                )],
                body: xml_object(&root),
            }
        }
    };
    Ok(Cpim { headers, content }.to_bytes()?)
}

fn build_pidf(
    from: &str,
    f: &PresenceFields,
    ts: Timestamp,
    tuple_id: &str,
) -> Result<Element, DecodeError> {
    let mut status = Element::bare("status", NS_PIDF);
    status.append_child(stanza::text_element(
        "basic",
        NS_PIDF,
        if f.available { "open" } else { "closed" },
    ));
    if let Some(show) = &f.show {
        status.append_child(stanza::text_element("im", NS_PIDF_IM, show));
    }
    let mut tuple = Element::bare("tuple", NS_PIDF);
    stanza::set_attr(&mut tuple, "id", tuple_id)?;
    tuple.append_child(status);
    if let Some(p) = &f.priority {
        tuple.append_child(stanza::text_element("priority", NS_CLIENT, p));
    }
    if let Some(n) = &f.status {
        tuple.append_child(stanza::text_element("note", NS_PIDF, n));
    }
    tuple.append_child(stanza::text_element(
        "timestamp",
        NS_PIDF,
        &format_timestamp(ts),
    ));
    let mut doc = Element::bare("presence", NS_PIDF);
    stanza::set_attr(&mut doc, "entity", &format!("pres:{from}"))?;
    doc.append_child(tuple);
    Ok(doc)
}

fn parse_xml(body: &[u8], what: &str) -> Result<Element, DecodeError> {
    let s = std::str::from_utf8(body).map_err(|_| DecodeError::invalid(what, "not UTF-8"))?;
    stanza::parse(s).map_err(|e| DecodeError::invalid(what, e.to_string()))
}

/// Element children only (whitespace text allowed, other text refused).
fn elements(el: &Element, what: &str) -> Result<Vec<Element>, DecodeError> {
    let mut v = Vec::new();
    for n in el.nodes() {
        match n {
            Node::Text(t) if t.trim().is_empty() => {}
            Node::Text(_) => return Err(DecodeError::invalid(what, "unexpected text")),
            Node::Element(c) => v.push(c.clone()),
        }
    }
    Ok(v)
}

fn jid_of_uri(u: &str) -> Result<String, DecodeError> {
    for scheme in ["im:", "pres:", "xmpp:"] {
        if let Some(j) = u.strip_prefix(scheme) {
            if !j.is_empty() {
                return Ok(stanza::bare_jid(j).to_string());
            }
        }
    }
    Err(DecodeError::invalid(
        "address",
        "not an im:, pres: or xmpp: URI",
    ))
}

/// CPIM headers this implementation understands (for `Require`).
const UNDERSTOOD: &[&str] = &["From", "To", "cc", "DateTime", "Subject", "NS", "Require"];

/// Decode a signed object. `outer` is the received stanza: its attributes
/// become the recovered stanza's when the object carries only content
/// (text/plain, PIDF).
pub fn decode(obj: &[u8], outer: &Element) -> Result<Decoded> {
    let head = Entity::parse(obj, false)?;
    let ct = head.content_type()?;
    let outer_kind = StanzaKind::of(outer)
        .ok_or_else(|| DecodeError::UnexpectedStanza(outer.name().to_string()))?;
    match ct.mime.as_str() {
        "application/pidf+xml" => {
            if outer_kind != StanzaKind::Presence {
                return Err(DecodeError::invalid("e2e", "PIDF outside a presence stanza").into());
            }
            decode_pidf(&head.body, outer)
        }
        "message/cpim" => decode_cpim(obj, outer, outer_kind),
        other => Err(Error::Unsupported(format!("signed content type {other}"))),
    }
}

fn decode_cpim(obj: &[u8], outer: &Element, outer_kind: StanzaKind) -> Result<Decoded> {
    let cpim = Cpim::parse(obj)?;
    for req in cpim.all("Require") {
        for name in req.value.split(',') {
            if !UNDERSTOOD.contains(&name.trim()) {
                return Err(Error::Unsupported(format!("CPIM Require: {}", name.trim())));
            }
        }
    }
    let from = jid_of_uri(mime::address_uri(&cpim.one("From")?.value)?)?;
    let to = cpim
        .all("To")
        .map(|h| jid_of_uri(mime::address_uri(&h.value)?))
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp = parse_timestamp(&cpim.one("DateTime")?.value)?;
    let ct = cpim.content.content_type()?;
    let (form, stanza) = match ct.mime.as_str() {
        "text/plain" => {
            if outer_kind != StanzaKind::Message {
                return Err(DecodeError::invalid("e2e", "text/plain outside a message").into());
            }
            if ct
                .param("charset")
                .is_some_and(|c| !c.eq_ignore_ascii_case("utf-8"))
            {
                return Err(Error::Unsupported("charset other than UTF-8".into()));
            }
            let mut m = Element::bare(outer.name(), NS_CLIENT);
            *m.attrs_mut() = outer.attrs().clone();
            for s in cpim.all("Subject") {
                let mut sub = stanza::text_element("subject", NS_CLIENT, &s.value);
                if let Some(lang) = s.lang() {
                    sub.attrs_mut().insert(
                        e2elab_core::minidom::rxml::Namespace::XML,
                        stanza::ncname("lang")?,
                        lang.to_string(),
                    );
                }
                m.append_child(sub);
            }
            m.append_child(stanza::text_element(
                "body",
                NS_CLIENT,
                &crlf_to_lf(&cpim.content.body)?,
            ));
            (Form::CpimText, m)
        }
        "application/xmpp+xml" => {
            let root = parse_xml(&cpim.content.body, "application/xmpp+xml")?;
            if root.name() != "xmpp" || root.ns() != NS_CLIENT {
                return Err(DecodeError::invalid(
                    "application/xmpp+xml",
                    "root is not <xmpp xmlns='jabber:client'>",
                )
                .into());
            }
            let kids = elements(&root, "application/xmpp+xml")?;
            let [inner] = kids.as_slice() else {
                return Err(
                    DecodeError::invalid("application/xmpp+xml", "not exactly one stanza").into(),
                );
            };
            if StanzaKind::of(inner) != Some(outer_kind) {
                return Err(DecodeError::invalid(
                    "application/xmpp+xml",
                    "inner stanza kind differs from the outer",
                )
                .into());
            }
            (Form::CpimXmpp, inner.clone())
        }
        other => return Err(Error::Unsupported(format!("CPIM content type {other}"))),
    };
    Ok(Decoded {
        form,
        from,
        to,
        timestamp,
        stanza,
    })
}

fn decode_pidf(body: &[u8], outer: &Element) -> Result<Decoded> {
    let w = "application/pidf+xml";
    let doc = parse_xml(body, w)?;
    if doc.name() != "presence" || doc.ns() != NS_PIDF {
        return Err(DecodeError::invalid(w, "root is not a PIDF <presence>").into());
    }
    let from = jid_of_uri(
        doc.attr("entity")
            .ok_or_else(|| DecodeError::Missing("PIDF entity".into()))?,
    )?;
    let tuples = elements(&doc, w)?;
    let [tuple] = tuples.as_slice() else {
        return Err(DecodeError::invalid(w, "not exactly one tuple").into());
    };
    if !tuple.is("tuple", NS_PIDF) {
        return Err(DecodeError::invalid(w, "unexpected element").into());
    }
    let (mut available, mut show, mut status, mut priority, mut timestamp) =
        (None, None, None, None, None);
    for c in elements(tuple, w)? {
        match (c.name(), c.ns().as_str()) {
            ("status", NS_PIDF) => {
                for s in elements(&c, w)? {
                    match (s.name(), s.ns().as_str(), s.text().as_str()) {
                        ("basic", NS_PIDF, "open") => available = Some(true),
                        ("basic", NS_PIDF, "closed") => available = Some(false),
                        ("im", NS_PIDF_IM, v @ ("away" | "chat" | "dnd" | "xa")) => {
                            show = Some(v.to_string())
                        }
                        _ => return Err(DecodeError::invalid(w, "unsupported status").into()),
                    }
                }
            }
            ("priority", NS_CLIENT) if c.text().parse::<i8>().is_ok() => priority = Some(c.text()),
            ("note", NS_PIDF) if status.is_none() => status = Some(c.text()),
            ("timestamp", NS_PIDF) => timestamp = Some(parse_timestamp(&c.text())?),
            _ => return Err(DecodeError::invalid(w, "unsupported tuple element").into()),
        }
    }
    let available = available.ok_or_else(|| DecodeError::Missing("PIDF basic".into()))?;
    let timestamp = timestamp.ok_or_else(|| DecodeError::Missing("PIDF timestamp".into()))?;
    if !available && show.is_some() {
        return Err(DecodeError::invalid(w, "show on closed presence").into());
    }
    let mut p = Element::bare("presence", NS_CLIENT);
    *p.attrs_mut() = outer.attrs().clone();
    stanza::remove_attr(&mut p, "type");
    if !available {
        stanza::set_attr(&mut p, "type", "unavailable")?;
    }
    if let Some(s) = show {
        p.append_child(stanza::text_element("show", NS_CLIENT, &s));
    }
    if let Some(s) = status {
        p.append_child(stanza::text_element("status", NS_CLIENT, &s));
    }
    if let Some(s) = priority {
        p.append_child(stanza::text_element("priority", NS_CLIENT, &s));
    }
    Ok(Decoded {
        form: Form::Pidf,
        from,
        to: Vec::new(),
        timestamp,
        stanza: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kids: &[(&str, &str)]) -> Element {
        let mut m = stanza::chat_message("a@x/r", "b@y/r", "1", "").unwrap();
        let _ = m.take_nodes();
        for (n, t) in kids {
            m.append_child(stanza::text_element(n, NS_CLIENT, t));
        }
        m
    }

    fn round(s: &Element) -> Decoded {
        let t = Timestamp(Timestamp::DEFAULT_START.0 + 1_250_000);
        let obj = encode(s, "a@x", "b@y", t, "t1").unwrap();
        let d = decode(&obj, s).unwrap();
        assert_eq!(d.timestamp, t);
        assert_eq!(d.from, "a@x");
        d
    }

    #[test]
    fn forms_and_round_trips() {
        let m = msg(&[("body", "one\ntwo")]);
        assert_eq!(form_of(&m), Form::CpimText);
        let d = round(&m);
        assert_eq!(d.stanza, m);
        assert_eq!(d.to, vec!["b@y".to_string()]);
        let obj = encode(&m, "a@x", "b@y", Timestamp::DEFAULT_START, "t").unwrap();
        assert_eq!(
            String::from_utf8(obj).unwrap(),
            "Content-type: Message/CPIM\r\n\r\nFrom: <im:a@x>\r\nTo: <im:b@y>\r\nDateTime: 2005-11-01T00:00:00Z\r\n\r\nContent-type: text/plain; charset=utf-8\r\n\r\none\r\ntwo"
        );
        let m = msg(&[("subject", "Imploring\t"), ("body", "x")]);
        assert_eq!(form_of(&m), Form::CpimText);
        assert_eq!(round(&m).stanza, m);
        for m in [
            msg(&[("body", "cr\r\nlf")]),
            msg(&[("subject", "trailing "), ("body", "x")]),
            msg(&[("body", "x"), ("subject", "after")]),
            msg(&[("thread", "t"), ("body", "x")]),
            msg(&[]),
        ] {
            assert_eq!(form_of(&m), Form::CpimXmpp, "{}", stanza::serialize(&m));
            assert_eq!(round(&m).stanza, m);
        }
    }

    #[test]
    fn presence_goes_to_pidf_when_it_maps_exactly() {
        let mut p = stanza::new(StanzaKind::Presence);
        stanza::set_attr(&mut p, "from", "a@x/r").unwrap();
        stanza::set_attr(&mut p, "to", "b@y/r").unwrap();
        p.append_child(stanza::text_element("show", NS_CLIENT, "away"));
        p.append_child(stanza::text_element(
            "status",
            NS_CLIENT,
            "Out — back\nat 2",
        ));
        p.append_child(stanza::text_element("priority", NS_CLIENT, "-5"));
        assert_eq!(form_of(&p), Form::Pidf);
        assert_eq!(round(&p).stanza, p);
        let mut u = stanza::new(StanzaKind::Presence);
        stanza::set_attr(&mut u, "to", "b@y/r").unwrap();
        stanza::set_attr(&mut u, "type", "unavailable").unwrap();
        assert_eq!(form_of(&u), Form::Pidf);
        assert_eq!(round(&u).stanza, u);
        let mut x = p.clone();
        x.append_child(Element::bare("c", "http://jabber.org/protocol/caps"));
        assert_eq!(form_of(&x), Form::CpimXmpp);
        assert_eq!(round(&x).stanza, x);
    }

    #[test]
    fn timestamps() {
        let t = Timestamp(Timestamp::DEFAULT_START.0 + 660_000);
        assert_eq!(format_timestamp(t), "2005-11-01T00:00:00.66Z");
        assert_eq!(parse_timestamp("2005-11-01T00:00:00.66Z").unwrap(), t);
        assert!(parse_timestamp("2005-11-01T00:00:00.66").is_err());
        assert!(parse_timestamp("2005-11-01T01:00:00+01:00").is_err());
    }
}
