//! # cairn-raft
//!
//! Raft consensus as a value: a pure, deterministic state machine that does no I/O and reads no
//! clock. The caller ticks it, feeds it messages from peers and proposals from clients, and
//! carries out what it asks for in its [`Ready`] output: entries and hard state to persist,
//! messages to send, committed entries to apply, snapshots to install, reads to serve. Because
//! nothing inside touches a socket, a file or a clock, every behaviour replays exactly in a
//! simulation from a seed (see `tests/simulation.rs`: `CAIRN_RAFT_SEED=<n>` replays one seed,
//! `CAIRN_RAFT_SEEDS=<n>` runs many).
//!
//! ## Input API
//! - [`RaftNode::tick`] — one unit of logical time (elections, heartbeats, check-quorum).
//! - [`RaftNode::step`] — one [`Message`] from a peer.
//! - [`RaftNode::propose`] — a command; returns [`Proposed::Appended`] with its index and term
//!   (leader), [`Proposed::Forwarded`] (follower, forwarding on), or an [`Error::Dropped`] with
//!   the [`DropReason`]: no leader, not leader with forwarding off, a leadership transfer in
//!   progress, too large. A proposal is never lost silently at this boundary; once appended,
//!   the caller learns its fate by the entry at its index in `committed_entries` (same term:
//!   committed; other term: lost, retry).
//! - [`RaftNode::propose_conf_change`], [`RaftNode::transfer_leader`],
//!   [`RaftNode::read_index`], [`RaftNode::report_snapshot`], [`RaftNode::report_unreachable`].
//!
//! ## Output and persistence
//! [`RaftNode::ready`] returns a [`Ready`]; the caller does it and calls
//! [`RaftNode::advance`]. Messages are split in two: `messages` may go out at once (a
//! leader's appends are sent to followers while its own write is in progress), while
//! `persisted_messages` (vote grants, append/heartbeat acknowledgements) may only go out once
//! the Ready's hard state and entries are durable, because they promise durability. The
//! leader counts its own log toward the commit quorum only up to what `advance` reported
//! durable, and a candidate counts its own vote only once its new term and vote are durable.
//! Committed entries are handed out only once they are durable locally.
//!
//! ## Bootstrapping and restart
//! A new cluster's founding members start from identical logs whose entries `1..=n` add each
//! founding voter (term 1, committed): see [`MemStorage::new_bootstrapped`]. A member that
//! joins later starts with an empty log and learns the configuration by replication like any
//! other entry (or from a snapshot). On restart, [`RaftNode::new`] rebuilds the configuration
//! from the snapshot's and the conf-change entries after it, and resumes applying after
//! `Config::applied`.
//!
//! ## Storage
//! [`Storage`] is the caller's durable log (the server backs it with cairn-wal);
//! [`MemStorage`] is an in-memory implementation for tests. Raft only reads through it; the
//! caller writes what `Ready` asks. The caller compacts the log itself, behind its applied
//! index, after taking a snapshot; a follower whose next entry was compacted away is sent a
//! `Snapshot` message holding only the [`SnapshotMeta`] — moving the bytes (chunked, see
//! `SnapshotChunk` in the peer protocol) is the caller's job, and it reports the outcome with
//! [`RaftNode::report_snapshot`]. An unreported snapshot is presumed lost after about two
//! election timeouts.
//!
//! ## On-disk formats
//! Raft itself writes nothing. The one byte format it defines is the payload of a
//! membership-change entry (`EntryKind::ConfChange`), stored by the caller's log:
//!
//! | offset | size | field                                                  |
//! |--------|------|--------------------------------------------------------|
//! | 0      | 1    | format version: 1 bare, 2 with context                 |
//! | 1      | 1    | operation: 1 add voter, 2 add learner, 3 remove node   |
//! | 2      | 8    | node id, little endian, non-zero                       |
//! | 10     | rest | version 2 only: the caller's context, opaque to raft   |
//!
//! Version 1 is exactly 10 bytes; version 2 is at least 10. Both are read.
//!
//! It carries no checksum of its own: the WAL frames and checksums every entry. Decoding
//! rejects a version 1 entry of any other length, a shorter one, any other version, operation or node id 0 with a typed error; an entry
//! that does not decode changes nothing, on every node alike.
//!
//! ## Messages
//! [`Message`] mirrors `RaftMessage` of `proto/cairn/peer/v1/peer.proto` field by field.
//! One kind is not in peer.proto v1 yet: [`MessageKind::Propose`] (a follower forwarding a
//! client proposal to the leader in `entries`); `Propose`, `ReadIndex` and `TransferLeader`
//! carry term 0 because they are requests to whoever leads, not part of a term's protocol.
//! `TransferLeader` names its target in `index`. Heartbeats carry their read round as 8
//! little-endian bytes in `context`; vote requests of a forced (transfer) election carry
//! [`CAMPAIGN_TRANSFER`].
//!
//! ## Bounds
//! `max_msg_bytes` (entries per append), `max_inflight_msgs` (pipelined appends per
//! follower), `max_apply_bytes` (committed entries per `Ready`), `max_uncommitted_entries`
//! (leader drops proposals beyond it), `max_pending_reads` (reads awaiting confirmation),
//! 64 remembered heartbeat rounds for lease timing.
//!
//! ## Protocol features
//! - Elections with randomized timeouts in `[election_timeout_ticks, 2x)`, Pre-Vote (a node
//!   returning from a partition cannot depose a healthy leader), Check-Quorum (a leader that
//!   has not heard from a quorum for an election timeout steps down; followers that hear a
//!   leader ignore vote requests for an election timeout).
//! - Replication with the consistency check; fast backtracking (the follower's rejection names
//!   the last index whose term is not above the leader's probe term, and the leader does the
//!   same on its side, so each round trip skips at least a whole term); per-follower Probe /
//!   Replicate / Snapshot states with a bounded in-flight window (`max_inflight_msgs`) and a
//!   per-message limit (`max_msg_bytes`).
//! - Commit by counting only entries of the leader's term (Figure 8).
//! - Reads: ReadIndex with batched heartbeat rounds; optional lease reads
//!   ([`ReadMode::LeaseBased`]), honoured only with Check-Quorum. **Clock assumption of lease
//!   reads**: all nodes' ticks advance at the same rate up to `lease_clock_drift_ticks` per
//!   election timeout. A follower that received the heartbeat of a quorum-confirmed round
//!   refuses votes for `election_timeout_ticks` of its ticks after receipt, which is after the
//!   leader sent it; so no other leader can exist until `election_timeout_ticks -
//!   lease_clock_drift_ticks` leader ticks after the send. A paused leader process (SIGSTOP)
//!   does not break this because its tick counter pauses too, but a caller that feeds ticks
//!   late in a burst, or a host whose clock runs slow by more than the drift bound, does:
//!   use `Safe` unless the clock bound holds. Lease reads are off for the rest of a term once
//!   a `TimeoutNow` was sent (the forced election ignores follower leases). In lease mode a
//!   (re)started node also refuses votes for its first election timeout, since before a crash
//!   it may have acknowledged a leader whose lease still runs.
//! - Membership: see below. Learners receive the log but never vote and never campaign.
//!   Leadership transfer: the leader stops taking proposals, catches the target up, then
//!   sends `TimeoutNow`; abandoned after one election timeout.
//!
//! ## Membership: single-server changes, not joint consensus
//! Cairn changes membership one server at a time: add a learner, promote a learner to voter,
//! or remove a member. Any two majorities of configurations differing by one voter overlap, so
//! no joint phase is needed; the server needs nothing more than etcd's member add / promote /
//! remove, which are all single-server changes. It is simpler to get right: one
//! configuration in force at a time, taken from the log as soon as an entry is appended
//! (reverted if the entry is truncated). The safety conditions (thesis §4.1 and the 2015
//! erratum) are enforced by the leader: at most one uncommitted change, and no change until
//! the leader has committed an entry of its own term. A removed leader keeps replicating
//! without counting itself until the removal commits, then steps down. Promotion requires
//! the learner to be within `max_promotion_lag_entries` of the leader.

