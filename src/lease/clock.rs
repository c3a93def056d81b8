//! The leader's lease clock: when each lease runs out, on this member's monotonic clock.
//!
//! Only the leader keeps one. Deadlines are local (never replicated): the leader decides a
//! lease has expired and proposes its revoke through Raft, so every member deletes the same
//! keys at the same revision. Renewals are local too; the leader records them in the log in
//! batches (checkpoints), so a new leader or a restart starts from recent figures instead of
//! a fresh TTL.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::table::LeaseTable;

/// How long the leader waits for a proposed revoke to apply before proposing it again (the
/// first may have been lost to a leader change).
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

/// Deadlines of every lease, as the leader keeps them.
#[derive(Debug, Default)]
pub struct LeaderClock {
    deadlines: HashMap<i64, Instant>,
    /// The same deadlines, ordered, for finding the expired ones.
    queue: BTreeSet<(Instant, i64)>,
    /// Leases renewed since their last checkpoint.
    renewed: HashSet<i64>,
    /// Expired leases whose revoke was proposed, and when.
    revoking: HashMap<i64, Instant>,
    /// Per lease, the deadline its last checkpoint recorded by this clock stands for (taken
    /// at `m` with `r` left: `m + r`); any later leader keeps it, plus its grace.
    recorded: HashMap<i64, Instant>,
    /// The same for checkpoints taken and not yet committed. A revoke or grant of the id in
    /// between drops the figure: a checkpoint of a lease since revoked must never cover a
    /// new lease granted under the same id (its log figure is clamped to the new TTL).
    taken: HashMap<i64, Instant>,
}

impl LeaderClock {
    /// Takes over every lease of `table`: each runs out at the deadline its last applied
    /// grant or checkpoint implies, plus `grace` for renewals the previous leader (or this
    /// member before a restart) granted but had not checkpointed yet.
    pub fn promote(table: &LeaseTable, grace: Duration) -> Self {
        let mut clock = LeaderClock::default();
        for lease in table.iter() {
            clock.set(lease.id, lease.applied_deadline() + grace);
        }
        clock
    }

    fn set(&mut self, id: i64, deadline: Instant) {
        if let Some(old) = self.deadlines.insert(id, deadline) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((deadline, id));
    }

    /// A lease was granted (applied): it runs out one TTL from now.
    pub fn granted(&mut self, id: i64, ttl: Duration, now: Instant) {
        self.set(id, now + ttl);
        self.taken.remove(&id);
        self.recorded.remove(&id);
    }

