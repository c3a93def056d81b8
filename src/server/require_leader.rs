//! etcd's `hasleader` request metadata: a client that sends `hasleader: true` asks for its
//! request to fail fast with `etcdserver: no leader` when the member it reached knows no
//! leader (cut off from the cluster), instead of waiting out the request timeout. Watch
//! clients rely on it to move to another member.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;

/// The metadata key and the value that asks for a leader.
const HAS_LEADER_KEY: &str = "hasleader";
const HAS_LEADER_REQUIRED: &[u8] = b"true";

/// Wraps the client services; `leader` is the member's published leader id (0: none).
#[derive(Clone)]
pub struct RequireLeaderLayer {
    pub leader: Arc<AtomicU64>,
}

impl<S> tower_layer::Layer<S> for RequireLeaderLayer {
    type Service = RequireLeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLeader {
            inner,
            leader: Arc::clone(&self.leader),
        }
    }
}

#[derive(Clone)]
pub struct RequireLeader<S> {
    inner: S,
    leader: Arc<AtomicU64>,
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for RequireLeader<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let wants_leader = request
            .headers()
            .get(HAS_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == HAS_LEADER_REQUIRED);
        if wants_leader && self.leader.load(Ordering::Relaxed) == 0 {
            let refused = tonic::Status::unavailable("etcdserver: no leader").into_http::<R>();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}
