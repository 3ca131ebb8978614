//! The option negotiation, as pure functions over forms: Bob's choice from
//! Alice's offer ([`negotiate`]) and Alice's check that Bob chose among her
//! offers ([`check_choice`]). Neither touches keys, the network or the
//! session state.

use super::settings::{cipher_key_len, KeyMode, Settings, LOGGING_FIELDS};
use crate::form::Form;
use crate::{keys, prim};
use e2elab_core::{DecodeError, PeerMisbehaved, Result, StanzaKind};

/// The parameters of a session, as Bob chose them (or as Alice learned them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// MODP group number.
    pub group: u32,
    /// Its position in Alice's `modp` field (her DH commitment or value at
    /// that position belongs to it).
    pub group_index: usize,
    /// Cipher name (`aes128-ctr`, ...).
    pub crypt: String,
    /// How Alice identifies herself.
    pub init_pubkey: KeyMode,
    /// How Bob identifies himself.
    pub resp_pubkey: KeyMode,
    /// Stanza kinds that may be protected.
    pub stanzas: Vec<StanzaKind>,
    /// Minimum stanzas between rekeys.
    pub rekey_freq: u64,
    /// The logging field's name (`otr` or `logging`) and chosen value.
    pub logging: (String, String),
    /// 3-message negotiation (Alice sent `dhkeys`, not `dhhashes`).
    pub three: bool,
}

/// Why Bob refuses an offer: the error condition and the fields at fault,
/// for the error stanza XEP-0116 §"ESession Rejection" describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `not-acceptable` or `feature-not-implemented`.
    pub condition: &'static str,
    /// The fields whose options Bob cannot accept.
    pub fields: Vec<String>,
}

/// The fixed parameters: field and the one value both sides support.
const FIXED: [(&str, &str); 4] = [
    ("hash_algs", "sha256"),
    ("compress", "none"),
    ("security", "e2e"),
    ("ver", "1.0"),
];

/// Which logging field a form carries (the first of `otr`, `logging`).
fn logging_field(f: &Form) -> Option<(&'static str, [&'static str; 2])> {
    LOGGING_FIELDS
        .into_iter()
        .find(|(var, _)| f.field(var).is_some())
}

fn kind(s: &str) -> Option<StanzaKind> {
    match s {
        "message" => Some(StanzaKind::Message),
        "presence" => Some(StanzaKind::Presence),
        "iq" => Some(StanzaKind::Iq),
        _ => None,
    }
}

/// Bob: choose from Alice's offer (XEP-0116 §4.3, XEP-0217 §4.2). Every
/// field is read from its `<option>`s or, when it has none, its value (a
/// `hidden` fixed parameter). Alice's preference order decides where
/// several choices are acceptable.
pub fn negotiate(offer: &Form, s: &Settings) -> std::result::Result<Chosen, Rejection> {
    let three = offer.field("dhkeys").is_some();
    if three == s.four || offer.field("dhhashes").is_some() == three {
        // The other variant, or both, or neither.
        return Err(Rejection {
            condition: "feature-not-implemented",
            fields: vec![if three { "dhkeys" } else { "dhhashes" }.into()],
        });
    }
    let choices = |var: &str| -> &[String] { offer.field(var).map(|f| f.choices()).unwrap_or(&[]) };
    let offers = |var: &str, v: &str| choices(var).iter().any(|o| o == v);
    let mut bad: Vec<String> = Vec::new();
    let group = choices("modp").iter().enumerate().find_map(|(i, g)| {
        let id = g.parse::<u32>().ok()?;
        prim::SUPPORTED_GROUPS.contains(&id).then_some((id, i))
    });
    if group.is_none() {
        bad.push("modp".into());
    }
    let crypt = choices("crypt_algs")
        .iter()
        .find(|o| s.crypt.contains(o) && cipher_key_len(o).is_some())
        .cloned();
    if crypt.is_none() {
        bad.push("crypt_algs".into());
    }
    for (var, v) in FIXED {
        if !offers(var, v) {
            bad.push(var.into());
        }
    }
    if s.four && !offers("sas_algs", "sas28x5") {
        bad.push("sas_algs".into());
    }
    if s.sign_algs_used() && !offers("sign_algs", keys::RSA_SHA256) {
        bad.push("sign_algs".into());
    }
    if !offers("init_pubkey", s.init_pubkey.name()) {
        bad.push("init_pubkey".into());
    }
    if !offers("resp_pubkey", s.resp_pubkey.name()) {
        bad.push("resp_pubkey".into());
    }
    let stanzas: Vec<StanzaKind> = s
        .stanzas
        .iter()
        .copied()
        .filter(|k| offers("stanzas", k.name()))
        .collect();
    if stanzas.is_empty() {
        bad.push("stanzas".into());
    }
    // Alice's (first) value; Bob answers at least it and at least his own.
    let alice_freq = choices("rekey_freq")
        .first()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| (1..1 << 32).contains(v));
    if alice_freq.is_none() {
        bad.push("rekey_freq".into());
    }
    let logging = logging_field(offer).and_then(|(var, accepted)| {
        choices(var)
            .iter()
            .find(|o| accepted.contains(&o.as_str()))
            .map(|v| (var.to_string(), v.clone()))
    });
    if logging.is_none() {
        bad.push(
            logging_field(offer)
                .map(|(v, _)| v)
                .unwrap_or(LOGGING_FIELDS[0].0)
                .into(),
        );
    }
    if !offers("disclosure", "never") {
        bad.push("disclosure".into());
    }
    match (group, crypt, alice_freq, logging) {
        (Some((group, group_index)), Some(crypt), Some(f), Some(logging)) if bad.is_empty() => {
            Ok(Chosen {
                group,
                group_index,
                crypt,
                init_pubkey: s.init_pubkey,
                resp_pubkey: s.resp_pubkey,
                stanzas,
                rekey_freq: f.max(s.rekey_freq),
                logging,
                three,
            })
        }
        _ => Err(Rejection {
            condition: "not-acceptable",
            fields: bad,
        }),
    }
}

