//! The real-server transport: the same sans-IO sessions through Prosody.
//!
//! `e2elab compare --transport xmpp` runs the in-memory comparison and then
//! this module's measurements through a real XMPP server (a throwaway Prosody
//! on loopback started by the harness, or `--server ADDR`), once over plain
//! TCP and once with STARTTLS:
//! - per profile: login time, handshake wall time, wall-clock time to first
//!   protected message (handshake start to the first 64-byte application
//!   stanza delivered), server transit per wire stanza;
//! - per profile and body size: send-to-delivery latency (median and spread),
//!   serialized bytes per message beside the bytes that crossed the client
//!   sockets (below TLS: what the server read and wrote; Prosody 0.12 exposes
//!   no per-connection byte counters, so they are counted at the socket);
//! - the conformance suite's varied stanzas (subject, thread, extensions,
//!   Unicode, empty and 64 KiB bodies, presence) each way, each required to
//!   arrive intact;
//! - every wire stanza compared with what arrived (only the `from` stamp of
//!   RFC 6120 §8.1.2.1 is expected to differ); alterations and losses are
//!   findings, kept with both serialized forms;
//! - a stanza-limit probe: a second server with a small explicit
//!   `c2s_stanza_size_limit`, one large message per profile (and OTR with
//!   libotr's fragmentation): which protocols get through, in how many stanzas;
//! - load: N concurrent pairs (see [`load`]).
//!
//! Results go to `DIR/server.json` and CSV files; `e2elab report` puts them
//! beside the in-memory figures.

pub mod conn;
pub mod load;
pub mod run;
pub mod server;

use crate::compare::Stat;
use crate::link::Phase;
use crate::{driver, registry};
use conn::ServerSpec;
use e2elab_core::{Options, Protocol};
use run::{Alteration, Loss, ServerPair};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Prosody's own default `c2s_stanza_size_limit` (0.12), set explicitly.
pub const DEFAULT_STANZA_LIMIT: u64 = 256 * 1024;

/// Percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles (all zero without samples).
    pub fn of(v: &[f64]) -> Percentiles {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Percentiles::default();
        }
        s.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let k = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
            s[k - 1]
        };
        Percentiles {
            n: s.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// A server someone else runs.
#[derive(Debug, Clone)]
pub struct External {
    /// Its address.
    pub addr: SocketAddr,
    /// Certificate to trust for STARTTLS (no STARTTLS run without one).
    pub tls_ca: Option<PathBuf>,
}

/// What a server run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Smoke-run sizes.
    pub quick: bool,
    /// Profile ids (empty or `all`: every profile).
    pub protocols: Vec<String>,
    /// Profiles for the load test (empty: the default set).
    pub load_protocols: Vec<String>,
    /// Seed.
    pub seed: u64,
    /// `None`: start a throwaway Prosody.
    pub server: Option<External>,
    /// The explicit `c2s_stanza_size_limit` of the main server.
    pub stanza_limit: u64,
    /// The smaller limit of the probe server.
    pub probe_limit: u64,
}

impl Config {
    /// Defaults for a mode.
    pub fn new(quick: bool, protocols: Vec<String>, seed: u64) -> Config {
        Config {
            quick,
            protocols,
            load_protocols: Vec::new(),
            seed,
            server: None,
            stanza_limit: DEFAULT_STANZA_LIMIT,
            probe_limit: 16 * 1024,
        }
    }
}

/// Profiles loaded by default: the control row and one per family whose
/// long-term keys are cheap to make (load runs need two identities per pair;
/// RSA-2048 and OpenPGP RSA keys cost 0.2-0.4 s each here).
pub const DEFAULT_LOAD: [&str; 4] = ["plaintext", "esessions-simplified", "xep0373-ox", "otr-v3"];

/// Repetition counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerPlan {
    /// `quick` or `full`.
    pub mode: String,
    /// Warm-up handshakes (discarded).
    pub warmup: usize,
    /// Measured handshakes per profile and transport mode.
    pub reps: usize,
    /// Messages each way per body size.
    pub messages_per_size: u64,
    /// Body sizes.
    pub sizes: Vec<usize>,
    /// Load steps (concurrent pairs), run in order up to the knee (see
    /// [`ServerPlan::load_knee`]), a failed pair or the time budget.
    pub load_pairs: Vec<usize>,
    /// The knee: a step whose throughput is less than this times the
    /// previous step's ends the ramp (more pairs no longer buy throughput).
    #[serde(default)]
    pub load_knee: f64,
    /// Wall seconds one ramp (one profile, one transport mode) may take: a
    /// step predicted (linearly from the last) to overrun it is not started.
    #[serde(default)]
    pub load_budget_s: f64,
    /// Messages each way per pair in a load step.
    pub load_messages: u64,
    /// Body bytes of load messages.
    pub load_size: usize,
    /// Time bound of one load step, seconds.
    pub load_deadline_s: f64,
    /// Logins admitted at once in a load step.
    pub load_logins_at_once: usize,
    /// Body bytes of the stanza-limit probe message.
    pub probe_size: usize,
}

