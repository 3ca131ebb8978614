//! An `mls` session: one member of a two-member group.

use crate::provider::{self, CountingSigner, Provider};
use crate::{hex, info, Secret, CIPHERSUITE, ID, NS_MLS};
use e2elab_core::claims::ProtocolInfo;
use e2elab_core::stanza::{self, SenderMatch};
use e2elab_core::{
    sce, ApiMisuse, DecodeError, Element, Env, Error, Event, IdentityError, Outbox, PeerIdentity,
    PeerMisbehaved, Protection, Result, Role, SecretBytes, Session, SessionConfig, SessionState,
    StanzaKind, StateExport,
};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

fn mls_err(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Backend(format!("MLS {what}: {e}"))
}

fn peer_err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| PeerMisbehaved::IllegalParameter(format!("MLS {what}: {e:?}")).into()
}

/// An `mls` session.
pub struct MlsSession {
    role: Role,
    local_jid: String,
    local_bare: String,
    peer_jid: e2elab_core::Jid,
    peer_key: KeyPackage,
    provider: Provider,
    signer: SignatureKeyPair,
    group: Option<MlsGroup>,
    per_turn: bool,
    /// Something arrived from the peer since our last Commit (DECISIONS 5).
    owe_update: bool,
    held: Vec<Element>,
    joined: Arc<Mutex<HashSet<Vec<u8>>>>,
    announced: bool,
    closed: bool,
}

impl std::fmt::Debug for MlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsSession")
            .field("role", &self.role)
            .field("epoch", &self.group.as_ref().map(|g| g.epoch().as_u64()))
            .finish_non_exhaustive()
    }
}

