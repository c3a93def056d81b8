//! The crate's one error type.

use crate::PageId;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with the context an operator needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an I/O operation.
    #[error("I/O error while {action}: {source}")]
    Io {
        /// What the engine was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A page's content is not what the format allows.
    #[error("corrupt page {page}: {reason}")]
    Corrupt {
        /// The page that failed validation.
        page: PageId,
        /// What was wrong with it.
        reason: String,
    },
    /// Another handle (in this or another process) holds the file's lock.
    #[error("database file is locked by another handle")]
    Locked,
    /// An earlier commit failed part-way; the file's state is unknown until reopened.
    #[error("database is poisoned by an earlier failed commit ({0}); reopen it")]
    Poisoned(String),
    /// `compact_to` was given a file that already holds a database with commits.
    #[error("compaction target {0} is not empty")]
    CompactionTargetNotEmpty(std::path::PathBuf),
    /// The named bucket does not exist.
    #[error("bucket {0:?} does not exist")]
    BucketNotFound(String),
    /// `create_bucket` of a name that already exists.
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    /// A key longer than [`crate::MAX_KEY_BYTES`].
    #[error("key of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// A value longer than [`crate::MAX_VALUE_BYTES`].
    #[error("value of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
}

impl Error {
    pub(crate) fn corrupt(page: PageId, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            page,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { action, source }
    }
}