/// Alice: Bob's answer must pick, in every field, one of the values she
/// offered (a value outside them is a downgrade or an attack), use the
/// logging field's name she used, and a `rekey_freq` at least hers.
pub fn check_choice(offered: &Form, answer: &Form, s: &Settings) -> Result<Chosen> {
    let choose = |var: &str| -> Result<String> {
        let v = answer.value(var)?.to_string();
        if offered.field(var).is_some_and(|f| f.choices().contains(&v)) {
            Ok(v)
        } else {
            Err(PeerMisbehaved::IllegalParameter(format!("{var}={v} was not offered")).into())
        }
    };
    let group: u32 = choose("modp")?
        .parse()
        .map_err(|_| DecodeError::invalid("modp", "number"))?;
    let group_index = offered
        .field("modp")
        .and_then(|f| f.choices().iter().position(|g| *g == group.to_string()))
        .ok_or_else(|| PeerMisbehaved::IllegalParameter("modp".into()))?;
    let crypt = choose("crypt_algs")?;
    for (var, _) in FIXED {
        choose(var)?;
    }
    let (log_var, _) =
        logging_field(offered).ok_or_else(|| DecodeError::Missing("logging field".into()))?;
    let logging = (log_var.to_string(), choose(log_var)?);
    if s.four {
        choose("sas_algs")?;
    }
    if s.sign_algs_used() {
        choose("sign_algs")?;
    }
    let mode = |var: &str| -> Result<KeyMode> {
        KeyMode::parse(&choose(var)?).ok_or_else(|| DecodeError::invalid(var, "mode").into())
    };
    let init_pubkey = mode("init_pubkey")?;
    let resp_pubkey = mode("resp_pubkey")?;
    let stanzas = answer
        .values("stanzas")?
        .iter()
        .map(|v| {
            kind(v)
                .filter(|k| s.stanzas.contains(k))
                .ok_or_else(|| PeerMisbehaved::IllegalParameter(format!("stanzas={v}")))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if stanzas.is_empty() {
        return Err(PeerMisbehaved::IllegalParameter("no stanza kind".into()).into());
    }
    let offered_freq = offered
        .field("rekey_freq")
        .and_then(|f| f.choices().first())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(s.rekey_freq);
    let rekey_freq: u64 = answer
        .value("rekey_freq")?
        .trim()
        .parse()
        .ok()
        .filter(|v| *v >= offered_freq && *v < 1 << 32)
        .ok_or_else(|| PeerMisbehaved::IllegalParameter("rekey_freq".into()))?;
    Ok(Chosen {
        group,
        group_index,
        crypt,
        init_pubkey,
        resp_pubkey,
        stanzas,
        rekey_freq,
        logging,
        three: !s.four,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Field;
    use crate::Profile;
    use e2elab_core::Options;

    fn settings(p: Profile, o: &[(&str, &str)]) -> Settings {
        let mut opts = Options::new();
        for (k, v) in o {
            opts = opts.set(k, v);
        }
        Settings::from(p, &opts, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Gajim's message-1 form, field for field (GAJIM-NOTES.md).
    fn gajim_offer() -> Form {
        let mut f = Form::new("form");
        let h = |var: &str, v: &str| Field::typed(var, "hidden", vec![v.into()]);
        let opts = |var: &str, t: &str, o: &[&str]| {
            Field::options(var, t, o.iter().map(|s| s.to_string()).collect())
        };
        f.push(h("FORM_TYPE", "urn:xmpp:ssn"));
        f.push(Field::typed("accept", "boolean", vec!["1".into()]).required());
        f.push(opts("logging", "list-single", &["mustnot", "may"]).required());
        f.push(opts("disclosure", "list-single", &["never"]).required());
        f.push(opts("security", "list-single", &["e2e"]).required());
        f.push(h("crypt_algs", "aes128-ctr"));
        f.push(h("hash_algs", "sha256"));
        f.push(h("compress", "none"));
        f.push(opts("stanzas", "list-multi", &["message"]));
        f.push(opts("init_pubkey", "list-single", &["none", "key", "hash"]));
        f.push(opts("resp_pubkey", "list-single", &["none", "key"]));
        f.push(h("ver", "1.0"));
        f.push(h("rekey_freq", "4294967295"));
        f.push(h("sas_algs", "sas28x5"));
        f.push(h("sign_algs", keys::RSA_SHA256));
        f.push(h("my_nonce", "AAAAAAAAAAA="));
        f.push(opts("modp", "list-single", &["15", "16", "14"]));
        f.push(Field::typed("dhhashes", "hidden", vec!["x".into(); 3]));
        f
    }

    #[test]
    fn hidden_fixed_fields_are_read_like_options() {
        let s = settings(
            Profile::SigmaR,
            &[("init_pubkey", "none"), ("resp_pubkey", "none")],
        );
        let c = negotiate(&gajim_offer(), &s).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(c.group, 15);
        assert_eq!(c.group_index, 0);
        assert_eq!(c.crypt, "aes128-ctr");
        assert_eq!(c.stanzas, vec![StanzaKind::Message]);
        assert_eq!(c.rekey_freq, 4_294_967_295);
        assert_eq!(c.logging, ("logging".to_string(), "mustnot".to_string()));
        assert_eq!(
            (c.init_pubkey, c.resp_pubkey),
            (KeyMode::None, KeyMode::None)
        );
        assert!(!c.three);
    }

    #[test]
    fn otr_field_is_accepted_too() {
        let s = settings(Profile::Simplified, &[]);
        let mut offer = gajim_offer();
        offer.fields.retain(|f| f.var != "logging");
        offer.push(Field::options(
            "otr",
            "list-single",
            vec!["true".into(), "false".into()],
        ));
        let c = negotiate(&offer, &s).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(c.logging, ("otr".to_string(), "true".to_string()));
    }

    #[test]
    fn rejections_name_the_fields() {
        let s = settings(
            Profile::SigmaR,
            &[("init_pubkey", "none"), ("resp_pubkey", "none")],
        );
        let mut offer = gajim_offer();
        offer
            .fields
            .retain(|f| f.var != "logging" && f.var != "hash_algs");
        let r = negotiate(&offer, &s).unwrap_err();
        assert_eq!(r.condition, "not-acceptable");
        assert_eq!(r.fields, vec!["hash_algs".to_string(), "otr".to_string()]);
        let s3 = settings(Profile::SigmaI, &[]);
        let r = negotiate(&gajim_offer(), &s3).unwrap_err();
        assert_eq!(r.condition, "feature-not-implemented");
        assert_eq!(r.fields, vec!["dhhashes".to_string()]);
    }

    #[test]
    fn rekey_freq_is_at_least_both_sides() {
        let s = settings(
            Profile::SigmaR,
            &[
                ("init_pubkey", "none"),
                ("resp_pubkey", "none"),
                ("rekey_freq", "50"),
            ],
        );
        let mut offer = gajim_offer();
        for f in &mut offer.fields {
            if f.var == "rekey_freq" {
                f.values = vec!["10".into()];
            }
        }
        assert_eq!(negotiate(&offer, &s).map(|c| c.rekey_freq), Ok(50));
    }

    #[test]
    fn alice_refuses_a_choice_she_did_not_offer() {
        let s = settings(
            Profile::SigmaR,
            &[("init_pubkey", "none"), ("resp_pubkey", "none")],
        );
        let offer = gajim_offer();
        let mut answer = Form::new("submit");
        for (var, v) in [
            ("modp", "16"),
            ("crypt_algs", "aes128-ctr"),
            ("hash_algs", "sha256"),
            ("compress", "none"),
            ("security", "e2e"),
            ("ver", "1.0"),
            ("logging", "may"),
            ("sas_algs", "sas28x5"),
            ("init_pubkey", "none"),
            ("resp_pubkey", "none"),
            ("stanzas", "message"),
            ("rekey_freq", "4294967295"),
        ] {
            answer.push(Field::value(var, v));
        }
        let mut s_msg = s.clone();
        s_msg.stanzas = vec![StanzaKind::Message];
        let c = check_choice(&offer, &answer, &s_msg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.group, c.group_index), (16, 1));
        assert_eq!(c.logging.1, "may");
        for (var, v) in [
            ("modp", "5"),
            ("crypt_algs", "aes256-ctr"),
            ("rekey_freq", "1"),
        ] {
            let mut a = answer.clone();
            for f in &mut a.fields {
                if f.var == var {
                    f.values = vec![v.into()];
                }
            }
            let e = check_choice(&offer, &a, &s_msg).unwrap_err();
            assert!(
                matches!(
                    e,
                    e2elab_core::Error::PeerMisbehaved(PeerMisbehaved::IllegalParameter(_))
                ),
                "{var}: {e}"
            );
        }
    }
}
