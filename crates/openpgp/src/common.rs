//! What both profiles share: identities, session set-up, the established event.

use crate::pgp::{self, KeyAlgo};
use e2elab_core::{
    stanza, ApiMisuse, Env, Error, Event, Identity, IdentityError, Outbox, PeerIdentity,
    PublicIdentity, Result, SecretBytes, SessionConfig,
};
use sequoia_openpgp::Cert;

/// Make an identity for `jid` (bare) under protocol `id`: the public data is
/// the binary transferable public key, the secret the binary TSK, the
/// fingerprint the primary key's v4 fingerprint in hex.
pub(crate) fn generate_identity(
    id: &str,
    algo: KeyAlgo,
    env: &mut Env,
    jid: &str,
) -> Result<Identity> {
    let bare = stanza::bare_jid(jid);
    let cert = pgp::generate(algo, bare, env.now())?;
    identity_from_cert(id, bare, &cert)
}

/// Wrap an existing certificate with secrets (e.g. imported from GnuPG) as an identity.
pub fn identity_from_cert(protocol: &str, bare_jid: &str, cert: &Cert) -> Result<Identity> {
    if !cert.is_tsk() {
        return Err(IdentityError::Malformed("no secret key material".into()).into());
    }
    let public = public_identity(protocol, bare_jid, cert)?;
    let secret = pgp::secret_bytes(cert)?;
    Ok(Identity::new(public, SecretBytes::from(secret)))
}

/// Import a peer's certificate (binary or ASCII-armored) as a public identity.
pub fn import_public(protocol: &str, bare_jid: &str, data: &[u8]) -> Result<PublicIdentity> {
    let cert = pgp::parse_cert(data)?;
    public_identity(protocol, bare_jid, &cert)
}

fn public_identity(protocol: &str, bare_jid: &str, cert: &Cert) -> Result<PublicIdentity> {
    Ok(PublicIdentity {
        protocol: protocol.to_string(),
        jid: bare_jid.to_string(),
        data: pgp::public_bytes(cert)?,
        fingerprint: Some(pgp::fingerprint(cert)),
    })
}

/// Look a certificate up by key id or fingerprint (hex, any case) among `certs`:
/// the primary key or any subkey matches.
pub fn lookup_by_key_id<'a>(certs: &'a [Cert], key_id: &str) -> Option<&'a Cert> {
    let want = key_id.trim().to_ascii_uppercase();
    certs.iter().find(|c| {
        c.keys()
            .any(|k| k.key().keyid().to_hex() == want || k.key().fingerprint().to_hex() == want)
    })
}

/// The parsed keys and addresses of a session.
pub(crate) struct Keys {
    pub own: Cert,
    pub peer: Cert,
    pub peer_fingerprint: String,
}

pub(crate) fn session_keys(id: &str, config: &SessionConfig) -> Result<Keys> {
    config.identity.require_protocol(id)?;
    let peer_pub = config
        .peer_public
        .as_ref()
        .ok_or(IdentityError::PeerKeyRequired)?;
    e2elab_core::identity::require_protocol(peer_pub, id)?;
    let own = pgp::parse_tsk(config.identity.secret().expose())?;
    let peer = pgp::parse_cert(&peer_pub.data)?;
    Ok(Keys {
        peer_fingerprint: pgp::fingerprint(&peer),
        own,
        peer,
    })
}

/// The small state every session of both profiles carries.
#[derive(Debug)]
pub(crate) struct Basics {
    pub peer_jid: e2elab_core::Jid,
    pub peer_fingerprint: String,
    pub announced: bool,
    pub closed: bool,
    pub method: &'static str,
}

impl Basics {
    pub fn announce(&mut self, out: &mut Outbox) {
        if !self.announced {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_jid.to_bare().to_string(),
                fingerprint: Some(self.peer_fingerprint.clone()),
                sas: None,
                method: self.method.to_string(),
            }));
        }
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(ApiMisuse::Closed.into())
        } else {
            Ok(())
        }
    }

    pub fn close(&mut self, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        out.event(Event::Closed);
        Ok(())
    }
}

pub(crate) fn err_cannot(what: &str) -> Error {
    ApiMisuse::CannotProtect(what.to_string()).into()
}
