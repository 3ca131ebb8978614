//! `e2elab requirements`: XEP-0210 ("Requirements for Encrypted Sessions",
//! the XSF's own list, written during the ESessions work) as a matrix of
//! every compared profile against every one of its 18 requirements.
//!
//! Every cell is an outcome backed by evidence this toolkit produced:
//! - the security experiments' rows (`security.json` of the same results
//!   directory), for the requirements they measure;
//! - the comparison's figures (`results.json`: round trips, bytes, CPU) and
//!   the real-server run (`server.json`: stanzas through Prosody);
//! - experiments of its own, run now, for what nothing measured yet
//!   ([`experiments`]: Generality, Object Encryption, Usability, the
//!   self-generated keys of PKI Independence; [`offline`]: Offline Sessions
//!   through Prosody's offline storage; [`interop`]: the tools of non-XMPP
//!   systems);
//! - the implementation itself ([`implementability`]).
//!
//! The rule that turns evidence into an outcome is written once per
//! requirement (below, and in the Markdown's "how each cell is decided"),
//! never per profile. Where XEP-0210 sets no threshold (Efficiency,
//! Implementability, Flexibility) the cell is `measured`: the figures, no
//! verdict. A cell that cannot be measured says so and why.
//!
//! Controls run in the same invocation: the unprotected `plaintext` row
//! must fail every requirement a protocol exists to meet, and
//! `control-anon-dh` (an interactive handshake) must fail Offline Sessions
//! and Object Encryption, while the offline storage must hand `plaintext`'s
//! message over intact (else the server, not a profile, failed). A wrong
//! control is an error, and so is any experiment that cannot run.

pub mod experiments;
pub mod implementability;
pub mod interop;
pub mod offline;

use crate::security::{Cell, SecurityRun};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The schema tag of `requirements.json`.
pub const SCHEMA: &str = "e2elab-requirements/1";

/// A cell's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The requirement is met, by the rule stated for it.
    Holds,
    /// It is not.
    Fails,
    /// Figures only: the XEP sets no threshold.
    Measured,
    /// The toolkit could not measure it (the summary says why).
    NotMeasured,
}

impl Verdict {
    /// `holds` / `fails` / `measured` / `not measured`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Fails => "fails",
            Verdict::Measured => "measured",
            Verdict::NotMeasured => "not measured",
        }
    }

    fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Holds
        } else {
            Verdict::Fails
        }
    }
}

/// One requirement of XEP-0210.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requirement {
    /// Short key.
    pub key: String,
    /// XEP-0210's name.
    pub name: String,
    /// What XEP-0210 §2/§3 asks, condensed.
    pub asks: String,
    /// How a cell is decided.
    pub rule: String,
}

fn req(key: &str, name: &str, asks: &str, rule: &str) -> Requirement {
    Requirement {
        key: key.into(),
        name: name.into(),
        asks: asks.into(),
        rule: rule.into(),
    }
}

