//! The device's bundle (XEP-0384 §5.3.2, with DECISIONS 2 and 3) and the
//! account secret behind it.

use crate::{NS_OLM, NS_OMEMO, NS_PUBSUB, PREKEYS};
use e2elab_core::ops::{self, Op};
use e2elab_core::{stanza, DecodeError, Element, Env, IdentityError, PeerMisbehaved, Result};
use openssl::pkey::{Id, PKey};
use openssl::sign::Verifier;
use vodozemac::olm::{Account, AccountPickle};

/// What the `<cik>` signature covers, before the key (DECISIONS 2).
pub(crate) const CIK_CONTEXT: &[u8] = b"OMEMO-Olm cik";

/// A device's published keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The device id (the PEP item id).
    pub device: u32,
    /// `<ik>`: the Ed25519 identity key.
    pub ik: [u8; 32],
    /// `<cik>`: the Curve25519 identity key (DECISIONS 2).
    pub cik: [u8; 32],
    /// The signature of `CIK_CONTEXT || cik` by `ik`.
    pub cik_sig: [u8; 64],
    /// `<spk id>`.
    pub spk_id: u32,
    /// `<spk>`: the signed prekey (Olm's fallback key, DECISIONS 3).
    pub spk: [u8; 32],
    /// `<spks>`: its signature by `ik`.
    pub spks: [u8; 64],
    /// `<pk id>`s: one-time prekeys.
    pub prekeys: Vec<(u32, [u8; 32])>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("device", &self.device)
            .field("fingerprint", &self.fingerprint())
            .field("prekeys", &self.prekeys.len())
            .finish()
    }
}

/// The identity secret: the device id and the vodozemac account.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Secret {
    pub device: u32,
    /// The bundle's `<ik>` and `<spk>`.
    pub ik: [u8; 32],
    pub spk: [u8; 32],
    pub account: AccountPickle,
}

/// A device id from the `Env`: uniform in `1..2^31` (XEP-0384 §5.1).
pub(crate) fn device_id(env: &mut Env) -> u32 {
    (u32::from_be_bytes(env.random_array::<4>()) % 0x7fff_fffe) + 1
}

/// A new account with [`PREKEYS`] one-time prekeys and a fallback key, its
/// bundle and the serialized secret.
pub(crate) fn generate(env: &mut Env) -> Result<(Bundle, Vec<u8>)> {
    let mut account = Account::new();
    account.generate_one_time_keys(PREKEYS);
    account.generate_fallback_key();
    let mut otks: Vec<_> = account.one_time_keys().into_iter().collect();
    otks.sort_by_key(|(id, _)| *id);
    let fallback = account
        .fallback_key()
        .into_values()
        .next()
        .ok_or_else(|| e2elab_core::Error::Backend("vodozemac made no fallback key".into()))?;
    account.mark_keys_as_published();
    let ik = *account.ed25519_key().as_bytes();
    let cik = account.curve25519_key().to_bytes();
    let spk = fallback.to_bytes();
    let mut signed = CIK_CONTEXT.to_vec();
    signed.extend_from_slice(&cik);
    let bundle = Bundle {
        device: device_id(env),
        ik,
        cik,
        cik_sig: account.sign(&signed).to_bytes(),
        spk_id: 1,
        spk,
        spks: account.sign(spk).to_bytes(),
        prekeys: otks
            .iter()
            .enumerate()
            .map(|(i, (_, k))| (i as u32 + 1, k.to_bytes()))
            .collect(),
    };
    let secret = serde_json::to_vec(&Secret {
        device: bundle.device,
        ik: bundle.ik,
        spk: bundle.spk,
        account: account.pickle(),
    })
    .map_err(|e| e2elab_core::Error::Backend(format!("account pickle: {e}")))?;
    Ok((bundle, secret))
}

/// Read an identity secret.
pub(crate) fn read_secret(bytes: &[u8]) -> Result<Secret> {
    serde_json::from_slice(bytes)
        .map_err(|e| IdentityError::Malformed(format!("OMEMO account: {e}")).into())
}

fn b64_32(el: &Element, what: &str) -> Result<[u8; 32]> {
    fixed(el, what)
}

fn fixed<const N: usize>(el: &Element, what: &str) -> Result<[u8; N]> {
    if el.children().next().is_some() {
        return Err(DecodeError::invalid(what, "child elements").into());
    }
    let text: String = el
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let v = e2elab_core::b64::decode(text.as_bytes())
        .map_err(|_| DecodeError::invalid(what, "not base64"))?;
    v.try_into()
        .map_err(|_| DecodeError::invalid(what, format!("not {N} bytes")).into())
}

fn id_attr(el: &Element, what: &str) -> Result<u32> {
    let v = el
        .attr("id")
        .ok_or_else(|| DecodeError::Missing(format!("{what} id")))?;
    parse_device(v).ok_or_else(|| DecodeError::invalid(what, "id not in 1..2^31").into())
}

/// A device or key id: a decimal integer in `1..2^31` (XEP-0384 §5.3.2).
pub(crate) fn parse_device(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = v.parse().ok()?;
    (1..=0x7fff_ffff).contains(&n).then_some(n as u32)
}

