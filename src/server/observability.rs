//! What the member shows the outside besides gRPC: the `/health` family's facts, the
//! Prometheus metrics, and the tower layer that counts every RPC.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

use super::member::RaftMember;
use crate::api::Member;
use crate::http::{Alarm, HealthSource, ReadProbe};
use crate::metrics::{GrpcMethodSeries, Registry, ServerMetrics};
use crate::mvcc::{KeyRange, RangeOptions};

/// The member's metrics and the registry that renders them.
pub struct Observability {
    pub registry: Registry,
    pub metrics: ServerMetrics,
}

impl Observability {
    pub fn new() -> Result<Arc<Self>, crate::metrics::MetricsError> {
        let registry = Registry::new();
        let metrics = ServerMetrics::register(&registry)?;
        Ok(Arc::new(Observability { registry, metrics }))
    }
}

/// The `/health`, `/livez`, `/readyz` and `/metrics` facts of a running member.
pub struct MemberHealth {
    pub member: Arc<RaftMember>,
    pub observability: Arc<Observability>,
    pub watch_hub: Arc<crate::api::watch::SharedWatchHub>,
}

impl HealthSource for MemberHealth {
    fn alarms(&self) -> Vec<Alarm> {
        Vec::new()
    }

    fn has_leader(&self) -> bool {
        self.member.status().leader != 0
    }

    fn is_learner(&self) -> bool {
        false
    }

    fn read(&self, serializable: bool) -> ReadProbe<'_> {
        Box::pin(async move {
            if !serializable {
                // Always a round: the check is whether the loop answers.
                self.member
                    .read_round()
                    .await
                    .map_err(|status| status.message().to_string())?;
            }
            self.member
                .store()
                .range(
                    &KeyRange::Single(Vec::new()),
                    RangeOptions {
                        limit: 1,
                        ..Default::default()
                    },
                )
                .map(|_| ())
                .map_err(|err| err.to_string())
        })
    }

    fn metrics(&self) -> String {
        let status = self.member.status();
        let metrics = &self.observability.metrics;
        metrics.raft_term.set_u64(status.raft_term);
        metrics.raft_committed_index.set_u64(status.raft_index);
        metrics
            .raft_applied_index
            .set_u64(status.raft_applied_index);
        metrics.has_leader.set_bool(status.leader != 0);
        metrics
            .is_leader
            .set_bool(status.leader == self.member.identity().member_id);
        metrics.db_total_size_bytes.set(status.db_size);
        let (live, counts) = {
            let leases = self.member.leases().state.lock();
            (leases.table().len(), leases.counts)
        };
        metrics
            .lease_live
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        catch_up(&metrics.lease_granted, counts.granted);
        catch_up(&metrics.lease_revoked, counts.revoked);
        catch_up(&metrics.lease_renewed, counts.renewed);
        catch_up(
            &metrics.lease_renewed_from_checkpoint,
            counts.renewed_from_checkpoint,
        );
        catch_up(&metrics.lease_expired, counts.expired);
        let watch = self.watch_hub.hub.lock().stats();
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        metrics.watch_streams.set(gauge(watch.streams));
        metrics.watchers.set(gauge(watch.watchers));
        metrics
            .watch_unsynced_watchers
            .set(gauge(watch.unsynced_watchers));
        metrics
            .watch_buffered_events
            .set(gauge(watch.buffered_events));
        metrics
            .watch_buffered_bytes
            .set(gauge(watch.buffered_bytes));
        catch_up(&metrics.watch_events, watch.events_queued_total);
        catch_up(&metrics.watch_catch_up_reads, watch.catch_up_reads_total);
        catch_up(&metrics.watch_slow_fallbacks, watch.slow_fallbacks_total);
        metrics
            .db_total_size_in_use_bytes
            .set(status.db_size_in_use);
        self.observability.registry.render()
    }

    fn health_checked(&self, healthy: bool) {
        let metrics = &self.observability.metrics;
        if healthy {
            metrics.health_success.inc();
        } else {
            metrics.health_failures.inc();
        }
    }
}

/// Brings a counter up to a total counted elsewhere (counters only grow).
fn catch_up(counter: &crate::metrics::Counter, total: u64) {
    counter.add(total.saturating_sub(counter.get()));
}

/// The gRPC methods served; their metrics exist from the start, as etcd's do.
pub const SERVED_GRPC_PATHS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
];

/// Counts and times every gRPC call by method and status code.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    observability: Arc<Observability>,
    /// The series of each of [`SERVED_GRPC_PATHS`], in its order.
    methods: Arc<[Option<GrpcMethodSeries>]>,
}

impl GrpcMetricsLayer {
    pub fn new(observability: Arc<Observability>) -> Self {
        let methods = SERVED_GRPC_PATHS
            .iter()
            .map(|path| observability.metrics.grpc_method_series(path))
            .collect();
        GrpcMetricsLayer {
            observability,
            methods,
        }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Only methods actually served are counted: a client inventing paths must not be
        // able to grow the metrics without bound.
        let path = request.uri().path();
        let served = SERVED_GRPC_PATHS
            .iter()
            .position(|served| *served == path)
            .filter(|_| {
                request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
            });
        let layer = self.layer.clone();
        if let Some(series) = served.and_then(|index| layer.methods[index].as_ref()) {
            series.record_started();
        }
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            if let Some(series) = served.and_then(|index| layer.methods[index].as_ref()) {
                // Errors come back as trailers-only responses, with the status in the headers;
                // a success's status follows in the trailers, and is OK.
                let code = match &response {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from),
                    Err(_) => tonic::Code::Internal,
                };
                series.record(&layer.observability.metrics, code, started.elapsed());
            }
            response
        })
    }
}
