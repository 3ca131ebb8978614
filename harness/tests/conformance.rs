//! The conformance suite, once per registered protocol. A protocol joins with one line.

e2elab::conformance_suite!(plaintext, "plaintext");
e2elab::conformance_suite!(esessions_sigma_r, "esessions-sigma-r");
e2elab::conformance_suite!(esessions_sigma_i, "esessions-sigma-i");
e2elab::conformance_suite!(esessions_simplified, "esessions-simplified");
e2elab::conformance_suite!(esessions_ssh, "esessions-ssh");
e2elab::conformance_suite!(rfc3923, "rfc3923");
e2elab::conformance_suite!(rfc3923_modern, "rfc3923-modern");
e2elab::conformance_suite!(xep0290_dsig, "xep0290-dsig");
e2elab::conformance_suite!(xmlenc_dsig, "xmlenc-dsig");
e2elab::conformance_suite!(omemo, "omemo");
e2elab::conformance_suite!(mls, "mls");
e2elab::conformance_suite!(jep0027, "jep0027");
e2elab::conformance_suite!(xep0373_ox, "xep0373-ox");
e2elab::conformance_suite!(otr_v3, "otr-v3");
e2elab::conformance_suite!(otr_v2, "otr-v2");
// The known-bad controls are real sessions too: the suite holds them to
// their (empty) claims like any profile.
e2elab::conformance_suite!(control_signed_clear, "control-signed-clear");
e2elab::conformance_suite!(control_strict_sequence, "control-strict-sequence");
e2elab::conformance_suite!(control_static_dh, "control-static-dh");
e2elab::conformance_suite!(control_no_mac, "control-no-mac");
e2elab::conformance_suite!(control_no_counter, "control-no-counter");
e2elab::conformance_suite!(control_anon_dh, "control-anon-dh");
e2elab::conformance_suite!(control_clear_identity, "control-clear-identity");
e2elab::conformance_suite!(control_unsigned_offer, "control-unsigned-offer");
e2elab::conformance_suite!(control_unbound_identity, "control-unbound-identity");
e2elab::conformance_suite!(control_signed_messages, "control-signed-messages");

/// Every registered protocol must be listed above: this test fails when one is not.
#[test]
fn every_registered_protocol_is_in_the_suite() {
    let src = include_str!("conformance.rs");
    for id in e2elab::registry::ids() {
        assert!(
            src.contains(&format!("\"{id}\")")),
            "protocol {id} is registered but not in the conformance suite"
        );
    }
}
