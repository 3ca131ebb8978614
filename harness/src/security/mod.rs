//! Security properties, measured (issue 8).
//!
//! Every property is an executable experiment: real sessions of the protocol,
//! driven only through the [`e2elab_core::Protocol`]/[`e2elab_core::Session`]
//! traits over the harness [`crate::link::Link`], with an attacker acting on
//! the wire. Each gives `holds` (the protocol *has* the property: replays are
//! rejected, leaked long-term keys do not decrypt the recording, ...),
//! `fails`, or `not_applicable`, always with evidence naming the stanza, what
//! the attacker did and what the receiver delivered or rejected.
//!
//! The measured outcome is compared with the spec's claim
//! ([`e2elab_core::ProtocolInfo::claim`]) and, for OpenPGP, S/MIME and OTR,
//! with the SoK rating ([`sok::SOK_RATINGS`]); disagreements are listed as
//! findings ([`findings`]). The claim and the measurement are never merged.
//!
//! Every experiment draws its session randomness from the run seed through
//! [`e2elab_core::Env`]; outcomes are identical across runs and seeds. Where a
//! backend takes no external RNG (OpenSSL RSA and CMS keys, Sequoia key
//! generation, libgcrypt inside libotr) the *evidence* can differ between
//! runs (SAS values, key ids, MACs), never the outcome.
//!
//! # DECISIONS
//! 1. **Confidentiality coverage** counts a part as *in clear* when its canary
//!    can be read raw, base64-decoded (any alignment) or hex-decoded in any
//!    wire stanza the send produced. The outer `from`/`to`/`type`/`id`
//!    attributes are routing data a server needs; `id` carries a canary and is
//!    reported, but not counted. `holds` iff no other part of any stanza kind
//!    the profile protects is readable.
//! 2. **Integrity** compares delivered stanzas with the original by element
//!    name, namespace and children (the conformance suite's `content_eq`):
//!    outer attributes are not content any profile protects (RFC 3923's
//!    xmpp+xml wrapping aside). A mutation that leaves the protected payload
//!    alone and delivers the original content is not a failure; appending an
//!    element or rewriting a clear element that is then delivered is.
//! 3. **Replay**: three variants (same session; same session after the
//!    virtual clock moved 11 minutes, past RFC 3923's 5/10-minute windows; a
//!    new session between the same identities, i.e. a receiver restart).
//!    `holds` iff all three are rejected.
//! 4. **Loss/reorder**: one dropped stanza, then (fresh session) two swapped
//!    stanzas; `holds` iff later stanzas and both swapped ones are delivered.
//! 5. **Forward secrecy**: the attacker gets both [`e2elab_core::Identity`]
//!    objects and builds fresh sessions (its own randomness, never the
//!    victims' seeds) that are fed the recording, data only and handshake
//!    plus data, in both directions. Reading any canary body (or reading it in
//!    clear on the wire) is `fails`.
//! 6. **Post-compromise security** is run where the session state *is* the
//!    long-term identity (no handshake stanzas) or nothing is encrypted, and
//!    for OTR through the OTR crate's test-only DH export (`otr_pcs`, only
//!    when this crate is built with its non-default `dangerous-testing`
//!    feature, as its own test suite is); elsewhere the state is not exposed
//!    and the result is `not_applicable` with that reason.
//! 7. **Repudiation/forgeability**: the judge is a fresh receiving session
//!    built from Bob's identity (Bob cooperates) and Alice's public identity;
//!    the forger is Mallory with her own key under Alice's JID. A stanza is
//!    *transferable proof* when the judge accepts Alice's stanza and rejects
//!    the forgery. `forgeability` holds when the forgery is accepted, fails
//!    when it is rejected while genuine stanzas verify, and is
//!    `not_applicable` when no stanza verifies outside its session (MAC-based
//!    protocols: forging needs session MAC keys no trait exposes). For OTR
//!    the published MAC keys are on the wire, so forgeability is measured
//!    with libotr's tools instead ([`otr_tools`]): `holds` iff a MAC key
//!    revealed in clear reproduces an earlier data message's MAC under
//!    `otr_remac`, and a modified message is then written with a valid MAC.
//!    ESessions likewise publishes retired MAC keys in XEP-0200 `<old/>`
//!    elements: the SIGMA profiles are run with `rekey_every=1` (the default
//!    never rekeys, so nothing would be published), and `holds` iff a
//!    published key with a block counter within 512 of the `counter` the
//!    handshake form carries in clear reproduces a recorded `<c/>`'s
//!    HMAC-SHA256; then a different `<c/>` is MACed with it.
//! 8. **Identity protection**: a passive observer's search of an honest
//!    session for each party's public-key bytes (12-byte windows not shared
//!    with the other party's or Mallory's key, so common ASN.1/OpenPGP
//!    structure is not counted; at least two windows), fingerprint (hex or
//!    bytes) or key id (last 16 hex digits of the fingerprint).
//! 9. **MITM detection**: Mallory runs two sessions with her own keys; the
//!    attack counts as detected when a victim's session fails or rejects,
//!    Mallory cannot read or relay, a `KeyChanged`/`Unauthenticated` warning
//!    is raised, or the two victims' SASes differ. Run with the peer keys
//!    pinned (as every run provisions) and at first contact: no peer key
//!    (trust on first use) where the profile allows it, else the key a
//!    directory under Mallory's control returns (hers). `holds` iff detected
//!    in every variant.
//! 10. **Downgrade**: ESessions SIGMA/simplified profiles offer `modp=16,14`;
//!     the attacker removes the preferred option and the DH commitment made
//!     for it (so the offer stays consistent). `otr-v3` has `3` removed from
//!     its offer (`otr-v2` offers only the weakest version: not applicable).
//!     `fails` iff the attacked run establishes, delivers and negotiates
//!     something other than the honest run, with no warning. `jep0027`
//!     negotiates nothing, but a signed presence is its only capability
//!     signal: the signature is stripped, and `fails` iff Bob's session hands
//!     the presence on with no warning or error. Profiles with fixed
//!     algorithms and no offer are `not_applicable`.
//! 11. **Identity misbinding**: Eve registers Alice's key under her own JID
//!     (the Di Raimondo–Gennaro–Krawczyk premise) and relays Alice's stanzas to
//!     Bob, rewriting the outer addressing; `fails` iff Bob delivers Alice's
//!     message in a session whose peer is Eve.

