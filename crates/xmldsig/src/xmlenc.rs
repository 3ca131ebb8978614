//! W3C XML Encryption of a stanza's content: `<EncryptedData/>` of type
//! `Content` with the content key in an `<EncryptedKey/>` under the
//! recipient's RSA key (RSA-OAEP, MGF1 with SHA-1: XML Encryption 1.0
//! §5.4.2, REQUIRED there and in 1.1).

use e2elab_core::error::backend;
use e2elab_core::ops::{self, CipherAlg, Lib, Op};
use e2elab_core::stanza;
use e2elab_core::{DecodeError, Element, Env, Error, Result};
use minidom::rxml::Namespace;
use openssl::pkey::{HasPublic, PKeyRef, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

/// XML Encryption 1.0.
pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML-DSig (`<KeyInfo/>`).
pub const NS_DS: &str = crate::dsig::NS_DS;
/// `Type` of content encryption.
pub const TYPE_CONTENT: &str = "http://www.w3.org/2001/04/xmlenc#Content";
/// AES-128-GCM (XML Encryption 1.1 §5.2.4).
pub const ALG_AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
/// AES-128-CBC (XML Encryption 1.0 §5.2.2).
pub const ALG_AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
/// RSA-OAEP with MGF1/SHA-1 and SHA-1 (XML Encryption 1.0 §5.4.2).
pub const ALG_RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";

/// The content cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCipher {
    /// XML Encryption 1.1's AES-128-GCM: 96-bit IV, 128-bit tag.
    Aes128Gcm,
    /// XML Encryption 1.0's AES-128-CBC: 128-bit IV, §5.2's padding.
    Aes128Cbc,
}

impl ContentCipher {
    /// The algorithm URI.
    pub fn uri(self) -> &'static str {
        match self {
            ContentCipher::Aes128Gcm => ALG_AES128_GCM,
            ContentCipher::Aes128Cbc => ALG_AES128_CBC,
        }
    }

    /// The name the operation log uses.
    pub fn op_alg(self) -> CipherAlg {
        match self {
            ContentCipher::Aes128Gcm => CipherAlg::Aes128Gcm,
            ContentCipher::Aes128Cbc => CipherAlg::Aes128Cbc,
        }
    }

    fn iv_len(self) -> usize {
        match self {
            ContentCipher::Aes128Gcm => 12,
            ContentCipher::Aes128Cbc => 16,
        }
    }
}

fn alg(name: &str, ns: &str, uri: &str) -> Element {
    let mut e = Element::bare(name, ns);
    if let Ok(n) = stanza::ncname("Algorithm") {
        e.set_attr(Namespace::NONE, n, uri);
    }
    e
}

fn cipher_data(ns: &str, bytes: &[u8]) -> Element {
    let mut cd = Element::bare("CipherData", ns);
    ops::count(Op::Base64Encode { lib: Lib::Rust }, bytes.len());
    cd.append_child(stanza::text_element(
        "CipherValue",
        ns,
        &e2elab_core::b64::encode(bytes),
    ));
    cd
}

/// Encrypt `plaintext` (the serialized content) for `recipient`: content
/// key and IV from `env`, OAEP padding from OpenSSL's RNG (it takes no
/// other).
pub fn encrypt<T: HasPublic>(
    env: &mut Env,
    plaintext: &[u8],
    recipient: &PKeyRef<T>,
    cipher: ContentCipher,
) -> Result<Element> {
    let key = Zeroizing::new(env.random_array::<16>());
    let mut iv = vec![0u8; cipher.iv_len()];
    env.fill(&mut iv);
    ops::count(
        Op::Cipher {
            alg: cipher.op_alg(),
            decrypt: false,
            lib: Lib::Openssl,
        },
        plaintext.len(),
    );
    let mut value = iv.clone();
    match cipher {
        ContentCipher::Aes128Gcm => {
            let mut tag = [0u8; 16];
            let ct = openssl::symm::encrypt_aead(
                Cipher::aes_128_gcm(),
                &key[..],
                Some(&iv),
                &[],
                plaintext,
                &mut tag,
            )
            .map_err(backend)?;
            value.extend_from_slice(&ct);
            value.extend_from_slice(&tag);
        }
        ContentCipher::Aes128Cbc => {
            // PKCS#7 padding is one instance of §5.2's padding (only the
            // last octet is read back).
            let ct = openssl::symm::encrypt(Cipher::aes_128_cbc(), &key[..], Some(&iv), plaintext)
                .map_err(backend)?;
            value.extend_from_slice(&ct);
        }
    }
    let wrapped = rsa_oaep_encrypt(recipient, &key[..])?;
    let mut ed = Element::bare("EncryptedData", NS_XENC);
    if let Ok(n) = stanza::ncname("Type") {
        ed.set_attr(Namespace::NONE, n, TYPE_CONTENT);
    }
    ed.append_child(alg("EncryptionMethod", NS_XENC, cipher.uri()));
    let mut ki = Element::bare("KeyInfo", NS_DS);
    let mut ek = Element::bare("EncryptedKey", NS_XENC);
    ek.append_child(alg("EncryptionMethod", NS_XENC, ALG_RSA_OAEP_MGF1P));
    ek.append_child(cipher_data(NS_XENC, &wrapped));
    ki.append_child(ek);
    ed.append_child(ki);
    ed.append_child(cipher_data(NS_XENC, &value));
    Ok(ed)
}

fn rsa_oaep_encrypt<T: HasPublic>(key: &PKeyRef<T>, data: &[u8]) -> Result<Vec<u8>> {
    ops::count(
        Op::RsaOaepEncrypt {
            bits: key.bits() as u16,
        },
        data.len(),
    );
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key).map_err(backend)?;
    ctx.encrypt_init().map_err(backend)?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(backend)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(data, &mut out).map_err(backend)?;
    Ok(out)
}

