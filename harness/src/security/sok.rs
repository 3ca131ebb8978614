//! The ratings of *SoK: Secure Messaging* (N. Unger, S. Dechand, J. Bonneau,
//! S. Fahl, H. Perl, I. Goldberg, M. Smith; IEEE S&P 2015), Table II
//! ("conversation security"), for the three designs the paper rates that this
//! toolkit implements: OpenPGP and S/MIME (the paper's "static asymmetric
//! cryptography" baseline, which it instantiates with both) and OTR.
//!
//! Only the columns that map onto one of our measured properties are kept;
//! the paper's column name is kept verbatim beside ours. A rating is the
//! paper's filled (`Full`), half-filled (`Partial`) or empty (`None`) circle.
//! The ratings were transcribed by hand from the paper's table (no machine
//! source exists); `note` says why a mapping is approximate. The paper has no
//! column for replay, downgrade or MITM detection as we measure them (its
//! "Authentication" and trust-establishment columns rate key verification
//! schemes, not the message protocol), so those rows have no SoK rating.

use e2elab_core::Property;

/// A circle in the paper's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Filled circle: provides the property.
    Full,
    /// Half-filled circle: partially provides it.
    Partial,
    /// Empty circle: does not provide it.
    None,
}

impl Rating {
    /// The circle as text.
    pub fn symbol(self) -> &'static str {
        match self {
            Rating::Full => "●",
            Rating::Partial => "◐",
            Rating::None => "○",
        }
    }
}

/// One rating of the paper, mapped onto one of our properties.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SokRating {
    /// The paper's row (design).
    pub design: &'static str,
    /// The paper's column name.
    pub sok_property: &'static str,
    /// Our property it is compared with.
    pub property: Property,
    /// The rating.
    pub rating: Rating,
    /// Why the mapping is what it is.
    pub note: &'static str,
}

const fn r(
    design: &'static str,
    sok_property: &'static str,
    property: Property,
    rating: Rating,
    note: &'static str,
) -> SokRating {
    SokRating {
        design,
        sok_property,
        property,
        rating,
        note,
    }
}

