//! The attack hooks of the ratcheting profiles whose crates can rebuild a
//! session from its exported state (`omemo`: `e2elab_omemo::restore`,
//! without the device's account; `mls`: `e2elab_mls::restore`, the
//! member's whole store): everything through the profile's own sessions
//! (like [`super::Generic`]), plus an attacker who holds a compromised
//! state. She runs the rebuilt session beside the victim on what she
//! observes: she reads what the state's keys decrypt and follows the
//! ratchet or the key schedule exactly as far as the keys she holds let
//! her. Nothing here decides an outcome: the protocol does.
//!
//! Actively ([`Attacker::hijack`]), she uses a second copy of the leaked
//! state as an impostor: every stanza the victim sends is replaced by one
//! the impostor writes (with a ratchet key of the attacker's own, which is
//! the healing value), and every stanza to the victim is fed to the
//! impostor, which reads what the peer's ratchet, now keyed to hers, lets it.
//!
//! Bob's simulation for the repudiation judges ([`Hooks::simulate`]):
//! for `omemo`, Olm's 3DH lets Bob compute every secret of a key exchange
//! "from Alice" with his own private keys
//! ([`e2elab_omemo::simulate::simulate_from_peer`]), so the online judge is
//! shown a stanza Bob wrote in her name beside her genuine one. For `mls`
//! Bob has no such construction (application messages carry Alice's
//! signature inside the encryption); the default simulation, a forger's own
//! key, is what he can do.

use super::{
    forger_stanza, Attacker, Hooks, JudgeKnowledge, Knowledge, ParticipationTest, Reading, Seen,
    SessionAttacker, Verdict,
};
use crate::driver::full_jid;
use crate::security::world::{Solo, World};
use crate::security::R;
use e2elab_core::{stanza, Element, Env, Role, Session, SessionConfig, StateExport, Timestamp};

/// A crate's function that rebuilds a session from its exported state.
pub type Restore = fn(&StateExport, SessionConfig) -> e2elab_core::Result<Box<dyn Session>>;

/// A crate's function with which Bob (his own `SessionConfig`) writes a
/// stanza in Alice's name.
pub type Simulate = fn(SessionConfig, &mut Env, Element) -> e2elab_core::Result<Element>;

fn rebuilt(w: &World, restore: Restore, st: &StateExport, label: &str) -> R<(usize, Solo)> {
    let me = usize::from(st.role == Role::Responder);
    let cfg = SessionConfig {
        role: st.role,
        local_jid: crate::driver::jid(&full_jid(me))?,
        peer_jid: crate::driver::jid(&full_jid(1 - me))?,
        identity: w.ids()[me].clone(),
        peer_public: Some(w.ids()[1 - me].public.clone()),
        options: w.options.clone(),
    };
    let s = restore(st, cfg).map_err(|e| crate::fail!("restoring the leaked state: {e}"))?;
    let env = Env::for_party(w.next_seed(), label);
    Ok((me, Solo::new((s, env), Timestamp::DEFAULT_START)))
}

/// The readers of [`SessionAttacker`] plus impostors built from leaked
/// states (one per state: it replaces what its side sends).
struct OmemoAttacker {
    readers: SessionAttacker,
    impostors: Vec<(usize, Solo)>,
    replaced: usize,
}

impl Attacker for OmemoAttacker {
    fn observe(&mut self, s: &Seen) -> R<Reading> {
        self.readers.observe(s)
    }

    fn hijack(&mut self, s: &Seen) -> R<(Option<String>, Reading)> {
        let from = usize::from(!s.from_initiator);
        for (side, imp) in &mut self.impostors {
            imp.env.set_now(s.at);
            if *side == from {
                // The victim's stanza: replaced by the impostor's own,
                // under the victim's addresses, with her own ratchet key.
                let Ok(orig) = stanza::parse(&s.xml) else {
                    continue;
                };
                if orig.name() != "message" {
                    continue;
                }
                let mut m = stanza::new(e2elab_core::StanzaKind::Message);
                for a in ["from", "to", "type", "id"] {
                    if let Some(v) = orig.attr(a) {
                        stanza::set_attr(&mut m, a, v).map_err(crate::Error::msg)?;
                    }
                }
                m.append_child(stanza::text_element(
                    "body",
                    stanza::NS_CLIENT,
                    &format!("the attacker's message #{}", self.replaced + 1),
                ));
                let out = imp.send(m);
                if let Some(x) = out.into_iter().max_by_key(String::len) {
                    self.replaced += 1;
                    let r = self.readers.observe(&Seen {
                        from_initiator: s.from_initiator,
                        xml: x.clone(),
                        at: s.at,
                    })?;
                    return Ok((Some(x), r));
                }
            } else {
                let n = imp.feed(&s.xml);
                if n > 0 {
                    if let Some(d) = imp.delivered.last() {
                        return Ok((
                            None,
                            Reading {
                                content: Some(stanza::serialize(d)),
                                how: Some(
                                    "the impostor (the leaked state, ratcheting with the attacker's own keys)"
                                        .into(),
                                ),
                            },
                        ));
                    }
                }
            }
        }
        Ok((None, self.readers.observe(s)?))
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "the impostor replaced {} stanza(s) with its own",
            self.replaced
        )]
    }
}

