//! Starting a member from its configuration: the data directory, the WAL (bootstrapping a new
//! cluster's log the first time), the key space, Raft, and the client listeners; stopping it
//! cleanly on SIGTERM or SIGINT.
//!
//! Data directory layout, as etcd's: `member/wal/` holds the WAL segments, `member/snap/db`
//! the B+tree file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_btree::Durability;
use cairn_raft::{ConfChange, Config as RaftConfig, RaftNode};
use cairn_wal::{Metadata, Record, Wal, WalConfig};
use tokio::net::TcpListener;

use super::apply::{MEMBER_CHANGE_FORMAT_VERSION, META_MEMBER_ATTRIBUTES};
use super::identity;
use super::learner_gate::LearnerGate;
use super::member::{snapshot_conf_key, MemberIdentity, Outlets, RaftMember, Timing};
use super::observability::{GrpcMetricsLayer, MemberHealth, Observability, SERVED_GRPC_PATHS};
use super::peer_transport::{LocalPeer, PeerService, PeerTransport};
use super::raft_log::{decode_conf_state, encode_entry, RaftLog};
use super::registry::MemberRegistry;
use super::request_gate::GateLayer;
use super::require_leader::RequireLeader;
use crate::api::watch::{SharedWatchHub, WatchService};
use crate::api::{self, Limits};
use crate::config::ServerConfig;
use crate::lease::load::load_table;
use crate::lease::{unix_ms_now, LeaseTiming, Leases, SharedLeases};
use crate::mvcc::MvccStore;
use crate::proto::cairn::entry::v1::{MemberAttributes, MemberChange, MemberRecord};
use crate::proto::cairn::peer::v1::peer_server::PeerServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, maintenance_server::MaintenanceServer,
};
use crate::storage::BtreeBackend;
use crate::watch::{WatchHub, WatchLimits};

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log: {0}")]
    Wal(#[from] cairn_wal::WalError),
    #[error("raft log: {0}")]
    RaftLog(#[from] cairn_raft::StorageError),
    #[error("raft: {0}")]
    Raft(#[from] cairn_raft::Error),
    #[error("key space: {0}")]
    Store(#[from] crate::mvcc::MvccError),
    #[error("key space file: {0}")]
    Backend(#[from] crate::mvcc::BackendError),
    #[error("cannot listen on {url}: {source}")]
    Listen {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot start the raft thread: {0}")]
    Thread(std::io::Error),
    /// As etcd, a removed member does not come back: it exits cleanly at once.
    #[error("the member has been permanently removed from the cluster; the data dir used by this member must be removed")]
    Removed,
}

/// Settings beyond etcd's flags that tests and tuning need.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Raft's logical clock period (etcd's `--heartbeat-interval`).
    pub tick: Duration,
    /// Election timeout, in ticks (etcd's `--election-timeout` / heartbeat).
    pub election_ticks: u32,
    pub limits: Limits,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind each snapshot for lagging followers.
    pub snapshot_catchup_entries: u64,
    pub wal_segment_bytes: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            limits: Limits::default(),
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            wal_segment_bytes: WalConfig::default().segment_bytes,
        }
    }
}

impl Tuning {
    /// The settings a configuration's flags ask for.
    pub fn from_config(config: &ServerConfig) -> Self {
        Tuning {
            tick: config.heartbeat_interval,
            election_ticks: config.election_ticks,
            limits: Limits {
                max_txn_ops: config.max_txn_ops,
                max_request_bytes: config.max_request_bytes,
            },
            snapshot_count: config.snapshot_count,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
            wal_segment_bytes: config.wal_segment_bytes,
        }
    }
}

/// How long a stop waits for in-flight requests and open streams to finish.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The same, when the member already stopped itself to start again on a snapshot its leader
/// sent: nothing in flight can be answered any more, and every moment spent waiting for
/// open streams is a moment the member is away (under load a member that is away too long
/// needs another snapshot).
pub const RESTART_GRACE: Duration = Duration::from_millis(100);

/// A running member and its client listeners.
pub struct RunningServer {
    pub member: Arc<RaftMember>,
    /// Where clients actually connect (resolved ports, for `:0` listeners).
    pub client_addrs: Vec<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    watch_hub: Arc<SharedWatchHub>,
}

impl RunningServer {
    /// Stops accepting clients, lets in-flight requests finish or fail within `grace`, stops
    /// the member.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        self.watch_hub.close();
        // Long-lived streams (peers, watches, keepalives) would hold a graceful stop open
        // forever: after a grace period the listeners are dropped with what they still serve.
        let deadline = tokio::time::Instant::now() + grace;
        for mut listener in self.listeners {
            if tokio::time::timeout_at(deadline, &mut listener)
                .await
                .is_err()
            {
                listener.abort();
                let _ = listener.await;
            }
        }
        let member = self.member;
        let _ = tokio::task::spawn_blocking(move || member.stop()).await;
    }
}

fn create_dir(path: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::DataDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Opens (or bootstraps) the WAL; returns it with this member's ids.
async fn open_wal(
    dir: &Path,
    config: &ServerConfig,
    segment_bytes: u64,
) -> Result<(Wal, u64, u64), StartError> {
    let wal_config = WalConfig {
        segment_bytes,
        ..WalConfig::default()
    };
    let (wal, recovered) = Wal::open(dir, wal_config)?;
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(?torn, "cut off a torn final write in the WAL");
    }
    let peer_urls: Vec<String> = config
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    let member_id = identity::member_id(&config.initial_cluster_token, &config.name, &peer_urls);
    let founders: Vec<u64> = config
        .initial_cluster
        .iter()
        .map(|m| {
            let urls: Vec<String> = m.peer_urls.iter().map(ToString::to_string).collect();
            identity::member_id(&config.initial_cluster_token, &m.name, &urls)
        })
        .collect();
    let cluster_id = identity::cluster_id(&config.initial_cluster_token, &founders);
    if let Some(meta) = recovered.metadata {
        // A data dir remembers whose it is. Under `new`, the flags name the cluster and the
        // member too: a mismatch is a data dir copied or pointed at by mistake.
        if config.initial_cluster_state == crate::config::ClusterState::New
            && (meta.cluster_id, meta.member_id) != (cluster_id, member_id)
        {
            return Err(StartError::Unsupported(format!(
                "the data dir {} belongs to member {:x} of cluster {:x}, but the flags describe member {member_id:x} of cluster {cluster_id:x}; refusing to start",
                dir.display(),
                meta.member_id,
                meta.cluster_id
            )));
        }
        return Ok((wal, meta.cluster_id, meta.member_id));
    }
    if config.initial_cluster_state == crate::config::ClusterState::Existing {
        // A member added to a running cluster: its id and the cluster's come from the
        // members; its log from the leader.
        let joined = join_cluster(config).await?;
        wal.append(vec![Record::Metadata(Metadata {
            cluster_id: joined.cluster_id,
            member_id: joined.member_id,
        })])
        .await?;
        tracing::info!(
            member_id = format!("{:x}", joined.member_id),
            cluster_id = format!("{:x}", joined.cluster_id),
            "joining an existing cluster"
        );
        return Ok((wal, joined.cluster_id, joined.member_id));
    }
    // A founding member's log starts with one committed entry per founding voter, carrying
    // its name and peer URLs (identical on every founder: they come from the same flags).
    let mut records = vec![Record::Metadata(Metadata {
        cluster_id,
        member_id,
    })];
    for ((index, id), founder) in (1u64..).zip(&founders).zip(&config.initial_cluster) {
        let context = MemberChange {
            format_version: MEMBER_CHANGE_FORMAT_VERSION,
            id: 0,
            proposer: 0,
            member: Some(MemberRecord {
                id: *id,
                name: founder.name.clone(),
                peer_urls: founder.peer_urls.iter().map(ToString::to_string).collect(),
                is_learner: false,
            }),
        };
        let entry = cairn_raft::Entry {
            index,
            term: 1,
            kind: cairn_raft::EntryKind::ConfChange,
            data: ConfChange::AddVoter(*id)
                .encode_with_context(&prost::Message::encode_to_vec(&context))
                .into(),
        };
        records.push(Record::Entry(encode_entry(&entry)));
    }
    records.push(Record::HardState(cairn_wal::HardState {
        term: 1,
        vote: 0,
        commit: founders.len() as u64,
    }));
    wal.append(records).await?;
    tracing::info!(
        member_id = format!("{member_id:x}"),
        cluster_id = format!("{cluster_id:x}"),
        "bootstrapped a new cluster"
    );
    Ok((wal, cluster_id, member_id))
}

/// Asks the members named in `--initial-cluster` for the cluster this member joins.
async fn join_cluster(config: &ServerConfig) -> Result<super::join::Joined, StartError> {
    let own: Vec<String> = config
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    let others: Vec<String> = config
        .initial_cluster
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(ToString::to_string))
        .filter(|url| !own.contains(url))
        .collect();
    super::join::join(&others, &own)
        .await
        .map_err(|err| StartError::Unsupported(err.to_string()))
}

