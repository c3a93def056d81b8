//! Watch: etcd's streaming change feed, as a deterministic hub with no I/O of its own.
//!
//! One [`WatchHub`] per member holds every watch stream (one gRPC `Watch` call each) and their
//! watchers. The server calls [`WatchHub::publish`] after each applied write batch, in commit
//! order, and [`WatchHub::poll`] to let watchers that are behind catch up from storage; the
//! gRPC glue feeds stream requests in ([`WatchHub::create`], [`WatchHub::cancel`],
//! [`WatchHub::request_progress`]) and sends what [`WatchHub::drain`] returns.
//!
//! A watcher is *synced* (it has been given every matching event up to the hub's revision and
//! receives new ones from `publish`) or *unsynced* (its next revision is in the past: it
//! started there, or its stream's buffer was full when events arrived). Unsynced watchers
//! read whole revisions from storage ([`crate::mvcc::MvccStore::events`]) in bounded chunks
//! until they reach the hub's revision, then turn synced; since both paths advance the same
//! `next_rev` by whole revisions, nothing is skipped or sent twice.
//!
//! Compaction follows etcd (`minRev < compactRev`): a watcher whose next revision is below the
//! compacted revision is cancelled with `compact_revision` set; one starting at it is served
//! (see [`crate::mvcc::history`] for the DELETE events such a replay cannot see).
//!
//! Attached in `crate::api::watch`: the server keeps the hub in a mutex beside the store and
//! calls `publish` from the apply loop right after each batch commits; each gRPC `Watch`
//! stream gets `open_stream`, turns its requests into `create`/`cancel`/`request_progress`, and
//! a send task that is woken after `publish` `drain`s, splits responses of watchers that asked
//! for `fragment` with [`fragment()`], sends, and calls `poll` again while it returns true. A
//! timer calls `progress_tick`; [`WatchStats`] feeds `/metrics`.

pub mod fragment;
pub mod hub;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod response_tests;

pub use fragment::fragment;
pub use hub::{StreamId, WatchCreate, WatchError, WatchHub, WatchLimits, WatchStats};
