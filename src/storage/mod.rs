//! The server's storage engines behind the interfaces the upper layers use: the B+tree file
//! as the MVCC store's backend, and (with the server) the WAL as Raft's log storage.

pub mod btree_backend;

pub use btree_backend::BtreeBackend;