impl MlsSession {
    pub(crate) fn new(
        config: SessionConfig,
        per_turn: bool,
        joined: Arc<Mutex<HashSet<Vec<u8>>>>,
    ) -> Result<Self> {
        config.identity.require_protocol(ID)?;
        let peer_public = config
            .peer_public
            .as_ref()
            .ok_or(IdentityError::PeerKeyRequired)?;
        e2elab_core::identity::require_protocol(peer_public, ID)?;
        let provider = Provider::default();
        let peer_bare = config.peer_jid.to_bare().to_string();
        // DECISIONS 3: the KeyPackage's signature, and its credential.
        let peer_key = KeyPackageIn::tls_deserialize_exact(&peer_public.data)
            .map_err(|e| IdentityError::Malformed(format!("MLS KeyPackage: {e:?}")))?
            .validate(provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|e| match e {
                KeyPackageVerifyError::InvalidSignature
                | KeyPackageVerifyError::InvalidLeafNodeSignature => {
                    Error::from(PeerMisbehaved::BadSignature)
                }
                other => IdentityError::Malformed(format!("MLS KeyPackage: {other:?}")).into(),
            })?;
        let named = BasicCredential::try_from(peer_key.leaf_node().credential().clone())
            .map_err(|e| IdentityError::Malformed(format!("MLS credential: {e:?}")))?;
        if !stanza::same_jid(
            &String::from_utf8_lossy(named.identity()),
            &peer_bare,
            SenderMatch::Bare,
        ) {
            return Err(IdentityError::JidMismatch(format!(
                "the KeyPackage names {}, the peer is {peer_bare}",
                String::from_utf8_lossy(named.identity())
            ))
            .into());
        }
        let secret: Secret = serde_json::from_slice(config.identity.secret().expose())
            .map_err(|e| IdentityError::Malformed(format!("MLS identity: {e}")))?;
        provider::load(provider.storage(), &secret.store).map_err(mls_err("store"))?;
        let signer = SignatureKeyPair::read(
            provider.storage(),
            &secret.signature_key,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| IdentityError::Malformed("MLS identity: no signature key".into()))?;
        Ok(Self {
            role: config.role,
            local_jid: config.local_jid.to_string(),
            local_bare: config.local_jid.to_bare().to_string(),
            peer_jid: config.peer_jid,
            peer_key,
            provider,
            signer,
            group: None,
            per_turn,
            owe_update: false,
            held: Vec::new(),
            joined,
            announced: false,
            closed: false,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(ApiMisuse::Closed.into())
        } else {
            Ok(())
        }
    }

    fn announce(&mut self, out: &mut Outbox) {
        if !self.announced && self.group.is_some() {
            self.announced = true;
            out.event(Event::Established(PeerIdentity {
                jid: self.peer_jid.to_bare().to_string(),
                fingerprint: Some(hex(self.peer_key.leaf_node().signature_key().as_slice())),
                sas: None,
                method: "MLS: the peer's KeyPackage (signature key, BasicCredential with the JID)"
                    .into(),
            }));
        }
    }

    /// A `<message>` to the peer carrying `parts` (kind, MLSMessage bytes).
    fn carrier(&self, base: Option<Element>, parts: &[(&str, Vec<u8>)]) -> Result<Element> {
        let mut m = match base {
            Some(b) => b,
            None => {
                let mut m = stanza::new(StanzaKind::Message);
                stanza::set_attr(&mut m, "from", &self.local_jid)?;
                stanza::set_attr(&mut m, "to", &self.peer_jid.to_string())?;
                m
            }
        };
        for (kind, bytes) in parts {
            let mut el = stanza::text_element("mls", NS_MLS, &e2elab_core::b64::encode(bytes));
            stanza::set_attr(&mut el, "kind", kind)?;
            m.append_child(el);
        }
        Ok(m)
    }

    /// Create the group, add the peer and send the Welcome (initiator).
    fn create(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        let gid = GroupId::from_slice(&env.random_array::<16>());
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(self.local_bare.as_bytes().to_vec()).into(),
            signature_key: self.signer.public().into(),
        };
        let signer = CountingSigner(&self.signer);
        let mut group =
            MlsGroup::new_with_group_id(&self.provider, &signer, &config, gid, credential)
                .map_err(|e| mls_err("group")(format!("{e:?}")))?;
        let (_commit, welcome, _info) = group
            .add_members(
                &self.provider,
                &signer,
                std::slice::from_ref(&self.peer_key),
            )
            .map_err(|e| mls_err("add")(format!("{e:?}")))?;
        group
            .merge_pending_commit(&self.provider)
            .map_err(|e| mls_err("merge")(format!("{e:?}")))?;
        let bytes = welcome
            .tls_serialize_detached()
            .map_err(|e| mls_err("welcome")(format!("{e:?}")))?;
        self.group = Some(group);
        out.send(self.carrier(None, &[("welcome", bytes)])?);
        self.announce(out);
        Ok(())
    }

    fn protect(&mut self, m: Element) -> Result<Element> {
        if m.has_child("mls", NS_MLS) {
            return Err(ApiMisuse::CannotProtect("already carries <mls>".into()).into());
        }
        let mut outer = m.clone();
        let nodes = outer.take_nodes();
        let content: Vec<Element> = m.children().cloned().collect();
        if nodes.len() != content.len() {
            return Err(ApiMisuse::CannotProtect("text directly inside the stanza".into()).into());
        }
        let env = sce::envelope(content, None, &self.local_bare)?;
        let plain = zeroize::Zeroizing::new(stanza::serialize(&env));
        let signer = CountingSigner(&self.signer);
        let group = self
            .group
            .as_mut()
            .ok_or_else(|| Error::Backend("no MLS group".into()))?;
        let mut parts = Vec::new();
        if self.per_turn && self.owe_update {
            let bundle = group
                .self_update(&self.provider, &signer, LeafNodeParameters::default())
                .map_err(|e| mls_err("update")(format!("{e:?}")))?;
            let commit = bundle
                .commit()
                .tls_serialize_detached()
                .map_err(|e| mls_err("commit")(format!("{e:?}")))?;
            group
                .merge_pending_commit(&self.provider)
                .map_err(|e| mls_err("merge")(format!("{e:?}")))?;
            parts.push(("commit", commit));
            self.owe_update = false;
        }
        let msg = group
            .create_message(&self.provider, &signer, plain.as_bytes())
            .map_err(|e| mls_err("message")(format!("{e:?}")))?;
        parts.push((
            "application",
            msg.tls_serialize_detached()
                .map_err(|e| mls_err("message")(format!("{e:?}")))?,
        ));
        self.carrier(Some(outer), &parts)
    }

