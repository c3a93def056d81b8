//! Typed errors. Dropped requests are errors the caller must handle, never silent loss.

use crate::message::NodeId;

/// Why a storage read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index is behind the first retained entry (a snapshot covers it).
    #[error("log index {index} is compacted (first retained index {first_index})")]
    Compacted {
        /// Requested index.
        index: u64,
        /// First index still held.
        first_index: u64,
    },
    /// The requested index is past the last entry.
    #[error("log index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// Requested index.
        index: u64,
        /// Last index held.
        last_index: u64,
    },
    /// The backing store failed; the node must stop (a failed fsync is not retried).
    #[error("storage failed: {0}")]
    Io(String),
}

/// Why an encoded membership change could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeDecodeError {
    /// Wrong length.
    #[error("conf change is {len} bytes, expected 10 (version 1) or at least 10 (version 2)")]
    Length {
        /// Actual length.
        len: usize,
    },
    /// Unknown format version.
    #[error("conf change format version {version} not supported (expected 1 or 2)")]
    Version {
        /// Version byte found.
        version: u8,
    },
    /// Unknown operation code.
    #[error("conf change operation {op} unknown")]
    Operation {
        /// Operation byte found.
        op: u8,
    },
    /// Node id 0 is reserved.
    #[error("conf change names node 0, which is reserved")]
    ZeroNodeId,
}

/// Why a proposal, read or administrative request was not taken. The caller learns every drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// No leader is known (election in progress or partitioned); retry later.
    #[error("no leader is known")]
    NoLeader,
    /// This node is not the leader and forwarding is disabled; send it to `leader`.
    #[error("not the leader (leader is {leader})")]
    NotLeader {
        /// The leader to redirect to.
        leader: NodeId,
    },
    /// The leader is handing leadership over and accepts no proposals until it is done.
    #[error("leadership transfer to {target} in progress")]
    TransferInProgress {
        /// The transfer's target.
        target: NodeId,
    },
    /// A membership change is still uncommitted (one change at a time).
    #[error("membership change at index {pending_index} not yet committed")]
    ConfChangeInProgress {
        /// Index of the pending change.
        pending_index: u64,
    },
    /// The leader has not committed an entry of its own term yet, so it cannot yet change
    /// membership or serve reads safely.
    #[error("leader has not committed an entry in its term yet")]
    LeaderNotReady,
    /// The membership change makes no sense against the current configuration.
    #[error("membership change rejected: {0}")]
    InvalidConfChange(String),
    /// A learner lags too far behind to be promoted safely.
    #[error("learner {node} lags {lag_entries} entries behind; not promoted")]
    LearnerBehind {
        /// The learner.
        node: NodeId,
        /// How far behind the leader's last index it is.
        lag_entries: u64,
    },
    /// This node was removed from the configuration.
    #[error("this node is not a member of the configuration")]
    NotMember,
    /// The transfer target cannot lead (unknown, a learner, or already the leader).
    #[error("cannot transfer leadership to {target}: {why}")]
    InvalidTransferTarget {
        /// The requested target.
        target: NodeId,
        /// Why not.
        why: &'static str,
    },
    /// Too many entries are appended but uncommitted (bound: `max_uncommitted_entries`).
    #[error("{uncommitted} entries uncommitted; proposals paused")]
    TooManyUncommitted {
        /// Entries waiting for a quorum.
        uncommitted: u64,
    },
    /// Too many reads are waiting for confirmation (bound: `max_pending_reads`).
    #[error("{pending} reads already pending")]
    TooManyPendingReads {
        /// Reads waiting.
        pending: usize,
    },
    /// The proposal alone is bigger than `max_msg_bytes`, so it could never be replicated.
    #[error("proposal of {bytes} bytes exceeds max_msg_bytes {limit}")]
    ProposalTooLarge {
        /// Proposal size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

/// Everything that can go wrong inside a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request was not accepted; see the reason.
    #[error("dropped: {0}")]
    Dropped(#[from] DropReason),
    /// The configuration is unusable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Storage failed; the node's in-memory state may be partly updated, so drop it and restart
    /// from storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The message is addressed to another node or is malformed.
    #[error("invalid message from {from}: {why}")]
    InvalidMessage {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        why: &'static str,
    },
    /// `ready()` was called again before `advance()` acknowledged the previous one.
    #[error("ready() called while a previous Ready is not yet advanced")]
    ReadyNotAdvanced,
}
