//! XEP-0004 data forms as ESessions uses them, and their normalization
//! (XEP-0116 §"XML Normalization"), which every MAC covers.

use e2elab_core::{DecodeError, Element};

/// `jabber:x:data`.
pub const NS_DATA: &str = "jabber:x:data";

/// One `<field/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    /// `var`.
    pub var: String,
    /// `type`, if present.
    pub ftype: Option<String>,
    /// `<value/>`s in order.
    pub values: Vec<String>,
    /// `<option><value/></option>`s in order.
    pub options: Vec<String>,
    /// `<required/>` present.
    pub required: bool,
}

impl Field {
    /// A field with one value and no type.
    pub fn value(var: &str, v: &str) -> Field {
        Field {
            var: var.into(),
            values: vec![v.into()],
            ..Default::default()
        }
    }

    /// A field with a type and values.
    pub fn typed(var: &str, ftype: &str, values: Vec<String>) -> Field {
        Field {
            var: var.into(),
            ftype: Some(ftype.into()),
            values,
            ..Default::default()
        }
    }

    /// A `list-single`/`list-multi` field offering `options` in preference order.
    pub fn options(var: &str, ftype: &str, options: Vec<String>) -> Field {
        Field {
            var: var.into(),
            ftype: Some(ftype.into()),
            options,
            ..Default::default()
        }
    }

    /// What the field offers: its `<option>`s, or, for a field with none (a
    /// fixed value sent as a `hidden` or `text-single` field, as XEP-0217
    /// §4.1 prescribes and Gajim does), its values.
    pub fn choices(&self) -> &[String] {
        if self.options.is_empty() {
            &self.values
        } else {
            &self.options
        }
    }

    /// Mark `<required/>`.
    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }
}

/// A data form.
///
/// A form parsed from the wire keeps the `<x/>` element it came from: its
/// normalization (what every MAC covers) is the canonical form of those
/// received bytes, never a re-serialization of the parsed fields, so a peer
/// whose serializer orders children or writes attributes differently from
/// ours still computes the same MAC (XEP-0116 §"XML Normalization").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Form {
    /// `form`, `submit` or `result`.
    pub ftype: String,
    /// Fields in document order.
    pub fields: Vec<Field>,
    /// How a form we build is written (received forms keep their own shape).
    pub shape: Shape,
    /// The `<x/>` as received (`None` for a form built here).
    source: Option<Element>,
}

/// How `<required/>` and other empty elements are written when normalizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyStyle {
    /// C14N: `<required></required>` (the spec).
    StartEnd,
    /// `<required />` (Gajim's serializer).
    Gajim,
}

/// How a form we send is laid out (the bytes differ; the meaning does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// As the XEP examples: values, then options, then `<required/>`.
    #[default]
    Spec,
    /// As Gajim's serializer wrote it (GAJIM-NOTES.md "Observed on the
    /// wire"): `<required/>` first, and the `modp` options labelled `None`.
    Gajim,
}

impl Form {
    /// A form of a type.
    pub fn new(ftype: &str) -> Form {
        Form {
            ftype: ftype.into(),
            ..Default::default()
        }
    }

    /// Append a field.
    pub fn push(&mut self, f: Field) -> &mut Form {
        self.fields.push(f);
        self
    }

