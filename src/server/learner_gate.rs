//! A learner serves only what etcd lets a learner serve: `Maintenance.Status` and
//! serializable `KV.Range` (the KV service refuses a linearizable one itself, as the flag is
//! inside the request). Everything else, streams included, is refused with etcd's
//! `etcdserver: rpc not supported for learner`, so clients move to a voting member.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::codegen::http;

use super::request_gate::Gate;

/// The methods a learner answers.
const LEARNER_PATHS: &[&str] = &["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"];

pub fn not_supported_for_learner() -> tonic::Status {
    tonic::Status::unavailable("etcdserver: rpc not supported for learner")
}

/// Refuses what a learner does not serve; `learner` is the member's published learner flag.
#[derive(Clone)]
pub struct LearnerGate {
    pub learner: Arc<AtomicBool>,
}

impl Gate for LearnerGate {
    fn refusal(&self, path: &str, _headers: &http::HeaderMap) -> Option<tonic::Status> {
        // Plain HTTP (/health, /metrics, /version) is not gRPC and stays open.
        let grpc = path.starts_with("/etcdserverpb.") || path.starts_with("/v3");
        (grpc && self.learner.load(Ordering::Relaxed) && !LEARNER_PATHS.contains(&path))
            .then(not_supported_for_learner)
    }
}
