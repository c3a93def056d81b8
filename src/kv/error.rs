//! Why a key-value request failed. Each error's text is exactly the message etcd sends, since
//! clients match on it; the gRPC code belongs to the API edge ([`KvError::grpc_code`]).

use crate::mvcc::MvccError;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// etcd 3.5 crashes on an unknown sort target; Cairn refuses the request instead.
    #[error("etcdserver: invalid sort target {0}")]
    InvalidSortTarget(i32),
    /// A membership request named a member that is not (or no longer) in the cluster.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A deposed leader's lease duty reached the log in a later term (see `leader_term` in
    /// the entry format): it was dropped, not applied.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The storage layer failed; the server stops serving writes rather than guess.
    #[error("etcdserver: {0}")]
    Storage(MvccError),
}

impl From<MvccError> for KvError {
    fn from(err: MvccError) -> Self {
        match err {
            MvccError::Compacted { .. } => KvError::Compacted,
            MvccError::FutureRevision { .. } => KvError::FutureRevision,
            other => KvError::Storage(other),
        }
    }
}

impl From<crate::lease::LeaseError> for KvError {
    fn from(err: crate::lease::LeaseError) -> Self {
        use crate::lease::LeaseError;
        match err {
            LeaseError::NotFound => KvError::LeaseNotFound,
            LeaseError::Exists => KvError::LeaseExists,
            LeaseError::TtlTooLarge => KvError::LeaseTtlTooLarge,
        }
    }
}

impl KvError {
    /// The gRPC status code etcd sends with this error.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge
            | KvError::InvalidSortTarget(_) => Code::InvalidArgument,
            KvError::Compacted | KvError::FutureRevision => Code::OutOfRange,
            KvError::LeaseNotFound | KvError::MemberNotFound => Code::NotFound,
            KvError::LeaseExists => Code::FailedPrecondition,
            KvError::LeaseTtlTooLarge => Code::OutOfRange,
            KvError::LeaderChanged => Code::Unavailable,
            KvError::Storage(_) => Code::Internal,
        }
    }
}

impl From<KvError> for tonic::Status {
    fn from(err: KvError) -> Self {
        tonic::Status::new(err.grpc_code(), err.to_string())
    }
}
