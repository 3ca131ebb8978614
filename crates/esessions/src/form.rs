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

    /// Mark `<required/>`.
    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }
}

/// A data form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Form {
    /// `form`, `submit` or `result`.
    pub ftype: String,
    /// Fields in document order.
    pub fields: Vec<Field>,
}

/// How `<required/>` and other empty elements are written when normalizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyStyle {
    /// C14N: `<required></required>` (the spec).
    StartEnd,
    /// `<required />` (Gajim's serializer).
    Gajim,
}

impl Form {
    /// A form of a type.
    pub fn new(ftype: &str) -> Form {
        Form {
            ftype: ftype.into(),
            fields: Vec::new(),
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

    /// This form without the named fields (e.g. `identity` and `mac` before MACing).
    pub fn without(&self, vars: &[&str]) -> Form {
        Form {
            ftype: self.ftype.clone(),
            fields: self
                .fields
                .iter()
                .filter(|f| !vars.contains(&f.var.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// `<x xmlns='jabber:x:data' type=...>`.
    pub fn to_element(&self) -> Element {
        let mut x = Element::bare("x", NS_DATA);
        set(&mut x, "type", &self.ftype);
        for f in &self.fields {
            let mut fe = Element::bare("field", NS_DATA);
            if let Some(t) = &f.ftype {
                set(&mut fe, "type", t);
            }
            set(&mut fe, "var", &f.var);
            for v in &f.values {
                fe.append_child(e2elab_core::stanza::text_element("value", NS_DATA, v));
            }
            for o in &f.options {
                let mut oe = Element::bare("option", NS_DATA);
                oe.append_child(e2elab_core::stanza::text_element("value", NS_DATA, o));
                fe.append_child(oe);
            }
            if f.required {
                fe.append_child(Element::bare("required", NS_DATA));
            }
            x.append_child(fe);
        }
        x
    }

    /// Parse `<x xmlns='jabber:x:data'>`. Unknown children of a field are an error,
    /// so nothing a MAC would not cover can hide in a form.
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
            for c in fe.children() {
                if c.is("value", NS_DATA) {
                    f.values.push(c.text());
                } else if c.is("option", NS_DATA) {
                    let v = c
                        .get_child("value", NS_DATA)
                        .ok_or_else(|| DecodeError::Missing("option value".into()))?;
                    f.options.push(v.text());
                } else if c.is("required", NS_DATA) {
                    f.required = true;
                } else if c.is("desc", NS_DATA) {
                    // a description carries no protocol meaning
                } else {
                    return Err(DecodeError::invalid(
                        var,
                        format!("unexpected <{}>", c.name()),
                    ));
                }
            }
            form.fields.push(f);
        }
        Ok(form)
    }

    /// The normalized *content* of the form: the canonical form (W3C C14N,
    /// as XEP-0116 §"XML Normalization" asks) of its `<field/>` children in
    /// order, without the `<x/>` wrapper and without namespace declarations;
    /// attributes in lexicographic order (`type` before `var`), double-quoted;
    /// no inter-element whitespace.
    pub fn normalized(&self, empty: EmptyStyle) -> Vec<u8> {
        let mut s = String::new();
        for f in &self.fields {
            s.push_str("<field");
            if let Some(t) = &f.ftype {
                s.push_str(" type=\"");
                s.push_str(&c14n_attr(t));
                s.push('"');
            }
            s.push_str(" var=\"");
            s.push_str(&c14n_attr(&f.var));
            s.push_str("\">");
            for v in &f.values {
                text_el(&mut s, "value", v, empty);
            }
            for o in &f.options {
                s.push_str("<option>");
                text_el(&mut s, "value", o, empty);
                s.push_str("</option>");
            }
            if f.required {
                match empty {
                    EmptyStyle::StartEnd => s.push_str("<required></required>"),
                    EmptyStyle::Gajim => s.push_str("<required />"),
                }
            }
            s.push_str("</field>");
        }
        s.into_bytes()
    }
}

fn text_el(s: &mut String, name: &str, text: &str, empty: EmptyStyle) {
    if text.is_empty() && empty == EmptyStyle::Gajim {
        s.push('<');
        s.push_str(name);
        s.push_str(" />");
        return;
    }
    s.push('<');
    s.push_str(name);
    s.push('>');
    s.push_str(&c14n_text(text));
    s.push_str("</");
    s.push_str(name);
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
        assert_eq!(back, f);
        assert_eq!(
            back.normalized(EmptyStyle::StartEnd),
            f.normalized(EmptyStyle::StartEnd)
        );
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
            prop_assert_eq!(back, f);
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
