//! # cairn-btree
//!
//! The page store under Cairn's MVCC key space: one memory-mapped file of copy-on-write B+tree
//! pages holding any number of named trees of opaque byte keys and values. One write
//! transaction at a time; any number of read transactions, each a consistent snapshot that the
//! writer never disturbs. Two checksummed meta pages make every commit atomic, freed pages are
//! reused only once no reader can see them, and `compact_to` writes a defragmented copy.
//!
//! The engine knows nothing of etcd, MVCC or Raft: it stores bytes.
//!
//! Status: the engine is being built (see the cairn-btree issue).