    /// The other member's leaf must carry the peer's signature key.
    fn check_peer_member(&self, group: &MlsGroup) -> Result<()> {
        let want = self.peer_key.leaf_node().signature_key().as_slice();
        let own = group.own_leaf_index();
        let ok = group
            .members()
            .filter(|m| m.index != own)
            .all(|m| m.signature_key == want);
        if ok && group.members().count() == 2 {
            Ok(())
        } else {
            Err(
                IdentityError::UnknownKey("a group member other than the peer's KeyPackage".into())
                    .into(),
            )
        }
    }

    fn join(&mut self, bytes: &[u8]) -> Result<()> {
        if self.group.is_some() {
            return Err(PeerMisbehaved::UnexpectedMessage {
                got: "a Welcome".into(),
                expected: "no Welcome: already a member".into(),
            }
            .into());
        }
        let msg = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| DecodeError::invalid("<mls kind='welcome'>", format!("{e:?}")))?;
        let MlsMessageBodyIn::Welcome(w) = msg.extract() else {
            return Err(DecodeError::invalid("<mls kind='welcome'>", "not a Welcome").into());
        };
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build();
        let staged = StagedWelcome::new_from_welcome(&self.provider, &config, w, None)
            .map_err(peer_err("Welcome"))?;
        let group = staged
            .into_group(&self.provider)
            .map_err(peer_err("Welcome"))?;
        self.check_peer_member(&group)?;
        // The Welcome itself, not the group id, identifies a join: a group
        // id can repeat (it comes from the Env), a Welcome's HPKE
        // ciphertexts cannot.
        let digest = self
            .provider
            .crypto()
            .hash(openmls_traits::types::HashType::Sha2_256, bytes)
            .map_err(|e| mls_err("hash")(format!("{e:?}")))?;
        let mut joined = self
            .joined
            .lock()
            .map_err(|_| Error::Backend("MLS client memory poisoned".into()))?;
        if !joined.insert(digest) {
            return Err(PeerMisbehaved::Replay.into());
        }
        drop(joined);
        self.group = Some(group);
        Ok(())
    }

    /// Process one MLSMessage in the group: the envelope's bytes for an
    /// application message, `None` for a Commit.
    fn process(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| DecodeError::invalid("<mls>", format!("{e:?}")))?;
        let pm = msg
            .try_into_protocol_message()
            .map_err(|e| DecodeError::invalid("<mls>", format!("{e:?}")))?;
        let group = self
            .group
            .as_mut()
            .ok_or_else(|| PeerMisbehaved::UnexpectedMessage {
                got: "a group message".into(),
                expected: "a Welcome first".into(),
            })?;
        let processed = group
            .process_message(&self.provider, pm)
            .map_err(|_| Error::DecryptFailed)?;
        let sender = processed.credential().clone();
        let named = BasicCredential::try_from(sender)
            .map_err(|e| IdentityError::Malformed(format!("MLS credential: {e:?}")))?;
        let peer_bare = self.peer_jid.to_bare().to_string();
        if !stanza::same_jid(
            &String::from_utf8_lossy(named.identity()),
            &peer_bare,
            SenderMatch::Bare,
        ) {
            return Err(PeerMisbehaved::WrongAddress(format!(
                "the MLS sender is {}",
                String::from_utf8_lossy(named.identity())
            ))
            .into());
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(a) => Ok(Some(a.into_bytes())),
            ProcessedMessageContent::StagedCommitMessage(sc) => {
                group
                    .merge_staged_commit(&self.provider, *sc)
                    .map_err(peer_err("Commit"))?;
                self.check_peer_member(
                    self.group
                        .as_ref()
                        .ok_or_else(|| Error::Backend("no MLS group".into()))?,
                )?;
                Ok(None)
            }
            _ => Err(PeerMisbehaved::UnexpectedMessage {
                got: "a proposal".into(),
                expected: "a Commit or an application message".into(),
            }
            .into()),
        }
    }

    fn open(&mut self, m: &Element, out: &mut Outbox) -> Result<()> {
        let parts: Vec<&Element> = m.children().filter(|c| c.is("mls", NS_MLS)).collect();
        if parts.is_empty() {
            out.deliver_unprotected(self.group.is_some(), m.clone());
            return Ok(());
        }
        stanza::check_sender(m, &self.peer_jid, SenderMatch::Bare, true)?;
        let mut decoded = Vec::new();
        for p in &parts {
            if p.children().next().is_some() {
                return Err(DecodeError::invalid("<mls>", "child elements").into());
            }
            let kind = p.attr("kind").unwrap_or("");
            let text: String = p
                .text()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let bytes = e2elab_core::b64::decode(text.as_bytes())
                .map_err(|_| DecodeError::invalid("<mls>", "not base64"))?;
            decoded.push((kind.to_string(), bytes));
        }
        let mut delivered = None;
        for (kind, bytes) in decoded {
            match kind.as_str() {
                "welcome" => self.join(&bytes)?,
                "commit" => {
                    if self.process(&bytes)?.is_some() {
                        return Err(DecodeError::invalid(
                            "<mls kind='commit'>",
                            "an application message",
                        )
                        .into());
                    }
                }
                "application" => {
                    if delivered.is_some() {
                        return Err(DecodeError::invalid(
                            "<mls kind='application'>",
                            "more than one",
                        )
                        .into());
                    }
                    let plain =
                        zeroize::Zeroizing::new(self.process(&bytes)?.ok_or_else(|| {
                            DecodeError::invalid("<mls kind='application'>", "a Commit")
                        })?);
                    let xml = std::str::from_utf8(&plain)
                        .map_err(|_| DecodeError::invalid("<envelope>", "not UTF-8"))?;
                    let opened = sce::parse_envelope(xml)?;
                    sce::check_from(&opened, &self.peer_jid.to_bare().to_string())?;
                    let mut d = m.clone();
                    let _ = d.take_nodes();
                    for c in opened.content {
                        d.append_child(c);
                    }
                    delivered = Some(d);
                }
                other => {
                    return Err(
                        DecodeError::invalid("<mls kind>", format!("unknown: {other:?}")).into(),
                    )
                }
            }
        }
        self.owe_update = true;
        self.announce(out);
        if let Some(d) = delivered {
            let label = Protection::all(
                &d,
                true,
                true,
                format!(
                    "mls:{}",
                    hex(self.peer_key.leaf_node().signature_key().as_slice())
                ),
            );
            out.deliver(d, label);
        }
        // Stanzas held until the Welcome came.
        for h in std::mem::take(&mut self.held) {
            let w = self.protect(h)?;
            out.send(w);
        }
        Ok(())
    }
}

