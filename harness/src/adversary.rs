//! Attackers on the link.
//!
//! Every stanza a session emits passes through the link's [`Adversary`] before
//! it is queued for the peer. The adversary sees the serialized wire form and
//! decides what the peer gets: the stanza as it is, nothing (drop), several
//! copies (duplicate), a modified form (bytes or XML), or a copy held back and
//! released later (replay, reorder). It can also inject stanzas of its own when
//! the link is idle. [`Scripted`] covers all of these with rules;
//! experiments may implement the trait themselves.

use crate::link::{Dir, Phase};
use e2elab_core::{stanza, Element};
use std::collections::VecDeque;

/// A stanza as the adversary sees it on the wire.
#[derive(Debug, Clone)]
pub struct Wire {
    /// Sequence number over the whole run (emission order, from 1).
    pub seq: u64,
    /// Index among the stanzas of this direction (from 0).
    pub index_in_dir: u64,
    /// Direction.
    pub dir: Dir,
    /// Phase the driver declared when it was emitted.
    pub phase: Phase,
    /// Serialized stanza as the sender emitted it.
    pub xml: String,
    /// The virtual time it was emitted.
    pub at: e2elab_core::Timestamp,
}

/// A stanza the adversary lets through or injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Direction it travels.
    pub dir: Dir,
    /// Wire form (may not even be well-formed XML).
    pub xml: String,
    /// What the adversary did, for the transcript: `pass`, `modified`, `duplicate`, `replay`, `inject`, `reordered`.
    pub action: &'static str,
}

impl Forward {
    /// The stanza unchanged.
    pub fn pass(w: &Wire) -> Self {
        Forward {
            dir: w.dir,
            xml: w.xml.clone(),
            action: "pass",
        }
    }
}

/// An attacker with full control of the path.
pub trait Adversary: Send {
    /// Decide what the peer receives for an emitted stanza.
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward>;

    /// The link ran out of stanzas: release held ones or inject.
    fn on_idle(&mut self) -> Vec<Forward> {
        Vec::new()
    }
}

/// Forwards everything unchanged (a passive observer; the transcript records what it saw).
#[derive(Debug, Default)]
pub struct Passive;

impl Adversary for Passive {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        vec![Forward::pass(w)]
    }
}

/// Which stanza a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The stanza with this run-wide sequence number.
    Seq(u64),
    /// The n-th stanza (from 0) in a direction.
    Nth(Dir, u64),
    /// The n-th stanza (from 0) in a direction within a phase.
    NthIn(Dir, Phase, u64),
}

/// A byte-level change to a wire stanza.
pub type ByteEdit = Box<dyn FnMut(&str) -> String + Send>;
/// An XML-level change to a parsed wire stanza.
pub type XmlEdit = Box<dyn FnMut(&mut Element) + Send>;

/// What to do with a targeted stanza.
pub enum Action {
    /// Never deliver it.
    Drop,
    /// Deliver it twice in a row.
    Duplicate,
    /// Deliver it, and deliver a copy again after `after` more stanzas have passed
    /// in any direction (0 = as soon as the link is idle).
    ReplayAfter(usize),
    /// Hold it and deliver it right after the next stanza in the same direction.
    Reorder,
    /// Rewrite its bytes.
    ModifyBytes(ByteEdit),
    /// Rewrite it as XML (if it does not parse, it passes unchanged).
    ModifyXml(XmlEdit),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Action::Drop => "Drop",
            Action::Duplicate => "Duplicate",
            Action::ReplayAfter(_) => "ReplayAfter",
            Action::Reorder => "Reorder",
            Action::ModifyBytes(_) => "ModifyBytes",
            Action::ModifyXml(_) => "ModifyXml",
        };
        f.write_str(s)
    }
}

/// An adversary driven by a list of (target, action) rules; unmatched stanzas pass.
#[derive(Debug, Default)]
pub struct Scripted {
    rules: Vec<(Target, Action)>,
    held_reorder: Vec<(Dir, String)>,
    replays: VecDeque<(usize, Forward)>,
    /// Every stanza seen, in order (a recording for later replays or analysis).
    pub seen: Vec<Wire>,
}

impl Scripted {
    /// No rules yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a rule.
    pub fn rule(mut self, target: Target, action: Action) -> Self {
        self.rules.push((target, action));
        self
    }

    fn matches(t: &Target, w: &Wire) -> bool {
        match *t {
            Target::Seq(s) => w.seq == s,
            Target::Nth(d, n) => w.dir == d && w.index_in_dir == n,
            Target::NthIn(d, p, n) => w.dir == d && w.phase == p && w.index_in_dir == n,
        }
    }
}

impl Adversary for Scripted {
    fn on_wire(&mut self, w: &Wire) -> Vec<Forward> {
        self.seen.push(w.clone());
        // Count down pending replays.
        for r in self.replays.iter_mut() {
            r.0 = r.0.saturating_sub(1);
        }
        let mut out = Vec::new();
        let mut handled = false;
        for (t, a) in self.rules.iter_mut() {
            if !Scripted::matches(t, w) {
                continue;
            }
            handled = true;
            match a {
                Action::Drop => {}
                Action::Duplicate => {
                    out.push(Forward::pass(w));
                    out.push(Forward {
                        action: "duplicate",
                        ..Forward::pass(w)
                    });
                }
                Action::ReplayAfter(n) => {
                    out.push(Forward::pass(w));
                    self.replays.push_back((
                        *n,
                        Forward {
                            action: "replay",
                            ..Forward::pass(w)
                        },
                    ));
                }
                Action::Reorder => self.held_reorder.push((w.dir, w.xml.clone())),
                Action::ModifyBytes(f) => out.push(Forward {
                    dir: w.dir,
                    xml: f(&w.xml),
                    action: "modified",
                }),
                Action::ModifyXml(f) => {
                    let xml = match stanza::parse(&w.xml) {
                        Ok(mut el) => {
                            f(&mut el);
                            stanza::serialize(&el)
                        }
                        Err(_) => w.xml.clone(),
                    };
                    out.push(Forward {
                        dir: w.dir,
                        xml,
                        action: "modified",
                    });
                }
            }
            break;
        }
        if !handled {
            out.push(Forward::pass(w));
            // A held stanza goes right after the next one in its direction.
            let (mine, others): (Vec<_>, Vec<_>) =
                self.held_reorder.drain(..).partition(|(d, _)| *d == w.dir);
            self.held_reorder = others;
            out.extend(mine.into_iter().map(|(dir, xml)| Forward {
                dir,
                xml,
                action: "reordered",
            }));
        }
        // Replays whose count ran out go now.
        while self
            .replays
            .front()
            .is_some_and(|r| r.0 == 0 && !out.is_empty())
        {
            if let Some((_, f)) = self.replays.pop_front() {
                out.push(f);
            }
        }
        out
    }

    fn on_idle(&mut self) -> Vec<Forward> {
        let mut out: Vec<Forward> = self.replays.drain(..).map(|(_, f)| f).collect();
        out.extend(self.held_reorder.drain(..).map(|(dir, xml)| Forward {
            dir,
            xml,
            action: "reordered",
        }));
        out
    }
}