/// The 18 requirements, in XEP-0210's order.
pub fn requirements() -> Vec<Requirement> {
    vec![
        req("confidentiality", "Confidentiality",
            "stanzas MUST NOT be understandable to any other entity; the server understands only what routing needs",
            "the security row `confidentiality_coverage` (every part of every protected stanza kind hidden)"),
        req("integrity", "Integrity",
            "no other entity may change, remove or insert stanzas undetected",
            "the security row `integrity`"),
        req("replay", "Replay Protection",
            "copies of earlier communications resent by another entity are identified and rejected",
            "the security row `replay`"),
        req("pfs", "Perfect Forward Secrecy",
            "communication not revealed if long-lived keys are compromised later; keys changed periodically in long sessions",
            "the security row `forward_secrecy`; `post_compromise_security` passive is shown beside it (periodic key change)"),
        req("pki", "PKI Independence",
            "MUST NOT rely on a PKI, CA, web of trust or any trust model external to Alice and Bob",
            "holds when a man in the middle is detected with only Alice's and Bob's own trust: the security row `mitm_detection` none/pinned or oob/first-contact holds. Every identity in this toolkit is a key the profile generated itself (no CA exists in it), so whether fresh self-generated keys work is shown beside the cell, not decisive"),
        req("authentication", "Authentication",
            "each party knows the other is who they want to communicate with",
            "holds when `mitm_detection` none/pinned or oob/first-contact holds and both `identity_misbinding` rows hold"),
        req("idprot", "Identity Protection",
            "no other entity can identify Alice or Bob; public keys MUST NOT be revealed to a passive attacker; Bob can protect one key from an active one",
            "holds when both `identity_protection` rows (passive, active) hold"),
        req("repudiability", "Repudiability",
            "Alice and Bob can repudiate any stanza; afterwards nothing proves a transcript unmodified by a third party",
            "holds when both `message_repudiation` rows (offline, online) and `forgeability` hold"),
        req("robustness", "Robustness",
            "more than one difficult challenge before an attack succeeds (the issue measures stanza survival and loss recovery)",
            "holds when every stanza went through Prosody intact (`server.json`, plain TCP) and the security row `loss_reorder_tolerance` holds; XEP-0210's own sense (several independent secrets) is not measured"),
        req("upgradability", "Upgradability",
            "Alice tells Bob which versions she supports; Bob chooses one or rejects; the choice must survive an attacker",
            "holds when a stanza carries an offer of alternatives (the downgrade experiment's stripping changed one) and the security row `downgrade_resistance` holds"),
        req("generality", "Generality",
            "applies to the full content of any stanza type: message, presence, iq",
            "holds when a canary message, presence and iq, each sent through an established session, is delivered intact as protected with nothing of its content on the wire (measured now)"),
        req("implementability", "Implementability",
            "client developers can implement it in a straightforward, interoperable way",
            "measured: lines of the implementing crate and of the dependencies it adds to the core's, distinct primitives its sessions ran, words of the specifications it names; no threshold"),
        req("usability", "Usability",
            "100% transparent; verifying keys needs no more than a one-time comparison of up to 6 alphanumeric characters",
            "holds when the string the established session offers for verification (SAS, else fingerprint) has at most 6 alphanumeric characters; whether a session works with no key given in advance is shown beside it"),
        req("efficiency", "Efficiency",
            "efficient when CPU and bandwidth are constrained; the stanzas of negotiation minimized",
            "measured: handshake stanzas, round trips, bytes and CPU, and wire bytes and CPU of a 1 KiB message (`results.json`); no threshold"),
        req("flexibility", "Flexibility",
            "compatible with many algorithms and identity certification schemes (X.509, PGP); able to evolve",
            "measured: the alternatives Alice's offer carries (downgrade experiment); identity certification schemes are not measured (each profile has one identity format here)"),
        req("offline", "Offline Sessions",
            "one-to-one messages stored for later delivery can be encrypted (and still benefit from PFS)",
            "holds when Bob, offline while Alice starts, sends one message and disconnects, delivers that message intact from what Prosody's offline storage hands him (measured now); `forward_secrecy` is shown beside it"),
        req("interoperability", "Interoperability",
            "ideally, encrypted messages can be exchanged with users of non-XMPP systems",
            "holds when a tool of a non-XMPP messaging system (gpg, openssl cms, libotr's otr_parse) parses the protected object as its own format (measured now)"),
        req("object", "Object Encryption",
            "ideally, a single stanza can be encrypted, signed and sent in isolation, without a session",
            "holds when a message with an extension element of an unknown namespace, sent with no session before it and only Alice's stanzas reaching Bob, is delivered intact with nothing of it on the wire (measured now)"),
    ]
}

/// One cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReqCell {
    /// Profile id.
    pub protocol: String,
    /// Requirement key.
    pub requirement: String,
    /// Outcome.
    pub verdict: Verdict,
    /// One line: why.
    pub summary: String,
    /// The evidence.
    pub evidence: Value,
}

/// A control check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// Requirement key.
    pub requirement: String,
    /// Profile id.
    pub protocol: String,
    /// `known-bad` or `baseline`.
    pub role: String,
    /// What must come out.
    pub expected: String,
    /// What came out.
    pub measured: String,
    /// They agree.
    pub ok: bool,
}

