//! The observer of XEP-0116/XEP-0200 sessions (the SIGMA profiles and their
//! controls), the judge of their stanzas and identity proofs, and the active
//! attacker's rekey hijack.

use super::{b64, parse, unhex, Knowledge, Reading, Seen, Verdict};
use crate::channel::{self, m_content, rekey_keys, NS_C};
use crate::form::{Form, NS_DATA};
use crate::keys;
use crate::prim::{self, DhPrivate, ExponentSize, Group};
use crate::sigma::{
    check_content_signature, ProofRecord, SigmaExport, NS_CONTROL_SIG, NS_FEATURE, NS_INIT,
};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{ct_eq, stanza, Element, Env, Error, Result, SecretBytes};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use std::collections::HashSet;

struct KeySet {
    kc: SecretBytes,
    km: SecretBytes,
    label: String,
}

/// One `<c/>` as the wire shows it.
struct COnWire {
    parts: Vec<(&'static str, String)>,
    mac: Vec<u8>,
    data: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    old: Vec<Vec<u8>>,
}

fn c_on_wire(c: &Element) -> Option<COnWire> {
    let mut parts = Vec::new();
    let mut mac = None;
    let mut data = None;
    let mut key = None;
    let mut old = Vec::new();
    for ch in c.children() {
        let name: &'static str = match ch.name() {
            "data" => "data",
            "key" => "key",
            "new" => "new",
            "old" => "old",
            "mac" => {
                mac = b64(&ch.text());
                continue;
            }
            _ => return None,
        };
        match name {
            "data" => data = b64(&ch.text()),
            "key" => key = b64(&ch.text()),
            "old" => old.extend(b64(&ch.text())),
            _ => {}
        }
        parts.push((name, ch.text()));
    }
    Some(COnWire {
        parts,
        mac: mac?,
        data,
        key,
        old,
    })
}

#[derive(Default)]
struct Handshake {
    /// Offered groups and, in 3-message mode, the initiator's `e` per group.
    offered: Vec<(u32, Option<Vec<u8>>)>,
    group: Option<u32>,
}

/// Rebuilds an ESessions conversation from the wire and reads what the keys it
/// holds or derives allow.
pub struct Observer {
    key_len: usize,
    group: Option<u32>,
    privates: Vec<(DhPrivate, String)>,
    identity_secrets: Vec<Vec<u8>>,
    publics: Vec<(Vec<u8>, String)>,
    combined: HashSet<(usize, usize)>,
    keysets: Vec<KeySet>,
    /// Next counter per direction (0: from the initiator, 1: from the responder).
    ctr: [Option<u128>; 2],
    /// The counter of each direction's first `<c/>`.
    first: [Option<u128>; 2],
    hs: Handshake,
    /// Leaked-identity derivations whose public value was seen on the wire.
    pub derived_matches: usize,
    /// Derivations tried from leaked identities.
    pub derived_tried: usize,
    /// MAC keys published in `<old/>` elements: (stanza index, key).
    pub published: Vec<(usize, Vec<u8>)>,
    /// Every `<c/>` seen: (stanza index, direction, counter, m_content, mac).
    seen_c: Vec<(usize, usize, u128, String, Vec<u8>)>,
    only_rx_of: Option<usize>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for s in &mut self.identity_secrets {
            s.zeroize();
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("group", &self.group)
            .field("keysets", &self.keysets.len())
            .finish_non_exhaustive()
    }
}

fn ctr_of_hex(h: &str) -> Result<u128> {
    u128::from_str_radix(h, 16).map_err(|_| Error::Backend("bad counter in a state export".into()))
}

impl Observer {
    /// An observer holding `k`.
    pub fn new(k: &Knowledge) -> Result<Observer> {
        let mut o = Observer {
            key_len: 16,
            group: None,
            privates: Vec::new(),
            identity_secrets: k.identity_secrets.clone(),
            publics: Vec::new(),
            combined: HashSet::new(),
            keysets: Vec::new(),
            ctr: [None, None],
            first: [None, None],
            hs: Handshake::default(),
            derived_matches: 0,
            derived_tried: 0,
            published: Vec::new(),
            seen_c: Vec::new(),
            only_rx_of: None,
        };
        for (initiator, s) in &k.states {
            o.add_state(s, Some(*initiator))?;
        }
        Ok(o)
    }

