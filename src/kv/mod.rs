//! etcd's key-value request semantics over the MVCC store: validation before consensus
//! ([`validate`]), and Range, Put, DeleteRange and Txn as etcd applies them ([`range`],
//! [`txn`]), with etcd's exact errors ([`error`]). `docs/etcd-kv-semantics.md` records the
//! behaviour these follow, quirks included.

pub mod error;
pub mod go_sort;
pub mod range;
pub mod txn;
pub mod validate;
pub mod view;

#[cfg(test)]
mod tests;

pub use error::KvError;
pub use range::execute_range;
pub use txn::{execute_delete, execute_put, execute_txn};
pub use view::{KvRead, KvWrite, PinnedRead, ReadOnly};
