//! XEP-0290 encapsulated signatures: the `<stanza-desc/>` manifest and the
//! W3C XML-DSig `<Signature/>` over it.

use crate::c14n::{self, Context, Method, NS_DSIG_ID};
use e2elab_core::error::backend;
use e2elab_core::ops::{self, HashAlg, Lib, Op};
use e2elab_core::stanza::{self, bare_jid};
use e2elab_core::{DecodeError, Element, Error, PeerMisbehaved, Result, Timestamp};
use minidom::rxml::Namespace;
use minidom::Node;
use openssl::hash::MessageDigest;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::sign::{Signer, Verifier};

/// W3C XML-DSig.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// RSA PKCS#1 v1.5 with SHA-256 (RFC 6931 §2.3.2).
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// SHA-256 (XML Encryption 1.0 §5.7.2).
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// XEP-0290's own transform: "normalized ... as a document subset of a
/// document containing a stream element containing the appropriate
/// jabber:client stanza element".
pub const ALG_XMPP_TRANSFORM: &str = "urn:xmpp:dsig:transform:0";
/// XEP-0290's reference scheme.
pub const REF_PREFIX: &str = "urn:xmpp:dsig:ref:0#";
/// The manifest's id, as XEP-0290's examples name it.
pub const DESC_ID: &str = "stanza-desc";

/// Sender-side inputs.
pub struct SignParams<'a> {
    /// The signer's bare JID (`<signer/>`).
    pub signer: &'a str,
    /// The signing key.
    pub key: &'a PKeyRef<Private>,
    /// The certificate to attach in `<KeyInfo/>`, if any this time.
    pub attach_cert: Option<&'a [u8]>,
    /// How referenced children are canonicalized.
    pub method: Method,
    /// The `<timestamp/>`.
    pub timestamp: Timestamp,
    /// A fresh prefix for this stanza's `d:id` values.
    pub id_prefix: &'a str,
}

/// XEP-0290's timestamp: RFC 3339 UTC, always with three fraction digits
/// (24 characters).
pub fn format_timestamp(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    format!("{}.{:03}Z", &s[..19], (t.micros() / 1000) % 1000)
}

/// Parse exactly the 24-character form [`format_timestamp`] writes.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 24 || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    Timestamp::parse_rfc3339(s)
}

fn digest(bytes: &[u8]) -> Result<Vec<u8>> {
    ops::count(
        Op::Digest {
            hash: HashAlg::Sha256,
            lib: Lib::Openssl,
        },
        bytes.len(),
    );
    Ok(openssl::hash::hash(MessageDigest::sha256(), bytes)
        .map_err(backend)?
        .to_vec())
}

fn c14n_err(e: c14n::C14nError) -> Error {
    Error::Unsupported(e.to_string())
}

fn alg(name: &str, ns: &str, uri: &str) -> Element {
    let mut e = Element::bare(name, ns);
    set(&mut e, "Algorithm", uri);
    e
}

fn set(e: &mut Element, name: &str, value: &str) {
    // Attribute names here are constants, always NCNames.
    if let Ok(n) = stanza::ncname(name) {
        e.set_attr(Namespace::NONE, n, value);
    }
}

fn text(name: &str, ns: &str, t: &str) -> Element {
    stanza::text_element(name, ns, t)
}

fn d_id(e: &Element) -> Option<&str> {
    e.attr_ns(NS_DSIG_ID, "id")
}

/// The stanza's type with XEP-0290's "default attribute values are added"
/// (RFC 6121: a message without type is `normal`; presence and iq have no
/// default, absent stays absent).
pub fn effective_type(stanza: &Element) -> Option<String> {
    match (stanza.name(), stanza.attr("type")) {
        (_, Some(t)) => Some(t.to_string()),
        ("message", None) => Some("normal".to_string()),
        _ => None,
    }
}

