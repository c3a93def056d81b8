//! `cairn`: the Cairn server. Takes etcd's flags, so an etcd deployment recipe works by swapping
//! the binary.

use std::process::ExitCode;

use cairn::config::ServerFlags;
use cairn::version::LONG_VERSION;
use clap::Parser;

/// Cairn: a distributed, strongly consistent key-value store that speaks etcd's v3 API.
#[derive(Debug, Parser)]
#[command(name = "cairn", version = LONG_VERSION, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    server: ServerFlags,

    /// Log filter, e.g. `info` or `cairn=debug,warn`.
    #[arg(long, env = "CAIRN_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let config = match cli.server.validate() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cairn: error: {err}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        name = %config.name,
        data_dir = %config.data_dir.display(),
        members = config.initial_cluster.len(),
        "configuration is valid"
    );
    // The serving path (Raft + WAL + B+tree behind the KV API) is not part of this build yet;
    // say so plainly rather than pretend to serve.
    eprintln!("cairn: error: this build does not serve requests yet (single-node server pending)");
    ExitCode::from(2)
}
