//! The wire unit: an XMPP stanza as a [`minidom::Element`].
//!
//! Sizes are always measured on the serialized form produced here, so every
//! protocol is counted the same way. A stanza is serialized standalone, so it
//! carries its own `xmlns='jabber:client'` declaration (about 22 bytes that a
//! real stream would inherit from `<stream:stream>`); the `plaintext` control
//! row carries the same, so overheads computed against it are unaffected.

use crate::error::DecodeError;
use minidom::rxml::{Namespace, NcName};
use minidom::{Element, Node};

/// The client namespace stanzas live in.
pub const NS_CLIENT: &str = "jabber:client";

/// Which of the three stanza kinds an element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StanzaKind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl StanzaKind {
    /// The kind of `el`, if it is a stanza in the client namespace.
    pub fn of(el: &Element) -> Option<StanzaKind> {
        if el.ns() != NS_CLIENT {
            return None;
        }
        match el.name() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }

    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        }
    }
}

/// Serialize a stanza to its wire form.
///
/// Recorded as an [`Op::XmlSerialize`](crate::Op::XmlSerialize) of the
/// output's length (every protocol's XML goes through here).
pub fn serialize(el: &Element) -> String {
    let s = String::from(el);
    crate::ops::count(crate::Op::XmlSerialize, s.len());
    s
}

/// Bytes of the serialized stanza.
pub fn wire_size(el: &Element) -> usize {
    serialize(el).len()
}

/// What [`parse`] accepts: checked while reading, before any tree exists,
/// so no later walk (serialize, clone, drop: all recursive in minidom) ever
/// meets a tree deeper than `max_depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one stanza. Default 262,144: Prosody 0.12's
    /// `c2s_stanza_size_limit` default (256 KiB; ejabberd's example
    /// configuration sets the same `max_stanza_size` on its c2s listener).
    pub max_bytes: usize,
    /// Element nesting depth, the stanza element being depth 1. Default 128:
    /// XMPP payloads nest a few levels (the deepest here, a CMS-wrapped CPIM
    /// message in a stanza, is under 10).
    pub max_depth: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 262_144,
        max_depth: 128,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

static MAX_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(Limits::DEFAULT.max_bytes);
static MAX_DEPTH: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(Limits::DEFAULT.max_depth);

/// The limits [`parse`] applies in this process.
pub fn limits() -> Limits {
    use std::sync::atomic::Ordering::Relaxed;
    Limits {
        max_bytes: MAX_BYTES.load(Relaxed),
        max_depth: MAX_DEPTH.load(Relaxed),
    }
}

/// Change the limits [`parse`] applies in this process (e.g. `e2elab peer
/// --max-stanza-bytes`).
pub fn set_limits(l: Limits) {
    use std::sync::atomic::Ordering::Relaxed;
    MAX_BYTES.store(l.max_bytes, Relaxed);
    MAX_DEPTH.store(l.max_depth, Relaxed);
}

/// Parse one stanza from its wire form, under the process's [`limits`].
///
/// minidom's `str::parse` uses rxml's default token limit (8192 bytes): a
/// longer text node is split into chunks, and rxml's lexer scans the rest
/// of the text again for every chunk, so a text node of n bytes costs
/// about n²/16384 byte tests (measured: a 64 KiB body took 1.3 ms to parse
/// instead of 0.2 ms). The limit here is the input's length, so every
/// text node is one token and parsing is linear; the limit also bounds
/// names and attribute values, which cannot be longer than the input
/// anyway. The tree is built by minidom's own `TreeBuilder`, exactly as
/// `str::parse` does.
///
/// The input is one stanza: anything after its root element but
/// whitespace is an error (so is a second element).
pub fn parse(s: &str) -> Result<Element, DecodeError> {
    parse_with(s, limits())
}

