//! Driving the sans-IO sessions through a real server.
//!
//! A [`ServerPair`] is the in-memory [`Link`] with its queue replaced by two
//! client connections: every stanza a session emits is taken out of the link,
//! written to the sender's connection, awaited on the receiver's connection
//! (from the sender's bound full JID), compared with what was sent, and handed
//! to the receiving session as it arrived. The link still times every session
//! call, counts serialized bytes per phase and keeps the transcript; the
//! connections add wall-clock time and socket byte counts.

use super::conn::{Conn, RecvError, ServerSpec};
use crate::driver::{self, Identities};
use crate::link::{Dir, Link, Phase};
use e2elab_core::{stanza, Element, Options, Protocol};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A stanza that arrived different from how it was sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alteration {
    /// Profile id.
    pub protocol: String,
    /// `handshake`, `data` or `close`.
    pub phase: String,
    /// Direction.
    pub dir: String,
    /// What differs (first difference with context).
    pub what: String,
    /// Serialized as sent.
    pub sent: String,
    /// Serialized as received.
    pub received: String,
}

/// A stanza that never arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loss {
    /// Profile id.
    pub protocol: String,
    /// Phase.
    pub phase: String,
    /// Direction.
    pub dir: String,
    /// Serialized size of the stanza, bytes.
    pub bytes: usize,
    /// Why (timeout, stream closed and the server's reason).
    pub why: String,
    /// What the server sent the sender meanwhile (errors), serialized.
    pub server_said: Vec<String>,
}

/// What one pair's traffic through the server showed.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Wire stanzas carried.
    pub stanzas: u64,
    /// Transit of each wire stanza: handed to the sender's connection ->
    /// parsed on the receiver's connection, microseconds.
    pub transit_us: Vec<f64>,
    /// Stanzas that arrived altered.
    pub altered: Vec<Alteration>,
    /// Stanzas that did not arrive.
    pub lost: Vec<Loss>,
    /// Wire stanzas that arrived with the server's `xml:lang` stamp.
    pub lang_stamped: u64,
    /// Application stanzas delivered equal to the original except for the
    /// server's `xml:lang` stamp, which the protocol took from the
    /// unprotected outer stanza.
    pub delivered_with_stamp: u64,
    /// Application stanzas delivered exactly equal to the original.
    pub delivered_exact: u64,
}

/// Two sessions talking through two connections to one server.
pub struct ServerPair {
    /// The sessions, their counters and transcript.
    pub link: Link,
    /// Initiator's and responder's connections.
    pub conns: [Conn; 2],
    /// Their bound full JIDs (also the sessions' JIDs).
    pub jids: [String; 2],
    /// What the traffic showed.
    pub rec: Record,
    protocol: String,
    /// When the last application stanza was delivered to a session.
    delivered_at: Option<Instant>,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Handshake => "handshake",
        Phase::Data => "data",
        Phase::Close => "close",
    }
}

fn is_stanza(el: &Element) -> bool {
    el.ns() == stanza::NS_CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

/// Where two serialized forms first differ, with some context.
pub fn first_difference(a: &str, b: &str) -> String {
    let i = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let ctx = |s: &str| -> String {
        let mut lo = i.saturating_sub(30).min(s.len());
        while !s.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = (i + 50).min(s.len());
        while !s.is_char_boundary(hi) {
            hi += 1;
        }
        s[lo..hi].to_string()
    };
    format!(
        "first difference at byte {i} (sent {} B, received {} B): sent ...{}... received ...{}...",
        a.len(),
        b.len(),
        ctx(a),
        ctx(b)
    )
}

/// The top-level `xml:lang` attribute, if any.
pub fn xml_lang(el: &Element) -> Option<&str> {
    el.attr_ns(&e2elab_core::minidom::rxml::Namespace::XML, "lang")
}

/// `el` without its top-level `xml:lang`.
pub fn without_xml_lang(el: &Element) -> Element {
    let mut c = el.clone();
    c.attrs_mut()
        .remove(&e2elab_core::minidom::rxml::Namespace::XML, "lang");
    c
}

/// How a stanza arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Exactly as sent.
    Unchanged,
    /// As sent plus the server's `xml:lang` stamp (RFC 6120 §8.1.5: a server
    /// SHOULD add the stream's language to a client stanza that has none;
    /// Prosody does).
    LangStamped,
}

