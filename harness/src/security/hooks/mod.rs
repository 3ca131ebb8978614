//! The attack hooks a profile gives the security experiments: what only a
//! protocol's own formats and keys let an attacker or a judge do (read with
//! a set of secrets, rewrite a rekey or a version offer, recompute a MAC,
//! verify an identity proof). The experiments (one file per property in
//! `harness/src/security/`) call these and never look at a profile id, so a
//! new protocol joins by implementing [`Hooks`] (or using [`Generic`]) and
//! adding one line to the registry.
//!
//! [`Generic`] serves every profile whose session is its long-term key
//! (no handshake: the unprotected row, RFC 3923, JEP-0027, OX, the
//! plaintext-based controls): everything it does goes through the
//! profile's own `Session` code, with the keys the attacker or judge holds.
//! [`esessions`] and [`otr`] serve the handshake protocols.

pub mod esessions;
pub mod otr;
pub mod restoring;

use super::world::{Solo, World};
use super::R;
use crate::driver::{ALICE, BOB};
use e2elab_core::{
    stanza, Element, Identity, Options, PublicIdentity, Role, StateExport, Timestamp,
};
use std::sync::Arc;

/// One stanza of a recorded transcript.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Sent by the initiator (Alice).
    pub from_initiator: bool,
    /// The serialized stanza.
    pub xml: String,
    /// When it was sent (virtual clock).
    pub at: Timestamp,
}

/// What a compromise gave the attacker.
#[derive(Clone, Default)]
pub struct Knowledge {
    /// Leaked long-term identities (private halves).
    pub identities: Vec<Arc<Identity>>,
    /// Leaked session states.
    pub states: Vec<StateExport>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field(
                "identities",
                &self
                    .identities
                    .iter()
                    .map(|i| i.jid().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("states", &self.states.len())
            .finish()
    }
}

impl Knowledge {
    /// Nothing at all.
    pub fn none() -> Knowledge {
        Knowledge::default()
    }

    /// A short description for evidence.
    pub fn describe(&self) -> String {
        let ids: Vec<String> = self
            .identities
            .iter()
            .map(|i| format!("long-term key of {}", i.jid()))
            .collect();
        let st: Vec<String> = self
            .states
            .iter()
            .map(|s| format!("session state of the {}", s.role.name()))
            .collect();
        let all: Vec<String> = ids.into_iter().chain(st).collect();
        if all.is_empty() {
            "nothing".into()
        } else {
            all.join(", ")
        }
    }
}

/// What an attacker made of one stanza.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Decrypted or recovered content (serialized), if read.
    pub content: Option<String>,
    /// Which key or session read it.
    pub how: Option<String>,
}

/// An attacker bound to a profile and a set of secrets, fed the wire in order.
pub trait Attacker: Send {
    /// Observe the next stanza of the transcript.
    fn observe(&mut self, s: &Seen) -> R<Reading>;

    /// Active attack: a stanza to deliver instead of `s` (the attacker's own
    /// healing material in place of the victim's), already observed as
    /// replaced, or `None` to leave `s` alone (then observed as it is); and
    /// what the attacker read of it.
    fn hijack(&mut self, s: &Seen) -> R<(Option<String>, Reading)> {
        Ok((None, self.observe(s)?))
    }

    /// Facts about what the secrets yielded (for the evidence).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a judge holds.
pub struct JudgeKnowledge {
    /// The purported author's public identity.
    pub alice: PublicIdentity,
    /// The judge's own identity for Bob's JID: Bob's when Bob cooperates
    /// (online judge), a stranger's own key otherwise (offline judge).
    pub judge_identity: Arc<Identity>,
    /// Bob's session state just before the stanza arrived (online judge).
    pub state: Option<StateExport>,
    /// Bob cooperates.
    pub online: bool,
    /// When the genuine stanza was sent: the judge verifies as of then.
    pub at: Timestamp,
}

/// A judge's verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The judge's check passed under what it holds.
    pub authentic: bool,
    /// What the judge recovered.
    pub content: Option<String>,
    /// Why, in a few words.
    pub reason: String,
}

/// A participation test: Bob's evidence that Alice took part, and Bob's
/// own simulation of such evidence for a session she never joined.
#[derive(Debug, Clone, Default)]
pub struct ParticipationTest {
    /// The judge on the genuine evidence.
    pub genuine: Verdict,
    /// The judge on the simulation.
    pub simulated: Verdict,
    /// What the evidence was.
    pub evidence: String,
    /// The evidence is something Bob's own session verified (a handshake
    /// proof): a judge that rejects it is broken, and the experiment an error.
    pub bob_verified: bool,
}

/// A stanza forged from the wire alone.
#[derive(Debug, Clone)]
pub struct WireForgery {
    /// Index (in the transcript) of the stanza it replaces.
    pub index: usize,
    /// The forged stanza.
    pub xml: String,
    /// How it was made.
    pub how: String,
}

