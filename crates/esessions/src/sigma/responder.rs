//! Bob: his response to Alice's request (message 2, carrying his identity
//! in 3-message mode) and his answer to her identity (message 4).

use super::initiator::dir;
use super::negotiate::{self, Chosen, Rejection};
use super::proof::{derive, Binding, ProofKeys, Side};
use super::retained::{method, rshash, srshash};
use super::{
    unexpected, Handshake, SigmaSession, St, FORM_TYPE, NS_FEATURE, NS_INIT, SIGMA_I_METHOD,
};
use crate::channel::{Channel, Stream};
use crate::form::{Field, Form, NS_DATA};
use crate::prim::{self, DhPrivate, Group};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{
    stanza, DecodeError, Element, Env, Error, Outbox, PeerMisbehaved, Result, SecretBytes,
};
use openssl::bn::BigNum;

const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// What Bob holds of Alice's DH value before her identity arrives.
pub(super) enum AliceDh {
    /// 4-message: her commitment SHA256(e), checked when e arrives in message 3.
    Commitment(Vec<u8>),
    /// 3-message: e itself, with both sides' keys already derived from K.
    Value {
        e: BigNum,
        alice: ProofKeys,
        bob: ProofKeys,
    },
}

/// Bob after message 2.
pub(super) struct AwaitAccept {
    pub thread: String,
    pub chosen: Chosen,
    pub group: Group,
    pub y: DhPrivate,
    pub d: BigNum,
    pub n_a: Vec<u8>,
    pub n_b: Vec<u8>,
    pub form_a: Vec<u8>,
    pub form_b: Vec<u8>,
    pub c_a: u128,
    /// Bob's keystream: at C_B (4-message), or after his identity (3-message).
    pub tx: Stream,
    pub alice_dh: AliceDh,
}

/// A random C_A. Under gajim-compat its top octet is neither 0x00 nor
/// 0x80, so that C_A and C_B = C_A XOR 2^127 both fill 16 octets: Gajim's
/// receiver pads the counter to 16 octets where its sender encodes it
/// minimally, and its counter function fails below 2^120 (GAJIM-NOTES.md,
/// DEVIATIONS).
fn counter(env: &mut Env, gajim: bool) -> u128 {
    loop {
        let c = u128::from_be_bytes(env.random_array::<16>());
        let top = (c >> 120) as u8;
        if !gajim || (top != 0 && top != 0x80) {
            return c;
        }
    }
}

impl SigmaSession {
    /// An error answer to a request (XEP-0116 §4.3 "ESession Rejection").
    fn error_stanza(&self, thread: &str, r: &Rejection) -> Result<Element> {
        let mut m = self.message(thread)?;
        stanza::set_attr(&mut m, "type", "error")?;
        let mut err = Element::bare("error", stanza::NS_CLIENT);
        stanza::set_attr(&mut err, "type", "cancel")?;
        err.append_child(Element::bare(r.condition, STANZA_ERRORS));
        if !r.fields.is_empty() {
            let mut f = Element::bare("feature", NS_FEATURE);
            for v in &r.fields {
                let mut fe = Element::bare("field", NS_DATA);
                stanza::set_attr(&mut fe, "var", v)?;
                f.append_child(fe);
            }
            err.append_child(f);
        }
        m.append_child(err);
        Ok(m)
    }

    /// Bob's message-2 form (XEP-0116 §4.3 "Response Form").
    fn response_form(&self, c: &Chosen, n_a: &[u8], n_b: &[u8], d: &BigNum, c_a: u128) -> Form {
        // Gajim types every field of its response text-single; the spec's examples type none.
        let ftype = self
            .settings
            .gajim_shapes
            .then(|| "text-single".to_string());
        let t = |var: &str, vals: Vec<String>| Field {
            var: var.into(),
            ftype: ftype.clone(),
            values: vals,
            ..Default::default()
        };
        let one = |var: &str, v: &str| t(var, vec![v.to_string()]);
        let mut f = Form::new("submit");
        f.shape = self.settings.shape();
        f.push(one("FORM_TYPE", FORM_TYPE));
        f.push(one("accept", "1"));
        f.push(one(&c.logging.0, &c.logging.1));
        f.push(one("disclosure", "never"));
        f.push(one("security", "e2e"));
        f.push(one("modp", &c.group.to_string()));
        f.push(one("crypt_algs", &c.crypt));
        f.push(one("hash_algs", "sha256"));
        if self.settings.sign_algs_used() {
            f.push(one("sign_algs", crate::keys::RSA_SHA256));
        }
        f.push(one("compress", "none"));
        f.push(t(
            "stanzas",
            c.stanzas.iter().map(|k| k.name().to_string()).collect(),
        ));
        f.push(one("init_pubkey", c.init_pubkey.name()));
        f.push(one("resp_pubkey", c.resp_pubkey.name()));
        f.push(one("ver", "1.0"));
        f.push(one("rekey_freq", &c.rekey_freq.to_string()));
        f.push(one("my_nonce", &b64::encode(n_b)));
        if self.settings.four {
            f.push(one("sas_algs", "sas28x5"));
        }
        f.push(one("dhkeys", &b64::encode(d.to_vec())));
        f.push(one("nonce", &b64::encode(n_a)));
        f.push(one("counter", &b64::encode(prim::counter_bytes(c_a))));
        f
    }