pub mod experiments;
#[cfg(feature = "dangerous-testing")]
pub mod otr_pcs;
pub mod otr_tools;
pub mod sok;
pub mod wire;

use e2elab_core::{ClaimLevel, Property, Protocol};
use serde::Serialize;
use std::collections::BTreeMap;

/// A measured outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The protocol has the property.
    Holds,
    /// The experiment broke it.
    Fails,
    /// The experiment does not apply, or cannot be run black-box (the evidence says why).
    NotApplicable,
}

impl Outcome {
    /// `holds` / `fails` / `not_applicable`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Fails => "fails",
            Outcome::NotApplicable => "not_applicable",
        }
    }
}

/// One property's result.
#[derive(Debug, Clone, Serialize)]
pub struct PropertyResult {
    /// The outcome.
    pub outcome: Outcome,
    /// What was done and what happened.
    pub evidence: String,
}

impl PropertyResult {
    /// Build one.
    pub fn new(outcome: Outcome, evidence: String) -> Self {
        PropertyResult { outcome, evidence }
    }
}

/// Every property's result for one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolSecurity {
    /// Protocol id.
    pub protocol: String,
    /// Family.
    pub family: String,
    /// Seed of the run.
    pub seed: u64,
    /// Results by property name (the 12 names of [`Property::name`]).
    pub properties: BTreeMap<String, PropertyResult>,
}

impl ProtocolSecurity {
    /// The result for `p`.
    pub fn get(&self, p: Property) -> Option<&PropertyResult> {
        self.properties.get(p.name())
    }
}

/// Run every experiment for one protocol. An experiment that cannot run
/// (setup error) is reported `not_applicable` with the error as evidence and
/// noted in the result, never silently dropped.
pub fn run_protocol(proto: &dyn Protocol, seed: u64) -> Result<ProtocolSecurity, String> {
    use experiments as x;
    let ctx = x::Ctx::new(proto, seed)?;
    let mut props = BTreeMap::new();
    let mut put = |p: Property, r: Result<PropertyResult, String>| {
        let r = r.unwrap_or_else(|e| {
            PropertyResult::new(
                Outcome::NotApplicable,
                format!("experiment could not run: {e}"),
            )
        });
        props.insert(p.name().to_string(), r);
    };
    put(Property::ConfidentialityCoverage, x::confidentiality(&ctx));
    put(Property::Integrity, x::integrity(&ctx));
    put(Property::Replay, x::replay(&ctx));
    put(Property::LossReorderTolerance, x::loss_reorder(&ctx));
    put(Property::ForwardSecrecy, x::forward_secrecy(&ctx));
    #[cfg(feature = "dangerous-testing")]
    let pcs = if proto.info().family == "otr" {
        otr_pcs::run(&ctx)
    } else {
        x::post_compromise(&ctx)
    };
    #[cfg(not(feature = "dangerous-testing"))]
    let pcs = x::post_compromise(&ctx);
    put(Property::PostCompromiseSecurity, pcs);
    match x::repudiation(&ctx) {
        Ok((r, f)) => {
            put(Property::MessageRepudiation, Ok(r));
            if proto.info().family == "otr" {
                put(Property::Forgeability, x::otr_forgeability(&ctx));
            } else if proto.info().family == "esessions" {
                put(Property::Forgeability, x::esessions_forgeability(&ctx));
            } else {
                put(Property::Forgeability, Ok(f));
            }
        }
        Err(e) => {
            put(Property::MessageRepudiation, Err(e.clone()));
            put(Property::Forgeability, Err(e));
        }
    }
    put(Property::IdentityProtection, x::identity_protection(&ctx));
    put(Property::MitmDetection, x::mitm(&ctx));
    put(Property::DowngradeResistance, x::downgrade(&ctx));
    put(Property::IdentityMisbinding, x::misbinding(&ctx));
    Ok(ProtocolSecurity {
        protocol: proto.info().id.to_string(),
        family: proto.info().family.to_string(),
        seed,
        properties: props,
    })
}