/// [`parse`] under explicit limits.
pub fn parse_with(s: &str, limits: Limits) -> Result<Element, DecodeError> {
    if s.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            bytes: s.len(),
            limit: limits.max_bytes,
        });
    }
    crate::ops::count(crate::Op::XmlParse, s.len());
    use minidom::rxml::RawEvent;
    use minidom::rxml::{Options, RawReader};
    use minidom::tree_builder::TreeBuilder;
    let err = |e: minidom::Error| DecodeError::Xml(e.to_string());
    let mut opts = Options::default();
    opts.max_token_length = opts.max_token_length.max(s.len());
    let mut reader = RawReader::with_options(s.as_bytes(), opts);
    let mut tree = TreeBuilder::new();
    let mut depth = 0usize;
    while let Some(event) = reader.read().map_err(|e| err(e.into()))? {
        match &event {
            RawEvent::ElementHeadOpen(..) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(DecodeError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
            }
            RawEvent::ElementFoot(..) => depth = depth.saturating_sub(1),
            _ => {}
        }
        tree.process_event(event).map_err(err)?;
        if let Some(root) = tree.root.take() {
            // Only whitespace may follow the stanza: any event (a second
            // element, text) or a lexer error there is trailing content.
            return match reader.read() {
                Ok(None) => {
                    let mut root = root;
                    normalize(&mut root)?;
                    Ok(root)
                }
                Ok(Some(_)) => Err(DecodeError::Xml("content after the stanza".into())),
                Err(e) => Err(DecodeError::Xml(format!("content after the stanza: {e}"))),
            };
        }
    }
    Err(err(minidom::Error::EndOfDocument))
}

/// Checks and normalizes a parsed tree, without recursion (the depth is
/// the user's limit):
/// - every element is in a namespace (RFC 6120 §4.8.2). An element in none
///   (`xmlns=''`) cannot be written back: the serializer would leave it in
///   its parent's namespace (a different tree) or in none at the root (not
///   a stanza). Found by the fuzzing campaign (fuzz/findings.json F1);
/// - the sender's prefix declarations are dropped: the tree keeps
///   namespaces, not the sender's choice of prefixes, and the serializer
///   declares its own. Kept, a declaration of a prefix the serializer also
///   uses made rxml's writer panic (F2).
fn normalize(root: &mut Element) -> Result<(), DecodeError> {
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        if e.ns().is_empty() {
            return Err(DecodeError::Xml(format!(
                "element <{}> is in no namespace (xmlns='')",
                e.name()
            )));
        }
        e.prefixes = Default::default();
        stack.extend(e.children_mut());
    }
    Ok(())
}

/// Serialize on one line: line breaks inside text are written as character
/// references, which parse back to the same text (used by `e2elab peer`).
pub fn to_line(el: &Element) -> String {
    serialize(el).replace('\n', "&#xa;")
}

/// Make an XML name, for attribute names known at compile time or checked input.
pub fn ncname(name: &str) -> Result<NcName, DecodeError> {
    NcName::try_from(name).map_err(|_| DecodeError::invalid("xml name", name.to_string()))
}

/// Set (or replace) an unqualified attribute.
pub fn set_attr(el: &mut Element, name: &str, value: &str) -> Result<(), DecodeError> {
    el.attrs_mut()
        .insert(Namespace::NONE, ncname(name)?, value.to_string());
    Ok(())
}

/// Remove an unqualified attribute, returning its value.
pub fn remove_attr(el: &mut Element, name: &str) -> Option<String> {
    el.attrs_mut().remove(&Namespace::NONE, name)
}

/// A new, empty stanza of `kind` in the client namespace.
pub fn new(kind: StanzaKind) -> Element {
    Element::bare(kind.name(), NS_CLIENT)
}

/// An element with text content.
pub fn text_element(name: &str, ns: &str, text: &str) -> Element {
    let mut el = Element::bare(name, ns);
    if !text.is_empty() {
        el.append_text(text);
    }
    el
}

/// A chat `<message>` with `from`, `to`, `id` and a body: the workload's stanza.
pub fn chat_message(from: &str, to: &str, id: &str, body: &str) -> Result<Element, DecodeError> {
    let mut m = new(StanzaKind::Message);
    set_attr(&mut m, "from", from)?;
    set_attr(&mut m, "to", to)?;
    set_attr(&mut m, "type", "chat")?;
    set_attr(&mut m, "id", id)?;
    m.append_child(text_element("body", NS_CLIENT, body));
    Ok(m)
}

