//! `cairn-jepsen`: check a saved history (`check WORKLOAD FILE`), or run a fault test
//! (`test`, not built yet). Exit codes: 0 valid, 1 anomaly found, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_jepsen::{exit, history, linearizable};
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
    /// Runs a fault test against a cluster (not built yet: exits 2).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { workload, file } => check(&workload, &file),
        Command::Test { .. } => {
            eprintln!("cairn-jepsen: the fault-test harness is not built yet; `check register FILE` works");
            ExitCode::from(exit::CANNOT_RUN)
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
    let unknown = verdict
        .keys
        .values()
        .any(|v| *v == linearizable::KeyVerdict::Unknown);
    let anomaly = verdict
        .keys
        .values()
        .any(|v| matches!(v, linearizable::KeyVerdict::Anomaly { .. }));
    if unknown && !anomaly {
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
