//! What a run writes (`results.json`, schema [`SCHEMA`]): every figure with
//! all its samples, so every table, interval and chart can be made again
//! from the file alone.

pub use super::stats::Stat;
pub use crate::cost::PkOps;
use e2elab_core::{Op, OpLog};
use serde::{Deserialize, Serialize};

/// The schema name of `results.json`.
pub const SCHEMA: &str = "e2elab-results/2";

/// The repetition counts of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: String,
    /// Warm-up repetitions (discarded).
    pub warmup: usize,
    /// Measured repetitions.
    pub reps: usize,
    /// Messages each way per size per repetition.
    pub messages_per_size: u64,
    /// Body sizes.
    pub sizes: Vec<usize>,
    /// Long-term key generations measured per profile.
    pub keygen_reps: usize,
    /// Timed calls of each primitive per repetition (the primitives table).
    pub primitive_calls: usize,
    /// Established pairs at which the scale curve is read (one run builds
    /// up to the largest).
    pub scale_points: Vec<usize>,
    /// Independent scale runs per profile (each in a fresh process). The
    /// first builds up to the largest point; the others only up to the
    /// largest of [`Plan::scale_repeat_points`] (a 10,000-pair run costs
    /// about a minute of handshakes per profile).
    pub scale_reps: usize,
    /// The points every scale run reads (the others are read by the first
    /// run only); empty: all points, every run.
    #[serde(default)]
    pub scale_repeat_points: Vec<usize>,
    /// Fresh processes per profile for the cold first handshake.
    pub cold_processes: usize,
    /// Callgrind runs per profile (instruction counts; 0: not measured).
    pub instruction_runs: usize,
}

/// A phase of the run and its wall time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseTime {
    /// Name.
    pub name: String,
    /// Wall seconds.
    pub seconds: f64,
}

/// Where the run came from, and what the machine was doing.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// `git rev-parse HEAD`, or `unknown`.
    pub git_revision: String,
    /// Whether the work tree differed from HEAD (tracked files).
    pub git_dirty: bool,
    /// SHA-256 of `git diff HEAD` when dirty (what the run measured beyond HEAD).
    pub git_diff_sha256: Option<String>,
    /// `rustc --version` at run time.
    pub rustc: String,
    /// `uname -sr`.
    pub kernel: String,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// OpenSSL library version (run time).
    pub openssl: String,
    /// libgcrypt version.
    pub libgcrypt: String,
    /// libotr version.
    pub libotr: String,
    /// valgrind version (instruction counts).
    pub valgrind: String,
    /// sequoia-openpgp version (Cargo.lock at build time).
    pub sequoia_openpgp: String,
    /// The e2elab version.
    pub e2elab: String,
    /// The run seed.
    pub seed: u64,
    /// Start of the run, UTC (RFC 3339).
    pub date: String,
    /// Wall time of the whole `compare`, seconds.
    pub wall_seconds: f64,
    /// Wall time of each phase, in order (`compare`'s, then the security
    /// experiments, the server run and the report when run by `reproduce`).
    pub phases: Vec<PhaseTime>,
    /// Wall time of the whole `e2elab reproduce`, seconds, when the run
    /// was made by it.
    pub reproduce_wall_seconds: Option<f64>,
    /// The command line.
    pub command: String,
    /// `/proc/loadavg` (1, 5, 15 min) at the start.
    pub load_average_start: String,
    /// At the end.
    pub load_average_end: String,
    /// Share of CPU time stolen by the hypervisor during the run, percent
    /// (`/proc/stat` steal over all ticks).
    pub steal_percent: f64,
    /// Share of CPU time the machine was busy during the run, percent (all
    /// processes: ours plus anything else).
    pub busy_percent: f64,
    /// Why the machine looked busy, if it did (the report warns).
    pub busy_warning: Option<String>,
    /// The run also measured through an XMPP server (`server.json`).
    #[serde(default)]
    pub server: bool,
}

/// A profile in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRow {
    /// Id.
    pub id: String,
    /// Family.
    pub family: String,
    /// Spec.
    pub spec: String,
}

/// One kind of operation in a phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpEntry {
    /// The operation.
    pub op: Op,
    /// Its name.
    pub name: String,
    /// Calls.
    pub calls: f64,
    /// Bytes over all calls.
    pub bytes: f64,
    /// Derived from a library's code path rather than counted.
    pub derived: bool,
}

impl OpEntry {
    /// The entries of a log, each count divided by `per` (1 for a total).
    pub fn list(log: &OpLog, per: f64) -> Vec<OpEntry> {
        log.iter()
            .map(|(op, t)| OpEntry {
                op: *op,
                name: op.to_string(),
                calls: t.calls as f64 / per,
                bytes: t.bytes as f64 / per,
                derived: t.derived,
            })
            .collect()
    }
}

