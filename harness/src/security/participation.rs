//! Participation repudiation: can Bob prove to a judge that Alice took part
//! in a session with him? Bob hands over everything he holds right after
//! the handshake (his state export: the identity proof he verified, the AKE
//! values) and the transcript; the judge checks Alice's part with the
//! profile's own verification ([`super::hooks::Hooks::participation`]). Bob
//! also simulates such evidence for a session Alice never joined. Proof is
//! transferable when the judge accepts the genuine evidence and rejects the
//! simulation. Profiles without a handshake are judged on Alice's stanzas.
//!
//! Baseline: the honest session established on both sides with the right
//! peers, and a judge shown a handshake proof Bob's session verified
//! accepts it (else the judge is broken and the experiment an error).
//! Outcome: `fails` on transferable proof.

use super::world::{converse, seen, World};
use super::{cell, Cell, Outcome, R};
use crate::driver::ALICE;
use e2elab_core::{stanza, Property};
use serde_json::json;

/// The experiment.
pub fn run(w: &World) -> R<Vec<Cell>> {
    let mut link = w.established()?;
    let bob_state = link
        .party(1)
        .session()
        .dangerous_export_state()
        .map_err(crate::Error::msg)?;
    converse(&mut link, 1, "PR")?;
    // A presence too, where the profile protects it (a signed presence is
    // evidence of participation as much as a message).
    if w.info.protects.contains(&e2elab_core::StanzaKind::Presence) {
        let (p, _) = super::world::canary_stanza(e2elab_core::StanzaKind::Presence, 0, 900)?;
        let _ = link.send(0, p);
        let _ = link.pump();
    }
    let bob_sees = link
        .party(1)
        .established
        .as_ref()
        .map(|p| stanza::bare_jid(&p.jid).to_string());
    if bob_sees.as_deref() != Some(ALICE) {
        return Err(crate::fail!(
            "baseline: Bob's session is established with {bob_sees:?}, not Alice"
        ));
    }
    let t = seen(&link);
    let test = w.hooks.participation(w, &t, &bob_state)?;
    if test.bob_verified && !test.genuine.authentic {
        return Err(crate::fail!(
            "baseline: the judge rejects the identity proof Bob's session verified ({}): the judge is broken",
            test.genuine.reason
        ));
    }
    let proof = test.genuine.authentic && !test.simulated.authentic;
    Ok(vec![cell(
        w,
        Property::ParticipationRepudiation,
        "",
        Outcome::unless(proof),
        if proof {
            format!(
                "transferable: {} ({}), and Bob cannot simulate it ({})",
                test.evidence, test.genuine.reason, test.simulated.reason
            )
        } else if test.genuine.authentic {
            format!(
                "not transferable: {} ({}), but Bob simulates it as well ({})",
                test.evidence, test.genuine.reason, test.simulated.reason
            )
        } else {
            format!(
                "not transferable: {}: {}",
                test.evidence, test.genuine.reason
            )
        },
        json!({"bob_established_with": ALICE}),
        json!({
            "evidence": test.evidence,
            "genuine": {"authentic": test.genuine.authentic, "reason": test.genuine.reason},
            "simulated": {"authentic": test.simulated.authentic, "reason": test.simulated.reason},
        }),
    )])
}
