//! Which keys a request names, in etcd's `key`/`range_end` convention.

use std::ops::Bound;

/// The keys a request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// Every key ≥ `start` and < `end`; no `end` means no upper bound (`range_end` "\0").
    Span {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// Reads etcd's convention: an empty `range_end` names `key` alone, `range_end` "\0" means
    /// every key from `key` on, anything else is the exclusive end. (A `key` of "\0" with
    /// `range_end` "\0" is every key, which falls out of the same rule.)
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span {
                start: key.to_vec(),
                end: None,
            },
            end => KeyRange::Span {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    /// Every key with `prefix` (etcd's "prefix + 1" range end).
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange::Span {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(single) => single == key,
            KeyRange::Span { start, end } => {
                key >= start.as_slice() && end.as_deref().is_none_or(|end| key < end)
            }
        }
    }

    /// The range as bounds over byte strings (an empty span when `end` ≤ `start`).
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(key) => (Bound::Included(key), Bound::Included(key)),
            KeyRange::Span { start, end } => (
                Bound::Included(start),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            ),
        }
    }

    /// True when no key can be in the range (`end` ≤ `start`).
    pub fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Span { start, end } => {
                end.as_deref().is_some_and(|end| end <= start.as_slice())
            }
        }
    }
}

/// The smallest key greater than every key with `prefix`, or `None` when there is none
/// (the prefix is empty or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_conventions() {
        assert!(KeyRange::from_etcd(b"a", b"").contains(b"a"));
        assert!(!KeyRange::from_etcd(b"a", b"").contains(b"ab"));
        let from_key = KeyRange::from_etcd(b"b", b"\0");
        assert!(
            from_key.contains(b"b") && from_key.contains(b"\xff\xff") && !from_key.contains(b"a")
        );
        let all = KeyRange::from_etcd(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"zzz"));
        let span = KeyRange::from_etcd(b"a", b"c");
        assert!(span.contains(b"a") && span.contains(b"bzz") && !span.contains(b"c"));
        assert!(KeyRange::from_etcd(b"c", b"a").is_empty());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
        let prefix = KeyRange::prefix(b"foo");
        assert!(prefix.contains(b"foo") && prefix.contains(b"foo\xff") && !prefix.contains(b"fop"));
    }
}