/// Prepare `app` (XEP-0290 "Signing"): give each child a `d:id`, build the
/// `<stanza-desc/>` and the `<Signature/>`, and return the stanza to send.
/// No state change; the operation log records the digests and the signature.
pub fn sign(app: &Element, p: &SignParams<'_>) -> Result<Element> {
    let mut outer = Element::bare(app.name(), app.ns());
    *outer.attrs_mut() = app.attrs().clone();
    if let Some(t) = effective_type(app) {
        set(&mut outer, "type", &t);
    }
    let mut i = 0usize;
    for c in app.children() {
        if c.is("Signature", NS_DS) || d_id(c).is_some() {
            return Err(e2elab_core::ApiMisuse::CannotProtect(
                "the stanza already carries an XML signature or urn:xmpp:dsig:0 ids".into(),
            )
            .into());
        }
        i += 1;
        let mut c = c.clone();
        c.set_attr(
            Namespace::from(NS_DSIG_ID),
            stanza::ncname("id")?,
            format!("{}-{i}", p.id_prefix),
        );
        // Declare `d` on the child, as XEP-0290's examples do, so the wire
        // form (and any C14N of it, xmlsec1's included) uses that prefix.
        c.prefixes = (Some("d".to_string()), NS_DSIG_ID.to_string()).into();
        outer.append_child(c);
    }
    // <stanza-desc/>
    let ctx = Context::stanza(&outer);
    let mut desc_stanza = Element::bare(outer.name(), NS_DSIG_ID);
    for ((ns, name), value) in outer.attrs().iter() {
        if ns.is_none() && ["to", "id", "type"].contains(&name.as_str()) {
            set(&mut desc_stanza, name, value);
        }
    }
    set(&mut desc_stanza, "from", p.signer);
    for c in outer.children() {
        let canon = c14n::canonicalize(c, p.method, &ctx).map_err(c14n_err)?;
        let d = digest(canon.as_bytes())?;
        let mut r = text("reference", NS_DSIG_ID, &e2elab_core::b64::encode(d));
        set(
            &mut r,
            "URI",
            &format!("{REF_PREFIX}{}", d_id(c).unwrap_or_default()),
        );
        desc_stanza.append_child(r);
    }
    let mut desc = Element::bare("stanza-desc", NS_DSIG_ID);
    set(&mut desc, "id", DESC_ID);
    desc.append_child(text("signer", NS_DSIG_ID, p.signer));
    let mut tr = Element::bare("Transforms", NS_DSIG_ID);
    tr.append_child(alg("Transform", NS_DSIG_ID, ALG_XMPP_TRANSFORM));
    tr.append_child(alg("Transform", NS_DSIG_ID, p.method.uri()));
    desc.append_child(tr);
    desc.append_child(alg("DigestMethod", NS_DSIG_ID, ALG_SHA256));
    desc.append_child(desc_stanza);
    desc.append_child(text(
        "timestamp",
        NS_DSIG_ID,
        &format_timestamp(p.timestamp),
    ));
    // <SignedInfo/>
    let desc_canon =
        c14n::canonicalize(&desc, Method::Exclusive, &Context::default()).map_err(c14n_err)?;
    let desc_digest = digest(desc_canon.as_bytes())?;
    let mut si = Element::bare("SignedInfo", NS_DS);
    si.append_child(alg("CanonicalizationMethod", NS_DS, c14n::ALG_EXC_C14N));
    si.append_child(alg("SignatureMethod", NS_DS, ALG_RSA_SHA256));
    let mut r = Element::bare("Reference", NS_DS);
    set(&mut r, "URI", &format!("#{DESC_ID}"));
    let mut tr = Element::bare("Transforms", NS_DS);
    tr.append_child(alg("Transform", NS_DS, c14n::ALG_EXC_C14N));
    r.append_child(tr);
    r.append_child(alg("DigestMethod", NS_DS, ALG_SHA256));
    r.append_child(text(
        "DigestValue",
        NS_DS,
        &e2elab_core::b64::encode(desc_digest),
    ));
    si.append_child(r);
    let si_canon =
        c14n::canonicalize(&si, Method::Exclusive, &Context::default()).map_err(c14n_err)?;
    let sig = rsa_sign(p.key, si_canon.as_bytes())?;
    let mut s = Element::bare("Signature", NS_DS);
    s.append_child(si);
    s.append_child(text(
        "SignatureValue",
        NS_DS,
        &e2elab_core::b64::encode(sig),
    ));
    if let Some(cert) = p.attach_cert {
        let mut ki = Element::bare("KeyInfo", NS_DS);
        let mut xd = Element::bare("X509Data", NS_DS);
        xd.append_child(text(
            "X509Certificate",
            NS_DS,
            &e2elab_core::b64::encode(cert),
        ));
        ki.append_child(xd);
        s.append_child(ki);
    }
    let mut obj = Element::bare("Object", NS_DS);
    obj.append_child(desc);
    s.append_child(obj);
    outer.append_child(s);
    Ok(outer)
}

