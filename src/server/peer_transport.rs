//! The peer transport: Raft messages between members over the peer URLs.
//!
//! Sending: one task per remote member owns a bounded queue, a connection (re-dialled with
//! backoff), a handshake that checks protocol version and cluster id, and one long-lived
//! `Stream` call that carries every message to that member. The Raft loop only enqueues
//! (never waits): a full queue drops the message, which Raft tolerates (it retries appends
//! and heartbeats), so a slow or dead peer never stalls the leader or the other peers.
//!
//! Receiving: the `Peer` service answers handshakes, checks every message (version,
//! cluster, addressee) and hands it to the Raft loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_raft::Message;
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::peer_codec::{from_wire, to_wire, PEER_PROTOCOL_VERSION};
use super::registry::MemberRegistry;
use super::snapshot_receive::SnapshotInbox;
use super::snapshot_send::CHUNKS_IN_FLIGHT;
use crate::proto::cairn::peer::v1::{
    peer_client::PeerClient, peer_server::Peer, MembersRequest, MembersResponse, PeerAck,
    PeerHello, RaftMessage, SendAck, SnapshotAck, SnapshotChunk,
};

/// Messages waiting for one peer before new ones are dropped.
const PEER_QUEUE_MESSAGES: usize = 4096;
/// Messages in flight on one stream call before the sender waits for the connection.
const STREAM_BUFFER_MESSAGES: usize = 256;
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// A stream that ends sooner than this after its handshake counts as a failed attempt
/// (backoff keeps growing), so a peer that accepts and drops is not redialled in a tight loop.
const STABLE_STREAM: Duration = Duration::from_secs(1);

/// How often an idle incoming stream checks whether its sender was removed.
const REMOVAL_CHECK: Duration = Duration::from_secs(1);

/// Who this member is to its peers.
#[derive(Debug, Clone)]
pub struct LocalPeer {
    pub member_id: u64,
    pub cluster_id: u64,
    pub name: String,
    /// Where this member listens for peers (told to peers in the handshake).
    pub peer_urls: Vec<String>,
}

/// One remote member's sender: its queue, the task's own stop switch, and since when its
/// stream has been up.
struct PeerLink {
    url: String,
    queue: mpsc::Sender<Message>,
    stop: watch::Sender<bool>,
    connected_since: Arc<parking_lot::Mutex<Option<Instant>>>,
}

/// Queues to every other member.
pub struct PeerTransport {
    local: LocalPeer,
    links: HashMap<u64, PeerLink>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Set when a peer said this member was removed from the cluster.
    removed: Arc<AtomicBool>,
    /// The member's stop switch (every link stops with it).
    stop: watch::Receiver<bool>,
    /// Where link tasks run (the transport is driven from the Raft thread).
    runtime: tokio::runtime::Handle,
}

impl PeerTransport {
    /// Starts a sender task per peer (`member id`, peer URL) on the current runtime.
    pub fn start(local: &LocalPeer, peers: &[(u64, String)], stop: watch::Receiver<bool>) -> Self {
        let mut transport = PeerTransport {
            local: local.clone(),
            links: HashMap::new(),
            dropped: Arc::default(),
            removed: Arc::default(),
            stop,
            runtime: tokio::runtime::Handle::current(),
        };
        transport.sync(peers);
        transport
    }

    /// Links to `peers` (member id, peer URL) that have none yet.
    pub fn sync(&mut self, peers: &[(u64, String)]) {
        for (id, url) in peers {
            if !self.links.contains_key(id) {
                self.link(*id, url);
            }
        }
    }

    /// A peer is at `url` now (its URLs were updated, or it said so in a handshake): its link
    /// is redialled there.
    pub fn relocate(&mut self, id: u64, url: &str) {
        if self.links.get(&id).is_some_and(|link| link.url == url) {
            return;
        }
        self.unlink(id);
        self.link(id, url);
    }

    /// A member left the cluster: its link stops.
    pub fn unlink(&mut self, id: u64) {
        if let Some(link) = self.links.remove(&id) {
            let _ = link.stop.send(true);
        }
    }

    fn link(&mut self, id: u64, url: &str) {
        if id == self.local.member_id {
            return;
        }
        let (queue, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES);
        let (stop, link_stop) = watch::channel(false);
        let connected_since = Arc::new(parking_lot::Mutex::new(None));
        let task = PeerSender {
            local: self.local.clone(),
            peer: id,
            url: url.to_string(),
            removed: Arc::clone(&self.removed),
            connected_since: Arc::clone(&connected_since),
        };
        self.runtime
            .spawn(task.run(receiver, self.stop.clone(), link_stop));
        self.links.insert(
            id,
            PeerLink {
                url: url.to_string(),
                queue,
                stop,
                connected_since,
            },
        );
    }