/// The hooks of a profile whose states can be rebuilt.
#[derive(Debug, Clone, Copy)]
pub struct Restoring {
    /// The crate's rebuilder.
    pub restore: Restore,
    /// What a rebuilt state is called in evidence.
    pub what: &'static str,
    /// Bob's own simulation of Alice's stanzas, where the protocol gives
    /// him one (else a forger's own key is what he has).
    pub simulate: Option<Simulate>,
}

impl Restoring {
    /// `omemo`'s.
    pub fn omemo() -> Self {
        Restoring {
            restore: |st, cfg| Ok(Box::new(e2elab_omemo::restore(st, cfg)?)),
            what: "the Olm session rebuilt from",
            simulate: Some(e2elab_omemo::simulate::simulate_from_peer),
        }
    }

    /// `mls`'s.
    pub fn mls() -> Self {
        Restoring {
            restore: |st, cfg| Ok(Box::new(e2elab_mls::restore(st, cfg)?)),
            what: "the MLS group loaded from",
            simulate: None,
        }
    }
}

impl Hooks for Restoring {
    /// The online judge holds Bob's state: the state rebuilt reads the
    /// stanza first (a message inside a ratchet or group needs it); what it
    /// does not read goes to the session judge built from the judge's key.
    fn judge(&self, w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
        if let Some(st) = &j.state {
            let cfg = SessionConfig {
                role: st.role,
                local_jid: crate::driver::jid(&full_jid(1))?,
                peer_jid: crate::driver::jid(&full_jid(0))?,
                identity: j.judge_identity.clone(),
                peer_public: Some(j.alice.clone()),
                options: w.options.clone(),
            };
            if let Ok(s) = (self.restore)(st, cfg) {
                let env = Env::for_party(w.next_seed(), "judge");
                let mut solo = Solo::new((s, env), j.at);
                solo.feed(xml);
                if let Some(d) = solo.delivered.first() {
                    return Ok(Verdict {
                        authentic: true,
                        content: Some(stanza::serialize(d)),
                        reason: format!("{} Bob's state accepted it as protected", self.what),
                    });
                }
            }
        }
        super::session_judge(w, xml, j)
    }

    /// Online (Bob cooperates), Bob writes in Alice's name with the crate's
    /// own simulation where there is one: his identity, her public key, the
    /// genuine stanza's addresses. Offline, and without one, a forger's own
    /// key.
    fn simulate(
        &self,
        w: &World,
        genuine: &str,
        content: &Element,
        j: &JudgeKnowledge,
    ) -> R<Option<String>> {
        let Some(sim) = self.simulate.filter(|_| j.online) else {
            return forger_stanza(w, content, j.at);
        };
        let cfg = SessionConfig {
            role: Role::Responder,
            local_jid: crate::driver::jid(&full_jid(1))?,
            peer_jid: crate::driver::jid(&full_jid(0))?,
            identity: j.judge_identity.clone(),
            peer_public: Some(j.alice.clone()),
            options: w.options.clone(),
        };
        let mut m = content.clone();
        if let Ok(g) = stanza::parse(genuine) {
            for a in ["type", "id"] {
                if let Some(v) = g.attr(a) {
                    stanza::set_attr(&mut m, a, v).map_err(crate::Error::msg)?;
                }
            }
        }
        let mut env = Env::for_party(w.next_seed(), "bob-simulating");
        let x = sim(cfg, &mut env, m)
            .map_err(|e| crate::fail!("Bob's simulation of Alice's stanza: {e}"))?;
        Ok(Some(stanza::serialize(&x)))
    }

    /// Participation: Alice's stanzas judged by a judge holding Bob's state
    /// after the exchange began (it reads what Bob's session reads).
    fn participation(
        &self,
        w: &World,
        t: &[Seen],
        bob_state: &StateExport,
    ) -> R<ParticipationTest> {
        super::messages_show_participation_to(self, w, t, Some(bob_state.clone()))
    }

    fn attacker(&self, w: &World, k: &Knowledge) -> R<Box<dyn Attacker>> {
        let mut readers = SessionAttacker::new(w, k)?;
        let mut impostors = Vec::new();
        for st in &k.states {
            // Alice's state reads what Bob sends, and vice versa.
            let (me, solo) = rebuilt(w, self.restore, st, "attacker")?;
            readers.add_receiver(
                me == 1,
                format!(
                    "{} {}'s leaked state",
                    self.what,
                    if me == 0 { "Alice" } else { "Bob" }
                ),
                solo,
            );
            impostors.push(rebuilt(w, self.restore, st, "impostor")?);
        }
        Ok(Box::new(OmemoAttacker {
            readers,
            impostors,
            replaced: 0,
        }))
    }
}
