//! Long-term RSA keys as XML-DSig `<KeyValue/>`, signatures as `<SignatureValue/>`.

use crate::prim;
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{stanza, DecodeError, Element, IdentityError, Result};
use openssl::bn::BigNum;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;

/// `rsa-sha256` as XEP-0116 names it.
pub const RSA_SHA256: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha256";

/// The normalized `<KeyValue/>` of an RSA public key: no namespace
/// declaration, no whitespace (XEP-0116 §"XML Normalization").
pub fn key_value(n: &[u8], e: &[u8]) -> Vec<u8> {
    format!(
        "<KeyValue><RSAKeyValue><Modulus>{}</Modulus><Exponent>{}</Exponent></RSAKeyValue></KeyValue>",
        b64::encode(n),
        b64::encode(e)
    )
    .into_bytes()
}

/// The normalized `<KeyValue/>` of a private key's public half.
pub fn key_value_of(k: &PKey<Private>) -> Result<Vec<u8>> {
    let rsa = k.rsa().map_err(backend)?;
    Ok(key_value(&rsa.n().to_vec(), &rsa.e().to_vec()))
}

/// Load a PKCS#8 DER private key.
pub fn private_from_der(der: &[u8]) -> Result<PKey<Private>> {
    PKey::private_key_from_pkcs8(der).map_err(|e| IdentityError::Malformed(e.to_string()).into())
}

/// Parse a normalized or namespaced `<KeyValue/>` into an RSA public key.
pub fn public_from_key_value(el: &Element) -> Result<PKey<Public>> {
    let rsa = el
        .children()
        .find(|c| c.name() == "RSAKeyValue")
        .ok_or_else(|| DecodeError::Missing("RSAKeyValue".into()))?;
    let get = |name: &str| -> Result<BigNum> {
        let t = rsa
            .children()
            .find(|c| c.name() == name)
            .ok_or_else(|| DecodeError::Missing(name.into()))?
            .text();
        let b = b64::decode(t.trim()).map_err(|_| DecodeError::invalid(name, "not base64"))?;
        BigNum::from_slice(&b).map_err(backend)
    };
    let r = Rsa::from_public_components(get("Modulus")?, get("Exponent")?).map_err(backend)?;
    PKey::from_rsa(r).map_err(backend)
}

/// Parse the bytes of a normalized `<KeyValue/>`.
pub fn public_from_bytes(kv: &[u8]) -> Result<PKey<Public>> {
    let el = parse_fragment(kv)?;
    let kv = el
        .children()
        .find(|c| c.name() == "KeyValue")
        .ok_or_else(|| DecodeError::Missing("KeyValue".into()))?;
    public_from_key_value(kv)
}

/// Parse concatenated, namespace-less XML elements under a wrapper.
pub fn parse_fragment(bytes: &[u8]) -> Result<Element> {
    let s =
        std::str::from_utf8(bytes).map_err(|_| DecodeError::invalid("identity", "not UTF-8"))?;
    Ok(stanza::parse(&format!(
        "<id xmlns='urn:xmpp-e2e-lab:fragment'>{s}</id>"
    ))?)
}

/// `<fingerprint>B64(SHA256(KeyValue))</fingerprint>` (DECISIONS: fingerprint).
pub fn fingerprint_element(kv: &[u8]) -> Result<Vec<u8>> {
    Ok(format!(
        "<fingerprint>{}</fingerprint>",
        b64::encode(prim::sha256(&[kv])?)
    )
    .into_bytes())
}

/// Hex SHA-256 of the normalized `<KeyValue/>`: the fingerprint shown to users.
pub fn fingerprint_hex(kv: &[u8]) -> Result<String> {
    Ok(hex_lower(&prim::sha256(&[kv])?))
}

/// Lowercase hex.
pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
