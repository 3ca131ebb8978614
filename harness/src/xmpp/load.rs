//! Load: N concurrent session pairs through one server, bounded in count and
//! time, stopping by itself.
//!
//! All pairs run as tasks on one client thread (a tokio current-thread
//! runtime with a `LocalSet`): the sessions' CPU work is serialized on that
//! thread while Prosody has the other core. Each pair logs in two accounts
//! (`user{2i}`, `user{2i+1}`), runs its handshake, then `messages` stanzas each
//! way (alternating, each awaited before the next) and hangs up. Long-term
//! identities are generated before the timed window (key generation is a
//! one-time cost reported elsewhere). A pair that fails, or that has not
//! finished at the deadline, counts as failed.

use super::conn::ServerSpec;
use super::run::ServerPair;
use super::Percentiles;
use crate::driver::{self, Identities};
use e2elab_core::{Options, Protocol};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One load step's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRow {
    /// Profile id.
    pub protocol: String,
    /// `tcp` or `starttls`.
    pub mode: String,
    /// Concurrent pairs started.
    pub pairs: usize,
    /// Messages each way per pair.
    pub messages_per_pair: u64,
    /// Message body bytes.
    pub body_size: usize,
    /// Pairs that finished everything.
    pub completed_pairs: usize,
    /// Pairs that failed or were cut off by the deadline.
    pub failed_pairs: usize,
    /// Application stanzas delivered intact.
    pub messages_delivered: u64,
    /// Wall time from the first login to the last pair's end, seconds.
    pub wall_s: f64,
    /// Set-up phase: from the first login until every pair was established
    /// (or had failed), seconds; messages start after it.
    pub setup_s: f64,
    /// From the first application stanza sent to the last delivered, seconds.
    pub message_window_s: f64,
    /// Delivered application stanzas per second of the message window.
    pub throughput_msg_s: f64,
    /// Send-to-delivery latency of application stanzas, ms.
    pub latency_ms: Percentiles,
    /// Handshake wall time per pair, ms.
    pub handshake_ms: Percentiles,
    /// Login (connect, TLS, SASL, bind) per connection, ms.
    pub login_ms: Percentiles,
    /// Wire stanzas that arrived altered.
    pub altered: usize,
    /// `completed` or `deadline after S s`.
    pub stopped: String,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Key generation this step needed before its window (identities of
    /// earlier steps and of the other transport mode are reused), seconds.
    pub keygen_s: f64,
    /// On a ramp's last step: why the ramp ended there (the knee, the time
    /// budget, a failed pair, or no more steps).
    #[serde(default)]
    pub ramp_end: Option<String>,
}

#[derive(Default)]
struct Outcome {
    ok: bool,
    error: Option<String>,
    latencies_ms: Vec<f64>,
    handshake_ms: Option<f64>,
    login_ms: Vec<f64>,
    delivered: u64,
    altered: usize,
    first_send: Option<Instant>,
    last_delivery: Option<Instant>,
    finished: bool,
    ready: bool,
}

/// Logins admitted at once. A storm of 2N simultaneous SCRAM (and TLS)
/// logins against Prosody's single thread times out (seen here at 400 pairs
/// with a 10 s bound); real clients do not arrive in the same millisecond.
pub const LOGINS_AT_ONCE: usize = 16;

#[allow(clippy::too_many_arguments)]
async fn one_pair(
    spec: ServerSpec,
    proto: Rc<dyn Protocol>,
    ids: Rc<Identities>,
    idx: usize,
    resource: String,
    messages: u64,
    size: usize,
    seed: u64,
    logins: Rc<tokio::sync::Semaphore>,
    mut gate: tokio::sync::watch::Receiver<bool>,
    out: Rc<RefCell<Outcome>>,
) {
    let nodes = [format!("user{}", 2 * idx), format!("user{}", 2 * idx + 1)];
    // Figures go into `out` as they are measured, so a pair cut off by the
    // deadline still counts what it did.
    let r: crate::Result<()> = async {
        let permit = logins
            .acquire()
            .await
            .map_err(|e| crate::fail!("login admission: {e}"))?;
        let (mut pair, _) = ServerPair::open(
            &spec,
            proto.as_ref(),
            [&nodes[0], &nodes[1]],
            &resource,
            Some(&ids),
            seed.wrapping_add(idx as u64),
            &Options::new(),
        )
        .await?;
        drop(permit);
        out.borrow_mut().login_ms = pair
            .conns
            .iter()
            .map(|c| c.login.as_secs_f64() * 1e3)
            .collect();
        let hs = pair.handshake().await;
        out.borrow_mut().altered = pair.rec.altered.len();
        out.borrow_mut().handshake_ms = Some(hs?.as_secs_f64() * 1e3);
        // Every pair is set up before any sends: the message phase is then
        // measured on its own, not mixed with other pairs' logins.
        out.borrow_mut().ready = true;
        gate.wait_for(|open| *open)
            .await
            .map_err(|e| crate::fail!("start gate: {e}"))?;
        for n in 0..messages {
            for from in 0..2 {
                let el = driver::workload_stanza_between(
                    seed,
                    from,
                    n,
                    size,
                    [&pair.jids[0], &pair.jids[1]],
                )?;
                let t0 = Instant::now();
                let t = pair.send_expect(from, &el).await?;
                let mut o = out.borrow_mut();
                o.first_send.get_or_insert(t0);
                o.last_delivery = Some(t0 + t);
                o.latencies_ms.push(t.as_secs_f64() * 1e3);
                o.delivered += 1;
                o.altered = pair.rec.altered.len();
            }
        }
        Ok(())
    }
    .await;
    let mut o = out.borrow_mut();
    o.finished = true;
    match r {
        Ok(()) => o.ok = true,
        Err(e) => o.error = Some(e.to_string()),
    }
}

