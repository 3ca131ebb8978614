//! Canonical XML of one element subtree of the stanza model.
//!
//! Two algorithms, both without comments (the model has none):
//! - [`Method::Exclusive`]: Exclusive XML Canonicalization 1.0
//!   (`http://www.w3.org/2001/10/xml-exc-c14n#`), no InclusiveNamespaces
//!   prefix list. A namespace declaration is output where it is visibly
//!   utilized and not already in effect in the output; `xml:*` attributes of
//!   ancestors are not imported. The output depends only on the subtree.
//! - [`Method::Inclusive`]: Canonical XML 1.0
//!   (`http://www.w3.org/TR/2001/REC-xml-c14n-20010315`) of the subtree as a
//!   document subset whose ancestors are given by a [`Context`] (XEP-0290:
//!   a `jabber:client` stream element and the stanza element): the apex
//!   outputs every namespace in scope (the stream's `xmlns:stream`
//!   included) and imports the ancestors' `xml:*` attributes (`xml:lang`
//!   stamped on the stanza by a server changes the result).
//!
//! The model keeps each element's and attribute's namespace but not the
//! sender's prefixes ([`e2elab_core::stanza::parse`] drops them), so the
//! canonical form is that of the *prefix-normalized* document, the one the
//! workspace's serializer writes: every element unprefixed (a default
//! namespace declaration where the namespace changes), `xml:` attributes
//! with their fixed prefix, `urn:xmpp:dsig:0` attributes with prefix `d`
//! (XEP-0290's examples). An attribute in any other namespace has no
//! recoverable prefix: canonicalizing it is refused
//! ([`C14nError::UnknownAttributeNamespace`]). A document the sender wrote
//! with other prefixes canonicalizes differently on the wire than here, so
//! its signatures fail to verify (fail closed): see the crate's DECISIONS.
//!
//! The walk uses an explicit stack: depth is bounded by the parser's limit,
//! which a user may raise, so nothing here recurses on it.

use minidom::{Element, Node};
use std::fmt::Write as _;

/// The XML namespace (`xml:` prefix, never declared).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// XEP-0290's id namespace, written with prefix `d`.
pub const NS_DSIG_ID: &str = "urn:xmpp:dsig:0";
/// Exclusive C14N 1.0.
pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// Canonical XML 1.0.
pub const ALG_C14N: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";

/// Which canonicalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exclusive XML Canonicalization 1.0.
    Exclusive,
    /// Canonical XML 1.0 (inclusive) of a document subset.
    Inclusive,
}

impl Method {
    /// The algorithm URI.
    pub fn uri(self) -> &'static str {
        match self {
            Method::Exclusive => ALG_EXC_C14N,
            Method::Inclusive => ALG_C14N,
        }
    }

    /// From an algorithm URI.
    pub fn from_uri(uri: &str) -> Option<Method> {
        match uri {
            ALG_EXC_C14N => Some(Method::Exclusive),
            ALG_C14N => Some(Method::Inclusive),
            _ => None,
        }
    }
}

/// Why a subtree has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum C14nError {
    /// An attribute in a namespace whose prefix the model does not keep.
    #[error("attribute {{{ns}}}{name}: the stanza model keeps no prefix for its namespace")]
    UnknownAttributeNamespace {
        /// Namespace.
        ns: String,
        /// Local name.
        name: String,
    },
}

/// The ancestors of the apex, for [`Method::Inclusive`]: namespace
/// declarations in scope (prefix, `None` for the default, and URI) and
/// `xml:*` attributes (local name, value) the apex inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// In-scope namespace declarations, outermost first.
    pub namespaces: Vec<(Option<String>, String)>,
    /// Inherited `xml:*` attributes, innermost wins.
    pub xml_attrs: Vec<(String, String)>,
}

impl Context {
    /// XEP-0290 §"Signing": a `jabber:client` stream element containing the
    /// stanza `stanza` (whose `xml:*` attributes the apex inherits).
    pub fn stanza(stanza: &Element) -> Context {
        let mut xml_attrs = Vec::new();
        for ((ns, name), value) in stanza.attrs().iter() {
            if ns.as_str() == NS_XML {
                xml_attrs.push((name.to_string(), value.clone()));
            }
        }
        Context {
            namespaces: vec![
                (None, "jabber:client".to_string()),
                (
                    Some("stream".to_string()),
                    "http://etherx.jabber.org/streams".to_string(),
                ),
                (None, stanza.ns()),
            ],
            xml_attrs,
        }
    }
}

