//! Generated code for the wire protocols in `proto/`.
//!
//! Module paths mirror the protobuf packages, because the generated code refers across packages
//! with relative paths (`super::mvccpb::KeyValue` from `etcdserverpb`). The package names are
//! part of every gRPC method path (`/etcdserverpb.KV/Range`), so they are never renamed here.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

/// etcd's MVCC record types: `KeyValue` and watch `Event`.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's auth records: `User`, `Role`, `Permission`.
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's v3 services: KV, Watch, Lease, Cluster, Maintenance, Auth.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// etcd's distributed lock service (`/v3lockpb.Lock/*`).
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}

/// etcd's leader election service (`/v3electionpb.Election/*`).
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}

/// Cairn's own protocols (not etcd's).
pub mod cairn {
    /// The payload of Raft entries (an on-disk format: it lives in the WAL).
    pub mod entry {
        /// Version 1 of the entry payload.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/cairn.entry.v1.rs"));
        }
    }

    /// The stored lease record (an on-disk format: it lives in the key-space file).
    pub mod lease {
        /// Version 1 of the lease record.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/cairn.lease.v1.rs"));
        }
    }

    /// Member-to-member traffic.
    pub mod peer {
        /// Version 1 of the peer protocol: Raft messages and snapshot streaming.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/cairn.peer.v1.rs"));
        }
    }
}

/// The encoded `FileDescriptorSet` of every compiled .proto, as produced by the build. Tests use
/// it to check method paths and field numbers against etcd's wire facts; a reflection service
/// could serve it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));
