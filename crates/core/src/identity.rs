//! Long-term identities: one shape for every protocol, so the harness provisions
//! any protocol the same way.
//!
//! The key material itself is protocol-defined bytes (a PEM key, an OpenPGP
//! TSK, a libotr key file, ...). Core does no file I/O: the harness stores
//! [`IdentityRecord`] and [`PublicIdentity`] as JSON.

use crate::error::{IdentityError, Result};
use crate::secret::SecretBytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What may be shared with peers: the public half of an identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIdentity {
    /// Protocol id this identity is for.
    pub protocol: String,
    /// The bare JID it belongs to.
    pub jid: String,
    /// Protocol-defined public key material, hex in JSON.
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
    /// A fingerprint for humans (protocol-defined), if the protocol has keys.
    pub fingerprint: Option<String>,
}

/// A long-term identity: public half and private material.
#[derive(Clone)]
pub struct Identity {
    /// The public half.
    pub public: PublicIdentity,
    secret: SecretBytes,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Identity {
    /// Build from parts.
    pub fn new(public: PublicIdentity, secret: SecretBytes) -> Self {
        Self { public, secret }
    }

    /// The bare JID.
    pub fn jid(&self) -> &str {
        &self.public.jid
    }

    /// The protocol id.
    pub fn protocol(&self) -> &str {
        &self.public.protocol
    }

    /// The private key material.
    pub fn secret(&self) -> &SecretBytes {
        &self.secret
    }

    /// Fail unless this identity is for `protocol`.
    pub fn require_protocol(&self, protocol: &str) -> Result<()> {
        require_protocol(&self.public, protocol)
    }

    /// The serializable record (secret included: store it with care).
    pub fn to_record(&self) -> IdentityRecord {
        IdentityRecord {
            public: self.public.clone(),
            secret: hex::encode(self.secret.expose()),
        }
    }

    /// Back from a record.
    pub fn from_record(r: &IdentityRecord) -> Result<Self> {
        let secret = hex::decode(&r.secret)
            .map_err(|e| IdentityError::Malformed(format!("secret hex: {e}")))?;
        Ok(Self::new(r.public.clone(), SecretBytes::new(secret)))
    }
}

/// Fail unless `p` is for `protocol`.
pub fn require_protocol(p: &PublicIdentity, protocol: &str) -> Result<()> {
    if p.protocol == protocol {
        Ok(())
    } else {
        Err(IdentityError::WrongProtocol {
            expected: protocol.to_string(),
            found: p.protocol.clone(),
        }
        .into())
    }
}

/// An identity as stored on disk by `e2elab keygen` (JSON, mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// The public half.
    pub public: PublicIdentity,
    /// The private material, hex.
    pub secret: String,
}

impl fmt::Debug for IdentityRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityRecord")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Drop for IdentityRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_redaction() {
        let id = Identity::new(
            PublicIdentity {
                protocol: "p".into(),
                jid: "a@b".into(),
                data: vec![1, 2],
                fingerprint: None,
            },
            SecretBytes::from_slice(&[0xde, 0xad]),
        );
        let r = id.to_record();
        assert!(!format!("{r:?}").contains("dead"));
        assert!(!format!("{id:?}").contains("222"));
        let back = Identity::from_record(&r).unwrap();
        assert_eq!(back.secret().expose(), &[0xde, 0xad]);
        assert!(back.require_protocol("q").is_err());
        assert!(back.require_protocol("p").is_ok());
    }
}
