//! Alice: the request (message 1), her answer to Bob's response (message
//! 3, or the end of a 3-message negotiation) and Bob's final message (4).

use super::negotiate::{self, Chosen};
use super::proof::{derive, Binding, ProofKeys, Side};
use super::retained::{self, method, rshash};
use super::settings::{KeyMode, Settings};
use super::{unexpected, Handshake, SigmaSession, St, FORM_TYPE, NS_AMP, SIGMA_I_METHOD};
use crate::channel::{Channel, DirKeys, Stream};
use crate::form::{Field, Form};
use crate::keys;
use crate::prim::{self, DhPrivate, Group};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{stanza, DecodeError, Element, Env, Outbox, PeerMisbehaved, Result, SecretBytes};
use openssl::bn::BigNum;

/// Alice after message 1.
pub(super) struct Offered {
    pub thread: String,
    pub n_a: Vec<u8>,
    /// One DH key pair per offered group, in offer order.
    pub dh: Vec<(u32, DhPrivate, BigNum)>,
    /// The offer as sent, and its normalization.
    pub offered: Form,
    pub form_a: Vec<u8>,
}

/// Alice after message 3 (4-message mode): waiting for Bob's identity.
pub(super) struct AwaitInit {
    pub chosen: Chosen,
    pub group: Group,
    pub x: DhPrivate,
    pub d: BigNum,
    pub k: SecretBytes,
    pub n_a: Vec<u8>,
    pub n_b: Vec<u8>,
    pub form_b: Vec<u8>,
    pub m_a: [u8; 32],
    /// Alice's counter after her identity (her stanzas continue from it
    /// under the final keys).
    pub c_a: u128,
    pub c_b: u128,
}

/// Alice's message-1 form (XEP-0116 §4.2; XEP-0217 §4.1 with the fixed
/// parameters as hidden fields; Gajim's field order under gajim-shapes).
fn request_form(s: &Settings, n_a: &[u8], dh_field: Field) -> Form {
    let (log_var, log_opts) = s.logging_field();
    let strs = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let hidden = s.hidden_fixed();
    // A fixed parameter: a hidden field with its one value, or a list of options.
    let fixed = |var: &str, v: Vec<String>| {
        if hidden && v.len() == 1 {
            Field::typed(var, "hidden", v)
        } else {
            Field::options(var, "list-single", v)
        }
    };
    let key_mode = |var: &str, m: KeyMode| {
        if s.simplified {
            Field::typed(var, "hidden", vec![m.name().into()])
        } else {
            Field::options(var, "list-single", vec![m.name().into()])
        }
    };
    let rekey_type = if hidden { "hidden" } else { "text-single" };
    let f = |name: &str| -> Option<Field> {
        Some(match name {
            "FORM_TYPE" => Field::typed("FORM_TYPE", "hidden", strs(&[FORM_TYPE])),
            "accept" => Field::typed("accept", "boolean", strs(&["1"])).required(),
            "logging" => Field::options(log_var, "list-single", strs(&log_opts)).required(),
            "disclosure" => {
                Field::options("disclosure", "list-single", strs(&["never"])).required()
            }
            "security" => Field::options("security", "list-single", strs(&["e2e"])).required(),
            "modp" => Field::options(
                "modp",
                "list-single",
                s.modp.iter().map(u32::to_string).collect(),
            ),
            "crypt_algs" => fixed("crypt_algs", s.crypt.clone()),
            "hash_algs" => fixed("hash_algs", strs(&["sha256"])),
            "sign_algs" if s.sign_algs_offered() => fixed("sign_algs", strs(&[keys::RSA_SHA256])),
            "compress" => fixed("compress", strs(&["none"])),
            "stanzas" => Field::options(
                "stanzas",
                "list-multi",
                s.stanzas.iter().map(|k| k.name().to_string()).collect(),
            ),
            "init_pubkey" => key_mode("init_pubkey", s.init_pubkey),
            "resp_pubkey" => key_mode("resp_pubkey", s.resp_pubkey),
            "ver" => fixed("ver", strs(&["1.0"])),
            "rekey_freq" => Field::typed("rekey_freq", rekey_type, vec![s.rekey_freq.to_string()]),
            "my_nonce" => Field::typed("my_nonce", "hidden", vec![b64::encode(n_a)]),
            "sas_algs" if s.four => fixed("sas_algs", strs(&["sas28x5"])),
            "dh" => dh_field.clone(),
            _ => return None,
        })
    };
    // The spec examples' order, or Gajim's (GAJIM-NOTES.md, its negotiate_e2e).
    let order: &[&str] = if s.gajim_shapes {
        &[
            "FORM_TYPE",
            "accept",
            "logging",
            "disclosure",
            "security",
            "crypt_algs",
            "hash_algs",
            "compress",
            "stanzas",
            "init_pubkey",
            "resp_pubkey",
            "ver",
            "rekey_freq",
            "sas_algs",
            "sign_algs",
            "my_nonce",
            "modp",
            "dh",
        ]
    } else {
        &[
            "FORM_TYPE",
            "accept",
            "logging",
            "disclosure",
            "security",
            "modp",
            "crypt_algs",
            "hash_algs",
            "sign_algs",
            "compress",
            "stanzas",
            "init_pubkey",
            "resp_pubkey",
            "ver",
            "rekey_freq",
            "my_nonce",
            "sas_algs",
            "dh",
        ]
    };
    let mut form = Form::new("form");
    form.shape = s.shape();
    for name in order {
        if let Some(field) = f(name) {
            form.push(field);
        }
    }
    form
}

