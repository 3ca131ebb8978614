//! ESessions' attack hooks: the crate's own observer and judges
//! ([`e2elab_esessions::dangerous`]) over the XEP-0116/XEP-0200 wire
//! format, for the SIGMA profiles, XEP-0217 and the ESessions-based
//! controls, and for the SSH-style reconstruction.

use super::{
    Attacker, Hooks, JudgeKnowledge, Knowledge, ParticipationTest, Reading, Seen, Substitution,
    Verdict, WireForgery,
};
use crate::security::world::World;
use crate::security::R;
use e2elab_core::{minidom::Node, Element, Env, Options, StateExport};
use e2elab_esessions::dangerous::{self, sigma as ds, ssh as dssh};
use e2elab_esessions::Weakness;

fn es(e: e2elab_core::Error) -> crate::Error {
    crate::Error::session("ESessions research hook", e)
}

fn knowledge(k: &Knowledge) -> dangerous::Knowledge {
    dangerous::Knowledge {
        identity_secrets: k
            .identities
            .iter()
            .map(|i| i.secret().expose().to_vec())
            .collect(),
        states: k
            .states
            .iter()
            .map(|s| {
                (
                    s.role == e2elab_core::Role::Initiator,
                    s.data.expose().to_vec(),
                )
            })
            .collect(),
    }
}

fn to_seen(s: &Seen) -> dangerous::Seen {
    dangerous::Seen {
        from_initiator: s.from_initiator,
        xml: s.xml.clone(),
    }
}

fn verdict(v: dangerous::Verdict) -> Verdict {
    Verdict {
        authentic: v.authentic,
        content: v.content,
        reason: v.reason,
    }
}

fn content_children(content: &Element) -> Vec<Element> {
    content
        .children()
        .filter(|c| !e2elab_esessions::channel::stays_clear(c))
        .cloned()
        .collect()
}

/// The SIGMA profiles (and XEP-0217, and the ESessions-based controls).
#[derive(Debug, Clone, Copy)]
pub struct Sigma {
    weakness: Option<Weakness>,
    simplified: bool,
}

impl Sigma {
    /// `esessions-sigma-r`, `esessions-sigma-i`.
    pub fn real() -> Self {
        Sigma {
            weakness: None,
            simplified: false,
        }
    }

    /// `esessions-simplified`.
    pub fn simplified() -> Self {
        Sigma {
            weakness: None,
            simplified: true,
        }
    }

    /// A control.
    pub fn control(w: Weakness) -> Self {
        Sigma {
            weakness: Some(w),
            simplified: false,
        }
    }

    fn signed_messages(&self) -> bool {
        self.weakness == Some(Weakness::SignedMessages)
    }
}

struct SigmaAttacker {
    o: ds::Observer,
    env: Env,
    index: usize,
}

impl Attacker for SigmaAttacker {
    fn observe(&mut self, s: &Seen) -> R<Reading> {
        let r = self.o.observe(self.index, &to_seen(s)).map_err(es)?;
        self.index += 1;
        Ok(Reading {
            content: r.content,
            how: r.key,
        })
    }

    fn hijack(&mut self, s: &Seen) -> R<(Option<String>, Reading)> {
        let (new, r) = self
            .o
            .hijack(self.index, &to_seen(s), &mut self.env)
            .map_err(es)?;
        self.index += 1;
        Ok((
            new,
            Reading {
                content: r.content,
                how: r.key,
            },
        ))
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "DH exponents derived from leaked long-term keys (the static-DH derivation): {} tried, {} matching a DH value on the wire",
            self.o.derived_tried, self.o.derived_matches
        )]
    }
}

const REKEY_REASON: &str = "rekey_every=1: XEP-0200 rekeys as often as the negotiated rekey_freq (default offer 1) allows, so that forward secrecy, post-compromise security and MAC-key publishing run with the spec's rekey in play";

impl Hooks for Sigma {
    fn options(&self) -> (Options, &'static str) {
        if self.simplified {
            (
                Options::new(),
                "the profile's defaults (XEP-0217 never rekeys)",
            )
        } else if self.weakness == Some(Weakness::StaticDh) {
            (Options::new(), "the control's defaults (it never rekeys)")
        } else {
            (Options::new().set("rekey_every", "1"), REKEY_REASON)
        }
    }

    fn attacker(&self, w: &World, k: &Knowledge) -> R<Box<dyn Attacker>> {
        Ok(Box::new(SigmaAttacker {
            o: ds::Observer::new(&knowledge(k)).map_err(es)?,
            env: Env::for_party(w.next_seed(), "attacker"),
            index: 0,
        }))
    }

    fn judge(&self, w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
        let _ = w;
        ds::judge(
            j.state.as_ref().map(|s| s.data.expose()),
            false,
            xml,
            Some(&j.alice.data),
            self.signed_messages(),
        )
        .map(verdict)
        .map_err(es)
    }

