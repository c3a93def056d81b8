//! `cairnctl bench`: a load generator for any etcd v3 endpoint (Cairn or etcd), in the spirit
//! of etcd's `benchmark` tool: workloads, connections shared by concurrent clients, an optional
//! target rate, a warm-up, and latency percentiles from a bounded-error histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use super::bench_keys::Rng;
pub use super::bench_keys::{key_bytes, KeyArgs};
use super::histogram::Histogram;
use super::json::JsonObject;
use super::unary_channel::{self, UnaryChannel};
use super::{bench_streams, connect, CtlError, GlobalFlags};
use crate::proto::etcdserverpb::{
    request_op, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,
    /// Requests to measure (after the warm-up).
    #[arg(long, default_value_t = 10_000, global = true)]
    pub total: u64,
    /// Measure for this long instead of `--total` requests (e.g. `10s`, `500ms`); for put,
    /// range, txn-put and txn-mixed. Runs compared side by side then get the same time window, however
    /// fast each server is.
    #[arg(long, global = true, value_parser = super::connect::parse_duration)]
    pub duration: Option<Duration>,
    /// gRPC connections, shared round-robin by the clients.
    #[arg(long, default_value_t = 1, global = true)]
    pub conns: usize,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 1, global = true)]
    pub clients: usize,
    /// Target requests per second across all clients (0: as fast as possible).
    #[arg(long, default_value_t = 0, global = true)]
    pub rate: u64,
    /// Requests sent before measuring.
    #[arg(long, default_value_t = 0, global = true)]
    pub warmup: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Puts of `--val-size` bytes.
    Put {
        #[command(flatten)]
        keys: KeyArgs,
        #[arg(long = "val-size", default_value_t = 8)]
        val_size: usize,
    },
    /// Ranges of `--keys-per-range` consecutive keys (1: gets); `--preload` writes the key
    /// space first (not measured).
    Range {
        #[command(flatten)]
        keys: KeyArgs,
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Keys each range covers, from a picked key on in key order (at most the key space;
        /// etcd's benchmark has no such flag: its range reads one fixed key or range).
        #[arg(long = "keys-per-range", default_value_t = 1)]
        keys_per_range: u64,
        #[arg(long)]
        preload: bool,
    },
    /// Transactions of `--txn-ops` puts each, to distinct keys.
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        #[arg(long = "val-size", default_value_t = 8)]
        val_size: usize,
        /// Puts per transaction (at most the key space).
        #[arg(long = "txn-ops", default_value_t = 1)]
        txn_ops: u64,
    },
    /// Transactions: `--read-percent` of them read a key, the rest write one.
    TxnMixed {
        #[command(flatten)]
        keys: KeyArgs,
        #[arg(long = "val-size", default_value_t = 8)]
        val_size: usize,
        #[arg(long = "read-percent", default_value_t = 90)]
        read_percent: u64,
        #[arg(long)]
        preload: bool,
    },
    /// Watch fan-out: one writer puts `--total` values to one key at `--put-rate`; every
    /// watcher (`--streams` × `--watchers-per-stream`) must receive each. Reports events
    /// delivered per second and the delivery delay (put sent to event received).
    Watch {
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long = "watchers-per-stream", default_value_t = 100)]
        watchers_per_stream: usize,
        /// Puts per second (0: as fast as the writer can).
        #[arg(long = "put-rate", default_value_t = 100)]
        put_rate: u64,
        #[arg(long = "val-size", default_value_t = 64)]
        val_size: usize,
    },
    /// Lease keepalives: grants `--leases` leases (not measured), then `--clients` keepalive
    /// streams renew them round-robin, one renewal in flight each, `--total` in all.
    LeaseKeepalive {
        #[arg(long, default_value_t = 1000)]
        leases: usize,
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram,
}

impl Report {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> String {
        let us = |q: f64| i64::try_from(self.latency.quantile(q)).unwrap_or(i64::MAX);
        let latency = JsonObject::new()
            .i64("p50", us(0.5))
            .i64("p90", us(0.9))
            .i64("p99", us(0.99))
            .i64("p999", us(0.999))
            .i64("max", i64::try_from(self.latency.max()).unwrap_or(i64::MAX))
            .i64("min", i64::try_from(self.latency.min()).unwrap_or(i64::MAX))
            .i64("mean", self.latency.mean() as i64);
        JsonObject::new()
            .str("workload", self.workload)
            .i64("requests", i64::try_from(self.requests).unwrap_or(i64::MAX))
            .count("errors", i64::try_from(self.errors).unwrap_or(i64::MAX))
            .i64(
                "elapsed_us",
                i64::try_from(self.elapsed.as_micros()).unwrap_or(i64::MAX),
            )
            .i64("requests_per_second", self.requests_per_second() as i64)
            .object("latency_us", Some(latency))
            .finish()
    }

