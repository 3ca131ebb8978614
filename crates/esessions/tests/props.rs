//! proptest: any mutation of any handshake stanza or `<c/>` stanza is
//! rejected with a typed error (now or, for message 1, when the MACs over the
//! forms are checked) and never panics; nothing modified is ever delivered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use e2elab_core::minidom::Node;
use e2elab_core::{stanza, Element, Options, Protocol, SessionState};
use e2elab_esessions::{Esessions, Profile};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

type Ids = [Arc<e2elab_core::Identity>; 2];
type Cache = std::sync::Mutex<std::collections::HashMap<&'static str, Ids>>;

fn ids(profile: Profile) -> [Arc<e2elab_core::Identity>; 2] {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let m = CACHE.get_or_init(Default::default);
    let mut m = m.lock().unwrap();
    m.entry(profile.id())
        .or_insert_with(|| {
            let proto = Esessions::new(profile);
            let mut env = e2elab_core::Env::for_party(1, "ids");
            [
                Arc::new(
                    proto
                        .generate_identity(&mut env, "alice@example.org")
                        .unwrap(),
                ),
                Arc::new(
                    proto
                        .generate_identity(&mut env, "bob@example.net")
                        .unwrap(),
                ),
            ]
        })
        .clone()
}

const PROFILES: [Profile; 4] = [
    Profile::SigmaR,
    Profile::SigmaI,
    Profile::Simplified,
    Profile::Ssh,
];

/// Mutate the protocol element of a wire stanza (not its clear routing parts).
fn mutate(wire: &str, sel: u64, pos: u64, kind: u8) -> Option<String> {
    let mut el = stanza::parse(wire).unwrap();
    let target = el.children_mut().find(|c| {
        matches!(
            c.name(),
            "feature" | "init" | "c" | "kexdh-init" | "kexdh-reply" | "packet"
        )
    })?;
    match kind % 3 {
        0 | 1 => {
            let n = stanza::count_texts(target);
            if n == 0 {
                return None;
            }
            let k = (sel % n as u64) as usize;
            stanza::edit_nth_text(target, k, |t: &mut String| {
                let mut chars: Vec<char> = t.chars().collect();
                if chars.is_empty() {
                    t.push('A');
                    return;
                }
                let i = (pos % chars.len() as u64) as usize;
                if kind % 3 == 0 {
                    chars[i] = match chars[i] {
                        'A' => 'B',
                        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(chars[i] as u8 + 1),
                        _ => 'A',
                    };
                } else {
                    chars.truncate(i);
                }
                *t = chars.into_iter().collect();
            });
        }
        _ => {
            // Drop one descendant element.
            fn drop_nth(e: &mut Element, k: &mut usize) -> bool {
                let kids: Vec<Element> = e.children().cloned().collect();
                for (i, _) in kids.iter().enumerate() {
                    if *k == 0 {
                        let nodes = e.take_nodes();
                        let mut idx = 0;
                        for n in nodes {
                            match n {
                                Node::Element(c) => {
                                    if idx != i {
                                        e.append_child(c);
                                    }
                                    idx += 1;
                                }
                                Node::Text(t) => e.append_text_node(t),
                            }
                        }
                        return true;
                    }
                    *k -= 1;
                }
                for c in e.children_mut() {
                    if drop_nth(c, k) {
                        return true;
                    }
                }
                false
            }
            let mut k = (sel % 64) as usize;
            if !drop_nth(target, &mut k) {
                return None;
            }
        }
    }
    let out = stanza::serialize(&el);
    (out != wire).then_some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mutated_handshake_stanza_never_completes(pi in 0..4usize, which in 0..4usize, sel in any::<u64>(), pos in any::<u64>(), kind in any::<u8>()) {
        let profile = PROFILES[pi];
        let proto = Esessions::new(profile);
        let mut p = pair_from(&proto, ids(profile), [Options::new(), Options::new()], 1);
        p.start();
        let mut idx = 0;
        let mut mutated = false;
        let mut errors = 0;
        while let Some((to, w)) = p.next() {
            let w = if idx == which {
                match mutate(&w, sel, pos, kind) {
                    Some(m) => { mutated = true; m }
                    None => w,
                }
            } else { w };
            idx += 1;
            if let Err(e) = p.deliver(to, &w) {
                errors += 1;
                prop_assert!(e.kind() != "backend" && e.kind() != "api_misuse", "{e:?}");
            }
        }
        if mutated {
            prop_assert!(errors > 0, "a mutated handshake stanza went unnoticed");
            let both = p.s[0].state() == SessionState::Established && p.s[1].state() == SessionState::Established;
            prop_assert!(!both, "both sides established over a mutated handshake");
        }
    }

    #[test]
    fn mutated_c_stanza_is_rejected(pi in 0..4usize, sel in any::<u64>(), pos in any::<u64>(), kind in any::<u8>()) {
        let profile = PROFILES[pi];
        let proto = Esessions::new(profile);
        let mut p = pair_from(&proto, ids(profile), [Options::new(), Options::new()], 2);
        p.handshake();
        p.send(0, msg(0, "protected content")).unwrap();
        let (to, w) = p.next().unwrap();
        if let Some(m) = mutate(&w, sel, pos, kind) {
            let r = p.deliver(to, &m);
            prop_assert!(r.is_err(), "mutation accepted: {m}");
            prop_assert!(p.delivered(1).is_empty());
        }
    }
}