impl SigmaSession {
    /// Message 1: the offer, one DH value (3-message) or commitment
    /// (4-message) per offered group.
    pub(super) fn request(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        let mut dh = Vec::new();
        for g in &self.settings.modp.clone() {
            let group = Group::get(*g)?;
            let (x, e) = self.dh_keygen(env, &group)?;
            dh.push((*g, x, e));
        }
        let mut n_a = vec![0u8; self.settings.nonce_len()];
        env.fill(&mut n_a);
        let thread = keys::hex_lower(&env.random_array::<16>());
        let dh_field = if self.settings.four {
            let hashes = dh
                .iter()
                .map(|(_, _, e)| prim::sha256(&[&e.to_vec()]).map(b64::encode))
                .collect::<Result<Vec<_>>>()?;
            Field::typed("dhhashes", "hidden", hashes)
        } else {
            Field::typed(
                "dhkeys",
                "hidden",
                dh.iter().map(|(_, _, e)| b64::encode(e.to_vec())).collect(),
            )
        };
        let form = request_form(&self.settings, &n_a, dh_field);
        let mut m = self.message(&thread)?;
        m.append_child(Self::feature(&form));
        let mut amp = Element::bare("amp", NS_AMP);
        stanza::set_attr(&mut amp, "per-hop", "true")?;
        let mut rule = Element::bare("rule", NS_AMP);
        stanza::set_attr(&mut rule, "action", "drop")?;
        stanza::set_attr(&mut rule, "condition", "deliver")?;
        stanza::set_attr(&mut rule, "value", "stored")?;
        amp.append_child(rule);
        m.append_child(amp);
        let form_a = self.norm(&form);
        out.send(m);
        self.thread = thread.clone();
        self.st = St::AwaitResponse(Box::new(Offered {
            thread,
            n_a,
            dh,
            offered: form,
            form_a,
        }));
        Ok(())
    }

