//! What the leader knows about each follower's log, and how it paces sending to it.
//!
//! A follower is in one of three states:
//! - `Probe`: the leader does not know where the follower's log matches; it sends one append
//!   per heartbeat interval (or per response) and backtracks on rejections.
//! - `Replicate`: the logs match up to `match_index`; the leader streams appends without
//!   waiting, up to `max_inflight_msgs` unacknowledged messages (pipelining).
//! - `Snapshot`: the follower needs a snapshot; nothing else is sent until the caller reports
//!   the transfer's outcome or the follower acknowledges it.

use std::collections::VecDeque;

/// Replication state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the match point, one message at a time.
    Probe,
    /// Streaming with a bounded in-flight window.
    Replicate,
    /// Waiting for a snapshot at `pending_index` to be installed.
    Snapshot {
        /// Index of the snapshot sent.
        pending_index: u64,
    },
}

/// The last index of each unacknowledged append, oldest first, bounded by `capacity`.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<u64>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        Inflights {
            last_indexes: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    pub(crate) fn add(&mut self, last_index: u64) {
        debug_assert!(!self.full(), "caller checks the window before sending");
        debug_assert!(
            self.last_indexes.back().is_none_or(|&b| b <= last_index),
            "appends are sent in log order"
        );
        self.last_indexes.push_back(last_index);
    }

    /// Frees every message acknowledged by a response covering `index`.
    pub(crate) fn free_to(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&f| f <= index) {
            self.last_indexes.pop_front();
        }
    }

    pub(crate) fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    pub(crate) fn reset(&mut self) {
        self.last_indexes.clear();
    }

    /// Unacknowledged messages.
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }

    /// No unacknowledged message.
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
}

/// The leader's view of one member.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// Pacing state.
    pub state: ProgressState,
    /// In `Probe`: a probe is outstanding, wait for a response or the next heartbeat.
    pub probe_sent: bool,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Latest read-index round this member confirmed (heartbeat responses echo it).
    pub read_round_acked: u64,
    /// Unacknowledged appends (Replicate state).
    pub inflights: Inflights,
    /// In `Snapshot`: a check-quorum period passed without news of the transfer.
    pub snapshot_stale: bool,
}

impl Progress {
    pub(crate) fn new(next_index: u64, max_inflight_msgs: usize) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: false,
            read_round_acked: 0,
            inflights: Inflights::new(max_inflight_msgs),
            snapshot_stale: false,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, resume right after it (or after what is known to match).
        if let ProgressState::Snapshot { pending_index } = self.state {
            self.next_index = (self.match_index + 1).max(pending_index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, pending_index: u64) {
        self.state = ProgressState::Snapshot { pending_index };
        self.probe_sent = false;
        self.snapshot_stale = false;
        self.inflights.reset();
    }

    /// The follower acknowledged entries through `index`. Returns whether anything changed.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let mut updated = false;
        if index > self.match_index {
            self.match_index = index;
            updated = true;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// Optimistically advance `next_index` after sending entries through `last_index`.
    pub(crate) fn sent_entries(&mut self, last_index: u64) {
        match self.state {
            ProgressState::Replicate => {
                self.next_index = last_index + 1;
                self.inflights.add(last_index);
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// A rejection of the append that followed `rejected_index`; `retry_from` is where the
    /// leader's own log suggests trying next. Returns false if the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected_index: u64, retry_from: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Stale: we already know the follower matches past it.
            if rejected_index <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            return true;
        }
        // In probe, only the answer to the outstanding probe counts.
        if self.next_index == 0 || self.next_index - 1 != rejected_index {
            return false;
        }
        self.next_index = retry_from.min(rejected_index).max(self.match_index + 1);
        self.probe_sent = false;
        true
    }

    /// Whether the leader should hold back appends to this member now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_pauses_when_full_and_frees_on_ack() {
        let mut p = Progress::new(1, 2);
        p.become_replicate();
        p.sent_entries(3);
        assert!(!p.is_paused());
        p.sent_entries(5);
        assert!(p.is_paused(), "two messages in flight with a window of two");
        p.inflights.free_to(3);
        assert!(!p.is_paused());
        assert_eq!(p.next_index, 6);
    }

    #[test]
    fn probe_ignores_stale_rejections() {
        let mut p = Progress::new(10, 4);
        p.sent_entries(12);
        assert!(p.is_paused());
        assert!(!p.maybe_decrease_to(5, 3), "rejection of an older probe");
        assert!(p.maybe_decrease_to(9, 4));
        assert_eq!(p.next_index, 4);
        assert!(!p.is_paused());
    }
}
