//! XEP-0364 carriage: the OTR text travels in `<body/>`; every other part of
//! the stanza travels in clear; the hints XEP-0364 recommends are appended.

use e2elab_core::minidom::Node;
use e2elab_core::stanza::{self, NS_CLIENT};
use e2elab_core::{DecodeError, Element};

/// XEP-0380 namespace.
pub const NS_EME: &str = "urn:xmpp:eme:0";
/// XEP-0334 namespace.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0280 namespace.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// The EME namespace value for OTR.
pub const EME_OTR: &str = "urn:xmpp:otr:0";

/// The four trailing elements XEP-0364 puts on every OTR message, in the
/// order of its example: EME, no-copy, no-permanent-store, carbons private.
pub fn hints() -> [Element; 4] {
    let mut eme = Element::bare("encryption", NS_EME);
    let _ = stanza::set_attr(&mut eme, "namespace", EME_OTR);
    [
        eme,
        Element::bare("no-copy", NS_HINTS),
        Element::bare("no-permanent-store", NS_HINTS),
        Element::bare("private", NS_CARBONS),
    ]
}

/// The text of the stanza's only `<body/>`, `None` when there is no body or
/// it is empty (nothing for OTR to protect). More than one body is an error:
/// only one can be encrypted and the others would leak.
pub fn single_body(el: &Element) -> Result<Option<String>, DecodeError> {
    let mut bodies = el.children().filter(|c| c.is("body", NS_CLIENT));
    let first = bodies.next();
    if bodies.next().is_some() {
        return Err(DecodeError::invalid(
            "body",
            "more than one <body/>; OTR encrypts one",
        ));
    }
    if let Some(b) = first {
        if b.children().next().is_some() {
            return Err(DecodeError::invalid("body", "contains elements"));
        }
    }
    Ok(first.map(Element::text).filter(|t| !t.is_empty()))
}

/// Replace the text of the first `<body/>` (keeping its attributes).
pub fn set_body(el: &mut Element, text: &str) {
    for n in el.nodes_mut() {
        if let Node::Element(c) = n {
            if c.is("body", NS_CLIENT) {
                let _ = c.take_nodes();
                if !text.is_empty() {
                    c.append_text(text);
                }
                return;
            }
        }
    }
}

/// The wire stanza for one OTR text of an application stanza. The last (or
/// only) piece carries the whole stanza with its body replaced; earlier
/// fragments carry the attributes, the fragment body and the hints only.
pub fn wire_stanza(app: &Element, otr_text: &str, last: bool) -> Result<Element, DecodeError> {
    let mut w = if last {
        let mut w = app.clone();
        set_body(&mut w, otr_text);
        w
    } else {
        let mut w = Element::bare(app.name(), app.ns());
        *w.attrs_mut() = app.attrs().clone();
        w.append_child(stanza::text_element("body", NS_CLIENT, otr_text));
        w
    };
    for h in hints() {
        w.append_child(h);
    }
    Ok(w)
}

/// A stanza for a message libotr itself sends (query, AKE, heartbeat,
/// disconnect, SMP): addressed, `type='chat'`, the body, the hints.
pub fn internal_stanza(from: &str, to: &str, otr_text: &str) -> Result<Element, DecodeError> {
    let mut m = stanza::new(stanza::StanzaKind::Message);
    stanza::set_attr(&mut m, "from", from)?;
    stanza::set_attr(&mut m, "to", to)?;
    stanza::set_attr(&mut m, "type", "chat")?;
    m.append_child(stanza::text_element("body", NS_CLIENT, otr_text));
    for h in hints() {
        m.append_child(h);
    }
    Ok(m)
}

/// Rebuild the application stanza from a wire stanza and its decrypted body:
/// the body text replaced, and the four trailing hints removed when (and only
/// when) they are exactly ours, at the end, in our order.
pub fn rebuild(wire: &Element, plaintext: &str) -> Element {
    let mut el = wire.clone();
    set_body(&mut el, plaintext);
    strip_trailing_hints(&mut el);
    el
}

fn strip_trailing_hints(el: &mut Element) {
    let ours = hints();
    let nodes: Vec<Node> = el.take_nodes();
    let elems: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| matches!(n, Node::Element(_)).then_some(i))
        .collect();
    let trailing_text_only = |from: usize| {
        nodes[from..].iter().all(|n| {
            matches!(n, Node::Element(_)) || matches!(n, Node::Text(t) if t.trim().is_empty())
        })
    };
    let mut cut: Option<usize> = None;
    if elems.len() >= ours.len() {
        let tail = &elems[elems.len() - ours.len()..];
        let matches = tail.iter().zip(ours.iter()).all(|(i, h)| match &nodes[*i] {
            Node::Element(e) => e == h,
            Node::Text(_) => false,
        });
        if matches && trailing_text_only(tail[0]) {
            cut = Some(tail[0]);
        }
    }
    for (i, n) in nodes.into_iter().enumerate() {
        if cut.is_some_and(|c| i >= c) {
            continue;
        }
        match n {
            Node::Element(e) => {
                el.append_child(e);
            }
            Node::Text(t) => el.append_text_node(t),
        }
    }
}
