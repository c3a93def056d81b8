//! Opening an existing log: find the segments, check that they form one unbroken sequence,
//! replay every record into the in-memory index, and cut a torn tail.

use std::sync::Arc;

use crate::error::WalError;
use crate::format::{
    parse_segment_file_name, u64_at, SegmentHeader, SEGMENT_HEADER_BYTES, TMP_SUFFIX,
};
use crate::index::{EntryIndex, EntryLoc};
use crate::io::{WalDir, WalFile};
use crate::record::{
    HardState, LogRecord, Metadata, SnapshotMarker, ENTRY_PREFIX_BYTES, KIND_ENTRY,
};
use crate::segment_scan::{scan_segment, ScannedRecord};

/// The latest non-entry state of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogState {
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotMarker>,
    pub metadata: Option<Metadata>,
}

/// One segment file present in the directory.
#[derive(Clone)]
pub(crate) struct SegmentMeta {
    pub seq: u32,
    pub first_index: u64,
    pub name: String,
    pub file: Arc<dyn WalFile>,
}

/// A torn final write that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file (as the I/O layer describes it).
    pub file: String,
    /// Offset of the first byte cut.
    pub offset: u64,
    /// Bytes zeroed, up to the last non-zero byte of the torn write.
    pub bytes: u64,
}

/// Everything replay learned.
pub(crate) struct RecoveredLog {
    pub segments: Vec<SegmentMeta>,
    pub index: EntryIndex,
    pub state: LogState,
    pub chain_crc: u32,
    /// Where the next write into the last segment goes.
    pub write_pos: u64,
    pub torn_tail: Option<TornTail>,
}

fn io_err(dir: &dyn WalDir, name: &str) -> impl FnOnce(std::io::Error) -> WalError {
    let file = dir.describe(name);
    move |e| WalError::io(file, e)
}

/// Recovers the log in `dir`; `Ok(None)` if it holds no segments yet.
pub(crate) fn recover(
    dir: &dyn WalDir,
    segment_bytes: u64,
) -> Result<Option<RecoveredLog>, WalError> {
    let names = dir.list().map_err(io_err(dir, "."))?;
    let mut removed_tmp = false;
    let mut found: Vec<(u64, u64, String)> = Vec::new();
    for name in names {
        if name.ends_with(TMP_SUFFIX) {
            // An incomplete rotation: nothing in it was ever acknowledged.
            dir.remove(&name).map_err(io_err(dir, &name))?;
            removed_tmp = true;
        } else if let Some((seq, first)) = parse_segment_file_name(&name) {
            found.push((seq, first, name));
        }
    }
    if removed_tmp {
        dir.sync_dir().map_err(io_err(dir, "."))?;
    }
    found.sort();
    if found.is_empty() {
        return Ok(None);
    }
    for pair in found.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(WalError::MissingSegment {
                expected_seq: pair[0].0 + 1,
                found_file: dir.describe(&pair[1].2),
            });
        }
    }

    let mut index = EntryIndex::new(found[0].1);
    let mut state = LogState::default();
    let mut chain = 0u32;
    let mut segments = Vec::with_capacity(found.len());
    let mut buf: Vec<u8> = Vec::new();
    let mut torn_tail = None;
    let mut write_pos = SEGMENT_HEADER_BYTES as u64;
    let count = found.len();
    for (i, (seq, first_index, name)) in found.into_iter().enumerate() {
        let describe = dir.describe(&name);
        let is_last = i + 1 == count;
        let file = dir.open(&name).map_err(io_err(dir, &name))?;
        let file_len = file.size().map_err(io_err(dir, &name))?;
        let Ok(file_len_usize) = usize::try_from(file_len) else {
            return Err(WalError::corrupt(&describe, 0, "segment file too large"));
        };
        // Bytes past the end of a short file read as zeros, like unused preallocated space.
        let virtual_len = file_len_usize.max(usize::try_from(segment_bytes).unwrap_or(usize::MAX));
        if virtual_len > u32::MAX as usize {
            return Err(WalError::corrupt(&describe, 0, "segment larger than 4 GiB"));
        }
        buf.clear();
        buf.resize(virtual_len, 0);
        file.read_at(0, &mut buf[..file_len_usize])
            .map_err(io_err(dir, &name))?;
        let header = SegmentHeader::decode(&buf).map_err(|r| WalError::corrupt(&describe, 0, r))?;
        if header.seq != seq || header.first_index != first_index {
            return Err(WalError::corrupt(
                &describe,
                16,
                "header does not match the file name",
            ));
        }
        let Ok(seq32) = u32::try_from(seq) else {
            return Err(WalError::corrupt(
                &describe,
                16,
                "segment number beyond 2^32",
            ));
        };
        if i == 0 {
            chain = header.prev_crc;
        } else {
            if header.first_index != index.next_index() {
                return Err(WalError::IndexGap {
                    file: describe,
                    offset: 24,
                    expected: index.next_index(),
                    found: header.first_index,
                });
            }
            if header.prev_crc != chain {
                return Err(WalError::corrupt(
                    &describe,
                    32,
                    "segment does not continue the previous segment's CRC chain",
                ));
            }
        }
        let end = scan_segment(&describe, &buf, file_len_usize, chain, is_last, |rec| {
            replay_record(&describe, seq32, rec, &mut index, &mut state)
        })?;
        chain = end.chain_crc;
        if is_last {
            write_pos = end.end;
            if let Some(bytes) = end.torn_bytes {
                cut_torn_tail(&*file, end.end, bytes, file_len).map_err(io_err(dir, &name))?;
                torn_tail = Some(TornTail {
                    file: describe.clone(),
                    offset: end.end,
                    bytes,
                });
            }
            if file_len < segment_bytes {
                file.set_len(segment_bytes).map_err(io_err(dir, &name))?;
                file.sync_data().map_err(io_err(dir, &name))?;
            }
        }
        segments.push(SegmentMeta {
            seq: seq32,
            first_index,
            name,
            file,
        });
    }
    Ok(Some(RecoveredLog {
        segments,
        index,
        state,
        chain_crc: chain,
        write_pos,
        torn_tail,
    }))
}

