//! Which keys the load generator's requests use: fixed-size decimal keys over a key space,
//! picked in order or at random, alone, as a range, or as a transaction's distinct keys.

use clap::Args;

/// Which keys requests use.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Bytes per key.
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Distinct keys used.
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of at random.
    #[arg(long = "sequential-keys")]
    pub sequential_keys: bool,
    /// Put before every key (e.g. to clean up after with `del --prefix`).
    #[arg(long = "key-prefix", default_value = "")]
    pub key_prefix: String,
}

/// The key for index `i`: the decimal digits, zero-padded (or cut) to `size` bytes.
pub fn key_bytes(i: u64, size: usize) -> Vec<u8> {
    let digits = format!("{i:0size$}");
    digits.as_bytes()[digits.len() - size..].to_vec()
}

/// A small seedable generator (xorshift64*) per client: no shared state, reproducible.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl KeyArgs {
    pub(super) fn pick(&self, n: u64, rng: &mut Rng) -> Vec<u8> {
        self.key(self.pick_index(n, 1, rng))
    }

    /// The first of `span` consecutive keys, all inside the key space (the first key when the
    /// space is smaller than the span).
    fn pick_index(&self, n: u64, span: u64, rng: &mut Rng) -> u64 {
        let starts = self.key_space_size.saturating_sub(span.max(1)) + 1;
        if self.sequential_keys {
            n % starts
        } else {
            rng.next() % starts
        }
    }

    fn key(&self, index: u64) -> Vec<u8> {
        let key = key_bytes(index, self.key_size.max(1));
        if self.key_prefix.is_empty() {
            key
        } else {
            [self.key_prefix.as_bytes(), &key].concat()
        }
    }

    /// The range `[first, end)` of `span` keys from a picked one (`end` empty: one key).
    pub(super) fn pick_range(&self, n: u64, span: u64, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
        let first = self.pick_index(n, span, rng);
        if span <= 1 {
            return (self.key(first), Vec::new());
        }
        // Zero-padded decimal keys sort as their indexes do; the end is the smallest key
        // after the last one (the key after it could wrap to fewer digits).
        let mut end = self.key(first + span - 1);
        end.push(0);
        (self.key(first), end)
    }

    /// `count` distinct consecutive keys (wrapping around the key space) from a picked one;
    /// `count` is at most the key space (checked before the run).
    pub(super) fn pick_distinct(&self, n: u64, count: u64, rng: &mut Rng) -> Vec<Vec<u8>> {
        let space = self.key_space_size.max(1);
        let first = if self.sequential_keys {
            n.wrapping_mul(count) % space
        } else {
            rng.next() % space
        };
        (0..count.min(space))
            .map(|i| self.key((first + i) % space))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size() {
        assert_eq!(key_bytes(42, 8), b"00000042");
        assert_eq!(key_bytes(123_456, 3), b"456");
        let keys = KeyArgs {
            key_size: 4,
            key_space_size: 10,
            sequential_keys: true,
            key_prefix: String::new(),
        };
        let mut rng = Rng(1);
        assert_eq!(keys.pick(13, &mut rng), b"0003");
        let prefixed = KeyArgs {
            key_prefix: "p/".into(),
            ..keys.clone()
        };
        assert_eq!(prefixed.pick(13, &mut rng), b"p/0003");
        let random = KeyArgs {
            sequential_keys: false,
            ..keys
        };
        for n in 0..100 {
            let key = random.pick(n, &mut rng);
            let index: u64 = std::str::from_utf8(&key).unwrap().parse().unwrap();
            assert!(index < 10);
        }
    }

    #[test]
    fn multi_key_ranges_stay_inside_the_key_space() {
        let keys = KeyArgs {
            key_size: 4,
            key_space_size: 12,
            sequential_keys: false,
            key_prefix: "p/".into(),
        };
        let mut rng = Rng(7);
        for n in 0..200 {
            let (first, end) = keys.pick_range(n, 10, &mut rng);
            let index =
                |key: &[u8]| -> u64 { std::str::from_utf8(&key[2..6]).unwrap().parse().unwrap() };
            assert!(index(&first) <= 2, "{first:?}");
            // The end follows the tenth key: [first, end) holds exactly ten keys.
            assert_eq!(end, [keys.key(index(&first) + 9), vec![0]].concat());
            assert!(keys.key(index(&first) + 9) < end && keys.key(index(&first) + 10) > end);
        }
        assert_eq!(
            keys.pick_range(5, 1, &mut rng).1,
            b"",
            "one key: no range end"
        );
        let small = KeyArgs {
            key_space_size: 3,
            ..keys
        };
        assert_eq!(
            small.pick_range(9, 10, &mut rng).0,
            b"p/0000",
            "the span outgrows the space"
        );
        // Two-digit keys: the range ending at the last key must not wrap to "00".
        let wide = KeyArgs {
            key_size: 2,
            key_space_size: 100,
            sequential_keys: true,
            key_prefix: String::new(),
        };
        let (first, end) = wide.pick_range(90, 10, &mut rng);
        assert_eq!(
            (first.as_slice(), end.as_slice()),
            (&b"90"[..], &b"99\0"[..])
        );
    }

    #[test]
    fn transactions_put_distinct_keys() {
        for sequential_keys in [false, true] {
            let keys = KeyArgs {
                key_size: 3,
                key_space_size: 7,
                sequential_keys,
                key_prefix: String::new(),
            };
            let mut rng = Rng(3);
            for n in 0..50 {
                let mut picked = keys.pick_distinct(n, 7, &mut rng);
                assert_eq!(picked.len(), 7);
                picked.sort();
                picked.dedup();
                assert_eq!(picked.len(), 7, "all seven keys, each once");
            }
        }
    }
}
