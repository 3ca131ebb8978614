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
//! `shared_secret.rs` and the Olm spec's "Initial setup" say) with
//! `Session::from_root_key_material` (vodozemac's `low-level-api`), and lets
//! vodozemac write the pre-key message and the OMEMO payload as Alice's
//! client would. Every secret lives in a zeroizing buffer; Bob's one-time
//! prekey is read from his account pickle into vodozemac's own (zeroizing)
//! key type, nothing else of the pickle is kept.
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
use std::collections::BTreeMap;
use vodozemac::olm::{Session as Olm, SessionKeys};
use vodozemac::{Curve25519PublicKey, Curve25519SecretKey};
use zeroize::Zeroizing;

/// The one part of vodozemac's account pickle read here: the one-time
/// prekeys' private halves, straight into vodozemac's key type.
#[derive(serde::Deserialize)]
struct AccountOtks {
    one_time_keys: OtkStore,
}

#[derive(serde::Deserialize)]
struct OtkStore {
    private_keys: BTreeMap<u64, Curve25519SecretKey>,
}

/// The private key of one of our one-time prekeys `otk`, from our account.
fn otk_secret(
    account: &vodozemac::olm::AccountPickle,
    otk: &[u8; 32],
) -> Result<Curve25519SecretKey> {
    let text = Zeroizing::new(
        serde_json::to_string(account)
            .map_err(|_| Error::Backend("the account pickle does not serialize".into()))?,
    );
    let store: AccountOtks = serde_json::from_str(&text).map_err(|_| {
        Error::Backend("vodozemac's account pickle has no one-time keys where expected".into())
    })?;
    store
        .one_time_keys
        .private_keys
        .into_values()
        .find(|s| Curve25519PublicKey::from(s).to_bytes() == *otk)
        .ok_or_else(|| {
            IdentityError::UnknownKey("a one-time prekey our account does not hold".into()).into()
        })
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
    let e_a = Curve25519SecretKey::from_slice(&Zeroizing::new(env.random_array::<32>()));
    let i_a = Curve25519PublicKey::from_bytes(alice.cik);
    let i_b = Curve25519PublicKey::from_bytes(bob.cik);
    let o_b_pub = Curve25519PublicKey::from_bytes(otk);
    // S = DH(I_A, O_B) || DH(E_A, I_B) || DH(E_A, O_B), each on Bob's side,
    // written straight into a zeroizing buffer.
    let mut s = Zeroizing::new([0u8; 96]);
    for (i, (k, p)) in [(&o_b, &i_a), (&e_a, &i_b), (&e_a, &o_b_pub)]
        .into_iter()
        .enumerate()
    {
        let shared = k
            .diffie_hellman(p)
            .ok_or_else(|| Error::from(IdentityError::Malformed("a low-order key".into())))?;
        s[32 * i..32 * (i + 1)].copy_from_slice(shared.as_bytes());
    }
    let mut rk = Zeroizing::new([0u8; 64]);
    if !olm_primitives::hkdf_sha256(&[0], &s[..], b"OLM_ROOT", &mut rk[..]) {
        return Err(Error::Backend("HKDF".into()));
    }
    let mut root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&rk[..32]);
    chain.copy_from_slice(&rk[32..]);
    // "Alice's" first ratchet key: Bob's choice, as the base key is.
    let ratchet = Zeroizing::new(env.random_array::<32>());
    let keys = SessionKeys {
        identity_key: i_a,
        base_key: Curve25519PublicKey::from(&e_a),
        one_time_key: o_b_pub,
    };
    let olm = Olm::from_root_key_material(
        vodozemac::olm::SessionConfig::version_1(),
        keys,
        *root,
        *chain,
        *ratchet,
    );
    let mut mirror = OmemoSession::mirror(&config, alice, bob, olm)?;
    let mut m = stanza;
    e2elab_core::stanza::set_attr(&mut m, "from", &config.peer_jid.to_string())?;
    e2elab_core::stanza::set_attr(&mut m, "to", &config.local_jid.to_string())?;
    mirror.protect(env, m)
}
