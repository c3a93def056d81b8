//! Revisions: the logical clock of the key space.
//!
//! Every write transaction gets the next `main` revision; each change inside it gets the next
//! `sub` revision, so `(main, sub)` orders every change ever made. Stored records are keyed by
//! their revision in big-endian form, so that the storage engine's byte order is revision
//! order, and a tombstone (a deletion) carries a one-byte marker after it.

use std::fmt;

/// Length of an encoded revision: main (8 bytes), separator, sub (8 bytes).
pub const REVISION_BYTES: usize = 17;
/// Length of an encoded revision with the tombstone marker.
pub const TOMBSTONE_REVISION_BYTES: usize = REVISION_BYTES + 1;

const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARKER: u8 = b't';

/// The position of one change in the history of the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The write transaction (etcd's "revision" as clients see it).
    pub main: i64,
    /// The change within that transaction, from 0.
    pub sub: i64,
}

/// A stored record's revision, and whether the record is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey {
    pub revision: Revision,
    pub tombstone: bool,
}

/// A record key that is not a valid encoded revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed revision key of {len} bytes: {bytes:02x?}")]
pub struct RevisionKeyError {
    pub len: usize,
    pub bytes: Vec<u8>,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The encoding under which the change's record is stored.
    pub fn to_record_key(self, tombstone: bool) -> Vec<u8> {
        // Negative revisions never exist: big-endian order equals numeric order only for them.
        debug_assert!(self.main >= 0 && self.sub >= 0, "negative revision {self}");
        let mut out = Vec::with_capacity(TOMBSTONE_REVISION_BYTES);
        out.extend_from_slice(&self.main.to_be_bytes());
        out.push(SEPARATOR);
        out.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            out.push(TOMBSTONE_MARKER);
        }
        out
    }

    /// The smallest record key of revision `main` (sub 0, either kind): a scan bound.
    pub fn main_bound(main: i64) -> Vec<u8> {
        Revision::new(main, 0).to_record_key(false)
    }
}

impl RecordKey {
    pub fn decode(bytes: &[u8]) -> Result<Self, RevisionKeyError> {
        let error = || RevisionKeyError {
            len: bytes.len(),
            bytes: bytes
                .iter()
                .copied()
                .take(TOMBSTONE_REVISION_BYTES)
                .collect(),
        };
        let tombstone = match bytes.len() {
            REVISION_BYTES => false,
            TOMBSTONE_REVISION_BYTES if bytes[REVISION_BYTES] == TOMBSTONE_MARKER => true,
            _ => return Err(error()),
        };
        if bytes[8] != SEPARATOR {
            return Err(error());
        }
        let main = i64::from_be_bytes(bytes[0..8].try_into().map_err(|_| error())?);
        let sub = i64::from_be_bytes(bytes[9..17].try_into().map_err(|_| error())?);
        if main < 0 || sub < 0 {
            return Err(error());
        }
        Ok(RecordKey {
            revision: Revision { main, sub },
            tombstone,
        })
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_keys_round_trip() {
        for tombstone in [false, true] {
            let revision = Revision::new(300, 2);
            let bytes = revision.to_record_key(tombstone);
            let decoded = RecordKey::decode(&bytes).expect("decodes");
            assert_eq!(
                decoded,
                RecordKey {
                    revision,
                    tombstone
                }
            );
        }
    }

    #[test]
    fn malformed_record_keys_are_refused() {
        let good = Revision::new(5, 1).to_record_key(false);
        let mut bad_separator = good.clone();
        bad_separator[8] = b'x';
        let mut bad_marker = good.clone();
        bad_marker.push(b'x');
        let negative = [&(-1i64).to_be_bytes()[..], b"_", &0i64.to_be_bytes()[..]].concat();
        for bytes in [
            vec![],
            good[..16].to_vec(),
            bad_separator,
            bad_marker,
            negative,
        ] {
            assert!(RecordKey::decode(&bytes).is_err(), "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn byte_order_is_revision_order(a in (0i64..1 << 40, 0i64..1000), b in (0i64..1 << 40, 0i64..1000)) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(ra.cmp(&rb), ra.to_record_key(false).cmp(&rb.to_record_key(false)));
        }
    }
}