/// A disagreement between the measurement and the spec's claim or the SoK rating.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Protocol id.
    pub protocol: String,
    /// Property name.
    pub property: String,
    /// `spec` or `sok`.
    pub against: &'static str,
    /// What was expected.
    pub expected: String,
    /// What was measured.
    pub measured: Outcome,
    /// The evidence of the measurement.
    pub evidence: String,
}

fn claim_name(l: ClaimLevel) -> &'static str {
    match l {
        ClaimLevel::Claimed => "claimed",
        ClaimLevel::Partial => "partial",
        ClaimLevel::NotClaimed => "not_claimed",
        ClaimLevel::NotApplicable => "not_applicable",
    }
}

/// Whether a claim level disagrees with a measured outcome. `Partial` never
/// disagrees (the claim's note says which part; the evidence shows it), and
/// an experiment that could not be run black-box disagrees with nothing.
pub fn claim_disagrees(level: ClaimLevel, m: Outcome) -> bool {
    matches!(
        (level, m),
        (ClaimLevel::Claimed, Outcome::Fails)
            | (ClaimLevel::NotClaimed, Outcome::Holds)
            | (ClaimLevel::NotApplicable, Outcome::Holds)
            | (ClaimLevel::NotApplicable, Outcome::Fails)
    )
}

/// Whether a SoK rating disagrees with a measured outcome (`◐` never does).
pub fn sok_disagrees(r: sok::Rating, m: Outcome) -> bool {
    matches!(
        (r, m),
        (sok::Rating::Full, Outcome::Fails) | (sok::Rating::None, Outcome::Holds)
    )
}

