//! # `rfc3923`: S/MIME over CPIM, PIDF and xmpp+xml (skeleton)
#![forbid(unsafe_code)]
pub mod cert;
pub mod cms;
mod der;
pub mod mime;
pub mod payload;