/// Members' attributes as the key-space file holds them.
fn load_member_attributes(
    store: &MvccStore<BtreeBackend>,
) -> Result<std::collections::BTreeMap<u64, MemberAttributes>, StartError> {
    use prost::Message;
    let mut found = std::collections::BTreeMap::new();
    let mut undecodable = None;
    store.scan_records(crate::mvcc::Bucket::Meta, &mut |key, value| {
        if key.starts_with(META_MEMBER_ATTRIBUTES) {
            match MemberAttributes::decode(value) {
                Ok(attributes) => {
                    found.insert(attributes.member_id, attributes);
                }
                Err(err) => undecodable = Some(err.to_string()),
            }
        }
        true
    })?;
    if let Some(reason) = undecodable {
        return Err(StartError::Unsupported(format!(
            "stored member attributes do not decode: {reason}"
        )));
    }
    Ok(found)
}

/// Publishes this member's name and client URLs through Raft until one publication applies
/// (retrying while there is no leader), so every member can list them.
async fn publish_attributes(
    member: Arc<RaftMember>,
    attributes: MemberAttributes,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::api::Member as _;
    loop {
        let op = crate::proto::cairn::entry::v1::request::Op::MemberAttributes(attributes.clone());
        // A forwarded proposal lost on the way is only noticed by a timeout; publishing twice
        // is harmless, so each attempt waits a second, not the request timeout.
        match tokio::time::timeout(Duration::from_secs(1), member.propose(op)).await {
            Ok(Ok(_)) => return,
            Ok(Err(status)) => tracing::debug!(
                reason = status.message(),
                "publishing member attributes; will retry"
            ),
            Err(_) => tracing::debug!("publishing member attributes timed out; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Starts a member and its client listeners.
pub async fn start(config: &ServerConfig, tuning: Tuning) -> Result<RunningServer, StartError> {
    if let Some(address) = config.peer_dial_address {
        super::dial_source::set(address);
    }
    let member_dir = config.data_dir.join("member");
    let wal_dir = member_dir.join("wal");
    let snap_dir = member_dir.join("snap");
    create_dir(&wal_dir)?;
    create_dir(&snap_dir)?;
    let db_path = snap_dir.join("db");

    let (wal, cluster_id, member_id) = open_wal(&wal_dir, config, tuning.wal_segment_bytes).await?;
    super::snapshot_file::finish_interrupted_install(&snap_dir, wal.snapshot().map(|s| s.index))
        .map_err(|err| StartError::Unsupported(err.to_string()))?;
    // Made durable by the raft loop's checkpoints; the WAL holds what comes after them.
    let backend = BtreeBackend::open(&db_path, Durability::Checkpointed)?;
    let store = Arc::new(MvccStore::open(backend)?);
    let snapshot_conf = match wal.snapshot() {
        None => cairn_raft::ConfState::default(),
        Some(marker) => match store.meta(&snapshot_conf_key(marker.index))? {
            Some(bytes) => decode_conf_state(&bytes)?,
            None => {
                return Err(StartError::Unsupported(format!(
                    "the WAL's snapshot at index {} has no recorded membership in {}",
                    marker.index,
                    db_path.display()
                )))
            }
        },
    };
    let mut log = RaftLog::load(wal, snapshot_conf)?;

    // Every applied entry was durable in the WAL first: a key space ahead of the log means
    // WAL segments went missing, and replaying from here could silently lose writes.
    let applied = store.applied_index()?;
    let last_logged = cairn_raft::Storage::last_index(&log)?;
    if applied > last_logged {
        return Err(StartError::Unsupported(format!(
            "the key space has applied entry {applied} but the WAL ends at {last_logged}: \
             WAL segments are missing from {}",
            wal_dir.display()
        )));
    }
    log.commit_at_least(applied);
    let mut raft_config = RaftConfig::new(member_id);
    raft_config.election_timeout_ticks = tuning.election_ticks;
    raft_config.applied = applied;
    raft_config.seed = member_id ^ std::process::id() as u64;
    let node = RaftNode::new(raft_config, log)?;

    let others: Vec<(crate::proto::etcdserverpb::Member, String)> = config
        .initial_cluster
        .iter()
        .filter(|m| m.name != config.name)
        .map(|m| {
            let urls: Vec<String> = m.peer_urls.iter().map(ToString::to_string).collect();
            let id = identity::member_id(&config.initial_cluster_token, &m.name, &urls);
            let dial = urls.first().cloned().unwrap_or_default();
            let info = crate::proto::etcdserverpb::Member {
                id,
                name: m.name.clone(),
                peer_ur_ls: urls,
                client_ur_ls: Vec::new(),
                is_learner: false,
            };
            (info, dial)
        })
        .collect();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let local_peer = LocalPeer {
        member_id,
        cluster_id,
        name: config.name.clone(),
        peer_urls: config
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    let registry = MemberRegistry::load(&store).map_err(|err| {
        StartError::Unsupported(format!("members in {}: {err}", db_path.display()))
    })?;
    if registry.is_removed(member_id) {
        return Err(StartError::Removed);
    }
    // Once members are applied, they (not the flags, which may be stale) say whom to dial.
    let dial = |members: &mut dyn Iterator<Item = &MemberRecord>| -> Vec<(u64, String)> {
        members
            .filter(|m| m.id != member_id)
            .filter_map(|m| Some((m.id, m.peer_urls.first()?.clone())))
            .collect()
    };
    let peers: Vec<(u64, String)> = if !registry.is_empty() {
        dial(&mut registry.members())
    } else if config.initial_cluster_state == crate::config::ClusterState::Existing {
        // Added members' ids are not derived from the flags: ask the cluster.
        dial(&mut join_cluster(config).await?.members.iter())
    } else {
        others.iter().map(|(m, url)| (m.id, url.clone())).collect()
    };
    let transport = PeerTransport::start(&local_peer, &peers, shutdown_rx.clone());
    let registry = Arc::new(parking_lot::RwLock::new(registry));
    let identity = MemberIdentity {
        name: config.name.clone(),
        member_id,
        cluster_id,
        others: others.into_iter().map(|(m, _)| m).collect(),
        peer_urls: config
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
        client_urls: config
            .advertise_client_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    let timing = Timing {
        tick: tuning.tick,
        request_timeout: tuning.tick * tuning.election_ticks * 5,
        election_ticks: tuning.election_ticks,
        snapshot_count: tuning.snapshot_count,
        snapshot_catchup_entries: tuning.snapshot_catchup_entries,
    };
    let published = load_member_attributes(&store)?;
    let lease_timing = LeaseTiming::new(tuning.tick * tuning.election_ticks);
    let lease_table =
        load_table(&store, std::time::Instant::now(), unix_ms_now()).map_err(|err| {
            StartError::Unsupported(format!("leases in {}: {err}", db_path.display()))
        })?;
    tracing::info!(leases = lease_table.len(), "leases loaded");
    let leases = SharedLeases::new(Leases::new(lease_table, lease_timing));
    let observability = Observability::new()
        .map_err(|err| StartError::Unsupported(format!("metrics registry: {err}")))?;
    let watch_hub = SharedWatchHub::new(WatchHub::new(
        WatchLimits::default(),
        store.current_revision(),
    ));
    let member = RaftMember::start(
        identity,
        node,
        store,
        tuning.limits,
        timing,
        db_path,
        Outlets {
            observability: Arc::clone(&observability),
            watch_hub: Arc::clone(&watch_hub),
            leases: Arc::clone(&leases),
            transport,
            attributes: Arc::new(parking_lot::RwLock::new(published)),
            registry: Arc::clone(&registry),
        },
    )
    .map_err(StartError::Thread)?;
    let mut client_addrs = Vec::new();
    let mut listeners = Vec::new();
    // etcd's default progress-notify interval: idle watchers that asked for it hear the
    // current revision every ten minutes.
    let ticking = Arc::clone(&watch_hub);
    let mut tick_stop = shutdown_rx.clone();
    listeners.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(600));
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    ticking.hub.lock().progress_tick();
                    ticking.wake();
                }
                _ = tick_stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }));
    listeners.push(tokio::spawn(publish_attributes(
        Arc::clone(&member),
        MemberAttributes {
            member_id,
            name: config.name.clone(),
            client_urls: config
                .advertise_client_urls
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        shutdown_rx.clone(),
    )));
    listeners.push(tokio::spawn(super::lease_duties::run(
        Arc::clone(&member),
        shutdown_rx.clone(),
    )));
    let snapshot_inbox = Arc::new(super::snapshot_receive::SnapshotInbox {
        member_id,
        cluster_id,
        snap_dir: snap_dir.clone(),
        receiving: Arc::default(),
    });
    // The peer port serves Raft traffic from the other members (and is held, as etcd holds
    // it, by a single member too).
    for url in &config.listen_peer_urls {
        let listener =
            TcpListener::bind(url.authority())
                .await
                .map_err(|source| StartError::Listen {
                    url: url.to_string(),
                    source,
                })?;
        let mut stop = shutdown_rx.clone();
        let peer_service = PeerService {
            local: local_peer.clone(),
            inbox: Arc::clone(&member),
            registry: Arc::clone(&registry),
            snapshots: Some(Arc::clone(&snapshot_inbox)),
        };
        listeners.push(tokio::spawn(async move {
            let incoming = tokio_stream_from(listener);
            let _ = tonic::transport::Server::builder()
                // A peer that vanished without a reset (power off, partition) is noticed in
                // seconds: its streams, a snapshot being received among them, end.
                .http2_keepalive_interval(Some(Duration::from_secs(1)))
                .http2_keepalive_timeout(Some(Duration::from_secs(3)))
                .add_service(PeerServer::new(peer_service).max_decoding_message_size(64 << 20))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
        }));
    }
    for url in &config.listen_client_urls {
        let listener =
            TcpListener::bind(url.authority())
                .await
                .map_err(|source| StartError::Listen {
                    url: url.to_string(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            url: url.to_string(),
            source,
        })?;
        client_addrs.push(addr);
        let routes = client_routes(&member, &observability, &watch_hub, tuning.limits);
        let mut stop = shutdown_rx.clone();
        let layer = tower_layer::Stack::new(
            tower_layer::Stack::new(
                GateLayer(LearnerGate {
                    learner: member.learner_flag(),
                }),
                GateLayer(RequireLeader {
                    leader: member.leader_cell(),
                }),
            ),
            GrpcMetricsLayer::new(Arc::clone(&observability)),
        );
        let unary_kv = Arc::new(super::unary_kv::UnaryKv::new(
            &member,
            &observability,
            tuning.limits.max_request_bytes + 512 * 1024,
        ));
        let services = tower_layer::Layer::layer(&layer, routes.clone());
        let (http1_tx, http1_rx) = tokio::sync::mpsc::channel(16);
        listeners.push(tokio::spawn(super::client_accept::accept(
            listener,
            unary_kv,
            services,
            http1_tx,
            shutdown_rx.clone(),
        )));
        listeners.push(tokio::spawn(async move {
            use tonic::codegen::tokio_stream::StreamExt;
            let incoming = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(http1_rx)
                .map(|accepted: std::io::Result<tokio::net::TcpStream>| {
                    accepted.map(crate::coalesced_writes::CoalescedWrites::new)
                });
            let result = tonic::transport::Server::builder()
                // Plain HTTP/1.1 too: /health, /version and /metrics share the port, as etcd's.
                .accept_http1(true)
                .layer(layer)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            if let Err(err) = result {
                tracing::error!(%err, %addr, "client listener failed");
            }
        }));
        tracing::info!(%addr, "serving client requests");
    }
    Ok(RunningServer {
        member,
        client_addrs,
        shutdown,
        listeners,
        watch_hub,
    })
}

/// The client port's services: etcd's gRPC API and the plain-HTTP endpoints.
fn client_routes(
    member: &Arc<RaftMember>,
    observability: &Arc<Observability>,
    watch_hub: &Arc<SharedWatchHub>,
    limits: Limits,
) -> tonic::service::Routes {
    let max_message_bytes = limits.max_request_bytes + 512 * 1024;
    let grpc = tonic::service::Routes::new(
        KvServer::new(api::kv::KvService::new(Arc::clone(member)))
            .max_decoding_message_size(max_message_bytes),
    )
    .add_service(MaintenanceServer::new(
        api::maintenance::MaintenanceService::new(Arc::clone(member)),
    ))
    .add_service(ClusterServer::new(api::cluster::ClusterService::new(
        Arc::clone(member),
    )))
    .add_service(LeaseServer::new(api::lease::LeaseService::new(Arc::clone(
        member,
    ))))
    .add_service(
        WatchServer::new(WatchService::new(Arc::clone(member), Arc::clone(watch_hub)))
            .max_decoding_message_size(max_message_bytes),
    );
    for path in SERVED_GRPC_PATHS {
        observability.metrics.preregister_grpc(path);
    }
    let health = Arc::new(MemberHealth {
        member: Arc::clone(member),
        observability: Arc::clone(observability),
        watch_hub: Arc::clone(watch_hub),
    });
    tonic::service::Routes::from(grpc.into_axum_router().merge(crate::http::router(health)))
}

/// Accepted connections as the stream tonic serves, with Nagle's algorithm off: a stream's
/// small messages (watch events, keepalive answers, responses sharing a connection with
/// them) must not wait for the peer's delayed ACK (40 ms on Linux).
fn tokio_stream_from(
    listener: TcpListener,
) -> impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tonic::codegen::tokio_stream::StreamExt;
    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let connection = accepted?;
        connection.set_nodelay(true)?;
        Ok(connection)
    })
}
