//! When to try again after a snapshot could not be delivered to a follower. Raft asks for a
//! new snapshot as soon as it hears of a failure, so a follower that is down or cut off would
//! be sent one attempt after another, each a dial and a read transaction (the fault tests saw
//! 700 a second). The failure is reported to Raft only once a backoff has passed: from
//! 200 ms, doubling to 5 s, back to the start after a delivery.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct SnapshotRetries {
    /// The wait before the next failure of each follower is reported.
    backoff: HashMap<u64, Duration>,
    /// Failures held back, and when to report them.
    held: HashMap<u64, Instant>,
}

impl SnapshotRetries {
    /// A delivery to `to` failed at `now`: its report waits for the backoff.
    pub fn failed(&mut self, to: u64, now: Instant) {
        let backoff = self.backoff.entry(to).or_insert(FIRST_BACKOFF);
        self.held.insert(to, now + *backoff);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }

    /// A delivery to `to` succeeded: the next failure waits the shortest time again.
    pub fn delivered(&mut self, to: u64) {
        self.backoff.remove(&to);
        self.held.remove(&to);
    }

    /// Followers whose held failure is due at `now` (reported once each).
    pub fn due(&mut self, now: Instant) -> Vec<u64> {
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(to, _)| *to)
            .collect();
        for to in &due {
            self.held.remove(to);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_after_a_backoff_that_doubles_and_resets() {
        let mut retries = SnapshotRetries::default();
        let start = Instant::now();
        retries.failed(7, start);
        assert!(retries.due(start).is_empty(), "held back at first");
        assert_eq!(retries.due(start + FIRST_BACKOFF), vec![7]);
        assert!(
            retries.due(start + FIRST_BACKOFF).is_empty(),
            "reported once"
        );
        // The second failure waits twice as long, and so on up to the cap.
        retries.failed(7, start);
        assert!(retries.due(start + FIRST_BACKOFF).is_empty());
        assert_eq!(retries.due(start + 2 * FIRST_BACKOFF), vec![7]);
        for _ in 0..10 {
            retries.failed(7, start);
            retries.due(start + MAX_BACKOFF);
        }
        retries.failed(7, start);
        assert!(retries
            .due(start + MAX_BACKOFF - Duration::from_millis(1))
            .is_empty());
        assert_eq!(retries.due(start + MAX_BACKOFF), vec![7]);
        // A delivery resets it.
        retries.delivered(7);
        retries.failed(7, start);
        assert_eq!(retries.due(start + FIRST_BACKOFF), vec![7]);
    }
}