fn prefix_of(ns: &str, name: &str) -> Result<&'static str, C14nError> {
    match ns {
        NS_XML => Ok("xml"),
        NS_DSIG_ID => Ok("d"),
        _ => Err(C14nError::UnknownAttributeNamespace {
            ns: ns.to_string(),
            name: name.to_string(),
        }),
    }
}

fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Namespace declarations in effect in the output: prefix (`""` for the
/// default) to URI.
type Scope = std::collections::BTreeMap<String, String>;

/// One element's start tag; returns the scope its children see.
fn start_tag(
    out: &mut String,
    el: &Element,
    method: Method,
    rendered: &Scope,
    apex: Option<&Context>,
) -> Result<Scope, C14nError> {
    let ns = el.ns();
    // Attributes: (namespace URI, local name, qualified name, value).
    let mut attrs: Vec<(String, String, String, String)> = Vec::new();
    let mut utilized: Scope = Scope::new();
    utilized.insert(String::new(), ns.clone());
    for ((ans, name), value) in el.attrs().iter() {
        if ans.is_none() {
            attrs.push((
                String::new(),
                name.to_string(),
                name.to_string(),
                value.clone(),
            ));
        } else {
            let p = prefix_of(ans.as_str(), name)?;
            if p != "xml" {
                utilized.insert(p.to_string(), ans.as_str().to_string());
            }
            attrs.push((
                ans.as_str().to_string(),
                name.to_string(),
                format!("{p}:{name}"),
                value.clone(),
            ));
        }
    }
    // Namespace declarations to output.
    let mut decls: Scope = Scope::new();
    let mut scope = rendered.clone();
    match (method, apex) {
        (Method::Inclusive, Some(ctx)) => {
            // Every namespace in scope at the apex: the ancestors' (later
            // ones shadow earlier ones) and the element's own.
            let mut in_scope = Scope::new();
            for (p, u) in &ctx.namespaces {
                in_scope.insert(p.clone().unwrap_or_default(), u.clone());
            }
            in_scope.extend(utilized.clone());
            for (p, u) in in_scope {
                if !(p.is_empty() && u.is_empty()) {
                    decls.insert(p, u);
                }
            }
            // Inherited xml:* attributes the apex does not carry itself.
            for (name, value) in &ctx.xml_attrs {
                if el.attr_ns(NS_XML, name.as_str()).is_none() {
                    attrs.push((
                        NS_XML.to_string(),
                        name.clone(),
                        format!("xml:{name}"),
                        value.clone(),
                    ));
                }
            }
        }
        _ => {
            // Exclusive, and inclusive below the apex (the model has no
            // declarations but those the element utilizes, so both output
            // what is utilized and not yet in effect).
            for (p, u) in utilized {
                if rendered.get(&p) != Some(&u) {
                    decls.insert(p, u);
                }
            }
        }
    }
    for (p, u) in &decls {
        scope.insert(p.clone(), u.clone());
    }
    out.push('<');
    out.push_str(el.name());
    // Default namespace first, then by prefix (BTreeMap: "" sorts first).
    for (p, u) in &decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            let _ = write!(out, " xmlns:{p}=\"");
        }
        escape_attr(out, u);
        out.push('"');
    }
    // Attributes by (namespace URI, local name); no namespace first.
    attrs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (_, _, qname, value) in &attrs {
        let _ = write!(out, " {qname}=\"");
        escape_attr(out, value);
        out.push('"');
    }
    out.push('>');
    Ok(scope)
}

