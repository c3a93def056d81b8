//! # cairn-wal
//!
//! The durable log under Cairn's Raft: a directory of fixed-size, preallocated segment files
//! holding typed records (entries with index and term, hard state, snapshot markers, metadata),
//! each framed with its length, type and a CRC that chains across records, so that a torn tail
//! is recognised and cut off while corruption before the tail refuses to open with an error
//! naming the file and offset. Concurrent appenders share fsyncs (group commit): an append
//! returns only once its records are durable.
//!
//! The log stores opaque records: it knows nothing of Raft's rules, of etcd, or of the storage
//! engine.
//!
//! Status: the log is being built (see the cairn-wal issue).