    /// One bordered row (`-w table`): throughput and latency percentiles in milliseconds.
    pub fn to_table(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let row = vec![
            self.workload.to_string(),
            self.requests.to_string(),
            self.errors.to_string(),
            format!("{:.1}", self.requests_per_second()),
            ms(self.latency.quantile(0.5)),
            ms(self.latency.quantile(0.9)),
            ms(self.latency.quantile(0.99)),
            ms(self.latency.quantile(0.999)),
            ms(self.latency.max()),
        ];
        super::table::render(&TABLE_HEADER, &[row])
    }

    pub fn to_text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "Summary ({}):\n  Total:\t{:.4} secs.\n  Requests:\t{}\n  Errors:\t{}\n  Slowest:\t{:.4} ms.\n  Fastest:\t{:.4} ms.\n  Average:\t{:.4} ms.\n  Stddev:\t{:.4} ms.\n  Requests/sec:\t{:.1}\n\nLatency percentiles:\n  50% in {:.4} ms.\n  90% in {:.4} ms.\n  99% in {:.4} ms.\n  99.9% in {:.4} ms.\n",
            self.workload,
            self.elapsed.as_secs_f64(),
            self.requests,
            self.errors,
            ms(self.latency.max()),
            ms(self.latency.min()),
            self.latency.mean() / 1000.0,
            self.latency.stddev() / 1000.0,
            self.requests_per_second(),
            ms(self.latency.quantile(0.5)),
            ms(self.latency.quantile(0.9)),
            ms(self.latency.quantile(0.99)),
            ms(self.latency.quantile(0.999)),
        )
    }
}

/// The columns of `-w table`.
const TABLE_HEADER: [&str; 9] = [
    "WORKLOAD", "REQUESTS", "ERRORS", "REQ/S", "P50 MS", "P90 MS", "P99 MS", "P99.9 MS", "MAX MS",
];

/// One request of the workload, as request number `n`.
async fn one_request(
    workload: &Workload,
    channel: &UnaryChannel,
    n: u64,
    rng: &mut Rng,
) -> Result<(), tonic::Status> {
    match workload {
        Workload::Put { keys, val_size } => {
            let put = PutRequest {
                key: keys.pick(n, rng),
                value: vec![b'v'; *val_size],
                ..Default::default()
            };
            channel
                .unary::<_, PutResponse>("/etcdserverpb.KV/Put", &put)
                .await
                .map(drop)
        }
        Workload::Range {
            keys,
            consistency,
            keys_per_range,
            ..
        } => {
            let (key, range_end) = keys.pick_range(n, *keys_per_range, rng);
            let range = RangeRequest {
                key,
                range_end,
                serializable: *consistency == Consistency::S,
                ..Default::default()
            };
            channel
                .unary::<_, RangeResponse>("/etcdserverpb.KV/Range", &range)
                .await
                .map(drop)
        }
        Workload::TxnPut {
            keys,
            val_size,
            txn_ops,
        } => {
            // Consecutive keys: etcd refuses a transaction that puts one key twice
            // ("duplicate key given in txn request"); etcd's benchmark walks them likewise.
            let success = keys
                .pick_distinct(n, *txn_ops, rng)
                .into_iter()
                .map(|key| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key,
                        value: vec![b'v'; *val_size],
                        ..Default::default()
                    })),
                })
                .collect();
            let txn = TxnRequest {
                success,
                ..Default::default()
            };
            channel
                .unary::<_, TxnResponse>("/etcdserverpb.KV/Txn", &txn)
                .await
                .map(drop)
        }
        Workload::TxnMixed {
            keys,
            val_size,
            read_percent,
            ..
        } => {
            let key = keys.pick(n, rng);
            let op = if rng.next() % 100 < *read_percent {
                request_op::Request::RequestRange(RangeRequest {
                    key,
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestPut(PutRequest {
                    key,
                    value: vec![b'v'; *val_size],
                    ..Default::default()
                })
            };
            let txn = TxnRequest {
                success: vec![RequestOp { request: Some(op) }],
                ..Default::default()
            };
            channel
                .unary::<_, TxnResponse>("/etcdserverpb.KV/Txn", &txn)
                .await
                .map(drop)
        }
        // Streaming workloads run their own loops (`bench_streams`), never one request.
        Workload::Watch { .. } | Workload::LeaseKeepalive { .. } => Err(
            tonic::Status::invalid_argument("a streaming workload has no single request"),
        ),
    }
}

