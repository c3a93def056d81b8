//! `cairnctl check disk`: is this disk fit for a consensus log? The fio-style probe etcd's
//! documentation recommends, in one command: sequential 2,300-byte writes, each followed by
//! `fdatasync`, and the percentiles of how long they took.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::display::{OutputFormat, Printed};
use super::histogram::Histogram;
use super::json::JsonObject;
use super::CtlError;

/// The 99th percentile of fdatasync etcd's operators are told to stay under.
const FIT_P99_MICROS: u64 = 10_000;
/// Bytes per write: etcd's typical WAL entry size in its disk guidance.
const WRITE_BYTES: usize = 2300;

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Measures fdatasync latency of sequential 2,300-byte writes in a directory.
    Disk(DiskArgs),
    /// Checks the cluster's write performance under one of etcdctl's loads.
    Perf(super::check_perf::PerfArgs),
}

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Directory to test (the data directory's disk); a temporary file is written and removed.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Number of write+fdatasync rounds.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
}

pub fn run(command: &CheckCommand, format: OutputFormat) -> Result<Printed, CtlError> {
    let CheckCommand::Disk(args) = command else {
        return Err(CtlError::Failed("check perf runs asynchronously".into()));
    };
    let io = |err: std::io::Error| {
        CtlError::Failed(format!("disk check in {}: {err}", args.dir.display()))
    };
    let file = tempfile::NamedTempFile::new_in(&args.dir).map_err(io)?;
    let mut handle = file.as_file();
    let block = vec![0x5au8; WRITE_BYTES];
    let mut latency = Histogram::default();
    for _ in 0..args.count.max(1) {
        let started = Instant::now();
        handle.write_all(&block).map_err(io)?;
        handle.sync_data().map_err(io)?;
        latency.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let (p50, p99) = (latency.quantile(0.5), latency.quantile(0.99));
    let fit = p99 < FIT_P99_MICROS;
    let stdout = match format {
        OutputFormat::Json => {
            JsonObject::new()
                .i64("writes", i64::try_from(latency.count()).unwrap_or(i64::MAX))
                .i64("write_bytes", WRITE_BYTES as i64)
                .i64("fdatasync_p50_us", i64::try_from(p50).unwrap_or(i64::MAX))
                .i64("fdatasync_p99_us", i64::try_from(p99).unwrap_or(i64::MAX))
                .i64("fdatasync_max_us", i64::try_from(latency.max()).unwrap_or(i64::MAX))
                .bool("fit", fit)
                .finish()
                + "\n"
        }
        _ => format!(
            "{} writes of {WRITE_BYTES} bytes, each followed by fdatasync, in {}:\n  p50 {p50} µs, p99 {p99} µs, max {} µs\n{}\n",
            latency.count(),
            args.dir.display(),
            latency.max(),
            if fit {
                "PASS: p99 is under 10 ms"
            } else {
                "FAIL: p99 is 10 ms or more; a consensus log on this disk will be slow"
            }
        ),
    };
    if fit {
        Ok(Printed {
            stdout,
            stderr: String::new(),
        })
    } else {
        print!("{stdout}");
        Err(CtlError::Failed("disk too slow for a consensus log".into()))
    }
}
