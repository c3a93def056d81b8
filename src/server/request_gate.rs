//! A tower layer that refuses client gRPC requests before they reach a service, when a
//! [`Gate`] says so (no leader while the client asked for one; a learner asked for what only
//! voters serve). The refusal is an ordinary gRPC status, as etcd's interceptors send.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;

/// Decides, from a request's path and headers, whether it is refused.
pub trait Gate: Clone + Send + Sync + 'static {
    fn refusal(&self, path: &str, headers: &http::HeaderMap) -> Option<tonic::Status>;
}

/// Wraps the client services with `gate`.
#[derive(Clone)]
pub struct GateLayer<G>(pub G);

impl<S, G: Gate> tower_layer::Layer<S> for GateLayer<G> {
    type Service = Gated<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S, G, B, R> tonic::codegen::Service<http::Request<B>> for Gated<S, G>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
    G: Gate,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(status) = self.gate.refusal(request.uri().path(), request.headers()) {
            let refused = status.into_http::<R>();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}