fn workload_name(workload: &Workload) -> &'static str {
    match workload {
        Workload::Put { .. } => "put",
        Workload::Range { .. } => "range",
        Workload::TxnPut { .. } => "txn-put",
        Workload::TxnMixed { .. } => "txn-mixed",
        Workload::Watch { .. } => "watch",
        Workload::LeaseKeepalive { .. } => "lease-keepalive",
    }
}

/// How long a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseLength {
    /// This many requests.
    Requests(u64),
    /// Requests are started until this much time has passed (those in flight then finish).
    Time(Duration),
}

impl PhaseLength {
    /// Whether request number `n`, due to start at `due`, is past the end of the phase.
    fn ended(self, n: u64, started: Instant, due: Instant) -> bool {
        match self {
            PhaseLength::Requests(count) => n >= count,
            PhaseLength::Time(length) => due.saturating_duration_since(started) >= length,
        }
    }
}

/// Runs requests from `clients` concurrent clients for `length`; returns the merged
/// latencies, errors and wall time.
async fn phase(
    workload: Arc<Workload>,
    channels: &[UnaryChannel],
    clients: usize,
    length: PhaseLength,
    rate: u64,
) -> PhaseOutcome {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = progress_bar(Arc::clone(&next), started, length);
    let mut tasks = Vec::new();
    for client_index in 0..clients.max(1) {
        let channel = channels[client_index % channels.len()].clone();
        let (next, workload) = (Arc::clone(&next), Arc::clone(&workload));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (client_index as u64 + 1));
            let (mut latency, mut errors) = (Histogram::default(), 0u64);
            let mut first_error = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // Request n starts no earlier than n / rate seconds into the phase: a timed
                // phase ends with the last request due inside it, not the last one taken.
                let due =
                    (rate > 0).then(|| started + Duration::from_secs_f64(n as f64 / rate as f64));
                if length.ended(n, started, due.unwrap_or_else(Instant::now)) {
                    break;
                }
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                match one_request(&workload, &channel, n, &mut rng).await {
                    Ok(()) => latency
                        .record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert(status);
                    }
                }
            }
            (latency, errors, first_error)
        }));
    }
    let (mut latency, mut errors, mut first_error) = (Histogram::default(), 0, None);
    for task in tasks {
        if let Ok((h, e, first)) = task.await {
            latency.merge(&h);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r{:width$}\r", "", width = PROGRESS_WIDTH + 30);
    }
    PhaseOutcome {
        latency,
        errors,
        first_error,
        elapsed: started.elapsed(),
    }
}

/// What one phase of a run measured.
struct PhaseOutcome {
    latency: Histogram,
    errors: u64,
    /// One failure (the first its client saw), to say why requests failed.
    first_error: Option<tonic::Status>,
    elapsed: Duration,
}

/// Characters of the progress bar.
const PROGRESS_WIDTH: usize = 40;