/// Handshake figures of one profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandshakeRow {
    /// Profile.
    pub protocol: String,
    /// Stanzas both ways.
    pub messages: u64,
    /// Flights.
    pub flights: u64,
    /// Flights / 2.
    pub round_trips: f64,
    /// Bytes the initiator sent.
    pub bytes_initiator: Stat,
    /// Bytes the responder sent.
    pub bytes_responder: Stat,
    /// Initiator CPU, microseconds (its calls, XML of its stanzas included).
    pub cpu_us_initiator: Stat,
    /// Responder CPU, microseconds.
    pub cpu_us_responder: Stat,
    /// Both sides.
    pub cpu_us_total: Stat,
    /// Initiator's public-key operations.
    pub ops_initiator: PkOps,
    /// Responder's.
    pub ops_responder: PkOps,
    /// `counted` or `derived`.
    pub ops_source: String,
    /// Every operation of both sides.
    pub ops: Vec<OpEntry>,
}

/// One-time key generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeygenRow {
    /// Profile.
    pub protocol: String,
    /// CPU of one long-term identity, microseconds.
    pub cpu_us: Stat,
}

/// One size of the per-message sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRow {
    /// Profile.
    pub protocol: String,
    /// Body bytes.
    pub size: usize,
    /// Serialized application stanza bytes per message (what `plaintext` sends).
    pub plaintext_bytes: Stat,
    /// Serialized wire bytes per message.
    pub wire_bytes: Stat,
    /// Wire stanzas per message.
    pub wire_stanzas: Stat,
    /// wire / plaintext bytes.
    pub expansion: Stat,
    /// `send` CPU per message (serializing what it emits included), microseconds.
    pub send_cpu_us: Stat,
    /// Receiving CPU per message (parsing the stanza included), microseconds.
    pub recv_cpu_us: Stat,
    /// Send + receive.
    pub total_cpu_us: Stat,
    /// Of the receive: parsing the received stanzas, microseconds.
    pub parse_cpu_us: Stat,
    /// Public-key operations per message (both sides).
    pub ops: PkOps,
}

/// The first protected message and the time to it per network model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Profile.
    pub protocol: String,
    /// Network model.
    pub network: String,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// One-way legs on the critical path.
    pub legs: u64,
    /// CPU on the critical path, ms.
    pub cpu_ms: Stat,
    /// Time to first protected message, ms.
    pub ttfm_ms: Stat,
}

/// One primitive as the protocols run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrimitiveRow {
    /// The operation.
    pub op: Op,
    /// Its name.
    pub name: String,
    /// Library.
    pub library: String,
    /// Bytes per call.
    pub bytes: u64,
    /// CPU per call, microseconds.
    pub cpu_us: Stat,
    /// Instructions per call (callgrind), if measured.
    pub instructions: Option<f64>,
}

/// Instruction counts of a phase and its floor (callgrind).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstrFloor {
    /// Instructions of the phase (both sides).
    pub measured: f64,
    /// Of the protocol's floor.
    pub floor: f64,
    /// measured / floor.
    pub ratio: f64,
    /// Of the library's floor (when it differs from the protocol's).
    pub floor_library: Option<f64>,
    /// measured / library floor.
    pub ratio_library: Option<f64>,
}

/// A cost against its floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorRow {
    /// Profile.
    pub protocol: String,
    /// `handshake` or `message`.
    pub phase: String,
    /// Body size (message floors).
    pub size: Option<usize>,
    /// The operations charged (per message for message floors), as run.
    pub ops: Vec<OpEntry>,
    /// `counted` or `derived` (public-key operations).
    pub ops_source: String,
    /// Measured CPU, microseconds (per message for message floors).
    pub measured_us: Stat,
    /// The protocol's floor: the operations done the cheapest standard way
    /// ([`Op::ideal`]), microseconds.
    pub floor_us: Stat,
    /// measured / floor, one ratio per repetition.
    pub ratio: Stat,
    /// The library's floor (the operations exactly as run), when it differs.
    pub floor_library_us: Option<Stat>,
    /// measured / library floor.
    pub ratio_library: Option<Stat>,
    /// The same on instruction counts.
    pub instructions: Option<InstrFloor>,
}

/// One directed presence each way (profiles whose `protects` has presence).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceRow {
    /// Profile.
    pub protocol: String,
    /// Serialized application presence bytes.
    pub plaintext_bytes: Stat,
    /// Serialized wire bytes.
    pub wire_bytes: Stat,
    /// wire / plaintext.
    pub expansion: Stat,
    /// `send` CPU, microseconds.
    pub send_cpu_us: Stat,
    /// Receiving CPU, microseconds.
    pub recv_cpu_us: Stat,
}

