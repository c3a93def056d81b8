//! Every metric family the server records, declared in one place, with etcd's names exported
//! beside Cairn's where the meaning is the same, so dashboards and alerts built for etcd work.

use std::time::Duration;

use super::grpc::{grpc_code_name, GrpcMethod, ALL_GRPC_CODES};
use super::{Buckets, Counter, Family, Gauge, Histogram, MetricsError, Registry};
use crate::version::ETCD_SERVER_VERSION;

/// Upper bounds of the gRPC latency buckets, in seconds: the Prometheus client default that
/// go-grpc-prometheus (and so etcd's `grpc_server_handling_seconds`) uses.
const GRPC_LATENCY_BOUNDS_SECONDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// etcd's disk histograms: 14 buckets doubling from 1 ms to 8.192 s.
const DISK_LATENCY_FIRST_BOUND_SECONDS: f64 = 0.001;
const DISK_LATENCY_BUCKET_COUNT: usize = 14;

/// Handles to the server's metrics. Create once per process with [`ServerMetrics::register`];
/// clone the fields into the code that records.
#[derive(Clone)]
pub struct ServerMetrics {
    /// `cairn_grpc_requests_total{code,method}`: completed RPCs by method (`Range`, `Put`, …)
    /// and gRPC status code name (`OK`, `InvalidArgument`, …).
    pub grpc_requests: Family<Counter>,
    /// `cairn_grpc_request_duration_seconds{method}`.
    pub grpc_request_duration: Family<Histogram>,
    /// etcd's (go-grpc-prometheus') `grpc_server_started_total{grpc_method,grpc_service,grpc_type}`.
    pub grpc_started: Family<Counter>,
    /// etcd's `grpc_server_handled_total{grpc_code,grpc_method,grpc_service,grpc_type}`.
    pub grpc_handled: Family<Counter>,
    /// `cairn_wal_fsync_duration_seconds` (etcd: `etcd_disk_wal_fsync_duration_seconds`).
    pub wal_fsync_duration: Histogram,
    /// `cairn_btree_commit_duration_seconds` (etcd: `etcd_disk_backend_commit_duration_seconds`).
    pub btree_commit_duration: Histogram,
    /// `cairn_db_total_size_in_bytes` (etcd: `etcd_mvcc_db_total_size_in_bytes`).
    pub db_total_size_bytes: Gauge,
    /// `cairn_db_total_size_in_use_in_bytes` (etcd: `etcd_mvcc_db_total_size_in_use_in_bytes`).
    pub db_total_size_in_use_bytes: Gauge,
    /// `cairn_raft_term`.
    pub raft_term: Gauge,
    /// `cairn_raft_committed_index` (etcd: `etcd_server_proposals_committed_total`, which is
    /// this gauge in etcd too).
    pub raft_committed_index: Gauge,
    /// `cairn_raft_applied_index` (etcd: `etcd_server_proposals_applied_total`, a gauge).
    pub raft_applied_index: Gauge,
    /// `cairn_server_is_leader` (etcd: `etcd_server_is_leader`), 1 or 0.
    pub is_leader: Gauge,
    /// `cairn_server_has_leader` (etcd: `etcd_server_has_leader`), 1 or 0.
    pub has_leader: Gauge,
    /// `cairn_server_leader_changes_seen_total` (etcd: `etcd_server_leader_changes_seen_total`).
    pub leader_changes_seen: Counter,
    /// `cairn_server_proposals_committed_total`: this member's proposals that committed.
    pub proposals_committed: Counter,
    /// `cairn_server_proposals_failed_total` (etcd: `etcd_server_proposals_failed_total`).
    pub proposals_failed: Counter,
    /// `cairn_server_health_success_total` (etcd: `etcd_server_health_success`).
    pub health_success: Counter,
    /// `cairn_server_health_failures_total` (etcd: `etcd_server_health_failures`).
    pub health_failures: Counter,
    /// `cairn_watch_streams` (etcd: `etcd_debugging_mvcc_watch_stream_total`, a gauge).
    pub watch_streams: Gauge,
    /// `cairn_watchers` (etcd: `etcd_debugging_mvcc_watcher_total`, a gauge).
    pub watchers: Gauge,
    /// `cairn_watch_unsynced_watchers` (etcd: `etcd_debugging_mvcc_slow_watcher_total`):
    /// watchers catching up from storage.
    pub watch_unsynced_watchers: Gauge,
    /// `cairn_watch_buffered_events`: events queued for streams, not yet sent.
    pub watch_buffered_events: Gauge,
    /// `cairn_watch_buffered_bytes`: the memory those queued responses take, encoded.
    pub watch_buffered_bytes: Gauge,
    /// `cairn_watch_events_total`: events handed to watch streams.
    pub watch_events: Counter,
    /// `cairn_watch_catch_up_reads_total`: storage reads by watchers catching up.
    pub watch_catch_up_reads: Counter,
    /// `cairn_watch_slow_fallbacks_total`: times a watcher fell behind a full stream buffer.
    pub watch_slow_fallbacks: Counter,
    /// `cairn_lease_live`: leases that exist now.
    pub lease_live: Gauge,
    /// `cairn_lease_granted_total` (etcd: `etcd_debugging_lease_granted_total`).
    pub lease_granted: Counter,
    /// `cairn_lease_revoked_total` (etcd: `etcd_debugging_lease_revoked_total`), expiries
    /// included.
    pub lease_revoked: Counter,
    /// `cairn_lease_renewed_total` (etcd: `etcd_debugging_lease_renewed_total`): keepalives
    /// this member granted as leader.
    pub lease_renewed: Counter,
    /// `cairn_lease_renewed_from_checkpoint_total`: of those, the ones a checkpoint already
    /// in the log covered (answered without waiting for one of their own).
    pub lease_renewed_from_checkpoint: Counter,
    /// `cairn_lease_expired_total`: leases this member, as leader, found run out.
    pub lease_expired: Counter,
}

