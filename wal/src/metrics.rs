//! Counters the server exports: fsyncs, records and bytes made durable, fsync latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (inclusive, microseconds) of the fsync duration histogram's buckets; a last,
/// unbounded bucket follows.
pub const FSYNC_DURATION_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

#[derive(Default)]
pub(crate) struct MetricsCells {
    fsyncs: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    fsync_us_sum: AtomicU64,
    buckets: [AtomicU64; FSYNC_DURATION_BUCKETS_US.len() + 1],
    inline_appends: AtomicU64,
}

/// A snapshot of the log's counters. Records and bytes per fsync are `records / fsyncs` and
/// `bytes / fsyncs` over any interval (Prometheus derives them from the totals).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalMetrics {
    /// fdatasyncs of segment data.
    pub fsyncs: u64,
    /// Records made durable by those fsyncs.
    pub records_synced: u64,
    /// Bytes made durable by those fsyncs.
    pub bytes_synced: u64,
    /// Sum of fsync durations, microseconds.
    pub fsync_duration_us_sum: u64,
    /// Fsync counts per bucket of [`FSYNC_DURATION_BUCKETS_US`] (not cumulative), plus the
    /// overflow bucket last.
    pub fsync_duration_buckets: Vec<u64>,
    /// Appends written on their caller's thread (`Wal::append_inline` finding the log idle).
    pub inline_appends: u64,
}

impl MetricsCells {
    pub(crate) fn record_fsync(&self, records: u64, bytes: u64, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.fsync_us_sum.fetch_add(us, Ordering::Relaxed);
        let bucket = FSYNC_DURATION_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(FSYNC_DURATION_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_inline_append(&self) {
        self.inline_appends.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WalMetrics {
        WalMetrics {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            records_synced: self.records.load(Ordering::Relaxed),
            bytes_synced: self.bytes.load(Ordering::Relaxed),
            fsync_duration_us_sum: self.fsync_us_sum.load(Ordering::Relaxed),
            fsync_duration_buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            inline_appends: self.inline_appends.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_land_in_the_bucket_of_their_duration() {
        let m = MetricsCells::default();
        m.record_fsync(3, 300, Duration::from_micros(40));
        m.record_fsync(1, 100, Duration::from_micros(700));
        m.record_fsync(1, 100, Duration::from_secs(5));
        let s = m.snapshot();
        assert_eq!((s.fsyncs, s.records_synced, s.bytes_synced), (3, 5, 500));
        assert_eq!(s.fsync_duration_buckets[0], 1);
        assert_eq!(s.fsync_duration_buckets[4], 1);
        assert_eq!(s.fsync_duration_buckets[FSYNC_DURATION_BUCKETS_US.len()], 1);
    }
}