fn one<'a>(parent: &'a Element, name: &str, ns: &str) -> Result<&'a Element> {
    let mut it = parent.children().filter(|c| c.is(name, ns));
    let first = it
        .next()
        .ok_or_else(|| DecodeError::Missing(format!("<{name}>")))?;
    if it.next().is_some() {
        return Err(DecodeError::invalid(format!("<{name}>"), "more than one").into());
    }
    Ok(first)
}

impl Bundle {
    /// The fingerprint users compare: lowercase hex of `<ik>`.
    pub fn fingerprint(&self) -> String {
        self.ik.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The PEP item (`<item id='device'><bundle/></item>`).
    pub fn to_item(&self) -> Result<Element> {
        let b64 = |d: &[u8]| e2elab_core::b64::encode(d);
        let mut bundle = Element::bare("bundle", NS_OMEMO);
        let mut spk = stanza::text_element("spk", NS_OMEMO, &b64(&self.spk));
        stanza::set_attr(&mut spk, "id", &self.spk_id.to_string())?;
        bundle.append_child(spk);
        bundle.append_child(stanza::text_element("spks", NS_OMEMO, &b64(&self.spks)));
        bundle.append_child(stanza::text_element("ik", NS_OMEMO, &b64(&self.ik)));
        let mut pks = Element::bare("prekeys", NS_OMEMO);
        for (id, k) in &self.prekeys {
            let mut pk = stanza::text_element("pk", NS_OMEMO, &b64(k));
            stanza::set_attr(&mut pk, "id", &id.to_string())?;
            pks.append_child(pk);
        }
        bundle.append_child(pks);
        let mut cik = stanza::text_element("cik", NS_OLM, &b64(&self.cik));
        stanza::set_attr(&mut cik, "sig", &b64(&self.cik_sig))?;
        bundle.append_child(cik);
        let mut item = Element::bare("item", NS_PUBSUB);
        stanza::set_attr(&mut item, "id", &self.device.to_string())?;
        item.append_child(bundle);
        Ok(item)
    }

    /// The item, serialized (the public identity's data).
    pub fn to_item_bytes(&self) -> Result<Vec<u8>> {
        Ok(stanza::serialize(&self.to_item()?).into_bytes())
    }

    /// Parse a PEP item; checks structure only ([`Bundle::verify`] checks
    /// the signatures).
    pub fn from_item(item: &Element) -> Result<Bundle> {
        if !item.is("item", NS_PUBSUB) {
            return Err(DecodeError::UnexpectedStanza(format!(
                "<{} xmlns='{}'> (expected a PEP <item>)",
                item.name(),
                item.ns()
            ))
            .into());
        }
        let device = id_attr(item, "<item>")?;
        let b = one(item, "bundle", NS_OMEMO)?;
        let spk_el = one(b, "spk", NS_OMEMO)?;
        let cik_el = one(b, "cik", NS_OLM)?;
        let sig = cik_el
            .attr("sig")
            .ok_or_else(|| DecodeError::Missing("<cik sig>".into()))?;
        let cik_sig: [u8; 64] = e2elab_core::b64::decode(sig.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| DecodeError::invalid("<cik sig>", "not 64 bytes of base64"))?;
        let mut prekeys: Vec<(u32, [u8; 32])> = Vec::new();
        for pk in one(b, "prekeys", NS_OMEMO)?
            .children()
            .filter(|c| c.is("pk", NS_OMEMO))
        {
            let id = id_attr(pk, "<pk>")?;
            if prekeys.iter().any(|(i, _)| *i == id) {
                return Err(DecodeError::invalid("<pk>", "duplicate id").into());
            }
            prekeys.push((id, b64_32(pk, "<pk>")?));
        }
        Ok(Bundle {
            device,
            ik: b64_32(one(b, "ik", NS_OMEMO)?, "<ik>")?,
            cik: b64_32(cik_el, "<cik>")?,
            cik_sig,
            spk_id: id_attr(spk_el, "<spk>")?,
            spk: b64_32(spk_el, "<spk>")?,
            spks: fixed(one(b, "spks", NS_OMEMO)?, "<spks>")?,
            prekeys,
        })
    }

    /// Parse the public identity's data.
    pub fn from_bytes(data: &[u8]) -> Result<Bundle> {
        let text = std::str::from_utf8(data)
            .map_err(|_| IdentityError::Malformed("OMEMO bundle: not UTF-8".into()))?;
        let el = stanza::parse(text)?;
        Bundle::from_item(&el)
    }

    /// Check both signatures by `<ik>` (OpenSSL Ed25519): the signed
    /// prekey's and the Curve25519 identity key's.
    pub fn verify(&self) -> Result<()> {
        let ik = PKey::public_key_from_raw_bytes(&self.ik, Id::ED25519)
            .map_err(|_| IdentityError::Malformed("<ik> is not an Ed25519 key".into()))?;
        let mut signed = CIK_CONTEXT.to_vec();
        signed.extend_from_slice(&self.cik);
        for (data, sig) in [(&signed[..], &self.cik_sig), (&self.spk[..], &self.spks)] {
            ops::count(Op::Ed25519Verify, data.len());
            let ok = Verifier::new_without_digest(&ik)
                .and_then(|mut v| v.verify_oneshot(sig, data))
                .unwrap_or(false);
            if !ok {
                return Err(PeerMisbehaved::BadSignature.into());
            }
        }
        Ok(())
    }
}