/// The canonical form of `el` and its subtree. `context` is used by
/// [`Method::Inclusive`] only.
pub fn canonicalize(el: &Element, method: Method, context: &Context) -> Result<String, C14nError> {
    enum Step<'a> {
        Open(&'a Element, Scope, bool),
        Text(&'a str),
        Close(&'a str),
    }
    let mut out = String::new();
    let mut stack = vec![Step::Open(el, Scope::new(), true)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => escape_text(&mut out, t),
            Step::Close(name) => {
                out.push_str("</");
                out.push_str(name);
                out.push('>');
            }
            Step::Open(e, rendered, is_apex) => {
                let scope = start_tag(
                    &mut out,
                    e,
                    method,
                    &rendered,
                    if is_apex { Some(context) } else { None },
                )?;
                stack.push(Step::Close(e.name()));
                for n in e.nodes().collect::<Vec<_>>().into_iter().rev() {
                    match n {
                        Node::Element(c) => stack.push(Step::Open(c, scope.clone(), false)),
                        Node::Text(t) => stack.push(Step::Text(t)),
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        e2elab_core::stanza::parse(s).unwrap()
    }

    #[test]
    fn xep0290_example_child_canonicalizes_as_the_xep_shows() {
        // XEP-0290 Examples 2 and 8-9: the thread child of the stanza.
        let m = parse(
            "<message xmlns='jabber:client' from='juliet@capulet.net' id='183ef129' \
             to='romeo@montague.net' type='chat'>\
             <thread xmlns:d='urn:xmpp:dsig:0' d:id='xxxx-1'>8996aef0-061d-012d-347a-549a200771aa</thread>\
             </message>",
        );
        let thread = m.children().next().unwrap();
        let c = canonicalize(thread, Method::Exclusive, &Context::stanza(&m)).unwrap();
        assert_eq!(
            c,
            r#"<thread xmlns="jabber:client" xmlns:d="urn:xmpp:dsig:0" d:id="xxxx-1">8996aef0-061d-012d-347a-549a200771aa</thread>"#
        );
        // Inclusive: the stream's prefix is in scope and is output too.
        let i = canonicalize(thread, Method::Inclusive, &Context::stanza(&m)).unwrap();
        assert_eq!(
            i,
            r#"<thread xmlns="jabber:client" xmlns:d="urn:xmpp:dsig:0" xmlns:stream="http://etherx.jabber.org/streams" d:id="xxxx-1">8996aef0-061d-012d-347a-549a200771aa</thread>"#
        );
    }

    #[test]
    fn escaping_ordering_and_nested_namespaces() {
        let m = parse(
            "<message xmlns='jabber:client' xml:lang='en'>\
             <html xmlns='http://jabber.org/protocol/xhtml-im' b='2' a='&quot;&#9;&lt;&amp;'>\
             <body xmlns='http://www.w3.org/1999/xhtml'>a&gt;b&#13;<p/></body></html></message>",
        );
        let html = m.children().next().unwrap();
        let c = canonicalize(html, Method::Exclusive, &Context::stanza(&m)).unwrap();
        assert_eq!(
            c,
            "<html xmlns=\"http://jabber.org/protocol/xhtml-im\" a=\"&quot;&#x9;&lt;&amp;\" b=\"2\">\
             <body xmlns=\"http://www.w3.org/1999/xhtml\">a&gt;b&#xD;<p></p></body></html>"
        );
        // Inclusive imports the stanza's xml:lang; exclusive does not.
        let i = canonicalize(html, Method::Inclusive, &Context::stanza(&m)).unwrap();
        assert!(i.contains(" xml:lang=\"en\""), "{i}");
        assert!(!c.contains("xml:lang"));
    }

    #[test]
    fn unknown_attribute_namespace_is_refused() {
        let m =
            parse("<message xmlns='jabber:client'><x xmlns='u' xmlns:p='v' p:a='1'/></message>");
        let x = m.children().next().unwrap();
        assert!(matches!(
            canonicalize(x, Method::Exclusive, &Context::default()),
            Err(C14nError::UnknownAttributeNamespace { .. })
        ));
    }

    #[test]
    fn deep_trees_do_not_recurse() {
        let depth = 100_000;
        let mut s = String::from("<a xmlns='u'>");
        for _ in 0..depth {
            s.push_str("<a>");
        }
        for _ in 0..depth {
            s.push_str("</a>");
        }
        s.push_str("</a>");
        let el = e2elab_core::stanza::parse_with(
            &s,
            e2elab_core::stanza::Limits {
                max_bytes: usize::MAX,
                max_depth: usize::MAX,
            },
        )
        .unwrap();
        let c = canonicalize(&el, Method::Exclusive, &Context::default()).unwrap();
        assert_eq!(
            c.len(),
            "<a xmlns=\"u\"></a>".len() + (depth) * "<a></a>".len()
        );
        // minidom's drop is recursive: leak the deep tree rather than drop it.
        std::mem::forget(el);
    }
}
