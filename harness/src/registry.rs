//! Every protocol profile the toolkit knows. A new protocol joins with one
//! line here: how to make a client of it, and its attack hooks for the
//! security experiments (see `README.md`, "Adding a protocol").

use crate::security::hooks::{self, Hooks};
use e2elab_core::{Protocol, ProtocolInfo};
use e2elab_esessions::{Esessions, Weakness};
use e2elab_plaintext::controls::{PlainControl, PlainControlProfile};
use std::sync::OnceLock;

/// One profile: a client factory and its attack hooks.
pub struct Entry {
    /// A new client (each call: a fresh store of retained secrets, keys, replay memory).
    pub make: fn() -> Box<dyn Protocol>,
    /// The profile's attack hooks (`e2elab security`).
    pub hooks: fn() -> Box<dyn Hooks>,
    info: &'static ProtocolInfo,
}

impl Entry {
    fn new(make: fn() -> Box<dyn Protocol>, hooks: fn() -> Box<dyn Hooks>) -> Entry {
        // One client per entry lives for the process so that its description is `'static`.
        let reference: &'static dyn Protocol = Box::leak(make());
        Entry {
            make,
            hooks,
            info: reference.info(),
        }
    }

    /// The profile's description.
    pub fn info(&self) -> &'static ProtocolInfo {
        self.info
    }

    /// Whether it is a known-bad control (family `control`).
    pub fn is_control(&self) -> bool {
        self.info.family == "control"
    }
}

macro_rules! controls {
    ($($w:ident),*) => {
        [$(Entry::new(
            || Box::new(Esessions::control(Weakness::$w)),
            || Box::new(hooks::esessions::Sigma::control(Weakness::$w)),
        )),*]
    };
}

/// Every profile, in report order: the real ones (the unprotected row
/// first), then the known-bad controls.
pub fn entries() -> &'static [Entry] {
    static E: OnceLock<Vec<Entry>> = OnceLock::new();
    E.get_or_init(|| {
        let mut v = vec![
            Entry::new(
                || Box::new(e2elab_plaintext::Plaintext),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(Esessions::sigma_r()),
                || Box::new(hooks::esessions::Sigma::real()),
            ),
            Entry::new(
                || Box::new(Esessions::sigma_i()),
                || Box::new(hooks::esessions::Sigma::real()),
            ),
            Entry::new(
                || Box::new(Esessions::simplified()),
                || Box::new(hooks::esessions::Sigma::simplified()),
            ),
            Entry::new(
                || Box::new(Esessions::ssh()),
                || Box::new(hooks::esessions::Ssh),
            ),
            Entry::new(
                || Box::new(e2elab_rfc3923::Rfc3923::classic()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_rfc3923::Rfc3923::modern()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_xmldsig::XmlDsig::dsig()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_xmldsig::XmlDsig::xmlenc()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_openpgp::Jep0027::default()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_openpgp::Ox::default()),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(e2elab_otr::OTR_V3),
                || Box::new(hooks::otr::Otr::v3()),
            ),
            Entry::new(
                || Box::new(e2elab_otr::OTR_V2),
                || Box::new(hooks::otr::Otr::v2()),
            ),
            Entry::new(
                || Box::new(e2elab_omemo::Omemo::new()),
                || Box::new(hooks::restoring::Restoring::omemo()),
            ),
            Entry::new(
                || Box::new(e2elab_mls::Mls::new()),
                || Box::new(hooks::restoring::Restoring::mls()),
            ),
            Entry::new(
                || Box::new(PlainControlProfile(PlainControl::SignedClear)),
                || Box::new(hooks::Generic),
            ),
            Entry::new(
                || Box::new(PlainControlProfile(PlainControl::StrictSequence)),
                || Box::new(hooks::Generic),
            ),
        ];
        v.extend(controls!(
            StaticDh,
            NoMac,
            NoCounter,
            AnonDh,
            ClearIdentity,
            UnsignedOffer,
            UnboundIdentity,
            SignedMessages
        ));
        v
    })
}

/// The entry with this id.
pub fn entry(id: &str) -> Option<&'static Entry> {
    entries().iter().find(|e| e.info.id == id)
}

/// All profiles (controls included), in order.
pub fn all() -> Vec<Box<dyn Protocol>> {
    entries().iter().map(|e| (e.make)()).collect()
}

/// The profiles a comparison measures by default: every real profile and
/// the unprotected row; the known-bad controls only when named.
pub fn compared() -> Vec<Box<dyn Protocol>> {
    entries()
        .iter()
        .filter(|e| !e.is_control() || e.info.id == e2elab_plaintext::ID)
        .map(|e| (e.make)())
        .collect()
}

/// The profile with this id.
pub fn get(id: &str) -> Option<Box<dyn Protocol>> {
    entry(id).map(|e| (e.make)())
}

/// Every id, in order.
pub fn ids() -> Vec<&'static str> {
    entries().iter().map(|e| e.info.id).collect()
}

/// Resolve a list of ids (`all`, or none, means the compared profiles:
/// every real one and the unprotected row); unknown ids are an error naming
/// the known ones.
pub fn resolve(ids_in: &[String]) -> crate::Result<Vec<Box<dyn Protocol>>> {
    if ids_in.is_empty() || ids_in.iter().any(|i| i == "all") {
        return Ok(compared());
    }
    ids_in
        .iter()
        .map(|id| {
            get(id).ok_or_else(|| {
                crate::Error::usage(format!(
                    "unknown protocol '{id}'; known: {}",
                    ids().join(", ")
                ))
            })
        })
        .collect()
}

/// Resolve to registry entries (same rules as [`resolve`]).
pub fn resolve_entries(ids_in: &[String]) -> crate::Result<Vec<&'static Entry>> {
    if ids_in.is_empty() || ids_in.iter().any(|i| i == "all") {
        return Ok(entries()
            .iter()
            .filter(|e| !e.is_control() || e.info.id == e2elab_plaintext::ID)
            .collect());
    }
    ids_in
        .iter()
        .map(|id| {
            entry(id).ok_or_else(|| {
                crate::Error::usage(format!(
                    "unknown protocol '{id}'; known: {}",
                    ids().join(", ")
                ))
            })
        })
        .collect()
}