impl ServerMetrics {
    /// Registers every family (and the etcd aliases) in `registry`. Fails only if a name is
    /// already taken there.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let disk_buckets = Buckets::exponential(
            DISK_LATENCY_FIRST_BOUND_SECONDS,
            2.0,
            DISK_LATENCY_BUCKET_COUNT,
        )?;
        let grpc_buckets = Buckets::new(&GRPC_LATENCY_BOUNDS_SECONDS)?;
        let r = registry;
        let metrics = Self {
            grpc_requests: r.family(
                "cairn_grpc_requests_total",
                "Total number of gRPC requests completed, by method and status code.",
                &["code", "method"],
                (),
            )?,
            grpc_request_duration: r.family(
                "cairn_grpc_request_duration_seconds",
                "Latency of gRPC requests from receipt to response, by method.",
                &["method"],
                grpc_buckets,
            )?,
            grpc_started: r.family(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_method", "grpc_service", "grpc_type"],
                (),
            )?,
            grpc_handled: r.family(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
                (),
            )?,
            wal_fsync_duration: r.histogram(
                "cairn_wal_fsync_duration_seconds",
                "Latency of the WAL's fsyncs (one covers every append waiting at that moment).",
                &disk_buckets,
            )?,
            btree_commit_duration: r.histogram(
                "cairn_btree_commit_duration_seconds",
                "Latency of B+tree write-transaction commits, fsync included.",
                &disk_buckets,
            )?,
            db_total_size_bytes: r.gauge(
                "cairn_db_total_size_in_bytes",
                "Size of the B+tree file physically allocated, in bytes.",
            )?,
            db_total_size_in_use_bytes: r.gauge(
                "cairn_db_total_size_in_use_in_bytes",
                "Size of the B+tree file logically in use (not free pages), in bytes.",
            )?,
            raft_term: r.gauge("cairn_raft_term", "The current Raft term.")?,
            raft_committed_index: r.gauge(
                "cairn_raft_committed_index",
                "The highest Raft log index known to be committed.",
            )?,
            raft_applied_index: r.gauge(
                "cairn_raft_applied_index",
                "The highest Raft log index applied to the key space.",
            )?,
            is_leader: r.gauge(
                "cairn_server_is_leader",
                "Whether this member is the Raft leader: 1 if it is, 0 otherwise.",
            )?,
            has_leader: r.gauge(
                "cairn_server_has_leader",
                "Whether this member knows a Raft leader: 1 if it does, 0 otherwise.",
            )?,
            leader_changes_seen: r.counter(
                "cairn_server_leader_changes_seen_total",
                "The number of leader changes this member has seen.",
            )?,
            proposals_committed: r.counter(
                "cairn_server_proposals_committed_total",
                "The number of proposals from this member that committed.",
            )?,
            proposals_failed: r.counter(
                "cairn_server_proposals_failed_total",
                "The number of proposals from this member that failed.",
            )?,
            watch_streams: r.gauge("cairn_watch_streams", "The number of open watch streams.")?,
            watchers: r.gauge("cairn_watchers", "The number of watchers on all streams.")?,
            watch_unsynced_watchers: r.gauge(
                "cairn_watch_unsynced_watchers",
                "The number of watchers behind the current revision, catching up from storage.",
            )?,
            watch_buffered_events: r.gauge(
                "cairn_watch_buffered_events",
                "Events queued for watch streams and not yet sent (bounded per stream).",
            )?,
            watch_buffered_bytes: r.gauge(
                "cairn_watch_buffered_bytes",
                "Encoded bytes of the watch responses queued and not yet sent.",
            )?,
            watch_events: r.counter(
                "cairn_watch_events_total",
                "The number of events handed to watch streams (live and catch-up).",
            )?,
            watch_catch_up_reads: r.counter(
                "cairn_watch_catch_up_reads_total",
                "The number of storage reads made by watchers catching up.",
            )?,
            watch_slow_fallbacks: r.counter(
                "cairn_watch_slow_fallbacks_total",
                "The number of times a watcher fell behind because its stream's buffer was full.",
            )?,
            lease_live: r.gauge("cairn_lease_live", "The number of leases that exist.")?,
            lease_granted: r.counter(
                "cairn_lease_granted_total",
                "The number of leases granted (applied on this member).",
            )?,
            lease_revoked: r.counter(
                "cairn_lease_revoked_total",
                "The number of leases revoked, expired ones included (applied on this member).",
            )?,
            lease_renewed: r.counter(
                "cairn_lease_renewed_total",
                "The number of keepalives this member granted as leader.",
            )?,
            lease_renewed_from_checkpoint: r.counter(
                "cairn_lease_renewed_from_checkpoint_total",
                "The number of keepalives granted as leader that a checkpoint already in the log covered.",
            )?,
            lease_expired: r.counter(
                "cairn_lease_expired_total",
                "The number of leases this member, as leader, found run out and revoked.",
            )?,
            health_success: r.counter(
                "cairn_server_health_success_total",
                "The number of /health checks that passed.",
            )?,
            health_failures: r.counter(
                "cairn_server_health_failures_total",
                "The number of /health checks that failed.",
            )?,
        };
        metrics.register_etcd_aliases(registry)?;
        Ok(metrics)
    }

    /// etcd 3.5's names and HELP texts for the same values (HELP copied from etcd's /metrics, so
    /// that tools comparing metadata see no difference).
    fn register_etcd_aliases(&self, r: &Registry) -> Result<(), MetricsError> {
        r.alias(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &self.wal_fsync_duration,
        )?;
        r.alias(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            &self.btree_commit_duration,
        )?;
        r.alias(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            &self.db_total_size_bytes,
        )?;
        r.alias(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            &self.db_total_size_in_use_bytes,
        )?;
        r.alias(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            &self.has_leader,
        )?;
        r.alias(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            &self.is_leader,
        )?;
        r.alias(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            &self.leader_changes_seen,
        )?;
        r.alias(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            &self.raft_committed_index,
        )?;
        r.alias(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            &self.raft_applied_index,
        )?;
        r.alias(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            &self.proposals_failed,
        )?;
        r.alias(
            "etcd_server_health_success",
            "The total number of successful health checks",
            &self.health_success,
        )?;
        r.alias(
            "etcd_server_health_failures",
            "The total number of failed health checks",
            &self.health_failures,
        )?;
        r.alias(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams.",
            &self.watch_streams,
        )?;
        r.alias(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            &self.watchers,
        )?;
        r.alias(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            &self.watch_unsynced_watchers,
        )?;
        r.alias(
            "etcd_debugging_lease_granted_total",
            "The total number of granted leases.",
            &self.lease_granted,
        )?;
        r.alias(
            "etcd_debugging_lease_revoked_total",
            "The total number of revoked leases.",
            &self.lease_revoked,
        )?;
        r.alias(
            "etcd_debugging_lease_renewed_total",
            "The number of renewed leases seen by the leader.",
            &self.lease_renewed,
        )?;
        r.alias(
            "etcd_debugging_server_lease_expired_total",
            "The total number of expired leases.",
            &self.lease_expired,
        )?;
        let version: Family<Gauge> = r.family(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            &["server_version"],
            (),
        )?;
        version.with(&[ETCD_SERVER_VERSION]).set(1);
        Ok(())
    }

    /// Records the start of an RPC; `path` as in the request (`/etcdserverpb.KV/Range`). Paths
    /// that are not `/<service>/<method>` are ignored.
    pub fn grpc_started(&self, path: &str) {
        if let Some(rpc) = GrpcMethod::from_path(path) {
            self.grpc_started_series(&rpc).inc();
        }
    }

    /// Records a completed RPC: its outcome and how long it took from receipt to response.
    pub fn observe_grpc(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        if let Some(rpc) = GrpcMethod::from_path(path) {
            self.grpc_outcome_series(&rpc, code).record(elapsed);
        }
    }

    /// The handle a served method's calls record through: its labels are looked up once,
    /// not on every call (four allocations and hash lookups a call; in a profile of small
    /// reads the lookups were 3-4% of the server's time, below what an A/B run resolves).
    pub fn grpc_method_series(&self, path: &'static str) -> Option<GrpcMethodSeries> {
        let rpc = GrpcMethod::from_path(path)?;
        Some(GrpcMethodSeries {
            rpc,
            started: self.grpc_started_series(&rpc),
            ok: std::sync::OnceLock::new(),
        })
    }

    fn grpc_started_series(&self, rpc: &GrpcMethod) -> Counter {
        self.grpc_started
            .with(&[rpc.method, rpc.service, rpc.grpc_type()])
    }

    /// The one place that names the series a completed call of `rpc` with `code` records.
    fn grpc_outcome_series(&self, rpc: &GrpcMethod, code: tonic::Code) -> GrpcOutcomeSeries {
        let code = grpc_code_name(code);
        GrpcOutcomeSeries {
            requests: self.grpc_requests.with(&[code, rpc.method]),
            duration: self.grpc_request_duration.with(&[rpc.method]),
            handled: self
                .grpc_handled
                .with(&[code, rpc.method, rpc.service, rpc.grpc_type()]),
        }
    }

    /// Creates `path`'s etcd-named series at zero for every status code, as etcd does for each
    /// method it serves, so that rates and error ratios exist before the first request.
    pub fn preregister_grpc(&self, path: &str) {
        let Some(rpc) = GrpcMethod::from_path(path) else {
            return;
        };
        let kind = rpc.grpc_type();
        self.grpc_started.with(&[rpc.method, rpc.service, kind]);
        for code in ALL_GRPC_CODES {
            self.grpc_handled
                .with(&[grpc_code_name(code), rpc.method, rpc.service, kind]);
        }
    }
}

