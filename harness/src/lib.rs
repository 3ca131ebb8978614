//! # e2elab: the xmpp-e2e-lab harness
//!
//! Drives the sans-IO protocol sessions of the workspace through an in-memory
//! [`link::Link`] that serializes and counts every stanza, times every session
//! call, records a transcript on the virtual clock and lets an
//! [`adversary::Adversary`] drop, duplicate, replay, reorder, modify or inject
//! stanzas. On top of it: the workload [`driver`], the generic
//! [`conformance`] suite, the protocol [`registry`] and the `e2elab` CLI.

pub mod adversary;
pub mod cli_compare;
pub mod compare;
pub mod conformance;
pub mod cost;
pub mod cpu;
pub mod doc;
pub mod driver;
pub mod error;
pub mod fuzz;
pub mod link;
pub mod output;
pub mod paper;
pub mod peer;
pub mod registry;
pub mod report;
pub mod requirements;
pub mod security;
pub mod store;
pub mod xmpp;

pub use e2elab_core as core;
pub use error::{Error, Result};