/// An input file and its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// File name (in the results directory) or path.
    pub file: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReqRun {
    /// [`SCHEMA`].
    pub schema: String,
    /// Seed of the experiments run now.
    pub seed: u64,
    /// The git revision the results were measured at.
    pub results_revision: String,
    /// When (results.json's provenance date).
    pub results_date: String,
    /// The files read, hashed.
    pub inputs: Vec<Input>,
    /// Where the specifications were read from (`None`: not found).
    pub specs_dir: Option<String>,
    /// The server the offline experiment ran through.
    pub server: String,
    /// The requirements.
    pub requirements: Vec<Requirement>,
    /// Profiles, in the comparison's order.
    pub profiles: Vec<String>,
    /// Every profile x requirement.
    pub cells: Vec<ReqCell>,
    /// Control checks.
    pub checks: Vec<Check>,
    /// Wall time of the run, seconds.
    pub wall_seconds: f64,
}

impl ReqRun {
    /// Read `requirements.json`.
    pub fn read(path: &Path) -> crate::Result<ReqRun> {
        let t = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io(path.display().to_string(), e))?;
        let r: ReqRun = serde_json::from_str(&t).map_err(crate::Error::msg)?;
        if r.schema != SCHEMA {
            return Err(crate::fail!(
                "{}: schema {} (expected {SCHEMA})",
                path.display(),
                r.schema
            ));
        }
        Ok(r)
    }

    /// The cell for (profile, requirement).
    pub fn cell(&self, protocol: &str, requirement: &str) -> Option<&ReqCell> {
        self.cells
            .iter()
            .find(|c| c.protocol == protocol && c.requirement == requirement)
    }
}

fn sha256_file(p: &Path) -> crate::Result<String> {
    use openssl::sha::sha256;
    let b = std::fs::read(p).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
    Ok(sha256(&b).iter().map(|x| format!("{x:02x}")).collect())
}

fn sec<'a>(s: &'a SecurityRun, p: &str, prop: &str, var: &str) -> crate::Result<&'a Cell> {
    s.cells
        .iter()
        .find(|c| c.protocol == p && c.property == prop && c.variant == var)
        .ok_or_else(|| {
            crate::fail!(
                "security.json has no {prop} {var} row for {p}: run `e2elab security` with it"
            )
        })
}

fn holds(c: &Cell) -> bool {
    c.outcome == crate::security::Outcome::Holds
}

fn row_json(c: &Cell) -> Value {
    json!({"row": format!("{} {}", c.property, c.variant).trim().to_string(), "outcome": c.outcome.name(), "summary": c.summary})
}