    /// The field with `var`.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var == var)
    }

    /// The single value of `var`, or a decode error naming it.
    pub fn value(&self, var: &str) -> Result<&str, DecodeError> {
        let f = self
            .field(var)
            .ok_or_else(|| DecodeError::Missing(format!("field '{var}'")))?;
        match f.values.as_slice() {
            [v] => Ok(v.as_str()),
            _ => Err(DecodeError::invalid(var, "expected exactly one value")),
        }
    }

    /// All values of `var`, or a decode error naming it.
    pub fn values(&self, var: &str) -> Result<&[String], DecodeError> {
        self.field(var)
            .map(|f| f.values.as_slice())
            .ok_or_else(|| DecodeError::Missing(format!("field '{var}'")))
    }

    /// Whether this form was parsed from the wire.
    pub fn is_received(&self) -> bool {
        self.source.is_some()
    }

    /// This form without the named fields (e.g. `identity` and `mac` before
    /// MACing); a received form keeps the rest of its received element.
    pub fn without(&self, vars: &[&str]) -> Form {
        let keep = |f: &Field| !vars.contains(&f.var.as_str());
        let source = self.source.as_ref().map(|x| {
            let mut y = Element::bare(x.name(), x.ns());
            for ((_, k), v) in x.attrs().iter() {
                set(&mut y, k.as_str(), v);
            }
            for c in x.children() {
                let dropped =
                    c.is("field", NS_DATA) && c.attr("var").is_some_and(|v| vars.contains(&v));
                if !dropped {
                    y.append_child(c.clone());
                }
            }
            y
        });
        Form {
            ftype: self.ftype.clone(),
            fields: self.fields.iter().filter(|f| keep(f)).cloned().collect(),
            shape: self.shape,
            source,
        }
    }

    /// `<x xmlns='jabber:x:data' type=...>`: the received element, or the
    /// fields written in this form's [`Shape`].
    pub fn to_element(&self) -> Element {
        if let Some(x) = &self.source {
            return x.clone();
        }
        let mut x = Element::bare("x", NS_DATA);
        set(&mut x, "type", &self.ftype);
        for f in &self.fields {
            let mut fe = Element::bare("field", NS_DATA);
            if let Some(t) = &f.ftype {
                set(&mut fe, "type", t);
            }
            set(&mut fe, "var", &f.var);
            let gajim = self.shape == Shape::Gajim;
            if f.required && gajim {
                fe.append_child(Element::bare("required", NS_DATA));
            }
            for v in &f.values {
                fe.append_child(e2elab_core::stanza::text_element("value", NS_DATA, v));
            }
            for o in &f.options {
                let mut oe = Element::bare("option", NS_DATA);
                if gajim && f.var == "modp" {
                    set(&mut oe, "label", "None");
                }
                oe.append_child(e2elab_core::stanza::text_element("value", NS_DATA, o));
                fe.append_child(oe);
            }
            if f.required && !gajim {
                fe.append_child(Element::bare("required", NS_DATA));
            }
            x.append_child(fe);
        }
        x
    }

    /// Parse `<x xmlns='jabber:x:data'>`, keeping the element for
    /// [`Form::normalized`]. Unknown children of a field and attributes in
    /// foreign namespaces are an error, so nothing a MAC would not cover can
    /// hide in a form and its canonical form is defined.
    pub fn from_element(x: &Element) -> Result<Form, DecodeError> {
        if !x.is("x", NS_DATA) {
            return Err(DecodeError::UnexpectedStanza(format!(
                "<{}> is not a data form",
                x.name()
            )));
        }
        let ftype = x
            .attr("type")
            .ok_or_else(|| DecodeError::Missing("form type".into()))?;
        let mut form = Form::new(ftype);
        for fe in x.children() {
            if !fe.is("field", NS_DATA) {
                return Err(DecodeError::invalid(
                    "form",
                    format!("unexpected <{}>", fe.name()),
                ));
            }
            let var = fe
                .attr("var")
                .ok_or_else(|| DecodeError::Missing("field var".into()))?;
            let mut f = Field {
                var: var.into(),
                ftype: fe.attr("type").map(str::to_string),
                ..Default::default()
            };
            check_attrs(fe)?;
            for c in fe.children() {
                check_attrs(c)?;
                if c.is("value", NS_DATA) {
                    f.values.push(c.text());
                } else if c.is("option", NS_DATA) {
                    let v = c
                        .get_child("value", NS_DATA)
                        .ok_or_else(|| DecodeError::Missing("option value".into()))?;
                    if c.children().any(|o| !o.is("value", NS_DATA)) {
                        return Err(DecodeError::invalid(var, "unexpected child of <option>"));
                    }
                    check_attrs(v)?;
                    f.options.push(v.text());
                } else if c.is("required", NS_DATA) {
                    f.required = true;
                } else if c.is("desc", NS_DATA) {
                    // a description carries no protocol meaning (it is still MACed)
                } else {
                    return Err(DecodeError::invalid(
                        var,
                        format!("unexpected <{}>", c.name()),
                    ));
                }
                if c.children().any(|g| !g.is("value", NS_DATA)) {
                    return Err(DecodeError::invalid(var, "unexpected nested element"));
                }
            }
            form.fields.push(f);
        }
        check_attrs(x)?;
        form.source = Some(x.clone());
        Ok(form)
    }

    /// The normalized *content* of the form: the canonical form (W3C C14N,
    /// as XEP-0116 §"XML Normalization" asks) of its `<field/>` children in
    /// order, without the `<x/>` wrapper and without namespace declarations.
    /// For a received form these are the received elements (child order and
    /// every attribute kept); for a form built here, the element it is sent as.
    pub fn normalized(&self, empty: EmptyStyle) -> Vec<u8> {
        let x = match &self.source {
            Some(x) => std::borrow::Cow::Borrowed(x),
            None => std::borrow::Cow::Owned(self.to_element()),
        };
        let mut s = String::new();
        for f in x.children() {
            c14n_element(&mut s, f, empty);
        }
        s.into_bytes()
    }
}

