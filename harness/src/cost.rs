//! Public-key operations by class, summed from an operation log
//! ([`e2elab_core::ops`]): the columns every table shows beside CPU.

use e2elab_core::ops::OpClass;
use e2elab_core::OpLog;
use serde::{Deserialize, Serialize};

/// Public-key operations by class (fractional when averaged per message).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct PkOps {
    /// Modular exponentiations / DH (key generation included).
    pub modexp: f64,
    /// Signatures.
    pub sign: f64,
    /// Verifications.
    pub verify: f64,
    /// Public-key encryptions.
    pub pk_encrypt: f64,
    /// Public-key decryptions.
    pub pk_decrypt: f64,
}

impl PkOps {
    /// The public-key calls of `log`, by class.
    pub fn of(log: &OpLog) -> PkOps {
        let c = |k| log.calls_in(k) as f64;
        PkOps {
            modexp: c(OpClass::Modexp),
            sign: c(OpClass::Sign),
            verify: c(OpClass::Verify),
            pk_encrypt: c(OpClass::PkEncrypt),
            pk_decrypt: c(OpClass::PkDecrypt),
        }
    }

    /// Field-wise sum.
    pub fn add(&self, o: &PkOps) -> PkOps {
        PkOps {
            modexp: self.modexp + o.modexp,
            sign: self.sign + o.sign,
            verify: self.verify + o.verify,
            pk_encrypt: self.pk_encrypt + o.pk_encrypt,
            pk_decrypt: self.pk_decrypt + o.pk_decrypt,
        }
    }

    /// Every field times `k`.
    pub fn scale(&self, k: f64) -> PkOps {
        PkOps {
            modexp: self.modexp * k,
            sign: self.sign * k,
            verify: self.verify * k,
            pk_encrypt: self.pk_encrypt * k,
            pk_decrypt: self.pk_decrypt * k,
        }
    }

    /// All operations.
    pub fn total(&self) -> f64 {
        self.modexp + self.sign + self.verify + self.pk_encrypt + self.pk_decrypt
    }

    /// (class name, count) in column order.
    pub fn items(&self) -> [(&'static str, f64); 5] {
        [
            ("modexp", self.modexp),
            ("sign", self.sign),
            ("verify", self.verify),
            ("pk_encrypt", self.pk_encrypt),
            ("pk_decrypt", self.pk_decrypt),
        ]
    }
}

/// `counted`, or `derived` when any public-key count of `log` was derived.
pub fn source(log: &OpLog) -> &'static str {
    if log.public_key_derived() {
        "derived"
    } else {
        "counted"
    }
}
