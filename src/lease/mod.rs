//! Leases: TTLs that keys hang on, surviving restarts and leader changes.
//!
//! Two halves, kept apart on purpose:
//! - [`LeaseTable`] is applied state, the same on every member: it changes only by applying
//!   Raft entries (grant, revoke, checkpoint) and is stored in the key-space file's `lease`
//!   bucket in the same storage transaction as the key changes it causes.
//! - [`LeaderClock`] is the leader's alone: deadlines on its monotonic clock, renewed by
//!   keepalives. When one passes, the leader proposes a revoke; applying it deletes the
//!   lease's keys in one revision on every member.
//!
//! Keeping time across a leader change or a restart (where etcd by default hands every lease
//! a fresh TTL): the leader checkpoints, through Raft, the time left on every lease renewed
//! since its last checkpoint, and answers a keepalive only once the log holds a figure that
//! keeps its promise. A lease's stored record holds the time left at its last grant or
//! checkpoint and the proposer's wall clock at that moment.
//! - Usually that means waiting for a checkpoint carrying the renewal ([`record`]; one round
//!   in flight at a time carries every renewal waiting).
//! - A renewal the log already covers is answered at once: when the lease's last checkpoint
//!   this leader recorded (taken at `m` with `r` left) has `m + r + promise_share` at or past
//!   `now + TTL`. Any later leader starts the lease from that figure (or a later one) plus the
//!   whole grace, so it keeps the promise with `promote_grace - promise_share` to spare for
//!   the members' wall-clock difference that the late-apply correction below subtracts. The
//!   keepalive service first confirms leadership and catches up with the log (a ReadIndex
//!   barrier, as etcd waits for its applied index), so a revoke committed before the renewal
//!   arrived is seen. Clients renewing the same lease several times a second (load
//!   generators, many leases per client) are answered without a log entry each round.
//! - A new leader starts each lease from the applied figure, counted on its own monotonic
//!   clock from when it applied it: every answered renewal is covered by that figure, once
//!   the leader has applied an entry of its own term (the server starts the clock only then:
//!   see `Member::lease_term`). It adds a grace of one second and one election timeout (etcd
//!   extends leases by an election timeout on promotion), of which a promise may use
//!   `promise_share`; the rest is a margin for the clocks.
//! - A restart also subtracts the wall-clock time since the record's checkpoint: the only span
//!   no monotonic clock covers is the time the member was down. A lease that ran out while the
//!   member was down is revoked one grace after the member leads again. A wall clock that went
//!   backwards counts as no time passed (the lease lives longer, never shorter).

pub mod apply;
pub mod clock;
pub mod grant;
pub mod load;
pub mod record;
pub mod table;

use std::time::{Duration, Instant};

pub use clock::LeaderClock;
pub use grant::{GrantRules, LeaseIds};
pub use record::{await_recorded, NotRecorded, RecordedRenewals, RenewalTicket};
pub use table::{Lease, LeaseError, LeaseLoadError, LeaseTable};

/// How the leader keeps lease time.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How often the leader checkpoints renewed leases (at once, too, when a keepalive waits
    /// for its renewal to be recorded).
    pub checkpoint_interval: Duration,
    /// Added to every lease's applied deadline when a member takes over as leader.
    pub promote_grace: Duration,
    /// How much of `promote_grace` a renewal answered from an earlier checkpoint may use
    /// (see the module docs); the rest stays a margin.
    pub promise_share: Duration,
    /// How often the leader looks for expired leases.
    pub expiry_check_interval: Duration,
}

impl LeaseTiming {
    /// The timing for a member with this election timeout.
    pub fn new(election_timeout: Duration) -> Self {
        LeaseTiming {
            // A renewal is covered when an earlier renewal of its lease, no more than
            // `promise_share` before it, is in a committed checkpoint: with checkpoints this
            // often, a lease renewed every ~250 ms or faster usually is. A checkpoint carries
            // only the leases renewed since the last one.
            checkpoint_interval: Duration::from_millis(200),
            promote_grace: Duration::from_secs(1) + election_timeout,
            promise_share: Duration::from_millis(500),
            // etcd looks every 500 ms too.
            expiry_check_interval: Duration::from_millis(500),
        }
    }
}