/// The text of the first `<body/>` child of a message, if any.
pub fn body(el: &Element) -> Option<String> {
    el.get_child("body", NS_CLIENT).map(Element::text)
}

/// The bare part (`local@domain`) of a JID string.
pub fn bare_jid(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// How much of the peer's JID a stanza's `from` must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderMatch {
    /// The full JID (the session is bound to one resource, as ESessions is).
    Full,
    /// The bare JID (any of the peer's resources).
    Bare,
}

/// Whether two JIDs are the same at `m`, as the `jid` crate normalizes
/// them (nodeprep, nameprep, resourceprep: local part and domain
/// case-folded, the resource kept); a string that is no JID matches nothing.
pub fn same_jid(a: &str, b: &str, m: SenderMatch) -> bool {
    match (jid::Jid::new(a), jid::Jid::new(b)) {
        (Ok(a), Ok(b)) => jid_matches(&a, &b, m),
        _ => false,
    }
}

/// [`same_jid`] on parsed JIDs.
pub fn jid_matches(a: &jid::Jid, b: &jid::Jid, m: SenderMatch) -> bool {
    a.to_bare() == b.to_bare() && (m == SenderMatch::Bare || a.resource() == b.resource())
}

/// The one sender check every profile that checks uses: a stanza's `from`
/// must be the session's peer at `m`; a missing `from` is accepted when
/// `missing_ok` (the server stamps it on delivery), else an error; a
/// `from` that is no JID is an error.
pub fn check_sender(
    el: &Element,
    peer: &jid::Jid,
    m: SenderMatch,
    missing_ok: bool,
) -> Result<(), crate::PeerMisbehaved> {
    match el.attr("from").map(|f| (f, jid::Jid::new(f))) {
        Some((_, Ok(from))) if jid_matches(&from, peer, m) => Ok(()),
        Some((from, Err(e))) => Err(crate::PeerMisbehaved::WrongAddress(format!(
            "from {from}: not a JID ({e})"
        ))),
        Some((from, Ok(_))) => Err(crate::PeerMisbehaved::WrongAddress(format!(
            "from {from}, the session's peer is {}",
            match m {
                SenderMatch::Full => peer.to_string(),
                SenderMatch::Bare => peer.to_bare().to_string(),
            }
        ))),
        None if missing_ok => Ok(()),
        None => Err(crate::PeerMisbehaved::WrongAddress(
            "no 'from' on the stanza".into(),
        )),
    }
}

/// Text nodes in `el` and all its descendants.
pub fn count_texts(el: &Element) -> usize {
    el.nodes()
        .map(|n| match n {
            Node::Text(_) => 1,
            Node::Element(c) => count_texts(c),
        })
        .sum()
}

