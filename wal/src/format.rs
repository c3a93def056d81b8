//! Byte layout of segment headers and record frames (specified in the crate docs).

use crate::record::LogRecord;

pub(crate) const SEGMENT_HEADER_BYTES: usize = 64;
pub(crate) const FRAME_HEADER_BYTES: usize = 16;
/// Records start at multiples of this many bytes.
pub(crate) const FRAME_ALIGN_BYTES: usize = 8;
/// The unit a power loss tears writes at.
pub(crate) const SECTOR_BYTES: u64 = 512;
pub(crate) const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CAIRNWAL";
const SEGMENT_SUFFIX: &str = ".wal";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The fixed header at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seq: u64,
    pub first_index: u64,
    pub prev_crc: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        b[32..36].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header; the error says what is wrong.
    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(format!(
                "file is {} bytes, shorter than the segment header",
                b.len()
            ));
        }
        if &b[0..8] != MAGIC {
            return Err("bad magic: not a cairn-wal segment".into());
        }
        let stored = u32_at(b, 60);
        if crc32fast::hash(&b[0..60]) != stored {
            return Err("segment header CRC mismatch".into());
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        Ok(SegmentHeader {
            seq: u64_at(b, 16),
            first_index: u64_at(b, 24),
            prev_crc: u32_at(b, 32),
        })
    }
}

pub(crate) fn segment_file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// `(seq, first_index)` from a segment file name, `None` if it is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// Bytes a frame with a body of `body_len` bytes occupies, padding included.
pub(crate) fn frame_len(body_len: usize) -> usize {
    (FRAME_HEADER_BYTES + body_len).div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

/// A frame header as read from disk, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub body_len: u32,
    pub kind: u8,
    pub reserved: [u8; 3],
    pub write_offset: u32,
    pub crc: u32,
}

impl FrameHeader {
    pub(crate) fn parse(b: &[u8]) -> FrameHeader {
        debug_assert!(b.len() >= FRAME_HEADER_BYTES, "caller checks the bounds");
        FrameHeader {
            body_len: u32_at(b, 0),
            kind: b[4],
            reserved: [b[5], b[6], b[7]],
            write_offset: u32_at(b, 8),
            crc: u32_at(b, 12),
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.body_len == 0
            && self.kind == 0
            && self.reserved == [0; 3]
            && self.write_offset == 0
            && self.crc == 0
    }
}

/// The chain CRC of a frame: covers the previous chain value, the header's first 12 bytes and
/// the body.
pub(crate) fn chain_crc(prev_crc: u32, header12: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&prev_crc.to_le_bytes());
    h.update(&header12[..12]);
    h.update(body);
    h.finalize()
}

/// Appends one frame to `out` and returns its chain CRC.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    record: &LogRecord,
    write_offset: u32,
    prev_crc: u32,
) -> u32 {
    // Frames start aligned so that recovery's scan for later records can step by 8 bytes.
    debug_assert_eq!(out.len() % FRAME_ALIGN_BYTES, 0);
    let start = out.len();
    let body_len = record.body_len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[record.kind(), 0, 0, 0]);
    out.extend_from_slice(&write_offset.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    record.encode_body(out);
    let crc = chain_crc(
        prev_crc,
        &out[start..start + 12],
        &out[start + FRAME_HEADER_BYTES..],
    );
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + frame_len(body_len), 0);
    crc
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, HardState};

    #[test]
    fn segment_header_round_trips_and_detects_any_flipped_byte() {
        let h = SegmentHeader {
            seq: 3,
            first_index: 1000,
            prev_crc: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_BYTES {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(
                SegmentHeader::decode(&bad).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn segment_names_sort_by_sequence_and_round_trip() {
        let a = segment_file_name(2, 100);
        let b = segment_file_name(10, 5);
        assert!(a < b);
        assert_eq!(parse_segment_file_name(&a), Some((2, 100)));
        assert_eq!(parse_segment_file_name("x.wal"), None);
        assert_eq!(parse_segment_file_name(&format!("{a}.tmp")), None);
    }

    #[test]
    fn frames_are_aligned_and_their_crc_chains_on_the_previous_value() {
        let mut out = Vec::new();
        let e = LogRecord::Entry(Entry {
            index: 1,
            term: 1,
            payload: vec![9; 5],
        });
        let c1 = encode_frame(&mut out, &e, 64, 7);
        assert_eq!(out.len(), frame_len(21));
        assert_eq!(out.len() % 8, 0);
        let h = FrameHeader::parse(&out);
        assert_eq!(h.crc, c1);
        assert_eq!(c1, chain_crc(7, &out[..12], &out[16..37]));
        assert_ne!(c1, chain_crc(8, &out[..12], &out[16..37]));
        let hs = LogRecord::HardState(HardState::default());
        encode_frame(&mut out, &hs, 64, c1);
        assert_eq!(out.len() % 8, 0);
    }
}
