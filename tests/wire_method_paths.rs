//! Every RPC of etcd's v3 API (and of Cairn's peer protocol) is reachable under the exact gRPC
//! path that etcd clients use, e.g. `/etcdserverpb.KV/Range`. A renamed package, service or
//! method changes a path and fails here.
//!
//! Two independent checks: the compiled descriptor must list exactly the reference methods with
//! the reference streaming shapes, and each generated client must put the reference path on the
//! wire (observed by a recording transport, no network involved).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use cairn::proto::cairn::peer::v1 as peer;
use cairn::proto::{etcdserverpb as pb, v3electionpb, v3lockpb};
use prost::Message;
use tonic::codegen::tokio_stream;
use tonic::codegen::Service;
use tonic::Code;

/// How a method streams, as etcd declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Unary,
    ServerStream,
    ClientStream,
    Bidi,
}
use Shape::*;

/// The reference: etcd 3.5's services (etcd 3.4's plus `Maintenance/Downgrade` and
/// `Auth/AuthStatus`), etcd's lock and election services, and Cairn's peer protocol v1.
const REFERENCE: &[(&str, &[(&str, Shape)])] = &[
    (
        "etcdserverpb.KV",
        &[
            ("Range", Unary),
            ("Put", Unary),
            ("DeleteRange", Unary),
            ("Txn", Unary),
            ("Compact", Unary),
        ],
    ),
    ("etcdserverpb.Watch", &[("Watch", Bidi)]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", Unary),
            ("LeaseRevoke", Unary),
            ("LeaseKeepAlive", Bidi),
            ("LeaseTimeToLive", Unary),
            ("LeaseLeases", Unary),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", Unary),
            ("MemberRemove", Unary),
            ("MemberUpdate", Unary),
            ("MemberList", Unary),
            ("MemberPromote", Unary),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", Unary),
            ("Status", Unary),
            ("Defragment", Unary),
            ("Hash", Unary),
            ("HashKV", Unary),
            ("Snapshot", ServerStream),
            ("MoveLeader", Unary),
            ("Downgrade", Unary),
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            ("AuthEnable", Unary),
            ("AuthDisable", Unary),
            ("AuthStatus", Unary),
            ("Authenticate", Unary),
            ("UserAdd", Unary),
            ("UserGet", Unary),
            ("UserList", Unary),
            ("UserDelete", Unary),
            ("UserChangePassword", Unary),
            ("UserGrantRole", Unary),
            ("UserRevokeRole", Unary),
            ("RoleAdd", Unary),
            ("RoleGet", Unary),
            ("RoleList", Unary),
            ("RoleDelete", Unary),
            ("RoleGrantPermission", Unary),
            ("RoleRevokePermission", Unary),
        ],
    ),
    ("v3lockpb.Lock", &[("Lock", Unary), ("Unlock", Unary)]),
    (
        "v3electionpb.Election",
        &[
            ("Campaign", Unary),
            ("Proclaim", Unary),
            ("Leader", Unary),
            ("Observe", ServerStream),
            ("Resign", Unary),
        ],
    ),
    (
        "cairn.peer.v1.Peer",
        &[
            ("Handshake", Unary),
            ("Members", Unary),
            ("Stream", ClientStream),
            ("SendSnapshot", ClientStream),
        ],
    ),
];

fn reference_paths() -> BTreeSet<String> {
    REFERENCE
        .iter()
        .flat_map(|(service, methods)| {
            methods
                .iter()
                .map(move |(method, _)| format!("/{service}/{method}"))
        })
        .collect()
}

#[test]
fn descriptor_lists_exactly_the_reference_methods() {
    let set = prost_types::FileDescriptorSet::decode(cairn::proto::FILE_DESCRIPTOR_SET)
        .expect("the build's descriptor set decodes");
    let mut compiled = BTreeSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let shape = match (
                    method.client_streaming.unwrap_or(false),
                    method.server_streaming.unwrap_or(false),
                ) {
                    (false, false) => Unary,
                    (false, true) => ServerStream,
                    (true, false) => ClientStream,
                    (true, true) => Bidi,
                };
                compiled.insert((
                    format!("{}.{}", file.package(), service.name()),
                    method.name().to_string(),
                    shape,
                ));
            }
        }
    }
    let reference: BTreeSet<(String, String, Shape)> = REFERENCE
        .iter()
        .flat_map(|(service, methods)| {
            methods
                .iter()
                .map(move |(method, shape)| (service.to_string(), method.to_string(), *shape))
        })
        .collect();
    let missing: Vec<_> = reference.difference(&compiled).collect();
    let extra: Vec<_> = compiled.difference(&reference).collect();
    assert!(
        missing.is_empty(),
        "methods missing or of another shape: {missing:?}"
    );
    assert!(extra.is_empty(), "methods not in the reference: {extra:?}");
}

