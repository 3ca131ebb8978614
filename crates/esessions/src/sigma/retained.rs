//! The end of a 4-message negotiation: retained secrets (XEP-0116 §4.5.4,
//! §4.6.1), the final shared secret K', the SAS, and the new retained
//! secret that replaces the one used.

use super::settings::KeyMode;
use super::SigmaSession;
use crate::{prim, Weakness};
use e2elab_core::{stanza, Error, Result, SecretBytes, Warning};

/// Retained secrets shared with the peer's clients, and their store keys.
pub(super) type RetainedList = (Vec<SecretBytes>, Vec<(String, String)>);

/// sas28x5 (XEP-0116 §"The sas28x5 SAS Algorithm"): the low 24 bits of
/// SHA256(M_A | formB | "Short Authentication String") in base 28, most
/// significant digit first, zero-padded to five digits (`pad`; Gajim did not pad).
pub fn sas28x5(m_a: &[u8], form_b: &[u8], pad: bool) -> Result<String> {
    const DIGITS: &[u8] = b"acdefghikmopqruvwxy123456789";
    let h = prim::sha256(&[m_a, form_b, b"Short Authentication String"])?;
    let mut v = u32::from_be_bytes([0, h[29], h[30], h[31]]);
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 28) as usize]);
        v /= 28;
        if v == 0 && (!pad || out.len() >= 5) {
            break;
        }
    }
    out.reverse();
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `rshashes` entry: HMAC(key = N_A, SRS).
pub(super) fn rshash(n_a: &[u8], srs: &SecretBytes) -> Result<[u8; 32]> {
    prim::hmac_sha256(n_a, &[srs.expose()])
}

/// `srshash`: HMAC(SRS, "Shared Retained Secret").
pub(super) fn srshash(srs: &SecretBytes) -> Result<[u8; 32]> {
    prim::hmac_sha256(srs.expose(), &[b"Shared Retained Secret"])
}

impl SigmaSession {
    /// Our retained secrets with any client of the peer's bare JID.
    pub(super) fn retained_for_peer(&self) -> Result<RetainedList> {
        let s = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        let lb = stanza::bare_jid(self.local.as_str());
        let pb = stanza::bare_jid(self.peer.as_str());
        let mut secrets = Vec::new();
        let mut keys = Vec::new();
        for ((l, p), v) in s.retained.iter() {
            if l == lb && stanza::bare_jid(p) == pb {
                secrets.push(v.clone());
                keys.push((l.clone(), p.clone()));
            }
        }
        Ok((secrets, keys))
    }

    /// The shared retained secret: the first of ours with the peer's clients that `matches`.
    pub(super) fn find_srs(
        &self,
        matches: impl Fn(&SecretBytes) -> Result<bool>,
    ) -> Result<Option<(SecretBytes, (String, String))>> {
        let (secrets, keys_of) = self.retained_for_peer()?;
        for (s, k) in secrets.into_iter().zip(keys_of) {
            if matches(&s)? {
                return Ok(Some((s, k)));
            }
        }
        Ok(None)
    }

    /// K' = SHA256(K | SRS | OSS), hashed even with neither (DECISIONS 14).
    pub(super) fn final_k(&self, k: &SecretBytes, srs: Option<&[u8]>) -> Result<SecretBytes> {
        let oss = self
            .settings
            .oss
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or(b"");
        Ok(SecretBytes::new(
            prim::sha256(&[k.expose(), srs.unwrap_or(b""), oss])?.to_vec(),
        ))
    }

    /// The SAS, the new retained secret in place of the shared one, and the
    /// SAS reminder when neither a key nor a retained secret authenticated the peer.
    pub(super) fn conclude(
        &self,
        k_final: &SecretBytes,
        srs: Option<(SecretBytes, (String, String))>,
        m_a: &[u8],
        form_b: &[u8],
        peer_mode: KeyMode,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<String>> {
        if self.settings.weakness == Some(Weakness::AnonDh) {
            // The unauthenticated-DH control: nothing to compare, nothing retained.
            return Ok(None);
        }
        let sas = sas28x5(m_a, form_b, !self.settings.gajim)?;
        let had_srs = srs.is_some();
        self.retain(k_final, srs.map(|(_, k)| k))?;
        if !had_srs && peer_mode == KeyMode::None {
            warnings.push(Warning::Unauthenticated {
                reason: format!(
                    "no retained secret in common with {}: compare the SAS {sas}",
                    self.peer
                ),
            });
        }
        Ok(Some(sas))
    }

    /// Store HMAC(K', "New Retained Secret") for the peer, replacing `srs_key`.
    fn retain(&self, k_final: &SecretBytes, srs_key: Option<(String, String)>) -> Result<()> {
        let rs = prim::hmac_sha256(k_final.expose(), &[b"New Retained Secret"])?;
        let mut s = self
            .store
            .lock()
            .map_err(|_| Error::Backend("store poisoned".into()))?;
        if let Some(k) = srs_key {
            s.retained.remove(&k);
        }
        s.retained.insert(
            (
                stanza::bare_jid(self.local.as_str()).to_string(),
                self.peer.to_string(),
            ),
            SecretBytes::from_slice(&rs),
        );
        Ok(())
    }
}

/// How the peer was authenticated, for [`e2elab_core::PeerIdentity::method`].
pub(super) fn method(mode: KeyMode, had_srs: bool) -> String {
    let base = match mode {
        KeyMode::None => "sas",
        _ => "rsa-sha256 signature + sas",
    };
    if had_srs {
        format!("{base} + retained secret")
    } else {
        base.to_string()
    }
}
