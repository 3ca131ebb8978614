//! Adapter overhead: the same OTR v3 AKE + a 1 KiB message each way, driven
//! (a) through libotr directly (the `ffi` wrapper: two user states whose
//! `inject_message` texts are handed straight to the other side) and (b)
//! through the e2elab adapter (stanzas, carriage, events). Prints medians and
//! the ratio. Run: `cargo bench -p e2elab-otr --bench overhead` (a few seconds).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use e2elab_core::{stanza, Env, Options, Outbox, Protocol, Role, Session, SessionConfig};
use e2elab_otr::ffi::{self, Call, Names, OpData, UserState};
use e2elab_otr::OTR_V3;
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

const A: &str = "alice@example.org";
const B: &str = "bob@example.net";

struct Raw {
    us: UserState,
    names: Names,
    od: Box<OpData>,
}

fn raw(me: &str, peer: &str, key: &[u8], tag: u32) -> Raw {
    let us = UserState::new().unwrap();
    us.read_privkey(key).unwrap();
    us.set_instag(me, tag).unwrap();
    Raw {
        us,
        names: Names {
            account: CString::new(me).unwrap(),
            protocol: CString::new(ffi::PROTOCOL).unwrap(),
            peer: CString::new(format!("{peer}/lab")).unwrap(),
        },
        od: Box::new(OpData {
            policy: e2elab_otr::Version::V3.policy(),
            ..Default::default()
        }),
    }
}

fn call(r: &mut Raw) -> Call<'_> {
    r.od.reset();
    Call {
        us: &r.us,
        names: &r.names,
        od: &mut r.od,
    }
}

fn raw_run(ka: &[u8], kb: &[u8], text: &str) -> (Duration, Duration) {
    let mut p = [raw(A, B, ka, 0x1234_5678), raw(B, A, kb, 0x2345_6789)];
    let t0 = Instant::now();
    call(&mut p[0]).sending(1, c"?OTR?").unwrap();
    let mut q: Vec<(usize, String)> = p[0].od.injected.drain(..).map(|t| (1, t)).collect();
    while let Some((to, t)) = (!q.is_empty()).then(|| q.remove(0)) {
        let c = CString::new(t).unwrap();
        let _ = call(&mut p[to]).receiving(&c);
        q.extend(p[to].od.injected.drain(..).map(|t| (1 - to, t)));
    }
    let ake = t0.elapsed();
    let t1 = Instant::now();
    let msg = CString::new(text).unwrap();
    for from in 0..2 {
        let inst = 1; // OTRL_INSTAG_BEST
        call(&mut p[from]).sending(inst, &msg).unwrap();
        let w: Vec<String> = p[from].od.injected.drain(..).collect();
        for t in w {
            let c = CString::new(t).unwrap();
            let r = call(&mut p[1 - from]).receiving(&c);
            assert_eq!(r.text.as_deref().map(String::as_str), Some(text));
        }
    }
    (ake, t1.elapsed())
}

