//! `cairn-jepsen`: check a saved history (`check WORKLOAD FILE`), or run a fault test
//! (`test`). Exit codes: 0 valid, 1 anomaly found, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_jepsen::net::NetMode;
use cairn_jepsen::run::{Judgement, Workload};
use cairn_jepsen::{exit, nemesis, run};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn-jepsen",
    version,
    about = "Fault tests of Cairn clusters and checkers of their histories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a saved history; exits 0 if valid, 1 with the first anomaly spelled out, 2 if
    /// the history cannot be read.
    Check {
        /// The workload whose checker applies: register, append, set, watch, lease or lock.
        workload: String,
        /// The history: JSON lines, one operation per line, or a JSON array of them.
        file: PathBuf,
        /// The run's nemesis timeline (`nemesis.jsonl`): the lease checker tells early
        /// expiries under a fast clock (an assumption of leases) from anomalies.
        #[arg(long)]
        nemesis_file: Option<PathBuf>,
    },
    /// Runs a fault test against a cluster of real nodes; exits 0 if every checker passes,
    /// 1 if one finds an anomaly, 2 if the run could not be carried out.
    Test {
        /// Workloads, comma-separated: register, append, set, watch, lease, lock.
        #[arg(long, default_value = "register")]
        workload: String,
        /// Nemeses, comma-separated: kill, pause, partition, clock, failpoint, member (or
        /// none).
        #[arg(long, default_value = "kill")]
        nemesis: String,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Seconds of workload under faults.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// Where the run's histories, nemesis timeline, node logs and summary go.
        #[arg(long)]
        out: PathBuf,
        /// Concurrent clients per workload.
        #[arg(long, default_value_t = 10)]
        clients: u64,
        /// Keys the register workload spreads over.
        #[arg(long, default_value_t = 5)]
        keys: u64,
        /// The network the nodes talk over: network namespaces and iptables (root only),
        /// loopback behind TCP proxies, or auto (namespaces when root and possible).
        #[arg(long, value_enum, default_value = "auto")]
        net: NetMode,
        /// The cairn binary (default: `cairn` beside this program).
        #[arg(long)]
        cairn_bin: Option<PathBuf>,
        /// Seed of the workload's and the nemesis' choices (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check {
            workload,
            file,
            nemesis_file,
        } => check(&workload, &file, nemesis_file),
        Command::Test {
            workload,
            nemesis,
            nodes,
            time_limit,
            out,
            clients,
            keys,
            net,
            cairn_bin,
            seed,
        } => {
            let workloads: Result<Vec<Workload>, String> = workload
                .split(',')
                .map(|name| name.trim().parse())
                .collect();
            let (workloads, faults) = match (workloads, nemesis::parse_faults(&nemesis)) {
                (Ok(workloads), Ok(faults)) => (workloads, faults),
                (Err(err), _) | (_, Err(err)) => {
                    eprintln!("cairn-jepsen: {err}");
                    return ExitCode::from(exit::CANNOT_RUN);
                }
            };
            let cairn_bin = cairn_bin.unwrap_or_else(|| {
                std::env::current_exe()
                    .map(|exe| exe.with_file_name("cairn"))
                    .unwrap_or_else(|_| PathBuf::from("cairn"))
            });
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
            let config = run::RunConfig {
                cairn_bin,
                nodes,
                clients,
                keys,
                time_limit: std::time::Duration::from_secs(time_limit),
                out,
                workloads,
                faults,
                net,
                seed,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("cairn-jepsen: cannot start a runtime: {err}");
                    return ExitCode::from(exit::CANNOT_RUN);
                }
            };
            // Interrupted, the run is dropped where it stands: its nodes are killed and its
            // network removed by their destructors (a killed harness would leave both behind).
            let outcome = runtime.block_on(async {
                let (interrupt, interrupted) = tokio::sync::oneshot::channel();
                tokio::spawn(watch_interrupts(interrupt));
                tokio::select! {
                    outcome = run::run(&config) => Some(outcome),
                    _ = interrupted => None,
                }
            });
            let Some(outcome) = outcome else {
                eprintln!(
                    "cairn-jepsen: interrupted; the nodes are stopped and the test network removed (histories are not written)"
                );
                // Not through the runtime's drop, which would wait for every client and proxy
                // task to notice its nodes are gone (a CI run once timed out on it).
                std::process::exit(i32::from(exit::CANNOT_RUN));
            };
            match outcome {
                Ok(verdict) if verdict.valid() => ExitCode::from(exit::VALID),
                Ok(verdict) if verdict.anomalous() => ExitCode::from(exit::ANOMALY),
                // A checker gave up: nothing was shown either way.
                Ok(_) => ExitCode::from(exit::CANNOT_RUN),
                Err(err) => {
                    eprintln!("cairn-jepsen: the run could not be carried out: {err}");
                    ExitCode::from(exit::CANNOT_RUN)
                }
            }
        }
    }
}

/// On SIGINT or SIGTERM: while nodes run, asks the run to stop (`interrupt`), which drops it
/// and so cleans up; once they are down (the checks run, on the run's own thread, and may
/// take minutes) or on a second signal, exits at once.
async fn watch_interrupts(interrupt: tokio::sync::oneshot::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("cairn-jepsen: cannot watch SIGINT/SIGTERM; an interrupted run leaves its nodes");
        return;
    };
    let mut next_signal = async || {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    next_signal().await;
    if !run::nodes_down() {
        let _ = interrupt.send(());
        next_signal().await;
    }
    eprintln!("cairn-jepsen: interrupted");
    std::process::exit(i32::from(exit::CANNOT_RUN));
}

fn check(workload: &str, file: &std::path::Path, nemesis_file: Option<PathBuf>) -> ExitCode {
    let workload: Workload = match workload.parse() {
        Ok(workload) => workload,
        Err(err) => {
            eprintln!("cairn-jepsen: {err}");
            return ExitCode::from(exit::CANNOT_RUN);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("cairn-jepsen: cannot read {}: {err}", file.display());
            return ExitCode::from(exit::CANNOT_RUN);
        }
    };
    let started = std::time::Instant::now();
    let timeline = match &nemesis_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(timeline) => timeline,
            Err(err) => {
                eprintln!("cairn-jepsen: cannot read {}: {err}", path.display());
                return ExitCode::from(exit::CANNOT_RUN);
            }
        },
        None => String::new(),
    };
    let (counts, judgement) = run::judge(workload, &text, &timeline);
    let took = started.elapsed();
    match judgement {
        Judgement::Valid => {
            println!("valid: {counts} (checked in {took:.2?})");
            ExitCode::from(exit::VALID)
        }
        Judgement::Anomaly(why) => {
            println!("invalid: {why}");
            ExitCode::from(exit::ANOMALY)
        }
        Judgement::Unknown(why) => {
            eprintln!("cairn-jepsen: {}: {why}", file.display());
            println!("unknown: {why}");
            ExitCode::from(exit::CANNOT_RUN)
        }
    }
}