    /// Message 2 → message 3. In 3-message mode Bob's identity is checked
    /// here and the negotiation ends (`Some`); in 4-message mode Alice waits
    /// for message 4 (`None`).
    pub(super) fn on_response(
        &mut self,
        env: &mut Env,
        form_b: Form,
        out: &mut Outbox,
    ) -> Result<Option<Handshake>> {
        let St::AwaitResponse(a) = &self.st else {
            return Err(unexpected("response", "state"));
        };
        super::check_answer(&form_b, "submit", &a.n_a)?;
        let chosen = negotiate::check_choice(&a.offered, &form_b, &self.settings)?;
        let g = Group::get(chosen.group)?;
        let d = super::bn("dhkeys", form_b.value("dhkeys")?)?;
        if !g.in_range(&d) {
            return Err(PeerMisbehaved::IllegalParameter("d outside 1 < d < p-1".into()).into());
        }
        let n_b = super::b64d("my_nonce", form_b.value("my_nonce")?)?;
        let c_a_bytes = super::b64d("counter", form_b.value("counter")?)?;
        if c_a_bytes.len() > 16 {
            return Err(DecodeError::invalid("counter", "more than 128 bits").into());
        }
        let mut cb = [0u8; 16];
        cb[16 - c_a_bytes.len()..].copy_from_slice(&c_a_bytes);
        let c_a = u128::from_be_bytes(cb);
        let c_b = c_a ^ (1u128 << 127);
        let suite = self.suite(&chosen);
        let (_, x, e) = &a.dh[chosen.group_index];
        let e = openssl::bn::BigNumRef::to_owned(e).map_err(backend)?;
        let (thread, n_a, form_a) = (a.thread.clone(), a.n_a.clone(), a.form_a.clone());
        let k =
            SecretBytes::new(prim::sha256(&[self.ops.dh_shared(&g, &d, x)?.expose()])?.to_vec());
        let ka = derive(&k, Side::Initiator, suite.key_len)?;
        let form_b_n = self.norm(&form_b.without(&["identity", "mac"]));
        // Message 3's form, before Alice's identity is added.
        let mut fa2 = Form::new("result");
        fa2.shape = self.settings.shape();
        fa2.push(Field::value("FORM_TYPE", FORM_TYPE));
        fa2.push(Field::value("accept", "1"));
        fa2.push(Field::value("nonce", &b64::encode(&n_b)));
        // 3-message: Bob's identity came with his response.
        let mut verified = None;
        if chosen.three {
            let kb = derive(&k, Side::Responder, suite.key_len)?;
            let id = super::b64d("identity", form_b.value("identity")?)?;
            let mb = super::b64d("mac", form_b.value("mac")?)?;
            let mut rx = Stream::at(c_b);
            let v = self.verify(
                &Binding {
                    keys: &kb,
                    verifier_nonce: &n_a,
                    prover_nonce: &n_b,
                    prover_dh: &d,
                    forms: &[&form_b_n],
                    mode: chosen.resp_pubkey,
                },
                &mut rx,
                &id,
                &mb,
            )?;
            verified = Some((v, kb, rx));
        } else {
            fa2.push(Field::typed(
                "dhkeys",
                "hidden",
                vec![b64::encode(e.to_vec())],
            ));
            let (rs, _) = self.retained_for_peer()?;
            let mut hashes: Vec<String> = rs
                .iter()
                .map(|s| rshash(&n_a, s).map(b64::encode))
                .collect::<Result<_>>()?;
            // Random entries, so the count does not tell how many secrets Alice keeps.
            for _ in 0..2 {
                hashes.push(b64::encode(env.random_array::<32>()));
            }
            fa2.push(Field::typed("rshashes", "hidden", hashes));
        }
        let form_a2_n = self.norm(&fa2);
        let mut tx = Stream::at(c_a);
        let proven = self.prove(
            &Binding {
                keys: &ka,
                verifier_nonce: &n_b,
                prover_nonce: &n_a,
                prover_dh: &e,
                forms: &[&form_a, &form_a2_n],
                mode: chosen.init_pubkey,
            },
            &mut tx,
        )?;
        let mut full = fa2;
        full.push(Field::value("identity", &b64::encode(&proven.identity)));
        full.push(Field::value("mac", &b64::encode(proven.mac)));
        let mut m = self.message(&thread)?;
        m.append_child(Self::feature(&full));
        out.send(m);
        self.negotiated = Some(chosen.clone());
        let St::AwaitResponse(a) = std::mem::replace(&mut self.st, St::Closed) else {
            return Err(unexpected("response", "state"));
        };
        let mut dh = a.dh;
        let x_own = dh.swap_remove(chosen.group_index).1;
        if let Some((v, kb, rx)) = verified {
            // 3-message: done; the streams continue under the same keys.
            let ch = Channel::new(suite, g, dir(ka), tx, dir(kb), rx, x_own, d, env.now());
            let peer = self.peer_identity(v.fingerprint, None, SIGMA_I_METHOD.into());
            return Ok(Some((ch, peer, v.warnings)));
        }
        self.st = St::AwaitInit(Box::new(AwaitInit {
            chosen,
            group: g,
            x: x_own,
            d,
            k,
            n_a,
            n_b,
            form_b: form_b_n,
            m_a: proven.mac,
            c_a: tx.counter,
            c_b,
        }));
        Ok(None)
    }