/// The attack hooks of one profile (see the module docs).
pub trait Hooks: Send + Sync {
    /// The options every session of the security run uses, and why.
    fn options(&self) -> (Options, &'static str) {
        (Options::new(), "the profile's defaults")
    }

    /// An attacker holding `k`, bound to this world.
    fn attacker(&self, w: &World, k: &Knowledge) -> R<Box<dyn Attacker>> {
        SessionAttacker::new(w, k).map(|a| Box::new(a) as Box<dyn Attacker>)
    }

    /// The judge on one stanza Alice sent Bob.
    fn judge(&self, w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
        session_judge(w, xml, j)
    }

    /// What the judge's knowledge holder (Bob, or anyone offline) can write
    /// "from Alice" with `content` instead of what `genuine` carried.
    fn simulate(
        &self,
        w: &World,
        genuine: &str,
        content: &Element,
        j: &JudgeKnowledge,
    ) -> R<Option<String>> {
        let _ = genuine;
        forger_stanza(w, content, j.at)
    }

    /// Participation: Bob's evidence after the handshake (`bob_state`) and
    /// the transcript `t` (handshake and one message each way), judged,
    /// beside Bob's simulation of it.
    fn participation(
        &self,
        w: &World,
        t: &[Seen],
        bob_state: &StateExport,
    ) -> R<ParticipationTest> {
        let _ = bob_state;
        messages_show_participation(self, w, t)
    }

    /// Stanzas anyone could forge from the transcript alone (published MAC
    /// keys, malleable encryption).
    fn forge_from_wire(&self, w: &World, t: &[Seen]) -> R<Vec<WireForgery>> {
        let _ = (w, t);
        Ok(Vec::new())
    }

    /// Options under which Alice's offer carries a weaker alternative, with a
    /// description; `None` with the reason when the protocol offers nothing.
    fn weak_offer(&self) -> Result<(Options, &'static str), &'static str> {
        Err("no stanza carries an offer: the profile negotiates nothing on the wire")
    }

    /// Strip the preferred alternative from an offer in `el`; whether it changed.
    fn strip_offer(&self, el: &mut Element) -> bool {
        let _ = el;
        false
    }

    /// What the transcript shows was negotiated.
    fn negotiated(&self, t: &[Seen]) -> String {
        let _ = t;
        "nothing negotiated on the wire".into()
    }

    /// Eve registering `victim`'s public key as her own (`jid`).
    fn register(&self, victim: &PublicIdentity, jid: &str) -> R<PublicIdentity> {
        let mut p = victim.clone();
        p.jid = jid.to_string();
        Ok(p)
    }

    /// Eve (her own key) substituting her identity proof in a stanza `el`
    /// she relays from the victim, having seen `t`; whether she replaced
    /// one. By default she re-originates what she can read: a receiving
    /// session of her own, pinned to the victim's public key, checks and
    /// opens the stanza, and her own sending session sends its content to
    /// the target under her name (what works against signatures sent in
    /// clear); what she cannot read she leaves as it is.
    fn substitute_identity(
        &self,
        s: &Substitution,
        el: &mut Element,
        t: &[Seen],
        env: &mut e2elab_core::Env,
    ) -> R<bool> {
        let _ = (t, env);
        reoriginate(s, el)
    }
}

/// What Eve holds when she substitutes her identity in a relayed stanza.
pub struct Substitution {
    /// The profile's registry entry (to make her clients).
    pub entry: &'static crate::registry::Entry,
    /// Eve's own identity.
    pub eve: Arc<Identity>,
    /// Eve's full JID.
    pub eve_jid: String,
    /// The victim whose stanza she relays: its full JID and public identity.
    pub victim: (String, PublicIdentity),
    /// The one she relays it to: full JID and public identity.
    pub target: (String, PublicIdentity),
    /// The run's options.
    pub options: Options,
    /// The virtual time.
    pub at: Timestamp,
}

/// The default substitution: re-originate what Eve can read (see
/// [`Hooks::substitute_identity`]).
pub fn reoriginate(s: &Substitution, el: &mut Element) -> R<bool> {
    let mk = |role: Role, local: &str, peer: &str, peer_key: &PublicIdentity| -> R<Solo> {
        let client = (s.entry.make)();
        let mut env = e2elab_core::Env::for_party(0x0065_7665, role.name());
        env.set_now(s.at);
        let cfg = e2elab_core::SessionConfig {
            role,
            local_jid: crate::driver::jid(local)?,
            peer_jid: crate::driver::jid(peer)?,
            identity: s.eve.clone(),
            peer_public: Some(peer_key.clone()),
            options: s.options.clone(),
        };
        let session = client
            .new_session(&mut env, cfg)
            .map_err(|e| crate::fail!("Eve's session: {e}"))?;
        Ok(Solo::new((session, env), s.at))
    };
    // Eve reads it as the victim's peer would, with her own key.
    let Ok(mut reader) = mk(Role::Responder, &s.eve_jid, &s.victim.0, &s.victim.1) else {
        return Ok(false);
    };
    reader.feed(&stanza::serialize(el));
    let Some(content) = reader.delivered.first().cloned() else {
        return Ok(false);
    };
    let Ok(mut writer) = mk(Role::Initiator, &s.eve_jid, &s.target.0, &s.target.1) else {
        return Ok(false);
    };
    writer.start();
    let mut app = content;
    let _ = stanza::set_attr(&mut app, "from", &s.eve_jid);
    let _ = stanza::set_attr(&mut app, "to", &s.target.0);
    let out = writer.send(app);
    let Some(x) = out.into_iter().max_by_key(String::len) else {
        return Ok(false);
    };
    *el = stanza::parse(&x).map_err(crate::Error::msg)?;
    Ok(true)
}

/// The hooks of every profile whose session is its long-term key: all of it
/// through the profile's own sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generic;

impl Hooks for Generic {}

/// The session-based attacker: for each direction, receiving sessions built
/// from every leaked identity of that receiver and from the attacker's own
/// key for the receiver's JID; whatever they deliver is read.
pub struct SessionAttacker {
    receivers: Vec<(bool, String, Solo)>,
}

impl SessionAttacker {
    /// Build for `k`.
    pub fn new(w: &World, k: &Knowledge) -> R<SessionAttacker> {
        let mut receivers = Vec::new();
        let mut add = |id: Arc<Identity>, label: String| -> R<()> {
            let is_alice = id.jid() == ALICE;
            if id.jid() != ALICE && id.jid() != BOB {
                return Ok(());
            }
            let (me, peer) = if is_alice { (0, 1) } else { (1, 0) };
            let client = w.fresh_client();
            let s = match w.side_session(
                client.as_ref(),
                me,
                id,
                Some(w.ids()[peer].public.clone()),
                None,
            ) {
                Ok(s) => s,
                Err(e) => return Err(crate::fail!("attacker's receiving session: {e}")),
            };
            // Alice's leaked key reads what Bob sends, and vice versa.
            receivers.push((!is_alice, label, Solo::new(s, Timestamp::DEFAULT_START)));
            Ok(())
        };
        for id in &k.identities {
            add(
                id.clone(),
                format!("a session built from the leaked key of {}", id.jid()),
            )?;
        }
        for m in &w.mallory {
            add(
                m.clone(),
                format!(
                    "a session built from the attacker's own key for {}",
                    m.jid()
                ),
            )?;
        }
        Ok(SessionAttacker { receivers })
    }

