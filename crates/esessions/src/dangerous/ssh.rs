//! The observer and judge of the SSH-style reconstruction (`esessions-ssh`).

use super::{b64, parse, unhex, Knowledge, Reading, Seen, Verdict};
use crate::prim::{self, DhPrivate, Group};
use crate::ssh::{
    get_string, put_string, rsa_from_blob, sign_blob, verify_blob, Dir, SshExport, SshProof,
    SshSession, GROUP, MSG_CHANNEL_DATA, NS_SSH,
};
use e2elab_core::error::backend;
use e2elab_core::{stanza, Element, Env, Error, Result, SecretBytes};
use openssl::bn::BigNum;
use openssl::pkey::{PKey, Private};

fn dir_of(e: &crate::ssh::DirExport) -> Result<Dir> {
    let mut iv = [0u8; 16];
    let v = unhex(&e.iv)?;
    if v.len() != 16 {
        return Err(Error::Backend("bad IV in a state export".into()));
    }
    iv.copy_from_slice(&v);
    Ok(Dir {
        key: SecretBytes::new(unhex(&e.key)?),
        iv,
        mac: SecretBytes::new(unhex(&e.mac)?),
        seq: e.seq,
    })
}

fn clone_dir(d: &Dir) -> Dir {
    Dir {
        key: d.key.clone(),
        iv: d.iv,
        mac: d.mac.clone(),
        seq: d.seq,
    }
}

/// Rebuilds an SSH-style conversation from the wire.
pub struct SshObserver {
    dirs: [Option<Dir>; 2],
    candidates: Vec<([Dir; 2], String)>,
    privates: Vec<(DhPrivate, String)>,
    e: Option<Vec<u8>>,
    f: Option<Vec<u8>>,
    ks: Option<Vec<u8>>,
    /// Leaked-identity derivations whose public value was seen on the wire.
    pub derived_matches: usize,
    /// Derivations tried from leaked identities.
    pub derived_tried: usize,
}

impl std::fmt::Debug for SshObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshObserver").finish_non_exhaustive()
    }
}

impl SshObserver {
    /// An observer holding `k`.
    pub fn new(k: &Knowledge) -> Result<SshObserver> {
        let mut o = SshObserver {
            dirs: [None, None],
            candidates: Vec::new(),
            privates: Vec::new(),
            e: None,
            f: None,
            ks: None,
            derived_matches: 0,
            derived_tried: 0,
        };
        for s in &k.identity_secrets {
            o.derived_tried += 1;
            o.privates.push((
                prim::static_exponent(s, GROUP)?,
                "derived from a leaked long-term key".into(),
            ));
        }
        for (initiator, s) in &k.states {
            o.add_state(s, Some(*initiator))?;
        }
        Ok(o)
    }

