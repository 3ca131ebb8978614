//! Security properties, measured by attacks that can come out either way.
//!
//! Every cell of the table is an executable experiment: real sessions of
//! the profile, driven only through the `Protocol`/`Session` traits over the
//! harness [`crate::link::Link`], with an attacker on the wire and, where a
//! protocol's own formats or keys are involved, the profile's attack hooks
//! ([`hooks::Hooks`]). Each property has one file here; no file looks at a
//! profile id.
//!
//! Three rules make a cell count:
//! 1. **Known-bad controls.** Every run includes the `control` family: the
//!    unprotected row and deliberately weakened variants of real profiles
//!    (`control-static-dh`, `control-no-mac`, ... see `e2elab list`), each
//!    declaring the rows it was built to fail
//!    ([`e2elab_core::ProtocolInfo::control_for`]). Every row has at least
//!    one; a control that does not come out `fails` where it must fails the
//!    run ([`SecurityRun::control_failures`]).
//! 2. **Honest baselines.** Each experiment first runs without the attack
//!    (an honest delivery, an honest handshake under the same user model,
//!    a search for keys that are not there, a judge shown a tampered copy);
//!    if the baseline raises the alarm the experiment measures, the
//!    experiment is an error, never an outcome.
//! 3. **No outcome without the attack.** An experiment that cannot run is
//!    an error that fails the run; there is no "not applicable".
//!
//! The evidence is data: each cell carries structured JSON for the
//! baseline and the attack (what was sent, delivered, read, which keys,
//! which errors), and the Markdown ([`render`]) is generated from the JSON
//! ([`SecurityRun`]) alone. Where a backend takes no external RNG (OpenSSL
//! RSA keys, Sequoia, libgcrypt inside libotr) the evidence bytes (SAS
//! values, key ids, MACs) differ between runs of one seed; the outcomes do
//! not.
//!
//! # DECISIONS
//! 1. *Rows.* Thirteen properties, some measured in variants:
//!    post-compromise security passive and active; message repudiation
//!    against an offline judge (transcript and public keys) and an online
//!    judge (Bob hands over his keys and session state); identity
//!    protection against a passive and an active attacker; MITM detection
//!    under two user models (users compare nothing; users compare what the
//!    protocol shows out of band: SAS, fingerprints, the OTR secure session
//!    id) each at first contact and with keys pinned from an earlier
//!    session; misbinding by key registration and by identity substitution.
//! 2. *Integrity* is the protected content only: the attacker flips bits in,
//!    truncates, or replaces the protected payload. What a clear part of the
//!    stanza lets an attacker rewrite is data of the coverage row.
//! 3. *Key recovery.* Forward secrecy and post-compromise security are
//!    measured by what the attacker *reads*: the recorded transcript fed to
//!    an attacker holding the leaked secrets, who derives every key they
//!    make derivable ([`hooks::Attacker`]). Before concluding, the same
//!    reader must read the messages right after the leak with the session
//!    state (or the protocol is not being read at all, and the experiment is
//!    an error).
//! 4. *Judges.* A judge of a stanza counts as authentic only when it also
//!    rejects at least one of three copies with one payload bit changed
//!    (its acceptance depends on a check of those bytes); the participation
//!    judges verify signatures or MACs over a handshake proof directly. A
//!    proof is *transferable* when the judge accepts the genuine evidence and
//!    rejects what the judge's knowledge holder (Bob, or anyone offline)
//!    simulates. A judge holding Bob's keys that rejects what Bob's session
//!    accepted is broken, and the experiment an error. The judge applies
//!    the profile's receiving rules (for `control-signed-messages`, the
//!    per-stanza signature its receiver requires).
//! 5. *Every party owns its client* ([`world::World`]): stores of retained
//!    secrets, remembered keys and replay memory are never shared between
//!    Alice, Bob, Mallory, Eve and the judges.
//! 6. *Options.* Each profile runs under the options its hooks state (the
//!    SIGMA profiles with XEP-0200 rekeys on); the table says which.

pub mod coverage;
pub mod downgrade;
pub mod forgeability;
pub mod forward_secrecy;
pub mod hooks;
pub mod identity_protection;
pub mod integrity;
pub mod loss_reorder;
pub mod misbinding;
pub mod mitm;
pub mod otr_tools;
pub mod participation;
pub mod post_compromise;
pub mod render;
pub mod replay;
pub mod repudiation;
pub mod sok;
pub mod wire;
pub mod world;

