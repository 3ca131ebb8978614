//! `e2elab peer`: one live session over a line protocol.
//!
//! Input, a line each: `send <stanza>` (an application stanza to protect),
//! `recv <stanza>` (a protected stanza from the peer) or `close`. Output on the
//! `out` writer: `wire <stanza>` (to forward to the peer) and `deliver
//! <stanza>` (an application stanza recovered); `deliver-unprotected <stanza>`
//! for a stanza that arrived without protection. Events and errors go to the
//! `log` writer, one line each. Stanzas are written on one line (line breaks
//! in text become `&#xa;`). The handshake starts on the first `send` (the
//! initiator's `start`) or the first `recv`.

use e2elab_core::{stanza, Env, Event, Outbox, Role, Session, SessionState, Timestamp};
use std::io::{BufRead, Write};

/// One input line of at most `limit` bytes (without the line break): the
/// bytes, and whether more were discarded. `None` at the end of input. A
/// longer line is read to its end but not kept, so no input grows memory
/// past the limit.
fn next_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut over = false;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(over));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        if take > room {
            over = true;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        input.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(over));
        }
    }
}

/// Drive `session` from `input` until end of input. Returns the number of
/// errors reported (bad lines and session errors); I/O failures are `Err`.
/// A line that is not UTF-8, too long, or not a command is an error event:
/// the peer goes on with the next line.
pub fn run(
    session: &mut dyn Session,
    env: &mut Env,
    mut input: impl BufRead,
    mut out: impl Write,
    mut log: impl Write,
    mut clock: impl FnMut() -> Timestamp,
) -> crate::Result<usize> {
    let io = |e: std::io::Error| format!("i/o: {e}");
    let mut outbox = Outbox::new();
    let mut errors = 0usize;
    // A command, a space, and a stanza of at most the parser's limit.
    let limit = stanza::limits().max_bytes + 16;
    let mut raw = Vec::new();
    let mut number = 0usize;
    while let Some(over) = next_line(&mut input, &mut raw, limit).map_err(io)? {
        number += 1;
        let bad = if over {
            Some(format!("line {number}: longer than {limit} bytes, skipped"))
        } else {
            std::str::from_utf8(&raw)
                .err()
                .map(|e| format!("line {number}: not UTF-8 ({e}), skipped"))
        };
        if let Some(e) = bad {
            errors += 1;
            writeln!(log, "error bad-line: {e}").map_err(io)?;
            out.flush().map_err(io)?;
            continue;
        }
        let line = String::from_utf8_lossy(&raw).into_owned();
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        env.set_now(clock());
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let result = match cmd {
            "send" | "recv" => match stanza::parse(rest) {
                Err(e) => Err(crate::fail!("bad stanza: {e}")),
                Ok(el) => {
                    let r = if cmd == "send" {
                        if session.role() == Role::Initiator
                            && session.state() == SessionState::Idle
                        {
                            session
                                .start(env, &mut outbox)
                                .and_then(|()| session.send(env, el, &mut outbox))
                        } else {
                            session.send(env, el, &mut outbox)
                        }
                    } else {
                        session.handle_inbound(env, el, &mut outbox)
                    };
                    r.map_err(|e| crate::fail!("{}: {e}", e.kind()))
                }
            },
            "close" => session
                .close(env, &mut outbox)
                .map_err(|e| crate::fail!("{}: {e}", e.kind())),
            other => Err(crate::fail!(
                "unknown command '{other}' (expected send, recv or close)"
            )),
        };
        if let Err(e) = result {
            errors += 1;
            writeln!(log, "error {e}").map_err(io)?;
        }
        while let Some(el) = outbox.poll_transmit() {
            writeln!(out, "wire {}", stanza::to_line(&el)).map_err(io)?;
        }
        while let Some(ev) = outbox.poll_event() {
            match ev {
                Event::Delivered {
                    stanza: el,
                    protection,
                } => {
                    writeln!(log, "event protected {}", protection.summary()).map_err(io)?;
                    writeln!(out, "deliver {}", stanza::to_line(&el)).map_err(io)?
                }
                Event::DeliveredUnprotected(el) => {
                    writeln!(out, "deliver-unprotected {}", stanza::to_line(&el)).map_err(io)?
                }
                Event::Established(p) => writeln!(
                    log,
                    "event established peer={} method={} fingerprint={} sas={}",
                    p.jid,
                    p.method.replace(' ', "_"),
                    p.fingerprint.as_deref().unwrap_or("-"),
                    p.sas.as_deref().unwrap_or("-")
                )
                .map_err(io)?,
                Event::PeerClosed => writeln!(log, "event peer-closed").map_err(io)?,
                Event::NotSent { stanza, reason } => writeln!(
                    log,
                    "event not-sent reason={} {}",
                    reason.replace(' ', "_"),
                    stanza::to_line(&stanza)
                )
                .map_err(io)?,
                Event::Closed => writeln!(log, "event closed").map_err(io)?,
                Event::Warning(w) => writeln!(log, "event warning {w:?}").map_err(io)?,
                other => writeln!(log, "event {other:?}").map_err(io)?,
            }
        }
        out.flush().map_err(io)?;
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{driver, registry};
    use e2elab_core::SessionConfig;

    /// A plaintext initiator fed `input`; returns (out, log, errors).
    fn feed(input: &[u8]) -> (String, String, usize) {
        let proto = registry::get("plaintext").unwrap();
        let ids = driver::provision(proto.as_ref(), 1).unwrap();
        let mut env = Env::for_party(1, "initiator");
        let mut s = proto
            .new_session(
                &mut env,
                SessionConfig {
                    role: Role::Initiator,
                    local_jid: driver::jid(&driver::full_jid(0)).unwrap(),
                    peer_jid: driver::jid(&driver::full_jid(1)).unwrap(),
                    identity: ids.ids[0].clone(),
                    peer_public: Some(ids.ids[1].public.clone()),
                    options: Default::default(),
                },
            )
            .unwrap();
        let (mut out, mut log) = (Vec::new(), Vec::new());
        let errors = run(s.as_mut(), &mut env, input, &mut out, &mut log, || {
            Timestamp::DEFAULT_START
        })
        .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(log).unwrap(),
            errors,
        )
    }

    fn good_send() -> String {
        format!(
            "send <message xmlns='jabber:client' from='{}' to='{}' type='chat'><body>after</body></message>\n",
            driver::full_jid(0),
            driver::full_jid(1)
        )
    }

    #[test]
    fn no_line_stops_the_peer() {
        // 30,000 levels in 210 KB: within the size limit, so the depth
        // bound is what refuses it (the reported crash was 40,000 in 260 KB).
        let deep = format!(
            "<message xmlns='jabber:client'>{}{}</message>",
            "<x>".repeat(30_000),
            "</x>".repeat(30_000)
        );
        let mut input = Vec::new();
        input.extend_from_slice(b"send \xff\xfe not utf-8\n");
        input.extend_from_slice(format!("recv {deep}\n").as_bytes());
        input.extend_from_slice(format!("send {deep}\n").as_bytes());
        input.extend_from_slice(b"recv <message xmlns='jabber:client'/>junk\n");
        input.extend_from_slice(format!("recv {}\n", "x".repeat(300_000)).as_bytes());
        input.extend_from_slice(b"frobnicate\n");
        input.extend_from_slice(good_send().as_bytes());
        let (out, log, errors) = feed(&input);
        assert_eq!(errors, 6, "{log}");
        assert!(log.contains("line 1: not UTF-8"), "{log}");
        assert!(log.contains("nested deeper than the limit of 128"), "{log}");
        assert!(log.contains("content after the stanza"), "{log}");
        assert!(log.contains("line 5: longer than"), "{log}");
        assert!(log.contains("unknown command 'frobnicate'"), "{log}");
        assert!(
            out.contains("<body>after</body>"),
            "the peer went on: {out}"
        );
    }
}