    /// One more receiving session: it reads what the initiator sends when
    /// `reads_initiator`, else what the responder sends.
    pub fn add_receiver(&mut self, reads_initiator: bool, label: String, solo: Solo) {
        self.receivers.push((reads_initiator, label, solo));
    }
}

impl Attacker for SessionAttacker {
    fn observe(&mut self, s: &Seen) -> R<Reading> {
        let mut r = Reading::default();
        for (reads_initiator, label, solo) in &mut self.receivers {
            if *reads_initiator != s.from_initiator {
                continue;
            }
            let before = solo.delivered.len();
            solo.env.set_now(s.at);
            solo.feed(&s.xml);
            if let Some(d) = solo.delivered[before..].first() {
                r.content = Some(stanza::serialize(d));
                r.how = Some(label.clone());
                break;
            }
        }
        Ok(r)
    }
}

/// The session-based judge: a receiving session for Bob's JID built from
/// the judge's identity (Bob's own when online), pinned to Alice's key.
pub fn session_judge(w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
    let client = w.fresh_client();
    let s = w.side_session(
        client.as_ref(),
        1,
        j.judge_identity.clone(),
        Some(j.alice.clone()),
        None,
    )?;
    let mut solo = Solo::new(s, j.at);
    solo.feed(xml);
    if !solo.warnings.is_empty() {
        return Ok(Verdict {
            authentic: false,
            content: solo.delivered.first().map(stanza::serialize),
            reason: format!(
                "the judge's receiving session flagged it ({})",
                solo.warnings.join(", ")
            ),
        });
    }
    Ok(match solo.delivered.first() {
        Some(d) => Verdict {
            authentic: true,
            content: Some(stanza::serialize(d)),
            reason: format!(
                "a receiving session of the profile built from {} accepted it as protected",
                if j.online {
                    "Bob's identity"
                } else {
                    "the judge's own key"
                }
            ),
        },
        None => Verdict {
            authentic: false,
            content: None,
            reason: format!(
                "the judge's receiving session did not accept it ({})",
                if solo.errors.is_empty() {
                    if solo.unprotected.is_empty() {
                        "nothing delivered".to_string()
                    } else {
                        "delivered only as unprotected".to_string()
                    }
                } else {
                    solo.errors.join(", ")
                }
            ),
        },
    })
}

/// A forger's stanza: a session of the forger's own key labelled with
/// Alice's JID, sending `content` at `at` to Bob's real public key. `None`
/// when the session emits nothing it could send without a handshake.
pub fn forger_stanza(w: &World, content: &Element, at: Timestamp) -> R<Option<String>> {
    let s = w.side_session(
        w.mallory_client.as_ref(),
        0,
        w.mallory[0].clone(),
        Some(w.bob.id.public.clone()),
        None,
    )?;
    let mut solo = Solo::new(s, at);
    solo.start();
    let before = solo.emitted.len();
    let out = solo.send(content.clone());
    if out.is_empty() || solo.emitted.len() == before {
        return Ok(None);
    }
    // A handshake message is not a message the judge could attribute.
    Ok(out.into_iter().max_by_key(String::len))
}

/// Participation without a handshake: what Alice's messages show to the
/// online judge, against Bob's simulation.
pub fn messages_show_participation<H: Hooks + ?Sized>(
    h: &H,
    w: &World,
    t: &[Seen],
) -> R<ParticipationTest> {
    messages_show_participation_to(h, w, t, None)
}

/// The same, the judge holding Bob's session state (`bob_state`) as well
/// as his key: what a member of a group or ratchet shows.
pub fn messages_show_participation_to<H: Hooks + ?Sized>(
    h: &H,
    w: &World,
    t: &[Seen],
    bob_state: Option<StateExport>,
) -> R<ParticipationTest> {
    let mut j = JudgeKnowledge {
        alice: w.alice.id.public.clone(),
        judge_identity: w.bob.id.clone(),
        state: bob_state,
        online: true,
        at: Timestamp::DEFAULT_START,
    };
    // Each of Alice's stanzas, judged, beside Bob's simulation of a stanza
    // of the same kind: the first that is transferable is the evidence,
    // else the first the judge accepts.
    let mut best: Option<(Verdict, Verdict)> = None;
    for s in t.iter().filter(|s| s.from_initiator) {
        j.at = s.at;
        let g = judge_checked(h, w, &s.xml, &j)?;
        if !g.authentic {
            if best.is_none() {
                best = Some((g, Verdict::default()));
            }
            continue;
        }
        let kind = stanza::parse(&s.xml)
            .ok()
            .and_then(|e| e2elab_core::StanzaKind::of(&e))
            .unwrap_or(e2elab_core::StanzaKind::Message);
        let (content, _) = super::world::canary_stanza(kind, 0, 950)?;
        let sim = match h.simulate(w, &s.xml, &content, &j)? {
            Some(f) => judge_checked(h, w, &f, &j)?,
            None => Verdict {
                authentic: false,
                content: None,
                reason: "Bob could not write such a stanza".into(),
            },
        };
        let transferable = !sim.authentic;
        let replace = match &best {
            None => true,
            Some((bg, bs)) => !bg.authentic || (transferable && bs.authentic),
        };
        if replace {
            best = Some((g, sim));
        }
        if transferable {
            break;
        }
    }
    let (genuine, simulated) = best.unwrap_or((
        Verdict {
            authentic: false,
            content: None,
            reason: "no stanza from Alice in the transcript".into(),
        },
        Verdict::default(),
    ));
    Ok(ParticipationTest {
        genuine,
        simulated,
        evidence: "no handshake: what Alice's own stanzas show Bob's judge".into(),
        bob_verified: false,
    })
}

/// The judge, checked: a verdict counts as authentic only when the judge
/// also rejects a copy of the stanza with its protected payload changed
/// (its acceptance depends on a check of those bytes).
pub fn judge_checked<H: Hooks + ?Sized>(
    h: &H,
    w: &World,
    xml: &str,
    j: &JudgeKnowledge,
) -> R<Verdict> {
    let mut v = h.judge(w, xml, j)?;
    if !v.authentic {
        return Ok(v);
    }
    // Copies with one bit of the payload changed at three places: if the
    // judge accepts them all, its acceptance checks nothing.
    let mut all_accepted = true;
    for (n, d) in [(1, 4), (1, 2), (3, 4)] {
        let tampered = super::wire::mutate_payload(xml, super::wire::Mutation::Flip(n, d))
            .ok_or("the judged stanza has no payload to tamper with")?;
        if !h.judge(w, &tampered, j)?.authentic {
            all_accepted = false;
            break;
        }
    }
    if all_accepted {
        v.authentic = false;
        v.reason = format!(
            "{}; but it accepts copies with the payload changed too: nothing is checked",
            v.reason
        );
    }
    Ok(v)
}