fn rsa_sign(key: &PKeyRef<Private>, data: &[u8]) -> Result<Vec<u8>> {
    ops::count(
        Op::RsaSign {
            bits: key.bits() as u16,
            hash: HashAlg::Sha256,
            crt: true,
        },
        data.len(),
    );
    let mut s = Signer::new(MessageDigest::sha256(), key).map_err(backend)?;
    s.update(data).map_err(backend)?;
    s.sign_to_vec().map_err(backend)
}

fn rsa_verify<T: HasPublic>(key: &PKeyRef<T>, data: &[u8], sig: &[u8]) -> Result<bool> {
    ops::count(
        Op::RsaVerify {
            bits: key.bits() as u16,
            hash: HashAlg::Sha256,
        },
        data.len(),
    );
    let mut v = Verifier::new(MessageDigest::sha256(), key).map_err(backend)?;
    v.update(data).map_err(backend)?;
    // A malformed signature (wrong length) is a failed check, not an error.
    Ok(v.verify(sig).unwrap_or(false))
}

/// What the receiver expects (the session's view).
pub struct Expect<'a> {
    /// The peer's bare JID: the signer, and the bare `from`.
    pub signer: &'a str,
    /// Our bare JID: the signed `to` must name it (where the stanza has one).
    pub recipient: &'a str,
}

/// A stanza whose signature checked out.
#[derive(Debug)]
pub struct Verified {
    /// The stanza to deliver: the outer stanza's attributes and exactly
    /// the referenced children, `d:id` removed, the signature removed.
    pub stanza: Element,
    /// `{ns}name` of children the manifest does not reference (not delivered).
    pub unreferenced: Vec<String>,
    /// The signed timestamp.
    pub timestamp: Timestamp,
    /// The certificate in `<KeyInfo/>`, if attached.
    pub attached_cert: Option<Vec<u8>>,
    /// The canonicalization the manifest names.
    pub method: Method,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    DecodeError::invalid(field, reason).into()
}

fn algorithm(e: &Element) -> Result<&str> {
    e.attr("Algorithm")
        .ok_or_else(|| DecodeError::Missing(format!("Algorithm of <{}/>", e.name())).into())
}

/// Elements only (no text but whitespace) under `e`, in order, with
/// exactly the names given.
fn exactly<'a>(e: &'a Element, ns: &str, names: &[&str]) -> Result<Vec<&'a Element>> {
    let mut out = Vec::new();
    for n in e.nodes() {
        match n {
            Node::Element(c) => out.push(c),
            Node::Text(t) if t.trim().is_empty() => {}
            Node::Text(_) => return Err(invalid(e.name(), "unexpected text")),
        }
    }
    let got: Vec<String> = out
        .iter()
        .map(|c| format!("{{{}}}{}", c.ns(), c.name()))
        .collect();
    let want: Vec<String> = names.iter().map(|n| format!("{{{ns}}}{n}")).collect();
    if got != want {
        return Err(invalid(
            e.name(),
            format!("children {got:?}, expected {want:?}"),
        ));
    }
    Ok(out)
}

fn b64(e: &Element, field: &str) -> Result<Vec<u8>> {
    let t: String = e
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    e2elab_core::b64::decode(t).map_err(|_| invalid(field, "not base64"))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// Every element of `root`'s tree (iteratively).
fn all_elements(root: &Element) -> Vec<&Element> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        out.push(e);
        stack.extend(e.children());
    }
    out
}

