//! The `e2elab` command line.

use clap::{Parser, Subcommand, ValueEnum};
use e2elab::driver::{self, RunReport};
use e2elab::link::Phase;
use e2elab::output::{fixed, Table};
use e2elab::{conformance, peer, registry, store};
use e2elab_core::{stanza, Env, Options, Protocol, Role, SessionConfig, Timestamp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "e2elab",
    version,
    about = "Compare XMPP end-to-end encryption protocols on equal terms"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum RoleArg {
    Initiator,
    Responder,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every protocol profile with its family, spec and claims.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Run the handshake and N messages each way per protocol and print the costs.
    Run {
        /// Protocol id (repeatable; `all` or none for every profile).
        #[arg(long = "protocol", short = 'p')]
        protocols: Vec<String>,
        /// Messages each way.
        #[arg(long, default_value_t = 100)]
        messages: u64,
        /// Body size of each message in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seed of the run (identities, randomness, bodies).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Profile option `key=value` (repeatable).
        #[arg(long = "opt")]
        opts: Vec<String>,
    },
    /// Print the stanzas that crossed the link, in order, as annotated XML.
    Transcript {
        #[arg(long = "protocol", short = 'p')]
        protocol: String,
        #[arg(long, default_value_t = 2)]
        messages: u64,
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "opt")]
        opts: Vec<String>,
    },
    /// Generate a long-term identity for a JID into DIR (identity.json, public.json).
    Keygen {
        #[arg(long = "protocol", short = 'p')]
        protocol: String,
        #[arg(long)]
        jid: String,
        #[arg(long)]
        out: PathBuf,
        /// Seed (default: fresh randomness from the OS).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run one live session over stdin/stdout (see `e2elab peer --help`).
    ///
    /// Input lines: `send <stanza>`, `recv <stanza>`, `close`. Output lines:
    /// `wire <stanza>` (forward to the peer), `deliver <stanza>`. Events and
    /// errors go to stderr.
    Peer {
        #[arg(long = "protocol", short = 'p')]
        protocol: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Our full JID.
        #[arg(long)]
        jid: String,
        /// The peer's full JID.
        #[arg(long)]
        peer: String,
        /// Directory (or file) with our identity.json.
        #[arg(long)]
        identity: PathBuf,
        /// Directory (or file) with the peer's public.json.
        #[arg(long)]
        peer_identity: Option<PathBuf>,
        /// Seed of the session's randomness (default: fresh from the OS).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long = "opt")]
        opts: Vec<String>,
        /// Largest stanza accepted, in bytes (default 262144, Prosody's
        /// c2s_stanza_size_limit default); a longer input line is an error
        /// event and is skipped.
        #[arg(long, default_value_t = e2elab_core::stanza::Limits::DEFAULT.max_bytes)]
        max_stanza_bytes: usize,
        /// Deepest element nesting accepted (default 128).
        #[arg(long, default_value_t = e2elab_core::stanza::Limits::DEFAULT.max_depth)]
        max_depth: usize,
    },
    /// Run the conformance suite for protocols and print pass/fail per check.
    Conformance {
        #[arg(long = "protocol", short = 'p')]
        protocols: Vec<String>,
    },
    /// Measure every profile (handshake, keygen, message sweep, time to first
    /// message, primitive floors) and write DIR/results.json and CSV files.
    Compare {
        /// Few repetitions (a smoke run).
        #[arg(long)]
        quick: bool,
        #[arg(long = "protocol", short = 'p')]
        protocols: Vec<String>,
        #[arg(long, default_value = "results/run")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `memory`: the in-memory link only; `xmpp`: also through a real XMPP
        /// server (plain TCP and STARTTLS), written to DIR/server.json.
        #[arg(long, default_value = "memory", value_parser = ["memory", "xmpp"])]
        transport: String,
        /// With `--transport xmpp`: a running server to use (domain `localhost`,
        /// accounts alice, bob, user0.. with password `pass`) instead of a
        /// throwaway Prosody on loopback started and stopped by e2elab.
        #[arg(long)]
        server: Option<std::net::SocketAddr>,
        /// With `--server`: the certificate to trust for the STARTTLS run
        /// (without it only plain TCP is measured).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Profiles of the load test (default: plaintext, esessions-simplified,
        /// xep0373-ox, otr-v3 where selected).
        #[arg(long = "load-protocol")]
        load_protocols: Vec<String>,
        /// `c2s_stanza_size_limit` set explicitly on the started server, bytes
        /// (default 262144, Prosody's own default).
        #[arg(long)]
        stanza_limit: Option<u64>,
        /// In-memory runs: 2 reports the run-to-run difference of every
        /// headline figure beside its interval.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=2))]
        runs: u64,
        /// Skip the instruction counts (callgrind).
        #[arg(long)]
        no_instructions: bool,
        /// Skip the cold first handshake in fresh processes.
        #[arg(long)]
        no_cold: bool,
        /// Skip the scale curve.
        #[arg(long)]
        no_scale: bool,
    },
    /// Generate DIR/report.md, DIR/report.html and charts from DIR/results.json.
    Report {
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// The full evaluation (compare + security + server + requirements + report) into results/.
    Reproduce {
        #[arg(long, default_value = "results")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The specification texts (XEP-0210's Implementability counts their words).
        #[arg(long, default_value = "../shared/specs")]
        specs: PathBuf,
    },
    /// The paper's generated inputs (numbers.tex, tab-*.tex, provenance.json,
    /// inputs.sha256) from the result files in RESULTS.
    Paper {
        #[arg(long, default_value = "results")]
        results: PathBuf,
        #[arg(long, default_value = "paper/gen")]
        out: PathBuf,
    },
    /// The XEP-0210 requirement matrix from DIR's results plus its own
    /// experiments (offline sessions through Prosody, object encryption,
    /// generality, usability, interoperability tools, implementability):
    /// DIR/requirements.json and DIR/requirements.md.
    Requirements {
        #[arg(long = "in", default_value = "results")]
        input: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The specification texts (Implementability counts their words).
        #[arg(long, default_value = "../shared/specs")]
        specs: PathBuf,
    },
    /// (Internal) a measurement in a fresh process, for `compare`.
    #[command(hide = true)]
    Worker {
        /// `scale`, `cold` or `instr`.
        kind: String,
        #[arg(long)]
        profile: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Scale: the points.
        #[arg(long, value_delimiter = ',')]
        points: Vec<usize>,
        /// Scale: which run.
        #[arg(long, default_value_t = 0)]
        run: usize,
        /// Cold, instr: the identities' directory.
        #[arg(long)]
        ids: Option<PathBuf>,
        /// Instr: the body sizes.
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Instr: the floors' keys.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// The fuzzing campaign's plain-build side: `seeds` writes the seed
    /// corpora and dictionaries into DIR (fuzz/), `replay` runs every file of
    /// DIR/corpus/<target>/ through its target (see harness/src/fuzz.rs).
    Fuzz {
        /// `seeds` or `replay`.
        action: String,
        #[arg(long, default_value = "fuzz")]
        dir: PathBuf,
        /// Only these targets (repeatable; default all).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// Run the security experiments (attacks on the link) on the profiles, plus every known-bad control, and print outcome and evidence per row; a control that comes out wrong exits non-zero.
    Security {
        #[arg(long = "protocol", short = 'p')]
        protocols: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "table", value_parser = ["table", "json", "md"])]
        format: String,
    },
}

fn fuzz_cmd(action: &str, dir: &std::path::Path, names: &[String]) -> e2elab::Result<ExitCode> {
    use e2elab::fuzz::{self, Target};
    let targets: Vec<Target> = if names.is_empty() {
        fuzz::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| Target::from_name(n).ok_or_else(|| e2elab::fail!("no fuzz target {n}")))
            .collect::<Result<_, _>>()?
    };
    match action {
        "seeds" => {
            for t in targets {
                let n = fuzz::write_seeds(t, dir)?;
                println!(
                    "{}: {n} seeds, {} dictionary entries",
                    t.name(),
                    t.dictionary().len()
                );
            }
        }
        "replay" => {
            for t in targets {
                let (n, elapsed) = fuzz::replay(t, dir)?;
                println!(
                    "{}: {n} inputs replayed in {:.1} s",
                    t.name(),
                    elapsed.as_secs_f64()
                );
            }
        }
        other => {
            return Err(e2elab::fail!(
                "fuzz: unknown action {other} (seeds or replay)"
            ))
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn one(id: &str) -> e2elab::Result<Box<dyn Protocol>> {
    registry::resolve(&[id.to_string()])?
        .into_iter()
        .next()
        .ok_or_else(|| e2elab::Error::from("no protocol"))
}

fn options(opts: &[String]) -> e2elab::Result<Options> {
    Options::parse(opts.iter().map(String::as_str))
        .map_err(|e| e2elab::Error::session("options", e))
}

/// 32 bytes of OS entropy for an unseeded session; no fallback: without
/// `/dev/urandom` the peer does not start (fail closed).
fn os_seed() -> e2elab::Result<[u8; 32]> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| e2elab::fail!("no OS entropy for the session's seed (/dev/urandom: {e})"))?;
    Ok(b)
}

fn wall_clock() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

fn progress(len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>20} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

fn dispatch(cmd: Cmd) -> e2elab::Result<ExitCode> {
    match cmd {
        Cmd::List { format } => list(format),
        Cmd::Run {
            protocols,
            messages,
            size,
            seed,
            format,
            opts,
        } => run(&protocols, messages, size, seed, format, &options(&opts)?),
        Cmd::Transcript {
            protocol,
            messages,
            size,
            seed,
            out,
            opts,
        } => transcript(&protocol, messages, size, seed, out, &options(&opts)?),
        Cmd::Keygen {
            protocol,
            jid,
            out,
            seed,
        } => {
            let proto = one(&protocol)?;
            let bare = stanza::bare_jid(&jid).to_string();
            let mut env = match seed {
                Some(s) => Env::for_party(s, &format!("identity:{bare}")),
                None => Env::from_seed(os_seed()?),
            };
            // A key made for live use is dated now, like the `peer` session that will use it.
            env.set_now(wall_clock());
            let id = proto
                .generate_identity(&mut env, &bare)
                .map_err(|e| e2elab::fail!("keygen: {e}"))?;
            store::save(&out, &id)?;
            println!(
                "{} identity for {} in {} (fingerprint {})",
                proto.info().id,
                bare,
                out.display(),
                id.public.fingerprint.as_deref().unwrap_or("none")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Peer {
            protocol,
            role,
            jid,
            peer,
            identity,
            peer_identity,
            seed,
            opts,
            max_stanza_bytes,
            max_depth,
        } => {
            stanza::set_limits(stanza::Limits {
                max_bytes: max_stanza_bytes,
                max_depth,
            });
            let proto = one(&protocol)?;
            let id = store::load(&identity)?;
            if id.jid() != stanza::bare_jid(&jid) {
                return Err(e2elab::fail!(
                    "identity is for {}, not {}",
                    id.jid(),
                    stanza::bare_jid(&jid)
                ));
            }
            let peer_public = peer_identity.map(|p| store::load_public(&p)).transpose()?;
            let role = match role {
                RoleArg::Initiator => Role::Initiator,
                RoleArg::Responder => Role::Responder,
            };
            let mut env = match seed {
                Some(s) => Env::for_party(s, role.name()),
                None => Env::from_seed(os_seed()?),
            };
            env.set_now(wall_clock());
            let mut session = proto
                .new_session(
                    &mut env,
                    SessionConfig {
                        role,
                        local_jid: e2elab::driver::jid(&jid)?,
                        peer_jid: e2elab::driver::jid(&peer)?,
                        identity: Arc::new(id),
                        peer_public,
                        options: options(&opts)?,
                    },
                )
                .map_err(|e| e2elab::fail!("session: {e}"))?;
            let stdin = std::io::stdin();
            let errors = peer::run(
                session.as_mut(),
                &mut env,
                stdin.lock(),
                std::io::stdout(),
                std::io::stderr(),
                wall_clock,
            )?;
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Security {
            protocols,
            seed,
            format,
        } => {
            print!("{}", e2elab::security::cli(&protocols, seed, &format)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare {
            quick,
            protocols,
            out,
            seed,
            transport,
            server,
            tls_ca,
            load_protocols,
            stanza_limit,
            runs,
            no_instructions,
            no_cold,
            no_scale,
        } => {
            let xmpp_only = [
                ("--server", server.is_some()),
                ("--tls-ca", tls_ca.is_some()),
                ("--load-protocol", !load_protocols.is_empty()),
                ("--stanza-limit", stanza_limit.is_some()),
            ];
            if transport != "xmpp" {
                if let Some((flag, _)) = xmpp_only.iter().find(|(_, set)| *set) {
                    return Err(e2elab::fail!("{flag} needs --transport xmpp"));
                }
            }
            if tls_ca.is_some() && server.is_none() {
                return Err("--tls-ca is for --server (the started server's certificate is trusted by itself)".into());
            }
            if stanza_limit.is_some() && server.is_some() {
                return Err(
                    "--stanza-limit sets the started server's limit; it cannot change --server's"
                        .into(),
                );
            }
            if stanza_limit == Some(0) {
                return Err("--stanza-limit 0 would refuse every stanza".into());
            }
            if !load_protocols.is_empty() {
                registry::resolve(&load_protocols)?;
            }
            let xmpp = (transport == "xmpp").then(|| {
                let mut c = e2elab::xmpp::Config::new(quick, protocols.clone(), seed);
                c.server = server.map(|addr| e2elab::xmpp::External { addr, tls_ca });
                c.load_protocols = load_protocols;
                if let Some(l) = stanza_limit {
                    c.stanza_limit = l;
                }
                c
            });
            if xmpp.as_ref().is_some_and(|c| c.server.is_none())
                && !e2elab::xmpp::server::installed()
            {
                return Err("--transport xmpp starts Prosody, which is not installed (scripts/setup.sh installs it)".into());
            }
            let mut cfg = e2elab::compare::Config::new(quick, protocols, seed);
            cfg.runs = runs as usize;
            cfg.instructions = !no_instructions;
            cfg.cold = !no_cold;
            cfg.scale = !no_scale;
            e2elab::cli_compare::compare(cfg, &out, xmpp)
        }
        Cmd::Worker {
            kind,
            profile,
            seed,
            points,
            run,
            ids,
            sizes,
            keys,
        } => e2elab::cli_compare::worker(&kind, &profile, seed, &points, run, ids, &sizes, keys),
        Cmd::Report { input } => e2elab::cli_compare::report(&input),
        Cmd::Fuzz {
            action,
            dir,
            targets,
        } => fuzz_cmd(&action, &dir, &targets),
        Cmd::Reproduce { out, seed, specs } => e2elab::cli_compare::reproduce(&out, seed, &specs),
        Cmd::Paper { results, out } => {
            for f in e2elab::paper::generate(&results, &out)? {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Requirements { input, seed, specs } => {
            e2elab::cli_compare::requirements(&input, seed, &specs)
        }
        Cmd::Conformance { protocols } => {
            let protos = registry::resolve(&protocols)?;
            let mut t = Table::new(&["protocol", "check", "result"]);
            let mut failed = 0;
            for p in &protos {
                for (name, r) in conformance::run_all(p.as_ref()) {
                    let res = match r {
                        Ok(()) => "pass".to_string(),
                        Err(e) => {
                            failed += 1;
                            format!("FAIL: {e}")
                        }
                    };
                    t.row(vec![p.info().id.to_string(), name.to_string(), res]);
                }
            }
            print!("{}", t.render());
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn list(format: ListFormat) -> e2elab::Result<ExitCode> {
    let all = registry::all();
    match format {
        ListFormat::Json => {
            let infos: Vec<_> = all.iter().map(|p| p.info()).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&infos).map_err(e2elab::Error::msg)?
            );
        }
        ListFormat::Table => {
            let mut t = Table::new(&[
                "protocol",
                "family",
                "spec",
                "claims (spec) / control",
                "summary",
            ]);
            for p in &all {
                let i = p.info();
                let claimed: Vec<String> = if i.family == "control" {
                    i.control_for
                        .iter()
                        .map(|(p, v)| {
                            if v.is_empty() {
                                format!("must fail {}", p.name())
                            } else {
                                format!("must fail {} ({v})", p.name())
                            }
                        })
                        .collect()
                } else {
                    let mut v: Vec<String> = i
                        .claims
                        .iter()
                        .filter(|c| c.level == e2elab_core::ClaimLevel::Claimed)
                        .map(|c| c.property.name().to_string())
                        .collect();
                    v.dedup();
                    v
                };
                t.row(vec![
                    i.id.to_string(),
                    i.family.to_string(),
                    i.spec.to_string(),
                    if claimed.is_empty() {
                        "-".into()
                    } else {
                        claimed.join(",")
                    },
                    i.summary.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(
    protocols: &[String],
    messages: u64,
    size: usize,
    seed: u64,
    format: Format,
    opts: &Options,
) -> e2elab::Result<ExitCode> {
    let protos = registry::resolve(protocols)?;
    let mut reports: Vec<RunReport> = Vec::new();
    for p in &protos {
        let pb = progress(messages, p.info().id.to_string());
        let (r, _) = driver::run_workload(p.as_ref(), seed, messages, size, opts, |n| {
            pb.set_position(n)
        })?;
        pb.finish_and_clear();
        reports.push(r);
    }
    let mut stdout = std::io::stdout();
    match format {
        Format::Json => {
            let s = if reports.len() == 1 {
                serde_json::to_string_pretty(&reports[0])
            } else {
                serde_json::to_string_pretty(&reports)
            }
            .map_err(e2elab::Error::msg)?;
            writeln!(stdout, "{s}").map_err(e2elab::Error::msg)?;
        }
        Format::Table | Format::Csv => {
            let t = run_table(&reports, format == Format::Table);
            let s = if format == Format::Table {
                t.render()
            } else {
                t.csv()
            };
            write!(stdout, "{s}").map_err(e2elab::Error::msg)?;
            if format == Format::Table {
                writeln!(
                    stdout,
                    "\n{} messages each way, {size}-byte bodies, seed {seed}. hs = handshake; I/R = initiator/responder; \
                     pk ops = modexp+sign+verify+pk-enc+pk-dec; overhead = wire/plaintext serialized stanza bytes.",
                    messages
                )
                .map_err(e2elab::Error::msg)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_table(reports: &[RunReport], human: bool) -> Table {
    let cols: &[&str] = if human {
        &[
            "protocol",
            ">hs msgs",
            ">hs RTT",
            ">hs bytes I",
            ">hs bytes R",
            ">hs CPU I (us)",
            ">hs CPU R (us)",
            ">hs pk ops I",
            ">hs pk ops R",
            ">msgs",
            ">plaintext B",
            ">wire B",
            ">overhead",
            ">send CPU/msg (us)",
            ">recv CPU/msg (us)",
        ]
    } else {
        &[
            "protocol",
            "hs_messages",
            "hs_round_trips",
            "hs_bytes_initiator",
            "hs_bytes_responder",
            "hs_cpu_us_initiator",
            "hs_cpu_us_responder",
            "hs_pk_ops_initiator",
            "hs_pk_ops_responder",
            "msg_count",
            "msg_plaintext_bytes",
            "msg_wire_bytes",
            "msg_overhead",
            "msg_cpu_us_send_per_msg",
            "msg_cpu_us_receive_per_msg",
        ]
    };
    let mut t = Table::new(cols);
    for r in reports {
        let h = &r.handshake;
        let m = &r.messages;
        let per = |x: f64| {
            if m.count == 0 {
                0.0
            } else {
                x / m.count as f64
            }
        };
        let overhead = if m.plaintext_bytes == 0 {
            0.0
        } else {
            m.wire_bytes as f64 / m.plaintext_bytes as f64
        };
        t.row(vec![
            r.protocol.clone(),
            h.messages.to_string(),
            fixed(h.round_trips, 1),
            h.bytes_initiator.to_string(),
            h.bytes_responder.to_string(),
            fixed(h.cpu_us_initiator, 1),
            fixed(h.cpu_us_responder, 1),
            h.ops_initiator.total().to_string(),
            h.ops_responder.total().to_string(),
            m.count.to_string(),
            m.plaintext_bytes.to_string(),
            m.wire_bytes.to_string(),
            fixed(overhead, 3),
            fixed(per(m.cpu_us_send), 2),
            fixed(per(m.cpu_us_receive), 2),
        ]);
    }
    t
}

fn transcript(
    id: &str,
    messages: u64,
    size: usize,
    seed: u64,
    out: Option<PathBuf>,
    opts: &Options,
) -> e2elab::Result<ExitCode> {
    let proto = one(id)?;
    let (report, link) = driver::run_workload(proto.as_ref(), seed, messages, size, opts, |_| {})?;
    let mut s = String::new();
    s.push_str(&format!(
        "<!-- e2elab transcript: protocol {id}, seed {seed}, {messages} message(s) each way, {size}-byte bodies -->\n"
    ));
    s.push_str(&format!(
        "<!-- handshake: {} stanza(s), {} flight(s); data: {} stanza(s), {} wire bytes for {} plaintext bytes -->\n",
        report.handshake.messages,
        report.handshake.flights,
        report.messages.wire_stanzas,
        report.messages.wire_bytes,
        report.messages.plaintext_bytes
    ));
    s.push_str(&format!("<transcript protocol='{id}' seed='{seed}'>\n"));
    let mut last_phase: Option<Phase> = None;
    for (i, e) in link.transcript.iter().enumerate() {
        if last_phase != Some(e.phase) {
            s.push_str(&format!("\n<!-- ===== {:?} ===== -->\n", e.phase));
            last_phase = Some(e.phase);
        }
        s.push_str(&format!(
            "<!-- #{} {} {} bytes at {} (+{} us) -->\n",
            i + 1,
            e.dir.label(),
            e.bytes,
            e.at.to_rfc3339(),
            e.at.since(e2elab_core::Timestamp::DEFAULT_START)
                .as_micros()
        ));
        s.push_str(&e.xml);
        s.push('\n');
    }
    s.push_str("</transcript>\n");
    match out {
        Some(p) => {
            std::fs::write(&p, s).map_err(|e| e2elab::Error::io(p.display().to_string(), e))?
        }
        None => print!("{s}"),
    }
    Ok(ExitCode::SUCCESS)
}
