//! Reading one segment's records and deciding what the first invalid position means: the clean
//! end, a torn last write (cut it), or corruption (refuse). The rules are the crate docs'
//! "Recovery on open".

use crate::error::WalError;
use crate::format::{
    chain_crc, frame_len, FrameHeader, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, SECTOR_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::record::LogRecord;

/// A valid record found by the scan.
pub(crate) struct ScannedRecord<'a> {
    pub offset: u64,
    pub kind: u8,
    pub body: &'a [u8],
    /// Chain CRC of the record before this one.
    pub prev_crc: u32,
}

/// How a segment's records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Offset just past the last valid record: where the next write goes.
    pub end: u64,
    /// Chain CRC of the last valid record.
    pub chain_crc: u32,
    /// A torn last write found from `end` on, with the number of bytes up to its last
    /// non-zero byte (to zero them before writing again).
    pub torn_bytes: Option<u64>,
}

/// Where the valid records stop.
enum Stop {
    /// A frame header of zeros (or the end of the segment).
    Zero { at: usize },
    /// A frame that fails its CRC or whose bytes are partly zero; `extent` is where its
    /// claimed body ends.
    Damaged { at: usize, extent: usize },
}

/// Scans a segment held in `buf` (the file's bytes, zero-extended to at least the segment
/// size), calling `visit` for every valid record in order.
pub(crate) fn scan_segment(
    file: &str,
    buf: &[u8],
    file_len: usize,
    start_chain: u32,
    is_last: bool,
    mut visit: impl FnMut(ScannedRecord<'_>) -> Result<(), WalError>,
) -> Result<ScanEnd, WalError> {
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut chain = start_chain;
    let stop = loop {
        if pos + FRAME_HEADER_BYTES > buf.len() {
            break Stop::Zero {
                at: pos.min(buf.len()),
            };
        }
        let h = FrameHeader::parse(&buf[pos..]);
        if h.is_zero() {
            break Stop::Zero { at: pos };
        }
        if h.body_len == 0 && h.kind == 0 && h.reserved == [0; 3] {
            // The sector holding the first half of a header straddling a sector boundary was
            // lost; only the torn-write rules can decide.
            break Stop::Damaged {
                at: pos,
                extent: pos + FRAME_HEADER_BYTES,
            };
        }
        if pos + FRAME_HEADER_BYTES > file_len {
            // The file ends inside this header (a file cut short): torn-write rules decide.
            break Stop::Damaged {
                at: pos,
                extent: pos + FRAME_HEADER_BYTES,
            };
        }
        let body_len = h.body_len as usize;
        let Some((min_len, max_len)) = LogRecord::body_len_bounds(h.kind) else {
            return Err(WalError::corrupt(
                file,
                pos as u64,
                format!("unknown record kind {}", h.kind),
            ));
        };
        if h.reserved != [0; 3] {
            return Err(WalError::corrupt(
                file,
                pos as u64,
                "non-zero reserved bytes in record header",
            ));
        }
        if body_len < min_len || body_len > max_len || pos + frame_len(body_len) > buf.len() {
            return Err(WalError::corrupt(
                file,
                pos as u64,
                format!(
                    "impossible body length {body_len} for record kind {}",
                    h.kind
                ),
            ));
        }
        let body_end = pos + FRAME_HEADER_BYTES + body_len;
        let body = &buf[pos + FRAME_HEADER_BYTES..body_end];
        let padding_ok = buf[body_end..pos + frame_len(body_len)]
            .iter()
            .all(|&b| b == 0);
        let write_offset_ok = (h.write_offset as usize) <= pos
            && h.write_offset as usize >= SEGMENT_HEADER_BYTES
            && h.write_offset as usize % FRAME_ALIGN_BYTES == 0;
        let crc = chain_crc(chain, &buf[pos..pos + 12], body);
        if crc != h.crc || !padding_ok || !write_offset_ok {
            break Stop::Damaged {
                at: pos,
                extent: body_end,
            };
        }
        visit(ScannedRecord {
            offset: pos as u64,
            kind: h.kind,
            body,
            prev_crc: chain,
        })?;
        chain = crc;
        pos += frame_len(body_len);
    };
    classify_stop(file, buf, file_len, stop, is_last, chain)
}

fn classify_stop(
    file: &str,
    buf: &[u8],
    file_len: usize,
    stop: Stop,
    is_last: bool,
    chain_crc: u32,
) -> Result<ScanEnd, WalError> {
    let (at, extent) = match stop {
        Stop::Zero { at } => (at, at),
        Stop::Damaged { at, extent } => (at, extent),
    };
    let nonzero_end = buf[at..].iter().rposition(|&b| b != 0).map(|p| at + p + 1);
    let clean = ScanEnd {
        end: at as u64,
        chain_crc,
        torn_bytes: None,
    };
    let Some(nonzero_end) = nonzero_end else {
        return Ok(clean);
    };
    if !is_last {
        return Err(WalError::corrupt(
            file,
            at as u64,
            "damaged or stray data after the last valid record of a segment that newer segments follow",
        ));
    }
    // A lost sector leaves zeros; a file cut short (its preallocated length lost) ends early.
    let torn_shape = extent > file_len
        || match stop {
            Stop::Zero { at } => piece_is_zero(buf, at),
            Stop::Damaged { at, extent } => any_sector_piece_zero(buf, at, extent),
        };
    if !torn_shape {
        return Err(WalError::corrupt(
            file,
            at as u64,
            "record fails its CRC and is not a torn write (no lost sector)",
        ));
    }
    if let Some(later) = later_write_evidence(buf, at) {
        return Err(WalError::corrupt(
            file,
            at as u64,
            format!("bad record followed by valid records written later (at offset {later})"),
        ));
    }
    debug_assert!(extent <= buf.len(), "extent was bounds-checked");
    Ok(ScanEnd {
        torn_bytes: Some((nonzero_end - at) as u64),
        ..clean
    })
}

/// The bytes from `at` to the end of its sector are all zero (what a lost sector leaves).
fn piece_is_zero(buf: &[u8], at: usize) -> bool {
    let sector = SECTOR_BYTES as usize;
    let end = ((at / sector + 1) * sector).min(buf.len());
    buf[at..end].iter().all(|&b| b == 0)
}

/// Some sector overlapping `[at, extent)` is zero from `max(sector start, at)` to its end.
fn any_sector_piece_zero(buf: &[u8], at: usize, extent: usize) -> bool {
    let sector = SECTOR_BYTES as usize;
    let last = extent.max(at + 1).min(buf.len()).saturating_sub(1) / sector;
    (at / sector..=last).any(|s| {
        let start = (s * sector).max(at);
        start < buf.len() && piece_is_zero(buf, start)
    })
}

/// Bound on the CRC work spent looking for later records, as a multiple of the segment size,
/// so a crafted payload cannot make opening slow; past it we refuse rather than guess.
const EVIDENCE_SCAN_BUDGET_SEGMENTS: usize = 4;

/// Finds proof that a write began after `at` — which means the write covering `at` had been
/// fsync'ed, so the damage at `at` is not a torn write: a plausible frame header whose write
/// offset is its own offset (the first record of a later write), or a pair of chained records
/// whose second one verifies and has a write offset past `at`. Returns the offset found.
fn later_write_evidence(buf: &[u8], at: usize) -> Option<u64> {
    let mut budget = buf.len() * EVIDENCE_SCAN_BUDGET_SEGMENTS;
    let mut q = at + FRAME_ALIGN_BYTES;
    while q + 2 * FRAME_HEADER_BYTES <= buf.len() {
        let Some(a_len) = plausible_frame(buf, q) else {
            q += FRAME_ALIGN_BYTES;
            continue;
        };
        let a = FrameHeader::parse(&buf[q..]);
        if a.write_offset as usize == q {
            // The first record of a write that began after `at`: a torn write has none.
            return Some(q as u64);
        }
        let r = q + a_len;
        let Some(b_len) = plausible_frame(buf, r) else {
            q += FRAME_ALIGN_BYTES;
            continue;
        };
        let b = FrameHeader::parse(&buf[r..]);
        let body = &buf[r + FRAME_HEADER_BYTES..r + FRAME_HEADER_BYTES + b.body_len as usize];
        budget = budget.saturating_sub(body.len() + FRAME_HEADER_BYTES);
        if budget == 0 {
            return Some(r as u64);
        }
        if chain_crc(a.crc, &buf[r..r + 12], body) == b.crc && b_len > 0 {
            if b.write_offset as usize > at {
                return Some(r as u64);
            }
            // A genuine record of the torn write itself: follow the chain from it.
            q = r;
            continue;
        }
        q += FRAME_ALIGN_BYTES;
    }
    None
}

/// If a plausible frame header (known kind, zero reserved bytes, fitting length) starts at
/// `q`, the frame's length.
fn plausible_frame(buf: &[u8], q: usize) -> Option<usize> {
    if q + FRAME_HEADER_BYTES > buf.len() {
        return None;
    }
    let h = FrameHeader::parse(&buf[q..]);
    let (min_len, max_len) = LogRecord::body_len_bounds(h.kind)?;
    let body_len = h.body_len as usize;
    if h.reserved != [0; 3] || body_len < min_len || body_len > max_len {
        return None;
    }
    let len = frame_len(body_len);
    (q + len <= buf.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_frame;
    use crate::record::{Entry, LogRecord};

    const SEG: usize = 4096;

    /// A segment buffer with `writes` separate writes of `per_write` 100-byte-payload entries.
    fn segment(writes: usize, per_write: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buf = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut chain = 0;
        let mut starts = Vec::new();
        let mut index = 1;
        for _ in 0..writes {
            let write_offset = buf.len() as u32;
            for _ in 0..per_write {
                starts.push(buf.len());
                let e = LogRecord::Entry(Entry {
                    index,
                    term: 1,
                    payload: vec![0xab; 100],
                });
                chain = encode_frame(&mut buf, &e, write_offset, chain);
                index += 1;
            }
        }
        buf.resize(SEG, 0);
        (buf, starts)
    }

    fn count(buf: &[u8], is_last: bool) -> Result<(usize, ScanEnd), WalError> {
        let mut n = 0;
        let end = scan_segment("seg", buf, buf.len(), 0, is_last, |_| {
            n += 1;
            Ok(())
        })?;
        Ok((n, end))
    }

    #[test]
    fn clean_segment_reads_every_record_and_ends_at_the_zeros() {
        let (buf, starts) = segment(3, 4);
        let (n, end) = count(&buf, true).unwrap();
        assert_eq!(n, 12);
        assert_eq!(end.torn_bytes, None);
        assert_eq!(end.end as usize, starts[11] + frame_len(116));
    }

    #[test]
    fn lost_sector_in_the_last_write_is_a_torn_tail() {
        let (mut buf, starts) = segment(3, 4);
        // The last write covers records 8..12; lose the sector holding record 11's start.
        let victim = starts[11] / 512;
        assert!(
            victim * 512 > starts[8],
            "the sector lies inside the last write"
        );
        buf[victim * 512..(victim + 1) * 512].fill(0);
        let (n, end) = count(&buf, true).unwrap();
        assert_eq!(n, 10);
        assert!(end.torn_bytes.is_some());
    }

    #[test]
    fn flipped_byte_before_a_later_write_refuses_to_open() {
        let (mut buf, starts) = segment(3, 4);
        buf[starts[2] + 40] ^= 1;
        let err = count(&buf, true).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { offset, .. } if offset == starts[2] as u64));
    }

    #[test]
    fn lost_sector_before_a_later_write_refuses_to_open() {
        let (mut buf, starts) = segment(3, 4);
        let victim = starts[1] / 512;
        buf[starts[1]..(victim + 1) * 512].fill(0);
        assert!(matches!(count(&buf, true), Err(WalError::Corrupt { .. })));
    }

    #[test]
    fn lost_bytes_followed_by_a_single_later_write_refuse_to_open() {
        let mut buf = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut chain = 0;
        let mut starts = Vec::new();
        for (i, write_offset) in [(1, 64u32), (2, 64), (3, 64), (4, 64), (5, 64), (6, 0)] {
            let at = buf.len();
            starts.push(at);
            let e = LogRecord::Entry(Entry {
                index: i,
                term: 1,
                payload: vec![0xab; 100],
            });
            let w = if write_offset == 0 {
                at as u32
            } else {
                write_offset
            };
            chain = encode_frame(&mut buf, &e, w, chain);
        }
        buf.resize(SEG, 0);
        // Lose records 3..5 of the first write; the second write (one record) survives.
        buf[starts[2]..starts[5]].fill(0);
        let err = count(&buf, true).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { offset, .. } if offset == starts[2] as u64));
    }

    #[test]
    fn damage_in_a_segment_followed_by_newer_segments_refuses_to_open() {
        let (mut buf, starts) = segment(1, 12);
        let victim = starts[11] / 512;
        buf[victim * 512..(victim + 1) * 512].fill(0);
        assert!(count(&buf, true).is_ok());
        assert!(matches!(count(&buf, false), Err(WalError::Corrupt { .. })));
    }
}
