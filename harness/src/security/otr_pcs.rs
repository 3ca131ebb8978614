//! Post-compromise security for OTR, with the OTR crate's test-only state
//! export (feature `dangerous-testing`, forwarded by this crate's own
//! `dangerous-testing` feature, which the test suite turns on).
//!
//! Mid-session, Alice's session state leaks: the DH private value behind
//! her current sending keys and Bob's DH public value
//! (`OtrSession::dangerous_export_dh_for_testing_only`). A passive attacker
//! turns them into session keys with libotr's `otr_sesskeys` and reads data
//! messages with `otr_readforge`. Control: Alice's next message must be
//! readable (the leak is real). Then k = 3 more exchanges run, and the
//! attacker combines the leaked private value with every DH public value
//! seen on the wire since; `holds` iff no message after the k exchanges is
//! readable.

use super::experiments::Ctx;
use super::{Outcome, PropertyResult};
use crate::driver::full_jid;
use e2elab_core::{
    stanza, Element, Env, Event, Options, Outbox, Role, Session, SessionConfig, SessionState,
};
use e2elab_otr::OtrSession;
use std::io::Write;
use std::process::{Command, Stdio};

type R<T> = Result<T, String>;

fn tool(name: &str, args: &[&str], stdin: &str) -> R<String> {
    let mut c = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name} is required (apt-get install libotr5-bin): {e}"))?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(stdin.as_bytes())
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let o = c.wait_with_output().map_err(|e| format!("{name}: {e}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// libotr's tools want MPIs without leading zero octets.
fn usg(h: &str) -> String {
    let mut h = h.to_lowercase();
    while h.starts_with("00") {
        h.drain(..2);
    }
    h
}

struct Pair {
    s: [OtrSession; 2],
    env: [Env; 2],
    out: [Outbox; 2],
    /// Every wire stanza: (from, body text).
    wire: Vec<(usize, String)>,
    delivered: [Vec<Element>; 2],
}

impl Pair {
    fn drain(&mut self, i: usize) -> Vec<Element> {
        while let Some(ev) = self.out[i].poll_event() {
            if let Event::Delivered(e) = ev {
                self.delivered[i].push(e);
            }
        }
        let mut v = Vec::new();
        while let Some(t) = self.out[i].poll_transmit() {
            v.push(t);
        }
        v
    }

    fn pump(&mut self, from: usize) {
        let mut queue: Vec<(usize, Element)> =
            self.drain(from).into_iter().map(|e| (from, e)).collect();
        let mut steps = 0;
        while let Some((f, el)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            steps += 1;
            if steps > 1000 {
                break;
            }
            self.wire.push((f, stanza::body(&el).unwrap_or_default()));
            let to = 1 - f;
            let _ = self.s[to].handle_inbound(&mut self.env[to], el, &mut self.out[to]);
            queue.extend(self.drain(to).into_iter().map(|e| (to, e)));
        }
    }

    fn send(&mut self, from: usize, text: &str) -> R<()> {
        let el = stanza::chat_message(&full_jid(from), &full_jid(1 - from), "pcs", text)
            .map_err(|e| e.to_string())?;
        self.s[from]
            .send(&mut self.env[from], el, &mut self.out[from])
            .map_err(|e| e.to_string())?;
        self.pump(from);
        Ok(())
    }
}

fn data_bodies_since(p: &Pair, from_idx: usize) -> Vec<(usize, String)> {
    p.wire[from_idx..]
        .iter()
        .filter(|(_, b)| b.starts_with("?OTR:AAMD") || b.starts_with("?OTR:AAID"))
        .cloned()
        .collect()
}

fn dh_publics(bodies: &[(usize, String)]) -> R<Vec<String>> {
    let mut v = Vec::new();
    for (_, b) in bodies {
        let out = tool("otr_parse", &[], &format!("{b}\n"))?;
        for l in out.lines() {
            if let Some(y) = l.trim().strip_prefix("DH y:") {
                let y = usg(y.trim());
                if !v.contains(&y) {
                    v.push(y);
                }
            }
        }
    }
    Ok(v)
}

/// AES keys (sending, receiving) for a DH pair.
fn aes_keys(private: &str, public: &str) -> R<Vec<String>> {
    let out = tool("otr_sesskeys", &[private, public], "")?;
    Ok(out
        .lines()
        .filter(|l| l.contains("AES key:"))
        .filter_map(|l| l.split(':').nth(1).map(|k| k.trim().to_string()))
        .collect())
}

fn readable(keys: &[String], body: &str, text: &str) -> R<bool> {
    for k in keys {
        let dec = tool("otr_readforge", &[k], &format!("{body}\n"))?;
        if dec.contains(text) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The experiment (see the module docs).
pub fn run(ctx: &Ctx) -> R<PropertyResult> {
    let otr = match ctx.proto.info().id {
        "otr-v3" => e2elab_otr::OTR_V3,
        "otr-v2" => e2elab_otr::OTR_V2,
        other => return Err(format!("{other} is not an OTR profile")),
    };
    let mk = |i: usize| -> R<(OtrSession, Env)> {
        let role = if i == 0 {
            Role::Initiator
        } else {
            Role::Responder
        };
        let mut env = Env::for_party(ctx.seed ^ 0x0070_6373, role.name());
        let cfg = SessionConfig {
            role,
            local_jid: full_jid(i),
            peer_jid: full_jid(1 - i),
            identity: ctx.ids.ids[i].clone(),
            peer_public: Some(ctx.ids.ids[1 - i].public.clone()),
            options: Options::new(),
        };
        let s = otr
            .new_otr_session(&mut env, cfg)
            .map_err(|e| e.to_string())?;
        Ok((s, env))
    };
    let (a, ea) = mk(0)?;
    let (b, eb) = mk(1)?;
    let mut p = Pair {
        s: [a, b],
        env: [ea, eb],
        out: [Outbox::new(), Outbox::new()],
        wire: Vec::new(),
        delivered: [Vec::new(), Vec::new()],
    };
    p.s[0]
        .start(&mut p.env[0], &mut p.out[0])
        .map_err(|e| e.to_string())?;
    p.pump(0);
    if p.s.iter().any(|s| s.state() != SessionState::Established) {
        return Err("OTR handshake did not complete".into());
    }
    p.send(0, "pcs warm-up a")?;
    p.send(1, "pcs warm-up b")?;
    // The leak.
    let dh = p.s[0]
        .dangerous_export_dh_for_testing_only()
        .ok_or("no DH state to export")?;
    let x = usg(&dh.our_private);
    let leaked_keys = aes_keys(&x, &usg(&dh.their_public))?;
    let mark = p.wire.len();
    let control = "c4n4ryPCS-control";
    p.send(0, control)?;
    let ctl = data_bodies_since(&p, mark);
    let control_read = match ctl.first() {
        Some((_, b)) => readable(&leaked_keys, b, control)?,
        None => false,
    };
    if !control_read {
        return Ok(PropertyResult::new(
            Outcome::NotApplicable,
            "the exported session state did not decrypt Alice's next message, so the leak is not usable and nothing can be concluded".into(),
        ));
    }
    // k = 3 further exchanges.
    let k = 3;
    for n in 0..k {
        p.send(1, &format!("pcs exchange {n} from Bob"))?;
        p.send(0, &format!("pcs exchange {n} from Alice"))?;
    }
    let mark2 = p.wire.len();
    let late = ["c4n4ryPCS-late-alice", "c4n4ryPCS-late-bob"];
    p.send(0, late[0])?;
    p.send(1, late[1])?;
    let targets = data_bodies_since(&p, mark2);
    let publics = dh_publics(&data_bodies_since(&p, mark))?;
    let mut keys = leaked_keys.clone();
    for y in &publics {
        keys.extend(aes_keys(&x, y)?);
    }
    let mut read = Vec::new();
    for ((from, body), text) in targets.iter().zip(late) {
        if readable(&keys, body, text)? {
            read.push(if *from == 0 { "Alice's" } else { "Bob's" });
        }
    }
    let delivered_ok = p.delivered[1]
        .iter()
        .any(|e| stanza::body(e).as_deref() == Some(late[0]))
        && p.delivered[0]
            .iter()
            .any(|e| stanza::body(e).as_deref() == Some(late[1]));
    Ok(PropertyResult::new(
        if read.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Fails
        },
        format!(
            "leaked Alice's session state mid-session (test-only export: DH private value of her key id {} and Bob's DH public of key id {}); with otr_sesskeys + otr_readforge a passive attacker read Alice's next message (control: leak is real). After {k} further exchanges both ways, the attacker combined the leaked private value with all {} DH public values seen on the wire since ({} AES keys tried): {} of the 2 later messages readable{}; the sessions themselves {} them",
            dh.our_keyid,
            dh.their_keyid,
            publics.len(),
            keys.len(),
            read.len(),
            if read.is_empty() { String::new() } else { format!(" ({})", read.join(", ")) },
            if delivered_ok { "delivered" } else { "did NOT deliver" }
        ),
    ))
}