    /// A judge's observer: only the keys that authenticate the exporter's
    /// *peer* (its receiving key sets) and its receiving counter.
    pub fn judge_of(state: &[u8], exporter_is_initiator: bool) -> Result<Observer> {
        let mut o = Observer::new(&Knowledge::default())?;
        let rx_dir = if exporter_is_initiator { 1 } else { 0 };
        o.only_rx_of = Some(rx_dir);
        o.add_state(state, Some(exporter_is_initiator))?;
        Ok(o)
    }

    fn add_state(&mut self, data: &[u8], role_hint: Option<bool>) -> Result<()> {
        let e: SigmaExport = serde_json::from_slice(data)
            .map_err(|e| Error::Backend(format!("not an ESessions state export: {e}")))?;
        let Some(ch) = e.channel else {
            return Ok(());
        };
        self.group = Some(ch.group);
        self.key_len = ch.key_len;
        let initiator = role_hint.unwrap_or(true);
        let (tx_dir, rx_dir) = if initiator { (0, 1) } else { (1, 0) };
        let tx_ctr = ctr_of_hex(&ch.tx_ctr)?;
        let rx_ctr = ctr_of_hex(&ch.rx_ctr)?;
        if self.only_rx_of.is_none() {
            self.ctr[tx_dir] = Some(tx_ctr);
            self.keysets.push(KeySet {
                kc: SecretBytes::new(unhex(&ch.tx_kc)?),
                km: SecretBytes::new(unhex(&ch.tx_km)?),
                label: "leaked sending keys".into(),
            });
        }
        self.ctr[rx_dir] = Some(rx_ctr);
        for (i, (kc, km, x)) in ch.rx_sets.iter().enumerate() {
            self.keysets.push(KeySet {
                kc: SecretBytes::new(unhex(kc)?),
                km: SecretBytes::new(unhex(km)?),
                label: format!("leaked receiving key set {i}"),
            });
            if self.only_rx_of.is_none() {
                self.privates
                    .push((DhPrivate::from_hex(x)?, format!("leaked DH private {i}")));
            }
        }
        if self.only_rx_of.is_none() {
            self.publics.push((
                unhex(&ch.peer_dh)?,
                "peer's DH value in the leaked state".into(),
            ));
        }
        Ok(())
    }

    /// Add a DH private value the attacker chose itself (active attacks).
    pub fn add_private(&mut self, x: DhPrivate, label: &str) {
        self.privates.push((x, label.to_string()));
    }

    fn add_public(&mut self, v: Vec<u8>, label: String) {
        if !self.publics.iter().any(|(p, _)| *p == v) {
            self.publics.push((v, label));
        }
    }

    fn on_group(&mut self, g: u32) -> Result<()> {
        if self.group.is_some() {
            return Ok(());
        }
        self.group = Some(g);
        let secrets = self.identity_secrets.clone();
        for s in secrets {
            self.derived_tried += 1;
            self.privates.push((
                prim::static_exponent(&s, g)?,
                "derived from a leaked long-term key".into(),
            ));
        }
        Ok(())
    }