fn rsa_oaep_decrypt(key: &PKeyRef<Private>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    ops::count(
        Op::RsaOaepDecrypt {
            bits: key.bits() as u16,
            crt: true,
        },
        data.len(),
    );
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key).map_err(backend)?;
    ctx.decrypt_init().map_err(backend)?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(backend)?;
    let mut out = Zeroizing::new(Vec::new());
    ctx.decrypt_to_vec(data, &mut out)
        .map_err(|_| Error::DecryptFailed)?;
    Ok(out)
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    DecodeError::invalid(field, reason).into()
}

fn children<'a>(e: &'a Element, names: &[&str]) -> Result<Vec<&'a Element>> {
    let got: Vec<&Element> = e.children().collect();
    let ok = got.len() == names.len()
        && got.iter().zip(names).all(|(c, n)| {
            c.name() == *n && (c.ns() == NS_XENC || (*n == "KeyInfo" && c.ns() == NS_DS))
        });
    if !ok {
        let g: Vec<String> = got
            .iter()
            .map(|c| e2elab_core::outbox::child_name(c))
            .collect();
        return Err(invalid(
            e.name(),
            format!("children {g:?}, expected {names:?}"),
        ));
    }
    if e.texts().any(|t| !t.trim().is_empty()) {
        return Err(invalid(e.name(), "unexpected text"));
    }
    Ok(got)
}

fn algorithm(e: &Element) -> Result<&str> {
    e.attr("Algorithm")
        .ok_or_else(|| DecodeError::Missing(format!("Algorithm of <{}/>", e.name())).into())
}

fn cipher_value(cd: &Element) -> Result<Vec<u8>> {
    let cv = children(cd, &["CipherValue"])?;
    let t: String = cv[0]
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    ops::count(Op::Base64Decode { lib: Lib::Rust }, t.len());
    e2elab_core::b64::decode(t).map_err(|_| invalid("CipherValue", "not base64"))
}

/// Decrypt an `<EncryptedData/>` made with `cipher` (no other is accepted:
/// DECISIONS 9). Every failure after the structure was read, the key
/// unwrapping's included, is the one opaque [`Error::DecryptFailed`].
pub fn decrypt(
    ed: &Element,
    key: &PKeyRef<Private>,
    cipher: ContentCipher,
) -> Result<Zeroizing<Vec<u8>>> {
    if ed.attr("Type") != Some(TYPE_CONTENT) {
        return Err(invalid("EncryptedData Type", "not Content"));
    }
    let p = children(ed, &["EncryptionMethod", "KeyInfo", "CipherData"])?;
    let m = algorithm(p[0])?;
    if m != cipher.uri() {
        return Err(Error::Unsupported(format!(
            "content cipher {m} (this profile reads {} only)",
            cipher.uri()
        )));
    }
    let ki = children(p[1], &["EncryptedKey"])?;
    let ek = children(ki[0], &["EncryptionMethod", "CipherData"])?;
    if algorithm(ek[0])? != ALG_RSA_OAEP_MGF1P || ek[0].children().next().is_some() {
        return Err(Error::Unsupported(format!(
            "key transport {} (with parameters: {})",
            algorithm(ek[0])?,
            ek[0].children().next().is_some()
        )));
    }
    let wrapped = cipher_value(ek[1])?;
    let value = cipher_value(p[2])?;
    let cek = rsa_oaep_decrypt(key, &wrapped)?;
    if cek.len() != 16 {
        return Err(Error::DecryptFailed);
    }
    ops::count(
        Op::Cipher {
            alg: cipher.op_alg(),
            decrypt: true,
            lib: Lib::Openssl,
        },
        value.len(),
    );
    match cipher {
        ContentCipher::Aes128Gcm => {
            if value.len() < 12 + 16 {
                return Err(Error::DecryptFailed);
            }
            let (iv, rest) = value.split_at(12);
            let (ct, tag) = rest.split_at(rest.len() - 16);
            openssl::symm::decrypt_aead(Cipher::aes_128_gcm(), &cek[..], Some(iv), &[], ct, tag)
                .map(Zeroizing::new)
                .map_err(|_| Error::DecryptFailed)
        }
        ContentCipher::Aes128Cbc => {
            if value.len() < 32 || value.len() % 16 != 0 {
                return Err(Error::DecryptFailed);
            }
            let (iv, ct) = value.split_at(16);
            let mut c = Crypter::new(Cipher::aes_128_cbc(), Mode::Decrypt, &cek[..], Some(iv))
                .map_err(backend)?;
            c.pad(false);
            let mut out = Zeroizing::new(vec![0u8; ct.len() + 16]);
            let mut n = c.update(ct, &mut out).map_err(|_| Error::DecryptFailed)?;
            n += c
                .finalize(&mut out[n..])
                .map_err(|_| Error::DecryptFailed)?;
            out.truncate(n);
            // §5.2: the last octet is the padding length, 1..=16; the
            // padding octets themselves are arbitrary.
            let pad = usize::from(*out.last().ok_or(Error::DecryptFailed)?);
            if pad == 0 || pad > 16 || pad > out.len() {
                return Err(Error::DecryptFailed);
            }
            let keep = out.len() - pad;
            out.truncate(keep);
            Ok(out)
        }
    }
}

/// `<EncryptedData/>` of `stanza`, if exactly one.
pub fn find(stanza: &Element) -> Result<Option<&Element>> {
    let mut it = stanza.children().filter(|c| c.is("EncryptedData", NS_XENC));
    let first = it.next();
    if it.next().is_some() {
        return Err(invalid("EncryptedData", "repeated"));
    }
    Ok(first)
}