    fn simulate(
        &self,
        w: &World,
        genuine: &str,
        content: &Element,
        j: &JudgeKnowledge,
    ) -> R<Option<String>> {
        // Bob with his keys (online); anyone with keys of their own (offline).
        let key = if j.online {
            e2elab_esessions::keys::private_from_der(j.judge_identity.secret().expose()).ok()
        } else {
            None
        };
        let mut env = Env::for_party(w.next_seed(), "simulator");
        ds::simulate(
            j.state.as_ref().map(|s| s.data.expose()),
            genuine,
            &content_children(content),
            key.as_ref(),
            self.signed_messages(),
            &mut env,
        )
        .map(Some)
        .map_err(es)
    }

    fn participation(&self, w: &World, _t: &[Seen], bob: &StateExport) -> R<ParticipationTest> {
        let rec = ds::proof_of(bob.data.expose())
            .map_err(es)?
            .ok_or("Bob's session recorded no identity proof of Alice")?;
        let genuine = ds::judge_participation(&rec, &w.alice.id.public.data).map_err(es)?;
        let key = e2elab_esessions::keys::private_from_der(w.bob.id.secret().expose()).ok();
        let mut env = Env::for_party(w.next_seed(), "simulator");
        let sim = ds::simulate_participation(&rec, key.as_ref(), &mut env).map_err(es)?;
        let simulated = ds::judge_participation(&sim, &w.alice.id.public.data).map_err(es)?;
        Ok(ParticipationTest {
            genuine: verdict(genuine),
            simulated: verdict(simulated),
            evidence: format!(
                "Bob hands over Alice's identity proof as he verified it (mode {}{})",
                rec.mode,
                if rec.sig.is_empty() {
                    ": a MAC under the SIGMA key"
                } else {
                    ": a signature by her long-term key"
                }
            ),
            bob_verified: true,
        })
    }

    fn forge_from_wire(&self, _w: &World, t: &[Seen]) -> R<Vec<WireForgery>> {
        let seen: Vec<dangerous::Seen> = t.iter().map(to_seen).collect();
        let mut o = ds::Observer::new(&dangerous::Knowledge::default()).map_err(es)?;
        o.read_all(&seen).map_err(es)?;
        let published = o.published.len();
        Ok(o
            .forge_from_published(&seen)
            .map_err(es)?
            .into_iter()
            .map(|(i, pi, xml)| WireForgery {
                index: i,
                xml,
                how: format!(
                    "{published} MAC key(s) published in clear in <old/>; the one in stanza #{} reproduces the MAC of stanza #{} at its public counter, so anyone writes a different <c/> (one ciphertext bit flipped inside the body text) with a valid MAC",
                    pi + 1,
                    i + 1
                ),
            })
            .collect())
    }

