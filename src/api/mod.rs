//! The etcd v3 gRPC services as Cairn serves them. The services are thin: they validate,
//! route reads and writes through the member ([`Member`]), and fill the response header; the
//! semantics live in `crate::kv`, consensus in `crate::server`.

pub mod cluster;
pub mod keepalive;
pub mod kv;
pub mod lease;
pub mod lease_forward;
pub mod maintenance;
pub mod watch;

use crate::mvcc::{Backend, MvccStore};
use crate::proto::cairn::entry::v1::request::Op;
use crate::proto::etcdserverpb::{Member as MemberInfo, ResponseHeader, StatusResponse};
use crate::server::apply::Applied;

/// Limits on client requests, etcd's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--max-request-bytes`: the largest write request consensus takes.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_txn_ops: crate::kv::validate::DEFAULT_MAX_TXN_OPS,
            max_request_bytes: 1536 * 1024,
        }
    }
}

/// What the services need from the member they run on.
#[tonic::async_trait]
pub trait Member: Send + Sync + 'static {
    type Backend: Backend;

    /// Replicates a write and applies it; resolves with its outcome once applied here.
    async fn propose(&self, op: Op) -> Result<Applied, tonic::Status>;

    /// Proposes one of the leader's own lease duties, decided on its clock as the leader of
    /// `leader_term`; it applies only if committed in that term ("leader changed" otherwise).
    async fn propose_as_leader(&self, op: Op, leader_term: u64) -> Result<Applied, tonic::Status>;

    /// Resolves once this member has applied every write acknowledged anywhere before the
    /// call (ReadIndex), so a read after it is linearizable.
    async fn read_barrier(&self) -> Result<(), tonic::Status>;

    /// The key space.
    fn store(&self) -> &MvccStore<Self::Backend>;

    /// Cluster id, member id and the current Raft term, for response headers.
    fn header(&self) -> ResponseHeader;

    fn limits(&self) -> Limits;

    /// This member's status (Maintenance.Status) without the header.
    fn status(&self) -> StatusResponse;

    /// Bytes of the key-space file in use (not free), when the engine can tell; this may
    /// walk the file, so only `Maintenance.Status` asks.
    fn db_size_in_use(&self) -> Option<i64> {
        None
    }

    /// The member's leases.
    fn leases(&self) -> &std::sync::Arc<crate::lease::SharedLeases>;

    /// Where server-chosen lease ids come from.
    fn lease_ids(&self) -> &crate::lease::LeaseIds;

    /// The minimum-TTL rule for this member's Raft timing.
    fn grant_rules(&self) -> crate::lease::GrantRules;

    /// Whether this member leads.
    fn is_leader(&self) -> bool;

    /// The term in which this member keeps lease time: it leads and has applied every entry
    /// committed before its term. None otherwise.
    fn lease_term(&self) -> Option<u64>;

    /// Resolves once the member has stopped: long-lived streams end with it rather than keep
    /// a stopped member (its store, its index) alive after a restart.
    async fn until_stopped(&self) {
        std::future::pending::<()>().await
    }

    /// Hands leadership to member `target` and waits until it leads (Maintenance.MoveLeader,
    /// asked of the leader).
    async fn move_leader(&self, _target: u64) -> Result<(), tonic::Status> {
        Err(tonic::Status::unimplemented(
            "etcdserver: move leader is not supported",
        ))
    }

    /// The leader (another member) and its client URL, when known.
    fn leader_client_url(&self) -> Option<(u64, String)> {
        None
    }

    /// How long a request waits for consensus before it fails as timed out.
    fn request_timeout(&self) -> std::time::Duration;

    /// Every member of the cluster.
    fn members(&self) -> Vec<MemberInfo>;

    /// Whether this member is a learner (it serves only serializable reads and status).
    fn is_learner(&self) -> bool {
        false
    }

    /// MemberAdd, asked of the leader: the new member and the members after the change.
    async fn add_member(
        &self,
        _peer_urls: Vec<String>,
        _is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), tonic::Status> {
        Err(membership_unsupported())
    }

    /// MemberRemove, asked of the leader: the members after the change.
    async fn remove_member(&self, _id: u64) -> Result<Vec<MemberInfo>, tonic::Status> {
        Err(membership_unsupported())
    }

    /// MemberPromote, asked of the leader: the members after the change.
    async fn promote_member(&self, _id: u64) -> Result<Vec<MemberInfo>, tonic::Status> {
        Err(membership_unsupported())
    }

    /// MemberUpdate (new peer URLs): the members after the change.
    async fn update_member(
        &self,
        _id: u64,
        _peer_urls: Vec<String>,
    ) -> Result<Vec<MemberInfo>, tonic::Status> {
        Err(membership_unsupported())
    }
}

fn membership_unsupported() -> tonic::Status {
    tonic::Status::unimplemented("etcdserver: membership changes are not supported here")
}

/// Completes a response header: cluster, member and term from the member; the revision the
/// operation reported, or the current one.
pub fn fill_header<M: Member + ?Sized>(
    member: &M,
    header: Option<ResponseHeader>,
) -> Option<ResponseHeader> {
    let mut full = member.header();
    full.revision = header
        .map(|h| h.revision)
        .filter(|&r| r != 0)
        .unwrap_or_else(|| member.store().newest_revision());
    Some(full)
}
