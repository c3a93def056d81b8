//! The log's typed errors. Each carries what an operator needs: file, offset, index.

use std::io;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error while opening, recovering or reading (not a write-path error).
    #[error("wal I/O error on {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    /// A write or fsync failed earlier; the log accepts nothing more (a failed fsync may have
    /// dropped dirty pages, so retrying could report success for lost data).
    #[error("wal is failed after a write/fsync error on {file}: {cause}; restart to recover")]
    Fatal { file: String, cause: String },
    /// Damage that cannot be a torn final write: refuses to open.
    #[error("wal segment {file} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    /// A segment in the middle of the sequence is missing.
    #[error(
        "wal segment number {expected_seq} is missing (found {found_file} after it at offset 0)"
    )]
    MissingSegment {
        expected_seq: u64,
        found_file: String,
    },
    /// The entries on disk skip or repeat an index.
    #[error(
        "wal index gap in {file} at offset {offset}: expected index {expected}, found {found}"
    )]
    IndexGap {
        file: String,
        offset: u64,
        expected: u64,
        found: u64,
    },
    /// An appended entry does not follow the last one; truncate first.
    #[error("entry index {found} does not follow the log (expected {expected})")]
    NonContiguous { expected: u64, found: u64 },
    /// `truncate_from` below the first entry still in the log.
    #[error("cannot truncate from index {index}: the log starts at {first_index}")]
    TruncateBeforeFirst { index: u64, first_index: u64 },
    /// `truncate_from` at or below the last snapshot marker: those entries are committed.
    #[error("cannot truncate from index {index}: the snapshot at {snapshot_index} covers it")]
    TruncateCoveredBySnapshot { index: u64, snapshot_index: u64 },
    /// A record does not fit into one segment.
    #[error("record of {bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    RecordTooLarge { bytes: u64, max_bytes: u64 },
    /// A read asked for entries already released.
    #[error("entry {index} was released; the log starts at {first_index}")]
    Compacted { index: u64, first_index: u64 },
    /// A read asked for entries not (yet) in the log.
    #[error("entry {index} is past the end of the log (next index {next_index})")]
    Unavailable { index: u64, next_index: u64 },
    /// The configuration is unusable.
    #[error("invalid wal configuration: {0}")]
    InvalidConfig(String),
    /// The log was shut down while the request waited.
    #[error("wal writer stopped")]
    Closed,
}

impl WalError {
    pub(crate) fn io(file: impl Into<String>, source: io::Error) -> Self {
        WalError::Io {
            file: file.into(),
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        WalError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