/// One measured region of the callgrind runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstrRow {
    /// Profile (or `floor` for primitives).
    pub protocol: String,
    /// What ran (`handshake`, `message 1024 B`, `floor handshake`, ...).
    pub what: String,
    /// A headline figure (handshake, the goal-size message, their floors).
    pub headline: bool,
    /// Instructions in each run.
    pub runs: Vec<u64>,
    /// Largest difference between runs, percent of the smallest.
    pub spread_percent: f64,
}

/// libgcrypt's `gcry_mpi_powm` calls counted by callgrind against the
/// OTR adapter's derived modexp count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowmCheck {
    /// Profile.
    pub protocol: String,
    /// Phase.
    pub what: String,
    /// Modexps the adapter derived (both sides).
    pub derived: u64,
    /// `gcry_mpi_powm` calls callgrind counted.
    pub counted: u64,
}

/// The instruction-count runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instructions {
    /// The tool line (`valgrind-… --tool=callgrind`).
    pub tool: String,
    /// Every measured region.
    pub rows: Vec<InstrRow>,
    /// The derived OTR modexps against callgrind's call counts.
    pub powm: Vec<PowmCheck>,
    /// Largest run-to-run difference over all regions, percent.
    pub max_spread_percent: f64,
    /// Largest over the headline regions, percent.
    pub headline_max_spread_percent: f64,
}

/// The first handshake in a fresh process against the steady state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdRow {
    /// Profile.
    pub protocol: String,
    /// CPU of the first handshake (both sides; for profiles without one,
    /// the first message's send and receipt), microseconds, one sample per
    /// fresh process.
    pub cold_cpu_us: Stat,
    /// The same after the first, microseconds.
    pub warm_cpu_us: Stat,
    /// cold / warm, one ratio per process.
    pub ratio: Stat,
    /// Instructions of the first and of a later one (callgrind), if measured.
    pub instructions: Option<(u64, u64)>,
}

/// One reading of one scale run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRow {
    /// Profile.
    pub protocol: String,
    /// Which run (0-based).
    pub run: usize,
    /// Session pairs established so far (2 sessions each).
    pub pairs: usize,
    /// Growth of the malloc heap in use per established session (one side), bytes.
    pub heap_bytes_per_session: f64,
    /// Wall time to create and establish these pairs, seconds.
    pub setup_seconds: f64,
    /// Messages in the mix.
    pub mix_messages: u64,
    /// Body bytes in the mix.
    pub mix_body_bytes: u64,
    /// Wire bytes of the mix.
    pub mix_wire_bytes: u64,
    /// Messages per second of wall time (send + delivery, one thread).
    pub mix_messages_per_second: f64,
    /// CPU per message, microseconds (both sides).
    pub mix_cpu_us_per_message: f64,
}

/// The scale runs of one profile at one point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Profile.
    pub protocol: String,
    /// Pairs.
    pub pairs: usize,
    /// Heap per session, bytes.
    pub heap_bytes_per_session: Stat,
    /// Set-up seconds.
    pub setup_seconds: Stat,
    /// Mix throughput, messages per second.
    pub mix_messages_per_second: Stat,
    /// Mix CPU per message, microseconds.
    pub mix_cpu_us_per_message: Stat,
}

/// A headline figure in two runs of the same commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpreadRow {
    /// The figure.
    pub figure: String,
    /// First run (median).
    pub run1: f64,
    /// Second run.
    pub run2: f64,
    /// |run2 - run1| / run1, percent.
    pub diff_percent: f64,
    /// The first run's 95% interval half-width, percent of its median: the
    /// tolerance the difference is judged against.
    pub tolerance_percent: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// Where it came from.
    pub provenance: Provenance,
    /// Repetitions.
    pub plan: Plan,
    /// How the time to first message is computed.
    pub ttfm_formula: String,
    /// How floors are computed.
    pub floor_formula: String,
    /// Profiles, in report order.
    pub profiles: Vec<ProfileRow>,
    /// Handshakes.
    pub handshake: Vec<HandshakeRow>,
    /// Key generation.
    pub keygen: Vec<KeygenRow>,
    /// Per-message sweep.
    pub messages: Vec<MessageRow>,
    /// Time to first protected message.
    pub latency: Vec<LatencyRow>,
    /// The primitives the protocols ran, one call each.
    pub primitives: Vec<PrimitiveRow>,
    /// Costs over floors.
    pub floors: Vec<FloorRow>,
    /// Directed presence.
    pub presence: Vec<PresenceRow>,
    /// Instruction counts (callgrind), when measured.
    pub instructions: Option<Instructions>,
    /// Cold first handshake against warm.
    pub cold: Vec<ColdRow>,
    /// Every reading of every scale run.
    pub scale: Vec<ScaleRow>,
    /// The scale curve: runs summarized per profile and point.
    pub scale_curve: Vec<ScalePoint>,
    /// Run-to-run differences of the headline figures (`--runs 2`).
    pub spread: Vec<SpreadRow>,
}
