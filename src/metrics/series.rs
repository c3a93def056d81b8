//! The values behind one time series: counters, gauges and histograms, each a handle around
//! atomics so that recording never takes a lock and handles can be cloned into hot paths.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::text::push_float;
use super::{Kind, MetricsError};

/// At most this many finite bucket bounds per histogram (etcd's largest uses 14).
pub const MAX_HISTOGRAM_BUCKETS: usize = 64;

/// What a family needs from the value type of its series.
pub trait Series: Clone + Send + Sync + 'static {
    /// Options a new series is made from (bucket bounds for histograms, nothing otherwise).
    type Options: Clone + Send + Sync + 'static;
    /// The `# TYPE` of a family of these.
    const KIND: Kind;
    /// A fresh series at zero.
    fn create(options: &Self::Options) -> Self;
    /// Appends this series' sample lines. `labels` is the rendered label list without braces
    /// (`a="x",b="y"`), empty for an unlabelled series.
    fn render(&self, name: &str, labels: &str, out: &mut String);
}

/// Appends `name{labels} ` (or `name ` without labels).
fn push_sample_prefix(out: &mut String, name: &str, suffix: &str, labels: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        // Relaxed: a counter is a statistic; no other memory is published through it.
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Series for Counter {
    type Options = ();
    const KIND: Kind = Kind::Counter;

    fn create(_: &()) -> Self {
        Self::default()
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        push_sample_prefix(out, name, "", labels);
        let _ = writeln!(out, "{}", self.get());
    }
}

/// A value that goes up and down, in whole units (bytes, indexes, 0/1 flags).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Sets 1 for true and 0 for false, the convention of `etcd_server_is_leader` and friends.
    pub fn set_bool(&self, value: bool) {
        self.set(i64::from(value));
    }

    /// Sets from an unsigned value (sizes, Raft indexes), saturating at `i64::MAX`.
    pub fn set_u64(&self, value: u64) {
        self.set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Series for Gauge {
    type Options = ();
    const KIND: Kind = Kind::Gauge;

    fn create(_: &()) -> Self {
        Self::default()
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        push_sample_prefix(out, name, "", labels);
        let _ = writeln!(out, "{}", self.get());
    }
}

/// A gauge with a fractional value (ratios, seconds), stored as the bits of an `f64`.
#[derive(Clone, Debug, Default)]
pub struct GaugeF64(Arc<AtomicU64>);

impl GaugeF64 {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Series for GaugeF64 {
    type Options = ();
    const KIND: Kind = Kind::Gauge;

    fn create(_: &()) -> Self {
        Self::default()
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        push_sample_prefix(out, name, "", labels);
        push_float(out, self.get());
        out.push('\n');
    }
}

/// The finite upper bounds of a histogram's buckets, checked once: non-empty, finite, strictly
/// increasing, at most [`MAX_HISTOGRAM_BUCKETS`]. The `+Inf` bucket is implicit.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets(Arc<[f64]>);

impl Buckets {
    pub fn new(bounds: &[f64]) -> Result<Self, MetricsError> {
        if bounds.is_empty() || bounds.len() > MAX_HISTOGRAM_BUCKETS {
            return Err(MetricsError::BucketCount {
                count: bounds.len(),
                max: MAX_HISTOGRAM_BUCKETS,
            });
        }
        for (i, bound) in bounds.iter().enumerate() {
            if !bound.is_finite() {
                return Err(MetricsError::BucketBound {
                    index: i,
                    reason: "not finite",
                });
            }
            if i > 0 && bounds[i - 1] >= *bound {
                return Err(MetricsError::BucketBound {
                    index: i,
                    reason: "not greater than the previous bound",
                });
            }
        }
        Ok(Self(bounds.into()))
    }

    /// `count` bounds starting at `start`, each `factor` times the previous (etcd's disk
    /// histograms are `exponential(0.001, 2.0, 14)`: 1 ms to 8.192 s).
    pub fn exponential(start: f64, factor: f64, count: usize) -> Result<Self, MetricsError> {
        if count > MAX_HISTOGRAM_BUCKETS {
            return Err(MetricsError::BucketCount {
                count,
                max: MAX_HISTOGRAM_BUCKETS,
            });
        }
        let mut bounds = Vec::with_capacity(count);
        let mut bound = start;
        for _ in 0..count {
            bounds.push(bound);
            bound *= factor;
        }
        Self::new(&bounds)
    }

    pub fn bounds(&self) -> &[f64] {
        &self.0
    }
}

/// Counts of observations in fixed buckets, their sum and count.
///
/// Each observation increments exactly one slot (its smallest bucket, or the overflow slot);
/// rendering reads every slot once and derives the cumulative `_bucket` lines and `_count` from
/// those same reads, so a scrape during concurrent observations is still self-consistent
/// (buckets non-decreasing, `+Inf` equal to `_count`). `_sum` is read separately and may include
/// an observation whose slot was read before it landed.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    buckets: Buckets,
    /// One slot per finite bound, then one for values above the last bound (or NaN).
    slots: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    pub fn new(buckets: &Buckets) -> Self {
        let slots = (0..=buckets.bounds().len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self(Arc::new(HistogramCells {
            buckets: buckets.clone(),
            slots,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, value: f64) {
        let cells = &self.0;
        let bounds = cells.buckets.bounds();
        // The first bound not below `value` (bounds are inclusive upper limits). NaN compares
        // false with everything, so it goes to the overflow slot explicitly, as in the
        // Prometheus Go client.
        let slot = if value.is_nan() {
            bounds.len()
        } else {
            bounds.partition_point(|bound| *bound < value)
        };
        debug_assert!(
            slot < cells.slots.len(),
            "partition_point is at most bounds.len()"
        );
        if let Some(cell) = cells.slots.get(slot) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        let _ = cells
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Records a duration in seconds, the unit of every `_seconds` histogram.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum_bits.load(Ordering::Relaxed))
    }
}

impl Series for Histogram {
    type Options = Buckets;
    const KIND: Kind = Kind::Histogram;

    fn create(buckets: &Buckets) -> Self {
        Self::new(buckets)
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let cells = &self.0;
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (bound, slot) in cells.buckets.bounds().iter().zip(cells.slots.iter()) {
            cumulative += slot.load(Ordering::Relaxed);
            let _ = write!(out, "{name}_bucket{{{labels}{separator}le=\"");
            push_float(out, *bound);
            let _ = writeln!(out, "\"}} {cumulative}");
        }
        if let Some(overflow) = cells.slots.last() {
            cumulative += overflow.load(Ordering::Relaxed);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
        );
        push_sample_prefix(out, name, "_sum", labels);
        push_float(out, self.sum());
        out.push('\n');
        push_sample_prefix(out, name, "_count", labels);
        let _ = writeln!(out, "{cumulative}");
    }
}
