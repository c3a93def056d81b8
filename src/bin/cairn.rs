//! `cairn`: the Cairn server. Takes etcd's flags, so an etcd deployment recipe works by swapping
//! the binary.

use std::process::ExitCode;

use cairn::config::ServerFlags;
use cairn::server::boot::Tuning;
use cairn::version::LONG_VERSION;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cairn: a distributed, strongly consistent key-value store that speaks etcd's v3 API.
#[derive(Debug, Parser)]
#[command(name = "cairn", version = LONG_VERSION, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    server: ServerFlags,

    /// Log filter, e.g. `info` or `cairn=debug,warn`.
    #[arg(long, env = "CAIRN_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Path to the server configuration file (etcd's YAML format). Note that if a
    /// configuration file is provided, other command line flags and environment variables
    /// will be ignored.
    #[arg(long, env = "CAIRN_CONFIG_FILE")]
    config_file: Option<std::path::PathBuf>,
}

/// Re-reads the settings from `--config-file`, if given: the file replaces the command line
/// and the environment, as in etcd.
fn apply_config_file(cli: Cli) -> Result<(Cli, Vec<String>), String> {
    use clap::CommandFactory;
    let Some(path) = cli.config_file.clone() else {
        return Ok((cli, Vec::new()));
    };
    let display = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|err| format!("cannot read --config-file {display}: {err}"))?;
    let command = Cli::command();
    let known = |key: &str| {
        key != "config-file"
            && command
                .get_arguments()
                .any(|arg| arg.get_long() == Some(key))
    };
    let file =
        cairn::config::file::parse(&display, &text, &known).map_err(|err| err.to_string())?;
    // The environment is ignored too: clap would otherwise fill unset flags from it.
    for (name, _) in std::env::vars() {
        if name.starts_with("CAIRN_") {
            std::env::remove_var(name);
        }
    }
    let args = cairn::config::file::to_args("cairn", &file);
    let cli = Cli::try_parse_from(args).map_err(|err| format!("{display}: {err}"))?;
    let skipped = file.skipped.iter().map(ToString::to_string).collect();
    Ok((cli, skipped))
}

fn main() -> ExitCode {
    let (cli, skipped) = match apply_config_file(Cli::parse()) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("cairn: error: {err}");
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    for line in skipped {
        tracing::warn!("--config-file {line}");
    }

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
        let stop_signal = wait_for_stop_signal();
        tokio::pin!(stop_signal);
        // A member that installed a snapshot from its leader starts again on it, in-process.
        loop {
            let server =
                match cairn::server::boot::start(&config, Tuning::from_config(&config)).await {
                    Ok(server) => server,
                    Err(err @ cairn::server::boot::StartError::Removed) => {
                        eprintln!("cairn: {err}");
                        return ExitCode::SUCCESS;
                    }
                    Err(err) => {
                        eprintln!("cairn: error: {err}");
                        return ExitCode::from(1);
                    }
                };
            let member = std::sync::Arc::clone(&server.member);
            let stopped_itself = tokio::select! {
                () = &mut stop_signal => None,
                reason = member.stopped() => Some(reason),
            };
            let grace = match &stopped_itself {
                Some(reason) if reason == cairn::server::raft_loop::SNAPSHOT_INSTALLED => {
                    cairn::server::boot::RESTART_GRACE
                }
                _ => cairn::server::boot::STOP_GRACE,
            };
            tracing::info!("stopping: finishing in-flight requests");
            server.stop(grace).await;
            tracing::info!("stopped");
            return match stopped_itself {
                None => ExitCode::SUCCESS,
                Some(reason) if reason == cairn::server::raft_loop::SNAPSHOT_INSTALLED => {
                    tracing::info!("starting again on the installed snapshot");
                    continue;
                }
                // As etcd: a removed member exits cleanly (it did what the cluster asked).
                Some(reason) if reason == cairn::server::raft_loop::REMOVED_MESSAGE => {
                    eprintln!("cairn: {reason}; the data dir used by this member must be removed");
                    ExitCode::SUCCESS
                }
                Some(reason) => {
                    eprintln!("cairn: error: the member stopped: {reason}");
                    ExitCode::from(1)
                }
            };
        }
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
