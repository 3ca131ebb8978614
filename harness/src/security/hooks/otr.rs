//! OTR's attack hooks, computed outside libotr: the binary message formats
//! of the OTR v2/v3 specifications (parsed here), session keys derived by
//! libotr's own `otr_sesskeys` tool (Debian `libotr5-bin`) from every
//! private DH value the attacker holds and every public one it has seen,
//! HMAC-SHA1 and AES-128-CTR as the spec defines them, the AKE judge as the
//! spec and libotr's auth.c define it (s, h2, c', m1', m2', M_A, DSA with h =
//! M_A mod q), and forgeries checked with `otr_parse`/`otr_remac`.
//!
//! The libotr tools are required: without them the experiments report an
//! error and the run fails.

use super::{
    Attacker, Hooks, JudgeKnowledge, Knowledge, ParticipationTest, Reading, Seen, Substitution,
    Verdict, WireForgery,
};
use crate::security::otr_tools;
use crate::security::world::World;
use crate::security::R;
use e2elab_core::{stanza, Element, Env, Options, StateExport};
use e2elab_otr::ffi::DangerousState;
use openssl::bn::{BigNum, BigNumContext};
use std::collections::HashMap;

fn ssl(e: openssl::error::ErrorStack) -> crate::Error {
    crate::Error::msg(e)
}

/// libotr's tools want MPIs without leading zero octets.
fn usg(h: &str) -> String {
    let mut h = h.to_lowercase();
    while h.starts_with("00") {
        h.drain(..2);
    }
    h
}

fn body_of(xml: &str) -> Option<String> {
    stanza::parse(xml).ok().and_then(|e| stanza::body(&e))
}

fn decode(body: &str) -> Option<Vec<u8>> {
    let b = body.trim().strip_prefix("?OTR:")?;
    let b = b.trim_end().trim_end_matches('.');
    crate::security::wire::b64_decode(b)
}

fn encode(raw: &[u8]) -> String {
    format!("?OTR:{}.", crate::security::wire::b64_encode(raw))
}

struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn data(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// An OTR v2/v3 data message, parsed.
#[derive(Debug, Clone)]
struct DataMsg {
    /// Offset where the flags byte starts (after header and instance tags).
    head_len: usize,
    dh_y: Vec<u8>,
    ctr: [u8; 8],
    enc: Vec<u8>,
    /// End of the MACed part.
    authed_end: usize,
    mac: Vec<u8>,
    raw: Vec<u8>,
}

fn header(raw: &[u8]) -> Option<(u16, u8, usize)> {
    let v = u16::from_be_bytes([*raw.first()?, *raw.get(1)?]);
    let t = *raw.get(2)?;
    let head = if v == 3 { 11 } else { 3 };
    (raw.len() >= head).then_some((v, t, head))
}

fn parse_data(raw: &[u8]) -> Option<DataMsg> {
    let (_, typ, head) = header(raw)?;
    if typ != 0x03 {
        return None;
    }
    let mut c = Cur { b: raw, at: head };
    c.take(1 + 4 + 4)?;
    let dh_y = c.data()?.to_vec();
    let mut ctr = [0u8; 8];
    ctr.copy_from_slice(c.take(8)?);
    let enc = c.data()?.to_vec();
    let authed_end = c.at;
    let mac = c.take(20)?.to_vec();
    Some(DataMsg {
        head_len: head,
        dh_y,
        ctr,
        enc,
        authed_end,
        mac,
        raw: raw.to_vec(),
    })
}

fn hmac(md: openssl::hash::MessageDigest, key: &[u8], parts: &[&[u8]]) -> R<Vec<u8>> {
    let k = openssl::pkey::PKey::hmac(key).map_err(ssl)?;
    let mut s = openssl::sign::Signer::new(md, &k).map_err(ssl)?;
    for p in parts {
        s.update(p).map_err(ssl)?;
    }
    s.sign_to_vec().map_err(ssl)
}

fn aes_ctr(key: &[u8], iv: &[u8; 16], data: &[u8]) -> R<Vec<u8>> {
    openssl::symm::encrypt(openssl::symm::Cipher::aes_128_ctr(), key, Some(iv), data).map_err(ssl)
}

fn data_iv(ctr: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(ctr);
    iv
}

/// Keys `otr_sesskeys` derives for one DH pair: (AES, MAC) sending, receiving.
#[derive(Clone)]
struct PairKeys {
    keys: [(Vec<u8>, Vec<u8>); 2],
}

impl Drop for PairKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (a, m) in &mut self.keys {
            a.zeroize();
            m.zeroize();
        }
    }
}