/// Identities for `pairs` pairs of load accounts, extending `have`.
pub fn provision(
    proto: &dyn Protocol,
    seed: u64,
    domain: &str,
    have: &mut Vec<Rc<Identities>>,
    pairs: usize,
) -> crate::Result<Duration> {
    let t0 = Instant::now();
    while have.len() < pairs {
        let i = have.len();
        let a = format!("user{}@{domain}", 2 * i);
        let b = format!("user{}@{domain}", 2 * i + 1);
        have.push(Rc::new(driver::provision_as(proto, seed, [&a, &b])?));
    }
    Ok(t0.elapsed())
}

/// Run one load step on the current `LocalSet`.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    spec: &ServerSpec,
    proto: Rc<dyn Protocol>,
    ids: &[Rc<Identities>],
    pairs: usize,
    messages: u64,
    size: usize,
    seed: u64,
    deadline: Duration,
    tag: &str,
) -> LoadRow {
    let outs: Vec<Rc<RefCell<Outcome>>> = (0..pairs.min(ids.len()))
        .map(|_| Rc::new(RefCell::new(Outcome::default())))
        .collect();
    let logins = Rc::new(tokio::sync::Semaphore::new(LOGINS_AT_ONCE));
    let (open, gate) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for ((idx, id), out) in ids.iter().enumerate().take(pairs).zip(&outs) {
        handles.push(tokio::task::spawn_local(one_pair(
            spec.clone(),
            proto.clone(),
            id.clone(),
            idx,
            format!("load-{tag}"),
            messages,
            size,
            seed,
            logins.clone(),
            gate.clone(),
            out.clone(),
        )));
    }
    // Set-up phase: until every pair is established (or has failed), within
    // the step's deadline; then the gate opens for the message phase.
    while t0.elapsed() < deadline
        && !outs.iter().all(|o| {
            let o = o.borrow();
            o.ready || o.finished
        })
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let setup = t0.elapsed();
    let _ = open.send(true);
    let all = futures::future::join_all(handles.iter_mut());
    let stopped = match tokio::time::timeout(deadline.saturating_sub(setup), all).await {
        Ok(_) => "completed".to_string(),
        Err(_) => {
            for h in &handles {
                h.abort();
            }
            format!("deadline after {:.0} s", deadline.as_secs_f64())
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let outs: Vec<Outcome> = outs
        .iter()
        .map(|o| std::mem::take(&mut *o.borrow_mut()))
        .collect();
    let window = match (
        outs.iter().filter_map(|o| o.first_send).min(),
        outs.iter().filter_map(|o| o.last_delivery).max(),
    ) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let completed = outs.iter().filter(|o| o.ok).count();
    let delivered: u64 = outs.iter().map(|o| o.delivered).sum();
    let lat: Vec<f64> = outs.iter().flat_map(|o| o.latencies_ms.clone()).collect();
    let hs: Vec<f64> = outs.iter().filter_map(|o| o.handshake_ms).collect();
    let login: Vec<f64> = outs.iter().flat_map(|o| o.login_ms.clone()).collect();
    let unfinished = outs.iter().filter(|o| !o.finished).count();
    let first_error = outs.iter().find_map(|o| o.error.clone()).or_else(|| {
        (unfinished > 0).then(|| format!("{unfinished} pair(s) unfinished at the deadline"))
    });
    LoadRow {
        protocol: proto.info().id.to_string(),
        mode: spec.mode().to_string(),
        pairs,
        messages_per_pair: messages,
        body_size: size,
        completed_pairs: completed,
        failed_pairs: pairs - completed,
        messages_delivered: delivered,
        wall_s: wall,
        setup_s: setup.as_secs_f64(),
        message_window_s: window,
        throughput_msg_s: if window > 0.0 {
            delivered as f64 / window
        } else {
            0.0
        },
        latency_ms: Percentiles::of(&lat),
        handshake_ms: Percentiles::of(&hs),
        login_ms: Percentiles::of(&login),
        altered: outs.iter().map(|o| o.altered).sum(),
        stopped,
        first_error: first_error.map(|e| stanza_safe(&e)),
        keygen_s: 0.0,
        ramp_end: None,
    }
}

fn stanza_safe(e: &str) -> String {
    e.chars().take(400).collect()
}