#[test]
fn generated_servers_route_under_the_reference_service_names() {
    let names = [
        pb::kv_server::SERVICE_NAME,
        pb::watch_server::SERVICE_NAME,
        pb::lease_server::SERVICE_NAME,
        pb::cluster_server::SERVICE_NAME,
        pb::maintenance_server::SERVICE_NAME,
        pb::auth_server::SERVICE_NAME,
        v3lockpb::lock_server::SERVICE_NAME,
        v3electionpb::election_server::SERVICE_NAME,
        peer::peer_server::SERVICE_NAME,
    ];
    let reference: Vec<&str> = REFERENCE.iter().map(|(service, _)| *service).collect();
    assert_eq!(names.as_slice(), reference.as_slice());
}

/// A transport that records each request's path and answers every call with a trailers-only
/// `UNIMPLEMENTED`, so a client call completes without a server.
#[derive(Clone, Default)]
struct PathRecorder {
    paths: Arc<Mutex<Vec<String>>>,
}

impl PathRecorder {
    fn last(&self) -> String {
        let paths = self.paths.lock().expect("recorder lock");
        paths.last().cloned().unwrap_or_default()
    }

    fn all(&self) -> BTreeSet<String> {
        self.paths
            .lock()
            .expect("recorder lock")
            .iter()
            .cloned()
            .collect()
    }
}

impl Service<http::Request<tonic::body::Body>> for PathRecorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.paths
            .lock()
            .expect("recorder lock")
            .push(request.uri().path().to_string());
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .body(tonic::body::Body::empty())
            .expect("static response is valid");
        ready(Ok(response))
    }
}

/// Calls one generated client method and checks the path it used.
macro_rules! expect_path {
    ($recorder:expr, $client:expr, $method:ident, $request:expr, $path:literal) => {{
        let status = $client
            .$method($request)
            .await
            .expect_err("the recorder answers UNIMPLEMENTED");
        assert_eq!(status.code(), Code::Unimplemented, "{}", $path);
        assert_eq!($recorder.last(), $path);
    }};
}

fn empty<T: Send + 'static>() -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(Vec::new())
}

