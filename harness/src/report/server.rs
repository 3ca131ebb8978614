//! The "Through a real XMPP server" section, from DIR/server.json of the
//! same run.

use super::charts::{render, Chart};
use super::{n, size_label, stat};
use crate::compare::Results;
use crate::doc::Block;
use std::path::{Path, PathBuf};

/// The "Through a real XMPP server" section, from DIR/server.json of the same run.
pub fn section(
    r: &Results,
    sv: &crate::xmpp::ServerResults,
    ids: &[String],
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> crate::Result<Vec<Block>> {
    let mut d = vec![Block::H(2, "Through a real XMPP server".into())];
    let limit = sv
        .stanza_limit
        .map(|l| format!("`c2s_stanza_size_limit` set explicitly to {l} bytes"))
        .unwrap_or_else(|| "stanza size limit unknown (external server)".into());
    d.push(Block::P(format!(
        "Measured in the same run by `e2elab compare --transport xmpp`: {}; {limit}; transport modes: {}. Per profile and mode \
         {} handshakes after {} warm-up, then {} message(s) each way per body size, then every stanza of the conformance suite \
         each way; {:.1} s of wall time. The sessions are the very same sans-IO sessions as in memory; each side has its own \
         client connection (tokio-xmpp's XML stream, SASL SCRAM-SHA-256, a bound resource, raw stanzas: tokio-xmpp's typed \
         client would reorder a message's children before the server sees them), both in this process, the server on the other \
         core. Prosody runs with Nagle's algorithm off (`network_settings = {{ nagle = false }}`): with its default, every \
         stanza larger than one TCP segment waited for the peer's 40 ms delayed ACK on loopback, which would swamp the \
         protocol differences. Times are wall-clock: *handshake* from `start` until both sides are established, *first \
         message* from `start` until the first 64-byte application stanza is delivered, *latency* from the `send` call until \
         the receiving session delivers the stanza (both sides' CPU plus two loopback hops through the server). Bytes per message: *serialized* is the in-memory measure \
         of the same stanzas (each with its own `xmlns`; it exceeds the in-memory column by the server accounts' longer \
         JIDs and resources, which every stanza carries); *socket* is what crossed the senders' TCP sockets (below TLS), \
         i.e. what the server read off the wire; *Prosody-counted* is what Prosody itself counted reading from the senders, \
         in its `bytes/in` filter (XML inside TLS), reported by the test server's module mod_e2elab_bytes because \
         Prosody 0.12 has no byte counters of its own.",
        sv.server,
        sv.modes.join(", "),
        sv.plan.reps,
        sv.plan.warmup,
        sv.plan.messages_per_size,
        sv.wall_seconds
    )));
    let row = |id: &str, mode: &str| {
        sv.profiles
            .iter()
            .find(|p| p.protocol == id && p.mode == mode)
    };
    let modes = sv.modes.clone();
    let mut head = vec![
        "protocol".to_string(),
        "stanzas".into(),
        "in memory: first message at LAN (model) ms".into(),
    ];
    for m in &modes {
        head.push(format!("{m}: login ms"));
        head.push(format!("{m}: handshake ms"));
        head.push(format!("{m}: first message ms"));
    }
    head.push("transit per stanza µs (tcp)".into());
    let mut rows = Vec::new();
    for id in ids {
        if !sv.profiles.iter().any(|p| &p.protocol == id) {
            continue;
        }
        let mut v = vec![
            id.clone(),
            row(id, "tcp")
                .map(|p| p.handshake_stanzas.to_string())
                .unwrap_or_default(),
            r.latency
                .iter()
                .find(|l| &l.protocol == id && l.network == "LAN")
                .map(|l| n(l.ttfm_ms.median))
                .unwrap_or_default(),
        ];
        for m in &modes {
            match row(id, m) {
                Some(p) if p.ttfm_ms.n > 0 => {
                    v.push(n(p.login_ms.median));
                    v.push(stat(&p.handshake_ms));
                    v.push(stat(&p.ttfm_ms));
                }
                Some(p) => {
                    v.push(n(p.login_ms.median));
                    v.push("failed".into());
                    v.push(p.error.clone().unwrap_or_default());
                }
                None => v.extend(["".to_string(), "".into(), "".into()]),
            }
        }
        v.push(
            row(id, "tcp")
                .map(|p| stat(&p.transit_us))
                .unwrap_or_default(),
        );
        rows.push(v);
    }
    d.push(Block::H(3, "Handshake and first protected message".into()));
    d.push(Block::Table(head, rows));

    // Per message
    d.push(Block::H(3, "Per message through the server".into()));
    let mut head = vec![
        "protocol".to_string(),
        "body".into(),
        "in memory: wire B".into(),
        "serialized B".into(),
    ];
    for m in &modes {
        head.push(format!("{m}: socket B"));
        head.push(format!("{m}: Prosody-counted B"));
        head.push(format!("{m}: latency ms"));
    }
    head.push("stanzas".into());
    let mut rows = Vec::new();
    for id in ids {
        for &size in &sv.plan.sizes {
            let ms: Vec<Option<&crate::xmpp::ServerMessageRow>> = modes
                .iter()
                .map(|m| {
                    sv.messages
                        .iter()
                        .find(|x| &x.protocol == id && &x.mode == m && x.size == size)
                })
                .collect();
            let Some(first) = ms.iter().flatten().next() else {
                continue;
            };
            let mut v = vec![
                id.clone(),
                size_label(size),
                r.messages
                    .iter()
                    .find(|x| &x.protocol == id && x.size == size)
                    .map(|x| n(x.wire_bytes.median))
                    .unwrap_or_else(|| "–".into()),
                n(first.serialized_bytes),
            ];
            for m in &ms {
                match m {
                    Some(x) => {
                        v.push(n(x.socket_bytes_sent));
                        v.push(x.server_bytes_in.map(n).unwrap_or_else(|| "–".into()));
                        v.push(stat(&x.latency_ms));
                    }
                    None => v.extend(["".to_string(), "".into(), "".into()]),
                }
            }
            v.push(n(first.stanzas));
            rows.push(v);
        }
    }
    d.push(Block::Table(head, rows));
    render(
        dir,
        "server_latency_vs_size",
        &Chart::Lines(
            "Send-to-delivery latency through Prosody (tcp) vs body size (log-log)",
            "body bytes",
            "latency ms (median)",
            ids.iter()
                .map(|id| {
                    (
                        id.clone(),
                        sv.messages
                            .iter()
                            .filter(|x| &x.protocol == id && x.mode == "tcp")
                            .map(|x| (x.size as f64, x.latency_ms.median))
                            .collect(),
                    )
                })
                .collect(),
        ),
        files,
    )?;
    d.push(Block::Img(
        "server_latency_vs_size".into(),
        "Latency through the server vs body size".into(),
    ));

    // What the server did to the stanzas
    d.push(Block::H(3, "Did every stanza survive the server?".into()));
    let mut rows = Vec::new();
    let (mut stamped, mut total) = (0u64, 0u64);
    let (mut with_stamp, mut exact) = (Vec::new(), Vec::new());
    for id in ids {
        for m in &modes {
            let Some(p) = row(id, m) else { continue };
            stamped += p.lang_stamped;
            total += p.stanzas;
            if m == "tcp" {
                let all = p.delivered_exact + p.delivered_with_stamp;
                if p.delivered_with_stamp == all && all > 0 {
                    with_stamp.push(id.clone());
                } else if p.delivered_with_stamp > 0 {
                    with_stamp.push(format!("{id} ({} of {all})", p.delivered_with_stamp));
                } else if p.delivered_exact > 0 {
                    exact.push(id.clone());
                }
            }
            rows.push(vec![
                id.clone(),
                m.clone(),
                p.stanzas.to_string(),
                p.lang_stamped.to_string(),
                p.delivered_exact.to_string(),
                p.delivered_with_stamp.to_string(),
                format!("{}/{}", p.varied_intact, p.varied_sent),
                p.altered.to_string(),
                p.lost.to_string(),
                p.error.clone().unwrap_or_default(),
            ]);
        }
    }
    d.push(Block::Table(
        vec![
            "protocol".into(),
            "mode".into(),
            "wire stanzas".into(),
            "arrived with xml:lang added".into(),
            "delivered exactly".into(),
            "delivered with the server's xml:lang".into(),
            "conformance stanzas intact".into(),
            "altered".into(),
            "lost".into(),
            "error".into(),
        ],
        rows,
    ));
    let mut text = format!(
        "Each wire stanza was compared with what arrived. Expected and not counted as alterations: the `from` stamp \
         (RFC 6120 §8.1.2.1) and an `xml:lang` attribute added to a stanza that had none (§8.1.5: the server SHOULD add the \
         stream's language; Prosody does): {stamped} of {total} wire stanzas arrived with it. "
    );
    if !with_stamp.is_empty() {
        text.push_str(&format!(
            "Protocols that hand the stamp on to the application (their delivered stanza takes its top-level attributes from \
             the unprotected outer stanza, so a server can change them unnoticed): {}. ",
            with_stamp.join(", ")
        ));
    }
    if !exact.is_empty() {
        text.push_str(&format!(
            "Delivered exactly as the sender's application wrote them: {}. ",
            exact.join(", ")
        ));
    }
    if sv.altered.is_empty() && sv.lost.is_empty() {
        text.push_str("No other change: no wire stanza of any protocol was altered or rejected by the server under the main limit.");
    } else {
        text.push_str(&format!(
            "Findings: {} stanza(s) altered, {} lost under the main limit (details in server.json).",
            sv.altered.len(),
            sv.lost.len()
        ));
    }
    d.push(Block::P(text));
    for a in sv.altered.iter().take(10) {
        d.push(Block::P(format!(
            "Altered ({}, {}, {}): {}",
            a.protocol, a.phase, a.dir, a.what
        )));
    }
    for l in sv.lost.iter().take(10) {
        d.push(Block::P(format!(
            "Lost ({}, {}, {}, {} B): {}",
            l.protocol, l.phase, l.dir, l.bytes, l.why
        )));
    }

    // Signature survival (XEP-0274)
    if !sv.signatures.is_empty() {
        d.push(Block::H(
            3,
            "Do XML signatures survive the server? (XEP-0274)".into(),
        ));
        d.push(Block::P(format!(
            "XEP-0274 warns that a server may change a stanza in ways that break a signature over its XML: it stamps \
             `from` and `xml:lang` (RFC 6120 §8.1.2.1, §8.1.5) and re-serializes. Each row sends {} application stanzas \
             (alternating directions) through the server over plain TCP and counts what the receiving session delivered \
             as protected and intact, refused, or the server lost. XEP-0290's signed manifest repeats the bare `from`, so \
             the `from` stamp cannot break it; whether `xml:lang` does depends on the canonicalization: Canonical XML \
             (inclusive) imports the stanza's `xml:lang` into every child's canonical form, Exclusive C14N does not \
             (crates/xmldsig DECISIONS 2). The unprotected row is the baseline, where nothing may be refused.",
            crate::xmpp::SIGNATURE_STANZAS
        )));
        d.push(Block::Table(
            vec![
                "protocol".into(),
                "options".into(),
                "sent".into(),
                "delivered".into(),
                "refused".into(),
                "lost".into(),
                "xml:lang stamped".into(),
                "receiver's error".into(),
            ],
            sv.signatures
                .iter()
                .map(|r| {
                    vec![
                        r.protocol.clone(),
                        if r.options.is_empty() {
                            "defaults".into()
                        } else {
                            r.options.clone()
                        },
                        r.sent.to_string(),
                        r.delivered.to_string(),
                        r.refused.to_string(),
                        r.lost.to_string(),
                        r.lang_stamped.to_string(),
                        r.error
                            .clone()
                            .or_else(|| r.receiver_errors.first().cloned())
                            .unwrap_or_default(),
                    ]
                })
                .collect(),
        ));
    }

    // Stanza-limit probe
    if let Some(pl) = sv.probe_limit {
        d.push(Block::H(3, format!("Under a {pl}-byte stanza limit")));
        d.push(Block::P(format!(
            "A second Prosody with `c2s_stanza_size_limit = {pl}`; after the handshake, one message with a {}-byte body. \
             Prosody closes the stream of a client that sends a larger stanza (stream error `policy-violation`), so a \
             protocol that cannot split a message loses it and the connection; OTR is also run with libotr's fragmentation \
             (`max_msg_size`).",
            sv.plan.probe_size
        )));
        d.push(Block::Table(
            vec![
                "protocol".into(),
                "options".into(),
                "outcome".into(),
                "wire stanzas".into(),
                "largest stanza B".into(),
                "why".into(),
            ],
            sv.probe
                .iter()
                .map(|p| {
                    vec![
                        p.protocol.clone(),
                        p.options.clone(),
                        p.outcome.clone(),
                        p.stanzas.to_string(),
                        p.largest_stanza.to_string(),
                        p.why.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ));
    }

    // Load
    if !sv.load.is_empty() {
        d.push(Block::H(
            3,
            "Load: concurrent pairs through one server".into(),
        ));
        d.push(Block::P(format!(
            "Each step starts N pairs at once (two accounts each, one client thread for all of them, the server on the other \
             core): login ({} logins admitted at a time: a storm of 2N simultaneous SCRAM and TLS logins against Prosody's \
             single thread is a test of the login path, not of the protocols) and handshake; when every pair is set up (or has \
             failed), all of them send {} message(s) of {} bytes each way, each awaited before the next; a step is bounded by {:.0} s and every wait by 10 s. The ramp \
             ({:?} pairs) stops at the knee (the first step whose throughput is under {}x the previous step's: more pairs \
             no longer buy throughput), at the first step with a failed pair, or before a step that would overrun {:.0} s for \
             the ramp (predicted linearly from the step before); column \"ramp\" gives why it ended. The client thread does every session's cryptography, so a step that fails may \
             have found the limit of this one client process rather than of the server; the first failure is quoted. Wall time runs from the first login to the last \
             pair's end, set-up from the first login until every pair was established; throughput is delivered messages over \
             the message window (first application stanza sent to last delivered); latency is per message, send call to \
             delivery. Identities are generated before the timed window \
             (column keygen: what the step needed beyond earlier steps).",
            sv.plan.load_logins_at_once,
            sv.plan.load_messages,
            sv.plan.load_size,
            sv.plan.load_deadline_s,
            sv.plan.load_pairs,
            sv.plan.load_knee,
            sv.plan.load_budget_s
        )));
        d.push(Block::Table(
            vec![
                "protocol".into(),
                "mode".into(),
                "pairs".into(),
                "completed / failed".into(),
                "messages".into(),
                "wall s".into(),
                "set-up s".into(),
                "message window s".into(),
                "throughput msg/s".into(),
                "latency ms p50 / p90 / p99 / max".into(),
                "handshake ms p50 / p99".into(),
                "login ms p50 / p99".into(),
                "keygen s".into(),
                "stopped".into(),
                "ramp".into(),
            ],
            sv.load
                .iter()
                .map(|l| {
                    vec![
                        l.protocol.clone(),
                        l.mode.clone(),
                        l.pairs.to_string(),
                        format!("{} / {}", l.completed_pairs, l.failed_pairs),
                        l.messages_delivered.to_string(),
                        n(l.wall_s),
                        n(l.setup_s),
                        n(l.message_window_s),
                        n(l.throughput_msg_s),
                        format!(
                            "{} / {} / {} / {}",
                            n(l.latency_ms.p50),
                            n(l.latency_ms.p90),
                            n(l.latency_ms.p99),
                            n(l.latency_ms.max)
                        ),
                        format!("{} / {}", n(l.handshake_ms.p50), n(l.handshake_ms.p99)),
                        format!("{} / {}", n(l.login_ms.p50), n(l.login_ms.p99)),
                        n(l.keygen_s),
                        match &l.first_error {
                            Some(e) => format!("{}; first failure: {e}", l.stopped),
                            None => l.stopped.clone(),
                        },
                        l.ramp_end.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ));
    }
    Ok(d)
}
