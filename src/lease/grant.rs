//! What the proposer settles before a grant enters the log: the lease id (when the client left
//! it to the server) and the minimum TTL, so that applying the grant is the same everywhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::proto::etcdserverpb::LeaseGrantRequest;

/// etcd's minimum-TTL rule for one member's Raft timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantRules {
    /// A grant asking for less gets this many seconds.
    pub min_ttl_seconds: i64,
}

impl GrantRules {
    /// etcd's rule: a lease must outlive one and a half election timeouts (so that a leader
    /// change cannot expire it before its holder could renew), rounded up to whole seconds.
    pub fn new(tick: Duration, election_ticks: u32) -> Self {
        let min = tick * (3 * election_ticks / 2);
        let whole = min.as_secs() + u64::from(min.subsec_nanos() > 0);
        GrantRules {
            min_ttl_seconds: i64::try_from(whole).unwrap_or(i64::MAX).max(1),
        }
    }

    /// The grant as it is proposed: an id chosen if the client gave none, the TTL raised to
    /// the minimum.
    pub fn settle(&self, request: &LeaseGrantRequest, ids: &LeaseIds) -> LeaseGrantRequest {
        LeaseGrantRequest {
            id: if request.id == 0 {
                ids.next()
            } else {
                request.id
            },
            ttl: request.ttl.max(self.min_ttl_seconds),
        }
    }
}

/// Server-chosen lease ids: positive, unique within this member's run, and unlike any other
/// member's (the member id's low 16 bits lead), in the form etcd's ids take.
#[derive(Debug)]
pub struct LeaseIds {
    prefix: u64,
    next: AtomicU64,
}

/// The bits below the member prefix.
const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

impl LeaseIds {
    /// Starts from the wall clock so a restarted member does not reissue ids of its last run.
    pub fn new(member_id: u64, unix_ms: u64) -> Self {
        LeaseIds {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            next: AtomicU64::new((unix_ms << 8) & SUFFIX_MASK),
        }
    }

    pub fn next(&self) -> i64 {
        loop {
            let suffix = self.next.fetch_add(1, Ordering::Relaxed) & SUFFIX_MASK;
            // Positive int64, never 0 (0 asks the server to choose).
            let id = (self.prefix | suffix) & (u64::MAX >> 1);
            if id != 0 {
                return i64::try_from(id).unwrap_or(i64::MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
        let rules = GrantRules::new(Duration::from_millis(100), 10);
        assert_eq!(rules.min_ttl_seconds, 2);
        assert_eq!(
            GrantRules::new(Duration::from_millis(100), 20).min_ttl_seconds,
            3
        );
        assert_eq!(
            GrantRules::new(Duration::from_millis(10), 10).min_ttl_seconds,
            1
        );
        let ids = LeaseIds::new(1, 1);
        for (asked, got) in [(-5, 2), (0, 2), (1, 2), (2, 2), (3, 3), (60, 60)] {
            let settled = rules.settle(&LeaseGrantRequest { ttl: asked, id: 9 }, &ids);
            assert_eq!((settled.ttl, settled.id), (got, 9));
        }
    }

    #[test]
    fn server_chosen_ids_are_positive_distinct_and_carry_the_member() {
        let ids = LeaseIds::new(0xabcd_1234, 1_700_000_000_000);
        let first = ids.next();
        let second = ids.next();
        assert!(first > 0 && second > 0);
        assert_ne!(first, second);
        assert_eq!((first as u64) >> SUFFIX_BITS, 0x1234);
        let high = LeaseIds::new(0xffff, u64::MAX);
        assert!(high.next() > 0, "the sign bit is never set");
        let chosen = GrantRules::new(Duration::from_millis(100), 10)
            .settle(&LeaseGrantRequest { ttl: 5, id: 0 }, &ids);
        assert!(chosen.id > 0);
    }
}