use crate::registry::Entry;
use e2elab_core::{ClaimLevel, Property};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use world::World;

/// Experiment results: `Err` is an experiment that could not run.
pub type R<T> = crate::Result<T>;

/// A measured outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The protocol has the property.
    Holds,
    /// The attack broke it.
    Fails,
}

impl Outcome {
    /// `holds` / `fails`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Fails => "fails",
        }
    }

    /// `Fails` when `broken`.
    pub fn unless(broken: bool) -> Outcome {
        if broken {
            Outcome::Fails
        } else {
            Outcome::Holds
        }
    }
}

/// One measured row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The property.
    pub property: Property,
    /// The variant (`""` when the property has one).
    pub variant: &'static str,
    /// The question the row answers.
    pub question: &'static str,
}

const fn row(property: Property, variant: &'static str, question: &'static str) -> Row {
    Row {
        property,
        variant,
        question,
    }
}

/// Every row, in report order.
pub const ROWS: &[Row] = &[
    row(Property::ConfidentialityCoverage, "", "is every part of every protected stanza kind hidden on the wire (routing attributes aside)?"),
    row(Property::Integrity, "", "is modified or replaced protected content never delivered as genuine?"),
    row(Property::Replay, "", "is a recorded stanza refused in the same session, later, and in a new session of the same receiving client?"),
    row(Property::LossReorderTolerance, "", "after one lost, or two swapped, stanzas, is everything else still delivered?"),
    row(Property::ForwardSecrecy, "", "with both long-term keys leaked after the session, can the recorded transcript not be read?"),
    row(Property::PostCompromiseSecurity, "passive", "after one side's whole state leaks, are messages after three more exchanges unreadable to a passive attacker?"),
    row(Property::PostCompromiseSecurity, "active", "the same, when the attacker also replaces the healing DH values she can authenticate?"),
    row(Property::MessageRepudiation, "offline", "does the transcript, with public keys only, hold no transferable proof that Alice wrote a message?"),
    row(Property::MessageRepudiation, "online", "the same when Bob hands his keys and session state to the judge?"),
    row(Property::ParticipationRepudiation, "", "can Bob, handing over what he holds after the handshake, not prove that Alice took part?"),
    row(Property::Forgeability, "", "can someone other than Alice, from the wire alone, write a stanza that Bob's keys accept as hers?"),
    row(Property::IdentityProtection, "passive", "does an observer of an honest session not learn either party's long-term key?"),
    row(Property::IdentityProtection, "active", "does an attacker running the protocol with each victim not get the victim's key authenticated to her?"),
    row(Property::MitmDetection, "none/first-contact", "users compare nothing, first contact: does a man in the middle raise a signal the honest run does not?"),
    row(Property::MitmDetection, "none/pinned", "users compare nothing, keys from an earlier session: same question"),
    row(Property::MitmDetection, "oob/first-contact", "users compare what the protocol shows (SAS, fingerprints, session id), first contact: same question"),
    row(Property::MitmDetection, "oob/pinned", "users compare what the protocol shows, keys from an earlier session: same question"),
    row(Property::DowngradeResistance, "", "is neither a weaker offer nor an unprotected stanza accepted silently?"),
    row(Property::IdentityMisbinding, "key-registration", "when Eve registers a victim's key as hers and relays, is a message never attributed to Eve?"),
    row(Property::IdentityMisbinding, "identity-substitution", "when Eve replaces a victim's identity proof with her own, is a message never attributed to Eve?"),
];

/// One measured cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// Profile id.
    pub protocol: String,
    /// Property name.
    pub property: String,
    /// Variant (`""` if none).
    pub variant: String,
    /// The outcome.
    pub outcome: Outcome,
    /// One sentence.
    pub summary: String,
    /// The honest baseline, as data.
    pub baseline: Value,
    /// The attack, as data.
    pub attack: Value,
}

/// Build a cell.
pub fn cell(
    w: &World,
    property: Property,
    variant: &str,
    outcome: Outcome,
    summary: String,
    baseline: Value,
    attack: Value,
) -> Cell {
    Cell {
        protocol: w.id().to_string(),
        property: property.name().to_string(),
        variant: variant.to_string(),
        outcome,
        summary,
        baseline,
        attack,
    }
}