    /// Message 4 (4-message mode): Bob's identity under the final keys.
    pub(super) fn on_init(&mut self, env: &mut Env, fb2: Form) -> Result<Handshake> {
        let St::AwaitInit(a) = &self.st else {
            return Err(unexpected("init", "state"));
        };
        super::check_answer(&fb2, "result", &a.n_a)?;
        let suite = self.suite(&a.chosen);
        let srshash = super::b64d("srshash", fb2.value("srshash")?)?;
        let srs = self.find_srs(|s| Ok(e2elab_core::ct_eq(&retained::srshash(s)?, &srshash)))?;
        let k_final = self.final_k(&a.k, srs.as_ref().map(|(s, _)| s.expose()))?;
        let ka = derive(&k_final, Side::Initiator, suite.key_len)?;
        let kb = derive(&k_final, Side::Responder, suite.key_len)?;
        let form_b2_n = self.norm(&fb2.without(&["identity", "mac"]));
        let id_b = super::b64d("identity", fb2.value("identity")?)?;
        let m_b = super::b64d("mac", fb2.value("mac")?)?;
        let (n_a, n_b, d, form_b, c_b, resp_pubkey, m_a) = (
            a.n_a.clone(),
            a.n_b.clone(),
            openssl::bn::BigNumRef::to_owned(&a.d).map_err(backend)?,
            a.form_b.clone(),
            a.c_b,
            a.chosen.resp_pubkey,
            a.m_a,
        );
        let mut rx = Stream::at(c_b);
        let v = self.verify(
            &Binding {
                keys: &kb,
                verifier_nonce: &n_a,
                prover_nonce: &n_b,
                prover_dh: &d,
                forms: &[&form_b, &form_b2_n],
                mode: resp_pubkey,
            },
            &mut rx,
            &id_b,
            &m_b,
        )?;
        let mut warnings = v.warnings;
        let St::AwaitInit(a) = std::mem::replace(&mut self.st, St::Closed) else {
            return Err(unexpected("init", "state"));
        };
        let a = *a;
        let had_srs = srs.is_some();
        let sas = self.conclude(&k_final, srs, &m_a, &form_b, resp_pubkey, &mut warnings)?;
        // Alice's stanzas: the final key, her counter continuing after her identity.
        let ch = Channel::new(
            suite,
            a.group,
            dir(ka),
            Stream::at(a.c_a),
            dir(kb),
            rx,
            a.x,
            d,
            env.now(),
        );
        Ok((
            ch,
            self.peer_identity(v.fingerprint, sas, method(resp_pubkey, had_srs)),
            warnings,
        ))
    }
}

/// A direction's channel keys from proof keys (KS is not needed after the negotiation).
pub(super) fn dir(k: ProofKeys) -> DirKeys {
    DirKeys { kc: k.kc, km: k.km }
}
