//! What Bob can write in Alice's name (Olm's deniability, executable).
//!
//! Olm's key agreement is 3DH: the initiator's secret is
//! `S = DH(I_A, O_B) || DH(E_A, I_B) || DH(E_A, O_B)`, with `I` the
//! Curve25519 identity keys, `E_A` a base key the initiator makes and `O_B`
//! one of the responder's one-time prekeys. No agreement needs `I_A`'s
//! private key on Bob's side: `DH(I_A, O_B) = DH(O_B, I_A)`, and Bob can make
//! `E_A` himself. So Bob, with his own account and Alice's public bundle,
//! computes every secret of a key exchange "from Alice" and writes stanzas
//! in her name that his own device (and any judge holding his keys) cannot
//! tell from hers. Nothing is signed by Alice: her Ed25519 key only signs
//! her bundle.
//!
//! [`simulate_from_peer`] does exactly that, through vodozemac: it builds an
//! Olm session on Alice's side whose root and chain keys come from the
//! three agreements above (HKDF-SHA-256, info `OLM_ROOT`, as vodozemac's
//! `shared_secret.rs` and the Olm spec's "Initial setup" say), and lets
//! vodozemac write the pre-key message and the OMEMO payload as Alice's
//! client would. The session is rebuilt from a pickle vodozemac itself
//! made for a throwaway account (so its layout is vodozemac's own); only
//! the identity key, the base key and the two derived keys are replaced.
//!
//! XEP-0384 §2 says X3DH "provides no online deniability". That is about a
//! judge who takes part while the exchange happens (it can make Bob use a
//! key it chose, or watch Alice's device answer). The harness's online
//! judge is given Bob's keys and state afterwards; against that judge this
//! simulation is what Bob can show, and the security table measures it.

use crate::bundle::{self, Bundle};
use crate::session::OmemoSession;
use crate::{olm_primitives, republished, ID};
use e2elab_core::{Element, Env, Error, IdentityError, Result, SessionConfig};
use serde_json::Value;
use vodozemac::olm::{Account, Session as Olm, SessionPickle};
use vodozemac::{Curve25519PublicKey, Curve25519SecretKey};
use zeroize::Zeroizing;

fn layout(what: &str) -> Error {
    Error::Backend(format!(
        "vodozemac's pickle layout is not the one this simulation knows ({what})"
    ))
}

/// Replace the 32-byte array at `path` in `v`, checking it is one.
fn put_array(v: &mut Value, path: &[&str], bytes: &[u8; 32]) -> Result<()> {
    let mut cur = v;
    for p in path {
        cur = cur.get_mut(*p).ok_or_else(|| layout(p))?;
    }
    match cur {
        Value::Array(a) if a.len() == 32 => {
            *cur = Value::Array(bytes.iter().map(|b| Value::from(*b)).collect());
            Ok(())
        }
        _ => Err(layout(&path.join("."))),
    }
}

/// Replace the public key at `path` (vodozemac's own serialization).
fn put_key(v: &mut Value, path: &[&str], key: Curve25519PublicKey) -> Result<()> {
    let mut cur = v;
    for p in path {
        cur = cur.get_mut(*p).ok_or_else(|| layout(p))?;
    }
    *cur = serde_json::to_value(key).map_err(|e| layout(&e.to_string()))?;
    Ok(())
}

/// The private key of one of our one-time prekeys `otk`, from our account.
fn otk_secret(
    account: &vodozemac::olm::AccountPickle,
    otk: &[u8; 32],
) -> Result<Curve25519SecretKey> {
    let v = Zeroizing::new(serde_json::to_string(account).map_err(|e| layout(&e.to_string()))?);
    let v: Value = serde_json::from_str(&v).map_err(|e| layout(&e.to_string()))?;
    let keys = v
        .get("one_time_keys")
        .and_then(|k| k.get("private_keys"))
        .and_then(Value::as_object)
        .ok_or_else(|| layout("one_time_keys.private_keys"))?;
    for k in keys.values() {
        let s: Curve25519SecretKey =
            serde_json::from_value(k.clone()).map_err(|e| layout(&e.to_string()))?;
        if Curve25519PublicKey::from(&s).to_bytes() == *otk {
            return Ok(s);
        }
    }
    Err(IdentityError::UnknownKey("a one-time prekey our account does not hold".into()).into())
}

