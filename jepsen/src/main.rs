//! `cairn-jepsen`: check a saved history (`check WORKLOAD FILE`), or run a fault test
//! (`test`, not built yet). Exit codes: 0 valid, 1 anomaly found, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_jepsen::{exit, history, linearizable, run};
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
        /// The workload whose checker applies: register.
        workload: String,
        /// The history: JSON lines, one operation per line, or a JSON array of them.
        file: PathBuf,
    },
    /// Runs a fault test against a cluster of real nodes on loopback; exits 0 if every
    /// checker passes, 1 if one finds an anomaly, 2 if the run could not be carried out.
    Test {
        /// Workloads, comma-separated (register so far).
        #[arg(long, default_value = "register")]
        workload: String,
        /// Nemeses, comma-separated: kill, or none.
        #[arg(long, default_value = "kill")]
        nemesis: String,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Seconds of workload under faults.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// Where the run's history, nemesis timeline, node logs and summary go.
        #[arg(long)]
        out: PathBuf,
        /// Concurrent clients.
        #[arg(long, default_value_t = 10)]
        clients: u64,
        /// Keys the register workload spreads over.
        #[arg(long, default_value_t = 5)]
        keys: u64,
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
        Command::Check { workload, file } => check(&workload, &file),
        Command::Test {
            workload,
            nemesis,
            nodes,
            time_limit,
            out,
            clients,
            keys,
            cairn_bin,
            seed,
        } => {
            if workload != "register" {
                eprintln!(
                    "cairn-jepsen: only the register workload is built yet, not {workload:?}"
                );
                return ExitCode::from(exit::CANNOT_RUN);
            }
            let kill = match nemesis.as_str() {
                "kill" => true,
                "none" => false,
                other => {
                    eprintln!(
                        "cairn-jepsen: only the kill nemesis (or none) is built yet, not {other:?}"
                    );
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
                kill,
                seed,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("cairn-jepsen: cannot start a runtime: {err}");
                    return ExitCode::from(exit::CANNOT_RUN);
                }
            };
            match runtime.block_on(run::run(&config)) {
                Ok(verdict) if verdict.valid() => ExitCode::from(exit::VALID),
                Ok(verdict) if verdict.anomalous() => ExitCode::from(exit::ANOMALY),
                // The checker gave up: nothing was shown either way.
                Ok(_) => ExitCode::from(exit::CANNOT_RUN),
                Err(err) => {
                    eprintln!("cairn-jepsen: the run could not be carried out: {err}");
                    ExitCode::from(exit::CANNOT_RUN)
                }
            }
        }
    }
}

fn check(workload: &str, file: &std::path::Path) -> ExitCode {
    if workload != "register" {
        eprintln!("cairn-jepsen: no checker for workload {workload:?} yet (register)");
        return ExitCode::from(exit::CANNOT_RUN);
    }
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("cairn-jepsen: cannot read {}: {err}", file.display());
            return ExitCode::from(exit::CANNOT_RUN);
        }
    };
    let ops = match history::parse(&text) {
        Ok(ops) => ops,
        Err(err) => {
            eprintln!("cairn-jepsen: {}: {err}", file.display());
            return ExitCode::from(exit::CANNOT_RUN);
        }
    };
    let started = std::time::Instant::now();
    let verdict = linearizable::check(&ops);
    let took = started.elapsed();
    if !verdict.valid() && !verdict.anomalous() {
        println!("unknown: {}", verdict.explain().unwrap_or_default());
        return ExitCode::from(exit::CANNOT_RUN);
    }
    match verdict.explain() {
        None => {
            println!(
                "valid: {} operations on {} keys are linearizable (checked in {:.2?})",
                verdict.operations,
                verdict.keys.len(),
                took
            );
            ExitCode::from(exit::VALID)
        }
        Some(anomaly) => {
            println!("invalid: {anomaly}");
            ExitCode::from(exit::ANOMALY)
        }
    }
}
