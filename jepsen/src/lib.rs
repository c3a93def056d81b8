//! # cairn-jepsen
//!
//! Jepsen-style testing of real Cairn processes: a harness that starts clusters of `cairn`
//! binaries, injects faults (kill -9, SIGSTOP pauses, network partitions, disk faults, clock
//! jumps), records client operation histories with their invocation and completion times, and
//! checks them with consistency checkers (linearizability of the key-value register, watch
//! ordering and completeness, lease and lock safety).
//!
//! Built so far: the register workload ([`register`], history [`history`], linearizability
//! checker [`linearizable`]) and the list-append workload ([`append`], history
//! [`append_history`], Elle-style cycle checker [`elle`]); the cluster on its own network
//! ([`net`]: namespaces and iptables as root, TCP proxies otherwise) and the nemesis
//! ([`nemesis`]: kill, pause, partition); a run ([`run`]) ties them together. Other workloads
//! and nemeses are to come (see the fault-testing issue).

pub mod append;
pub mod append_history;
pub mod client;
pub mod elle;
pub mod history;
pub mod lease;
pub mod lease_check;
pub mod linearizable;
pub mod lock;
pub mod lock_check;
pub mod nemesis;
pub mod net;
pub mod nodes;
pub mod plot;
pub mod register;
pub mod rng;
pub mod run;
pub mod set;
pub mod set_check;
pub mod watch;
pub mod watch_check;

/// Exit codes of `cairn-jepsen`: every checker passed, an anomaly was found, or the run (or
/// the check) could not be carried out.
pub mod exit {
    pub const VALID: u8 = 0;
    pub const ANOMALY: u8 = 1;
    pub const CANNOT_RUN: u8 = 2;
}
