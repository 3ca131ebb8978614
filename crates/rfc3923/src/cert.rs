//! Identities: an RSA-2048 key and a self-signed X.509 certificate that names
//! the JID as RFC 3923 §6.3 asks (`id-on-xmppAddr` otherName, and `im:` and
//! `pres:` URIs, in subjectAltName).

use crate::der::{self, oids};
use e2elab_core::error::backend;
use e2elab_core::{Env, IdentityError, Result, Timestamp};
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};
use zeroize::Zeroizing;

/// RSA modulus size.
pub const RSA_BITS: u32 = 2048;

/// A generated certificate is valid from this long before the virtual
/// clock's "now" at generation ...
pub const NOT_BEFORE_SLACK_SECS: u64 = 3600;
/// ... until RFC 5280 §4.1.2.5's "no well-defined expiration date": the
/// certificate is pinned, not CA-issued, so it is trusted for as long as
/// the user keeps it (and `e2elab keygen` makes it on a different clock
/// from the one `e2elab peer` runs on).
pub const NOT_AFTER: &str = "99991231235959Z";

/// A freshly generated key and certificate.
pub struct Generated {
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key, DER (zeroized on drop).
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

fn time(t: u64) -> Result<Asn1Time> {
    let t = i64::try_from(t).map_err(|_| backend("time out of range"))?;
    Asn1Time::from_unix(t as _).map_err(backend)
}

/// Generate an RSA-2048 key (OpenSSL's RNG: it cannot take ours) and a
/// self-signed certificate for `jid` (serial number from `env`).
pub fn generate(env: &mut Env, jid: &str) -> Result<Generated> {
    if jid.is_empty() || jid.contains('/') || jid.chars().any(char::is_whitespace) {
        return Err(IdentityError::Malformed(format!("not a bare JID: {jid:?}")).into());
    }
    let rsa = Rsa::generate(RSA_BITS).map_err(backend)?;
    let key = PKey::from_rsa(rsa).map_err(backend)?;

    let mut b = X509::builder().map_err(backend)?;
    b.set_version(2).map_err(backend)?;
    let mut serial: [u8; 16] = env.random_array();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let serial = BigNum::from_slice(&serial).map_err(backend)?;
    let serial = Asn1Integer::from_bn(&serial).map_err(backend)?;
    b.set_serial_number(&serial).map_err(backend)?;
    let mut name = X509NameBuilder::new().map_err(backend)?;
    name.append_entry_by_text("CN", jid).map_err(backend)?;
    let name = name.build();
    b.set_subject_name(&name).map_err(backend)?;
    b.set_issuer_name(&name).map_err(backend)?;
    let now = env.now().secs();
    let not_before = time(now.saturating_sub(NOT_BEFORE_SLACK_SECS))?;
    let not_after = Asn1Time::from_str_x509(NOT_AFTER).map_err(backend)?;
    b.set_not_before(&not_before).map_err(backend)?;
    b.set_not_after(&not_after).map_err(backend)?;
    b.set_pubkey(&key).map_err(backend)?;
    b.append_extension(
        BasicConstraints::new()
            .critical()
            .build()
            .map_err(backend)?,
    )
    .map_err(backend)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .map_err(backend)?,
    )
    .map_err(backend)?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .email_protection()
            .build()
            .map_err(backend)?,
    )
    .map_err(backend)?;
    let xmpp_addr = Asn1Object::from_str("1.3.6.1.5.5.7.8.5").map_err(backend)?;
    let san = SubjectAlternativeName::new()
        .other_name2(xmpp_addr, &der::utf8(jid))
        .uri(&format!("im:{jid}"))
        .uri(&format!("pres:{jid}"))
        .build(&b.x509v3_context(None, None))
        .map_err(backend)?;
    b.append_extension(san).map_err(backend)?;
    b.sign(&key, MessageDigest::sha256()).map_err(backend)?;
    let cert = b.build();
    Ok(Generated {
        cert_der: cert.to_der().map_err(backend)?,
        key_pkcs8: Zeroizing::new(key.private_key_to_pkcs8().map_err(backend)?),
    })
}

/// Load a private key.
pub fn load_key(pkcs8: &[u8]) -> Result<PKey<Private>> {
    PKey::private_key_from_pkcs8(pkcs8)
        .map_err(|_| IdentityError::Malformed("private key is not PKCS#8 DER".into()).into())
}

/// Load a certificate.
pub fn load_cert(der: &[u8]) -> Result<X509> {
    X509::from_der(der)
        .map_err(|_| IdentityError::Malformed("certificate is not X.509 DER".into()).into())
}

/// SHA-256 fingerprint of a certificate, lower-case hex.
pub fn fingerprint(cert_der: &[u8]) -> Result<String> {
    let d = openssl::hash::hash(MessageDigest::sha256(), cert_der).map_err(backend)?;
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}