    /// How long the stream to `peer` has been up (zero when it is down).
    pub fn connected_for(&self, peer: u64) -> Duration {
        self.links
            .get(&peer)
            .and_then(|link| *link.connected_since.lock())
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Streams a snapshot to `to` over a call of its own: `produce` fills the chunks (on a
    /// blocking thread), `done` hears whether the follower took it. False if `to` is unknown.
    pub fn send_snapshot(
        &self,
        to: u64,
        produce: impl FnOnce(mpsc::Sender<SnapshotChunk>) -> Result<cairn_raft::SnapshotMeta, String>
            + Send
            + 'static,
        done: impl FnOnce(bool) + Send + 'static,
    ) -> bool {
        let Some(link) = self.links.get(&to) else {
            return false;
        };
        let url = link.url.clone();
        let local = self.local.clone();
        self.runtime.spawn(async move {
            let outcome = async {
                let mut client = match connect(&local, to, &url).await {
                    Ok(client) => client,
                    Err(ConnectError::Failed(reason)) => return Err(reason),
                    Err(ConnectError::Removed) => return Err("we were removed".to_string()),
                };
                let (chunks, outgoing) = mpsc::channel(CHUNKS_IN_FLIGHT);
                let producer = tokio::task::spawn_blocking(move || produce(chunks));
                let ack = client.send_snapshot(ReceiverStream::new(outgoing)).await;
                let meta = producer.await.map_err(|e| e.to_string())??;
                let ack = ack
                    .map_err(|status| status.message().to_string())?
                    .into_inner();
                tracing::info!(
                    to = format!("{to:x}"),
                    index = meta.index,
                    bytes = ack.bytes_received,
                    reason = ack.reason,
                    "snapshot sent"
                );
                Ok(ack.accepted)
            }
            .await;
            if let Err(reason) = &outcome {
                tracing::warn!(to = format!("{to:x}"), %reason, "snapshot not delivered");
            }
            done(outcome.unwrap_or(false));
        });
        true
    }

    /// Whether a peer told this member it was removed from the cluster.
    pub fn was_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Enqueues a message for its addressee; never waits. Returns false if it was dropped.
    pub fn send(&self, message: Message) -> bool {
        #[cfg(feature = "failpoints")]
        if crate::failpoints::failing("peer-partition") {
            return false;
        }
        let Some(queue) = self.links.get(&message.to).map(|link| &link.queue) else {
            tracing::debug!(
                to = format!("{:x}", message.to),
                "message for an unknown member dropped"
            );
            return false;
        };
        if queue.try_send(message).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Messages dropped because a peer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Why a connection attempt failed.
enum ConnectError {
    /// Worth retrying; the reason is logged.
    Failed(String),
    /// The peer says this member was removed from the cluster.
    Removed,
}

/// Dials `url`, handshakes, and returns a client for the stream.
async fn connect(
    local: &LocalPeer,
    peer: u64,
    url: &str,
) -> Result<PeerClient<Channel>, ConnectError> {
    let failed = ConnectError::Failed;
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| failed(format!("bad peer URL {url}: {e}")))?;
    let endpoint = super::dial_source::apply(endpoint)
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true)
        // A peer that vanished without a reset (power off, partition) is noticed in seconds,
        // not when TCP gives up minutes later.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| failed(format!("dial {url}: {e}")))?;
    let mut client = PeerClient::new(channel);
    let ack = client
        .handshake(PeerHello {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: local.cluster_id,
            member_id: local.member_id,
            name: local.name.clone(),
            peer_urls: local.peer_urls.clone(),
        })
        .await
        .map_err(|status| failed(format!("handshake with {url}: {}", status.message())))?
        .into_inner();
    if ack.removed {
        return Err(ConnectError::Removed);
    }
    if !ack.ok {
        return Err(failed(format!("peer {url} refused us: {}", ack.reason)));
    }
    if ack.member_id != peer {
        return Err(failed(format!(
            "peer at {url} is member {:x}, expected {peer:x}",
            ack.member_id
        )));
    }
    Ok(client)
}

/// The task that carries one peer's queue to it.
struct PeerSender {
    local: LocalPeer,
    peer: u64,
    url: String,
    removed: Arc<AtomicBool>,
    connected_since: Arc<parking_lot::Mutex<Option<Instant>>>,
}

impl PeerSender {
    /// Sends until the member stops or the link is dropped (the peer left the cluster).
    async fn run(
        self,
        queue: mpsc::Receiver<Message>,
        member_stop: watch::Receiver<bool>,
        mut link_stop: watch::Receiver<bool>,
    ) {
        tokio::select! {
            _ = send_to_peer(&self, queue, member_stop) => {}
            _ = link_stop.wait_for(|stopped| *stopped) => {}
        }
        *self.connected_since.lock() = None;
    }
}

async fn send_to_peer(
    sender: &PeerSender,
    mut queue: mpsc::Receiver<Message>,
    mut stop: watch::Receiver<bool>,
) {
    let PeerSender {
        local, peer, url, ..
    } = sender;
    let (local, peer) = (local, *peer);
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut client = match connect(local, peer, url).await {
            Ok(client) => client,
            Err(ConnectError::Removed) => {
                sender.removed.store(true, Ordering::Relaxed);
                return;
            }
            Err(ConnectError::Failed(reason)) => {
                // Log a failure once, not at every retry.
                if reason != last_error {
                    tracing::warn!(peer = format!("{peer:x}"), %reason, "peer unreachable");
                    last_error = reason;
                }
                // Messages queued meanwhile are stale by the time the peer is back.
                while queue.try_recv().is_ok() {}
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if !last_error.is_empty() {
            tracing::info!(peer = format!("{peer:x}"), "peer reachable again");
            last_error.clear();
        }
        let connected_at = Instant::now();
        *sender.connected_since.lock() = Some(connected_at);
        let (stream, outgoing) = mpsc::channel::<RaftMessage>(STREAM_BUFFER_MESSAGES);
        let mut call =
            tokio::spawn(async move { client.stream(ReceiverStream::new(outgoing)).await });
        loop {
            tokio::select! {
                next = queue.recv() => {
                    let Some(message) = next else { return };
                    // The call's buffer may be full (slow peer): keep watching for stop while
                    // waiting; a dead connection ends the call, which fails this send.
                    tokio::select! {
                        sent = stream.send(to_wire(&message, local.cluster_id)) => {
                            if sent.is_err() {
                                break;
                            }
                        }
                        _ = stop.changed() => return,
                    }
                }
                ended = &mut call => {
                    if let Ok(Err(status)) = ended {
                        tracing::warn!(peer = format!("{peer:x}"), reason = status.message(), "peer stream ended");
                    }
                    break;
                }
                _ = stop.changed() => return,
            }
        }
        *sender.connected_since.lock() = None;
        if connected_at.elapsed() >= STABLE_STREAM {
            backoff = FIRST_BACKOFF;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// What the peer service hands received messages to.
pub trait RaftInbox: Send + Sync + 'static {
    /// Gives a checked message to Raft; false if the member is stopping.
    fn deliver(&self, message: Message) -> bool;

    /// A member that handshook says it listens for peers at `url`.
    fn peer_at(&self, member_id: u64, url: &str);

    /// Whether the member needs a snapshot at `meta`'s position (asked before receiving it).
    fn snapshot_wanted(
        &self,
        meta: &cairn_raft::SnapshotMeta,
    ) -> Option<tokio::sync::oneshot::Receiver<bool>>;

    /// Hands a received, sealed snapshot to Raft; the answer says whether it was installed.
    /// None if the member is stopping.
    fn install_snapshot(
        &self,
        meta: cairn_raft::SnapshotMeta,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<bool, String>>>;
}

/// The `Peer` service of a member.
pub struct PeerService<I> {
    pub local: LocalPeer,
    pub inbox: Arc<I>,
    /// The members as applied: who was removed, and what a joining member asks for.
    pub registry: Arc<parking_lot::RwLock<MemberRegistry>>,
    /// Where snapshots from the leader are received (None: refused).
    pub snapshots: Option<Arc<SnapshotInbox>>,
}

fn removed_refusal(member: u64) -> Status {
    Status::permission_denied(format!(
        "member {member:x} was removed from the cluster and may not rejoin"
    ))
}

#[tonic::async_trait]
impl<I: RaftInbox> Peer for PeerService<I> {
    async fn handshake(&self, request: Request<PeerHello>) -> Result<Response<PeerAck>, Status> {
        let hello = request.into_inner();
        let refusal = if hello.protocol_version != PEER_PROTOCOL_VERSION {
            Some(format!(
                "peer protocol version {} not supported (local version {PEER_PROTOCOL_VERSION})",
                hello.protocol_version
            ))
        } else if hello.cluster_id != self.local.cluster_id {
            Some(format!(
                "cluster id mismatch: {:016x} is not this member's cluster {:016x}",
                hello.cluster_id, self.local.cluster_id
            ))
        } else if self.registry.read().is_removed(hello.member_id) {
            Some(removed_refusal(hello.member_id).message().to_string())
        } else {
            None
        };
        let removed = self.registry.read().is_removed(hello.member_id);
        if refusal.is_none() {
            if let Some(url) = hello.peer_urls.first() {
                self.inbox.peer_at(hello.member_id, url);
            }
        }
        if let Some(reason) = &refusal {
            tracing::error!(peer = hello.name, %reason, "refused a peer");
        }
        Ok(Response::new(PeerAck {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: self.local.cluster_id,
            member_id: self.local.member_id,
            ok: refusal.is_none(),
            reason: refusal.unwrap_or_default(),
            removed,
        }))
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let version = request.into_inner().protocol_version;
        if version != PEER_PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "peer protocol version {version} not supported (local version {PEER_PROTOCOL_VERSION})"
            )));
        }
        let registry = self.registry.read();
        Ok(Response::new(MembersResponse {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: self.local.cluster_id,
            members: registry.members().cloned().collect(),
            removed: registry.removed().collect(),
        }))
    }

    async fn stream(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<SendAck>, Status> {
        let mut incoming = request.into_inner();
        let mut sender = None;
        loop {
            // An idle stream is checked now and then: a member removed while it had nothing
            // to say learns it when its stream is cut and its redial is refused.
            let next = match tokio::time::timeout(REMOVAL_CHECK, incoming.message()).await {
                Ok(next) => next?,
                Err(_) => {
                    if let Some(from) = sender.filter(|&f| self.registry.read().is_removed(f)) {
                        return Err(removed_refusal(from));
                    }
                    continue;
                }
            };
            let Some(message) = next else { break };
            let message = from_wire(message, self.local.cluster_id).map_err(|err| {
                tracing::error!(%err, "refused a peer message");
                Status::invalid_argument(err.to_string())
            })?;
            if self.registry.read().is_removed(message.from) {
                return Err(removed_refusal(message.from));
            }
            sender = Some(message.from);
            #[cfg(feature = "failpoints")]
            if crate::failpoints::failing("peer-partition") {
                continue;
            }
            if message.to != self.local.member_id {
                return Err(Status::invalid_argument(format!(
                    "message for member {:x} sent to member {:x}",
                    message.to, self.local.member_id
                )));
            }
            if !self.inbox.deliver(message) {
                return Err(Status::unavailable("member stopping"));
            }
        }
        Ok(Response::new(SendAck {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let Some(snapshots) = &self.snapshots else {
            return Err(Status::unimplemented("this member takes no snapshots"));
        };
        let ack = snapshots
            .receive(
                request.into_inner(),
                |id| self.registry.read().is_removed(id),
                async |meta: &cairn_raft::SnapshotMeta| match self.inbox.snapshot_wanted(meta) {
                    Some(answer) => answer.await.unwrap_or(false),
                    None => false,
                },
                |meta| self.inbox.install_snapshot(meta),
            )
            .await?;
        Ok(Response::new(ack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;

    impl RaftInbox for Refuses {
        fn deliver(&self, _: Message) -> bool {
            false
        }

        fn peer_at(&self, _: u64, _: &str) {}

        fn install_snapshot(
            &self,
            _: cairn_raft::SnapshotMeta,
        ) -> Option<tokio::sync::oneshot::Receiver<Result<bool, String>>> {
            None
        }

        fn snapshot_wanted(
            &self,
            _: &cairn_raft::SnapshotMeta,
        ) -> Option<tokio::sync::oneshot::Receiver<bool>> {
            None
        }
    }

    fn service() -> PeerService<Refuses> {
        PeerService {
            local: LocalPeer {
                member_id: 7,
                cluster_id: 99,
                name: "m7".into(),
                peer_urls: Vec::new(),
            },
            inbox: Arc::new(Refuses),
            registry: Arc::default(),
            snapshots: None,
        }
    }

    fn hello(protocol_version: u32, cluster_id: u64) -> Request<PeerHello> {
        Request::new(PeerHello {
            protocol_version,
            cluster_id,
            member_id: 8,
            name: "m8".into(),
            peer_urls: vec!["http://m8:2380".into()],
        })
    }

    #[tokio::test]
    async fn a_peer_of_another_cluster_or_protocol_is_refused_with_the_reason() {
        let ok = service()
            .handshake(hello(1, 99))
            .await
            .unwrap()
            .into_inner();
        assert!(ok.ok && ok.member_id == 7, "{ok:?}");
        let other = service()
            .handshake(hello(1, 98))
            .await
            .unwrap()
            .into_inner();
        assert!(!other.ok);
        assert!(
            other.reason.contains("cluster id mismatch"),
            "{}",
            other.reason
        );
        let newer = service()
            .handshake(hello(2, 99))
            .await
            .unwrap()
            .into_inner();
        assert!(!newer.ok);
        assert_eq!(
            newer.reason,
            "peer protocol version 2 not supported (local version 1)"
        );
    }
}