/// A spec claim, as the JSON records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimOut {
    /// `claimed`, `partial`, `not_claimed`, `not_applicable`.
    pub level: String,
    /// Where.
    pub source: String,
    /// Context.
    pub note: String,
}

/// A SoK rating, as the JSON records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SokOut {
    /// The paper's design.
    pub design: String,
    /// The paper's column.
    pub column: String,
    /// ● ◐ ○.
    pub rating: String,
}

/// A profile of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileOut {
    /// Id.
    pub id: String,
    /// Family.
    pub family: String,
    /// A known-bad control.
    pub control: bool,
    /// Rows it must fail (property, variant prefix).
    pub control_for: Vec<(String, String)>,
    /// Options of the run.
    pub options: Vec<(String, String)>,
    /// Why.
    pub options_reason: String,
    /// One line.
    pub summary: String,
    /// Claims per property (with the variant prefix they speak of).
    pub claims: Vec<(String, String, ClaimOut)>,
    /// Seconds the experiments took.
    pub seconds: f64,
}

/// A control's check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlCheck {
    /// Control id.
    pub protocol: String,
    /// Property.
    pub property: String,
    /// Variant.
    pub variant: String,
    /// Measured.
    pub measured: Outcome,
    /// As designed (`fails`).
    pub ok: bool,
}

/// A disagreement between a measurement and a spec claim or a SoK rating.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// Profile.
    pub protocol: String,
    /// Property.
    pub property: String,
    /// Variant.
    pub variant: String,
    /// `spec` or `sok`.
    pub against: String,
    /// What was expected.
    pub expected: String,
    /// Measured.
    pub measured: Outcome,
    /// The cell's summary.
    pub summary: String,
}

/// A row as the JSON records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowOut {
    /// Property.
    pub property: String,
    /// Variant.
    pub variant: String,
    /// Question.
    pub question: String,
    /// The controls built to fail it.
    pub known_bad: Vec<String>,
}

/// One whole run: what `security.json` holds and every rendering reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityRun {
    /// Format id.
    pub schema: String,
    /// Seed.
    pub seed: u64,
    /// Rows.
    pub rows: Vec<RowOut>,
    /// Profiles (real first, then controls).
    pub profiles: Vec<ProfileOut>,
    /// Every cell.
    pub cells: Vec<Cell>,
    /// Claims and SoK ratings per cell (same order as `cells`).
    pub references: Vec<(Option<ClaimOut>, Option<SokOut>)>,
    /// Every control check.
    pub controls: Vec<ControlCheck>,
    /// Every disagreement.
    pub findings: Vec<Finding>,
    /// Wall time of the run.
    pub wall_seconds: f64,
}

/// The schema id of [`SecurityRun`].
pub const SCHEMA: &str = "e2elab-security/2";

impl SecurityRun {
    /// The control checks that came out wrong.
    pub fn control_failures(&self) -> Vec<&ControlCheck> {
        self.controls.iter().filter(|c| !c.ok).collect()
    }

    /// The cell for (protocol, property, variant).
    pub fn cell(&self, protocol: &str, property: Property, variant: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| {
            c.protocol == protocol && c.property == property.name() && c.variant == variant
        })
    }

    /// Read `security.json`.
    pub fn read(path: &std::path::Path) -> R<SecurityRun> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io(path.display().to_string(), e))?;
        let r: SecurityRun = serde_json::from_str(&s)
            .map_err(|e| crate::Error::data(path.display().to_string(), e))?;
        if r.schema != SCHEMA {
            return Err(crate::fail!(
                "{}: schema {} (this e2elab reads {SCHEMA}); run e2elab security again",
                path.display(),
                r.schema
            ));
        }
        Ok(r)
    }
}

fn claim_name(l: ClaimLevel) -> &'static str {
    match l {
        ClaimLevel::Claimed => "claimed",
        ClaimLevel::Partial => "partial",
        ClaimLevel::NotClaimed => "not_claimed",
        ClaimLevel::NotApplicable => "not_applicable",
    }
}

/// Whether a claim level disagrees with a measured outcome. `partial`
/// never does (its note says which part), nor does `not_applicable` (a
/// spec saying a property does not arise is not contradicted by an attack
/// that finds nothing to break, and every row is measured regardless).
pub fn claim_disagrees(level: ClaimLevel, m: Outcome) -> bool {
    matches!(
        (level, m),
        (ClaimLevel::Claimed, Outcome::Fails) | (ClaimLevel::NotClaimed, Outcome::Holds)
    )
}