    /// Combine every private with every public value not yet combined.
    fn derive_keys(&mut self) -> Result<()> {
        let Some(gid) = self.group else {
            return Ok(());
        };
        let g = Group::get(gid)?;
        let ops = prim::Ops;
        for pi in 0..self.privates.len() {
            // Does a leaked-identity derivation match a public value? (evidence)
            for qi in 0..self.publics.len() {
                if !self.combined.insert((pi, qi)) {
                    continue;
                }
                let q = BigNum::from_slice(&self.publics[qi].0).map_err(backend)?;
                if !g.in_range(&q) {
                    continue;
                }
                let (x, xl) = &self.privates[pi];
                if xl.starts_with("derived") && x.public(&g)?.to_vec() == self.publics[qi].0 {
                    self.derived_matches += 1;
                }
                let dh = ops.dh_shared(&g, &q, x)?;
                let label = format!("{xl} x {}", self.publics[qi].1);
                let k = SecretBytes::new(prim::sha256(&[dh.expose()])?.to_vec());
                let k4 = SecretBytes::new(prim::sha256(&[k.expose()])?.to_vec());
                for (kk, what) in [(&k, "3-message K"), (&k4, "4-message K'")] {
                    for who in ["Initiator", "Responder"] {
                        let h = |l: String| prim::hmac_sha256(kk.expose(), &[l.as_bytes()]);
                        self.keysets.push(KeySet {
                            kc: channel::lsb(&h(format!("{who} Cipher Key"))?, self.key_len),
                            km: channel::lsb(&h(format!("{who} MAC Key"))?, 32),
                            label: format!("{what} ({who}) from {label}"),
                        });
                    }
                }
                for (i, set) in rekey_keys(&dh, self.key_len)?.into_iter().enumerate() {
                    self.keysets.push(KeySet {
                        kc: set.kc,
                        km: set.km,
                        label: format!(
                            "rekey K ({}) from {label}",
                            if i == 0 { "initiator" } else { "acceptor" }
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn on_form(&mut self, dir: usize, f: &Form, init: bool) -> Result<()> {
        let vals = |v: &str| f.field(v).map(|x| x.values.clone()).unwrap_or_default();
        match (f.ftype.as_str(), dir, init) {
            ("form", 0, false) => {
                let groups: Vec<u32> = f
                    .field("modp")
                    .map(|x| x.options.iter().filter_map(|o| o.parse().ok()).collect())
                    .unwrap_or_default();
                let dhkeys = vals("dhkeys");
                self.hs.offered = groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (*g, dhkeys.get(i).and_then(|v| b64(v))))
                    .collect();
            }
            ("submit", 1, false) => {
                if let Some(g) = vals("modp").first().and_then(|v| v.parse().ok()) {
                    self.hs.group = Some(g);
                    if let Some(e) = self
                        .hs
                        .offered
                        .iter()
                        .find(|(o, _)| *o == g)
                        .and_then(|(_, e)| e.clone())
                    {
                        self.add_public(e, "initiator's e (dhkeys)".into());
                    }
                    self.on_group(g)?;
                }
                if let Some(c) = vals("crypt_algs").first() {
                    self.key_len = match c.as_str() {
                        "aes192-ctr" => 24,
                        "aes256-ctr" => 32,
                        _ => 16,
                    };
                }
                if let Some(d) = vals("dhkeys").first().and_then(|v| b64(v)) {
                    self.add_public(d, "responder's d (dhkeys)".into());
                }
                if let Some(c) = vals("counter").first().and_then(|v| b64(v)) {
                    if c.len() <= 16 {
                        let mut a = [0u8; 16];
                        a[16 - c.len()..].copy_from_slice(&c);
                        let c_a = u128::from_be_bytes(a);
                        self.ctr = [Some(c_a), Some(c_a ^ (1u128 << 127))];
                    }
                }
                self.advance_identity(1, f);
            }
            ("result", 0, false) => {
                if let Some(e) = vals("dhkeys").first().and_then(|v| b64(v)) {
                    self.add_public(e, "initiator's e (dhkeys)".into());
                }
                self.advance_identity(0, f);
            }
            ("result", 1, true) => self.advance_identity(1, f),
            _ => {}
        }
        Ok(())
    }

    /// An identity proof encrypted at the direction's counter advances it
    /// (the BADH control's clear proof with an all-zero MAC does not).
    fn advance_identity(&mut self, dir: usize, f: &Form) {
        let (Some(id), Some(mac)) = (
            f.field("identity")
                .and_then(|x| x.values.first())
                .and_then(|v| b64(v)),
            f.field("mac")
                .and_then(|x| x.values.first())
                .and_then(|v| b64(v)),
        ) else {
            return;
        };
        if mac.iter().all(|b| *b == 0) {
            return;
        }
        if let Some(c) = self.ctr[dir] {
            self.ctr[dir] = Some(c.wrapping_add(prim::blocks(id.len())));
        }
    }

    fn verify_c(&self, dir: usize, w: &COnWire) -> Option<(usize, u128)> {
        let ctr = self.ctr[dir]?;
        let m = m_content(&w.parts);
        let mut ctrs = vec![ctr];
        if let Some(f) = self.first[dir] {
            if f != ctr {
                ctrs.push(f);
            }
        }
        for (i, ks) in self.keysets.iter().enumerate() {
            for c in &ctrs {
                let Ok(mac) =
                    prim::hmac_sha256(ks.km.expose(), &[m.as_bytes(), &prim::counter_bytes(*c)])
                else {
                    continue;
                };
                if ct_eq(&mac, &w.mac) {
                    return Some((i, *c));
                }
            }
        }
        None
    }

    /// Process one stanza of the transcript (in order).
    pub fn observe(&mut self, index: usize, s: &Seen) -> Result<Reading> {
        let dir = if s.from_initiator { 0 } else { 1 };
        let mut r = Reading {
            index,
            from_initiator: s.from_initiator,
            ..Default::default()
        };
        let Some(el) = parse(&s.xml) else {
            return Ok(r);
        };
        if let Some(x) = el
            .get_child("feature", NS_FEATURE)
            .and_then(|f| f.get_child("x", NS_DATA))
        {
            if let Ok(f) = Form::from_element(x) {
                self.on_form(dir, &f, false)?;
            }
            return Ok(r);
        }
        if let Some(x) = el
            .get_child("init", NS_INIT)
            .and_then(|f| f.get_child("x", NS_DATA))
        {
            if let Ok(f) = Form::from_element(x) {
                self.on_form(dir, &f, true)?;
            }
            return Ok(r);
        }
        let Some(w) = el.get_child("c", NS_C).and_then(c_on_wire) else {
            return Ok(r);
        };
        self.derive_keys()?;
        let ctr_before = self.ctr[dir];
        if self.first[dir].is_none() {
            self.first[dir] = ctr_before;
        }
        if let Some(c) = ctr_before {
            self.seen_c
                .push((index, dir, c, m_content(&w.parts), w.mac.clone()));
        }
        for k in &w.old {
            self.published.push((index, k.clone()));
        }
        let hit = self.verify_c(dir, &w);
        let mut used = ctr_before;
        if let Some((ki, c)) = hit {
            used = Some(c);
            let ks = &self.keysets[ki];
            r.key = Some(ks.label.clone());
            let pt = match &w.data {
                Some(d) => prim::aes_ctr(ks.kc.expose(), c, d)?,
                None => Vec::new(),
            };
            r.content = Some(String::from_utf8_lossy(&pt).trim_end().to_string());
        }
        if let Some(k) = &w.key {
            r.rekey = true;
            self.add_public(
                k.clone(),
                format!(
                    "{} rekey value (stanza #{})",
                    if dir == 0 {
                        "initiator's"
                    } else {
                        "responder's"
                    },
                    index + 1
                ),
            );
        }
        // The counter is public: it advances whether or not we could read.
        if let Some(c) = used {
            let frozen = hit.is_some() && Some(c) != ctr_before;
            self.ctr[dir] = Some(if frozen {
                c
            } else {
                match &w.data {
                    Some(d) => c.wrapping_add(prim::blocks(d.len())),
                    None => c.wrapping_add(1),
                }
            });
        }
        Ok(r)
    }

    /// Read a whole transcript.
    pub fn read_all(&mut self, t: &[Seen]) -> Result<Vec<Reading>> {
        t.iter()
            .enumerate()
            .map(|(i, s)| self.observe(i, s))
            .collect()
    }

    /// Active attack: if `s` carries a rekey `<key/>` whose MAC the observer
    /// can reproduce, replace the DH value by one of the attacker's own
    /// (drawn from `env`), MAC it again and keep the private value. Returns
    /// the stanza to deliver instead (already observed), or `None`.
    pub fn hijack(
        &mut self,
        index: usize,
        s: &Seen,
        env: &mut Env,
    ) -> Result<(Option<String>, Reading)> {
        let dir = if s.from_initiator { 0 } else { 1 };
        let (Some(mut el), Some(gid)) = (parse(&s.xml), self.group) else {
            return Ok((None, self.observe(index, s)?));
        };
        let Some(w) = el.get_child("c", NS_C).and_then(c_on_wire) else {
            return Ok((None, self.observe(index, s)?));
        };
        if w.key.is_none() {
            return Ok((None, self.observe(index, s)?));
        }
        self.derive_keys()?;
        let Some((ki, c)) = self.verify_c(dir, &w) else {
            return Ok((None, self.observe(index, s)?));
        };
        let g = Group::get(gid)?;
        let x = prim::draw_exponent(env, &g, 128, ExponentSize::Short)?;
        let x = DhPrivate::from_bn(x);
        let e = x.public(&g)?;
        let parts: Vec<(&'static str, String)> = w
            .parts
            .iter()
            .map(|(n, v)| {
                if *n == "key" {
                    (*n, b64::encode(e.to_vec()))
                } else {
                    (*n, v.clone())
                }
            })
            .collect();
        let mac = prim::hmac_sha256(
            self.keysets[ki].km.expose(),
            &[m_content(&parts).as_bytes(), &prim::counter_bytes(c)],
        )?;
        let mut newc = Element::bare("c", NS_C);
        for (n, v) in &parts {
            newc.append_child(stanza::text_element(n, NS_C, v));
        }
        newc.append_child(stanza::text_element("mac", NS_C, &b64::encode(mac)));
        replace_c(&mut el, newc);
        let xml = stanza::serialize(&el);
        self.add_private(x, "the attacker's own rekey value");
        let r = self.observe(
            index,
            &Seen {
                from_initiator: s.from_initiator,
                xml: xml.clone(),
            },
        )?;
        Ok((Some(xml), r))
    }

    /// Forgery from the wire alone: a MAC key published in an `<old/>`
    /// that reproduces an earlier `<c/>`'s MAC at its (public) counter lets
    /// anyone write a different `<c/>` in its place: one ciphertext bit
    /// flipped inside the body text (AES-CTR is malleable; the layout of a
    /// message's content is known), MACed with the published key.
    /// Returns, for every stanza so forgeable, (its index, the index of the
    /// publishing stanza, the forged stanza).
    pub fn forge_from_published(&self, t: &[Seen]) -> Result<Vec<(usize, usize, String)>> {
        let mut found = Vec::new();
        for (pi, key) in &self.published {
            for (ci, _dir, ctr, m, mac) in &self.seen_c {
                if ci >= pi {
                    continue;
                }
                let want = prim::hmac_sha256(key, &[m.as_bytes(), &prim::counter_bytes(*ctr)])?;
                if !ct_eq(&want, mac) {
                    continue;
                }
                let Some(mut el) = parse(&t[*ci].xml) else {
                    continue;
                };
                let Some(w) = el.get_child("c", NS_C).and_then(c_on_wire) else {
                    continue;
                };
                let Some(mut data) = w.data.clone() else {
                    continue;
                };
                // Known plaintext layout: a message's protected content
                // starts with `<body xmlns='jabber:client'>` (28 bytes), so
                // byte 30 is inside the body text; flipping its lowest bit
                // keeps the XML well formed (AES-CTR is malleable).
                let at = if data.len() > 30 {
                    30
                } else {
                    data.len().saturating_sub(1)
                };
                if let Some(b) = data.get_mut(at) {
                    *b ^= 0x01;
                }
                let parts: Vec<(&'static str, String)> = w
                    .parts
                    .iter()
                    .map(|(n, v)| {
                        if *n == "data" {
                            (*n, b64::encode(&data))
                        } else {
                            (*n, v.clone())
                        }
                    })
                    .collect();
                let fmac = prim::hmac_sha256(
                    key,
                    &[m_content(&parts).as_bytes(), &prim::counter_bytes(*ctr)],
                )?;
                let mut newc = Element::bare("c", NS_C);
                for (n, v) in &parts {
                    newc.append_child(stanza::text_element(n, NS_C, v));
                }
                newc.append_child(stanza::text_element("mac", NS_C, &b64::encode(fmac)));
                replace_c(&mut el, newc);
                if !found.iter().any(|(i, _, _)| i == ci) {
                    found.push((*ci, *pi, stanza::serialize(&el)));
                }
            }
        }
        Ok(found)
    }
}

fn replace_c(el: &mut Element, newc: Element) {
    let nodes = el.take_nodes();
    for n in nodes {
        match n {
            e2elab_core::minidom::Node::Element(c) if c.is("c", NS_C) => {
                el.append_child(newc.clone());
            }
            e2elab_core::minidom::Node::Element(c) => {
                el.append_child(c);
            }
            e2elab_core::minidom::Node::Text(t) => el.append_text(t),
        }
    }
}

/// The judge: does `xml` (a stanza to the exporter) check out under the
/// exporter's receiving keys and parse as stanza children, and, where the
/// profile's receiver requires a per-stanza signature (the signed-messages
/// control: `signed_messages`), does that verify under the signer's
/// long-term key (`signer_key_value`)? `state` is the receiver's export
/// taken just before the stanza arrived; `None` is the offline judge, whose
/// observer holds no key at all and is run all the same.
pub fn judge(
    state: Option<&[u8]>,
    receiver_is_initiator: bool,
    xml: &str,
    signer_key_value: Option<&[u8]>,
    signed_messages: bool,
) -> Result<Verdict> {
    let mut o = match state {
        Some(state) => Observer::judge_of(state, receiver_is_initiator)?,
        None => Observer::new(&Knowledge::default())?,
    };
    let r = o.observe(
        0,
        &Seen {
            from_initiator: !receiver_is_initiator,
            xml: xml.to_string(),
        },
    )?;
    let Some(content) = r.content else {
        return Ok(Verdict {
            authentic: false,
            content: None,
            reason: if state.is_some() {
                "the MAC does not verify under the receiver's keys".into()
            } else {
                "no key the judge holds verifies the MAC (XEP-0200 stanzas carry only a MAC under session keys)".into()
            },
        });
    };
    // What the receiver's session would deliver: the content must parse.
    let Ok(parsed) = channel::parse_content(content.as_bytes()) else {
        return Ok(Verdict {
            authentic: false,
            content: Some(content),
            reason: "the MAC verifies but the content does not parse as stanza children".into(),
        });
    };
    if !signed_messages {
        return Ok(Verdict {
            authentic: true,
            content: Some(content),
            reason: format!("MAC verifies ({})", r.key.unwrap_or_default()),
        });
    }
    let Some(kv) = signer_key_value else {
        return Ok(Verdict {
            authentic: false,
            content: Some(content),
            reason: "no signer key to check the per-stanza signature".into(),
        });
    };
    let pk = keys::public_from_bytes(kv)?;
    let mut ops = prim::Ops;
    Ok(match check_content_signature(&mut ops, &pk, parsed) {
        Ok(_) => Verdict {
            authentic: true,
            content: Some(content),
            reason: "MAC verifies and the per-stanza RSA signature verifies under the signer's key"
                .into(),
        },
        Err(e) => Verdict {
            authentic: false,
            content: Some(content),
            reason: format!("MAC verifies but the per-stanza signature does not ({e})"),
        },
    })
}

/// The receiver forging a stanza "from" its peer with what its own state
/// holds: `content` encrypted and MACed under its receiving key set at its
/// receiving counter, in place of the `<c/>` of `template`. For the
/// signed-messages control the forger adds the best signature it can make,
/// with its own long-term key. Without a state (anyone, offline) the keys
/// are the forger's own random ones, drawn from `env`.
pub fn simulate(
    state: Option<&[u8]>,
    template: &str,
    content: &[Element],
    own_key: Option<&PKey<Private>>,
    signed_messages: bool,
    env: &mut Env,
) -> Result<String> {
    let (kc, km, ctr) = match state {
        Some(state) => {
            let e: SigmaExport = serde_json::from_slice(state)
                .map_err(|e| Error::Backend(format!("state export: {e}")))?;
            let ch = e
                .channel
                .ok_or_else(|| Error::Backend("no channel in the state export".into()))?;
            let (kc, km, _) = ch
                .rx_sets
                .first()
                .ok_or_else(|| Error::Backend("no receiving key set".into()))?;
            (
                zeroize::Zeroizing::new(unhex(kc)?),
                zeroize::Zeroizing::new(unhex(km)?),
                ctr_of_hex(&ch.rx_ctr)?,
            )
        }
        None => (
            zeroize::Zeroizing::new(env.random_array::<16>().to_vec()),
            zeroize::Zeroizing::new(env.random_array::<32>().to_vec()),
            0,
        ),
    };
    let mut protected: Vec<Element> = content.to_vec();
    if signed_messages {
        if let Some(k) = own_key {
            let data: String = protected.iter().map(stanza::serialize).collect();
            let ops = prim::Ops;
            let sig = ops.rsa_sign(k, MessageDigest::sha256(), data.as_bytes())?;
            protected.push(stanza::text_element(
                "sig",
                NS_CONTROL_SIG,
                &b64::encode(sig),
            ));
        }
    }
    let mut m: String = protected.iter().map(stanza::serialize).collect();
    while m.len() % 16 != 0 {
        m.push(' ');
    }
    let ct = prim::aes_ctr(&kc, ctr, m.as_bytes())?;
    let parts = vec![("data", b64::encode(ct))];
    let mac = prim::hmac_sha256(
        &km,
        &[m_content(&parts).as_bytes(), &prim::counter_bytes(ctr)],
    )?;
    let mut c = Element::bare("c", NS_C);
    c.append_child(stanza::text_element("data", NS_C, &parts[0].1));
    c.append_child(stanza::text_element("mac", NS_C, &b64::encode(mac)));
    let mut el = stanza::parse(template)?;
    replace_c(&mut el, c);
    Ok(stanza::serialize(&el))
}

/// Replace the text of a field's first `<value/>`.
fn set_value(field: &mut Element, text: &str) {
    if let Some(v) = field.get_child_mut("value", NS_DATA) {
        let _ = v.take_nodes();
        v.append_text(text.to_string());
    }
}

/// The participation judge: does the identity proof a side kept
/// (`record`, from its state export) show that the holder of
/// `signer_key_value` took part? Signature modes need a valid RSA signature
/// by exactly that key over the SIGMA MAC, and the MAC must be reproducible
/// from the recorded SIGMA key and inputs (the nonces and DH values of this
/// session); mode `none` is a MAC either side can compute.
pub fn judge_participation(record: &ProofRecord, signer_key_value: &[u8]) -> Result<Verdict> {
    let signed = unhex(&record.signed)?;
    let binds = if record.ks.is_empty() {
        true
    } else {
        let ks = unhex(&record.ks)?;
        let parts: Vec<Vec<u8>> = record
            .parts
            .iter()
            .map(|p| unhex(p))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        ct_eq(&prim::hmac_sha256(&ks, &refs)?, &signed)
    };
    if record.sig.is_empty() {
        return Ok(Verdict {
            authentic: binds,
            content: None,
            reason: if binds {
                "the proof is a MAC under the session's SIGMA key, which the judge reproduces (anyone holding that key could have made it)".into()
            } else {
                "the MAC does not reproduce".into()
            },
        });
    }
    let kv = unhex(&record.key_value)?;
    if kv != signer_key_value {
        return Ok(Verdict {
            authentic: false,
            content: None,
            reason: "the proof carries another key".into(),
        });
    }
    let pk = keys::public_from_bytes(signer_key_value)?;
    let ops = prim::Ops;
    let ok = ops.rsa_verify(&pk, MessageDigest::sha256(), &signed, &unhex(&record.sig)?)?;
    Ok(Verdict {
        authentic: ok && binds,
        content: None,
        reason: match (ok, binds) {
            (true, true) => format!(
                "an RSA signature by the signer's long-term key over {} that the judge recomputes from this session's nonces and DH values",
                if record.mode == "unbound" { "the nonces and DH value" } else { "the SIGMA MAC" }
            ),
            (true, false) => "a valid signature, but over a MAC the judge cannot tie to this session".into(),
            _ => "the signature does not verify under the signer's key".into(),
        },
    })
}

/// A side simulating its peer's identity proof for a session the peer never
/// took part in: fresh nonces and DH values, a SIGMA key of its own, and the
/// only signature it can make (with its own long-term key, presented as
/// the peer's).
pub fn simulate_participation(
    record: &ProofRecord,
    own_key: Option<&PKey<Private>>,
    env: &mut Env,
) -> Result<ProofRecord> {
    let parts: Vec<Vec<u8>> = record
        .parts
        .iter()
        .map(|p| {
            let n = unhex(p).map(|v| v.len()).unwrap_or(16);
            let mut v = vec![0u8; n];
            env.fill(&mut v);
            v
        })
        .collect();
    let ks: [u8; 32] = env.random_array();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let signed = if record.mode == "unbound" {
        let mut d = vec![0u8; unhex(&record.signed)?.len()];
        env.fill(&mut d);
        d
    } else {
        prim::hmac_sha256(&ks, &refs)?.to_vec()
    };
    let sig = match (record.sig.is_empty(), own_key) {
        (true, _) => String::new(),
        (false, Some(k)) => {
            let ops = prim::Ops;
            hex::encode(ops.rsa_sign(k, MessageDigest::sha256(), &signed)?)
        }
        (false, None) => hex::encode(vec![0u8; unhex(&record.sig)?.len()]),
    };
    Ok(ProofRecord {
        mode: record.mode.clone(),
        ks: if record.mode == "unbound" {
            String::new()
        } else {
            hex::encode(ks)
        },
        parts: parts.iter().map(hex::encode).collect(),
        signed: hex::encode(signed),
        sig,
        key_value: record.key_value.clone(),
    })
}

/// The proof record in a state export, if any.
pub fn proof_of(state: &[u8]) -> Result<Option<ProofRecord>> {
    let e: SigmaExport =
        serde_json::from_slice(state).map_err(|e| Error::Backend(format!("state export: {e}")))?;
    Ok(e.peer_proof)
}

/// The identity-substitution attacker (Eve, with her own long-term key and
/// JID) rewriting an identity proof in a negotiation stanza she relays.
/// A proof in clear (`<KeyValue/>` and a `<SignatureValue/>`, the BADH
/// control) is replaced by Eve's key and her signature over the same nonces
/// and DH value, which the wire shows; an encrypted proof is replaced by
/// Eve's proof encrypted and MACed under keys she draws herself (she cannot
/// derive the session's). Returns whether a proof was replaced.
pub fn substitute_identity(
    el: &mut Element,
    eve_secret: &[u8],
    transcript: &[Seen],
    env: &mut Env,
) -> Result<bool> {
    // Eve's own key (none where the profile has no public keys: then her
    // best proof is a MAC she cannot compute, i.e. random bytes).
    let eve = keys::private_from_der(eve_secret).ok();
    let eve_kv = match &eve {
        Some(k) => keys::key_value_of(k)?,
        None => Vec::new(),
    };
    // The nonces and DH values from the transcript so far.
    let mut n_a = None;
    let mut n_b = None;
    let mut e_val = None;
    let mut d_val = None;
    let mut offered: Vec<(u32, Option<Vec<u8>>)> = Vec::new();
    let all_forms = transcript
        .iter()
        .filter_map(|s| parse(&s.xml))
        .chain(std::iter::once(el.clone()));
    for m in all_forms {
        let x = m
            .get_child("feature", NS_FEATURE)
            .or_else(|| m.get_child("init", NS_INIT))
            .and_then(|f| f.get_child("x", NS_DATA));
        let Some(f) = x.and_then(|x| Form::from_element(x).ok()) else {
            continue;
        };
        let v = |n: &str| {
            f.field(n)
                .and_then(|x| x.values.first())
                .and_then(|v| b64(v))
        };
        match f.ftype.as_str() {
            "form" => {
                n_a = v("my_nonce");
                let dh: Vec<String> = f
                    .field("dhkeys")
                    .map(|x| x.values.clone())
                    .unwrap_or_default();
                offered = f
                    .field("modp")
                    .map(|x| {
                        x.options
                            .iter()
                            .enumerate()
                            .filter_map(|(i, o)| {
                                Some((o.parse().ok()?, dh.get(i).and_then(|d| b64(d))))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "submit" => {
                n_b = v("my_nonce");
                d_val = v("dhkeys");
                let g: Option<u32> = f
                    .field("modp")
                    .and_then(|x| x.values.first())
                    .and_then(|s| s.parse().ok());
                if let Some(e) = offered
                    .iter()
                    .find(|(o, _)| Some(*o) == g)
                    .and_then(|(_, e)| e.clone())
                {
                    e_val = Some(e);
                }
            }
            "result" => {
                if let Some(e) = v("dhkeys") {
                    e_val = Some(e);
                }
            }
            _ => {}
        }
    }
    let is_init = el.get_child("init", NS_INIT).is_some();
    let Some(wrap) = el
        .children_mut()
        .find(|c| c.is("feature", NS_FEATURE) || c.is("init", NS_INIT))
    else {
        return Ok(false);
    };
    let Some(x) = wrap.get_child_mut("x", NS_DATA) else {
        return Ok(false);
    };
    let form_type = x.attr("type").unwrap_or("").to_string();
    let mut replaced = false;
    let ops = prim::Ops;
    // Who is proving: a responder form (submit/init) proves d with (n_a, n_b);
    // the initiator's result form proves e with (n_b, n_a).
    let prover_is_responder = form_type == "submit" || is_init;
    let (first, second, dh) = if prover_is_responder {
        (n_a.clone(), n_b.clone(), d_val.clone())
    } else {
        (n_b.clone(), n_a.clone(), e_val.clone())
    };
    let mut new_mac = None;
    for f in x.children_mut() {
        if f.attr("var") != Some("identity") {
            continue;
        }
        let Some(v) = f.get_child("value", NS_DATA).map(|v| v.text()) else {
            continue;
        };
        let Some(old) = b64(&v) else { continue };
        let clear = keys::parse_fragment(&old).is_ok();
        let newv = if let (true, Some(eve)) = (clear, &eve) {
            let data = [
                first.clone().unwrap_or_default(),
                second.clone().unwrap_or_default(),
                dh.clone().unwrap_or_default(),
            ]
            .concat();
            let sig = ops.rsa_sign(eve, MessageDigest::sha256(), &data)?;
            let mut pt = eve_kv.clone();
            pt.extend_from_slice(
                format!("<SignatureValue>{}</SignatureValue>", b64::encode(sig)).as_bytes(),
            );
            pt
        } else {
            // Eve cannot derive the session keys: her proof under keys of her own.
            let kc: [u8; 16] = env.random_array();
            let km: [u8; 32] = env.random_array();
            let mut pt = eve_kv.clone();
            match &eve {
                Some(eve) => {
                    let sig =
                        ops.rsa_sign(eve, MessageDigest::sha256(), &env.random_array::<32>())?;
                    pt.extend_from_slice(
                        format!("<SignatureValue>{}</SignatureValue>", b64::encode(sig)).as_bytes(),
                    );
                }
                None => pt.extend_from_slice(&env.random_array::<32>()),
            }
            let ct = prim::aes_ctr(&kc, 0, &pt)?;
            new_mac = Some(prim::hmac_sha256(&km, &[&ct])?.to_vec());
            ct
        };
        set_value(f, &b64::encode(&newv));
        replaced = true;
    }
    if let Some(m) = new_mac {
        for f in x.children_mut() {
            if f.attr("var") == Some("mac") {
                set_value(f, &b64::encode(&m));
            }
        }
    }
    Ok(replaced)
}
