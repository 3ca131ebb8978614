//! RFC 3923 §7: the stanza errors a recipient returns, and reading them back.

use e2elab_core::minidom::Node;
use e2elab_core::stanza::{self, NS_CLIENT};
use e2elab_core::{Element, Error, IdentityError, PeerMisbehaved};

/// The registered namespace of `<e2e/>` and of the §7 condition elements.
pub const NS_E2E: &str = "urn:ietf:params:xml:ns:xmpp-e2e";
/// The namespace §7's and §9's examples print (the `ns:` is missing); accepted on input only.
pub const NS_E2E_TYPO: &str = "urn:ietf:params:xml:xmpp-e2e";
/// RFC 6120 stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The §7 case an error falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Case #3: timestamps failed §6.9 (`<not-acceptable/>` + `<bad-timestamp/>`).
    BadTimestamp,
    /// Case #4: the signature could not be verified, or does not belong to
    /// the sender (`<not-acceptable/>` + `<unverified-signature/>`).
    UnverifiedSignature,
    /// Case #5: the payload could not be decrypted (`<bad-request/>` + `<decryption-failed/>`).
    DecryptionFailed,
}

impl Case {
    /// The §7 case for a session error, if it is one §7 describes. Other
    /// errors (malformed stanzas, Case #1) get no error reply.
    pub fn of(err: &Error) -> Option<Case> {
        match err {
            Error::PeerMisbehaved(PeerMisbehaved::BadTimestamp(_) | PeerMisbehaved::Replay) => {
                Some(Case::BadTimestamp)
            }
            Error::PeerMisbehaved(
                PeerMisbehaved::BadSignature | PeerMisbehaved::WrongAddress(_),
            )
            | Error::Identity(IdentityError::JidMismatch(_)) => Some(Case::UnverifiedSignature),
            Error::DecryptFailed => Some(Case::DecryptionFailed),
            _ => None,
        }
    }

    /// (stanza condition, application condition).
    pub fn conditions(self) -> (&'static str, &'static str) {
        match self {
            Case::BadTimestamp => ("not-acceptable", "bad-timestamp"),
            Case::UnverifiedSignature => ("not-acceptable", "unverified-signature"),
            Case::DecryptionFailed => ("bad-request", "decryption-failed"),
        }
    }

    fn from_app_condition(name: &str) -> Option<Case> {
        match name {
            "bad-timestamp" => Some(Case::BadTimestamp),
            "unverified-signature" => Some(Case::UnverifiedSignature),
            "decryption-failed" => Some(Case::DecryptionFailed),
            _ => None,
        }
    }
}

/// The §7 error stanza answering `received` (a protected stanza this side
/// rejected with `err`): same kind and id, addresses swapped, `type='error'`,
/// the original `<e2e/>` echoed as Examples 16-18 do, and
/// `<error type='modify'>` with both conditions. `None` when §7 prescribes
/// no reply for `err` (or `received` is itself an error).
pub fn error_reply(received: &Element, err: &Error) -> Option<Element> {
    let case = Case::of(err)?;
    let kind = stanza::StanzaKind::of(received)?;
    if received.attr("type") == Some("error") {
        return None;
    }
    let mut r = stanza::new(kind);
    let set = |r: &mut Element, k: &str, v: Option<&str>| {
        if let Some(v) = v {
            let _ = stanza::set_attr(r, k, v);
        }
    };
    set(&mut r, "to", received.attr("from"));
    set(&mut r, "from", received.attr("to"));
    set(&mut r, "id", received.attr("id"));
    set(&mut r, "type", Some("error"));
    if let Some(e2e) = received.get_child("e2e", NS_E2E) {
        r.append_child(e2e.clone());
    }
    let (cond, app) = case.conditions();
    let mut e = Element::bare("error", NS_CLIENT);
    set(&mut e, "type", Some("modify"));
    e.append_child(Element::bare(cond, NS_STANZAS));
    e.append_child(Element::bare(app, NS_E2E));
    r.append_child(e);
    Some(r)
}

/// The §7 case reported by an error stanza from the peer, if it is one.
pub fn reported_case(el: &Element) -> Option<Case> {
    if el.attr("type") != Some("error") {
        return None;
    }
    let e = el.get_child("error", NS_CLIENT)?;
    e.nodes().find_map(|n| match n {
        Node::Element(c) if c.ns() == NS_E2E || c.ns() == NS_E2E_TYPO => {
            Case::from_app_condition(c.name())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_for_each_case() {
        let mut m = stanza::chat_message("a@x/r", "b@y/r", "7", "").unwrap();
        let _ = m.take_nodes();
        m.append_child(stanza::text_element("e2e", NS_E2E, "QUJD"));
        for (err, cond, app) in [
            (
                Error::from(PeerMisbehaved::BadTimestamp("old timestamp".into())),
                "not-acceptable",
                "bad-timestamp",
            ),
            (
                Error::from(PeerMisbehaved::Replay),
                "not-acceptable",
                "bad-timestamp",
            ),
            (
                Error::from(PeerMisbehaved::BadSignature),
                "not-acceptable",
                "unverified-signature",
            ),
            (Error::DecryptFailed, "bad-request", "decryption-failed"),
        ] {
            let r = error_reply(&m, &err).unwrap();
            assert_eq!(r.attr("type"), Some("error"));
            assert_eq!(r.attr("to"), Some("a@x/r"));
            assert_eq!(r.attr("from"), Some("b@y/r"));
            assert_eq!(r.attr("id"), Some("7"));
            assert!(r.has_child("e2e", NS_E2E));
            let e = r.get_child("error", NS_CLIENT).unwrap();
            assert_eq!(e.attr("type"), Some("modify"));
            assert!(e.has_child(cond, NS_STANZAS));
            assert!(e.has_child(app, NS_E2E));
            assert_eq!(reported_case(&r), Case::of(&err));
            // Never answer an error with an error.
            assert!(error_reply(&r, &err).is_none());
        }
        let decode = Error::from(e2elab_core::DecodeError::Missing("x".into()));
        assert!(error_reply(&m, &decode).is_none());
    }

    #[test]
    fn the_typo_namespace_is_understood_on_input() {
        let x = "<message xmlns='jabber:client' type='error'><error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><decryption-failed xmlns='urn:ietf:params:xml:xmpp-e2e'/></error></message>";
        let el = stanza::parse(x).unwrap();
        assert_eq!(reported_case(&el), Some(Case::DecryptionFailed));
    }
}