/// Compare what was sent with what arrived. The server stamping `from` with
/// the sender's full JID (RFC 6120 §8.1.2.1) and adding `xml:lang` where the
/// stanza had none (§8.1.5) are expected; any other difference is an
/// alteration, described.
pub fn survived(sent: &Element, got: &Element, sender: &str) -> crate::Result<Arrival> {
    let mut g = got.clone();
    if sent.attr("from").is_none() && g.attr("from") == Some(sender) {
        stanza::remove_attr(&mut g, "from");
    }
    let mut arrival = Arrival::Unchanged;
    if xml_lang(sent).is_none() && xml_lang(&g).is_some() {
        g = without_xml_lang(&g);
        arrival = Arrival::LangStamped;
    }
    let a = stanza::serialize(sent);
    let b = stanza::serialize(&g);
    if a == b {
        Ok(arrival)
    } else {
        Err(crate::Error::msg(first_difference(&a, &b)))
    }
}

/// `later - earlier` of two server byte readings (the server's numbers are
/// not trusted to grow).
pub fn diff(earlier: (u64, u64), later: (u64, u64)) -> crate::Result<(u64, u64)> {
    match (
        later.0.checked_sub(earlier.0),
        later.1.checked_sub(earlier.1),
    ) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(crate::fail!(
            "the server's byte counts went backwards: {earlier:?} then {later:?}"
        )),
    }
}

