//! SIGMA identity proofs (XEP-0116 §4.4 "Alice's identity", §4.5 "Bob's
//! identity"): the MAC over the nonces, the prover's DH value, its public
//! key and the forms; its signature (key modes `key`/`hash`); the identity
//! encryption and its MAC; and the check of all of it on the other side.

use super::settings::KeyMode;
use super::{ProofRecord, SigmaSession};
use crate::channel::{lsb, CtrReading, Stream};
use crate::{keys, prim, Store, Weakness};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{
    stanza, DecodeError, Error, IdentityError, PeerMisbehaved, Result, SecretBytes, Warning,
};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;

/// Which party's keys (the HMAC labels of XEP-0116 §"Generating Session Keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Alice.
    Initiator,
    /// Bob.
    Responder,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Initiator => "Initiator",
            Side::Responder => "Responder",
        }
    }
}

/// One side's cipher, MAC and SIGMA keys.
pub struct ProofKeys {
    /// KC.
    pub kc: SecretBytes,
    /// KM.
    pub km: SecretBytes,
    /// KS.
    pub ks: SecretBytes,
}

impl Clone for ProofKeys {
    fn clone(&self) -> Self {
        ProofKeys {
            kc: self.kc.clone(),
            km: self.km.clone(),
            ks: self.ks.clone(),
        }
    }
}

/// KC, KM, KS of `side` from K (or K'): HMAC(K, "<Side> Cipher Key") etc.,
/// the cipher key being the `key_len` least significant bytes.
pub fn derive(k: &SecretBytes, side: Side, key_len: usize) -> Result<ProofKeys> {
    let who = side.label();
    let h = |what: &str| prim::hmac_sha256(k.expose(), &[format!("{who} {what}").as_bytes()]);
    Ok(ProofKeys {
        kc: lsb(&h("Cipher Key")?, key_len),
        km: lsb(&h("MAC Key")?, 32),
        ks: lsb(&h("SIGMA Key")?, 32),
    })
}

/// What one identity proof binds, named as XEP-0116 writes
/// `macA = HMAC(KS_A, {N_B, N_A, e, pubKey_A, formA, formA2})`: the
/// verifier's nonce first, then the prover's nonce, the prover's DH value,
/// the prover's public key (added by [`SigmaSession::prove`] and
/// [`SigmaSession::verify`] from the key mode) and the forms.
pub struct Binding<'a> {
    /// The prover's keys (provisional or final).
    pub keys: &'a ProofKeys,
    /// The verifier's nonce.
    pub verifier_nonce: &'a [u8],
    /// The prover's nonce.
    pub prover_nonce: &'a [u8],
    /// The prover's DH value (`e` for Alice, `d` for Bob).
    pub prover_dh: &'a BigNum,
    /// The normalized forms, in order.
    pub forms: &'a [&'a [u8]],
    /// The prover's identification method.
    pub mode: KeyMode,
}

/// A proof as sent: the encrypted identity and its MAC.
pub struct Proven {
    /// `identity` (encrypted).
    pub identity: Vec<u8>,
    /// `mac` = HMAC(KM, C | identity).
    pub mac: [u8; 32],
}

/// The outcome of checking a peer's identity proof.
pub struct Verified {
    /// The peer key's fingerprint (key modes `key`, `hash`).
    pub fingerprint: Option<String>,
    /// Trust-on-first-use warnings.
    pub warnings: Vec<Warning>,
}

impl SigmaSession {
    fn reading(&self) -> CtrReading {
        if self.settings.gajim {
            CtrReading::Gajim
        } else {
            CtrReading::Spec
        }
    }

    /// The MAC inputs of `b` with the prover's public key bytes `pubkey`.
    fn mac_parts<'a>(&self, b: &'a Binding<'a>, dh: &'a [u8], pubkey: &'a [u8]) -> Vec<&'a [u8]> {
        let mut parts: Vec<&[u8]> = vec![b.verifier_nonce, b.prover_nonce, dh, pubkey];
        if self.settings.weakness != Some(Weakness::UnsignedOffer) {
            parts.extend_from_slice(b.forms);
        }
        parts
    }

