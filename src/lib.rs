//! Cairn: a distributed, strongly consistent key-value store that speaks etcd's v3 gRPC API.
//!
//! This crate joins the engine crates (`cairn-raft`, `cairn-wal`, `cairn-btree`) into the `cairn`
//! server and the `cairnctl` CLI. See `ARCHITECTURE.md` in the shared plan for how a write and a
//! read travel through it.
//!
//! - [`proto`]: the etcd v3 wire API and Cairn's peer protocol, generated from `proto/` at build
//!   time.
//! - [`config`]: the server's etcd-compatible flags and their validation.
//! - [`version`]: what `--version`, `Maintenance.Status` and `/version` report.

pub mod api;
pub mod coalesced_writes;
pub mod config;
pub mod ctl;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod http;
pub mod kv;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod server;
pub mod storage;
pub mod version;
pub mod watch;