impl ServerPlan {
    /// The plan of a mode.
    pub fn new(quick: bool) -> ServerPlan {
        if quick {
            ServerPlan {
                mode: "quick".into(),
                warmup: 1,
                reps: 3,
                messages_per_size: 5,
                sizes: vec![0, 64, 1024, 16384, 65536],
                load_pairs: vec![10, 50],
                load_knee: 1.15,
                load_budget_s: 30.0,
                load_messages: 5,
                load_size: 64,
                load_deadline_s: 60.0,
                load_logins_at_once: load::LOGINS_AT_ONCE,
                probe_size: 64 * 1024,
            }
        } else {
            ServerPlan {
                mode: "full".into(),
                warmup: 1,
                reps: 11,
                messages_per_size: 20,
                sizes: crate::compare::SIZES.to_vec(),
                load_pairs: vec![25, 50, 100, 200, 400, 800],
                load_knee: 1.15,
                load_budget_s: 12.0,
                load_messages: 10,
                load_size: 64,
                load_deadline_s: 120.0,
                load_logins_at_once: load::LOGINS_AT_ONCE,
                probe_size: 64 * 1024,
            }
        }
    }
}

/// One profile through the server in one transport mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerProfileRow {
    /// Profile id.
    pub protocol: String,
    /// `tcp` or `starttls`.
    pub mode: String,
    /// Login per connection (connect, STARTTLS, SASL, bind), ms.
    pub login_ms: Stat,
    /// Handshake wall time, ms (start to both established).
    pub handshake_ms: Stat,
    /// Wall-clock time to first protected message, ms: handshake start to the
    /// first 64-byte application stanza delivered.
    pub ttfm_ms: Stat,
    /// Handshake stanzas.
    pub handshake_stanzas: u64,
    /// Handshake serialized bytes, both ways (as the in-memory link counts).
    pub handshake_serialized_bytes: u64,
    /// Handshake bytes through the client sockets, both clients' writes.
    pub handshake_socket_bytes_sent: Stat,
    /// Server transit of one wire stanza, µs (sender's connection -> receiver's).
    pub transit_us: Stat,
    /// Wire stanzas carried in this row's runs.
    pub stanzas: u64,
    /// Varied stanzas sent (both ways) and delivered intact.
    pub varied_sent: usize,
    /// Of those, delivered intact.
    pub varied_intact: usize,
    /// Wire stanzas that arrived with the server's `xml:lang` stamp (RFC 6120 §8.1.5).
    pub lang_stamped: u64,
    /// Application stanzas delivered exactly equal to the original.
    pub delivered_exact: u64,
    /// Application stanzas delivered equal but for the server's `xml:lang`
    /// stamp (the protocol takes outer attributes from the unprotected stanza).
    pub delivered_with_stamp: u64,
    /// Wire stanzas altered by the server.
    pub altered: usize,
    /// Wire stanzas lost.
    pub lost: usize,
    /// Error that ended this profile's run early, if any.
    pub error: Option<String>,
}

/// One profile, mode and body size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerMessageRow {
    /// Profile id.
    pub protocol: String,
    /// Transport mode.
    pub mode: String,
    /// Body bytes.
    pub size: usize,
    /// Send call to delivery at the peer, ms.
    pub latency_ms: Stat,
    /// Serialized bytes per message (the in-memory measure).
    pub serialized_bytes: f64,
    /// Bytes the sender's socket wrote per message (what the server read).
    pub socket_bytes_sent: f64,
    /// Bytes the receiver's socket read per message (what the server wrote).
    pub socket_bytes_received: f64,
    /// Bytes per message as Prosody counted them reading from the sender
    /// (`bytes/in` filter via mod_e2elab_bytes: XML, inside TLS); `None` on a
    /// server without the module.
    pub server_bytes_in: Option<f64>,
    /// Bytes per message as Prosody counted them writing to the receiver.
    pub server_bytes_out: Option<f64>,
    /// Wire stanzas per message.
    pub stanzas: f64,
}