    /// Prove our identity: the SIGMA MAC (signed in key modes `key`/`hash`),
    /// encrypted on `stream` and MACed with the counter it started at.
    pub(super) fn prove(&mut self, b: &Binding<'_>, stream: &mut Stream) -> Result<Proven> {
        let weakness = self.settings.weakness;
        let dh = b.prover_dh.to_vec();
        let signed_by = |s: &mut SigmaSession, data: &[u8]| -> Result<Vec<u8>> {
            let key = s
                .key
                .clone()
                .ok_or_else(|| IdentityError::Malformed("no private key".into()))?;
            let sig = s.ops.rsa_sign(&key, MessageDigest::sha256(), data)?;
            Ok(format!("<SignatureValue>{}</SignatureValue>", b64::encode(sig)).into_bytes())
        };
        if weakness == Some(Weakness::UnboundIdentity) {
            // "BADH": the identity and a signature over the nonces and the DH
            // value only, in clear; no SIGMA MAC binds the identity to K.
            let data = [b.verifier_nonce, b.prover_nonce, &dh].concat();
            let mut pt = self.key_value.clone();
            pt.extend(signed_by(self, &data)?);
            return Ok(Proven {
                identity: pt,
                mac: [0u8; 32],
            });
        }
        let pubkey: Vec<u8> = if b.mode == KeyMode::None {
            Vec::new()
        } else {
            self.key_value.clone()
        };
        let mac = prim::hmac_sha256(b.keys.ks.expose(), &self.mac_parts(b, &dh, &pubkey))?;
        let plaintext = match b.mode {
            KeyMode::None => mac.to_vec(),
            KeyMode::Key | KeyMode::Hash => {
                let mut pt = if b.mode == KeyMode::Key {
                    self.key_value.clone()
                } else {
                    keys::fingerprint_element(&self.key_value)?
                };
                pt.extend(signed_by(self, &mac)?);
                pt
            }
        };
        let c = stream.counter;
        let identity = if weakness == Some(Weakness::ClearIdentity) {
            stream.counter = c.wrapping_add(prim::blocks(plaintext.len()));
            plaintext
        } else {
            stream.apply(b.keys.kc.expose(), self.reading(), &plaintext)?
        };
        let mac = prim::hmac_sha256(b.keys.km.expose(), &[&prim::counter_bytes(c), &identity])?;
        Ok(Proven { identity, mac })
    }