/// Zeroes the torn bytes (only those inside the file) and makes that durable, so that later
/// writes never end next to stale bytes of the torn write.
fn cut_torn_tail(file: &dyn WalFile, at: u64, bytes: u64, file_len: u64) -> std::io::Result<()> {
    let end = (at + bytes).min(file_len);
    if end > at {
        let zeros = vec![0u8; (end - at) as usize];
        file.write_at(at, &zeros)?;
        file.sync_data()?;
    }
    Ok(())
}

fn replay_record(
    file: &str,
    seq: u32,
    rec: ScannedRecord<'_>,
    index: &mut EntryIndex,
    state: &mut LogState,
) -> Result<(), WalError> {
    let next = index.next_index();
    if rec.kind == KIND_ENTRY {
        // Replay needs only the index; the payload stays on disk until read. The scan checked
        // the body length bounds.
        debug_assert!(rec.body.len() >= ENTRY_PREFIX_BYTES);
        let entry_index = u64_at(rec.body, 0);
        if entry_index != next {
            return Err(WalError::IndexGap {
                file: file.to_string(),
                offset: rec.offset,
                expected: next,
                found: entry_index,
            });
        }
        index.push(
            entry_index,
            EntryLoc {
                seq,
                offset: rec.offset as u32,
                body_len: rec.body.len() as u32,
                prev_crc: rec.prev_crc,
            },
        );
        return Ok(());
    }
    let Some(record) = LogRecord::decode(rec.kind, rec.body) else {
        return Err(WalError::corrupt(
            file,
            rec.offset,
            "undecodable record body",
        ));
    };
    match record {
        LogRecord::Entry(_) => unreachable_entry(file, rec.offset)?,
        LogRecord::Truncate { from_index } => {
            if from_index >= next {
                return Err(WalError::corrupt(
                    file,
                    rec.offset,
                    format!("truncation from {from_index} past the end of the log ({next})"),
                ));
            }
            index.truncate_from(from_index);
        }
        LogRecord::Snapshot(s) => {
            if s.index >= next {
                let Some(after) = s.index.checked_add(1) else {
                    return Err(WalError::corrupt(
                        file,
                        rec.offset,
                        "snapshot index overflows",
                    ));
                };
                index.reset(after);
            }
            state.snapshot = Some(s);
        }
        LogRecord::HardState(h) => state.hard_state = Some(h),
        LogRecord::Metadata(m) => state.metadata = Some(m),
    }
    Ok(())
}

/// Entries are handled before decoding; reaching this is a bug, reported as corruption rather
/// than a panic.
fn unreachable_entry(file: &str, offset: u64) -> Result<(), WalError> {
    Err(WalError::corrupt(
        file,
        offset,
        "entry record reached the generic decoder",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_frame, segment_file_name};
    use crate::record::Entry;
    use crate::sim_disk::SimDisk;

    const SEG: u64 = 4096;

    /// Writes a segment holding entries with the given indexes; returns their offsets and the
    /// final chain CRC.
    fn write_segment(
        disk: &SimDisk,
        seq: u64,
        first: u64,
        prev_crc: u32,
        indexes: &[u64],
    ) -> (Vec<u64>, u32) {
        let header = SegmentHeader {
            seq,
            first_index: first,
            prev_crc,
        };
        let mut bytes = header.encode().to_vec();
        let mut chain = prev_crc;
        let mut offsets = Vec::new();
        for &i in indexes {
            offsets.push(bytes.len() as u64);
            let e = LogRecord::Entry(Entry {
                index: i,
                term: 1,
                payload: vec![1; 10],
            });
            let at = bytes.len() as u32;
            chain = encode_frame(&mut bytes, &e, at, chain);
        }
        bytes.resize(SEG as usize, 0);
        let name = segment_file_name(seq, first);
        let f = disk.dir().create(&name, SEG).unwrap();
        f.write_at(0, &bytes).unwrap();
        disk.overwrite_file(&name, bytes);
        (offsets, chain)
    }

    #[test]
    fn an_entry_that_skips_an_index_refuses_to_open_at_its_offset() {
        let disk = SimDisk::new();
        let (offsets, _) = write_segment(&disk, 1, 1, 0, &[1, 2, 4]);
        match recover(&*disk.dir(), SEG) {
            Err(WalError::IndexGap {
                offset,
                expected: 3,
                found: 4,
                ..
            }) => assert_eq!(offset, offsets[2]),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_segment_starting_past_the_previous_end_refuses_to_open() {
        let disk = SimDisk::new();
        let (_, chain) = write_segment(&disk, 1, 1, 0, &[1, 2, 3]);
        write_segment(&disk, 2, 5, chain, &[5, 6]);
        match recover(&*disk.dir(), SEG) {
            Err(WalError::IndexGap {
                file,
                offset: 24,
                expected: 4,
                found: 5,
            }) => {
                assert!(file.contains(&segment_file_name(2, 5)));
            }
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_segment_from_another_chain_refuses_to_open() {
        let disk = SimDisk::new();
        let (_, chain) = write_segment(&disk, 1, 1, 0, &[1, 2, 3]);
        write_segment(&disk, 2, 4, chain ^ 1, &[4, 5]);
        assert!(matches!(
            recover(&*disk.dir(), SEG),
            Err(WalError::Corrupt { offset: 32, .. })
        ));
    }
}