    /// Message 1 → message 2.
    pub(super) fn on_request(
        &mut self,
        env: &mut Env,
        thread: String,
        form_a: Form,
        out: &mut Outbox,
    ) -> Result<()> {
        if form_a.ftype != "form" {
            return Err(unexpected("request form", &form_a.ftype));
        }
        super::check_value(&form_a, "FORM_TYPE", FORM_TYPE)?;
        let chosen = match negotiate::negotiate(&form_a, &self.settings) {
            Ok(c) => c,
            Err(r) => {
                out.send(self.error_stanza(&thread, &r)?);
                return Err(if r.condition == "feature-not-implemented" {
                    Error::Unsupported(format!(
                        "{}-message negotiation",
                        if self.settings.four { 3 } else { 4 }
                    ))
                } else {
                    PeerMisbehaved::IllegalParameter(r.fields.join(",")).into()
                });
            }
        };
        let n_a = super::b64d("my_nonce", form_a.value("my_nonce")?)?;
        let dh_var = if chosen.three { "dhkeys" } else { "dhhashes" };
        let commits = form_a.values(dh_var)?;
        let offered_groups = form_a.field("modp").map_or(0, |f| f.choices().len());
        if commits.len() != offered_groups {
            return Err(DecodeError::invalid(dh_var, "one value per offered group").into());
        }
        let alice_value = super::b64d(dh_var, &commits[chosen.group_index])?;
        let g = Group::get(chosen.group)?;
        let e = if chosen.three {
            let e = BigNum::from_slice(&alice_value).map_err(backend)?;
            if !g.in_range(&e) {
                let r = Rejection {
                    condition: "feature-not-implemented",
                    fields: vec!["dhkeys".into()],
                };
                out.send(self.error_stanza(&thread, &r)?);
                return Err(
                    PeerMisbehaved::IllegalParameter("e outside 1 < e < p-1".into()).into(),
                );
            }
            Some(e)
        } else {
            None
        };
        self.thread = thread.clone();
        let mut n_b = vec![0u8; self.settings.nonce_len()];
        env.fill(&mut n_b);
        let c_a = counter(env, self.settings.gajim);
        let c_b = c_a ^ (1u128 << 127);
        let (y, d) = self.dh_keygen(env, &g)?;
        let fb = self.response_form(&chosen, &n_a, &n_b, &d, c_a);
        let form_a_n = self.norm(&form_a);
        let form_b_n = self.norm(&fb);
        let suite = self.suite(&chosen);
        let mut m = self.message(&thread)?;
        let mut tx = Stream::at(c_b);
        let alice_dh = match e {
            Some(e) => {
                // 3-message: Bob proves his identity now, under keys from K.
                let k = SecretBytes::new(
                    prim::sha256(&[self.ops.dh_shared(&g, &e, &y)?.expose()])?.to_vec(),
                );
                let ka = derive(&k, Side::Initiator, suite.key_len)?;
                let kb = derive(&k, Side::Responder, suite.key_len)?;
                let proven = self.prove(
                    &Binding {
                        keys: &kb,
                        verifier_nonce: &n_a,
                        prover_nonce: &n_b,
                        prover_dh: &d,
                        forms: &[&form_b_n],
                        mode: chosen.resp_pubkey,
                    },
                    &mut tx,
                )?;
                let mut full = fb;
                full.push(Field::value("identity", &b64::encode(&proven.identity)));
                full.push(Field::value("mac", &b64::encode(proven.mac)));
                m.append_child(Self::feature(&full));
                AliceDh::Value {
                    e,
                    alice: ka,
                    bob: kb,
                }
            }
            None => {
                m.append_child(Self::feature(&fb));
                AliceDh::Commitment(alice_value)
            }
        };
        out.send(m);
        self.st = St::AwaitAccept(Box::new(AwaitAccept {
            thread,
            chosen,
            group: g,
            y,
            d,
            n_a,
            n_b,
            form_a: form_a_n,
            form_b: form_b_n,
            c_a,
            tx,
            alice_dh,
        }));
        Ok(())
    }

