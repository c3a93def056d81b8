//! `cairnctl`: the command-line client for Cairn, and for any etcd v3 endpoint.

use std::process::ExitCode;

use cairn::version::{ETCD_API_VERSION, LONG_VERSION};
use clap::{Parser, Subcommand};

/// A command-line client for Cairn (and any etcd v3 API endpoint).
#[derive(Debug, Parser)]
#[command(name = "cairnctl", version = LONG_VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of cairnctl and the etcd API version it speaks.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("cairnctl version: {LONG_VERSION}");
            println!("API version: {ETCD_API_VERSION}");
        }
    }
    ExitCode::SUCCESS
}
