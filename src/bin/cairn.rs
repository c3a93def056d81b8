//! `cairn`: the Cairn server. Takes etcd's flags, so an etcd deployment recipe works by swapping
//! the binary.

use std::process::ExitCode;

use cairn::config::ServerFlags;
use cairn::server::boot::Tuning;
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
        version = LONG_VERSION,
        "starting"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cairn: error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let server = match cairn::server::boot::start(&config, Tuning::from_config(&config)).await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("cairn: error: {err}");
                return ExitCode::from(1);
            }
        };
        wait_for_stop_signal().await;
        tracing::info!("stopping: finishing in-flight requests");
        server.stop().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