fn sesskeys(private: &str, public: &str) -> R<PairKeys> {
    let out = otr_tools::run_tool("otr_sesskeys", &[&usg(private), &usg(public)], "")?;
    let get = |label: &str| -> R<Vec<u8>> {
        let l = out
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .ok_or_else(|| crate::fail!("otr_sesskeys printed no '{label}': {}", out.trim()))?;
        let v = l.split(':').nth(1).unwrap_or("").trim();
        hex::decode(v).map_err(|e| crate::fail!("otr_sesskeys {label}: {e}"))
    };
    Ok(PairKeys {
        keys: [
            (get("Sending   AES key")?, get("Sending   MAC key")?),
            (get("Receiving AES key")?, get("Receiving MAC key")?),
        ],
    })
}

/// The 1536-bit MODP group of OTR (RFC 3526 group 5) and g^x.
fn group5() -> R<BigNum> {
    BigNum::get_rfc3526_prime_1536().map_err(ssl)
}

fn modexp(base: &BigNum, e: &BigNum) -> R<BigNum> {
    let p = group5()?;
    let mut ctx = BigNumContext::new().map_err(ssl)?;
    let mut r = BigNum::new().map_err(ssl)?;
    r.mod_exp(base, e, &p, &mut ctx).map_err(ssl)?;
    Ok(r)
}

/// A data message's (AES key, MAC key, where they came from).
type MsgKeys = (Vec<u8>, Vec<u8>, String);

/// An attacker of OTR sessions: reads what its private DH values and the
/// public values on the wire make readable; actively, replaces the next DH
/// value of every data message it can MAC with one of its own.
pub struct OtrAttacker {
    privates: Vec<(String, String)>,
    publics: Vec<(String, String)>,
    pairs: HashMap<(usize, usize), PairKeys>,
    /// The DH-Commit's encrypted g^x, until the Reveal-Signature reveals r.
    encgx: Option<Vec<u8>>,
    env: Env,
    read: usize,
    hijacked: usize,
}

impl Drop for OtrAttacker {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (p, _) in &mut self.privates {
            p.zeroize();
        }
    }
}

impl OtrAttacker {
    fn new(k: &Knowledge, env: Env) -> R<OtrAttacker> {
        let mut a = OtrAttacker {
            privates: Vec::new(),
            publics: Vec::new(),
            pairs: HashMap::new(),
            encgx: None,
            env,
            read: 0,
            hijacked: 0,
        };
        for s in &k.states {
            let st: DangerousState = serde_json::from_slice(s.data.expose())
                .map_err(|e| crate::fail!("not an OTR state export: {e}"))?;
            let who = s.role.name();
            for d in &st.ours {
                if let Some(p) = &d.private {
                    a.add_private(p.clone(), format!("{who}'s DH key {}", d.keyid));
                }
                if let Some(p) = &d.public {
                    a.add_public(p.clone(), format!("{who}'s DH key {}", d.keyid));
                }
            }
            for (id, p) in &st.theirs {
                if let Some(p) = p {
                    a.add_public(
                        p.clone(),
                        format!("the peer's DH key {id} in {who}'s state"),
                    );
                }
            }
            if let Some(p) = &st.ake_private {
                a.add_private(p.clone(), format!("{who}'s AKE key"));
            }
            if let Some(p) = &st.ake_their_public {
                a.add_public(p.clone(), format!("the peer's AKE key in {who}'s state"));
            }
        }
        // A leaked DSA key yields no DH value: nothing to add for identities.
        Ok(a)
    }