    fn weak_offer(&self) -> Result<(Options, &'static str), &'static str> {
        let (o, _) = self.options();
        if self.simplified {
            Ok((
                o.set("modp", "16,14"),
                "Alice offers MODP groups 16 and 14 (XEP-0217 fixes aes128-ctr)",
            ))
        } else {
            Ok((
                o.set("modp", "16,14").set("crypt", "aes256-ctr,aes128-ctr"),
                "Alice offers MODP groups 16 and 14 and ciphers aes256-ctr and aes128-ctr",
            ))
        }
    }

    fn strip_offer(&self, el: &mut Element) -> bool {
        strip_esessions_offer(el)
    }

    fn negotiated(&self, t: &[Seen]) -> String {
        negotiated_esessions(t)
    }

    fn substitute_identity(
        &self,
        s: &Substitution,
        el: &mut Element,
        t: &[Seen],
        env: &mut Env,
    ) -> R<bool> {
        let seen: Vec<dangerous::Seen> = t.iter().map(to_seen).collect();
        ds::substitute_identity(el, s.eve.secret().expose(), &seen, env).map_err(es)
    }
}

/// Remove the first (preferred) option of the `modp` and `crypt_algs`
/// fields of an ESessions offer form, and with the first `modp` option the
/// first `dhhashes` (or SIGMA-I `dhkeys`) value made for that group, so that
/// the offer stays self-consistent.
pub fn strip_esessions_offer(el: &mut Element) -> bool {
    fn first_removed(e: &mut Element, child: &str) {
        let nodes = e.take_nodes();
        let mut skipped = false;
        for n in nodes {
            if !skipped && matches!(&n, Node::Element(c) if c.name() == child) {
                skipped = true;
                continue;
            }
            e.append_node(n);
        }
    }
    fn walk(e: &mut Element, modp_stripped: &mut bool) -> bool {
        let mut changed = false;
        if e.name() == "field" {
            let var = e.attr("var").unwrap_or("").to_string();
            let opts = e.children().filter(|c| c.name() == "option").count();
            if (var == "modp" || var == "crypt_algs") && opts > 1 {
                first_removed(e, "option");
                if var == "modp" {
                    *modp_stripped = true;
                }
                return true;
            }
            if (var == "dhhashes" || var == "dhkeys") && *modp_stripped {
                first_removed(e, "value");
                return true;
            }
        }
        for c in e.children_mut() {
            changed |= walk(c, modp_stripped);
        }
        changed
    }
    // The form lists modp before its commitments, so one pass in document order suffices.
    let mut modp = false;
    walk(el, &mut modp)
}

fn negotiated_esessions(t: &[Seen]) -> String {
    for s in t.iter().filter(|s| !s.from_initiator) {
        if let Ok(el) = e2elab_core::stanza::parse(&s.xml) {
            let mut out = Vec::new();
            fn walk(e: &Element, out: &mut Vec<String>) {
                if e.name() == "field" && matches!(e.attr("var"), Some("modp") | Some("crypt_algs"))
                {
                    let v: Vec<String> = e
                        .children()
                        .filter(|c| c.name() == "value")
                        .map(Element::text)
                        .collect();
                    out.push(format!("{}={}", e.attr("var").unwrap_or(""), v.join(",")));
                }
                for c in e.children() {
                    walk(c, out);
                }
            }
            walk(&el, &mut out);
            if !out.is_empty() {
                return out.join(" ");
            }
        }
    }
    "nothing".into()
}

/// The SSH-style reconstruction.
#[derive(Debug, Clone, Copy)]
pub struct Ssh;

struct SshAttacker {
    o: dssh::SshObserver,
    index: usize,
}

impl Attacker for SshAttacker {
    fn observe(&mut self, s: &Seen) -> R<Reading> {
        let r = self.o.observe(self.index, &to_seen(s)).map_err(es)?;
        self.index += 1;
        Ok(Reading {
            content: r.content.filter(|c| !c.is_empty()),
            how: r.key,
        })
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "DH exponents derived from leaked long-term keys: {} tried, {} matching e or f",
            self.o.derived_tried, self.o.derived_matches
        )]
    }
}

impl Hooks for Ssh {
    fn attacker(&self, _w: &World, k: &Knowledge) -> R<Box<dyn Attacker>> {
        Ok(Box::new(SshAttacker {
            o: dssh::SshObserver::new(&knowledge(k)).map_err(es)?,
            index: 0,
        }))
    }

    fn judge(&self, _w: &World, xml: &str, j: &JudgeKnowledge) -> R<Verdict> {
        dssh::judge(j.state.as_ref().map(|s| s.data.expose()), false, xml)
            .map(verdict)
            .map_err(es)
    }

    fn simulate(
        &self,
        w: &World,
        genuine: &str,
        content: &Element,
        j: &JudgeKnowledge,
    ) -> R<Option<String>> {
        let mut env = Env::for_party(w.next_seed(), "simulator");
        dssh::simulate(
            j.state.as_ref().map(|s| s.data.expose()),
            genuine,
            &content_children(content),
            &mut env,
        )
        .map(Some)
        .map_err(es)
    }

    fn participation(&self, w: &World, _t: &[Seen], bob: &StateExport) -> R<ParticipationTest> {
        let p = dssh::proof_of(bob.data.expose())
            .map_err(es)?
            .ok_or("Bob's session recorded no signature of Alice")?;
        let genuine = dssh::judge_participation(&p, &w.alice.id.public.data).map_err(es)?;
        let key =
            e2elab_esessions::keys::private_from_der(w.bob.id.secret().expose()).map_err(es)?;
        let mut env = Env::for_party(w.next_seed(), "simulator");
        let sim = dssh::simulate_participation(&p, &key, &mut env).map_err(es)?;
        let simulated = dssh::judge_participation(&sim, &w.alice.id.public.data).map_err(es)?;
        Ok(ParticipationTest {
            genuine: verdict(genuine),
            simulated: verdict(simulated),
            evidence: "Bob hands over Alice's publickey user authentication (her ssh-rsa signature over the session id)".into(),
            bob_verified: true,
        })
    }

    fn weak_offer(&self) -> Result<(Options, &'static str), &'static str> {
        Err("the reconstruction fixes its algorithms (group 14, aes128-cbc, hmac-sha1, ssh-rsa): RFC 4253's KEXINIT algorithm negotiation is not part of it (spec digest §2.1), so no stanza carries an offer")
    }

    fn substitute_identity(
        &self,
        s: &Substitution,
        el: &mut Element,
        _t: &[Seen],
        _env: &mut Env,
    ) -> R<bool> {
        dssh::substitute_identity(el, s.eve.secret().expose()).map_err(es)
    }
}
