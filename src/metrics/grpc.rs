//! How an RPC is named in metrics: its service, method and streaming type from the gRPC path, and
//! its status code spelled as Go's gRPC spells it (etcd's `grpc_code` label, and Cairn's `code`).

/// The parts of a gRPC request path such as `/etcdserverpb.KV/Range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcMethod<'a> {
    /// `etcdserverpb.KV`.
    pub service: &'a str,
    /// `Range`.
    pub method: &'a str,
}

impl<'a> GrpcMethod<'a> {
    /// Splits `/<service>/<method>`; `None` for anything else (such a request never reaches a
    /// handler, so it has no metrics).
    pub fn from_path(path: &'a str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        Some(Self { service, method })
    }

    /// go-grpc-prometheus' `grpc_type`: how etcd's API streams this method.
    pub fn grpc_type(&self) -> &'static str {
        match (self.service, self.method) {
            ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => {
                "bidi_stream"
            }
            ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
                "server_stream"
            }
            _ => "unary",
        }
    }
}

/// Every gRPC status code, for pre-creating series as go-grpc-prometheus does.
pub const ALL_GRPC_CODES: [tonic::Code; 17] = [
    tonic::Code::Ok,
    tonic::Code::Cancelled,
    tonic::Code::Unknown,
    tonic::Code::InvalidArgument,
    tonic::Code::DeadlineExceeded,
    tonic::Code::NotFound,
    tonic::Code::AlreadyExists,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::FailedPrecondition,
    tonic::Code::Aborted,
    tonic::Code::OutOfRange,
    tonic::Code::Unimplemented,
    tonic::Code::Internal,
    tonic::Code::Unavailable,
    tonic::Code::DataLoss,
    tonic::Code::Unauthenticated,
];

/// The name Go's `codes.Code.String()` gives `code` (`OK`, `Canceled`, …), which tonic's own
/// `Debug` spells differently (`Ok`, `Cancelled`).
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method_or_are_refused() {
        assert_eq!(
            GrpcMethod::from_path("/etcdserverpb.KV/Range"),
            Some(GrpcMethod {
                service: "etcdserverpb.KV",
                method: "Range"
            })
        );
        for bad in [
            "",
            "/",
            "etcdserverpb.KV/Range",
            "//Range",
            "/etcdserverpb.KV/",
            "/a/b/c",
        ] {
            assert_eq!(GrpcMethod::from_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn streaming_methods_are_typed_as_etcd_types_them() {
        let kind = |path| GrpcMethod::from_path(path).map(|m| m.grpc_type());
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), Some("bidi_stream"));
        assert_eq!(
            kind("/etcdserverpb.Lease/LeaseKeepAlive"),
            Some("bidi_stream")
        );
        assert_eq!(
            kind("/etcdserverpb.Maintenance/Snapshot"),
            Some("server_stream")
        );
        assert_eq!(kind("/etcdserverpb.KV/Txn"), Some("unary"));
    }

    #[test]
    fn codes_are_named_as_go_names_them() {
        let names: Vec<&str> = ALL_GRPC_CODES.iter().map(|c| grpc_code_name(*c)).collect();
        assert_eq!(names[..2], ["OK", "Canceled"]);
        // Each code once, in numeric order.
        for (i, code) in ALL_GRPC_CODES.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
    }
}
