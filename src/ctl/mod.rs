//! `cairnctl`: a command-line client for Cairn and any etcd v3 endpoint, with etcdctl's
//! commands, flags, output formats, messages and exit codes, so scripts move over unchanged.

pub mod bench;
mod bench_keys;
pub mod bench_streams;
mod check;
mod check_perf;
mod cluster;
pub mod connect;
pub mod display;
pub mod histogram;
pub mod json;
pub mod kv;
pub mod lease;
mod member;
pub mod table;
pub mod txn_input;
mod unary_channel;
pub mod watch;

use std::io::{IsTerminal, Read};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tonic::transport::Channel;

use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::version::{ETCD_API_VERSION, LONG_VERSION};
use display::{OutputFormat, Printed};

/// A command-line client for Cairn (and any etcd v3 API endpoint).
#[derive(Debug, Parser)]
#[command(name = "cairnctl", version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalFlags {
    /// gRPC endpoints, comma-separated [default: 127.0.0.1:2379, or CAIRNCTL_ENDPOINTS, or
    /// ETCDCTL_ENDPOINTS]
    #[arg(long, global = true, value_delimiter = ',')]
    pub endpoints: Option<Vec<String>>,
    /// Output format: simple, json or table.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    pub write_out: OutputFormat,
    /// Time to wait for a connection.
    #[arg(long = "dial-timeout", global = true, default_value = "2s", value_parser = connect::parse_duration)]
    pub dial_timeout: Duration,
    /// Time to wait for a command's answer.
    #[arg(long = "command-timeout", global = true, default_value = "5s", value_parser = connect::parse_duration)]
    pub command_timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gets the key or a range of keys.
    Get(kv::GetArgs),
    /// Puts the given key into the store.
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end).
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction, read from standard input.
    Txn(TxnArgs),
    /// Compacts the event history.
    Compaction(kv::CompactionArgs),
    /// Lease related commands.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Endpoint related commands.
    #[command(subcommand)]
    Endpoint(cluster::EndpointCommand),
    /// Membership related commands.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Transfers leadership to another member (its id in hexadecimal).
    #[command(name = "move-leader")]
    MoveLeader {
        /// The member to lead, as `member list` prints its id.
        target: Option<String>,
    },
    /// Watches events stream on keys or prefixes.
    Watch(watch::WatchArgs),
    /// Load generator for any etcd v3 endpoint: put, range, txn-put, txn-mixed, watch and lease-keepalive (`-w json` or `-w table` for the results).
    Bench(bench::BenchArgs),
    /// Checks: `perf` (etcdctl's write performance check) and `disk` (whether a disk is fit
    /// for a consensus log).
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Prints the version of cairnctl.
    Version,
}

/// `txn [options]`
#[derive(Debug, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode (prompts for each section).
    #[arg(short, long)]
    pub interactive: bool,
}

/// Why a command failed, and the exit code etcdctl gives for it.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server (or the call) failed; exit 1.
    #[error("{}", status_message(.0))]
    Status(tonic::Status),
    /// No endpoint could be reached; exit 1.
    #[error("context deadline exceeded ({0})")]
    Unreachable(String),
    /// A generic failure; exit 1.
    #[error("{0}")]
    Failed(String),
    /// A call etcdctl treats as a connection failure (keep-alive, timetolive); exit 2.
    #[error("{}", status_message(.0))]
    BadConnection(tonic::Status),
    /// Malformed input (e.g. a transaction's text); exit 3.
    #[error("{0}")]
    InvalidInput(String),
    /// An unknown option value; exit 4.
    #[error("{0}")]
    BadFeature(String),
    /// Wrong arguments; exit 128.
    #[error("{0}")]
    BadArgs(String),
    /// The command printed its verdict (a failed check) and only the exit code is left to
    /// say; exit 1.
    #[error("")]
    Verdict(Printed),
}

pub(crate) fn status_message(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled if status.message().is_empty() => {
            "context deadline exceeded".to_string()
        }
        _ if status.message().is_empty() => status.code().to_string(),
        _ => status.message().to_string(),
    }
}