/// One served method's series (see [`ServerMetrics::grpc_method_series`]).
pub struct GrpcMethodSeries {
    rpc: GrpcMethod<'static>,
    started: Counter,
    /// Created by the first call that succeeds, as [`ServerMetrics::observe_grpc`] would.
    ok: std::sync::OnceLock<GrpcOutcomeSeries>,
}

impl GrpcMethodSeries {
    /// As [`ServerMetrics::grpc_started`].
    pub fn record_started(&self) {
        self.started.inc();
    }

    /// As [`ServerMetrics::observe_grpc`].
    pub fn record(&self, metrics: &ServerMetrics, code: tonic::Code, elapsed: Duration) {
        if code == tonic::Code::Ok {
            self.ok
                .get_or_init(|| metrics.grpc_outcome_series(&self.rpc, code))
                .record(elapsed);
        } else {
            metrics.grpc_outcome_series(&self.rpc, code).record(elapsed);
        }
    }
}

/// What a completed call of one method with one status code records.
#[derive(Clone)]
struct GrpcOutcomeSeries {
    requests: Counter,
    duration: Histogram,
    handled: Counter,
}

impl GrpcOutcomeSeries {
    fn record(&self, elapsed: Duration) {
        self.requests.inc();
        self.duration.observe_duration(elapsed);
        self.handled.inc();
    }
}
