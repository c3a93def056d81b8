//! A latency histogram with bounded relative error (HDR-style, log-linear buckets): every
//! recorded value lands in a bucket at most 1/64 (about 1.6%) wider than the value, so
//! percentiles are within that of the truth, in fixed memory, with O(1) recording.

/// Values below this are recorded exactly.
const LINEAR_LIMIT: u64 = 128;
/// Sub-buckets per power of two above the linear range.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Powers of two covered above the linear range (up to 2^63).
const EXPONENTS: u64 = 64 - 7;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
    sum_squares: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (LINEAR_LIMIT + EXPONENTS * SUB_BUCKETS) as usize],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
            sum_squares: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR_LIMIT {
        return value as usize;
    }
    let exponent = 63 - u64::from(value.leading_zeros());
    let sub = (value >> (exponent - u64::from(SUB_BUCKET_BITS))) & (SUB_BUCKETS - 1);
    (LINEAR_LIMIT + (exponent - 7) * SUB_BUCKETS + sub) as usize
}

/// The smallest value of a bucket.
fn bucket_floor(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR_LIMIT {
        return bucket;
    }
    let exponent = (bucket - LINEAR_LIMIT) / SUB_BUCKETS + 7;
    let sub = (bucket - LINEAR_LIMIT) % SUB_BUCKETS;
    (1 << exponent) | (sub << (exponent - u64::from(SUB_BUCKET_BITS)))
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
        self.sum_squares += u128::from(value) * u128::from(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum as f64 / self.total as f64
    }

    pub fn stddev(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let mean = self.mean();
        let variance = self.sum_squares as f64 / self.total as f64 - mean * mean;
        variance.max(0.0).sqrt()
    }

    /// The value at quantile `q` (0..=1): the floor of the bucket holding it, clamped to the
    /// recorded range.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_floor(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(
            (h.quantile(0.5), h.quantile(0.99), h.max(), h.min()),
            (50, 99, 100, 1)
        );
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_bucket_error(mut values in prop::collection::vec(1u64..10_000_000, 1..500), q in 0.0f64..1.0) {
            let mut h = Histogram::default();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let exact = values[rank - 1];
            let got = h.quantile(q);
            prop_assert!(got <= exact, "{got} > {exact}");
            prop_assert!(exact - got <= exact / 64 + 1, "{got} vs {exact}");
        }

        #[test]
        fn merging_equals_recording_together(a in prop::collection::vec(0u64..1 << 40, 0..100), b in prop::collection::vec(0u64..1 << 40, 0..100)) {
            let (mut ha, mut hb, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
            for &v in &a { ha.record(v); all.record(v); }
            for &v in &b { hb.record(v); all.record(v); }
            ha.merge(&hb);
            prop_assert_eq!(&ha.counts, &all.counts);
            prop_assert_eq!((ha.total, ha.max, ha.min()), (all.total, all.max, all.min()));
        }
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            1 << 20,
            u64::MAX / 2,
            u64::MAX,
        ] {
            let bucket = bucket_of(v);
            assert!(bucket >= previous);
            assert!(bucket_floor(bucket) <= v);
            previous = bucket;
        }
    }
}
