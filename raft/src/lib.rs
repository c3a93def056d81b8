//! # cairn-raft
//!
//! Raft consensus as a value: a pure, deterministic state machine that does no I/O and reads no
//! clock. The caller ticks it, feeds it messages from peers and proposals from clients, and
//! carries out what it asks for in its output: entries and hard state to persist, messages to
//! send, committed entries to apply, snapshots to install. Because nothing inside touches a
//! socket, a file or a clock, every behaviour can be replayed exactly in a simulation from a
//! seed.
//!
//! The crate will provide leader election with Pre-Vote and Check-Quorum, log replication with
//! fast backtracking and bounded pipelining, snapshots, ReadIndex reads, learners, membership
//! change and leadership transfer. The server (`cairn`) is the only place that turns its output
//! into WAL appends, network sends and applies; this crate knows nothing of etcd, of the WAL or
//! of the storage engine.
//!
//! Status: the state machine is being built (see the cairn-raft issue).