/// Apply `f` to the `k`-th text node of `el` in document order (counting as
/// [`count_texts`] does); `false` if there are not that many.
pub fn edit_nth_text(el: &mut Element, k: usize, f: impl FnOnce(&mut String)) -> bool {
    fn walk(el: &mut Element, k: &mut usize, f: &mut Option<impl FnOnce(&mut String)>) -> bool {
        for n in el.nodes_mut() {
            match n {
                Node::Text(t) => {
                    if *k == 0 {
                        if let Some(f) = f.take() {
                            f(t);
                        }
                        return true;
                    }
                    *k -= 1;
                }
                Node::Element(c) => {
                    if walk(c, k, f) {
                        return true;
                    }
                }
            }
        }
        false
    }
    walk(el, &mut { k }, &mut Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialize_parse_round_trip_with_newlines() {
        let m = chat_message("a@x/r", "b@y/r", "1", "one\ntwo\r\nthree <&> \u{1F600}").unwrap();
        let line = to_line(&m);
        assert!(!line.contains('\n'));
        assert_eq!(parse(&line).unwrap(), m);
        assert_eq!(parse(&serialize(&m)).unwrap(), m);
        assert_eq!(wire_size(&m), serialize(&m).len());
    }

    #[test]
    fn kinds() {
        assert_eq!(StanzaKind::of(&new(StanzaKind::Iq)), Some(StanzaKind::Iq));
        assert_eq!(StanzaKind::of(&Element::bare("message", "other")), None);
    }

    #[test]
    fn parse_agrees_with_minidom_also_past_the_token_limit() {
        let long = "x".repeat(100_000);
        let mixed = "a<&>\u{e9}".repeat(5_000);
        let inputs = [
            "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>".to_string(),
            format!("<message xmlns='jabber:client'><body>{long}</body></message>"),
            format!(
                "<message xmlns='jabber:client'><body>{}</body><x xmlns='u'>{}</x></message>",
                escape(&mixed),
                long
            ),
            format!("<message xmlns='jabber:client'><body>{long}</message>"),
            "<message".to_string(),
            String::new(),
        ];
        for i in &inputs {
            let ours = parse(i);
            let theirs = i.parse::<Element>();
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "disagree on {}: {ours:?} vs {theirs:?}",
                    &i[..i.len().min(60)]
                ),
            }
        }
        let el = parse(&inputs[1]).unwrap();
        let body = el.children().next().unwrap();
        assert_eq!(body.nodes().count(), 1, "one text node");
        assert_eq!(body.text().len(), 100_000);
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    fn nested(depth: usize) -> String {
        let mut s = String::from("<message xmlns='jabber:client'>");
        s.push_str(&"<x>".repeat(depth - 1));
        s.push_str(&"</x>".repeat(depth - 1));
        s.push_str("</message>");
        s
    }

    #[test]
    fn one_sender_check() {
        let m = chat_message("Bob@Example.net/phone", "a@x/r", "1", "hi").unwrap();
        use SenderMatch::*;
        let j = |s: &str| jid::Jid::new(s).unwrap();
        assert!(check_sender(&m, &j("bob@example.net/phone"), Full, true).is_ok());
        assert!(check_sender(&m, &j("bob@example.net/laptop"), Bare, true).is_ok());
        assert!(check_sender(&m, &j("bob@example.net/Phone"), Full, true).is_err());
        assert!(check_sender(&m, &j("eve@example.net"), Bare, true).is_err());
        let mut anon = m.clone();
        remove_attr(&mut anon, "from");
        assert!(check_sender(&anon, &j("bob@example.net"), Bare, true).is_ok());
        assert!(check_sender(&anon, &j("bob@example.net"), Bare, false).is_err());
        // Normalized as the jid crate does (nodeprep folds beyond ASCII).
        let mut u = m.clone();
        set_attr(&mut u, "from", "ÄNNE@example.net/phone").unwrap();
        assert!(check_sender(&u, &j("änne@EXAMPLE.net/phone"), Full, true).is_ok());
        // A 'from' that is no JID is refused, not compared as text.
        set_attr(&mut u, "from", "@example.net").unwrap();
        assert!(matches!(
            check_sender(&u, &j("bob@example.net"), Bare, true),
            Err(crate::PeerMisbehaved::WrongAddress(ref w)) if w.contains("not a JID")
        ));
    }

    #[test]
    fn nesting_is_bounded_before_any_tree_exists() {
        // The reported crash: about 40,000 levels in 260 KB.
        let deep = nested(40_000);
        let l = Limits {
            max_bytes: deep.len(),
            ..Limits::DEFAULT
        };
        assert_eq!(
            parse_with(&deep, l),
            Err(DecodeError::TooDeep { limit: 128 })
        );
        assert!(parse(&nested(128)).is_ok(), "the limit itself is allowed");
        assert_eq!(
            parse(&nested(129)),
            Err(DecodeError::TooDeep { limit: 128 })
        );
        let raised = Limits {
            max_depth: 1000,
            ..Limits::DEFAULT
        };
        assert!(
            parse_with(&nested(1000), raised).is_ok(),
            "users can raise it"
        );
    }

    #[test]
    fn size_is_bounded_before_parsing() {
        let big = format!(
            "<message xmlns='jabber:client'><body>{}</body></message>",
            "x".repeat(Limits::DEFAULT.max_bytes)
        );
        assert_eq!(
            parse(&big),
            Err(DecodeError::TooLarge {
                bytes: big.len(),
                limit: 262_144
            })
        );
        let raised = Limits {
            max_bytes: big.len(),
            ..Limits::DEFAULT
        };
        assert!(parse_with(&big, raised).is_ok());
    }

    #[test]
    fn an_element_in_no_namespace_is_refused() {
        for x in [
            "<iq xmlns='' id='1' type='get'/>",
            "<message xmlns='jabber:client'><x xmlns=''/></message>",
        ] {
            assert!(
                matches!(parse(x), Err(DecodeError::Xml(ref m)) if m.contains("no namespace")),
                "{x}: {:?}",
                parse(x)
            );
        }
        assert!(parse("<message xmlns='jabber:client'><x xmlns='urn:a'/></message>").is_ok());
    }

    #[test]
    fn sender_prefix_declarations_never_reach_the_serializer() {
        // Two prefixes for one namespace, one used on an attribute.
        let x = "<message xmlns='jabber:client' xmlns:a='urn:x' xmlns:b='urn:x' a:k='1'><b:y/></message>";
        let el = parse(x).unwrap();
        assert_eq!(parse(&serialize(&el)).unwrap(), el);
        // fuzz/regressions/stanza/prefix-conflict (F2): serialize panicked.
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/stanza/prefix-conflict"
        ))
        .unwrap();
        let el = parse(std::str::from_utf8(&raw).unwrap()).unwrap();
        assert_eq!(parse(&serialize(&el)).unwrap(), el);
    }

    #[test]
    fn trailing_content_is_refused() {
        for bad in [
            "<message xmlns='jabber:client'/>x",
            "<message xmlns='jabber:client'/><message xmlns='jabber:client'/>",
            "<message xmlns='jabber:client'/>&amp;",
            "<message xmlns='jabber:client'/><",
        ] {
            assert!(matches!(parse(bad), Err(DecodeError::Xml(_))), "{bad}");
        }
        for ok in [
            "<message xmlns='jabber:client'/>",
            "<message xmlns='jabber:client'/>\n  \t",
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(parse("<message"), Err(DecodeError::Xml(_))));
        assert!(matches!(parse(""), Err(DecodeError::Xml(_))));
    }

    #[test]
    fn attrs() {
        let mut m = new(StanzaKind::Message);
        set_attr(&mut m, "to", "x").unwrap();
        set_attr(&mut m, "to", "y").unwrap();
        assert_eq!(m.attr("to"), Some("y"));
        assert_eq!(remove_attr(&mut m, "to").as_deref(), Some("y"));
        assert_eq!(m.attr("to"), None);
        assert!(set_attr(&mut m, "bad name", "v").is_err());
        assert_eq!(bare_jid("a@b/c"), "a@b");
    }

    proptest::proptest! {
        #[test]
        fn any_body_round_trips(body in "\\PC{0,200}", ws in "[ \n\r\t]{0,3}") {
            let text = format!("{ws}{body}{ws}");
            let m = chat_message("a@x/r", "b@y/r", "1", &text).unwrap();
            let back = parse(&to_line(&m)).unwrap();
            proptest::prop_assert_eq!(body_or_empty(&back), text);
        }

        #[test]
        fn parse_never_panics(s in ".{0,100}") {
            let _ = parse(&s);
        }
    }

    fn body_or_empty(m: &Element) -> String {
        body(m).unwrap_or_default()
    }

    #[test]
    fn nth_text_in_document_order() {
        let mut m = chat_message("a@x/r", "b@y/r", "1", "body").unwrap();
        m.append_child(text_element("subject", NS_CLIENT, "subj"));
        assert_eq!(count_texts(&m), 2);
        assert!(edit_nth_text(&mut m, 1, |t| t.push('!')));
        assert_eq!(body(&m).as_deref(), Some("body"));
        assert_eq!(m.get_child("subject", NS_CLIENT).unwrap().text(), "subj!");
        assert!(!edit_nth_text(&mut m, 2, |t| t.clear()));
    }
}
