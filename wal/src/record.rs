//! The typed records the log stores, and their body encodings (see the crate docs' table).

/// A Raft log entry; the payload is opaque to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// Raft's persistent vote state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// Marks that a snapshot covers every entry up to and including `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
}

/// Identity of the cluster and of this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// A record callers append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapshotMarker),
    Metadata(Metadata),
}

/// Every record kind on disk, including the log's own truncation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogRecord {
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapshotMarker),
    Metadata(Metadata),
    Truncate { from_index: u64 },
}

pub(crate) const KIND_ENTRY: u8 = 1;
pub(crate) const KIND_HARD_STATE: u8 = 2;
pub(crate) const KIND_SNAPSHOT: u8 = 3;
pub(crate) const KIND_METADATA: u8 = 4;
pub(crate) const KIND_TRUNCATE: u8 = 5;

/// Bytes of an entry body before its payload (index, term).
pub(crate) const ENTRY_PREFIX_BYTES: usize = 16;

impl From<Record> for LogRecord {
    fn from(r: Record) -> Self {
        match r {
            Record::Entry(e) => LogRecord::Entry(e),
            Record::HardState(h) => LogRecord::HardState(h),
            Record::Snapshot(s) => LogRecord::Snapshot(s),
            Record::Metadata(m) => LogRecord::Metadata(m),
        }
    }
}

impl LogRecord {
    pub(crate) fn kind(&self) -> u8 {
        match self {
            LogRecord::Entry(_) => KIND_ENTRY,
            LogRecord::HardState(_) => KIND_HARD_STATE,
            LogRecord::Snapshot(_) => KIND_SNAPSHOT,
            LogRecord::Metadata(_) => KIND_METADATA,
            LogRecord::Truncate { .. } => KIND_TRUNCATE,
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        match self {
            LogRecord::Entry(e) => ENTRY_PREFIX_BYTES + e.payload.len(),
            LogRecord::HardState(_) => 24,
            LogRecord::Snapshot(_) | LogRecord::Metadata(_) => 16,
            LogRecord::Truncate { .. } => 8,
        }
    }

    /// Appends the body bytes to `out`.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        let before = out.len();
        match self {
            LogRecord::Entry(e) => {
                out.extend_from_slice(&e.index.to_le_bytes());
                out.extend_from_slice(&e.term.to_le_bytes());
                out.extend_from_slice(&e.payload);
            }
            LogRecord::HardState(h) => {
                for v in [h.term, h.vote, h.commit] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            LogRecord::Snapshot(s) => {
                out.extend_from_slice(&s.index.to_le_bytes());
                out.extend_from_slice(&s.term.to_le_bytes());
            }
            LogRecord::Metadata(m) => {
                out.extend_from_slice(&m.cluster_id.to_le_bytes());
                out.extend_from_slice(&m.member_id.to_le_bytes());
            }
            LogRecord::Truncate { from_index } => {
                out.extend_from_slice(&from_index.to_le_bytes());
            }
        }
        // The frame header's length field was computed from body_len.
        debug_assert_eq!(out.len() - before, self.body_len());
    }

    /// Decodes a body of the given kind; `None` if the kind is unknown or the length is wrong
    /// for a fixed-size kind.
    pub(crate) fn decode(kind: u8, body: &[u8]) -> Option<LogRecord> {
        let word = |i: usize| -> Option<u64> {
            let bytes: [u8; 8] = body.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        };
        match kind {
            KIND_ENTRY if body.len() >= ENTRY_PREFIX_BYTES => Some(LogRecord::Entry(Entry {
                index: word(0)?,
                term: word(1)?,
                payload: body[ENTRY_PREFIX_BYTES..].to_vec(),
            })),
            KIND_HARD_STATE if body.len() == 24 => Some(LogRecord::HardState(HardState {
                term: word(0)?,
                vote: word(1)?,
                commit: word(2)?,
            })),
            KIND_SNAPSHOT if body.len() == 16 => Some(LogRecord::Snapshot(SnapshotMarker {
                index: word(0)?,
                term: word(1)?,
            })),
            KIND_METADATA if body.len() == 16 => Some(LogRecord::Metadata(Metadata {
                cluster_id: word(0)?,
                member_id: word(1)?,
            })),
            KIND_TRUNCATE if body.len() == 8 => Some(LogRecord::Truncate {
                from_index: word(0)?,
            }),
            _ => None,
        }
    }

    /// The smallest and largest valid body lengths of a kind (`None`: unknown kind).
    pub(crate) fn body_len_bounds(kind: u8) -> Option<(usize, usize)> {
        match kind {
            KIND_ENTRY => Some((ENTRY_PREFIX_BYTES, usize::MAX)),
            KIND_HARD_STATE => Some((24, 24)),
            KIND_SNAPSHOT | KIND_METADATA => Some((16, 16)),
            KIND_TRUNCATE => Some((8, 8)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_round_trips_through_its_body() {
        let records = [
            LogRecord::Entry(Entry {
                index: 7,
                term: 3,
                payload: b"hello".to_vec(),
            }),
            LogRecord::Entry(Entry {
                index: u64::MAX,
                term: 0,
                payload: vec![],
            }),
            LogRecord::HardState(HardState {
                term: 1,
                vote: 2,
                commit: 3,
            }),
            LogRecord::Snapshot(SnapshotMarker { index: 9, term: 4 }),
            LogRecord::Metadata(Metadata {
                cluster_id: 11,
                member_id: 12,
            }),
            LogRecord::Truncate { from_index: 5 },
        ];
        for r in records {
            let mut body = Vec::new();
            r.encode_body(&mut body);
            assert_eq!(LogRecord::decode(r.kind(), &body), Some(r));
        }
    }

    #[test]
    fn fixed_size_kinds_reject_wrong_lengths_and_unknown_kinds() {
        assert_eq!(LogRecord::decode(KIND_HARD_STATE, &[0; 16]), None);
        assert_eq!(LogRecord::decode(KIND_ENTRY, &[0; 15]), None);
        assert_eq!(LogRecord::decode(0, &[0; 16]), None);
        assert_eq!(LogRecord::decode(6, &[0; 16]), None);
    }
}
