//! The member: Raft driven over the WAL, committed entries applied to the key space, and the
//! client-facing services on top.

pub mod apply;
pub mod boot;
pub mod client_accept;
pub mod client_fallback;
pub mod client_h2;
pub mod dial_source;
pub mod identity;
pub mod idle_poll;
pub mod join;
pub mod learner_gate;
pub mod lease_duties;
pub mod log_snapshot;
pub mod member;
pub mod member_changes;
pub mod member_snapshots;
pub mod observability;
pub mod peer_codec;
pub mod peer_transport;
pub mod raft_log;
pub mod raft_loop;
pub mod read_queue;
pub mod reconfig_check;
pub mod registry;
pub mod request_gate;
pub mod require_leader;
pub mod snapshot_file;
pub mod snapshot_receive;
pub mod snapshot_retry;
pub mod snapshot_send;
pub mod sole_voter;
pub mod store_checkpoint;
pub mod unary_kv;