/// Check `outer`'s signature (XEP-0290 "Verifying", as DECISIONS read it)
/// under `key`, and the manifest against `outer`. No state; the caller
/// checks the timestamp window and replays.
pub fn verify<T: HasPublic>(
    outer: &Element,
    key: &PKey<T>,
    expect: &Expect<'_>,
) -> Result<Verified> {
    let sigs: Vec<&Element> = outer
        .children()
        .filter(|c| c.is("Signature", NS_DS))
        .collect();
    let sig = match sigs.as_slice() {
        [s] => *s,
        [] => return Err(DecodeError::Missing("<Signature/>".into()).into()),
        _ => {
            return Err(Error::Unsupported(
                "more than one <Signature/> (several signers)".into(),
            ))
        }
    };
    // Signature: SignedInfo, SignatureValue, KeyInfo?, Object.
    let parts: Vec<&Element> = sig.children().collect();
    let names: Vec<&str> = parts.iter().map(|c| c.name()).collect();
    let with_keyinfo = names == ["SignedInfo", "SignatureValue", "KeyInfo", "Object"];
    if !(with_keyinfo || names == ["SignedInfo", "SignatureValue", "Object"])
        || parts.iter().any(|c| c.ns() != NS_DS)
    {
        return Err(invalid("Signature", format!("children {names:?}")));
    }
    let si = parts[0];
    let sv = b64(parts[1], "SignatureValue")?;
    let obj = parts[parts.len() - 1];
    let si_parts = exactly(
        si,
        NS_DS,
        &["CanonicalizationMethod", "SignatureMethod", "Reference"],
    )?;
    if algorithm(si_parts[0])? != c14n::ALG_EXC_C14N {
        return Err(Error::Unsupported(format!(
            "CanonicalizationMethod {}",
            algorithm(si_parts[0])?
        )));
    }
    if algorithm(si_parts[1])? != ALG_RSA_SHA256 {
        return Err(Error::Unsupported(format!(
            "SignatureMethod {}",
            algorithm(si_parts[1])?
        )));
    }
    let reference = si_parts[2];
    let uri = reference
        .attr("URI")
        .ok_or_else(|| DecodeError::Missing("Reference URI".into()))?;
    let frag = uri
        .strip_prefix('#')
        .ok_or_else(|| invalid("Reference URI", "not a same-document reference"))?;
    let r_parts = exactly(
        reference,
        NS_DS,
        &["Transforms", "DigestMethod", "DigestValue"],
    )?;
    let transforms = exactly(r_parts[0], NS_DS, &["Transform"])?;
    if algorithm(transforms[0])? != c14n::ALG_EXC_C14N {
        return Err(Error::Unsupported(format!(
            "Reference transform {}",
            algorithm(transforms[0])?
        )));
    }
    if algorithm(r_parts[1])? != ALG_SHA256 {
        return Err(Error::Unsupported(format!(
            "DigestMethod {}",
            algorithm(r_parts[1])?
        )));
    }
    let dv = b64(r_parts[2], "DigestValue")?;
    // The referenced manifest: the one element with that id in the whole
    // stanza, and it must be Signature/Object/stanza-desc (signature
    // wrapping moves the signed element and plants another in its place).
    let with_id: Vec<&Element> = all_elements(outer)
        .into_iter()
        .filter(|e| e.attr("id") == Some(frag) || e.attr_ns(NS_DSIG_ID, "id") == Some(frag))
        .collect();
    let obj_children = exactly(obj, NS_DSIG_ID, &["stanza-desc"])
        .map_err(|_| invalid("Object", "must hold exactly one <stanza-desc/>"))?;
    let desc = match with_id.as_slice() {
        [d] if std::ptr::eq(*d, obj_children[0]) => obj_children[0],
        [] => {
            return Err(invalid(
                "Reference URI",
                format!("#{frag}: no such element"),
            ))
        }
        [_] => {
            return Err(invalid(
                "Reference URI",
                format!("#{frag} is not the <stanza-desc/> in <Object/>"),
            ))
        }
        _ => return Err(invalid("Reference URI", format!("#{frag}: duplicate id"))),
    };
    // 1. The manifest's digest; 2. the signature over SignedInfo.
    let desc_canon =
        c14n::canonicalize(desc, Method::Exclusive, &Context::default()).map_err(c14n_err)?;
    let d = digest(desc_canon.as_bytes())?;
    let si_canon =
        c14n::canonicalize(si, Method::Exclusive, &Context::default()).map_err(c14n_err)?;
    let sig_ok = rsa_verify(key, si_canon.as_bytes(), &sv)?;
    if !ct_eq(&d, &dv) || !sig_ok {
        return Err(PeerMisbehaved::BadSignature.into());
    }
    // From here on everything read is signed.
    let dp = exactly(
        desc,
        NS_DSIG_ID,
        &[
            "signer",
            "Transforms",
            "DigestMethod",
            outer.name(),
            "timestamp",
        ],
    )?;
    let signer = dp[0].text();
    if !signer.eq_ignore_ascii_case(expect.signer) {
        return Err(PeerMisbehaved::WrongAddress(format!("signer {signer}")).into());
    }
    let t = exactly(dp[1], NS_DSIG_ID, &["Transform", "Transform"])?;
    if algorithm(t[0])? != ALG_XMPP_TRANSFORM {
        return Err(Error::Unsupported(format!(
            "manifest transform {}",
            algorithm(t[0])?
        )));
    }
    let method = Method::from_uri(algorithm(t[1])?).ok_or_else(|| {
        Error::Unsupported(format!(
            "manifest transform {}",
            algorithm(t[1]).unwrap_or("")
        ))
    })?;
    if algorithm(dp[2])? != ALG_SHA256 {
        return Err(Error::Unsupported(format!(
            "manifest DigestMethod {}",
            algorithm(dp[2])?
        )));
    }
    let timestamp = parse_timestamp(dp[4].text().trim())
        .ok_or_else(|| invalid("timestamp", "not YYYY-MM-DDThh:mm:ss.sssZ"))?;
    // The signed stanza attributes against the stanza as received.
    let ds = dp[3];
    let from = outer
        .attr("from")
        .ok_or_else(|| DecodeError::Missing("from".into()))?;
    let signed_from = ds.attr("from").unwrap_or_default();
    if !bare_jid(from).eq_ignore_ascii_case(&signer)
        || !bare_jid(signed_from).eq_ignore_ascii_case(&signer)
    {
        return Err(
            PeerMisbehaved::WrongAddress(format!("from {from}, signed {signed_from}")).into(),
        );
    }
    match (ds.attr("to"), outer.attr("to")) {
        (None, _) => {}
        (Some(st), Some(to))
            if bare_jid(st).eq_ignore_ascii_case(expect.recipient)
                && bare_jid(to).eq_ignore_ascii_case(expect.recipient) => {}
        (st, to) => {
            return Err(PeerMisbehaved::WrongAddress(format!(
                "signed to {st:?}, stanza to {to:?}, we are {}",
                expect.recipient
            ))
            .into())
        }
    }
    if ds.attr("type").map(str::to_string) != effective_type(outer) {
        return Err(PeerMisbehaved::WrongAddress(format!(
            "signed type {:?}, stanza type {:?}",
            ds.attr("type"),
            outer.attr("type")
        ))
        .into());
    }
    if let Some(id) = ds.attr("id") {
        if outer.attr("id") != Some(id) {
            return Err(invalid("id", "the stanza's id is not the signed one"));
        }
    }
    // References: unique, each to exactly one child, digests equal.
    let ctx = Context::stanza(outer);
    let refs = exactly(ds, NS_DSIG_ID, &vec!["reference"; ds.children().count()])?;
    let mut seen = std::collections::BTreeSet::new();
    let mut referenced: Vec<&Element> = Vec::new();
    for r in refs {
        let uri = r
            .attr("URI")
            .ok_or_else(|| DecodeError::Missing("reference URI".into()))?;
        let id = uri
            .strip_prefix(REF_PREFIX)
            .ok_or_else(|| invalid("reference URI", format!("{uri} is not {REF_PREFIX}<id>")))?;
        if !seen.insert(id.to_string()) {
            return Err(invalid("reference URI", format!("{uri} referenced twice")));
        }
        let targets: Vec<&Element> = outer.children().filter(|c| d_id(c) == Some(id)).collect();
        let target = match targets.as_slice() {
            [t] => *t,
            [] => return Err(invalid("reference URI", format!("{uri}: no such child"))),
            _ => return Err(invalid("reference URI", format!("{uri}: duplicate d:id"))),
        };
        let want = b64(r, "reference")?;
        let canon = c14n::canonicalize(target, method, &ctx).map_err(c14n_err)?;
        if !ct_eq(&digest(canon.as_bytes())?, &want) {
            return Err(PeerMisbehaved::BadSignature.into());
        }
        referenced.push(target);
    }
    // The delivered stanza.
    let mut out = Element::bare(outer.name(), outer.ns());
    *out.attrs_mut() = outer.attrs().clone();
    let mut unreferenced = Vec::new();
    for c in outer.children() {
        if referenced.iter().any(|r| std::ptr::eq(*r, c)) {
            let mut c = c.clone();
            c.attrs_mut().remove(NS_DSIG_ID, "id");
            c.prefixes = Default::default();
            out.append_child(c);
        } else if !std::ptr::eq(c, sig) {
            unreferenced.push(e2elab_core::outbox::child_name(c));
        }
    }
    let attached_cert = if with_keyinfo {
        let ki = exactly(parts[2], NS_DS, &["X509Data"])?;
        let xd = exactly(ki[0], NS_DS, &["X509Certificate"])?;
        Some(b64(xd[0], "X509Certificate")?)
    } else {
        None
    };
    Ok(Verified {
        stanza: out,
        unreferenced,
        timestamp,
        attached_cert,
        method,
    })
}