/// One profile through the stanza-limit probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Profile id.
    pub protocol: String,
    /// Session options used (e.g. OTR fragmentation).
    pub options: String,
    /// `delivered` or `rejected` or `failed`.
    pub outcome: String,
    /// Wire stanzas the message took.
    pub stanzas: u64,
    /// Largest wire stanza, serialized bytes.
    pub largest_stanza: usize,
    /// Why it did not get through.
    pub why: Option<String>,
}

/// One profile and option set through the server, asking XEP-0274's
/// question: do its signatures survive what the server does to a stanza?
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignatureRow {
    /// Profile id.
    pub protocol: String,
    /// Session options (`key=value`, comma-separated; empty: the defaults).
    pub options: String,
    /// Transport mode.
    pub mode: String,
    /// Application stanzas sent (alternating directions).
    pub sent: u64,
    /// Delivered as protected, content intact.
    pub delivered: u64,
    /// Arrived but refused or not delivered intact by the receiving session.
    pub refused: u64,
    /// Bounced or dropped by the server.
    pub lost: u64,
    /// Wire stanzas that arrived with the server's `xml:lang` stamp.
    pub lang_stamped: u64,
    /// The receiving sessions' errors (distinct, at most three).
    pub receiver_errors: Vec<String>,
    /// Why the run could not be carried out.
    pub error: Option<String>,
}

/// The signature-survival runs: the unprotected row (the baseline, where
/// nothing may be refused) and each XML-signature profile under each
/// canonicalization (crates/xmldsig DECISIONS 2).
pub const SIGNATURE_RUNS: &[(&str, &str)] = &[
    ("plaintext", ""),
    ("xep0290-dsig", "c14n=exclusive"),
    ("xep0290-dsig", "c14n=inclusive"),
    ("xmlenc-dsig", "c14n=exclusive"),
    ("xmlenc-dsig", "c14n=inclusive"),
];

/// Application stanzas per signature-survival run.
pub const SIGNATURE_STANZAS: u64 = 8;

/// One signature-survival run.
pub async fn signature_run(
    spec: &ServerSpec,
    proto: &dyn Protocol,
    options: &str,
    seed: u64,
) -> SignatureRow {
    let id = proto.info().id;
    let mut row = SignatureRow {
        protocol: id.to_string(),
        options: options.to_string(),
        mode: spec.mode().to_string(),
        ..Default::default()
    };
    let r: crate::Result<()> = async {
        let opts = Options::parse(options.split(',').filter(|s| !s.is_empty()))
            .map_err(|e| crate::Error::session("signature run options", e))?;
        let resource = format!("sig-{id}-{}", options.replace(['=', ','], "-"));
        let (mut pair, _) =
            ServerPair::open(spec, proto, ["alice", "bob"], &resource, None, seed, &opts).await?;
        pair.handshake().await?;
        let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
        for n in 0..SIGNATURE_STANZAS {
            let from = (n % 2) as usize;
            let el = driver::workload_stanza_between(seed, from, n, 64, [&jids[0], &jids[1]])?;
            let errors_before = pair.link.party(1 - from).errors.len();
            let lost_before = pair.rec.lost.len();
            row.sent += 1;
            match pair.send_expect(from, &el).await {
                Ok(_) => row.delivered += 1,
                Err(_) if pair.rec.lost.len() > lost_before => row.lost += 1,
                Err(_) => {
                    row.refused += 1;
                    for e in &pair.link.party(1 - from).errors[errors_before..] {
                        let e = e.to_string();
                        if row.receiver_errors.len() < 3 && !row.receiver_errors.contains(&e) {
                            row.receiver_errors.push(e);
                        }
                    }
                }
            }
        }
        row.lang_stamped = pair.rec.lang_stamped;
        Ok(())
    }
    .await;
    if let Err(e) = r {
        row.error = Some(e.to_string());
    }
    row
}

/// Everything a server run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerResults {
    /// `Prosody <version> (started by e2elab, 127.0.0.1)` or `external ADDR`.
    pub server: String,
    /// Explicit `c2s_stanza_size_limit` of the main server (own server only).
    pub stanza_limit: Option<u64>,
    /// Transport modes measured.
    pub modes: Vec<String>,
    /// Repetitions.
    pub plan: ServerPlan,
    /// Seed.
    pub seed: u64,
    /// Wall time of the server run, seconds.
    pub wall_seconds: f64,
    /// Per profile and mode.
    pub profiles: Vec<ServerProfileRow>,
    /// Per profile, mode and size.
    pub messages: Vec<ServerMessageRow>,
    /// Stanzas altered in transit.
    pub altered: Vec<Alteration>,
    /// Stanzas lost in transit.
    pub lost: Vec<Loss>,
    /// The probe server's explicit limit (bytes), if the probe ran.
    pub probe_limit: Option<u64>,
    /// Probe outcomes.
    pub probe: Vec<ProbeRow>,
    /// Load steps.
    pub load: Vec<LoadRowOut>,
    /// Signature survival (XEP-0274), over the plain connection.
    #[serde(default)]
    pub signatures: Vec<SignatureRow>,
}