    /// A lease was revoked (applied).
    pub fn removed(&mut self, id: i64) {
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.queue.remove(&(deadline, id));
        }
        self.renewed.remove(&id);
        self.revoking.remove(&id);
        self.recorded.remove(&id);
        self.taken.remove(&id);
    }

    /// Renews a lease for another `ttl`; false if it has already run out (its revoke is
    /// coming; a renewal must not bring it back) or is unknown.
    pub fn renew(&mut self, id: i64, ttl: Duration, now: Instant) -> bool {
        match self.deadlines.get(&id) {
            Some(&deadline) if deadline > now => {
                self.set(id, now + ttl);
                self.renewed.insert(id);
                true
            }
            _ => false,
        }
    }

    /// Time left on a lease (zero once it has run out).
    pub fn remaining(&self, id: i64, now: Instant) -> Option<Duration> {
        self.deadlines
            .get(&id)
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// Up to `limit` leases that have run out and need a revoke proposed, earliest first;
    /// each is handed out again only after [`REVOKE_RETRY`].
    pub fn take_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut due = Vec::new();
        for &(deadline, id) in &self.queue {
            if deadline > now || due.len() >= limit {
                break;
            }
            let recently_proposed = self
                .revoking
                .get(&id)
                .is_some_and(|&at| now.saturating_duration_since(at) < REVOKE_RETRY);
            if !recently_proposed {
                due.push(id);
            }
        }
        for id in &due {
            self.revoking.insert(*id, now);
        }
        due
    }

    /// Up to `limit` renewed leases with the milliseconds each has left, to be checkpointed.
    pub fn take_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let ids: Vec<i64> = self.renewed.iter().take(limit).copied().collect();
        let mut checkpoints = Vec::with_capacity(ids.len());
        for id in ids {
            self.renewed.remove(&id);
            if let Some(left) = self.remaining(id, now) {
                let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
                // What the entry will stand for: the milliseconds it carries, from `now`.
                let figure = now + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                self.taken.insert(id, figure);
                checkpoints.push((id, ms));
            }
        }
        checkpoints
    }

    /// `checkpoints` (id, ms left), taken by [`LeaderClock::take_checkpoints`] at `taken_at`,
    /// committed. Only figures still as taken count (not one whose lease was revoked or
    /// granted again meanwhile). The latest figure is what a later leader starts from, so it
    /// replaces any earlier one even if it is lower (a renewal after a promotion's grace).
    pub fn checkpoints_recorded(&mut self, checkpoints: &[(i64, i64)], taken_at: Instant) {
        for &(id, remaining_ms) in checkpoints {
            let figure = taken_at + Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0));
            if self.taken.get(&id) == Some(&figure) {
                self.taken.remove(&id);
                self.recorded.insert(id, figure);
            }
        }
    }

    /// Whether the log already keeps `id` alive until `until`, using at most `share` of the
    /// grace a later leader adds.
    pub fn covers(&self, id: i64, until: Instant, share: Duration) -> bool {
        self.recorded
            .get(&id)
            .is_some_and(|&recorded| until <= recorded + share)
    }

    /// Puts leases back on the renewed list after their checkpoint failed to commit.
    pub fn checkpoint_failed(&mut self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            self.taken.remove(&id);
            if self.deadlines.contains_key(&id) {
                self.renewed.insert(id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn leases_expire_in_deadline_order_and_only_once_per_retry_interval() {
        let t0 = Instant::now();
        let mut clock = LeaderClock::default();
        clock.granted(1, 10 * SEC, t0);
        clock.granted(2, 5 * SEC, t0);
        clock.granted(3, 20 * SEC, t0);
        assert!(clock.take_expired(t0 + 4 * SEC, 10).is_empty());
        assert_eq!(clock.take_expired(t0 + 11 * SEC, 10), vec![2, 1]);
        assert!(
            clock.take_expired(t0 + 12 * SEC, 10).is_empty(),
            "revokes just proposed are not proposed again at once"
        );
        assert_eq!(
            clock.take_expired(t0 + 11 * SEC + REVOKE_RETRY, 1),
            vec![2],
            "a revoke that never applied is proposed again, within the limit"
        );
        clock.removed(2);
        clock.removed(1);
        assert_eq!(clock.take_expired(t0 + 60 * SEC, 10), vec![3]);
    }

    #[test]
    fn a_renewal_extends_a_live_lease_but_never_revives_an_expired_one() {
        let t0 = Instant::now();
        let mut clock = LeaderClock::default();
        clock.granted(1, 10 * SEC, t0);
        assert!(clock.renew(1, 10 * SEC, t0 + 9 * SEC));
        assert_eq!(clock.remaining(1, t0 + 10 * SEC), Some(9 * SEC));
        assert!(clock.take_expired(t0 + 18 * SEC, 10).is_empty());
        assert!(!clock.renew(1, 10 * SEC, t0 + 19 * SEC));
        assert_eq!(clock.remaining(1, t0 + 19 * SEC), Some(Duration::ZERO));
        assert!(!clock.renew(42, 10 * SEC, t0));
    }

    #[test]
    fn checkpoints_carry_what_each_renewed_lease_has_left() {
        let t0 = Instant::now();
        let mut clock = LeaderClock::default();
        clock.granted(1, 10 * SEC, t0);
        clock.granted(2, 10 * SEC, t0);
        assert!(clock.take_checkpoints(t0, 10).is_empty(), "nothing renewed");
        clock.renew(1, 10 * SEC, t0 + 2 * SEC);
        assert_eq!(clock.take_checkpoints(t0 + 3 * SEC, 10), vec![(1, 9_000)]);
        assert!(clock.take_checkpoints(t0 + 3 * SEC, 10).is_empty());
        clock.checkpoint_failed([1, 7]);
        assert_eq!(clock.take_checkpoints(t0 + 4 * SEC, 10), vec![(1, 8_000)]);
    }

    #[test]
    fn a_recorded_checkpoint_covers_renewals_within_the_share_until_a_revoke() {
        let t0 = Instant::now();
        let share = SEC / 2;
        let mut clock = LeaderClock::default();
        clock.granted(1, 10 * SEC, t0);
        assert!(
            !clock.covers(1, t0 + 10 * SEC, share),
            "a grant covers nothing"
        );
        clock.renew(1, 10 * SEC, t0 + SEC);
        let due = clock.take_checkpoints(t0 + 2 * SEC, 10);
        assert_eq!(due, vec![(1, 9_000)]);
        assert!(
            !clock.covers(1, t0 + 11 * SEC, share),
            "not until it commits"
        );
        clock.checkpoints_recorded(&due, t0 + 2 * SEC);
        // Recorded: alive until t0 + 11 s; a renewal may promise up to half a second more.
        assert!(clock.covers(1, t0 + 11 * SEC, share));
        assert!(clock.covers(1, t0 + 11 * SEC + share, share));
        assert!(!clock.covers(1, t0 + 11 * SEC + share + Duration::from_millis(1), share));
        // A later, lower figure replaces it: a later leader would start from that one.
        clock.renew(1, SEC, t0 + 2 * SEC);
        let lower = clock.take_checkpoints(t0 + 2 * SEC, 10);
        assert_eq!(lower, vec![(1, 1_000)]);
        clock.checkpoints_recorded(&lower, t0 + 2 * SEC);
        assert!(!clock.covers(1, t0 + 11 * SEC, share));
        clock.removed(1);
        clock.checkpoints_recorded(&[(1, 9_000)], t0 + 3 * SEC);
        assert!(
            !clock.covers(1, t0 + 4 * SEC, share),
            "a revoked lease stays uncovered"
        );
    }

    #[test]
    fn a_checkpoint_of_a_lease_revoked_and_granted_again_before_it_commits_covers_nothing() {
        let t0 = Instant::now();
        let share = SEC / 2;
        let mut clock = LeaderClock::default();
        clock.granted(1, 60 * SEC, t0);
        clock.renew(1, 60 * SEC, t0);
        let due = clock.take_checkpoints(t0, 10);
        // Applied while the checkpoint was in flight: a revoke, then a 5 s lease, same id.
        clock.removed(1);
        clock.granted(1, 5 * SEC, t0);
        clock.checkpoints_recorded(&due, t0);
        assert!(
            !clock.covers(1, t0 + 5 * SEC, share),
            "the old lease's 60 s must not cover the new one"
        );
        // A checkpoint that failed is not recorded later either.
        clock.renew(1, 5 * SEC, t0 + SEC);
        let failed = clock.take_checkpoints(t0 + SEC, 10);
        clock.checkpoint_failed(failed.iter().map(|&(id, _)| id));
        clock.checkpoints_recorded(&failed, t0 + SEC);
        assert!(!clock.covers(1, t0 + 6 * SEC, share));
    }

    #[test]
    fn promotion_starts_from_the_applied_figures_plus_grace() {
        let t0 = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(1, 10, 0, t0, 0).unwrap();
        table.grant(2, 60, 0, t0, 0).unwrap();
        table.checkpoint(2, 30_000, 0, t0 + 5 * SEC, 0).unwrap();
        let clock = LeaderClock::promote(&table, 2 * SEC);
        assert_eq!(clock.remaining(1, t0), Some(12 * SEC));
        assert_eq!(clock.remaining(2, t0 + 5 * SEC), Some(32 * SEC));
        assert_eq!(clock.len(), 2);
    }
}