    /// Message 3 → message 4 (4-message mode), or the end of a 3-message
    /// negotiation: Alice's identity, then (4-message) the final keys and
    /// Bob's identity.
    pub(super) fn on_accept(
        &mut self,
        env: &mut Env,
        fa2: Form,
        out: &mut Outbox,
    ) -> Result<Handshake> {
        let St::AwaitAccept(b) = &self.st else {
            return Err(unexpected("accept", "state"));
        };
        super::check_answer(&fa2, "result", &b.n_b)?;
        let suite = self.suite(&b.chosen);
        let form_a2_n = self.norm(&fa2.without(&["identity", "mac"]));
        let id_a = super::b64d("identity", fa2.value("identity")?)?;
        let m_a = super::b64d("mac", fa2.value("mac")?)?;
        // Alice's DH value and the keys her identity is under.
        let (e, k, ka_prov) = match &b.alice_dh {
            AliceDh::Value { e, alice, .. } => (
                openssl::bn::BigNumRef::to_owned(e).map_err(backend)?,
                None,
                alice.clone(),
            ),
            AliceDh::Commitment(he) => {
                let e = super::bn("dhkeys", fa2.value("dhkeys")?)?;
                if prim::sha256(&[&e.to_vec()])?.as_slice() != he.as_slice() {
                    return Err(PeerMisbehaved::CommitmentMismatch.into());
                }
                if !b.group.in_range(&e) {
                    return Err(
                        PeerMisbehaved::IllegalParameter("e outside 1 < e < p-1".into()).into(),
                    );
                }
                let k = SecretBytes::new(
                    prim::sha256(&[self.ops.dh_shared(&b.group, &e, &b.y)?.expose()])?.to_vec(),
                );
                let ka = derive(&k, Side::Initiator, suite.key_len)?;
                (e, Some(k), ka)
            }
        };
        let (n_a, n_b, form_a, c_a) = (b.n_a.clone(), b.n_b.clone(), b.form_a.clone(), b.c_a);
        let init_pubkey = b.chosen.init_pubkey;
        // Everything fallible in the peer's form is read before the state is taken.
        let rshashes: Vec<String> = match k {
            Some(_) => fa2.values("rshashes")?.to_vec(),
            None => Vec::new(),
        };
        let mut rx = Stream::at(c_a);
        let v = self.verify(
            &Binding {
                keys: &ka_prov,
                verifier_nonce: &n_b,
                prover_nonce: &n_a,
                prover_dh: &e,
                forms: &[&form_a, &form_a2_n],
                mode: init_pubkey,
            },
            &mut rx,
            &id_a,
            &m_a,
        )?;
        let mut warnings = v.warnings;
        let St::AwaitAccept(b) = std::mem::replace(&mut self.st, St::Closed) else {
            return Err(unexpected("accept", "state"));
        };
        let b = *b;
        self.negotiated = Some(b.chosen.clone());
        let Some(k) = k else {
            // 3-message: done; the streams continue under the same keys.
            let AliceDh::Value { alice, bob, .. } = b.alice_dh else {
                return Err(Error::Backend("3-message keys missing".into()));
            };
            let ch = Channel::new(
                suite,
                b.group,
                dir(bob),
                b.tx,
                dir(alice),
                rx,
                b.y,
                e,
                env.now(),
            );
            let peer = self.peer_identity(v.fingerprint, None, SIGMA_I_METHOD.into());
            return Ok((ch, peer, warnings));
        };
        // 4-message: retained secrets, final keys, Bob's identity.
        let srs = self.find_srs(|s| {
            let h = rshash(&n_a, s)?;
            Ok(rshashes
                .iter()
                .any(|r| b64::decode(r.trim()).is_ok_and(|r| e2elab_core::ct_eq(&r, &h))))
        })?;
        let k_final = self.final_k(&k, srs.as_ref().map(|(s, _)| s.expose()))?;
        let ka = derive(&k_final, Side::Initiator, suite.key_len)?;
        let kb = derive(&k_final, Side::Responder, suite.key_len)?;
        let srs_hash = match &srs {
            Some((s, _)) => srshash(s)?,
            None => env.random_array::<32>(),
        };
        let mut fb2 = Form::new("result");
        fb2.shape = self.settings.shape();
        fb2.push(Field::value("FORM_TYPE", FORM_TYPE));
        fb2.push(Field::value("nonce", &b64::encode(&n_a)));
        fb2.push(Field::value("srshash", &b64::encode(srs_hash)));
        let form_b2_n = self.norm(&fb2);
        let mut tx = b.tx;
        let proven = self.prove(
            &Binding {
                keys: &kb,
                verifier_nonce: &n_a,
                prover_nonce: &n_b,
                prover_dh: &b.d,
                forms: &[&b.form_b, &form_b2_n],
                mode: b.chosen.resp_pubkey,
            },
            &mut tx,
        )?;
        fb2.push(Field::value("identity", &b64::encode(&proven.identity)));
        fb2.push(Field::value("mac", &b64::encode(proven.mac)));
        let mut m = self.message(&b.thread)?;
        let mut init = Element::bare("init", NS_INIT);
        init.append_child(fb2.to_element());
        m.append_child(init);
        out.send(m);
        let had_srs = srs.is_some();
        let sas = self.conclude(&k_final, srs, &m_a, &b.form_b, init_pubkey, &mut warnings)?;
        // Alice's stanzas: the final key, her counter continuing after her identity.
        let ch = Channel::new(
            suite,
            b.group,
            dir(kb),
            tx,
            dir(ka),
            Stream::at(rx.counter),
            b.y,
            e,
            env.now(),
        );
        Ok((
            ch,
            self.peer_identity(v.fingerprint, sas, method(init_pubkey, had_srs)),
            warnings,
        ))
    }
}
