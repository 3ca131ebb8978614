//! RESEARCH HOOKS: what an attacker, or a judge, computes from a recorded
//! transcript of ESessions stanzas and whatever secrets a compromise gave
//! them. Used by the harness's security experiments (`e2elab security`) in
//! every build; nothing here is called by a session.
//!
//! The attacker is never handed the victims' code paths: an [`Observer`]
//! rebuilds, from the wire alone, everything XEP-0116/XEP-0200 make public
//! (the chosen group, nonces, DH values, the counters, the length of every
//! `<c/>`), and turns each secret it holds into every key that secret makes
//! derivable: each known DH private value is combined with each DH public
//! value seen (the handshake's `e`/`d`, every rekey `<key/>`) into handshake
//! keys (K = SHA256(g^xy), `derive`) and rekey keys (the raw g^xy with the
//! XEP-0200 labels); key sets from a leaked session state are taken as they
//! are. A `<c/>` is read when one of those keys reproduces its MAC at its
//! counter; then its `<data/>` is decrypted. Nothing is guessed.
//!
//! From a leaked long-term identity the observer derives the static-DH
//! control's exponent ([`crate::prim::static_exponent`]) for every group: for
//! every real profile that value matches no DH public value on the wire, and
//! the evidence says so.
//!
//! Limitation: a 4-message negotiation's final key is SHA256(K | SRS | OSS);
//! the observer tries it without a retained secret or other shared secret
//! only (the first session between two clients). No experiment needs more:
//! a retained secret alone derives no key, and a leaked session state holds
//! the derived keys themselves.

pub mod sigma;
pub mod ssh;

use e2elab_core::{stanza, Element, Result};

/// What the attacker holds.
#[derive(Default)]
pub struct Knowledge {
    /// Leaked long-term private keys (PKCS#8 DER, as the identities hold them).
    pub identity_secrets: Vec<Vec<u8>>,
    /// Leaked session states: (the exporter is the initiator,
    /// [`e2elab_core::Session::dangerous_export_state`] bytes).
    pub states: Vec<(bool, Vec<u8>)>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("identity_secrets", &self.identity_secrets.len())
            .field("states", &self.states.len())
            .finish()
    }
}

impl Drop for Knowledge {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for s in self.identity_secrets.iter_mut() {
            s.zeroize();
        }
        for (_, s) in self.states.iter_mut() {
            s.zeroize();
        }
    }
}

/// One stanza of a recorded transcript: sent by the initiator or not.
#[derive(Debug, Clone)]
pub struct Seen {
    /// True when the initiator (Alice) sent it.
    pub from_initiator: bool,
    /// The serialized stanza as it was on the wire.
    pub xml: String,
}

/// What the observer made of one stanza.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Index in the transcript.
    pub index: usize,
    /// Sent by the initiator.
    pub from_initiator: bool,
    /// The decrypted content (serialized protected children), when read.
    pub content: Option<String>,
    /// Which key read it (e.g. `state rx set 0`, `handshake K from leaked x`, `rekey K`).
    pub key: Option<String>,
    /// The stanza carried a rekey `<key/>`.
    pub rekey: bool,
}

/// A judge's verdict on one stanza or proof.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The judge's check passed: the content is authenticated under what the
    /// judge holds (a MAC under a key it holds, or a signature by the
    /// expected public key).
    pub authentic: bool,
    /// The content the judge recovered, if any.
    pub content: Option<String>,
    /// Why, in a few words.
    pub reason: String,
}

fn parse(xml: &str) -> Option<Element> {
    stanza::parse(xml).ok()
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|_| e2elab_core::Error::Backend("bad hex in a state export".into()))
}