/// The ratings used (design "OpenPGP" covers both `jep0027` and `xep0373-ox`,
/// "S/MIME" both RFC 3923 profiles, "OTR" both OTR versions).
pub const SOK_RATINGS: &[SokRating] = &[
    // Static asymmetric cryptography: OpenPGP.
    r(
        "OpenPGP",
        "Confidentiality",
        Property::ConfidentialityCoverage,
        Rating::Full,
        "the paper rates message content; we measure every part of a stanza",
    ),
    r(
        "OpenPGP",
        "Integrity",
        Property::Integrity,
        Rating::Full,
        "signed-and-encrypted content",
    ),
    r(
        "OpenPGP",
        "Forward Secrecy",
        Property::ForwardSecrecy,
        Rating::None,
        "",
    ),
    r(
        "OpenPGP",
        "Backward Secrecy",
        Property::PostCompromiseSecurity,
        Rating::None,
        "the paper's backward secrecy is our post-compromise security",
    ),
    r(
        "OpenPGP",
        "Anonymity Preserving",
        Property::IdentityProtection,
        Rating::None,
        "key identifiers travel in every message",
    ),
    r(
        "OpenPGP",
        "Message Repudiation",
        Property::MessageRepudiation,
        Rating::None,
        "messages are signed",
    ),
    r(
        "OpenPGP",
        "Out-of-Order Resilient / Dropped Message Resilient",
        Property::LossReorderTolerance,
        Rating::Full,
        "two columns, both filled",
    ),
    // Static asymmetric cryptography: S/MIME.
    r(
        "S/MIME",
        "Confidentiality",
        Property::ConfidentialityCoverage,
        Rating::Full,
        "the paper rates message content; we measure every part of a stanza",
    ),
    r(
        "S/MIME",
        "Integrity",
        Property::Integrity,
        Rating::Full,
        "signed-and-encrypted content",
    ),
    r(
        "S/MIME",
        "Forward Secrecy",
        Property::ForwardSecrecy,
        Rating::None,
        "",
    ),
    r(
        "S/MIME",
        "Backward Secrecy",
        Property::PostCompromiseSecurity,
        Rating::None,
        "the paper's backward secrecy is our post-compromise security",
    ),
    r(
        "S/MIME",
        "Anonymity Preserving",
        Property::IdentityProtection,
        Rating::None,
        "recipient certificate identifiers travel in every message",
    ),
    r(
        "S/MIME",
        "Message Repudiation",
        Property::MessageRepudiation,
        Rating::None,
        "messages are signed",
    ),
    r(
        "S/MIME",
        "Out-of-Order Resilient / Dropped Message Resilient",
        Property::LossReorderTolerance,
        Rating::Full,
        "two columns, both filled",
    ),
    // OTR.
    r(
        "OTR",
        "Confidentiality",
        Property::ConfidentialityCoverage,
        Rating::Full,
        "the paper rates message content; we measure every part of a stanza",
    ),
    r(
        "OTR",
        "Integrity",
        Property::Integrity,
        Rating::Full,
        "MACed data messages",
    ),
    r(
        "OTR",
        "Forward Secrecy",
        Property::ForwardSecrecy,
        Rating::Full,
        "DH ratchet",
    ),
    r(
        "OTR",
        "Backward Secrecy",
        Property::PostCompromiseSecurity,
        Rating::Full,
        "DH ratchet: fresh DH values heal a passive compromise",
    ),
    r(
        "OTR",
        "Anonymity Preserving",
        Property::IdentityProtection,
        Rating::Full,
        "public keys only inside the encrypted AKE",
    ),
    r(
        "OTR",
        "Message Repudiation",
        Property::MessageRepudiation,
        Rating::Full,
        "MACs only, MAC keys published",
    ),
    r(
        "OTR",
        "Out-of-Order Resilient / Dropped Message Resilient",
        Property::LossReorderTolerance,
        Rating::Partial,
        "dropped messages are tolerated; out-of-order only across key changes",
    ),
];

/// The paper's design row for a protocol family, if it rates one.
pub fn design_for(family: &str) -> Option<&'static str> {
    match family {
        "openpgp" => Some("OpenPGP"),
        "smime" => Some("S/MIME"),
        "otr" => Some("OTR"),
        _ => None,
    }
}

/// Which measured variant of a property the paper's column speaks of: its
/// message repudiation is the receiver's (our online judge), its backward
/// secrecy and anonymity are against passive attackers.
pub fn variant_for(p: Property) -> &'static str {
    match p {
        Property::MessageRepudiation => "online",
        Property::PostCompromiseSecurity | Property::IdentityProtection => "passive",
        _ => "",
    }
}

/// The rating for a family, property and measured variant, if the paper gives one.
pub fn rating(family: &str, p: Property, variant: &str) -> Option<&'static SokRating> {
    let d = design_for(family)?;
    if !variant.starts_with(variant_for(p)) {
        return None;
    }
    SOK_RATINGS
        .iter()
        .find(|s| s.design == d && s.property == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rated_design_has_the_same_columns() {
        for d in ["OpenPGP", "S/MIME", "OTR"] {
            let n = SOK_RATINGS.iter().filter(|s| s.design == d).count();
            assert_eq!(n, 7, "{d}");
        }
        assert!(rating("otr", Property::ForwardSecrecy, "").is_some());
        assert!(rating("esessions", Property::ForwardSecrecy, "").is_none());
        assert_eq!(
            rating("smime", Property::MessageRepudiation, "online").map(|r| r.rating),
            Some(Rating::None)
        );
        assert!(rating("smime", Property::MessageRepudiation, "offline").is_none());
    }
}