/// Bob's stanza in Alice's name: `config` is Bob's own (his identity, his
/// JID, Alice's public bundle as the peer), `stanza` the message to write
/// (its `from`/`to` are set to Alice's and Bob's JIDs). The result is a
/// key exchange from Alice's device to Bob's, on a one-time prekey of Bob's
/// republished bundle (the `Env` picks it), carrying `stanza` in an
/// XEP-0420 envelope whose `<from>` is Alice.
pub fn simulate_from_peer(
    config: SessionConfig,
    env: &mut Env,
    stanza: Element,
) -> Result<Element> {
    config.identity.require_protocol(ID)?;
    let alice_public = config
        .peer_public
        .clone()
        .ok_or(IdentityError::PeerKeyRequired)?;
    e2elab_core::identity::require_protocol(&alice_public, ID)?;
    let alice = Bundle::from_bytes(&alice_public.data)?;
    alice.verify()?;
    let bob = Bundle::from_bytes(&config.identity.public.data)?;
    let secret = bundle::read_secret(config.identity.secret().expose())?;
    // One of Bob's one-time prekeys nobody has used yet.
    let fresh: Vec<[u8; 32]> = {
        let pep = republished()
            .lock()
            .map_err(|_| Error::Backend("PEP store poisoned".into()))?;
        let used = pep.get(&bob.ik);
        bob.prekeys
            .iter()
            .map(|(_, k)| *k)
            .filter(|k| used.is_none_or(|u| !u.contains(k)))
            .collect()
    };
    if fresh.is_empty() {
        return Err(IdentityError::UnknownKey("no unused one-time prekey left".into()).into());
    }
    let otk = fresh[(env.next_u64() % fresh.len() as u64) as usize];
    let o_b = otk_secret(&secret.account, &otk)?;
    // The base key "Alice" sends: Bob's own.
    let e_a = Curve25519SecretKey::from_slice(&env.random_array::<32>());
    let i_a = Curve25519PublicKey::from_bytes(alice.cik);
    let i_b = Curve25519PublicKey::from_bytes(bob.cik);
    let o_b_pub = Curve25519PublicKey::from_bytes(otk);
    let agree = |s: &Curve25519SecretKey, p: &Curve25519PublicKey| {
        s.diffie_hellman(p)
            .map(|x| *x.as_bytes())
            .ok_or_else(|| Error::from(IdentityError::Malformed("a low-order key".into())))
    };
    // S = DH(I_A, O_B) || DH(E_A, I_B) || DH(E_A, O_B), each on Bob's side.
    let mut s = Zeroizing::new([0u8; 96]);
    s[..32].copy_from_slice(&agree(&o_b, &i_a)?);
    s[32..64].copy_from_slice(&agree(&e_a, &i_b)?);
    s[64..].copy_from_slice(&agree(&e_a, &o_b_pub)?);
    let mut rk = Zeroizing::new([0u8; 64]);
    if !olm_primitives::hkdf_sha256(&[0], &s[..], b"OLM_ROOT", &mut rk[..]) {
        return Err(Error::Backend("HKDF".into()));
    }
    let mut root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&rk[..32]);
    chain.copy_from_slice(&rk[32..]);
    // A session vodozemac made, on a throwaway account, to the same prekey:
    // its layout, with Alice's identity key, our base key and the keys above.
    let template = Account::new()
        .create_outbound_session(vodozemac::olm::SessionConfig::version_1(), i_b, o_b_pub)
        .map_err(|e| Error::Backend(format!("template session: {e}")))?
        .pickle();
    let text =
        Zeroizing::new(serde_json::to_string(&template).map_err(|e| layout(&e.to_string()))?);
    let mut v: Value = serde_json::from_str(&text).map_err(|e| layout(&e.to_string()))?;
    put_key(&mut v, &["session_keys", "identity_key"], i_a)?;
    put_key(
        &mut v,
        &["session_keys", "base_key"],
        Curve25519PublicKey::from(&e_a),
    )?;
    put_array(
        &mut v,
        &["sending_ratchet", "active_ratchet", "root_key"],
        &root,
    )?;
    put_array(
        &mut v,
        &["sending_ratchet", "symmetric_key_ratchet", "key"],
        &chain,
    )?;
    if v["sending_ratchet"]["symmetric_key_ratchet"]["index"] != 0 {
        return Err(layout("a fresh chain not at index 0"));
    }
    let pickle: SessionPickle = serde_json::from_value(v).map_err(|e| layout(&e.to_string()))?;
    let olm = Olm::from_pickle(pickle);
    let mut mirror = OmemoSession::mirror(&config, alice, bob, olm)?;
    let mut m = stanza;
    e2elab_core::stanza::set_attr(&mut m, "from", &config.peer_jid.to_string())?;
    e2elab_core::stanza::set_attr(&mut m, "to", &config.local_jid.to_string())?;
    mirror.protect(env, m)
}
