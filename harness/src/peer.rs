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

/// Drive `session` from `input` until end of input. Returns the number of
/// errors reported (bad lines and session errors); I/O failures are `Err`.
pub fn run(
    session: &mut dyn Session,
    env: &mut Env,
    input: impl BufRead,
    mut out: impl Write,
    mut log: impl Write,
    mut clock: impl FnMut() -> Timestamp,
) -> Result<usize, String> {
    let io = |e: std::io::Error| format!("i/o: {e}");
    let mut outbox = Outbox::new();
    let mut errors = 0usize;
    for line in input.lines() {
        let line = line.map_err(io)?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        env.set_now(clock());
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let result = match cmd {
            "send" | "recv" => match stanza::parse(rest) {
                Err(e) => Err(format!("bad stanza: {e}")),
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
                    r.map_err(|e| format!("{}: {e}", e.kind()))
                }
            },
            "close" => session
                .close(env, &mut outbox)
                .map_err(|e| format!("{}: {e}", e.kind())),
            other => Err(format!(
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
                Event::Delivered(el) => {
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
                Event::Closed => writeln!(log, "event closed").map_err(io)?,
                Event::Warning(w) => writeln!(log, "event warning {w:?}").map_err(io)?,
                other => writeln!(log, "event {other:?}").map_err(io)?,
            }
        }
        out.flush().map_err(io)?;
    }
    Ok(errors)
}