/// Whether a SoK rating disagrees with a measured outcome (`◐` never does).
pub fn sok_disagrees(r: sok::Rating, m: Outcome) -> bool {
    matches!(
        (r, m),
        (sok::Rating::Full, Outcome::Fails) | (sok::Rating::None, Outcome::Holds)
    )
}

type Experiment = fn(&World) -> R<Vec<Cell>>;

/// Every experiment, in row order.
pub const EXPERIMENTS: &[(&str, Experiment)] = &[
    ("confidentiality coverage", coverage::run),
    ("integrity", integrity::run),
    ("replay", replay::run),
    ("loss and reordering", loss_reorder::run),
    ("forward secrecy", forward_secrecy::run),
    ("post-compromise security", post_compromise::run),
    ("message repudiation", repudiation::run),
    ("participation repudiation", participation::run),
    ("forgeability", forgeability::run),
    ("identity protection", identity_protection::run),
    ("MITM detection", mitm::run),
    ("downgrade", downgrade::run),
    ("identity misbinding", misbinding::run),
];

/// Run every experiment on one profile.
pub fn run_profile(entry: &'static Entry, seed: u64) -> R<(Vec<Cell>, ProfileOut)> {
    let t0 = std::time::Instant::now();
    let w = World::new(entry, seed)?;
    let mut cells = Vec::new();
    for (name, f) in EXPERIMENTS {
        let got =
            f(&w).map_err(|e| crate::fail!("{}: {name}: experiment could not run: {e}", w.id()))?;
        cells.extend(got);
    }
    for r in ROWS {
        if !cells
            .iter()
            .any(|c| c.property == r.property.name() && c.variant == r.variant)
        {
            return Err(crate::fail!(
                "{}: no cell for {} {}",
                w.id(),
                r.property.name(),
                r.variant
            ));
        }
    }
    let info = w.info;
    let profile = ProfileOut {
        id: info.id.to_string(),
        family: info.family.to_string(),
        control: entry.is_control(),
        control_for: info
            .control_for
            .iter()
            .map(|(p, v)| (p.name().to_string(), v.to_string()))
            .collect(),
        options: w
            .options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        options_reason: w.options_reason.to_string(),
        summary: info.summary.to_string(),
        claims: info
            .claims
            .iter()
            .map(|c| {
                (
                    c.property.name().to_string(),
                    c.under.to_string(),
                    ClaimOut {
                        level: claim_name(c.level).into(),
                        source: c.source.into(),
                        note: c.note.into(),
                    },
                )
            })
            .collect(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((cells, profile))
}

/// The checks of every control's designed failures among `cells`.
pub fn control_checks(entries: &[&'static Entry], cells: &[Cell]) -> Vec<ControlCheck> {
    let mut controls = Vec::new();
    for e in entries {
        for (p, prefix) in e.info().control_for {
            for c in cells.iter().filter(|c| {
                c.protocol == e.info().id && c.property == p.name() && c.variant.starts_with(prefix)
            }) {
                controls.push(ControlCheck {
                    protocol: c.protocol.clone(),
                    property: c.property.clone(),
                    variant: c.variant.clone(),
                    measured: c.outcome,
                    ok: c.outcome == Outcome::Fails,
                });
            }
        }
    }
    controls
}

/// Run the experiments on `entries` and on every known-bad control.
pub fn run(
    entries: &[&'static Entry],
    seed: u64,
    mut progress: impl FnMut(usize, usize, &str),
) -> R<SecurityRun> {
    let t0 = std::time::Instant::now();
    let mut list: Vec<&'static Entry> = entries
        .iter()
        .copied()
        .filter(|e| !e.is_control())
        .collect();
    for e in crate::registry::entries() {
        if e.is_control() {
            list.push(e);
        }
    }
    let mut cells = Vec::new();
    let mut profiles = Vec::new();
    for (i, e) in list.iter().enumerate() {
        progress(i, list.len(), e.info().id);
        let (c, p) = run_profile(e, seed)?;
        cells.extend(c);
        profiles.push(p);
    }
    progress(list.len(), list.len(), "done");
    let mut rows = Vec::new();
    for r in ROWS {
        let known_bad: Vec<String> = list
            .iter()
            .filter(|e| {
                e.info()
                    .control_for
                    .iter()
                    .any(|(p, v)| *p == r.property && r.variant.starts_with(v))
            })
            .map(|e| e.info().id.to_string())
            .collect();
        if known_bad.is_empty() {
            return Err(crate::fail!(
                "no known-bad control for {} {}: every row needs one",
                r.property.name(),
                r.variant
            ));
        }
        rows.push(RowOut {
            property: r.property.name().into(),
            variant: r.variant.into(),
            question: r.question.into(),
            known_bad,
        });
    }
    let controls = control_checks(&list, &cells);
    let mut references = Vec::new();
    let mut findings = Vec::new();
    for c in &cells {
        let Some(e) = list.iter().find(|e| e.info().id == c.protocol) else {
            references.push((None, None));
            continue;
        };
        let info = e.info();
        let prop = Property::ALL
            .into_iter()
            .find(|p| p.name() == c.property)
            .ok_or("unknown property")?;
        let claim = info
            .claims
            .iter()
            .filter(|k| k.property == prop && k.applies_to(&c.variant))
            .max_by_key(|k| k.under.len());
        let sok = sok::rating(info.family, prop, &c.variant);
        if !e.is_control() {
            if let Some(k) = claim {
                if claim_disagrees(k.level, c.outcome) {
                    findings.push(Finding {
                        protocol: c.protocol.clone(),
                        property: c.property.clone(),
                        variant: c.variant.clone(),
                        against: "spec".into(),
                        expected: format!("{} ({}: {})", claim_name(k.level), k.source, k.note),
                        measured: c.outcome,
                        summary: c.summary.clone(),
                    });
                }
            }
            if let Some(s) = sok {
                if sok_disagrees(s.rating, c.outcome) {
                    findings.push(Finding {
                        protocol: c.protocol.clone(),
                        property: c.property.clone(),
                        variant: c.variant.clone(),
                        against: "sok".into(),
                        expected: format!(
                            "{} {} \"{}\"",
                            s.design,
                            s.rating.symbol(),
                            s.sok_property
                        ),
                        measured: c.outcome,
                        summary: c.summary.clone(),
                    });
                }
            }
        }
        references.push((
            claim.map(|k| ClaimOut {
                level: claim_name(k.level).into(),
                source: k.source.into(),
                note: k.note.into(),
            }),
            sok.map(|s| SokOut {
                design: s.design.into(),
                column: s.sok_property.into(),
                rating: s.rating.symbol().into(),
            }),
        ));
    }
    Ok(SecurityRun {
        schema: SCHEMA.into(),
        seed,
        rows,
        profiles,
        cells,
        references,
        controls,
        findings,
        wall_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Write `security.json` and `security.md` (rendered from the JSON just written).
pub fn write(run: &SecurityRun, dir: &std::path::Path) -> R<()> {
    let json = serde_json::to_string_pretty(run).map_err(crate::Error::msg)? + "\n";
    let path = dir.join("security.json");
    std::fs::write(&path, json).map_err(|e| crate::Error::io(path.display().to_string(), e))?;
    let back = SecurityRun::read(&path)?;
    let md = dir.join("security.md");
    std::fs::write(&md, render::markdown(&back))
        .map_err(|e| crate::Error::io(md.display().to_string(), e))
}

/// `e2elab security`: run and render as `table`, `json` or `md`; a control
/// that came out wrong is an error (after printing).
pub fn cli(ids: &[String], seed: u64, format: &str) -> R<String> {
    let entries = crate::registry::resolve_entries(ids)?;
    let run = run(&entries, seed, |i, n, id| {
        if i < n {
            eprintln!("security: [{}/{n}] {id} ...", i + 1);
        }
    })?;
    let out = match format {
        "json" => serde_json::to_string_pretty(&run).map_err(crate::Error::msg)? + "\n",
        "md" => render::markdown(&run),
        _ => render::table(&run),
    };
    let bad = run.control_failures();
    if !bad.is_empty() {
        print!("{out}");
        return Err(crate::fail!(
            "{} control check(s) came out wrong: {}",
            bad.len(),
            bad.iter()
                .map(|c| format!(
                    "{} {} {} measured {}",
                    c.protocol,
                    c.property,
                    c.variant,
                    c.measured.name()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(out)
}
