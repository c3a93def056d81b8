//! # cairn-jepsen
//!
//! Jepsen-style testing of real Cairn processes: a harness that starts clusters of `cairn`
//! binaries, injects faults (kill -9, SIGSTOP pauses, network partitions, disk faults, clock
//! jumps), records client operation histories with their invocation and completion times, and
//! checks them with consistency checkers (linearizability of the key-value register, watch
//! ordering and completeness, lease and lock safety).
//!
//! Built so far: the register history format ([`history`]) and its linearizability checker
//! ([`linearizable`]), run on a saved history with `cairn-jepsen check register FILE`; and a
//! first harness ([`run`]): real nodes on loopback ([`nodes`]), the register workload's
//! clients ([`register`]) and the kill nemesis, `cairn-jepsen test --workload register
//! --nemesis kill`. Other workloads, nemeses, network namespaces and plots are to come (see
//! the fault-testing issue).

pub mod history;
pub mod linearizable;
pub mod nodes;
pub mod register;
pub mod run;

/// Exit codes of `cairn-jepsen`: every checker passed, an anomaly was found, or the run (or
/// the check) could not be carried out.
pub mod exit {
    pub const VALID: u8 = 0;
    pub const ANOMALY: u8 = 1;
    pub const CANNOT_RUN: u8 = 2;
}