/// The XML namespace (`xml:lang` and friends).
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Attributes must be unqualified or `xml:*`: C14N writes a prefix we know.
fn check_attrs(el: &Element) -> Result<(), DecodeError> {
    for ((ns, name), _) in el.attrs().iter() {
        let ns: &str = ns.as_ref();
        if !ns.is_empty() && ns != NS_XML {
            return Err(DecodeError::invalid(
                "form",
                format!("attribute {name} in namespace {ns}"),
            ));
        }
    }
    Ok(())
}

/// The canonical form of one element (W3C C14N without namespace
/// declarations): attributes sorted by namespace URI then local name,
/// double-quoted; whitespace-only text beside child elements dropped (no
/// inter-element whitespace), other text kept; empty elements per `empty`.
pub fn c14n_element(s: &mut String, el: &Element, empty: EmptyStyle) {
    s.push('<');
    s.push_str(el.name());
    let mut attrs: Vec<(&str, &str, &str)> = el
        .attrs()
        .iter()
        .map(|((ns, k), v)| (ns.as_ref(), k.as_str(), v.as_str()))
        .collect();
    attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (ns, k, v) in attrs {
        s.push(' ');
        if ns == NS_XML {
            s.push_str("xml:");
        }
        s.push_str(k);
        s.push_str("=\"");
        s.push_str(&c14n_attr(v));
        s.push('"');
    }
    let has_elements = el.children().next().is_some();
    let mut body = String::new();
    for n in el.nodes() {
        match n {
            e2elab_core::minidom::Node::Element(c) => c14n_element(&mut body, c, empty),
            e2elab_core::minidom::Node::Text(t) => {
                if !(has_elements && t.trim().is_empty()) {
                    body.push_str(&c14n_text(t));
                }
            }
        }
    }
    if body.is_empty() && empty == EmptyStyle::Gajim {
        s.push_str(" />");
        return;
    }
    s.push('>');
    s.push_str(&body);
    s.push_str("</");
    s.push_str(el.name());
    s.push('>');
}

fn set(el: &mut Element, k: &str, v: &str) {
    // Attribute names used here are fixed, valid XML names.
    let _ = e2elab_core::stanza::set_attr(el, k, v);
}

