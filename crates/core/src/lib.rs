//! # e2elab-core
//!
//! The shared ground of xmpp-e2e-lab: the sans-IO [`Session`] trait every
//! end-to-end protocol implements, the [`Env`] handle (seeded CSPRNG and
//! virtual clock, the only sources of randomness and time a protocol sees),
//! the [`Outbox`] of stanzas and events, long-term [`Identity`] provisioning,
//! the [`ProtocolInfo`] descriptor of what a spec *claims*, typed [`Error`]s,
//! and [`SecretBytes`].
//!
//! The wire unit is the XMPP stanza as a [`minidom::Element`]: protocols take
//! an application stanza in and give protected stanzas out, and the peer turns
//! them back into the original. All sizes are measured on
//! [`stanza::serialize`]d stanzas.
#![forbid(unsafe_code)]

pub mod b64;
pub mod claims;
pub mod env;
pub mod error;
pub mod identity;
pub mod ops;
pub mod outbox;
pub mod sce;
pub mod secret;
pub mod session;
pub mod stanza;
pub mod timestamps;

pub use claims::{AfterBadInput, Claim, ClaimLevel, Property, ProtocolInfo};
pub use env::{Env, Timestamp};
pub use error::{ApiMisuse, DecodeError, Error, IdentityError, PeerMisbehaved, Result};
pub use identity::{Identity, IdentityRecord, PublicIdentity};
pub use jid::{self, BareJid, FullJid, Jid};
pub use minidom;
pub use minidom::Element;
pub use ops::{Op, OpLog};
pub use outbox::{Event, Outbox, PeerIdentity, Protection, Warning};
pub use secret::{ct_eq, SecretBytes};
pub use session::{Options, Protocol, Role, Session, SessionConfig, SessionState, StateExport};
pub use stanza::StanzaKind;
