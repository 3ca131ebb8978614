//! # e2elab-openpgp
//!
//! (docs are filled in below)
#![forbid(unsafe_code)]

pub mod armor;
mod common;
pub mod jep0027;
pub mod ox;
pub mod pgp;

pub use common::{identity_from_cert, import_public, lookup_by_key_id};
pub use jep0027::Jep0027;
pub use ox::Ox;
pub use pgp::KeyAlgo;
pub use sequoia_openpgp as openpgp;

use e2elab_core::{ApiMisuse, Options, Result};

/// The `key` profile option: `rsa1024`, `rsa2048`, `rsa3072`, `rsa4096` or `cv25519`.
fn key_option(o: &Options, default: KeyAlgo) -> Result<KeyAlgo> {
    o.check_known(&["key"])?;
    match o.get("key") {
        None => Ok(default),
        Some(v) => KeyAlgo::parse(v).ok_or_else(|| {
            ApiMisuse::BadOption {
                key: "key".into(),
                reason: format!("{v}: expected rsa1024, rsa2048, rsa3072, rsa4096 or cv25519"),
            }
            .into()
        }),
    }
}
