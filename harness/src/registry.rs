//! Every protocol profile the toolkit knows. A new protocol joins with one line here.

use e2elab_core::Protocol;

/// All profiles, in report order (the control row first).
pub fn all() -> Vec<Box<dyn Protocol>> {
    vec![
        Box::new(e2elab_plaintext::Plaintext),
        Box::new(e2elab_esessions::Esessions::sigma_r()),
        Box::new(e2elab_esessions::Esessions::sigma_i()),
        Box::new(e2elab_esessions::Esessions::simplified()),
        Box::new(e2elab_esessions::Esessions::ssh()),
        Box::new(e2elab_rfc3923::Rfc3923::classic()),
        Box::new(e2elab_rfc3923::Rfc3923::modern()),
        Box::new(e2elab_openpgp::Jep0027::default()),
        Box::new(e2elab_openpgp::Ox::default()),
        Box::new(e2elab_otr::OTR_V3),
        Box::new(e2elab_otr::OTR_V2),
    ]
}

/// The profile with this id.
pub fn get(id: &str) -> Option<Box<dyn Protocol>> {
    all().into_iter().find(|p| p.info().id == id)
}

/// Every id, in order.
pub fn ids() -> Vec<&'static str> {
    all().iter().map(|p| p.info().id).collect()
}

/// Resolve a list of ids (`all` means every profile); unknown ids are an error
/// naming the known ones.
pub fn resolve(ids_in: &[String]) -> Result<Vec<Box<dyn Protocol>>, String> {
    if ids_in.is_empty() || ids_in.iter().any(|i| i == "all") {
        return Ok(all());
    }
    ids_in
        .iter()
        .map(|id| {
            get(id).ok_or_else(|| format!("unknown protocol '{id}'; known: {}", ids().join(", ")))
        })
        .collect()
}