/// What [`MlsSession::dangerous_export_state`] exports (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Exported {
    kind: String,
    group_id: Option<Vec<u8>>,
    owe_update: bool,
    store: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A session rebuilt from an exported state (the security experiments'
/// attacker holding a member's whole store: group secrets and its
/// signature key).
pub fn restore(state: &StateExport, config: SessionConfig) -> Result<MlsSession> {
    if state.protocol != ID {
        return Err(IdentityError::WrongProtocol {
            expected: ID.into(),
            found: state.protocol.clone(),
        }
        .into());
    }
    let e: Exported = serde_json::from_slice(state.data.expose())
        .map_err(|e| IdentityError::Malformed(format!("MLS state: {e}")))?;
    let mut s = MlsSession::new(config, true, Arc::default())?;
    provider::load(s.provider.storage(), &e.store).map_err(mls_err("store"))?;
    if let Some(gid) = e.group_id {
        s.group = MlsGroup::load(s.provider.storage(), &GroupId::from_slice(&gid))
            .map_err(|e| mls_err("load")(format!("{e:?}")))?;
    }
    s.owe_update = e.owe_update;
    s.announced = true;
    Ok(s)
}

impl Session for MlsSession {
    fn info(&self) -> &ProtocolInfo {
        info()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn state(&self) -> SessionState {
        if self.closed {
            SessionState::Closed
        } else if self.group.is_some() {
            SessionState::Established
        } else {
            SessionState::Idle
        }
    }

    fn start(&mut self, env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        match (self.role, &self.group) {
            (Role::Initiator, None) => self.create(env, out),
            _ => Ok(()),
        }
    }

    fn send(&mut self, env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => {}
            Some(k) => {
                return Err(ApiMisuse::CannotProtect(format!(
                    "{} (this profile protects messages; DECISIONS 8)",
                    k.name()
                ))
                .into())
            }
            None => return Err(ApiMisuse::CannotProtect(stanza.name().to_string()).into()),
        }
        if self.group.is_none() {
            if self.role == Role::Initiator {
                self.create(env, out)?;
            } else {
                self.held.push(stanza);
                return Ok(());
            }
        }
        let wire = self.protect(stanza)?;
        out.send(wire);
        Ok(())
    }

    fn handle_inbound(&mut self, _env: &mut Env, stanza: Element, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        let cp = out.checkpoint();
        // DECISIONS 7: a copy of the store, restored if the stanza fails.
        let before = provider::dump(self.provider.storage()).map_err(mls_err("store"))?;
        let had_group = self.group.is_some();
        let (announced, owe, held) = (self.announced, self.owe_update, self.held.clone());
        let r = match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => self.open(&stanza, out),
            Some(_) => {
                out.deliver_unprotected(self.group.is_some(), stanza);
                Ok(())
            }
            None => Err(DecodeError::UnexpectedStanza(format!(
                "<{} xmlns='{}'>",
                stanza.name(),
                stanza.ns()
            ))
            .into()),
        };
        if r.is_err() {
            out.restore(cp);
            provider::load(self.provider.storage(), &before).map_err(mls_err("store"))?;
            let gid = self.group.as_ref().map(|g| g.group_id().clone());
            self.group = match (had_group, gid) {
                (true, Some(g)) => MlsGroup::load(self.provider.storage(), &g)
                    .map_err(|e| mls_err("load")(format!("{e:?}")))?,
                _ => None,
            };
            self.announced = announced;
            self.owe_update = owe;
            self.held = held;
        }
        r
    }

    fn close(&mut self, _env: &mut Env, out: &mut Outbox) -> Result<()> {
        self.check_open()?;
        self.closed = true;
        self.group = None;
        let _ = provider::load(self.provider.storage(), &[]);
        out.event(Event::Closed);
        Ok(())
    }

    fn dangerous_export_state(&self) -> Result<StateExport> {
        let e = Exported {
            kind: "mls".into(),
            group_id: self
                .group
                .as_ref()
                .map(|g| g.group_id().as_slice().to_vec()),
            owe_update: self.owe_update,
            store: provider::dump(self.provider.storage()).map_err(mls_err("store"))?,
        };
        let data = serde_json::to_vec(&e).map_err(|e| Error::Backend(format!("MLS state: {e}")))?;
        Ok(StateExport {
            protocol: ID.to_string(),
            role: self.role,
            data: SecretBytes::new(data),
        })
    }
}