/// The outcome of a keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed for its full TTL (seconds), to be answered once `ticket`'s checkpoint round
    /// is recorded ([`record`]), or, if `covered`, once a read barrier shows this member led
    /// and had applied the log after the renewal arrived (see the module docs).
    Renewed {
        ttl_seconds: i64,
        ticket: RenewalTicket,
        covered: bool,
    },
    /// No such lease (never granted, or revoked).
    NotFound,
    /// It ran out; its revoke is on the way.
    Expired,
    /// This member does not lead, so it keeps no lease time.
    NotLeader,
}

/// What LeaseTimeToLive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    pub granted_ttl_seconds: i64,
    /// Whole seconds left (rounded down, as etcd does).
    pub remaining_seconds: i64,
    pub keys: Vec<Vec<u8>>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeaseCounts {
    pub granted: u64,
    pub revoked: u64,
    pub renewed: u64,
    /// Renewals a recorded checkpoint covered.
    pub renewed_from_checkpoint: u64,
    pub expired: u64,
}

/// The member's leases: the applied table and, while leading, the clock.
#[derive(Debug)]
pub struct Leases {
    table: LeaseTable,
    leader: Option<LeaderClock>,
    /// The term `leader` keeps time for.
    leader_term: u64,
    timing: LeaseTiming,
    rounds: record::RenewalRounds,
    pub counts: LeaseCounts,
}

impl Leases {
    pub fn new(table: LeaseTable, timing: LeaseTiming) -> Self {
        Leases {
            table,
            leader: None,
            leader_term: 0,
            timing,
            rounds: record::RenewalRounds::default(),
            counts: LeaseCounts::default(),
        }
    }

    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.table
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Whether this member keeps lease time (it leads).
    pub fn is_leading(&self) -> bool {
        self.leader.is_some()
    }

    /// Starts or stops keeping lease time as this member's Raft role says: `leading_term` is
    /// the term this member leads in, or None. A clock belongs to one term: a member that lost
    /// leadership and won it back starts afresh from the applied figures, since another
    /// leader may have renewed (and checkpointed) leases in between.
    pub fn follow_role(&mut self, leading_term: Option<u64>) {
        match (leading_term, self.leader.is_some()) {
            (Some(term), held) if !held || self.leader_term != term => {
                self.leader = Some(LeaderClock::promote(&self.table, self.timing.promote_grace));
                self.leader_term = term;
                self.rounds.new_epoch();
                tracing::info!(
                    leases = self.table.len(),
                    term,
                    "keeping lease time as leader"
                );
            }
            (None, true) => {
                self.leader = None;
                self.rounds.new_epoch();
                tracing::info!("no longer leader: lease time left to the new leader");
            }
            _ => {}
        }
    }

    /// Applied: a lease was granted.
    pub fn granted(&mut self, id: i64, now: Instant) {
        self.counts.granted += 1;
        if let (Some(clock), Some(lease)) = (self.leader.as_mut(), self.table.get(id)) {
            clock.granted(id, lease.ttl(), now);
        }
    }

    /// Applied: a lease was revoked.
    pub fn revoked(&mut self, id: i64) {
        self.counts.revoked += 1;
        if let Some(clock) = self.leader.as_mut() {
            clock.removed(id);
        }
    }

    pub fn renew(&mut self, id: i64, now: Instant) -> Renewal {
        let Some(clock) = self.leader.as_mut() else {
            return Renewal::NotLeader;
        };
        let Some(lease) = self.table.get(id) else {
            return Renewal::NotFound;
        };
        if clock.renew(id, lease.ttl(), now) {
            self.counts.renewed += 1;
            let covered = clock.covers(id, now + lease.ttl(), self.timing.promise_share);
            self.counts.renewed_from_checkpoint += u64::from(covered);
            Renewal::Renewed {
                ttl_seconds: lease.ttl_seconds,
                ticket: self.rounds.ticket(),
                covered,
            }
        } else {
            Renewal::Expired
        }
    }