//!
//! ## How it is tested
//! - `tests/simulation.rs` (+ `tests/sim/`): seeded whole-cluster simulation in a hostile
//!   network with crashes, compaction, membership changes, transfers, proposals and reads;
//!   invariants checked continuously, liveness after healing. 10,000 seeds by default.
//! - `tests/rules.rs`: one test per paper/thesis rule (Figure 8, durable self-vote, Pre-Vote,
//!   Check-Quorum and leader stickiness, fast backtracking, in-flight window and message size,
//!   leader self-count after persistence, snapshots, drop reasons, ReadIndex batching, lease
//!   reads, learners and promotion, one change at a time, removed leader, transfer).
//! - `tests/hostile_input.rs`: arbitrary messages never panic a node.
//! - unit and proptest model tests next to the code (log search and append, unstable tail,
//!   progress pacing, quorum arithmetic, read queue, storage, conf-change encoding).
//! - `examples/bench.rs`: throughput of the state machine alone.

mod config;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod read_index;
mod ready;
mod reconfigure;
mod replication;
mod status;
mod storage;
mod transfer;
mod unstable;

pub use config::{Config, ReadMode};
pub use error::{ConfChangeDecodeError, DropReason, Error, StorageError};
pub use message::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageKind, NodeId, SnapshotMeta,
    CAMPAIGN_TRANSFER, CONF_CHANGE_FORMAT_VERSION, NO_NODE,
};
pub use node::{Proposed, RaftNode, Role};
pub use progress::{Inflights, Progress, ProgressState};
pub use read_index::ReadState;
pub use ready::Ready;
pub use status::{PeerStatus, Status};
pub use storage::{MemStorage, Storage};