/// `condition: text` of a `<stream:error/>`, if `el` is one.
fn stream_error(el: &Element) -> Option<String> {
    const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
    const NS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    if el.name() != "error" || el.ns() != NS_STREAMS {
        return None;
    }
    let cond = el
        .children()
        .find(|c| c.ns() == NS_ERR && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    let text = el
        .children()
        .find(|c| c.ns() == NS_ERR && c.name() == "text")
        .map(|c| format!(" ({})", c.text()))
        .unwrap_or_default();
    Some(format!("stream error <{cond}/>{text}"))
}

fn short(xml: &str) -> String {
    if xml.len() <= 300 {
        return xml.to_string();
    }
    let mut k = 300;
    while !xml.is_char_boundary(k) {
        k -= 1;
    }
    format!("{}... ({} bytes)", &xml[..k], xml.len())
}

impl ServerPair {
    /// Log in as `nodes` (initiator first) with `resource`, provision
    /// identities for the bound JIDs (unless given) and create the sessions.
    pub async fn open(
        spec: &ServerSpec,
        proto: &dyn Protocol,
        nodes: [&str; 2],
        resource: &str,
        ids: Option<&Identities>,
        seed: u64,
        options: &Options,
    ) -> crate::Result<(ServerPair, Option<Identities>)> {
        let a = Conn::open(spec, nodes[0], resource).await?;
        let b = Conn::open(spec, nodes[1], resource).await?;
        let jids = [a.jid.clone(), b.jid.clone()];
        let made = match ids {
            Some(_) => None,
            None => Some(driver::provision_as(
                proto,
                seed,
                [stanza::bare_jid(&jids[0]), stanza::bare_jid(&jids[1])],
            )?),
        };
        let use_ids = match (ids, &made) {
            (Some(i), _) => i,
            (None, Some(m)) => m,
            (None, None) => return Err("no identities".into()),
        };
        let link = driver::link_between(proto, use_ids, seed, options, [&jids[0], &jids[1]])?;
        Ok((
            ServerPair {
                link,
                conns: [a, b],
                jids,
                rec: Record::default(),
                protocol: proto.info().id.to_string(),
                delivered_at: None,
            },
            made,
        ))
    }

    /// New sessions on the same connections (a fresh handshake).
    pub fn renew(
        &mut self,
        proto: &dyn Protocol,
        ids: &Identities,
        seed: u64,
        options: &Options,
    ) -> crate::Result<()> {
        self.link =
            driver::link_between(proto, ids, seed, options, [&self.jids[0], &self.jids[1]])?;
        Ok(())
    }

    /// Carry everything the sessions emit through the server until quiet.
    /// A stanza that does not arrive is recorded and ends the pump with an error.
    pub async fn pump(&mut self) -> crate::Result<()> {
        loop {
            let out = self.link.take_in_flight();
            if out.is_empty() {
                return Ok(());
            }
            let mut pending = Vec::with_capacity(out.len());
            for (dir, xml) in out {
                let el =
                    stanza::parse(&xml).map_err(|e| crate::fail!("re-parsing an emission: {e}"))?;
                let t = self.conns[dir.from_idx()].send(el.clone())?;
                pending.push((dir, el, xml.len(), t));
            }
            for (dir, el, bytes, t0) in pending {
                self.rec.stanzas += 1;
                let sender = self.jids[dir.from_idx()].clone();
                let is_error = el.attr("type") == Some("error");
                let got = self.await_from(dir, &sender, is_error).await;
                let phase = phase_name(self.link.phase()).to_string();
                match got {
                    Ok((g, at)) => {
                        self.rec
                            .transit_us
                            .push(at.saturating_duration_since(t0).as_secs_f64() * 1e6);
                        match survived(&el, &g, &sender) {
                            Ok(Arrival::Unchanged) => {}
                            Ok(Arrival::LangStamped) => self.rec.lang_stamped += 1,
                            Err(what) => self.rec.altered.push(Alteration {
                                protocol: self.protocol.clone(),
                                phase,
                                dir: dir.label().into(),
                                what: what.to_string(),
                                sent: stanza::serialize(&el),
                                received: stanza::serialize(&g),
                            }),
                        }
                        let d = self
                            .link
                            .deliver_wire(dir, &stanza::serialize(&g), "server");
                        if !d.delivered.is_empty() {
                            self.delivered_at = Some(Instant::now());
                        }
                    }
                    Err(e) => {
                        let from = dir.from_idx();
                        // Give the server a moment to tell the sender why.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let said_el = self.conns[from].drain_unexpected();
                        let said: Vec<String> = said_el.iter().map(stanza::serialize).collect();
                        let closed = self.conns[from].closed();
                        let reason = said_el.iter().find_map(stream_error);
                        let why = match (closed, reason) {
                            (Some(_), Some(r)) => {
                                format!("the server closed the sender's stream: {r}")
                            }
                            (Some(c), None) => format!("{e}; sender's stream: {c}"),
                            (None, _) => e.to_string(),
                        };
                        self.rec.lost.push(Loss {
                            protocol: self.protocol.clone(),
                            phase,
                            dir: dir.label().into(),
                            bytes,
                            why: why.clone(),
                            server_said: said,
                        });
                        return Err(crate::fail!(
                            "{}: a {bytes}-byte stanza {} did not arrive: {why}",
                            self.protocol,
                            dir.label()
                        ));
                    }
                }
            }
        }
    }

    /// Wait for the next stanza from `sender` at the receiver of `dir` (of
    /// type `error` only if the sent one was: the server bouncing the
    /// receiver's own earlier stanza is not it), giving up early when the
    /// server bounces the stanza to its sender or closes the sender's stream.
    async fn await_from(
        &mut self,
        dir: Dir,
        sender: &str,
        is_error: bool,
    ) -> Result<(Element, Instant), RecvError> {
        let deadline = Instant::now() + self.conns[dir.to_idx()].timeout();
        let receiver = self.jids[dir.to_idx()].clone();
        loop {
            let slice = Duration::from_millis(100);
            match self.conns[dir.to_idx()]
                .recv_matching_for(
                    |e| {
                        is_stanza(e)
                            && e.attr("from") == Some(sender)
                            && (e.attr("type") == Some("error")) == is_error
                    },
                    slice,
                )
                .await
            {
                Err(RecvError::Timeout(_)) => {
                    if let Some(b) = self.conns[dir.from_idx()].take_bounce(&receiver) {
                        return Err(RecvError::Bounced(short(&stanza::serialize(&b))));
                    }
                    if let Some(why) = self.conns[dir.from_idx()].closed() {
                        return Err(RecvError::Closed(format!("sender's stream: {why}")));
                    }
                    if Instant::now() >= deadline {
                        return Err(RecvError::Timeout(self.conns[dir.to_idx()].timeout()));
                    }
                }
                other => return other,
            }
        }
    }

    /// The handshake through the server; returns its wall time.
    pub async fn handshake(&mut self) -> crate::Result<Duration> {
        self.link.set_phase(Phase::Handshake);
        let t0 = Instant::now();
        self.link
            .start()
            .map_err(|e| crate::fail!("{}: start: {e}", self.protocol))?;
        self.pump().await?;
        let wall = t0.elapsed();
        if !self.link.both_established() {
            return Err(crate::fail!(
                "{}: handshake through the server did not complete (initiator {:?}, responder {:?}); errors: {:?} {:?}",
                self.protocol,
                self.link.party(0).session().state(),
                self.link.party(1).session().state(),
                self.link.party(0).errors,
                self.link.party(1).errors
            ));
        }
        self.link.set_phase(Phase::Data);
        Ok(wall)
    }

    /// Send one application stanza from party `from` and require it delivered
    /// intact: exactly once, equal to the original, or equal but for the
    /// server's `xml:lang` stamp where the original had none (counted apart
    /// in [`Record::delivered_with_stamp`]). Returns the wall time from the
    /// `send` call to the moment the receiving session delivered it.
    pub async fn send_expect(&mut self, from: usize, el: &Element) -> crate::Result<Duration> {
        let mark = self.link.delivery_mark(1 - from);
        self.delivered_at = None;
        let t0 = Instant::now();
        self.link
            .send(from, el.clone())
            .map_err(|e| crate::fail!("{}: send: {e}", self.protocol))?;
        self.pump().await?;
        // Up to the delivery, not to the end of the pump (a receiver may answer
        // with stanzas of its own, e.g. OTR's heartbeat).
        let wall = self
            .delivered_at
            .map(|t| t.saturating_duration_since(t0))
            .unwrap_or_else(|| t0.elapsed());
        let got = self.link.delivered_since(1 - from, mark);
        match got.as_slice() {
            [g] if g == el => self.rec.delivered_exact += 1,
            [g] if xml_lang(el).is_none()
                && xml_lang(g).is_some()
                && &without_xml_lang(g) == el =>
            {
                self.rec.delivered_with_stamp += 1
            }
            _ => {
                return Err(crate::fail!(
                    "{}: stanza {} from {} not delivered intact through the server ({} delivered{}; receiver errors: {:?})",
                    self.protocol,
                    el.attr("id").unwrap_or("?"),
                    self.jids[from],
                    got.len(),
                    got.first()
                        .map(|g| format!(", first: {}", short(&stanza::serialize(g))))
                        .unwrap_or_default(),
                    self.link.party(1 - from).errors
                ))
            }
        }
        Ok(wall)
    }

    /// Socket bytes (sent, received) of each party so far.
    pub fn socket_bytes(&self) -> [(u64, u64); 2] {
        [self.conns[0].bytes.get(), self.conns[1].bytes.get()]
    }

    /// The server's byte counts (read, written) for each party's session.
    pub async fn server_bytes(&mut self) -> crate::Result<[(u64, u64); 2]> {
        let a = self.conns[0].server_bytes().await?;
        let b = self.conns[1].server_bytes().await?;
        Ok([a, b])
    }

    /// The server-counted size of one byte-count query and of its answer, per
    /// party: two queries back to back on a quiet pair.
    pub async fn calibrate_server_bytes(&mut self) -> crate::Result<[(u64, u64); 2]> {
        let x = self.server_bytes().await?;
        let y = self.server_bytes().await?;
        Ok([diff(x[0], y[0])?, diff(x[1], y[1])?])
    }

    /// Serialized bytes the link counted in `phase`, both directions.
    pub fn serialized_bytes(&self, phase: Phase) -> u64 {
        self.link.counters(phase, Dir::AtoB).bytes + self.link.counters(phase, Dir::BtoA).bytes
    }
}