/// A load row (re-exported for the results file).
pub type LoadRowOut = load::LoadRow;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Measure one profile in one mode; records figures and findings.
async fn profile(
    spec: &ServerSpec,
    proto: &dyn Protocol,
    plan: &ServerPlan,
    seed: u64,
    res: &mut ServerResults,
) {
    let id = proto.info().id.to_string();
    let mode = spec.mode().to_string();
    let mut row = ServerProfileRow {
        protocol: id.clone(),
        mode: mode.clone(),
        login_ms: Stat::default(),
        handshake_ms: Stat::default(),
        ttfm_ms: Stat::default(),
        handshake_stanzas: 0,
        handshake_serialized_bytes: 0,
        handshake_socket_bytes_sent: Stat::default(),
        transit_us: Stat::default(),
        stanzas: 0,
        varied_sent: 0,
        varied_intact: 0,
        lang_stamped: 0,
        delivered_exact: 0,
        delivered_with_stamp: 0,
        altered: 0,
        lost: 0,
        error: None,
    };
    let opts = Options::new();
    let resource = format!("{id}-{mode}");
    let (mut pair, ids) =
        match ServerPair::open(spec, proto, ["alice", "bob"], &resource, None, seed, &opts).await {
            Ok(x) => x,
            Err(e) => {
                row.error = Some(e.to_string());
                res.profiles.push(row);
                return;
            }
        };
    row.login_ms = Stat::summarize(&pair.conns.iter().map(|c| ms(c.login)).collect::<Vec<_>>());
    let r: crate::Result<()> = async {
        let ids = ids.ok_or("identities missing")?;
        let (mut hs, mut tt, mut sock) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..plan.warmup + plan.reps {
            if rep > 0 {
                pair.renew(proto, &ids, seed.wrapping_add(rep as u64), &opts)?;
            }
            let b0 = pair.socket_bytes();
            let h = pair.handshake().await?;
            let b1 = pair.socket_bytes();
            let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
            let first = driver::workload_stanza_between(
                seed,
                0,
                0,
                crate::compare::FIRST_MESSAGE_SIZE,
                [&jids[0], &jids[1]],
            )?;
            let m = pair.send_expect(0, &first).await?;
            if rep >= plan.warmup {
                hs.push(ms(h));
                tt.push(ms(h + m));
                sock.push(((b1[0].0 - b0[0].0) + (b1[1].0 - b0[1].0)) as f64);
                row.handshake_stanzas = pair
                    .link
                    .counters(Phase::Handshake, crate::link::Dir::AtoB)
                    .messages
                    + pair
                        .link
                        .counters(Phase::Handshake, crate::link::Dir::BtoA)
                        .messages;
                row.handshake_serialized_bytes = pair.serialized_bytes(Phase::Handshake);
            }
        }
        row.handshake_ms = Stat::summarize(&hs);
        row.ttfm_ms = Stat::summarize(&tt);
        row.handshake_socket_bytes_sent = Stat::summarize(&sock);
        // The size sweep on the last (established) sessions. The server's own
        // counts are read right outside the socket window; a reading's request
        // and the previous reading's answer fall inside the server's window and
        // are subtracted (their sizes are fixed, measured here).
        let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
        let cal = pair.calibrate_server_bytes().await.ok();
        for &size in &plan.sizes {
            let mut lat = Vec::new();
            let sv0 = match cal {
                Some(_) => Some(pair.server_bytes().await?),
                None => None,
            };
            let b0 = pair.socket_bytes();
            let s0 = pair.serialized_bytes(Phase::Data);
            let n0 = pair.rec.stanzas;
            for n in 0..plan.messages_per_size {
                for from in 0..2 {
                    let el = driver::workload_stanza_between(
                        seed,
                        from,
                        1000 + n,
                        size,
                        [&jids[0], &jids[1]],
                    )?;
                    lat.push(ms(pair.send_expect(from, &el).await?));
                }
            }
            let b1 = pair.socket_bytes();
            let k = (plan.messages_per_size * 2) as f64;
            let (mut server_in, mut server_out) = (None, None);
            if let (Some(c), Some(s0)) = (cal, sv0) {
                let s1 = pair.server_bytes().await?;
                let mut tin = 0u64;
                let mut tout = 0u64;
                for p in 0..2 {
                    let (i, o) = run::diff(s0[p], s1[p])?;
                    let (i, o) = run::diff(c[p], (i, o))?;
                    tin += i;
                    tout += o;
                }
                server_in = Some(tin as f64 / k);
                server_out = Some(tout as f64 / k);
            }
            res.messages.push(ServerMessageRow {
                protocol: id.clone(),
                mode: mode.clone(),
                size,
                latency_ms: Stat::summarize(&lat),
                serialized_bytes: (pair.serialized_bytes(Phase::Data) - s0) as f64 / k,
                socket_bytes_sent: ((b1[0].0 - b0[0].0) + (b1[1].0 - b0[1].0)) as f64 / k,
                socket_bytes_received: ((b1[0].1 - b0[0].1) + (b1[1].1 - b0[1].1)) as f64 / k,
                server_bytes_in: server_in,
                server_bytes_out: server_out,
                stanzas: (pair.rec.stanzas - n0) as f64 / k,
            });
        }
        // Every kind of stanza the conformance suite sends, each way.
        for from in 0..2 {
            for (name, el) in
                crate::conformance::varied_stanzas_between(proto, from, [&jids[0], &jids[1]])?
            {
                row.varied_sent += 1;
                match pair.send_expect(from, &el).await {
                    Ok(_) => row.varied_intact += 1,
                    Err(e) => return Err(crate::fail!("varied stanza '{name}': {e}")),
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        row.error = Some(e.to_string());
    }
    row.transit_us = Stat::summarize(&pair.rec.transit_us);
    row.stanzas = pair.rec.stanzas;
    row.altered = pair.rec.altered.len();
    row.lost = pair.rec.lost.len();
    row.lang_stamped = pair.rec.lang_stamped;
    row.delivered_exact = pair.rec.delivered_exact;
    row.delivered_with_stamp = pair.rec.delivered_with_stamp;
    res.altered.append(&mut pair.rec.altered);
    res.lost.append(&mut pair.rec.lost);
    res.profiles.push(row);
}

/// One profile through the small-limit server with one large message.
async fn probe(
    spec: &ServerSpec,
    proto: &dyn Protocol,
    options: &Options,
    size: usize,
    seed: u64,
) -> ProbeRow {
    let id = proto.info().id.to_string();
    let opt_text: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut row = ProbeRow {
        protocol: id.clone(),
        options: opt_text.join(" "),
        outcome: "failed".into(),
        stanzas: 0,
        largest_stanza: 0,
        why: None,
    };
    let res = format!("probe-{id}-{}", opt_text.len());
    let mut lost: Vec<Loss> = Vec::new();
    let r: crate::Result<(u64, usize)> = async {
        let (mut pair, _) =
            ServerPair::open(spec, proto, ["alice", "bob"], &res, None, seed, options).await?;
        pair.handshake()
            .await
            .map_err(|e| crate::fail!("handshake failed: {e}"))?;
        let n0 = pair.rec.stanzas;
        let e0 = pair.link.emissions.len();
        let jids = [pair.jids[0].clone(), pair.jids[1].clone()];
        let el = driver::workload_stanza_between(seed, 0, 0, size, [&jids[0], &jids[1]])?;
        let sent = pair.send_expect(0, &el).await;
        let largest = pair.link.emissions[e0..]
            .iter()
            .map(|(_, _, x)| x.len())
            .max()
            .unwrap_or(0);
        row.largest_stanza = largest;
        row.stanzas = pair.rec.stanzas - n0;
        lost = pair.rec.lost.clone();
        sent.map(|_| (pair.rec.stanzas - n0, largest))
    }
    .await;
    match (r, lost.first()) {
        (Ok(_), _) => row.outcome = "delivered".into(),
        // The server refused a stanza of the message: it never arrived.
        (Err(_), Some(l)) => {
            row.outcome = "rejected".into();
            row.why = Some(l.why.chars().take(300).collect());
        }
        (Err(e), None) => {
            row.outcome = "failed".into();
            row.why = Some(e.to_string().chars().take(300).collect());
        }
    }
    row
}

/// Run the server measurements; `progress(done, total, what)`.
pub fn measure(
    cfg: &Config,
    mut progress: impl FnMut(u64, u64, &str),
) -> crate::Result<ServerResults> {
    let t0 = Instant::now();
    let plan = ServerPlan::new(cfg.quick);
    let protos = registry::resolve(&cfg.protocols)?;
    let load_ids: Vec<String> = if cfg.load_protocols.is_empty() {
        DEFAULT_LOAD
            .iter()
            .filter(|l| protos.iter().any(|p| p.info().id == **l))
            .map(|s| s.to_string())
            .collect()
    } else {
        cfg.load_protocols.clone()
    };
    let load_protos = if load_ids.is_empty() {
        Vec::new()
    } else {
        registry::resolve(&load_ids)?
    };
    let max_pairs = plan.load_pairs.iter().copied().max().unwrap_or(0);
    let (own, base, server_name, limit) = match &cfg.server {
        None => {
            let p = server::Prosody::start(cfg.stanza_limit, 2 * max_pairs)?;
            let spec = ServerSpec::plain(p.addr);
            let name = format!("{} (started by e2elab on {})", server::version(), p.addr);
            let limit = p.stanza_limit;
            (Some(p), spec, name, Some(limit))
        }
        Some(x) => (
            None,
            ServerSpec::plain(x.addr),
            format!("external server at {}", x.addr),
            None,
        ),
    };
    let mut specs = vec![base.clone()];
    let ca = match (&own, &cfg.server) {
        (Some(p), _) => Some(p.certificate()),
        (None, Some(x)) => x.tls_ca.clone(),
        (None, None) => None,
    };
    if let Some(ca) = ca {
        specs.push(base.with_tls(ca));
    }
    let mut res = ServerResults {
        server: server_name,
        stanza_limit: limit,
        modes: specs.iter().map(|s| s.mode().to_string()).collect(),
        plan: plan.clone(),
        seed: cfg.seed,
        wall_seconds: 0.0,
        profiles: Vec::new(),
        messages: Vec::new(),
        altered: Vec::new(),
        lost: Vec::new(),
        probe_limit: None,
        probe: Vec::new(),
        load: Vec::new(),
        signatures: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::fail!("tokio runtime: {e}"))?;
    let probes = if own.is_some() { protos.len() } else { 0 };
    let total = (specs.len() * protos.len() + probes + load_protos.len() * specs.len()) as u64;
    let mut done = 0u64;
    for spec in &specs {
        for p in &protos {
            progress(
                done,
                total,
                &format!("server ({}): {}", spec.mode(), p.info().id),
            );
            rt.block_on(profile(spec, p.as_ref(), &plan, cfg.seed, &mut res));
            done += 1;
        }
    }
    // Signature survival: the XML-signature profiles selected, each
    // canonicalization, and the unprotected baseline beside them.
    if protos.iter().any(|p| p.info().family == "xmldsig") {
        for (id, options) in SIGNATURE_RUNS {
            if *id != e2elab_plaintext::ID && !protos.iter().any(|p| p.info().id == *id) {
                continue;
            }
            let e = registry::entry(id).ok_or_else(|| crate::fail!("{id} is not registered"))?;
            let proto = (e.make)();
            progress(done, total, &format!("server (signatures): {id} {options}"));
            let row = rt.block_on(signature_run(&base, proto.as_ref(), options, cfg.seed));
            res.signatures.push(row);
        }
    }
    // The stanza-limit probe needs a server of our own with a small limit.
    if own.is_some() {
        let small = server::Prosody::start(cfg.probe_limit, 0)?;
        let spec = ServerSpec::plain(small.addr);
        res.probe_limit = Some(cfg.probe_limit);
        for p in &protos {
            progress(done, total, &format!("stanza-limit probe: {}", p.info().id));
            res.probe.push(rt.block_on(probe(
                &spec,
                p.as_ref(),
                &Options::new(),
                plan.probe_size,
                cfg.seed,
            )));
            if p.info().family == "otr" {
                // libotr fragments below the limit when told the maximum size.
                let o = Options::new().set("max_msg_size", &(cfg.probe_limit / 2).to_string());
                res.probe.push(rt.block_on(probe(
                    &spec,
                    p.as_ref(),
                    &o,
                    plan.probe_size,
                    cfg.seed,
                )));
            }
            done += 1;
        }
        drop(small);
    }
    // Load, ramping up until a step fails or the steps run out. Identities
    // are made once per profile and reused by both transport modes.
    let mut load_ids: std::collections::HashMap<String, Vec<Rc<driver::Identities>>> =
        std::collections::HashMap::new();
    for spec in &specs {
        for p in &load_protos {
            progress(
                done,
                total,
                &format!("load ({}): {}", spec.mode(), p.info().id),
            );
            let proto: Rc<dyn Protocol> =
                Rc::from(registry::get(p.info().id).ok_or("profile vanished")?);
            let ids = load_ids.entry(p.info().id.to_string()).or_default();
            let ramp_start = Instant::now();
            let mut prev: Option<(usize, f64, f64)> = None; // (pairs, wall, throughput)
            for (k, &pairs) in plan.load_pairs.iter().enumerate() {
                let mut end = None;
                if own.as_ref().is_some_and(|o| o.users < 2 * pairs) {
                    end = Some(format!(
                        "the server has accounts for {} pairs",
                        o_users(&own) / 2
                    ));
                }
                if let (None, Some((pp, wall, _))) = (&end, prev) {
                    let predicted = wall * pairs as f64 / pp as f64;
                    let spent = ramp_start.elapsed().as_secs_f64();
                    if spent + predicted > plan.load_budget_s {
                        end = Some(format!(
                            "budget: {pairs} pairs would take about {predicted:.0} s more, over {:.0} s per ramp",
                            plan.load_budget_s
                        ));
                    }
                }
                if let Some(e) = end {
                    if let Some(last) = res.load.last_mut() {
                        last.ramp_end = Some(e);
                    }
                    break;
                }
                let keygen = load::provision(proto.as_ref(), cfg.seed, &base.domain, ids, pairs)?;
                let local = tokio::task::LocalSet::new();
                let tag = format!("{}-{}-{k}", p.info().id, spec.mode());
                let mut row = rt.block_on(local.run_until(load::step(
                    spec,
                    proto.clone(),
                    ids,
                    pairs,
                    plan.load_messages,
                    plan.load_size,
                    cfg.seed,
                    Duration::from_secs_f64(plan.load_deadline_s),
                    &tag,
                )));
                row.keygen_s = keygen.as_secs_f64();
                let failed = row.failed_pairs > 0;
                let (wall, tput) = (row.wall_s, row.throughput_msg_s);
                if failed {
                    row.ramp_end = Some("a pair failed".into());
                } else if let Some((_, _, t0)) = prev {
                    if tput < t0 * plan.load_knee {
                        row.ramp_end = Some(format!(
                            "knee: throughput x{:.2} over the previous step (under x{})",
                            tput / t0.max(1e-9),
                            plan.load_knee
                        ));
                    }
                }
                if k + 1 == plan.load_pairs.len() && row.ramp_end.is_none() {
                    row.ramp_end = Some("no more steps".into());
                }
                let stop = row.ramp_end.is_some();
                res.load.push(row);
                if stop {
                    break;
                }
                prev = Some((pairs, wall, tput));
            }
            done += 1;
        }
    }
    progress(total, total, "server: done");
    drop(own);
    res.wall_seconds = t0.elapsed().as_secs_f64();
    Ok(res)
}

fn o_users(p: &Option<server::Prosody>) -> usize {
    p.as_ref().map(|o| o.users).unwrap_or(0)
}

/// Write `server.json` and CSV files into `dir`.
pub fn write(r: &ServerResults, dir: &Path) -> crate::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir.display().to_string(), e))?;
    let j = serde_json::to_string_pretty(r).map_err(crate::Error::msg)?;
    let w = |name: &str, body: String| -> crate::Result<()> {
        std::fs::write(dir.join(name), body).map_err(|e| crate::fail!("{name}: {e}"))
    };
    w("server.json", j)?;
    let mut s = crate::output::Csv::new(&[
        "protocol",
        "mode",
        "login_ms",
        "handshake_ms_median",
        "handshake_ms_q1",
        "handshake_ms_q3",
        "ttfm_ms_median",
        "ttfm_ms_q1",
        "ttfm_ms_q3",
        "handshake_stanzas",
        "handshake_serialized_bytes",
        "handshake_socket_bytes",
        "transit_us_median",
        "stanzas",
        "varied_sent",
        "varied_intact",
        "lang_stamped",
        "delivered_exact",
        "delivered_with_stamp",
        "altered",
        "lost",
        "error",
    ]);
    for p in &r.profiles {
        s.row(&[
            p.protocol.to_string(),
            p.mode.to_string(),
            format!("{:.3}", p.login_ms.median),
            format!("{:.3}", p.handshake_ms.median),
            format!("{:.3}", p.handshake_ms.q1),
            format!("{:.3}", p.handshake_ms.q3),
            format!("{:.3}", p.ttfm_ms.median),
            format!("{:.3}", p.ttfm_ms.q1),
            format!("{:.3}", p.ttfm_ms.q3),
            p.handshake_stanzas.to_string(),
            p.handshake_serialized_bytes.to_string(),
            format!("{:.0}", p.handshake_socket_bytes_sent.median),
            format!("{:.1}", p.transit_us.median),
            p.stanzas.to_string(),
            p.varied_sent.to_string(),
            p.varied_intact.to_string(),
            p.lang_stamped.to_string(),
            p.delivered_exact.to_string(),
            p.delivered_with_stamp.to_string(),
            p.altered.to_string(),
            p.lost.to_string(),
            p.error.as_deref().unwrap_or("").to_string(),
        ]);
    }
    w("server_profiles.csv", s.finish())?;
    let mut s = crate::output::Csv::new(&[
        "protocol",
        "mode",
        "size",
        "latency_ms_median",
        "latency_ms_q1",
        "latency_ms_q3",
        "latency_ms_max",
        "serialized_bytes",
        "socket_bytes_sent",
        "socket_bytes_received",
        "server_bytes_in",
        "server_bytes_out",
        "stanzas",
    ]);
    for m in &r.messages {
        s.row(&[
            m.protocol.to_string(),
            m.mode.to_string(),
            m.size.to_string(),
            format!("{:.3}", m.latency_ms.median),
            format!("{:.3}", m.latency_ms.q1),
            format!("{:.3}", m.latency_ms.q3),
            format!("{:.3}", m.latency_ms.max),
            format!("{:.1}", m.serialized_bytes),
            format!("{:.1}", m.socket_bytes_sent),
            format!("{:.1}", m.socket_bytes_received),
            m.server_bytes_in
                .map(|x| format!("{x:.1}"))
                .unwrap_or_default()
                .to_string(),
            m.server_bytes_out
                .map(|x| format!("{x:.1}"))
                .unwrap_or_default()
                .to_string(),
            format!("{:.2}", m.stanzas),
        ]);
    }
    w("server_messages.csv", s.finish())?;
    let mut s = crate::output::Csv::new(&[
        "protocol",
        "mode",
        "pairs",
        "messages_per_pair",
        "completed_pairs",
        "failed_pairs",
        "messages_delivered",
        "wall_s",
        "setup_s",
        "message_window_s",
        "throughput_msg_s",
        "latency_ms_p50",
        "latency_ms_p90",
        "latency_ms_p99",
        "latency_ms_max",
        "handshake_ms_p50",
        "handshake_ms_p99",
        "login_ms_p50",
        "login_ms_p99",
        "altered",
        "stopped",
        "keygen_s",
        "first_error",
    ]);
    for l in &r.load {
        s.row(&[
            l.protocol.to_string(),
            l.mode.to_string(),
            l.pairs.to_string(),
            l.messages_per_pair.to_string(),
            l.completed_pairs.to_string(),
            l.failed_pairs.to_string(),
            l.messages_delivered.to_string(),
            format!("{:.3}", l.wall_s),
            format!("{:.3}", l.setup_s),
            format!("{:.3}", l.message_window_s),
            format!("{:.1}", l.throughput_msg_s),
            format!("{:.3}", l.latency_ms.p50),
            format!("{:.3}", l.latency_ms.p90),
            format!("{:.3}", l.latency_ms.p99),
            format!("{:.3}", l.latency_ms.max),
            format!("{:.3}", l.handshake_ms.p50),
            format!("{:.3}", l.handshake_ms.p99),
            format!("{:.3}", l.login_ms.p50),
            format!("{:.3}", l.login_ms.p99),
            l.altered.to_string(),
            l.stopped.to_string(),
            format!("{:.2}", l.keygen_s),
            l.first_error.as_deref().unwrap_or("").to_string(),
        ]);
    }
    w("server_load.csv", s.finish())?;
    let mut s = crate::output::Csv::new(&[
        "protocol",
        "options",
        "outcome",
        "stanzas",
        "largest_stanza",
        "why",
    ]);
    for p in &r.probe {
        s.row(&[
            p.protocol.to_string(),
            p.options.to_string(),
            p.outcome.to_string(),
            p.stanzas.to_string(),
            p.largest_stanza.to_string(),
            p.why.as_deref().unwrap_or("").to_string(),
        ]);
    }
    w("server_probe.csv", s.finish())?;
    Ok(())
}

/// Read `dir/server.json` if a server run wrote one.
pub fn read(dir: &Path) -> crate::Result<Option<ServerResults>> {
    let p = dir.join("server.json");
    match std::fs::read_to_string(&p) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| crate::fail!("{}: {e}", p.display())),
        Err(_) => Ok(None),
    }
}