    /// A lease's TTL, time left and (if asked) keys; None if it does not exist. Time left
    /// comes from the leader's clock, or from the applied figures on a member that does not
    /// lead.
    pub fn time_to_live(&self, id: i64, with_keys: bool, now: Instant) -> Option<TimeToLive> {
        let lease = self.table.get(id)?;
        let left = match &self.leader {
            Some(clock) => clock.remaining(id, now).unwrap_or_default(),
            None => lease.applied_deadline().saturating_duration_since(now),
        };
        Some(TimeToLive {
            granted_ttl_seconds: lease.ttl_seconds,
            remaining_seconds: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, soonest expiry first (as etcd lists them), ties by id.
    pub fn ids_by_expiry(&self, now: Instant) -> Vec<i64> {
        let mut ids: Vec<(Duration, i64)> = self
            .table
            .iter()
            .map(|lease| {
                let left = match &self.leader {
                    Some(clock) => clock.remaining(lease.id, now).unwrap_or_default(),
                    None => lease.applied_deadline().saturating_duration_since(now),
                };
                (left, lease.id)
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Expired leases to revoke (leader only), at most `limit`.
    pub fn take_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let expired = self
            .leader
            .as_mut()
            .map_or_else(Vec::new, |clock| clock.take_expired(now, limit));
        self.counts.expired += expired.len() as u64;
        expired
    }

    /// Renewed leases to checkpoint (leader only), at most `limit`, as (id, ms left).
    pub fn take_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        self.leader
            .as_mut()
            .map_or_else(Vec::new, |clock| clock.take_checkpoints(now, limit))
    }

    /// Starts a checkpoint round (see [`record`]): it carries every renewal granted so far.
    pub fn begin_checkpoint_round(&mut self) -> RenewalTicket {
        self.rounds.begin_round()
    }

    /// Every checkpoint of `round` applied: the renewals it carries may be answered.
    pub fn checkpoint_round_recorded(&mut self, round: RenewalTicket) {
        self.rounds.recorded(round);
    }

    /// What the log has recorded of this member's renewals, as it changes.
    pub fn recorded_renewals(&self) -> tokio::sync::watch::Receiver<RecordedRenewals> {
        self.rounds.watch()
    }

    /// Checkpoints this member took at `taken_at`, leading in `term`, committed: the log now
    /// guarantees each lease its figure (see [`LeaderClock::checkpoints_recorded`]).
    pub fn checkpoints_recorded(
        &mut self,
        term: u64,
        taken_at: Instant,
        checkpoints: &[(i64, i64)],
    ) {
        if self.leader_term != term {
            return;
        }
        if let Some(clock) = self.leader.as_mut() {
            clock.checkpoints_recorded(checkpoints, taken_at);
        }
    }

    /// A checkpoint did not commit: its leases are checkpointed again next time.
    pub fn checkpoint_failed(&mut self, ids: impl IntoIterator<Item = i64>) {
        if let Some(clock) = self.leader.as_mut() {
            clock.checkpoint_failed(ids);
        }
    }
}

/// The member's leases shared between the apply loop, the lease service and the leader's
/// lease duties.
#[derive(Debug)]
pub struct SharedLeases {
    pub state: parking_lot::Mutex<Leases>,
    /// Woken after every applied revoke (keepalives of expired leases wait for it).
    pub revoked: tokio::sync::Notify,
    /// Woken by a renewal waiting to be recorded: the lease duties checkpoint at once.
    pub renewals_waiting: tokio::sync::Notify,
}

impl SharedLeases {
    pub fn new(leases: Leases) -> std::sync::Arc<Self> {
        std::sync::Arc::new(SharedLeases {
            state: parking_lot::Mutex::new(leases),
            revoked: tokio::sync::Notify::new(),
            renewals_waiting: tokio::sync::Notify::new(),
        })
    }
}

/// Milliseconds since the Unix epoch on the wall clock (0 if the clock is before 1970).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
