//! XEP-0420 Stanza Content Encryption envelopes: what `omemo` and `mls`
//! encrypt (every child of the application stanza inside `<content>`,
//! with the affixes each profile chooses).

use crate::error::{DecodeError, PeerMisbehaved, Result};
use crate::stanza::{self, SenderMatch};
use minidom::Element;

/// XEP-0420's namespace.
pub const NS_SCE: &str = "urn:xmpp:sce:1";

/// The envelope of `content` with an `<rpad>` (when given) and a `<from>`
/// affix naming `from`.
pub fn envelope(content: Vec<Element>, rpad: Option<&str>, from: &str) -> Result<Element> {
    let mut env = Element::bare("envelope", NS_SCE);
    let mut c = Element::bare("content", NS_SCE);
    for child in content {
        c.append_child(child);
    }
    env.append_child(c);
    if let Some(p) = rpad {
        env.append_child(stanza::text_element("rpad", NS_SCE, p));
    }
    let mut f = Element::bare("from", NS_SCE);
    stanza::set_attr(&mut f, "jid", from)?;
    env.append_child(f);
    Ok(env)
}

/// What a decrypted envelope holds.
#[derive(Debug)]
pub struct Opened {
    /// The `<content>` children.
    pub content: Vec<Element>,
    /// The `<from jid>`, if present.
    pub from: Option<String>,
}

/// Parse a decrypted envelope (XEP-0420 §4: exactly one `<content>`, at
/// most one of each affix, no SCE element inside the content).
pub fn parse_envelope(xml: &str) -> Result<Opened> {
    let el = stanza::parse(xml)?;
    if !el.is("envelope", NS_SCE) {
        return Err(DecodeError::UnexpectedStanza(format!(
            "<{} xmlns='{}'> (expected an SCE <envelope>)",
            el.name(),
            el.ns()
        ))
        .into());
    }
    let mut content = None;
    let mut from = None;
    let mut rpads = 0;
    for c in el.children().filter(|c| c.ns() == NS_SCE) {
        match c.name() {
            "content" => {
                if content.is_some() {
                    return Err(DecodeError::invalid("<content>", "more than one").into());
                }
                content = Some(c.children().cloned().collect::<Vec<_>>());
            }
            "from" => {
                if from.is_some() {
                    return Err(DecodeError::invalid("<from>", "more than one").into());
                }
                from = Some(
                    c.attr("jid")
                        .ok_or_else(|| DecodeError::Missing("<from jid>".into()))?
                        .to_string(),
                );
            }
            "rpad" => rpads += 1,
            _ => {}
        }
    }
    if rpads > 1 {
        return Err(DecodeError::invalid("<rpad>", "more than one").into());
    }
    let content = content.ok_or_else(|| DecodeError::Missing("<content>".into()))?;
    if content.iter().any(|c| c.ns() == NS_SCE) {
        return Err(PeerMisbehaved::IllegalParameter(
            "an SCE element inside <content> (XEP-0420 §4)".into(),
        )
        .into());
    }
    Ok(Opened { content, from })
}

/// XEP-0420 §5: the `<from>` affix must be present and name the peer.
pub fn check_from(o: &Opened, peer_bare: &str) -> Result<()> {
    match &o.from {
        Some(f) if stanza::same_jid(f, peer_bare, SenderMatch::Bare) => Ok(()),
        Some(f) => Err(PeerMisbehaved::WrongAddress(format!(
            "the envelope's <from> is {f}, the peer is {peer_bare}"
        ))
        .into()),
        None => Err(DecodeError::Missing("<from> affix".into()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_are_checked() {
        let body = stanza::text_element("body", stanza::NS_CLIENT, "hi");
        let e = envelope(vec![body], Some("pad"), "alice@example.org").unwrap();
        let xml = stanza::serialize(&e);
        let o = parse_envelope(&xml).unwrap();
        assert_eq!(o.content.len(), 1);
        check_from(&o, "alice@example.org").unwrap();
        assert!(check_from(&o, "mallory@example.org").is_err());
        let two = xml.replace("</envelope>", "<content/></envelope>");
        assert!(parse_envelope(&two).is_err());
        let nested = xml
            .replace("<body", "<rpad/><body")
            .replace("<content>", "<content><from xmlns='urn:xmpp:sce:1'/>");
        assert!(parse_envelope(&nested).is_err());
        let no_from = stanza::serialize(&envelope(vec![], None, "a@b").unwrap())
            .replace("<from jid='a@b'/>", "");
        assert!(check_from(&parse_envelope(&no_from).unwrap(), "a@b").is_err());
    }
}