/// The JIDs a certificate names: every `id-on-xmppAddr` otherName and every
/// `im:` / `pres:` / `xmpp:` URI in subjectAltName (RFC 3923 §6.3), in order.
pub fn cert_jids(cert_der: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for gn in san_general_names(cert_der).unwrap_or_default() {
        match gn.tag {
            // otherName [0] { type-id OID, value [0] EXPLICIT ANY }
            0xa0 => {
                let Some(parts) = der::children(gn.content) else {
                    continue;
                };
                if let [id, val] = parts.as_slice() {
                    if id.raw == der::oid(oids::XMPP_ADDR).as_slice() && val.tag == 0xa0 {
                        if let Some(s) = der::exact(val.content) {
                            if s.tag == 0x0c {
                                if let Ok(j) = std::str::from_utf8(s.content) {
                                    out.push(j.to_string());
                                }
                            }
                        }
                    }
                }
            }
            // uniformResourceIdentifier [6] IA5String
            0x86 => {
                if let Ok(u) = std::str::from_utf8(gn.content) {
                    for scheme in ["im:", "pres:", "xmpp:"] {
                        if let Some(j) = u.strip_prefix(scheme) {
                            out.push(j.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether `bare` is one of the certificate's JIDs (resource ignored, as
/// §6.3 says; ASCII case-insensitive, a simplification of nodeprep/nameprep).
pub fn cert_names_jid(cert_der: &[u8], bare: &str) -> bool {
    cert_jids(cert_der)
        .iter()
        .any(|j| e2elab_core::stanza::bare_jid(j).eq_ignore_ascii_case(bare))
}

fn san_general_names(cert_der: &[u8]) -> Option<Vec<der::Tlv<'_>>> {
    let cert = der::exact(cert_der)?;
    let parts = der::children(cert.content)?;
    let tbs = parts.first()?;
    for field in der::children(tbs.content)? {
        // extensions [3] EXPLICIT SEQUENCE OF Extension
        if field.tag != 0xa3 {
            continue;
        }
        let exts = der::exact(field.content)?;
        for ext in der::children(exts.content)? {
            let e = der::children(ext.content)?;
            if e.first()?.raw != der::oid(oids::SUBJECT_ALT_NAME).as_slice() {
                continue;
            }
            let value = e.last()?;
            if value.tag != 0x04 {
                return None;
            }
            let names = der::exact(value.content)?;
            return der::children(names.content);
        }
    }
    None
}

/// The issuer Name and serialNumber INTEGER encodings of a certificate, for
/// a CMS IssuerAndSerialNumber.
pub(crate) fn issuer_and_serial(cert_der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let cert = der::exact(cert_der)?;
    let parts = der::children(cert.content)?;
    let tbs = der::children(parts.first()?.content)?;
    // [0] version is present in v3 certificates.
    let off = usize::from(tbs.first()?.tag == 0xa0);
    let serial = tbs.get(off)?;
    let issuer = tbs.get(off + 2)?;
    Some((issuer.raw.to_vec(), serial.raw.to_vec()))
}

/// The virtual clock as a `time_t` for OpenSSL's verification time.
pub(crate) fn verify_time(now: Timestamp) -> i64 {
    i64::try_from(now.secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_names_the_jid_three_ways() {
        let mut env = Env::for_party(3, "cert");
        let g = generate(&mut env, "juliet@example.com").unwrap();
        let jids = cert_jids(&g.cert_der);
        assert_eq!(
            jids,
            vec![
                "juliet@example.com".to_string(),
                "juliet@example.com".to_string(),
                "juliet@example.com".to_string()
            ]
        );
        assert!(cert_names_jid(&g.cert_der, "Juliet@Example.com"));
        assert!(!cert_names_jid(&g.cert_der, "romeo@example.net"));
        // OpenSSL itself sees the otherName as id-on-xmppAddr with the JID.
        let cert = X509::from_der(&g.cert_der).unwrap();
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        assert!(
            text.contains("XmppAddr") || text.contains("xmppAddr"),
            "{text}"
        );
        assert!(text.contains("juliet@example.com"));
        assert!(text.contains("URI:im:juliet@example.com"), "{text}");
        assert!(text.contains("URI:pres:juliet@example.com"), "{text}");
        let (issuer, serial) = issuer_and_serial(&g.cert_der).unwrap();
        assert_eq!(issuer, cert.issuer_name().to_der().unwrap());
        assert_eq!(serial[0], 0x02);
        assert!(load_key(&g.key_pkcs8).is_ok());
        assert!(load_key(b"junk").is_err());
        assert!(load_cert(b"junk").is_err());
    }

    #[test]
    fn bad_jids_are_refused() {
        let mut env = Env::for_party(3, "cert");
        assert!(generate(&mut env, "").is_err());
        assert!(generate(&mut env, "a@b/c").is_err());
    }

    #[test]
    fn garbage_certificates_name_nobody() {
        assert!(cert_jids(b"").is_empty());
        assert!(cert_jids(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_empty());
    }
}
