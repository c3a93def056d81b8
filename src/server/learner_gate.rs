//! A learner serves only what etcd lets a learner serve: `Maintenance.Status` and
//! serializable `KV.Range` (the KV service refuses a linearizable one itself, as the flag is
//! inside the request). Everything else, streams included, is refused with etcd's
//! `etcdserver: rpc not supported for learner`, so clients move to a voting member.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;

/// The methods a learner answers.
const LEARNER_PATHS: &[&str] = &["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"];

pub fn not_supported_for_learner() -> tonic::Status {
    tonic::Status::unavailable("etcdserver: rpc not supported for learner")
}

/// Wraps the client gRPC services; `learner` is the member's published learner flag.
#[derive(Clone)]
pub struct LearnerGateLayer {
    pub learner: Arc<AtomicBool>,
}

impl<S> tower_layer::Layer<S> for LearnerGateLayer {
    type Service = LearnerGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LearnerGate {
            inner,
            learner: Arc::clone(&self.learner),
        }
    }
}

#[derive(Clone)]
pub struct LearnerGate<S> {
    inner: S,
    learner: Arc<AtomicBool>,
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for LearnerGate<S>
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
        let path = request.uri().path();
        // Plain HTTP (/health, /metrics, /version) is not gRPC and stays open.
        let grpc = path.starts_with("/etcdserverpb.") || path.starts_with("/v3");
        if grpc && self.learner.load(Ordering::Relaxed) && !LEARNER_PATHS.contains(&path) {
            let refused = not_supported_for_learner().into_http::<R>();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}