    fn add_private(&mut self, h: String, label: String) {
        let h = usg(&h);
        if !h.is_empty() && !self.privates.iter().any(|(p, _)| *p == h) {
            self.privates.push((h, label));
        }
    }

    fn add_public(&mut self, h: String, label: String) {
        let h = usg(&h);
        if !h.is_empty() && !self.publics.iter().any(|(p, _)| *p == h) {
            self.publics.push((h, label));
        }
    }

    fn keys(&mut self) -> R<Vec<MsgKeys>> {
        let mut out = Vec::new();
        for pi in 0..self.privates.len() {
            for qi in 0..self.publics.len() {
                if !self.pairs.contains_key(&(pi, qi)) {
                    let k = sesskeys(&self.privates[pi].0, &self.publics[qi].0)?;
                    self.pairs.insert((pi, qi), k);
                }
                if let Some(k) = self.pairs.get(&(pi, qi)) {
                    for (aes, mac) in &k.keys {
                        out.push((
                            aes.clone(),
                            mac.clone(),
                            format!("{} x {}", self.privates[pi].1, self.publics[qi].1),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The (AES key, MAC key, label) under which `m`'s MAC verifies.
    fn verifying(&mut self, m: &DataMsg) -> R<Option<MsgKeys>> {
        for (aes, mac, label) in self.keys()? {
            if hmac(
                openssl::hash::MessageDigest::sha1(),
                &mac,
                &[&m.raw[..m.authed_end]],
            )? == m.mac
            {
                return Ok(Some((aes, mac, label)));
            }
        }
        Ok(None)
    }

    fn observe_raw(&mut self, raw: &[u8]) -> R<Reading> {
        let mut r = Reading::default();
        let Some((_, typ, head)) = header(raw) else {
            return Ok(r);
        };
        let mut c = Cur { b: raw, at: head };
        match typ {
            0x02 => {
                self.encgx = c.data().map(<[u8]>::to_vec);
            }
            0x0a => {
                if let Some(gy) = c.data() {
                    self.add_public(hex::encode(gy), "DH-Key message".into());
                }
            }
            0x11 => {
                // The revealed r decrypts the committed g^x.
                if let (Some(rk), Some(enc)) = (c.data(), self.encgx.clone()) {
                    if let Ok(mpi) = aes_ctr(rk, &[0u8; 16], &enc) {
                        let mut m = Cur { b: &mpi, at: 0 };
                        if let Some(gx) = m.data() {
                            self.add_public(hex::encode(gx), "g^x revealed by r".into());
                        }
                    }
                }
            }
            0x03 => {
                if let Some(m) = parse_data(raw) {
                    self.add_public(
                        hex::encode(&m.dh_y),
                        "next DH value of a data message".into(),
                    );
                    if let Some((aes, _, label)) = self.verifying(&m)? {
                        let pt = aes_ctr(&aes, &data_iv(&m.ctr), &m.enc)?;
                        let text_end = pt.iter().position(|b| *b == 0).unwrap_or(pt.len());
                        r.content = Some(String::from_utf8_lossy(&pt[..text_end]).into_owned());
                        r.how = Some(label);
                        self.read += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(r)
    }
}

fn with_body(xml: &str, body: &str) -> R<String> {
    let mut el = stanza::parse(xml).map_err(crate::Error::msg)?;
    let b = el
        .get_child_mut("body", stanza::NS_CLIENT)
        .ok_or("no body to replace")?;
    let _ = b.take_nodes();
    b.append_text(body.to_string());
    Ok(stanza::serialize(&el))
}

/// Rebuild a data message with another next-DH value, MACed with `mac`.
fn with_dh(m: &DataMsg, dh_y: &[u8], mac: &[u8]) -> R<Vec<u8>> {
    let mut out = m.raw[..m.head_len + 9].to_vec();
    out.extend_from_slice(&(dh_y.len() as u32).to_be_bytes());
    out.extend_from_slice(dh_y);
    out.extend_from_slice(&m.ctr);
    out.extend_from_slice(&(m.enc.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.enc);
    let tag = hmac(openssl::hash::MessageDigest::sha1(), mac, &[&out])?;
    out.extend_from_slice(&tag);
    out.extend_from_slice(&m.raw[m.authed_end + 20..]);
    Ok(out)
}

/// Rebuild a data message with other plaintext (same counter and keys).
fn with_text(m: &DataMsg, aes: &[u8], mac: &[u8], text: &str) -> R<Vec<u8>> {
    let enc = aes_ctr(aes, &data_iv(&m.ctr), text.as_bytes())?;
    let mut out = m.raw[..m.head_len + 9].to_vec();
    out.extend_from_slice(&(m.dh_y.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.dh_y);
    out.extend_from_slice(&m.ctr);
    out.extend_from_slice(&(enc.len() as u32).to_be_bytes());
    out.extend_from_slice(&enc);
    let tag = hmac(openssl::hash::MessageDigest::sha1(), mac, &[&out])?;
    out.extend_from_slice(&tag);
    out.extend_from_slice(&m.raw[m.authed_end + 20..]);
    Ok(out)
}

impl Attacker for OtrAttacker {
    fn observe(&mut self, s: &Seen) -> R<Reading> {
        match body_of(&s.xml).and_then(|b| decode(&b)) {
            Some(raw) => self.observe_raw(&raw),
            None => Ok(Reading::default()),
        }
    }

    fn hijack(&mut self, s: &Seen) -> R<(Option<String>, Reading)> {
        let Some(raw) = body_of(&s.xml).and_then(|b| decode(&b)) else {
            return Ok((None, Reading::default()));
        };
        let Some(m) = parse_data(&raw) else {
            return Ok((None, self.observe_raw(&raw)?));
        };
        let Some((_, mac, _)) = self.verifying(&m)? else {
            return Ok((None, self.observe_raw(&raw)?));
        };
        // The attacker's own DH value in place of the sender's next one.
        let mut xb = [0u8; 40];
        self.env.fill(&mut xb);
        let x = BigNum::from_slice(&xb).map_err(ssl)?;
        let gx = modexp(&BigNum::from_u32(2).map_err(ssl)?, &x)?;
        let new = with_dh(&m, &gx.to_vec(), &mac)?;
        self.add_private(
            hex::encode(x.to_vec()),
            "the attacker's own DH value".into(),
        );
        self.hijacked += 1;
        let r = self.observe_raw(&new)?;
        Ok((Some(with_body(&s.xml, &encode(&new))?), r))
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "{} private and {} public DH values combined with otr_sesskeys; {} data message(s) read{}; a leaked DSA key yields no DH value",
            self.privates.len(),
            self.publics.len(),
            self.read,
            if self.hijacked > 0 {
                format!("; {} next-DH value(s) replaced by the attacker's", self.hijacked)
            } else {
                String::new()
            }
        )]
    }
}

/// OTR v3 or v2.
#[derive(Debug, Clone, Copy)]
pub struct Otr {
    v3: bool,
}

impl Otr {
    /// `otr-v3`.
    pub fn v3() -> Self {
        Otr { v3: true }
    }
    /// `otr-v2`.
    pub fn v2() -> Self {
        Otr { v3: false }
    }
}

fn bn(h: &str) -> R<BigNum> {
    BigNum::from_hex_str(&usg(h)).map_err(ssl)
}

fn mpi(v: &[u8]) -> Vec<u8> {
    let mut o = (v.len() as u32).to_be_bytes().to_vec();
    o.extend_from_slice(v);
    o
}

/// h2(b) = SHA256(b || u32be(len) || s), for each b.
fn ake_keys(x: &BigNum, their: &BigNum) -> R<HashMap<u8, [u8; 32]>> {
    let s = modexp(their, x)?.to_vec();
    let mut sec = (s.len() as u32).to_be_bytes().to_vec();
    sec.extend_from_slice(&s);
    let mut out = HashMap::new();
    for b in 0u8..=5 {
        let mut h = openssl::sha::Sha256::new();
        h.update(&[b]);
        h.update(&sec);
        out.insert(b, h.finish());
    }
    Ok(out)
}

/// The AKE judge (see the module docs): does the Signature message `raw`,
/// with Bob's AKE values (`x`, g^x) and Alice's (g^y), carry a DSA
/// signature by the key with fingerprint `fp` over M_A?
fn judge_signature(raw: &[u8], x: &BigNum, gx: &[u8], gy: &[u8], fp: &[u8]) -> R<Verdict> {
    let no = |reason: &str| Verdict {
        authentic: false,
        content: None,
        reason: reason.into(),
    };
    let Some((_, 0x12, head)) = header(raw) else {
        return Ok(no("not a Signature message"));
    };
    let mut c = Cur { b: raw, at: head };
    let (Some(enc), Some(mac)) = (c.data(), c.take(20)) else {
        return Ok(no("truncated Signature message"));
    };
    let k = ake_keys(x, &BigNum::from_slice(gy).map_err(ssl)?)?;
    let cp: [u8; 16] = k[&1][16..32].try_into().map_err(|_| "key length")?;
    let m1p = k[&4];
    let m2p = k[&5];
    let want = hmac(
        openssl::hash::MessageDigest::sha256(),
        &m2p,
        &[&(enc.len() as u32).to_be_bytes(), enc],
    )?;
    if want[..20] != *mac {
        return Ok(no("the MAC (m2') does not verify"));
    }
    let xa = aes_ctr(&cp, &[0u8; 16], enc)?;
    let mut p = Cur { b: &xa, at: 0 };
    if p.take(2) != Some(&[0, 0][..]) {
        return Ok(no("not a DSA public key"));
    }
    let start = p.at;
    let (Some(dp), Some(dq), Some(dg), Some(dy)) = (p.data(), p.data(), p.data(), p.data()) else {
        return Ok(no("malformed public key"));
    };
    let pub_bytes = &xa[start..p.at];
    let (Some(keyid), Some(sig)) = (p.take(4), p.take(40)) else {
        return Ok(no("malformed signature field"));
    };
    let got_fp = openssl::sha::sha1(pub_bytes);
    if got_fp[..] != *fp {
        return Ok(no(
            "the signing key is not the expected party's (fingerprint)",
        ));
    }
    let mut mdata = mpi(gy);
    mdata.extend(mpi(gx));
    mdata.extend_from_slice(&[0, 0]);
    mdata.extend_from_slice(pub_bytes);
    mdata.extend_from_slice(keyid);
    let m_a = hmac(openssl::hash::MessageDigest::sha256(), &m1p, &[&mdata])?;
    let (pp, qq, gg, yy) = (
        BigNum::from_slice(dp).map_err(ssl)?,
        BigNum::from_slice(dq).map_err(ssl)?,
        BigNum::from_slice(dg).map_err(ssl)?,
        BigNum::from_slice(dy).map_err(ssl)?,
    );
    let r = BigNum::from_slice(&sig[..20]).map_err(ssl)?;
    let s = BigNum::from_slice(&sig[20..]).map_err(ssl)?;
    let mut ctx = BigNumContext::new().map_err(ssl)?;
    let zero = BigNum::new().map_err(ssl)?;
    if r <= zero || r >= qq || s <= zero || s >= qq {
        return Ok(no("signature values out of range"));
    }
    let mut h = BigNum::new().map_err(ssl)?;
    let m_a_bn = BigNum::from_slice(&m_a).map_err(ssl)?;
    h.nnmod(&m_a_bn, &qq, &mut ctx).map_err(ssl)?;
    let mut w = BigNum::new().map_err(ssl)?;
    w.mod_inverse(&s, &qq, &mut ctx).map_err(ssl)?;
    let (mut u1, mut u2) = (BigNum::new().map_err(ssl)?, BigNum::new().map_err(ssl)?);
    u1.mod_mul(&h, &w, &qq, &mut ctx).map_err(ssl)?;
    u2.mod_mul(&r, &w, &qq, &mut ctx).map_err(ssl)?;
    let (mut a, mut b, mut v) = (
        BigNum::new().map_err(ssl)?,
        BigNum::new().map_err(ssl)?,
        BigNum::new().map_err(ssl)?,
    );
    a.mod_exp(&gg, &u1, &pp, &mut ctx).map_err(ssl)?;
    b.mod_exp(&yy, &u2, &pp, &mut ctx).map_err(ssl)?;
    v.mod_mul(&a, &b, &pp, &mut ctx).map_err(ssl)?;
    let mut vq = BigNum::new().map_err(ssl)?;
    vq.nnmod(&v, &qq, &mut ctx).map_err(ssl)?;
    Ok(if vq == r {
        Verdict {
            authentic: true,
            content: None,
            reason: "a DSA signature by the expected long-term key over M_A, which binds both AKE DH values of this session".into(),
        }
    } else {
        no("the DSA signature over M_A does not verify")
    })
}

/// A Signature message for a fake AKE: the genuine encrypted signature
/// block decrypted with the real c', re-encrypted and MACed under keys from
/// DH values the simulator chose.
fn simulate_signature(raw: &[u8], real_cp: &[u8; 16], k2: &HashMap<u8, [u8; 32]>) -> R<Vec<u8>> {
    let (_, _, head) = header(raw).ok_or("not an OTR message")?;
    let mut c = Cur { b: raw, at: head };
    let enc = c.data().ok_or("truncated Signature message")?;
    let xa = aes_ctr(real_cp, &[0u8; 16], enc)?;
    let cp2: [u8; 16] = k2[&1][16..32].try_into().map_err(|_| "key length")?;
    let enc2 = aes_ctr(&cp2, &[0u8; 16], &xa)?;
    let mac2 = hmac(
        openssl::hash::MessageDigest::sha256(),
        &k2[&5],
        &[&(enc2.len() as u32).to_be_bytes(), &enc2],
    )?;
    let mut out = raw[..head].to_vec();
    out.extend_from_slice(&(enc2.len() as u32).to_be_bytes());
    out.extend_from_slice(&enc2);
    out.extend_from_slice(&mac2[..20]);
    Ok(out)
}

impl Hooks for Otr {
    fn options(&self) -> (Options, &'static str) {
        (Options::new(), "the profile's defaults")
    }

    fn attacker(&self, w: &World, k: &Knowledge) -> R<Box<dyn Attacker>> {
        Ok(Box::new(OtrAttacker::new(
            k,
            Env::for_party(w.next_seed(), "attacker"),
        )?))
    }

    fn judge(&self, w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
        // Online: the DH values of Bob's state; offline: none at all (the
        // same reader runs, holding only what the wire shows).
        let k = Knowledge {
            identities: Vec::new(),
            states: j.state.iter().cloned().collect(),
        };
        let mut a = OtrAttacker::new(&k, Env::for_party(w.next_seed(), "judge"))?;
        let r = a.observe(&Seen {
            from_initiator: true,
            xml: xml.to_string(),
            at: j.at,
        })?;
        Ok(match r.content {
            Some(c) => Verdict {
                authentic: true,
                content: Some(c),
                reason: "HMAC-SHA1 verifies under a MAC key from Bob's DH values (otr_sesskeys)"
                    .into(),
            },
            None => Verdict {
                authentic: false,
                content: None,
                reason: if j.state.is_some() {
                    "the MAC does not verify under Bob's keys".into()
                } else {
                    "no key the judge holds verifies the MAC (data messages carry only a MAC under session keys)".into()
                },
            },
        })
    }

    fn simulate(
        &self,
        w: &World,
        genuine: &str,
        content: &Element,
        j: &JudgeKnowledge,
    ) -> R<Option<String>> {
        let Some(raw) = body_of(genuine).and_then(|b| decode(&b)) else {
            return Ok(None);
        };
        let Some(m) = parse_data(&raw) else {
            return Ok(None);
        };
        let mut env = Env::for_party(w.next_seed(), "simulator");
        // Bob: the keys of the message from his state; anyone: keys of their own.
        let (aes, mac) = match &j.state {
            Some(state) => {
                let k = Knowledge {
                    identities: Vec::new(),
                    states: vec![state.clone()],
                };
                let mut a = OtrAttacker::new(&k, Env::for_party(w.next_seed(), "simulator"))?;
                match a.verifying(&m)? {
                    Some((aes, mac, _)) => (aes, mac),
                    None => return Ok(None),
                }
            }
            None => (
                env.random_array::<16>().to_vec(),
                env.random_array::<20>().to_vec(),
            ),
        };
        let text = stanza::body(content).unwrap_or_default();
        let forged = with_text(&m, &aes, &mac, &text)?;
        with_body(genuine, &encode(&forged)).map(Some)
    }

    fn participation(&self, w: &World, t: &[Seen], bob: &StateExport) -> R<ParticipationTest> {
        let st: DangerousState = serde_json::from_slice(bob.data.expose())
            .map_err(|e| crate::fail!("not an OTR state export: {e}"))?;
        let (Some(x), Some(gx), Some(gy)) = (&st.ake_private, &st.ake_public, &st.ake_their_public)
        else {
            return Err("Bob's libotr context kept no AKE values".into());
        };
        let sig_msg = t
            .iter()
            .filter(|s| s.from_initiator)
            .filter_map(|s| body_of(&s.xml).and_then(|b| decode(&b)))
            .find(|raw| header(raw).is_some_and(|(_, t, _)| t == 0x12))
            .ok_or("no Signature message from Alice in the transcript")?;
        let (x, gx, gy) = (bn(x)?, bn(gx)?.to_vec(), bn(gy)?.to_vec());
        let fp = &w.alice.id.public.data;
        let genuine = judge_signature(&sig_msg, &x, &gx, &gy, fp)?;
        // Bob's simulation: fresh DH values of his own choosing for "both"
        // sides, Alice's real signature block moved into that fake AKE.
        let real = ake_keys(&x, &BigNum::from_slice(&gy).map_err(ssl)?)?;
        let real_cp: [u8; 16] = real[&1][16..32].try_into().map_err(|_| "key length")?;
        let mut env = Env::for_party(w.next_seed(), "simulator");
        let two = BigNum::from_u32(2).map_err(ssl)?;
        let x2 = BigNum::from_slice(&env.random_array::<40>()).map_err(ssl)?;
        let y2 = BigNum::from_slice(&env.random_array::<40>()).map_err(ssl)?;
        let gx2 = modexp(&two, &x2)?;
        let gy2 = modexp(&two, &y2)?;
        let k2 = ake_keys(&x2, &gy2)?;
        let fake = simulate_signature(&sig_msg, &real_cp, &k2)?;
        let simulated = judge_signature(&fake, &x2, &gx2.to_vec(), &gy2.to_vec(), fp)?;
        let ssid_ok = hex::encode(&real[&0][..8]) == st.ssid.to_lowercase();
        Ok(ParticipationTest {
            genuine,
            simulated,
            evidence: format!(
                "Bob hands over his AKE DH values (libotr's context->auth) and Alice's Signature message from the transcript; the judge recomputes s, c', m1', m2' and the secure session id ({})",
                if ssid_ok { "equal to Bob's" } else { "DIFFERENT from Bob's" }
            ),
            bob_verified: true,
        })
    }

    fn forge_from_wire(&self, _w: &World, t: &[Seen]) -> R<Vec<WireForgery>> {
        let mut bodies = Vec::new();
        let mut index = Vec::new();
        for (i, s) in t.iter().enumerate() {
            if let Some(b) = body_of(&s.xml).filter(|b| b.starts_with("?OTR:")) {
                if otr_tools::parse(&b)?.is_some() {
                    bodies.push(b);
                    index.push(i);
                }
            }
        }
        let (_, revealed, found) = otr_tools::forge(&bodies)?;
        let mut out = Vec::new();
        for f in found {
            if f.forged_parses_as != "Data Message:" || f.remac_agrees == Some(false) {
                continue;
            }
            let Some(&i) = index.get(f.victim) else {
                continue;
            };
            out.push(WireForgery {
                index: i,
                xml: with_body(&t[i].xml, &f.forged)?,
                how: format!(
                    "otr_parse read {revealed} MAC key(s) revealed in clear; the key revealed by data message #{} is data message #{}'s MAC key{}; the forgery flips the last ciphertext byte and MACs it again",
                    f.revealer + 1,
                    f.victim + 1,
                    match f.remac_agrees {
                        Some(true) => " (libotr's otr_remac reproduces its MAC)",
                        _ => "",
                    }
                ),
            });
        }
        Ok(out)
    }

    fn weak_offer(&self) -> Result<(Options, &'static str), &'static str> {
        if self.v3 {
            Ok((
                Options::new().set("versions", "2,3"),
                "Alice's and Bob's policies allow versions 2 and 3 (libotr's ALLOW_V2 | ALLOW_V3)",
            ))
        } else {
            Err("the otr-v2 profile's policy allows version 2 only: nothing weaker to fall back to")
        }
    }

    fn strip_offer(&self, el: &mut Element) -> bool {
        strip_otr_v3(el)
    }

    fn negotiated(&self, t: &[Seen]) -> String {
        for s in t {
            if let Some(raw) = body_of(&s.xml).and_then(|b| decode(&b)) {
                if let Some((v, 0x03, _)) = header(&raw) {
                    return format!("v{v}");
                }
            }
        }
        "no data message".into()
    }

    fn substitute_identity(
        &self,
        _s: &Substitution,
        el: &mut Element,
        _t: &[Seen],
        env: &mut Env,
    ) -> R<bool> {
        // Eve cannot decrypt the signature block (AES under c or c', from
        // g^xy): her best attempt is a block and MAC of her own.
        let Some(raw) = stanza::body(el).and_then(|b| decode(&b)) else {
            return Ok(false);
        };
        let Some((_, t, head)) = header(&raw) else {
            return Ok(false);
        };
        if t != 0x11 && t != 0x12 {
            return Ok(false);
        }
        let mut c = Cur { b: &raw, at: head };
        let mut out = raw[..head].to_vec();
        if t == 0x11 {
            let r = c.data().ok_or("truncated")?;
            out.extend_from_slice(&(r.len() as u32).to_be_bytes());
            out.extend_from_slice(r);
        }
        let enc = c.data().ok_or("truncated")?;
        let mut mine = vec![0u8; enc.len()];
        env.fill(&mut mine);
        out.extend_from_slice(&(mine.len() as u32).to_be_bytes());
        out.extend_from_slice(&mine);
        out.extend_from_slice(&env.random_array::<20>());
        let xml = with_body(&stanza::serialize(el), &encode(&out))?;
        *el = stanza::parse(&xml).map_err(crate::Error::msg)?;
        Ok(true)
    }
}

/// Replace an OTR v3 offer (`?OTRv3?` or `?OTRv23?`, or a whitespace tag
/// with the v3 tag) by a v2-only one.
pub fn strip_otr_v3(el: &mut Element) -> bool {
    let Some(body) = el.get_child("body", stanza::NS_CLIENT).map(Element::text) else {
        return false;
    };
    const V3_TAG: &str = "  \t\t  \t\t";
    let new = if body.starts_with("?OTRv")
        && body[5..].split('?').next().is_some_and(|v| v.contains('3'))
    {
        let end = body[5..].find('?').map(|i| i + 5).unwrap_or(body.len());
        let versions: String = body[5..end].chars().filter(|c| *c != '3').collect();
        let versions = if versions.is_empty() {
            "2".to_string()
        } else {
            versions
        };
        format!("?OTRv{versions}{}", &body[end..])
    } else if body.contains(V3_TAG) {
        body.replace(V3_TAG, "")
    } else {
        return false;
    };
    match el.get_child_mut("body", stanza::NS_CLIENT) {
        Some(b) => {
            let _ = b.take_nodes();
            b.append_text(new);
            true
        }
        None => false,
    }
}