    fn add_state(&mut self, data: &[u8], exporter_is_initiator: Option<bool>) -> Result<()> {
        let e: SshExport = serde_json::from_slice(data)
            .map_err(|e| Error::Backend(format!("not an SSH-style state export: {e}")))?;
        if let (Some(tx), Some(rx)) = (&e.tx, &e.rx) {
            match exporter_is_initiator {
                Some(true) => {
                    self.dirs[0] = Some(dir_of(tx)?);
                    self.dirs[1] = Some(dir_of(rx)?);
                }
                Some(false) => {
                    self.dirs[1] = Some(dir_of(tx)?);
                    self.dirs[0] = Some(dir_of(rx)?);
                }
                None => {
                    self.candidates.push((
                        [dir_of(tx)?, dir_of(rx)?],
                        "leaked state (as initiator)".into(),
                    ));
                    self.candidates.push((
                        [dir_of(rx)?, dir_of(tx)?],
                        "leaked state (as responder)".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn on_kex(&mut self) -> Result<()> {
        let (Some(e), Some(f), Some(ks)) = (self.e.clone(), self.f.clone(), self.ks.clone()) else {
            return Ok(());
        };
        let g = Group::get(GROUP)?;
        let ops = prim::Ops;
        for (x, label) in &self.privates {
            let xp = x.public(&g)?.to_vec();
            if xp == e || xp == f {
                self.derived_matches += usize::from(label.starts_with("derived"));
            }
            for (peer, name) in [(&f, "f"), (&e, "e")] {
                let q = BigNum::from_slice(peer).map_err(backend)?;
                let k = ops.dh_shared(&g, &q, x)?;
                let h = SshSession::exchange_hash(&ks, &e, &f, k.expose());
                let (a, b) = SshSession::dirs(k.expose(), &h, true);
                self.candidates
                    .push(([a, b], format!("K from {label} and {name}")));
            }
        }
        Ok(())
    }

    /// Process one stanza of the transcript (in order).
    pub fn observe(&mut self, index: usize, s: &Seen) -> Result<Reading> {
        let d = if s.from_initiator { 0 } else { 1 };
        let mut r = Reading {
            index,
            from_initiator: s.from_initiator,
            ..Default::default()
        };
        let Some(el) = parse(&s.xml) else {
            return Ok(r);
        };
        let field = |c: &Element, n: &str| c.get_child(n, NS_SSH).and_then(|x| b64(&x.text()));
        if let Some(i) = el.get_child("kexdh-init", NS_SSH) {
            self.e = field(i, "e");
            return Ok(r);
        }
        if let Some(rep) = el.get_child("kexdh-reply", NS_SSH) {
            self.f = field(rep, "f");
            self.ks = field(rep, "ks");
            self.on_kex()?;
            return Ok(r);
        }
        let Some(packet) = el.get_child("packet", NS_SSH).and_then(|p| b64(&p.text())) else {
            return Ok(r);
        };
        let mut payload = None;
        if let Some(dir) = &mut self.dirs[d] {
            let mut t = clone_dir(dir);
            if let Ok(p) = t.open(&packet) {
                *dir = t;
                payload = Some(p);
                r.key = Some("known keys".into());
            }
        }
        if payload.is_none() {
            for (c, label) in &self.candidates {
                let mut t = clone_dir(&c[d]);
                if let Ok(p) = t.open(&packet) {
                    let other = clone_dir(&c[1 - d]);
                    self.dirs[d] = Some(t);
                    if self.dirs[1 - d].is_none() {
                        self.dirs[1 - d] = Some(other);
                    }
                    payload = Some(p);
                    r.key = Some(label.clone());
                    break;
                }
            }
        }
        match payload {
            Some(p) => {
                if p.first() == Some(&MSG_CHANNEL_DATA) {
                    let mut b = &p[1..];
                    if let Ok(c) = get_string(&mut b) {
                        r.content = Some(String::from_utf8_lossy(c).to_string());
                    }
                } else {
                    r.content = Some(String::new());
                }
            }
            None => {
                // The IV chains through the ciphertext and the sequence
                // number counts packets: both stay public.
                if let Some(dir) = &mut self.dirs[d] {
                    if packet.len() >= 36 {
                        let ct = &packet[..packet.len() - 20];
                        if let Some(last) = ct.chunks(16).last() {
                            if last.len() == 16 {
                                dir.iv.copy_from_slice(last);
                            }
                        }
                    }
                    dir.seq = dir.seq.wrapping_add(1);
                }
            }
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
}

/// The judge of one packet, with the receiver's export taken just before it
/// arrived (`None`: the offline judge, whose observer holds no key and is
/// run all the same).
pub fn judge(state: Option<&[u8]>, receiver_is_initiator: bool, xml: &str) -> Result<Verdict> {
    let mut o = SshObserver::new(&Knowledge::default())?;
    if let Some(state) = state {
        let e: SshExport = serde_json::from_slice(state)
            .map_err(|e| Error::Backend(format!("not an SSH-style state export: {e}")))?;
        let rx =
            e.rx.as_ref()
                .ok_or_else(|| Error::Backend("no receiving keys in the export".into()))?;
        // The judge holds only the keys that authenticate the peer's packets.
        o.dirs[if receiver_is_initiator { 1 } else { 0 }] = Some(dir_of(rx)?);
    }
    let r = o.observe(
        0,
        &Seen {
            from_initiator: !receiver_is_initiator,
            xml: xml.to_string(),
        },
    )?;
    Ok(match r.content {
        Some(c) => Verdict {
            authentic: true,
            content: Some(c),
            reason: "HMAC-SHA1 verifies under the receiver's keys".into(),
        },
        None => Verdict {
            authentic: false,
            content: None,
            reason: if state.is_some() {
                "the MAC does not verify under the receiver's keys".into()
            } else {
                "no key the judge holds verifies the MAC".into()
            },
        },
    })
}

/// The receiver forging a packet "from" its peer with its receiving keys;
/// without a state (anyone, offline), with keys of the forger's own.
pub fn simulate(
    state: Option<&[u8]>,
    template: &str,
    content: &[Element],
    env: &mut Env,
) -> Result<String> {
    let mut d = match state {
        Some(state) => {
            let e: SshExport = serde_json::from_slice(state)
                .map_err(|e| Error::Backend(format!("state export: {e}")))?;
            let rx =
                e.rx.as_ref()
                    .ok_or_else(|| Error::Backend("no receiving keys in the export".into()))?;
            dir_of(rx)?
        }
        None => Dir {
            key: SecretBytes::new(env.random_array::<16>().to_vec()),
            iv: env.random_array(),
            mac: SecretBytes::new(env.random_array::<20>().to_vec()),
            seq: 0,
        },
    };
    let text: String = content.iter().map(stanza::serialize).collect();
    let mut payload = vec![MSG_CHANNEL_DATA];
    put_string(&mut payload, text.as_bytes());
    let packet = d.seal(env, &payload)?;
    let mut el = stanza::parse(template)?;
    let nodes = el.take_nodes();
    for n in nodes {
        match n {
            e2elab_core::minidom::Node::Element(c) if c.is("packet", NS_SSH) => {
                el.append_child(SshSession::packet_element(&packet));
            }
            e2elab_core::minidom::Node::Element(c) => {
                el.append_child(c);
            }
            e2elab_core::minidom::Node::Text(t) => el.append_text(t),
        }
    }
    Ok(stanza::serialize(&el))
}

/// The participation judge: a signature by exactly `signer_blob` over the
/// recorded data (which contains the session id, the exchange hash over
/// both DH values).
pub fn judge_participation(p: &SshProof, signer_blob: &[u8]) -> Result<Verdict> {
    let blob = unhex(&p.blob)?;
    if blob != signer_blob {
        return Ok(Verdict {
            authentic: false,
            content: None,
            reason: "the proof carries another key".into(),
        });
    }
    let key = rsa_from_blob(&blob)?;
    let mut ops = prim::Ops;
    let ok = verify_blob(&mut ops, &key, &unhex(&p.signed)?, &unhex(&p.sig)?)?;
    Ok(Verdict {
        authentic: ok,
        content: None,
        reason: if ok {
            format!(
                "an ssh-rsa signature by the signer's key over {}",
                if p.kind == "user" {
                    "the session id (publickey user authentication)"
                } else {
                    "the exchange hash"
                }
            )
        } else {
            "the signature does not verify".into()
        },
    })
}

/// Simulating the peer's proof: fresh data, the simulator's own signature.
pub fn simulate_participation(
    p: &SshProof,
    own_key: &PKey<Private>,
    env: &mut Env,
) -> Result<SshProof> {
    let mut data = vec![0u8; unhex(&p.signed)?.len()];
    env.fill(&mut data);
    let mut ops = prim::Ops;
    let sig = sign_blob(&mut ops, own_key, &data)?;
    Ok(SshProof {
        kind: p.kind.clone(),
        signed: hex::encode(&data),
        sig: hex::encode(sig),
        blob: p.blob.clone(),
    })
}

/// The proof record in a state export, if any.
pub fn proof_of(state: &[u8]) -> Result<Option<SshProof>> {
    let e: SshExport =
        serde_json::from_slice(state).map_err(|e| Error::Backend(format!("state export: {e}")))?;
    Ok(e.peer_proof)
}

/// Identity substitution on the SSH-style handshake: Eve replaces the host
/// key and signature of a `kexdh-reply` with hers (she cannot compute the
/// exchange hash without K, so she signs the hash of what she can see); an
/// encrypted user-authentication packet she cannot open is left as it is.
pub fn substitute_identity(el: &mut Element, eve_secret: &[u8]) -> Result<bool> {
    let Some(rep) = el.get_child_mut("kexdh-reply", NS_SSH) else {
        return Ok(false);
    };
    let eve = crate::keys::private_from_der(eve_secret)?;
    let blob = crate::ssh::rsa_blob(&eve)?;
    let f = rep
        .get_child("f", NS_SSH)
        .and_then(|x| b64(&x.text()))
        .unwrap_or_default();
    let mut ops = prim::Ops;
    let sig = sign_blob(&mut ops, &eve, &prim::sha1(&[&f]))?;
    let mut out = Element::bare("kexdh-reply", NS_SSH);
    for c in rep.children() {
        let n = match c.name() {
            "ks" => stanza::text_element("ks", NS_SSH, &b64e(&blob)),
            "sig" => stanza::text_element("sig", NS_SSH, &b64e(&sig)),
            _ => c.clone(),
        };
        out.append_child(n);
    }
    *rep = out;
    Ok(true)
}

fn b64e(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