fn adapter_run(ids: &[Arc<e2elab_core::Identity>; 2], text: &str) -> (Duration, Duration) {
    let mut sides: Vec<(Box<dyn Session>, Env, Outbox)> = (0..2)
        .map(|i| {
            let mut env = Env::for_party(1, if i == 0 { "i" } else { "r" });
            let s = OTR_V3
                .new_session(
                    &mut env,
                    SessionConfig {
                        role: if i == 0 {
                            Role::Initiator
                        } else {
                            Role::Responder
                        },
                        local_jid: e2elab_core::Jid::new(&format!("{}/lab", [A, B][i])).unwrap(),
                        peer_jid: e2elab_core::Jid::new(&format!("{}/lab", [A, B][1 - i])).unwrap(),
                        identity: ids[i].clone(),
                        peer_public: None,
                        options: Options::new(),
                    },
                )
                .unwrap();
            (s, env, Outbox::new())
        })
        .collect();
    let t0 = Instant::now();
    {
        let (s, env, out) = &mut sides[0];
        s.start(env, out).unwrap();
    }
    let mut q = Vec::new();
    while let Some(e) = sides[0].2.poll_transmit() {
        q.push((1usize, e));
    }
    while let Some((to, e)) = (!q.is_empty()).then(|| q.remove(0)) {
        let (s, env, out) = &mut sides[to];
        s.handle_inbound(env, e, out).unwrap();
        while let Some(e) = out.poll_transmit() {
            q.push((1 - to, e));
        }
        while out.poll_event().is_some() {}
    }
    let ake = t0.elapsed();
    let msgs: Vec<_> = (0..2)
        .map(|from| {
            stanza::chat_message(
                &format!("{}/lab", [A, B][from]),
                &format!("{}/lab", [A, B][1 - from]),
                "m",
                text,
            )
            .unwrap()
        })
        .collect();
    let t1 = Instant::now();
    for (from, m) in msgs.into_iter().enumerate() {
        let (s, env, out) = &mut sides[from];
        s.send(env, m.clone(), out).unwrap();
        let w: Vec<_> = std::iter::from_fn(|| out.poll_transmit()).collect();
        let (s, env, out) = &mut sides[1 - from];
        for e in w {
            s.handle_inbound(env, e, out).unwrap();
        }
        let got: Vec<_> = std::iter::from_fn(|| out.poll_event()).collect();
        assert!(got
            .iter()
            .any(|e| matches!(e, e2elab_core::Event::Delivered { stanza, .. } if *stanza == m)));
    }
    (ake, t1.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut env = Env::for_party(1, "ids");
    let ida = Arc::new(OTR_V3.generate_identity(&mut env, A).unwrap());
    let idb = Arc::new(OTR_V3.generate_identity(&mut env, B).unwrap());
    let text: String = "x".repeat(1024);
    let n = std::env::var("OTR_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100usize);
    let mut prim = ffi::Primitives::new(ida.secret().expose(), A).unwrap();
    let (mut rake, mut rmsg, mut aake, mut amsg) = (vec![], vec![], vec![], vec![]);
    let (mut tg, mut ts, mut tsig, mut tver) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        // Interleaved so all see the same machine load.
        let (a, m) = raw_run(ida.secret().expose(), idb.secret().expose(), &text);
        rake.push(a);
        rmsg.push(m);
        let (a, m) = adapter_run(&[ida.clone(), idb.clone()], &text);
        aake.push(a);
        amsg.push(m);
        let t = Instant::now();
        prim.dh_keygen().unwrap();
        tg.push(t.elapsed());
        let t = Instant::now();
        prim.dh_session().unwrap();
        ts.push(t.elapsed());
        let t = Instant::now();
        let sig = prim.dsa_sign().unwrap();
        tsig.push(t.elapsed());
        let t = Instant::now();
        prim.dsa_verify(&sig).unwrap();
        tver.push(t.elapsed());
    }
    let (g, s, sg, v) = (median(tg), median(ts), median(tsig), median(tver));
    // Per side and AKE (libotr 4.1 code paths): 2 DH key generations (AKE key,
    // first rotated key), 3 shared-secret derivations (AKE secret, two session
    // key pairs), 1 DSA sign, 1 DSA verify. Both sides run in this process.
    let floor = 2 * (2 * g + 3 * s + sg + v);
    let (ra, aa) = (median(rake), median(aake));
    let (rm, am) = (median(rmsg), median(amsg));
    println!("otr-v3, {n} runs, medians (wall, both sides in one process):");
    println!("  primitives: dh keygen {g:?}, dh session {s:?}, dsa sign {sg:?}, dsa verify {v:?}");
    println!("  AKE primitive floor (2 x (2 keygen + 3 session + sign + verify)): {floor:?}");
    println!(
        "  AKE, libotr directly : {ra:?}  ({:.3} x floor)",
        ra.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  AKE, through adapter : {aa:?}  ({:.3} x floor, {:.3} x libotr)",
        aa.as_secs_f64() / floor.as_secs_f64(),
        aa.as_secs_f64() / ra.as_secs_f64()
    );
    println!("  1 KiB each way, libotr directly : {rm:?}");
    println!(
        "  1 KiB each way, through adapter : {am:?}  ({:.3} x libotr)",
        am.as_secs_f64() / rm.as_secs_f64()
    );
}