/// Every disagreement in `results` (needs the protocols for their claims).
pub fn findings(results: &[ProtocolSecurity]) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in results {
        let Some(proto) = crate::registry::get(&r.protocol) else {
            continue;
        };
        let info = proto.info();
        for p in Property::ALL {
            let Some(m) = r.get(p) else { continue };
            if let Some(c) = info.claim(p) {
                if claim_disagrees(c.level, m.outcome) {
                    out.push(Finding {
                        protocol: r.protocol.clone(),
                        property: p.name().to_string(),
                        against: "spec",
                        expected: format!("{} ({}: {})", claim_name(c.level), c.source, c.note),
                        measured: m.outcome,
                        evidence: m.evidence.clone(),
                    });
                }
            }
            if let Some(s) = sok::rating(&r.family, p) {
                if sok_disagrees(s.rating, m.outcome) {
                    out.push(Finding {
                        protocol: r.protocol.clone(),
                        property: p.name().to_string(),
                        against: "sok",
                        expected: format!(
                            "{} {} \"{}\"",
                            s.design,
                            s.rating.symbol(),
                            s.sok_property
                        ),
                        measured: m.outcome,
                        evidence: m.evidence.clone(),
                    });
                }
            }
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The security table as Markdown: per protocol and property, the measured
/// outcome, the spec's claim and the SoK rating side by side, then every
/// finding. This is what `e2elab security --format md` prints and what a
/// report can embed.
pub fn markdown(results: &[ProtocolSecurity]) -> String {
    let mut s = String::new();
    s.push_str("## Security properties, measured\n\n");
    s.push_str("Measured = executable experiment (`e2elab security`); spec = the profile's declared claim; SoK = Unger et al., IEEE S&P 2015, Table II (● full, ◐ partial, ○ none; OpenPGP, S/MIME and OTR only).\n\n");
    // Compact matrix.
    s.push_str("| property |");
    for r in results {
        s.push_str(&format!(" {} |", r.protocol));
    }
    s.push_str("\n|---|");
    for _ in results {
        s.push_str("---|");
    }
    s.push('\n');
    for p in Property::ALL {
        s.push_str(&format!("| {} |", p.name()));
        for r in results {
            let m = r.get(p).map(|m| m.outcome.name()).unwrap_or("-");
            let c = crate::registry::get(&r.protocol)
                .and_then(|pr| pr.info().claim(p).map(|c| claim_name(c.level)))
                .unwrap_or("-");
            let k = sok::rating(&r.family, p)
                .map(|x| x.rating.symbol())
                .unwrap_or("");
            s.push_str(&format!(
                " {m} / {c}{} |",
                if k.is_empty() {
                    String::new()
                } else {
                    format!(" / {k}")
                }
            ));
        }
        s.push('\n');
    }
    s.push_str("\nEach cell: measured / spec claim [/ SoK].\n\n");
    let f = findings(results);
    s.push_str(&format!("### Findings ({} disagreements)\n\n", f.len()));
    if f.is_empty() {
        s.push_str("None.\n");
    } else {
        s.push_str("| protocol | property | against | expected | measured | evidence |\n|---|---|---|---|---|---|\n");
        for x in &f {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                x.protocol,
                x.property,
                x.against,
                cell(&x.expected),
                x.measured.name(),
                cell(&x.evidence)
            ));
        }
    }
    s.push_str("\n### SoK ratings used\n\n| design | SoK property | rating | compared with | note |\n|---|---|---|---|---|\n");
    for r in sok::SOK_RATINGS {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.design,
            r.sok_property,
            r.rating.symbol(),
            r.property.name(),
            cell(r.note)
        ));
    }
    s.push_str("\n### Evidence\n\n");
    for r in results {
        s.push_str(&format!("#### {} (seed {})\n\n", r.protocol, r.seed));
        for p in Property::ALL {
            if let Some(m) = r.get(p) {
                s.push_str(&format!(
                    "- **{}**: {}. {}\n",
                    p.name(),
                    m.outcome.name(),
                    m.evidence
                ));
            }
        }
        s.push('\n');
    }
    s
}

/// Run the experiments for `protos` and return the Markdown security table
/// (for the comparison report).
pub fn markdown_for(protos: &[Box<dyn Protocol>], seed: u64) -> Result<String, String> {
    let results = protos
        .iter()
        .map(|p| run_protocol(p.as_ref(), seed))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(markdown(&results))
}

/// `e2elab security`: run the experiments for `ids` (`all` or none = every
/// profile) and render them as `table`, `json` or `md`.
pub fn cli(ids: &[String], seed: u64, format: &str) -> Result<String, String> {
    let protos = crate::registry::resolve(ids)?;
    let mut results = Vec::new();
    for p in &protos {
        eprintln!("security: {} ...", p.info().id);
        results.push(run_protocol(p.as_ref(), seed)?);
    }
    match format {
        "json" => {
            let f = findings(&results);
            let v = serde_json::json!({ "results": results, "findings": f });
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string())
        }
        "md" => Ok(markdown(&results)),
        _ => {
            let mut t = crate::output::Table::new(&[
                "protocol", "property", "measured", "spec", "sok", "evidence",
            ]);
            for r in &results {
                let info = crate::registry::get(&r.protocol);
                for p in Property::ALL {
                    let Some(m) = r.get(p) else { continue };
                    let c = info
                        .as_ref()
                        .and_then(|i| i.info().claim(p).map(|c| claim_name(c.level)))
                        .unwrap_or("-");
                    let k = sok::rating(&r.family, p)
                        .map(|x| x.rating.symbol())
                        .unwrap_or("");
                    let ev: String = m.evidence.chars().take(160).collect();
                    t.row(vec![
                        r.protocol.clone(),
                        p.name().to_string(),
                        m.outcome.name().to_string(),
                        c.to_string(),
                        k.to_string(),
                        ev,
                    ]);
                }
            }
            let f = findings(&results);
            let mut s = t.render();
            s.push_str(&format!(
                "\n{} finding(s) (measured outcome disagrees with the spec claim or SoK); full evidence: --format json or md\n",
                f.len()
            ));
            for x in &f {
                s.push_str(&format!(
                    "  {} {}: measured {}, {} says {}\n",
                    x.protocol,
                    x.property,
                    x.measured.name(),
                    x.against,
                    x.expected
                ));
            }
            Ok(s)
        }
    }
}
