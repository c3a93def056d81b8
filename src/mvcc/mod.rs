//! The multi-version key space etcd clients see: revisions, key histories, range reads at any
//! revision not compacted, write transactions and compaction, over any storage engine that
//! offers buckets, snapshots and one atomic writer ([`backend::Backend`]).

pub mod backend;
pub mod history;
pub mod key_index;
pub mod key_range;
pub mod revision;
pub mod store;
pub mod tree_index;
pub mod write_batch;

#[cfg(test)]
pub(crate) mod model_tests;

pub use backend::{Backend, BackendError, Bucket, MemBackend};
pub use key_range::KeyRange;
pub use revision::Revision;
pub use store::{MvccError, MvccStore, RangeOptions, RangeResult, META_APPLIED_INDEX};
pub use write_batch::{Committed, WriteBatch};
