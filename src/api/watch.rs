//! The Watch service: each bidirectional `Watch` call is one stream of the member's watch hub
//! (`crate::watch`). One task per stream turns requests into hub calls and sends what the
//! hub queued, woken whenever the apply loop publishes a batch.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

use super::Member;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
    WatchRequest, WatchResponse,
};
use crate::watch::{fragment, WatchCreate, WatchHub};

/// What etcd allows a message beyond `--max-request-bytes` (its `grpcOverheadBytes`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How long a stream with nothing to send waits before helping catch-up again.
const CATCH_UP_IDLE: std::time::Duration = std::time::Duration::from_millis(5);

/// Responses a stream may have in flight to the gRPC layer before its task waits.
const STREAM_SEND_BUFFER: usize = 64;

/// The member's watch hub and the signal that it has news.
pub struct SharedWatchHub {
    pub hub: parking_lot::Mutex<WatchHub>,
    published: watch::Sender<u64>,
    /// Set when the member stops: every stream ends (its clients move to another member or
    /// reconnect), instead of waiting for events that will never be published.
    closed: std::sync::atomic::AtomicBool,
}

impl SharedWatchHub {
    pub fn new(hub: WatchHub) -> Arc<Self> {
        Arc::new(SharedWatchHub {
            hub: parking_lot::Mutex::new(hub),
            published: watch::channel(0).0,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Wakes every stream (after a publish, a progress tick, or a catch-up step).
    pub fn wake(&self) {
        self.published.send_modify(|generation| *generation += 1);
    }

    /// Ends every watch stream (the member is stopping).
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

pub struct WatchService<M> {
    member: Arc<M>,
    hub: Arc<SharedWatchHub>,
}

impl<M> WatchService<M> {
    pub fn new(member: Arc<M>, hub: Arc<SharedWatchHub>) -> Self {
        WatchService { member, hub }
    }
}

fn create_request(request: crate::proto::etcdserverpb::WatchCreateRequest) -> WatchCreate {
    WatchCreate {
        range: KeyRange::from_etcd(&request.key, &request.range_end),
        start_revision: request.start_revision,
        watch_id: request.watch_id,
        no_put: request.filters.contains(&(FilterType::Noput as i32)),
        no_delete: request.filters.contains(&(FilterType::Nodelete as i32)),
        prev_kv: request.prev_kv,
        progress_notify: request.progress_notify,
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<M: Member> Watch for WatchService<M> {
    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(STREAM_SEND_BUFFER);
        let (member, shared) = (Arc::clone(&self.member), Arc::clone(&self.hub));
        let stream_id = shared.hub.lock().open_stream();
        let mut published = shared.published.subscribe();
        // etcd's threshold: the request limit plus the gRPC overhead it allows on top.
        let max_response_bytes = self.member.limits().max_request_bytes + GRPC_OVERHEAD_BYTES;
        tokio::spawn(async move {
            // Watchers of this stream that asked for large responses in fragments.
            let mut fragmenting: HashSet<i64> = HashSet::new();
            loop {
                if shared.is_closed() {
                    let _ = sender
                        .send(Err(Status::unavailable("etcdserver: server stopped")))
                        .await;
                    break;
                }
                let (responses, more) = {
                    let mut hub = shared.hub.lock();
                    let more = hub.poll_stream(member.store(), stream_id).unwrap_or(false);
                    (hub.drain(stream_id).unwrap_or_default(), more)
                };
                let header = member.header();
                let sent_any = !responses.is_empty();
                for mut response in responses {
                    if let Some(h) = response.header.as_mut() {
                        h.cluster_id = header.cluster_id;
                        h.member_id = header.member_id;
                        h.raft_term = header.raft_term;
                    }
                    let parts = if fragmenting.contains(&response.watch_id) {
                        fragment(response, max_response_bytes)
                    } else {
                        vec![response]
                    };
                    for part in parts {
                        if sender.send(Ok(part)).await.is_err() {
                            shared.hub.lock().close_stream(stream_id);
                            return;
                        }
                    }
                }
                if more {
                    // A watcher of this stream is still catching up (its client is slow). Let
                    // other tasks run; if nothing went out this round, wait a little rather
                    // than spin until the client reads.
                    if sent_any {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(CATCH_UP_IDLE).await;
                    }
                    continue;
                }
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(WatchRequest { request_union: Some(request) })) => {
                            // Writers are answered before their revision reaches the hub:
                            // a new watch starts after what its client may have been told.
                            let seen = member.store().newest_revision();
                            let mut hub = shared.hub.lock();
                            // Unknown streams or watch ids need no answer, as in etcd.
                            let _ = match request {
                                RequestUnion::CreateRequest(create) => {
                                    let wants_fragments = create.fragment;
                                    let create = create_request(create);
                                    hub.create_seen(stream_id, create, seen).map(|id| {
                                        if wants_fragments {
                                            fragmenting.insert(id);
                                        }
                                    })
                                }
                                RequestUnion::CancelRequest(cancel) => {
                                    fragmenting.remove(&cancel.watch_id);
                                    hub.cancel(stream_id, cancel.watch_id)
                                }
                                RequestUnion::ProgressRequest(_) => hub.request_progress(stream_id),
                            };
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                    changed = published.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            shared.hub.lock().close_stream(stream_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