/// On a terminal, redraws `[#####-----] n/total` (elapsed/length in milliseconds for a
/// timed phase) on standard error every 200 ms until aborted; nothing when standard error is not a
/// terminal (scripts, JSON consumers).
fn progress_bar(
    done: Arc<AtomicU64>,
    started: Instant,
    length: PhaseLength,
) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || length == PhaseLength::Requests(0) {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let (n, total) = match length {
                PhaseLength::Requests(total) => (done.load(Ordering::Relaxed).min(total), total),
                PhaseLength::Time(length) => {
                    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    (ms(started.elapsed().min(length)), ms(length).max(1))
                }
            };
            eprint!("\r{}", progress_line(n, total));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// One frame of the progress bar.
pub fn progress_line(done: u64, total: u64) -> String {
    let filled = (done as f64 / total.max(1) as f64 * PROGRESS_WIDTH as f64) as usize;
    let filled = filled.min(PROGRESS_WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        "-".repeat(PROGRESS_WIDTH - filled)
    )
}

/// Writes every key of the space once (not measured), for read workloads.
async fn preload(
    channels: &[UnaryChannel],
    keys: &KeyArgs,
    val_size: usize,
) -> Result<(), CtlError> {
    let workload = Arc::new(Workload::Put {
        keys: KeyArgs {
            sequential_keys: true,
            ..keys.clone()
        },
        val_size,
    });
    let length = PhaseLength::Requests(keys.key_space_size);
    let outcome = phase(workload, channels, 16, length, 0).await;
    if let Some(status) = outcome.first_error {
        return Err(CtlError::Failed(format!(
            "preloading the key space: {} puts failed, one with: {}",
            outcome.errors,
            status.message()
        )));
    }
    Ok(())
}

pub async fn run(
    args: &BenchArgs,
    global: &GlobalFlags,
    endpoints: &[String],
) -> Result<Report, CtlError> {
    check_args(args)?;
    let conns = args.conns.max(1);
    let streaming = matches!(
        args.workload,
        Workload::Watch { .. } | Workload::LeaseKeepalive { .. }
    );
    if streaming {
        if args.duration.is_some() {
            return Err(CtlError::BadArgs(format!(
                "--duration applies to put, range, txn-put and txn-mixed; {} counts --total",
                workload_name(&args.workload)
            )));
        }
        let mut channels = Vec::new();
        for i in 0..conns {
            let endpoint = &endpoints[i % endpoints.len()];
            let channel =
                connect::connect_for_load(endpoint, global.dial_timeout, global.command_timeout)
                    .await
                    .map_err(|err| CtlError::Unreachable(format!("{endpoint}: {err}")))?;
            channels.push(channel);
        }
        return run_streaming(args, &channels).await;
    }
    let mut channels = Vec::new();
    for i in 0..conns {
        let endpoint = &endpoints[i % endpoints.len()];
        let origin = unary_channel::plain_origin(endpoint).map_err(CtlError::BadArgs)?;
        let dialing = UnaryChannel::connect(origin, global.command_timeout);
        let channel = connect::dial(dialing, global.dial_timeout)
            .await
            .map_err(|err| CtlError::Unreachable(format!("{endpoint}: {err}")))?;
        channels.push(channel);
    }
    match &args.workload {
        Workload::Range {
            keys,
            preload: true,
            ..
        } => preload(&channels, keys, 8).await?,
        Workload::TxnMixed {
            keys,
            val_size,
            preload: true,
            ..
        } => preload(&channels, keys, *val_size).await?,
        _ => {}
    }
    let name = workload_name(&args.workload);
    let workload = Arc::new(args.workload.clone());
    if args.warmup > 0 {
        phase(
            Arc::clone(&workload),
            &channels,
            args.clients,
            PhaseLength::Requests(args.warmup),
            args.rate,
        )
        .await;
    }
    let length = args
        .duration
        .map_or(PhaseLength::Requests(args.total), PhaseLength::Time);
    let outcome = phase(workload, &channels, args.clients, length, args.rate).await;
    if let Some(status) = &outcome.first_error {
        // The report counts them; standard error says why.
        eprintln!(
            "warning: {} requests failed, one with: {}",
            outcome.errors,
            status.message()
        );
    }
    Ok(Report {
        workload: name,
        requests: outcome.latency.count(),
        errors: outcome.errors,
        elapsed: outcome.elapsed,
        latency: outcome.latency,
    })
}

/// Refuses what a run could not honour (etcd's benchmark words where it has a check).
fn check_args(args: &BenchArgs) -> Result<(), CtlError> {
    let bad = |message: String| Err(CtlError::BadArgs(message));
    if args.duration == Some(Duration::ZERO) {
        return bad("expected a positive --duration, got 0s".into());
    }
    match &args.workload {
        Workload::TxnPut { keys, txn_ops, .. } => {
            if keys.key_space_size == 0 {
                return bad("expected positive --key-space-size, got (0)".into());
            }
            if *txn_ops == 0 {
                return bad("expected positive --txn-ops, got (0)".into());
            }
            if *txn_ops > keys.key_space_size {
                return bad(format!(
                    "expected --txn-ops no larger than --key-space-size, got txn-ops({txn_ops}) key-space-size({})",
                    keys.key_space_size
                ));
            }
        }
        Workload::Range {
            keys,
            keys_per_range,
            ..
        } if *keys_per_range == 0 || *keys_per_range > keys.key_space_size.max(1) => {
            return bad(format!(
                "expected --keys-per-range from 1 to --key-space-size ({}), got ({keys_per_range})",
                keys.key_space_size.max(1)
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The watch and keepalive workloads, on tonic's channels (their requests are streams).
async fn run_streaming(args: &BenchArgs, channels: &[Channel]) -> Result<Report, CtlError> {
    match &args.workload {
        Workload::Watch {
            streams,
            watchers_per_stream,
            put_rate,
            val_size,
        } => {
            let load = bench_streams::WatchLoad {
                streams: *streams,
                watchers_per_stream: *watchers_per_stream,
                put_rate: *put_rate,
                puts: args.total,
                val_size: *val_size,
            };
            bench_streams::run_watch(load, channels).await
        }
        Workload::LeaseKeepalive { leases, ttl } => {
            let load = bench_streams::KeepaliveLoad {
                leases: *leases,
                ttl_seconds: *ttl,
                total: args.total,
                clients: args.clients,
            };
            bench_streams::run_keepalive(load, channels).await
        }
        _ => Err(CtlError::BadArgs(format!(
            "{} is not a streaming workload",
            workload_name(&args.workload)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_with_the_requests_done() {
        assert_eq!(progress_line(0, 10), format!("[{}] 0/10", "-".repeat(40)));
        assert_eq!(
            progress_line(5, 10),
            format!("[{}{}] 5/10", "#".repeat(20), "-".repeat(20))
        );
        assert_eq!(progress_line(10, 10), format!("[{}] 10/10", "#".repeat(40)));
    }

    #[test]
    fn runs_that_cannot_be_honoured_are_refused() {
        let args = |workload: Workload, duration: Option<Duration>| BenchArgs {
            workload,
            total: 10,
            duration,
            conns: 1,
            clients: 1,
            rate: 0,
            warmup: 0,
        };
        let keys = |space: u64| KeyArgs {
            key_size: 8,
            key_space_size: space,
            sequential_keys: false,
            key_prefix: String::new(),
        };
        let txn_put = |space: u64, ops: u64| Workload::TxnPut {
            keys: keys(space),
            val_size: 8,
            txn_ops: ops,
        };
        let range = |space: u64, per: u64| Workload::Range {
            keys: keys(space),
            consistency: Consistency::S,
            keys_per_range: per,
            preload: false,
        };
        for (workload, duration) in [
            (txn_put(10, 0), None),
            (txn_put(3, 5), None),
            (txn_put(0, 1), None),
            (range(10, 0), None),
            (range(10, 11), None),
            (txn_put(10, 10), Some(Duration::ZERO)),
        ] {
            assert!(
                matches!(
                    check_args(&args(workload.clone(), duration)),
                    Err(CtlError::BadArgs(_))
                ),
                "{workload:?} {duration:?}"
            );
        }
        for workload in [txn_put(10, 10), range(10, 10), range(10, 1)] {
            assert!(
                check_args(&args(workload.clone(), Some(Duration::from_secs(1)))).is_ok(),
                "{workload:?}"
            );
        }
    }

    #[test]
    fn a_phase_ends_at_its_count_or_its_time() {
        let started = Instant::now();
        let count = PhaseLength::Requests(3);
        assert!(!count.ended(2, started, started + Duration::from_secs(60)));
        assert!(count.ended(3, started, started));
        let timed = PhaseLength::Time(Duration::from_secs(2));
        // A rate-limited request due after the end is not sent, whenever it is taken.
        assert!(timed.ended(5, started, started + Duration::from_secs(3)));
        assert!(!timed.ended(1_000_000, started, started + Duration::from_millis(1999)));
        assert!(timed.ended(0, started, started + Duration::from_secs(2)));
    }

    #[test]
    fn reports_state_their_numbers() {
        let mut latency = Histogram::default();
        for us in [100, 200, 300, 400] {
            latency.record(us);
        }
        let report = Report {
            workload: "put",
            requests: 4,
            errors: 0,
            elapsed: Duration::from_millis(2),
            latency,
        };
        let json = report.to_json();
        assert!(
            json.starts_with(r#"{"workload":"put","requests":4,"errors":0,"#),
            "{json}"
        );
        assert!(json.contains(r#""requests_per_second":2000"#), "{json}");
        assert!(json.contains(r#""p50":200"#), "{json}");
        assert!(report.to_text().contains("Requests/sec:\t2000.0"));
        let table = report.to_table();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 5, "{table}");
        assert!(
            rows[1].contains("WORKLOAD") && rows[1].contains("P99.9 MS"),
            "{table}"
        );
        assert!(
            rows[3].contains(" put |") && rows[3].contains("2000.0") && rows[3].contains("0.200"),
            "{table}"
        );
    }
}