/// The workspace root (the harness's parent directory at build time).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run everything against the results in `dir`; specifications from
/// `specs` (when it exists).
pub fn run(
    dir: &Path,
    seed: u64,
    specs: Option<&Path>,
    mut progress: impl FnMut(&str),
) -> crate::Result<ReqRun> {
    let t0 = std::time::Instant::now();
    let results = crate::compare::read(dir)?;
    let security = SecurityRun::read(&dir.join("security.json"))?;
    let server = crate::xmpp::read(dir)?
        .ok_or("no server.json in the results: the requirements need the run through Prosody (e2elab compare --transport xmpp, or reproduce)")?;
    if !security.control_failures().is_empty() {
        return Err("security.json records control checks that came out wrong".into());
    }
    let mut inputs = Vec::new();
    // results.json is rewritten after this by `reproduce` (its phase
    // times); its revision and date identify it instead.
    for f in ["security.json", "server.json"] {
        inputs.push(Input {
            file: f.into(),
            sha256: sha256_file(&dir.join(f))?,
        });
    }
    let profiles: Vec<String> = results.profiles.iter().map(|p| p.id.clone()).collect();
    let mut entries = Vec::new();
    for p in &profiles {
        entries.push(crate::registry::entry(p).ok_or_else(|| crate::fail!("unknown profile {p}"))?);
    }
    const KNOWN_BAD: &str = "control-anon-dh";
    const UNPROTECTED: &str = "plaintext";
    let bad = crate::registry::entry(KNOWN_BAD).ok_or("no control-anon-dh")?;
    let plain = crate::registry::entry(UNPROTECTED).ok_or("no plaintext")?;
    let mut run_list = entries.clone();
    for e in [plain, bad] {
        if !run_list.iter().any(|x| x.info().id == e.info().id) {
            run_list.push(e);
        }
    }
    // In memory.
    let mut mem = std::collections::BTreeMap::new();
    for e in &run_list {
        progress(&format!("requirements, in memory: {}", e.info().id));
        let r = experiments::run(e, seed).map_err(|err| {
            crate::fail!(
                "requirements: {}: experiments could not run: {err}",
                e.info().id
            )
        })?;
        mem.insert(e.info().id.to_string(), r);
    }
    // Through Prosody.
    let (server_version, off_rows) = offline::run(&run_list, seed, |id| {
        progress(&format!("requirements, offline through Prosody: {id}"))
    })?;
    let off: std::collections::BTreeMap<String, offline::OfflineOut> = off_rows
        .into_iter()
        .map(|r| (r.protocol.clone(), r))
        .collect();
    // Tools.
    let mut tools = std::collections::BTreeMap::new();
    for e in &run_list {
        let id = e.info().id;
        progress(&format!("requirements, interoperability tools: {id}"));
        tools.insert(id.to_string(), interop::probe(&mem[id].carrier)?);
    }
    // The implementation.
    progress("requirements, implementability");
    let graph = implementability::Graph::load(&workspace_root())?;
    let specs_dir = specs.filter(|d| d.is_dir());

    let mut cells = Vec::new();
    let mut checks = Vec::new();
    let mut spec_inputs = std::collections::BTreeMap::new();
    // The probe's own baseline: what GnuPG and openssl themselves write is
    // recognized (else a changed tool output would turn the column to fails).
    for (tool, recognized) in interop::self_check()? {
        checks.push(Check {
            requirement: "interoperability".into(),
            protocol: tool.clone(),
            role: "baseline".into(),
            expected: "recognized (the tool's own output)".into(),
            measured: if recognized {
                "recognized"
            } else {
                "not recognized"
            }
            .into(),
            ok: recognized,
        });
    }
    for e in &run_list {
        let id = e.info().id;
        let m = &mem[id];
        let mut push = |key: &str, verdict: Verdict, summary: String, evidence: Value| {
            cells.push(ReqCell {
                protocol: id.to_string(),
                requirement: key.to_string(),
                verdict,
                summary,
                evidence,
            })
        };
        // Security rows.
        for (key, prop, var) in [
            ("confidentiality", "confidentiality_coverage", ""),
            ("integrity", "integrity", ""),
            ("replay", "replay", ""),
        ] {
            let c = sec(&security, id, prop, var)?;
            push(
                key,
                Verdict::of(holds(c)),
                c.summary.clone(),
                json!({"security": [row_json(c)]}),
            );
        }
        let fs = sec(&security, id, "forward_secrecy", "")?;
        let pcs = sec(&security, id, "post_compromise_security", "passive")?;
        push(
            "pfs",
            Verdict::of(holds(fs)),
            format!(
                "{}; periodic key change (post-compromise, passive): {}",
                fs.summary,
                pcs.outcome.name()
            ),
            json!({"security": [row_json(fs), row_json(pcs)]}),
        );
        let pinned = sec(&security, id, "mitm_detection", "none/pinned")?;
        let oob = sec(&security, id, "mitm_detection", "oob/first-contact")?;
        let own_trust = holds(pinned) || holds(oob);
        push("pki", Verdict::of(own_trust),
            format!("MITM detected with Alice's and Bob's own trust (pinned key: {}, out-of-band check: {}); fresh self-generated keys: {}",
                pinned.outcome.name(), oob.outcome.name(), if m.self_keys.works { "work" } else { "do not work" }),
            json!({"self_generated_keys": m.self_keys, "security": [row_json(pinned), row_json(oob)]}));
        let kr = sec(&security, id, "identity_misbinding", "key-registration")?;
        let sub = sec(
            &security,
            id,
            "identity_misbinding",
            "identity-substitution",
        )?;
        push("authentication", Verdict::of(own_trust && holds(kr) && holds(sub)),
            format!("MITM detection (pinned {}, out-of-band {}); misbinding (key registration {}, substitution {})",
                pinned.outcome.name(), oob.outcome.name(), kr.outcome.name(), sub.outcome.name()),
            json!({"security": [row_json(pinned), row_json(oob), row_json(kr), row_json(sub)]}));
        let ipp = sec(&security, id, "identity_protection", "passive")?;
        let ipa = sec(&security, id, "identity_protection", "active")?;
        push(
            "idprot",
            Verdict::of(holds(ipp) && holds(ipa)),
            format!(
                "passive attacker: {}; active: {}",
                ipp.outcome.name(),
                ipa.outcome.name()
            ),
            json!({"security": [row_json(ipp), row_json(ipa)]}),
        );
        let ro = sec(&security, id, "message_repudiation", "offline")?;
        let rn = sec(&security, id, "message_repudiation", "online")?;
        let fg = sec(&security, id, "forgeability", "")?;
        push("repudiability", Verdict::of(holds(ro) && holds(rn) && holds(fg)),
            format!("message repudiation offline {}, online {}; transcript forgeable by a third party: {}",
                ro.outcome.name(), rn.outcome.name(), fg.outcome.name()),
            json!({"security": [row_json(ro), row_json(rn), row_json(fg)]}));
        // Robustness: the server run, and loss/reorder.
        let lr = sec(&security, id, "loss_reorder_tolerance", "")?;
        match server
            .profiles
            .iter()
            .find(|r| r.protocol == id && r.mode == "tcp")
        {
            Some(s) => {
                let intact = s.delivered_exact + s.delivered_with_stamp;
                if s.stanzas == 0 || intact == 0 {
                    return Err(crate::fail!("requirements: {id}'s server row carried no application stanza: robustness cannot be judged"));
                }
                let ok = s.altered == 0 && s.lost == 0 && s.error.is_none();
                let rec = &lr.attack["recovery"];
                let recovery = match (rec["messages_lost"].as_u64(), rec["messages"].as_u64()) {
                    (Some(l), Some(m)) => format!(
                        "; one dropped stanza: {l} of {m} messages lost, {}",
                        match rec["recovery_ms"].as_u64() {
                            Some(0) => "nothing to recover".to_string(),
                            Some(ms) => format!("recovered in {ms} ms"),
                            None => "not recovered in the window".to_string(),
                        }
                    ),
                    _ => String::new(),
                };
                push("robustness", Verdict::of(ok && holds(lr)),
                    format!("through Prosody: {} stanza(s), {} altered, {} lost{}; loss/reorder tolerance {}{recovery}",
                        s.stanzas, s.altered, s.lost,
                        s.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default(),
                        lr.outcome.name()),
                    json!({"server": {"stanzas": s.stanzas, "application_delivered_intact": intact, "altered": s.altered, "lost": s.lost, "error": s.error}, "security": [row_json(lr)]}));
            }
            // A control outside the comparison has no server row; its
            // cells here serve the control checks only.
            None if !profiles.iter().any(|p| p == id) => {}
            None => {
                return Err(crate::fail!(
                    "requirements: no plain-TCP row for {id} in server.json (the server run did not include it)"
                ))
            }
        }
        // Upgradability / Flexibility: the downgrade experiment's offer.
        let dg = sec(&security, id, "downgrade_resistance", "")?;
        let os = &dg.attack["offer_stripping"];
        // The hook says when no stanza carries an offer ("offer": "none");
        // otherwise the experiment must have counted what the strip changed.
        let modified = match os["stanzas_modified"].as_u64() {
            Some(n) => n,
            None if os["offer"] == "none" => 0,
            None => {
                return Err(crate::fail!(
                    "requirements: {id}'s downgrade evidence has no stanzas_modified"
                ))
            }
        };
        let offer = os["offer"].as_str().unwrap_or("none").to_string();
        push(
            "upgradability",
            Verdict::of(modified > 0 && holds(dg)),
            if modified > 0 {
                format!("offer on the wire ({offer}); stripping it: {}", dg.summary)
            } else {
                format!(
                    "no stanza carries an offer the attacker could strip ({})",
                    os["why"].as_str().unwrap_or(&offer)
                )
            },
            json!({"offer_stripping": os, "security": [row_json(dg)]}),
        );
        push(
            "flexibility",
            Verdict::Measured,
            if modified > 0 {
                format!("alternatives offered on the wire: {offer}; negotiated {}; identity certification schemes: not measured (one identity format per profile here)",
                    os["honest_negotiated"].as_str().unwrap_or("?"))
            } else {
                "no alternatives are offered on the wire: algorithms are fixed by the profile; identity certification schemes: not measured (one identity format per profile here)".into()
            },
            json!({"offer_stripping": os}),
        );
        // Generality.
        let covered: Vec<&str> = m
            .kinds
            .iter()
            .filter(|k| k.covered)
            .map(|k| k.kind.as_str())
            .collect();
        push(
            "generality",
            Verdict::of(covered.len() == m.kinds.len()),
            m.kinds
                .iter()
                .map(|k| {
                    format!(
                        "{}: {}",
                        k.kind,
                        if k.covered {
                            "protected".to_string()
                        } else if let Some(r) = &k.refused {
                            format!("refused ({})", short(r))
                        } else if !k.leaked.is_empty() {
                            format!("on the wire ({})", k.leaked.join(", "))
                        } else {
                            "not delivered".to_string()
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            json!({"kinds": m.kinds}),
        );
        // Implementability.
        let krate = implementability::crate_of((e.make)().implementation());
        let (crate_lines, own, native) = graph.measure(&krate)?;
        let own_lines: u64 = own.values().sum();
        let prims = implementability::primitives(&results, id);
        let mut specs_words = std::collections::BTreeMap::new();
        let mut words_total = 0u64;
        let mut found = 0;
        if let Some(d) = specs_dir {
            for (label, f) in implementability::spec_files(e.info().spec, d) {
                let w = match f {
                    Some(p) => {
                        found += 1;
                        spec_inputs.insert(p.display().to_string(), sha256_file(&p)?);
                        Some(implementability::words(&p)?)
                    }
                    None => None,
                };
                words_total += w.unwrap_or(0);
                specs_words.insert(label, w);
            }
        }
        let pages = (found > 0).then(|| words_total as f64 / 500.0);
        let spec_text = match specs_dir {
            None => "specification length not measured: the specification texts were not found (pass --specs)".to_string(),
            Some(_) => {
                let missing: Vec<&String> = specs_words.iter().filter(|(_, w)| w.is_none()).map(|(k, _)| k).collect();
                let not_here = if missing.is_empty() { String::new() } else {
                    format!("not on this machine: {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                };
                match pages {
                    Some(p) => format!("{words_total} spec word(s) ({p:.0} pages at 500 words){}",
                        if not_here.is_empty() { String::new() } else { format!("; {not_here}") }),
                    None => format!("specification length not measured: {not_here}"),
                }
            }
        };
        push("implementability", Verdict::Measured,
            format!("{krate}: {crate_lines} lines; {} dependencies beyond the core's, {own_lines} lines{}; {} distinct primitives; {spec_text}",
                own.len(),
                if native.is_empty() { String::new() } else { format!(" (plus native {}: not counted)", native.join(", ")) },
                prims.len()),
            json!(implementability::ImplOut {
                krate: krate.clone(),
                crate_lines,
                own_dep_lines: own_lines,
                own_deps: own,
                native,
                primitives: prims,
                specs: specs_words,
                spec_pages: pages,
            }));
        // Usability.
        let u = &m.usability;
        push("usability", Verdict::of(u.verification.is_some() && (1..=6).contains(&u.alphanumeric)),
            format!("verification string: {} of {} alphanumeric character(s); with no key given in advance: {}",
                u.kind, u.alphanumeric,
                if u.without_prior_key { "works".to_string() } else { format!("does not work ({})", short(u.without_prior_key_error.as_deref().unwrap_or("?"))) }),
            json!(u));
        // Efficiency.
        let hs = results.handshake.iter().find(|h| h.protocol == id);
        let msg = results
            .messages
            .iter()
            .find(|r| r.protocol == id && r.size == 1024);
        match (hs, msg) {
            (Some(h), Some(mr)) => push("efficiency", Verdict::Measured,
                format!("handshake {} stanza(s), {} round trip(s), {:.0} B, {:.2} ms CPU; 1 KiB message {:.0} B on the wire, {:.0} µs CPU",
                    h.messages, h.round_trips, h.bytes_initiator.median + h.bytes_responder.median,
                    h.cpu_us_total.median / 1000.0, mr.wire_bytes.median, mr.total_cpu_us.median),
                json!({"handshake_stanzas": h.messages, "round_trips": h.round_trips,
                    "handshake_bytes": h.bytes_initiator.median + h.bytes_responder.median,
                    "handshake_cpu_us": h.cpu_us_total.median,
                    "message_1k_wire_bytes": mr.wire_bytes.median, "message_1k_cpu_us": mr.total_cpu_us.median})),
            _ if !profiles.iter().any(|p| p == id) => {}
            _ => return Err(crate::fail!("requirements: no handshake or 1 KiB message row for {id} in results.json")),
        }
        // Offline sessions.
        let o = off
            .get(id)
            .ok_or_else(|| crate::fail!("no offline row for {id}"))?;
        push("offline", Verdict::of(o.delivered),
            format!("{} stanza(s) sent while Bob was offline ({} message(s)), {} handed over by the server ({} with a delay stamp): {}; forward secrecy {}",
                o.sent, o.sent_messages, o.stored, o.delay_stamped,
                if o.delivered { "Bob's session delivered the message".to_string() }
                else if o.errors.is_empty() { "Bob's session delivered nothing".to_string() }
                else { format!("Bob's session delivered nothing ({})", short(&o.errors.join("; "))) },
                fs.outcome.name()),
            json!({"offline": o, "security": [row_json(fs)]}));
        // Interoperability.
        let t = &tools[id];
        let rec: Vec<String> = t
            .iter()
            .filter(|x| x.recognized)
            .map(|x| format!("{}: {}", x.tool, x.what.clone().unwrap_or_default()))
            .collect();
        push(
            "interoperability",
            Verdict::of(!rec.is_empty()),
            if rec.is_empty() {
                "no tool of a non-XMPP system parses the protected object".into()
            } else {
                rec.join("; ")
            },
            json!({"tools": t}),
        );
        // Object encryption.
        let ob = &m.object;
        if !ob.baseline_delivered {
            return Err(crate::fail!("requirements: baseline: {id}'s own established session did not deliver the object-encryption message"));
        }
        push(
            "object",
            Verdict::of(ob.delivered_alone && ob.leaked.is_empty()),
            format!(
                "with no session before it and Bob's {} answer(s) dropped: {}{}",
                ob.bob_dropped,
                if ob.delivered_alone {
                    "delivered from Alice's stanza(s) alone"
                } else {
                    "not delivered"
                },
                if ob.leaked.is_empty() {
                    String::new()
                } else {
                    format!("; on the wire: {}", ob.leaked.join(", "))
                }
            ),
            json!(ob),
        );
    }
    // Controls.
    let verdict = |p: &str, r: &str| {
        cells
            .iter()
            .find(|c| c.protocol == p && c.requirement == r)
            .map(|c| c.verdict)
    };
    for r in [
        "confidentiality",
        "integrity",
        "replay",
        "pfs",
        "pki",
        "authentication",
        "generality",
        "usability",
        "interoperability",
        "object",
    ] {
        let got = verdict(UNPROTECTED, r);
        checks.push(Check {
            requirement: r.into(),
            protocol: UNPROTECTED.into(),
            role: "known-bad".into(),
            expected: "fails".into(),
            measured: got.map(|v| v.name()).unwrap_or("missing").into(),
            ok: got == Some(Verdict::Fails),
        });
    }
    for r in ["offline", "object"] {
        let got = verdict(KNOWN_BAD, r);
        checks.push(Check {
            requirement: r.into(),
            protocol: KNOWN_BAD.into(),
            role: "known-bad".into(),
            expected: "fails".into(),
            measured: got.map(|v| v.name()).unwrap_or("missing").into(),
            ok: got == Some(Verdict::Fails),
        });
    }
    let got = verdict(UNPROTECTED, "offline");
    let why = cells
        .iter()
        .find(|c| c.protocol == UNPROTECTED && c.requirement == "offline")
        .map(|c| c.summary.clone())
        .unwrap_or_default();
    checks.push(Check {
        requirement: "offline".into(),
        protocol: UNPROTECTED.into(),
        role: "baseline".into(),
        expected: "holds (the server's offline storage hands the message over intact)".into(),
        measured: format!("{} ({why})", got.map(|v| v.name()).unwrap_or("missing")),
        ok: got == Some(Verdict::Holds),
    });
    // Only the compared profiles' cells are the matrix; the controls' are evidence.
    let out_cells: Vec<ReqCell> = cells
        .iter()
        .filter(|c| profiles.contains(&c.protocol) || c.protocol == UNPROTECTED)
        .cloned()
        .collect();
    let mut ctl_cells: Vec<ReqCell> = cells
        .into_iter()
        .filter(|c| c.protocol == KNOWN_BAD && !profiles.contains(&c.protocol))
        .collect();
    let mut all_cells = out_cells;
    all_cells.append(&mut ctl_cells);
    for (file, sha256) in spec_inputs {
        inputs.push(Input { file, sha256 });
    }
    let run = ReqRun {
        schema: SCHEMA.into(),
        seed,
        results_revision: results.provenance.git_revision.clone(),
        results_date: results.provenance.date.clone(),
        inputs,
        specs_dir: specs_dir.map(|d| d.display().to_string()),
        server: server_version,
        requirements: requirements(),
        profiles,
        cells: all_cells,
        checks,
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    let wrong: Vec<String> = run
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{} {}: expected {}, measured {}",
                c.protocol, c.requirement, c.expected, c.measured
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Err(crate::fail!(
            "requirements: control checks came out wrong: {}",
            wrong.join("; ")
        ));
    }
    Ok(run)
}

fn short(s: &str) -> String {
    crate::security::world::short(s)
}

/// The report's section: the matrix (one row per profile, one column per
/// requirement), then each requirement's question, rule and cells.
pub fn blocks(r: &ReqRun) -> Vec<crate::doc::Block> {
    use crate::doc::Block;
    let mut d = vec![Block::H(2, "XEP-0210 requirements, measured".into())];
    d.push(Block::P(format!(
        "`e2elab requirements` (seed {}, {:.1} s, offline sessions through {}): every compared profile against the 18 requirements of XEP-0210, each cell decided by the rule stated for its requirement below from evidence this toolkit produced: the security rows above, the comparison's figures, the run through Prosody, and experiments of its own. `measured` means figures without a verdict (XEP-0210 sets no threshold). Control checks in the same invocation: {} of {} as designed.",
        r.seed,
        r.wall_seconds,
        r.server,
        r.checks.iter().filter(|c| c.ok).count(),
        r.checks.len()
    )));
    let mut head = vec!["profile".to_string()];
    head.extend(r.requirements.iter().map(|q| q.name.clone()));
    let rows = r
        .profiles
        .iter()
        .map(|p| {
            let mut v = vec![format!("`{p}`")];
            v.extend(r.requirements.iter().map(|q| {
                r.cell(p, &q.key)
                    .map(|c| c.verdict.name().to_string())
                    .unwrap_or_else(|| "missing".into())
            }));
            v
        })
        .collect();
    d.push(Block::Table(head, rows));
    for q in &r.requirements {
        d.push(Block::H(4, q.name.clone()));
        d.push(Block::P(format!(
            "XEP-0210 asks: {}. How a cell is decided: {}.",
            q.asks, q.rule
        )));
        let rows = r
            .profiles
            .iter()
            .filter_map(|p| r.cell(p, &q.key))
            .map(|c| {
                vec![
                    format!("`{}`", c.protocol),
                    c.verdict.name().to_string(),
                    c.summary.clone(),
                ]
            })
            .collect();
        d.push(Block::Table(
            vec!["profile".into(), "outcome".into(), "evidence".into()],
            rows,
        ));
    }
    d
}

/// The section as Markdown.
pub fn markdown(r: &ReqRun) -> String {
    crate::doc::markdown(&blocks(r))
}

/// Write `requirements.json` and `requirements.md` into `dir`.
pub fn write(r: &ReqRun, dir: &Path) -> crate::Result<()> {
    let p = dir.join("requirements.json");
    let json = serde_json::to_string_pretty(r).map_err(crate::Error::msg)? + "\n";
    std::fs::write(&p, json).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
    let back = ReqRun::read(&p)?;
    let md = format!(
        "# XEP-0210 requirements, measured\n\nGenerated by `e2elab requirements` from the results measured at {} (inputs hashed in requirements.json) and its own experiments (seed {}, server {}), in {:.1} s.\n\n{}",
        back.results_revision, back.seed, back.server, back.wall_seconds, markdown(&back)
    );
    let m = dir.join("requirements.md");
    std::fs::write(&m, md).map_err(|e| crate::Error::io(m.display().to_string(), e))
}
