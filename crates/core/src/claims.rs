//! What a protocol's *specification claims*, kept apart from anything measured.
//!
//! A protocol declares, for each security property, what its spec says and
//! where. The harness measures what actually holds (issue 8); the two are
//! different types and different report columns and are never merged.

use serde::Serialize;

/// The properties the toolkit compares. `holds` for each means the protocol
/// *has* the property named (e.g. `Replay` = replays are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Which parts of a stanza are hidden from the wire.
    ConfidentialityCoverage,
    /// Modified protected content is never delivered as genuine.
    Integrity,
    /// Replayed stanzas are rejected.
    Replay,
    /// A dropped or reordered stanza does not break the session.
    LossReorderTolerance,
    /// Leaked long-term keys do not decrypt a recorded transcript.
    ForwardSecrecy,
    /// Security recovers some exchanges after a session-state compromise.
    PostCompromiseSecurity,
    /// The transcript holds no transferable proof of authorship.
    MessageRepudiation,
    /// Nothing proves to a third party that a party took part in a session.
    ParticipationRepudiation,
    /// Transcripts can be forged by the receiver or anyone after MAC keys are published.
    Forgeability,
    /// Long-term identities are hidden from a passive observer.
    IdentityProtection,
    /// A man in the middle is detected (key-change warning or SAS mismatch).
    MitmDetection,
    /// Stripping strong options from the negotiation is detected.
    DowngradeResistance,
    /// Resistance to identity misbinding (unknown key share).
    IdentityMisbinding,
}

impl Property {
    /// Every property, in report order.
    pub const ALL: [Property; 13] = [
        Property::ConfidentialityCoverage,
        Property::Integrity,
        Property::Replay,
        Property::LossReorderTolerance,
        Property::ForwardSecrecy,
        Property::PostCompromiseSecurity,
        Property::MessageRepudiation,
        Property::ParticipationRepudiation,
        Property::Forgeability,
        Property::IdentityProtection,
        Property::MitmDetection,
        Property::DowngradeResistance,
        Property::IdentityMisbinding,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Property::ConfidentialityCoverage => "confidentiality_coverage",
            Property::Integrity => "integrity",
            Property::Replay => "replay",
            Property::LossReorderTolerance => "loss_reorder_tolerance",
            Property::ForwardSecrecy => "forward_secrecy",
            Property::PostCompromiseSecurity => "post_compromise_security",
            Property::MessageRepudiation => "message_repudiation",
            Property::ParticipationRepudiation => "participation_repudiation",
            Property::Forgeability => "forgeability",
            Property::IdentityProtection => "identity_protection",
            Property::MitmDetection => "mitm_detection",
            Property::DowngradeResistance => "downgrade_resistance",
            Property::IdentityMisbinding => "identity_misbinding",
        }
    }
}

/// What the spec says about one property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimLevel {
    /// The spec claims the property.
    Claimed,
    /// The spec claims part of it (the note says which part).
    Partial,
    /// The spec says it does not provide it, or is silent and the design cannot.
    NotClaimed,
    /// The property does not apply (e.g. downgrade resistance without a negotiation).
    NotApplicable,
}

/// One claim, with the section of the spec it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// The property.
    pub property: Property,
    /// What the spec says.
    pub level: ClaimLevel,
    /// Where: document and section (e.g. `XEP-0116 v0.16 §12`).
    pub source: &'static str,
    /// A sentence of context.
    pub note: &'static str,
    /// Which measured variants of the property the claim speaks of: `""` for
    /// all of them, else a prefix of the variant names (e.g. `"oob"`: only
    /// when the users compare what the protocol shows out of band).
    pub under: &'static str,
}

impl Claim {
    /// A claim about every variant of `property`.
    pub const fn new(
        property: Property,
        level: ClaimLevel,
        source: &'static str,
        note: &'static str,
    ) -> Self {
        Claim {
            property,
            level,
            source,
            note,
            under: "",
        }
    }

    /// The same claim, limited to the variants whose name starts with `prefix`.
    pub const fn under(mut self, prefix: &'static str) -> Self {
        self.under = prefix;
        self
    }

    /// Whether the claim speaks of the measured `variant`.
    pub fn applies_to(&self, variant: &str) -> bool {
        variant.starts_with(self.under)
    }
}

/// What a session does with itself after it rejects bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterBadInput {
    /// The session is unchanged and keeps working (the common case).
    Unchanged,
    /// The spec demands the session be terminated: it ends (`Closed`), or,
    /// where the profile re-negotiates after a failure, its keys are dropped
    /// and it is back to negotiating (`Idle` or `Handshaking`).
    Terminate,
}

/// The static description of one protocol profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolInfo {
    /// The id used on the command line (`plaintext`, `esessions-sigma-r`, ...).
    pub id: &'static str,
    /// The family (`control`, `esessions`, `openpgp`, `smime`, `otr`).
    pub family: &'static str,
    /// The governing spec(s) and version.
    pub spec: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Stanza kinds it can protect.
    pub protects: &'static [crate::stanza::StanzaKind],
    /// What a session does after rejecting bad input.
    pub after_bad_input: AfterBadInput,
    /// The spec's claims, one per property.
    pub claims: Vec<Claim>,
    /// For the `control` family: the measured rows (property, variant prefix;
    /// `""` = every variant) this profile was built to fail. Empty for real
    /// profiles. The security experiments must come out `fails` on each.
    pub control_for: &'static [(Property, &'static str)],
}

impl ProtocolInfo {
    /// The claim for `p`, if declared.
    pub fn claim(&self, p: Property) -> Option<&Claim> {
        self.claims.iter().find(|c| c.property == p)
    }

    /// Whether the spec claims `p` (fully).
    pub fn claims(&self, p: Property) -> bool {
        self.claim(p)
            .is_some_and(|c| c.level == ClaimLevel::Claimed)
    }
}
