//! Tunables of one node, each with its unit in its name.

use crate::error::Error;
use crate::message::{NodeId, NO_NODE};

/// How the leader confirms it is still leader before serving a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: one heartbeat round to a quorum confirms a batch of reads. Needs no clock.
    Safe,
    /// Lease: serve at once while the leader's lease holds. Only honoured when
    /// `check_quorum` is on; otherwise reads fall back to `Safe`. See the crate docs for the
    /// clock assumption this makes.
    LeaseBased,
}

/// Configuration of one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Base election timeout; the actual timeout is drawn from
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` each time it resets.
    pub election_timeout_ticks: u32,
    /// Leader heartbeat interval; must be less than `election_timeout_ticks`.
    pub heartbeat_interval_ticks: u32,
    /// Upper bound on the entries' bytes in one append (one entry always goes through).
    pub max_msg_bytes: u64,
    /// Unacknowledged appends per follower in the Replicate state.
    pub max_inflight_msgs: usize,
    /// Upper bound on the bytes of committed entries handed out per `Ready`.
    pub max_apply_bytes: u64,
    /// Run a Pre-Vote round before a real election.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers ignore vote requests while they have a live leader.
    pub check_quorum: bool,
    /// Read confirmation mode.
    pub read_mode: ReadMode,
    /// Lease reads: how many ticks the leader's clock may run slow against a follower's
    /// during one election timeout; the lease is shortened by this much.
    pub lease_clock_drift_ticks: u32,
    /// Forward proposals from followers to the leader (otherwise they are dropped with
    /// `NotLeader`).
    pub forward_proposals: bool,
    /// Leader: entries appended but not yet committed, beyond which proposals are dropped
    /// (bounds memory while a quorum is unreachable).
    pub max_uncommitted_entries: u64,
    /// Reads waiting for confirmation on the leader, beyond which new ones are dropped.
    pub max_pending_reads: usize,
    /// Largest lag (in entries) at which a learner may be promoted to voter.
    pub max_promotion_lag_entries: u64,
    /// Applied index to resume from after a restart.
    pub applied: u64,
    /// Seed of the election-timeout randomness (mixed with `id`), for reproducible runs.
    pub seed: u64,
}

impl Config {
    /// Defaults for node `id`: 10-tick elections, 1-tick heartbeats, Pre-Vote and Check-Quorum
    /// on, safe reads.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            max_msg_bytes: 1024 * 1024,
            max_inflight_msgs: 256,
            max_apply_bytes: 64 * 1024 * 1024,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            lease_clock_drift_ticks: 2,
            forward_proposals: true,
            max_pending_reads: 4096,
            max_uncommitted_entries: 65_536,
            max_promotion_lag_entries: 1000,
            applied: 0,
            seed: 0,
        }
    }

    /// Checks the bounds that the algorithm relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if self.id == NO_NODE {
            return Err(Error::InvalidConfig("id must not be 0".into()));
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(Error::InvalidConfig(
                "heartbeat_interval_ticks must be > 0".into(),
            ));
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(Error::InvalidConfig(format!(
                "election_timeout_ticks ({}) must exceed heartbeat_interval_ticks ({})",
                self.election_timeout_ticks, self.heartbeat_interval_ticks
            )));
        }
        if self.lease_clock_drift_ticks >= self.election_timeout_ticks {
            return Err(Error::InvalidConfig(
                "lease_clock_drift_ticks must be below election_timeout_ticks".into(),
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::InvalidConfig("max_inflight_msgs must be > 0".into()));
        }
        if self.max_msg_bytes == 0 || self.max_apply_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_msg_bytes and max_apply_bytes must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// The read mode actually in force: lease reads need Check-Quorum.
    pub(crate) fn effective_read_mode(&self) -> ReadMode {
        if self.check_quorum {
            self.read_mode
        } else {
            ReadMode::Safe
        }
    }
}

/// SplitMix64: a tiny deterministic generator for election timeouts (no clock, no OS entropy).
#[derive(Clone, Debug)]
pub(crate) struct TimeoutRng(u64);

impl TimeoutRng {
    pub(crate) fn new(seed: u64, id: NodeId) -> TimeoutRng {
        TimeoutRng(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(crate) fn next_below(&mut self, bound: u32) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % u64::from(bound.max(1))) as u32
    }
}