/// C14N text escaping: `&`, `<`, `>`, CR.
pub fn c14n_text(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

/// C14N attribute escaping: `&`, `<`, `"`, TAB, LF, CR.
pub fn c14n_attr(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '"' => o.push_str("&quot;"),
            '\t' => o.push_str("&#x9;"),
            '\n' => o.push_str("&#xA;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2elab_core::stanza;
    use proptest::prelude::*;

    fn sample() -> Form {
        let mut f = Form::new("form");
        f.push(Field::typed(
            "FORM_TYPE",
            "hidden",
            vec!["urn:xmpp:ssn".into()],
        ));
        f.push(Field::typed("accept", "boolean", vec!["1".into()]).required());
        f.push(Field::options(
            "modp",
            "list-single",
            vec!["5".into(), "14".into()],
        ));
        f
    }

    #[test]
    fn normalization_matches_c14n_by_hand() {
        let n = String::from_utf8(sample().normalized(EmptyStyle::StartEnd)).unwrap();
        assert_eq!(
            n,
            "<field type=\"hidden\" var=\"FORM_TYPE\"><value>urn:xmpp:ssn</value></field>\
             <field type=\"boolean\" var=\"accept\"><value>1</value><required></required></field>\
             <field type=\"list-single\" var=\"modp\"><option><value>5</value></option><option><value>14</value></option></field>"
        );
        let g = String::from_utf8(sample().normalized(EmptyStyle::Gajim)).unwrap();
        assert!(g.contains("<required />"));
    }

    #[test]
    fn normalization_survives_the_wire() {
        // What the receiver normalizes (after serialization and parsing) equals what the sender did.
        let f = sample();
        let wire = stanza::serialize(&f.to_element());
        let back = Form::from_element(&stanza::parse(&wire).unwrap()).unwrap();
        assert!(back.is_received() && !f.is_received());
        assert_eq!(back.fields, f.fields);
        assert_eq!(
            back.normalized(EmptyStyle::StartEnd),
            f.normalized(EmptyStyle::StartEnd)
        );
    }

    /// Gajim's serializer: `<required />` first, labelled options, its own
    /// attribute quoting. The normalization is over what arrived.
    const GAJIM_FIELD: &str = "<x xmlns='jabber:x:data' type='form'>\
        <field var='logging' type='list-single'><required />\
        <option><value>mustnot</value></option><option><value>may</value></option></field>\
        <field type=\"list-single\" var=\"modp\">\n  <option label=\"None\"><value>15</value></option>\n</field>\
        </x>";

    #[test]
    fn normalization_keeps_received_order_and_attributes() {
        let f = Form::from_element(&stanza::parse(GAJIM_FIELD).unwrap()).unwrap();
        let n = String::from_utf8(f.normalized(EmptyStyle::StartEnd)).unwrap();
        assert_eq!(
            n,
            "<field type=\"list-single\" var=\"logging\"><required></required>\
             <option><value>mustnot</value></option><option><value>may</value></option></field>\
             <field type=\"list-single\" var=\"modp\"><option label=\"None\"><value>15</value></option></field>"
        );
        let g = String::from_utf8(f.normalized(EmptyStyle::Gajim)).unwrap();
        assert!(g.starts_with("<field type=\"list-single\" var=\"logging\"><required />"));
        // A re-serialization of the parsed fields would differ: this is what
        // made e2elab's MACs disagree with Gajim's.
        let mut rebuilt = f.clone();
        rebuilt.source = None;
        assert_ne!(
            rebuilt.normalized(EmptyStyle::StartEnd),
            f.normalized(EmptyStyle::StartEnd)
        );
        // Without a field, the rest stays as received.
        let w =
            String::from_utf8(f.without(&["logging"]).normalized(EmptyStyle::StartEnd)).unwrap();
        assert_eq!(
            w,
            "<field type=\"list-single\" var=\"modp\"><option label=\"None\"><value>15</value></option></field>"
        );
    }

    #[test]
    fn gajim_shape_is_what_the_receiver_normalizes() {
        let mut f = sample();
        f.shape = Shape::Gajim;
        f.push(Field::options("modp", "list-single", vec!["15".into()]).required());
        let wire = stanza::serialize(&f.to_element());
        assert!(
            wire.contains("label=\"None\"") || wire.contains("label='None'"),
            "{wire}"
        );
        let back = Form::from_element(&stanza::parse(&wire).unwrap()).unwrap();
        for style in [EmptyStyle::StartEnd, EmptyStyle::Gajim] {
            assert_eq!(back.normalized(style), f.normalized(style));
        }
        let n = String::from_utf8(back.normalized(EmptyStyle::StartEnd)).unwrap();
        assert!(
            n.contains("var=\"accept\"><required></required><value>1</value>"),
            "{n}"
        );
    }

    #[test]
    fn foreign_attributes_and_nested_elements_are_rejected() {
        for bad in [
            "<x xmlns='jabber:x:data' type='form'><field var='a' xmlns:q='urn:q' q:z='1'/></x>",
            "<x xmlns='jabber:x:data' type='form'><field var='a'><value><b/></value></field></x>",
            "<x xmlns='jabber:x:data' type='form'><field var='a'><option><value>1</value><z/></option></field></x>",
        ] {
            let el = stanza::parse(bad).unwrap();
            assert!(matches!(Form::from_element(&el), Err(DecodeError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn a_downgraded_form_normalizes_differently() {
        let mut d = sample();
        d.fields[2].options.remove(1);
        assert_ne!(
            d.normalized(EmptyStyle::StartEnd),
            sample().normalized(EmptyStyle::StartEnd)
        );
    }

    #[test]
    fn unknown_children_are_rejected() {
        let mut x = sample().to_element();
        x.append_child(Element::bare("evil", NS_DATA));
        assert!(Form::from_element(&x).is_err());
    }

    proptest! {
        #[test]
        fn any_form_round_trips(
            vars in proptest::collection::vec("[a-z_]{1,10}", 0..6),
            vals in proptest::collection::vec("\\PC{0,20}", 0..4),
            ty in proptest::option::of("[a-z-]{1,12}"),
        ) {
            let mut f = Form::new("submit");
            for v in &vars {
                f.push(Field { var: v.clone(), ftype: ty.clone(), values: vals.clone(), options: vals.clone(), required: v.len() % 2 == 0 });
            }
            let wire = stanza::serialize(&f.to_element());
            let back = Form::from_element(&stanza::parse(&wire).unwrap()).unwrap();
            prop_assert_eq!(back.normalized(EmptyStyle::StartEnd), f.normalized(EmptyStyle::StartEnd));
            prop_assert_eq!(back.fields, f.fields);
        }

        #[test]
        fn parsing_arbitrary_elements_never_panics(s in "\\PC{0,200}") {
            let xml = format!("<x xmlns='jabber:x:data' type='form'>{s}</x>");
            if let Ok(el) = stanza::parse(&xml) {
                let _ = Form::from_element(&el);
            }
        }
    }
}
