//! etcd's `hasleader` request metadata: a client that sends `hasleader: true` asks for its
//! request to fail fast with `etcdserver: no leader` when the member it reached knows no
//! leader (cut off from the cluster), instead of waiting out the request timeout. Watch
//! clients rely on it to move to another member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tonic::codegen::http;

use super::request_gate::Gate;

/// The metadata key and the value that asks for a leader.
const HAS_LEADER_KEY: &str = "hasleader";
const HAS_LEADER_REQUIRED: &[u8] = b"true";

/// Refuses requests that ask for a leader when there is none; `leader` is the member's
/// published leader id (0: none).
#[derive(Clone)]
pub struct RequireLeader {
    pub leader: Arc<AtomicU64>,
}

impl Gate for RequireLeader {
    fn refusal(&self, _path: &str, headers: &http::HeaderMap) -> Option<tonic::Status> {
        let wants_leader = headers
            .get(HAS_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == HAS_LEADER_REQUIRED);
        (wants_leader && self.leader.load(Ordering::Relaxed) == 0)
            .then(|| tonic::Status::unavailable("etcdserver: no leader"))
    }
}
