//! The member: Raft driven over the WAL, committed entries applied to the key space, and the
//! client-facing services on top.

pub mod apply;
pub mod boot;
pub mod identity;
pub mod lease_duties;
pub mod member;
pub mod observability;
pub mod peer_codec;
pub mod peer_transport;
pub mod raft_log;
pub mod require_leader;