impl CtlError {
    /// etcdctl's exit codes.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Status(_) | CtlError::Unreachable(_) | CtlError::Failed(_) => 1,
            CtlError::BadConnection(_) => 2,
            CtlError::Verdict(_) => 1,
            CtlError::InvalidInput(_) => 3,
            CtlError::BadFeature(_) => 4,
            CtlError::BadArgs(_) => 128,
        }
    }
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        CtlError::Status(status)
    }
}

impl From<display::UnsupportedFormat> for CtlError {
    fn from(err: display::UnsupportedFormat) -> Self {
        CtlError::BadFeature(err.to_string())
    }
}

/// Runs one command; returns what to print.
pub async fn run(cli: Cli) -> Result<Printed, CtlError> {
    let global = &cli.global;
    let env = |name: &str| std::env::var(name).ok();
    let endpoints = connect::resolve_endpoints(global.endpoints.as_deref(), &env);
    let format = global.write_out;
    let channel = || connect::connect_any(&endpoints, global.dial_timeout, global.command_timeout);
    match &cli.command {
        Command::Version => Ok(Printed {
            stdout: format!("cairnctl version: {LONG_VERSION}\nAPI version: {ETCD_API_VERSION}\n"),
            stderr: String::new(),
        }),
        Command::Get(args) => {
            let request = args.to_request()?;
            if args.print_value_only && format != OutputFormat::Simple {
                return Err(CtlError::BadArgs(
                    "print-value-only is only for `--write-out=simple`".into(),
                ));
            }
            let response = kv_client(channel().await?)
                .range(request)
                .await?
                .into_inner();
            Ok(display::get(
                &response,
                format,
                args.print_value_only,
                args.count_only,
            )?)
        }
        Command::Put(args) => {
            let request = args.to_request(&mut read_stdin_value)?;
            let response = kv_client(channel().await?).put(request).await?.into_inner();
            Ok(display::put(&response, format)?)
        }
        Command::Del(args) => {
            let request = args.to_request()?;
            let response = kv_client(channel().await?)
                .delete_range(request)
                .await?
                .into_inner();
            Ok(display::delete(&response, format)?)
        }
        Command::Txn(args) => {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let interactive = args.interactive;
            let request = txn_input::read_txn(&mut input, &kv::parse_txn_op, &mut |prompt| {
                if interactive {
                    println!("{prompt}");
                }
            })
            .map_err(|err| CtlError::InvalidInput(err.to_string()))?;
            let response = kv_client(channel().await?).txn(request).await?.into_inner();
            Ok(display::txn(&response, format)?)
        }
        Command::Compaction(args) => {
            let request = args.to_request()?;
            let revision = request.revision;
            let response = kv_client(channel().await?)
                .compact(request)
                .await?
                .into_inner();
            Ok(display::compaction(&response, revision, format)?)
        }
        Command::Lease(command) => {
            // A keep-alive runs for as long as the lease lives: no per-command deadline.
            let channel = match command {
                lease::LeaseCommand::KeepAlive(args) if !args.once => {
                    connect::connect_streaming(&endpoints, global.dial_timeout).await?
                }
                _ => channel().await?,
            };
            lease::run(command, format, channel).await
        }
        Command::Endpoint(command) => cluster::run_endpoint(command, global, &endpoints).await,
        Command::MoveLeader { target } => {
            cluster::run_move_leader(target.as_deref(), global, &endpoints).await
        }
        Command::Member(command) => member::run(command, format, channel().await?).await,
        Command::Bench(args) => {
            let report = bench::run(args, global, &endpoints).await?;
            let stdout = match format {
                OutputFormat::Json => report.to_json() + "\n",
                OutputFormat::Table => report.to_table(),
                _ => report.to_text(),
            };
            Ok(Printed {
                stdout,
                stderr: String::new(),
            })
        }
        Command::Check(check::CheckCommand::Perf(args)) => {
            check_perf::run(args, global, &endpoints, format).await
        }
        Command::Check(command) => check::run(command, format),
        Command::Watch(args) => {
            let channel = connect::connect_streaming(&endpoints, global.dial_timeout).await?;
            watch::run(args, channel).await
        }
    }
}

fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
}

/// The value of `put` when no value argument is given: all of standard input, unless it is
/// a terminal.
fn read_stdin_value() -> Option<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut value = String::new();
    stdin.lock().read_to_string(&mut value).ok()?;
    Some(value)
}