    /// Check the peer's proof (`identity`, `mac`) against `b`, decrypting on
    /// `stream`; on success the peer's key is pending for the key store.
    pub(super) fn verify(
        &mut self,
        b: &Binding<'_>,
        stream: &mut Stream,
        identity: &[u8],
        mac: &[u8],
    ) -> Result<Verified> {
        let weakness = self.settings.weakness;
        let unbound = weakness == Some(Weakness::UnboundIdentity);
        let c = stream.counter;
        let want = prim::hmac_sha256(b.keys.km.expose(), &[&prim::counter_bytes(c), identity])?;
        if !unbound && !e2elab_core::ct_eq(&want, mac) {
            return Err(Error::DecryptFailed);
        }
        let pt = if unbound {
            identity.to_vec()
        } else if weakness == Some(Weakness::ClearIdentity) {
            stream.counter = c.wrapping_add(prim::blocks(identity.len()));
            identity.to_vec()
        } else {
            stream.apply(b.keys.kc.expose(), self.reading(), identity)?
        };
        let dh = b.prover_dh.to_vec();
        if b.mode == KeyMode::None {
            let parts = self.mac_parts(b, &dh, b"");
            let expect = prim::hmac_sha256(b.keys.ks.expose(), &parts)?;
            if !e2elab_core::ct_eq(&expect, &pt) {
                return Err(Error::DecryptFailed);
            }
            self.peer_proof = Some(ProofRecord {
                mode: "none".into(),
                ks: hex::encode(b.keys.ks.expose()),
                parts: parts.iter().map(hex::encode).collect(),
                signed: hex::encode(expect),
                sig: String::new(),
                key_value: String::new(),
            });
            return Ok(Verified {
                fingerprint: None,
                warnings: Vec::new(),
            });
        }
        let frag = keys::parse_fragment(&pt)?;
        let child = |name: &str| -> Result<&e2elab_core::Element> {
            frag.children()
                .find(|c| c.name() == name)
                .ok_or_else(|| DecodeError::Missing(name.into()).into())
        };
        let sig = b64::decode(child("SignatureValue")?.text().trim())
            .map_err(|_| DecodeError::invalid("SignatureValue", "not base64"))?;
        let pinned: Option<Vec<u8>> = self.peer_public.as_ref().map(|p| p.data.clone());
        let peer_bare = stanza::bare_jid(self.peer.as_str()).to_string();
        let local_bare = stanza::bare_jid(self.local.as_str()).to_string();
        let remembered = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?
            .known_keys
            .get(&(local_bare.clone(), peer_bare.clone()))
            .cloned();
        let kv: Vec<u8> = match b.mode {
            KeyMode::Key => {
                // Re-normalize what arrived.
                let pk = keys::public_from_key_value(child("KeyValue")?)?;
                let rsa = pk.rsa().map_err(backend)?;
                keys::key_value(&rsa.n().to_vec(), &rsa.e().to_vec())
            }
            _ => {
                let fp = child("fingerprint")?.text();
                let want = format!("<fingerprint>{}</fingerprint>", fp.trim()).into_bytes();
                [pinned.clone(), remembered.clone()]
                    .into_iter()
                    .flatten()
                    .find(|kv| keys::fingerprint_element(kv).is_ok_and(|f| f == want))
                    .ok_or_else(|| IdentityError::UnknownKey(fp.trim().to_string()))?
            }
        };
        let (signed, record_parts, record_ks, record_mode) = if unbound {
            let data = [b.verifier_nonce, b.prover_nonce, &dh].concat();
            (data, Vec::new(), String::new(), "unbound")
        } else {
            let parts = self.mac_parts(b, &dh, &kv);
            let m = prim::hmac_sha256(b.keys.ks.expose(), &parts)?;
            (
                m.to_vec(),
                parts.iter().map(hex::encode).collect(),
                hex::encode(b.keys.ks.expose()),
                b.mode.name(),
            )
        };
        // Only pinned keys go into the shared parsed-key cache: a key from the
        // wire is parsed afresh, so unauthenticated input cannot grow the cache.
        let pubkey = if pinned.as_deref() == Some(kv.as_slice()) {
            Store::public_key(&self.store, &kv, keys::public_from_bytes)?
        } else {
            keys::public_from_bytes(&kv)?
        };
        if !self
            .ops
            .rsa_verify(&pubkey, MessageDigest::sha256(), &signed, &sig)?
        {
            return Err(PeerMisbehaved::BadSignature.into());
        }
        let record = ProofRecord {
            mode: record_mode.into(),
            ks: record_ks,
            parts: record_parts,
            signed: hex::encode(&signed),
            sig: hex::encode(&sig),
            key_value: hex::encode(&kv),
        };
        // Key-to-JID association.
        let fp = keys::fingerprint_hex(&kv)?;
        let mut warnings = Vec::new();
        if let Some(p) = &pinned {
            if *p != kv {
                return Err(IdentityError::JidMismatch(peer_bare).into());
            }
        } else {
            match &remembered {
                None => warnings.push(Warning::Unauthenticated {
                    reason: format!(
                        "first key seen for {peer_bare} ({fp}): verify it or compare the SAS"
                    ),
                }),
                Some(old) if *old != kv => warnings.push(Warning::KeyChanged {
                    jid: peer_bare.clone(),
                    old: keys::fingerprint_hex(old)?,
                    new: fp.clone(),
                }),
                Some(_) => {}
            }
        }
        // Remembered only once the session is established (see `establish`).
        self.pending_key = Some(((local_bare, peer_bare), kv));
        self.peer_proof = Some(record);
        Ok(Verified {
            fingerprint: Some(fp),
            warnings,
        })
    }
}