#[tokio::test]
async fn every_client_method_uses_the_reference_path() {
    let rec = PathRecorder::default();

    let mut kv = pb::kv_client::KvClient::new(rec.clone());
    expect_path!(
        rec,
        kv,
        range,
        pb::RangeRequest::default(),
        "/etcdserverpb.KV/Range"
    );
    expect_path!(
        rec,
        kv,
        put,
        pb::PutRequest::default(),
        "/etcdserverpb.KV/Put"
    );
    expect_path!(
        rec,
        kv,
        delete_range,
        pb::DeleteRangeRequest::default(),
        "/etcdserverpb.KV/DeleteRange"
    );
    expect_path!(
        rec,
        kv,
        txn,
        pb::TxnRequest::default(),
        "/etcdserverpb.KV/Txn"
    );
    expect_path!(
        rec,
        kv,
        compact,
        pb::CompactionRequest::default(),
        "/etcdserverpb.KV/Compact"
    );

    let mut watch = pb::watch_client::WatchClient::new(rec.clone());
    expect_path!(
        rec,
        watch,
        watch,
        empty::<pb::WatchRequest>(),
        "/etcdserverpb.Watch/Watch"
    );

    let mut lease = pb::lease_client::LeaseClient::new(rec.clone());
    expect_path!(
        rec,
        lease,
        lease_grant,
        pb::LeaseGrantRequest::default(),
        "/etcdserverpb.Lease/LeaseGrant"
    );
    expect_path!(
        rec,
        lease,
        lease_revoke,
        pb::LeaseRevokeRequest::default(),
        "/etcdserverpb.Lease/LeaseRevoke"
    );
    expect_path!(
        rec,
        lease,
        lease_keep_alive,
        empty::<pb::LeaseKeepAliveRequest>(),
        "/etcdserverpb.Lease/LeaseKeepAlive"
    );
    expect_path!(
        rec,
        lease,
        lease_time_to_live,
        pb::LeaseTimeToLiveRequest::default(),
        "/etcdserverpb.Lease/LeaseTimeToLive"
    );
    expect_path!(
        rec,
        lease,
        lease_leases,
        pb::LeaseLeasesRequest::default(),
        "/etcdserverpb.Lease/LeaseLeases"
    );

    let mut cluster = pb::cluster_client::ClusterClient::new(rec.clone());
    expect_path!(
        rec,
        cluster,
        member_add,
        pb::MemberAddRequest::default(),
        "/etcdserverpb.Cluster/MemberAdd"
    );
    expect_path!(
        rec,
        cluster,
        member_remove,
        pb::MemberRemoveRequest::default(),
        "/etcdserverpb.Cluster/MemberRemove"
    );
    expect_path!(
        rec,
        cluster,
        member_update,
        pb::MemberUpdateRequest::default(),
        "/etcdserverpb.Cluster/MemberUpdate"
    );
    expect_path!(
        rec,
        cluster,
        member_list,
        pb::MemberListRequest::default(),
        "/etcdserverpb.Cluster/MemberList"
    );
    expect_path!(
        rec,
        cluster,
        member_promote,
        pb::MemberPromoteRequest::default(),
        "/etcdserverpb.Cluster/MemberPromote"
    );

    let mut maint = pb::maintenance_client::MaintenanceClient::new(rec.clone());
    expect_path!(
        rec,
        maint,
        alarm,
        pb::AlarmRequest::default(),
        "/etcdserverpb.Maintenance/Alarm"
    );
    expect_path!(
        rec,
        maint,
        status,
        pb::StatusRequest::default(),
        "/etcdserverpb.Maintenance/Status"
    );
    expect_path!(
        rec,
        maint,
        defragment,
        pb::DefragmentRequest::default(),
        "/etcdserverpb.Maintenance/Defragment"
    );
    expect_path!(
        rec,
        maint,
        hash,
        pb::HashRequest::default(),
        "/etcdserverpb.Maintenance/Hash"
    );
    expect_path!(
        rec,
        maint,
        hash_kv,
        pb::HashKvRequest::default(),
        "/etcdserverpb.Maintenance/HashKV"
    );
    expect_path!(
        rec,
        maint,
        snapshot,
        pb::SnapshotRequest::default(),
        "/etcdserverpb.Maintenance/Snapshot"
    );
    expect_path!(
        rec,
        maint,
        move_leader,
        pb::MoveLeaderRequest::default(),
        "/etcdserverpb.Maintenance/MoveLeader"
    );
    expect_path!(
        rec,
        maint,
        downgrade,
        pb::DowngradeRequest::default(),
        "/etcdserverpb.Maintenance/Downgrade"
    );

    let mut auth = pb::auth_client::AuthClient::new(rec.clone());
    expect_path!(
        rec,
        auth,
        auth_enable,
        pb::AuthEnableRequest::default(),
        "/etcdserverpb.Auth/AuthEnable"
    );
    expect_path!(
        rec,
        auth,
        auth_disable,
        pb::AuthDisableRequest::default(),
        "/etcdserverpb.Auth/AuthDisable"
    );
    expect_path!(
        rec,
        auth,
        auth_status,
        pb::AuthStatusRequest::default(),
        "/etcdserverpb.Auth/AuthStatus"
    );
    expect_path!(
        rec,
        auth,
        authenticate,
        pb::AuthenticateRequest::default(),
        "/etcdserverpb.Auth/Authenticate"
    );
    expect_path!(
        rec,
        auth,
        user_add,
        pb::AuthUserAddRequest::default(),
        "/etcdserverpb.Auth/UserAdd"
    );
    expect_path!(
        rec,
        auth,
        user_get,
        pb::AuthUserGetRequest::default(),
        "/etcdserverpb.Auth/UserGet"
    );
    expect_path!(
        rec,
        auth,
        user_list,
        pb::AuthUserListRequest::default(),
        "/etcdserverpb.Auth/UserList"
    );
    expect_path!(
        rec,
        auth,
        user_delete,
        pb::AuthUserDeleteRequest::default(),
        "/etcdserverpb.Auth/UserDelete"
    );
    expect_path!(
        rec,
        auth,
        user_change_password,
        pb::AuthUserChangePasswordRequest::default(),
        "/etcdserverpb.Auth/UserChangePassword"
    );
    expect_path!(
        rec,
        auth,
        user_grant_role,
        pb::AuthUserGrantRoleRequest::default(),
        "/etcdserverpb.Auth/UserGrantRole"
    );
    expect_path!(
        rec,
        auth,
        user_revoke_role,
        pb::AuthUserRevokeRoleRequest::default(),
        "/etcdserverpb.Auth/UserRevokeRole"
    );
    expect_path!(
        rec,
        auth,
        role_add,
        pb::AuthRoleAddRequest::default(),
        "/etcdserverpb.Auth/RoleAdd"
    );
    expect_path!(
        rec,
        auth,
        role_get,
        pb::AuthRoleGetRequest::default(),
        "/etcdserverpb.Auth/RoleGet"
    );
    expect_path!(
        rec,
        auth,
        role_list,
        pb::AuthRoleListRequest::default(),
        "/etcdserverpb.Auth/RoleList"
    );
    expect_path!(
        rec,
        auth,
        role_delete,
        pb::AuthRoleDeleteRequest::default(),
        "/etcdserverpb.Auth/RoleDelete"
    );
    expect_path!(
        rec,
        auth,
        role_grant_permission,
        pb::AuthRoleGrantPermissionRequest::default(),
        "/etcdserverpb.Auth/RoleGrantPermission"
    );
    expect_path!(
        rec,
        auth,
        role_revoke_permission,
        pb::AuthRoleRevokePermissionRequest::default(),
        "/etcdserverpb.Auth/RoleRevokePermission"
    );

    let mut lock = v3lockpb::lock_client::LockClient::new(rec.clone());
    expect_path!(
        rec,
        lock,
        lock,
        v3lockpb::LockRequest::default(),
        "/v3lockpb.Lock/Lock"
    );
    expect_path!(
        rec,
        lock,
        unlock,
        v3lockpb::UnlockRequest::default(),
        "/v3lockpb.Lock/Unlock"
    );

    let mut election = v3electionpb::election_client::ElectionClient::new(rec.clone());
    expect_path!(
        rec,
        election,
        campaign,
        v3electionpb::CampaignRequest::default(),
        "/v3electionpb.Election/Campaign"
    );
    expect_path!(
        rec,
        election,
        proclaim,
        v3electionpb::ProclaimRequest::default(),
        "/v3electionpb.Election/Proclaim"
    );
    expect_path!(
        rec,
        election,
        leader,
        v3electionpb::LeaderRequest::default(),
        "/v3electionpb.Election/Leader"
    );
    expect_path!(
        rec,
        election,
        observe,
        v3electionpb::LeaderRequest::default(),
        "/v3electionpb.Election/Observe"
    );
    expect_path!(
        rec,
        election,
        resign,
        v3electionpb::ResignRequest::default(),
        "/v3electionpb.Election/Resign"
    );

    let mut peer = peer::peer_client::PeerClient::new(rec.clone());
    expect_path!(
        rec,
        peer,
        handshake,
        peer::PeerHello::default(),
        "/cairn.peer.v1.Peer/Handshake"
    );
    expect_path!(
        rec,
        peer,
        members,
        peer::MembersRequest::default(),
        "/cairn.peer.v1.Peer/Members"
    );
    expect_path!(
        rec,
        peer,
        stream,
        empty::<peer::RaftMessage>(),
        "/cairn.peer.v1.Peer/Stream"
    );
    expect_path!(
        rec,
        peer,
        send_snapshot,
        empty::<peer::SnapshotChunk>(),
        "/cairn.peer.v1.Peer/SendSnapshot"
    );

    // Every reference method was called above, and nothing else went on the wire.
    assert_eq!(rec.all(), reference_paths());
}
