//! Differential testing of Watch against the real etcd: the same seeded random writes (puts,
//! deletes of keys and prefixes, multi-key transactions, leases and their revokes,
//! compactions) go to an etcd 3.5.1 and to a cairn, while watchers are created on both at the
//! same moments with the same random options (key, prefix or everything; start revision in
//! the past, present or future, possibly compacted; prev_kv; filters). Every watcher's stream
//! of events — and its created and canceled responses, compact revisions included — must be
//! identical. How events are grouped into responses may differ (both keep each revision in
//! one response), so events are compared in order, not responses.
//!
//! Then one revision too large for one response (a prefix delete whose events, with prev_kv,
//! exceed etcd's limit) goes to watchers that asked for fragments: the fragments must be the
//! same on both, in count and size.
//!
//! Seeded: `CAIRN_WATCH_DIFF_SEED=<n>` replays one, `CAIRN_WATCH_DIFF_OPS=<n>` sets the length.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, request_op, watch_client::WatchClient,
    watch_create_request::FilterType, watch_request::RequestUnion, CompactionRequest,
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use common::{etcd35_dir, EtcdServer, Rng};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

const KEYS: &[&str] = &["a", "a/1", "a/2", "b", "b/1", "c"];

/// One server's side: clients, and its watch streams in creation order.
struct Side {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
    streams: Vec<(mpsc::Sender<WatchRequest>, mpsc::Receiver<WatchResponse>)>,
    /// Responses read so far, per stream.
    seen: Vec<Vec<WatchResponse>>,
}

impl Side {
    async fn connect(server: &EtcdServer) -> Side {
        let channel = Channel::from_shared(format!("http://{}", server.endpoint()))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Side {
            kv: KvClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            watch: WatchClient::new(channel).max_decoding_message_size(8 << 20),
            streams: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Opens a stream. The call is awaited in a task of its own: etcd sends the response
    /// headers only with its first response, which needs a request first.
    async fn open_stream(&mut self) {
        let (sender, receiver) = mpsc::channel(16);
        let (forward, responses) = mpsc::channel(1024);
        let mut client = self.watch.clone();
        tokio::spawn(async move {
            let mut stream: Streaming<WatchResponse> = client
                .watch(ReceiverStream::new(receiver))
                .await
                .expect("watch stream")
                .into_inner();
            while let Ok(Some(response)) = stream.message().await {
                if forward.send(response).await.is_err() {
                    return;
                }
            }
        });
        self.streams.push((sender, responses));
        self.seen.push(Vec::new());
    }

    /// Creates a watcher and waits until the server has (so later writes are ordered after
    /// the creation on both servers).
    async fn create(&mut self, stream: usize, request: WatchCreateRequest) {
        let (sender, responses) = &mut self.streams[stream];
        sender
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(request)),
            })
            .await
            .expect("create sent");
        loop {
            let response = tokio::time::timeout(Duration::from_secs(10), responses.recv())
                .await
                .expect("a created response within 10 s")
                .expect("stream open");
            let created = response.created;
            self.seen[stream].push(response);
            if created {
                return;
            }
        }
    }

    /// Every response on every stream until each has been quiet for `idle`.
    async fn collect(&mut self, idle: Duration) -> Vec<Vec<WatchResponse>> {
        for ((_, responses), seen) in self.streams.iter_mut().zip(&mut self.seen) {
            while let Ok(Some(response)) = tokio::time::timeout(idle, responses.recv()).await {
                seen.push(response);
            }
        }
        std::mem::take(&mut self.seen)
    }

    async fn revision(&mut self) -> i64 {
        let response = self
            .kv
            .range(RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        response.header.map_or(0, |h| h.revision)
    }
}

/// One write, the same on both sides; its result (errors included) is not compared here
/// (the KV differential test does that), only what watchers see of it.
#[derive(Debug, Clone)]
enum Write {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Grant(LeaseGrantRequest),
    Revoke(LeaseRevokeRequest),
    Compact(CompactionRequest),
}

impl Write {
    async fn apply(&self, side: &mut Side) {
        let _ = match self.clone() {
            Write::Put(r) => side.kv.put(r).await.map(|_| ()),
            Write::Delete(r) => side.kv.delete_range(r).await.map(|_| ()),
            Write::Txn(r) => side.kv.txn(r).await.map(|_| ()),
            Write::Grant(r) => side.lease.lease_grant(r).await.map(|_| ()),
            Write::Revoke(r) => side.lease.lease_revoke(r).await.map(|_| ()),
            Write::Compact(r) => side.kv.compact(r).await.map(|_| ()),
        };
    }
}

fn key(rng: &mut Rng) -> Vec<u8> {
    KEYS[rng.below(KEYS.len() as u64) as usize]
        .as_bytes()
        .to_vec()
}

fn put(rng: &mut Rng) -> PutRequest {
    PutRequest {
        key: key(rng),
        value: format!("v{}", rng.below(100)).into_bytes(),
        lease: if rng.chance(20) {
            1 + rng.below(3) as i64
        } else {
            0
        },
        ..Default::default()
    }
}

fn delete(rng: &mut Rng) -> DeleteRangeRequest {
    let key = key(rng);
    let range_end = if rng.chance(40) {
        let mut end = key.clone();
        end.push(0xff);
        end
    } else {
        Vec::new()
    };
    DeleteRangeRequest {
        key,
        range_end,
        prev_kv: false,
    }
}

fn write(rng: &mut Rng, current: i64) -> Write {
    match rng.below(100) {
        0..=44 => Write::Put(put(rng)),
        45..=59 => Write::Delete(delete(rng)),
        60..=79 => {
            let ops = (0..2 + rng.below(3))
                .map(|_| RequestOp {
                    request: Some(if rng.chance(70) {
                        request_op::Request::RequestPut(put(rng))
                    } else {
                        request_op::Request::RequestDeleteRange(delete(rng))
                    }),
                })
                .collect();
            Write::Txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
        }
        80..=87 => Write::Grant(LeaseGrantRequest {
            id: 1 + rng.below(3) as i64,
            ttl: 3600,
        }),
        88..=95 => Write::Revoke(LeaseRevokeRequest {
            id: 1 + rng.below(3) as i64,
        }),
        _ => Write::Compact(CompactionRequest {
            revision: (current - 3).max(1),
            physical: false,
        }),
    }
}

fn watch_request(rng: &mut Rng, current: i64) -> WatchCreateRequest {
    let (key, range_end) = match rng.below(3) {
        0 => (key(rng), Vec::new()),
        1 => {
            let key = key(rng);
            let mut end = key.clone();
            end.push(0xff);
            (key, end)
        }
        _ => (vec![0], vec![0]),
    };
    let mut filters = Vec::new();
    if rng.chance(15) {
        filters.push(FilterType::Noput as i32);
    }
    if rng.chance(15) {
        filters.push(FilterType::Nodelete as i32);
    }
    WatchCreateRequest {
        key,
        range_end,
        start_revision: match rng.below(4) {
            0 => 0,
            1 => current + 1 + rng.below(3) as i64,
            _ => rng.below(current.max(1) as u64 + 1) as i64,
        },
        prev_kv: rng.chance(50),
        filters,
        ..Default::default()
    }
}

/// A watcher's whole feed, response grouping aside: created/canceled responses as they are,
/// events one per line, headers masked.
fn feeds(responses: &[WatchResponse]) -> BTreeMap<i64, Vec<String>> {
    let mut feeds: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for response in responses {
        let feed = feeds.entry(response.watch_id).or_default();
        if response.created || response.canceled {
            feed.push(format!(
                "created={} canceled={} compact_revision={} reason={:?}",
                response.created,
                response.canceled,
                response.compact_revision,
                response.cancel_reason
            ));
        }
        for event in &response.events {
            feed.push(format!("{event:?}"));
        }
    }
    feeds
}

async fn run_sequence(
    seed: u64,
    steps: usize,
    etcd: &EtcdServer,
    cairn: &EtcdServer,
) -> Result<usize, String> {
    let (mut reference, mut ours) = (Side::connect(etcd).await, Side::connect(cairn).await);
    let mut rng = Rng(seed.max(1));
    for _ in 0..3 {
        reference.open_stream().await;
        ours.open_stream().await;
    }
    let mut current = 1;
    let mut watchers = 0;
    for _ in 0..steps {
        if rng.chance(12) {
            let request = watch_request(&mut rng, current);
            let stream = rng.below(3) as usize;
            reference.create(stream, request.clone()).await;
            ours.create(stream, request).await;
            watchers += 1;
        } else {
            let w = write(&mut rng, current);
            if matches!(w, Write::Compact(_)) {
                // etcd moves watchers that are behind forward every 100 ms; a compaction
                // before that would cancel them on etcd only (a race, not a difference).
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            w.apply(&mut reference).await;
            w.apply(&mut ours).await;
        }
        current = reference.revision().await;
        let ours_at = ours.revision().await;
        if ours_at != current {
            return Err(format!(
                "seed {seed}: revisions diverged: etcd {current}, cairn {ours_at}"
            ));
        }
    }
    let idle = Duration::from_millis(1500);
    let (expected, got) = (reference.collect(idle).await, ours.collect(idle).await);
    let mut events = 0;
    for (stream, (want, have)) in expected.iter().zip(&got).enumerate() {
        let (want, have) = (feeds(want), feeds(have));
        events += want.values().map(Vec::len).sum::<usize>();
        if want != have {
            for (id, feed) in &want {
                let mine = have.get(id).cloned().unwrap_or_default();
                if *feed != mine {
                    let at = feed.iter().zip(&mine).take_while(|(a, b)| a == b).count();
                    return Err(format!(
                        "seed {seed}, stream {stream}, watch {id}: feeds differ at line {at}\n  etcd:  {:?}\n  cairn: {:?}",
                        feed.get(at),
                        mine.get(at)
                    ));
                }
            }
            return Err(format!(
                "seed {seed}, stream {stream}: cairn has extra watchers: {:?}",
                have.keys()
            ));
        }
    }
    if watchers > 0 && events == 0 {
        return Err(format!("seed {seed}: {watchers} watchers saw nothing"));
    }
    Ok(events)
}

#[test]
fn random_writes_give_identical_watch_feeds_on_etcd_and_cairn() {
    let bin = etcd35_dir();
    let steps: usize = std::env::var("CAIRN_WATCH_DIFF_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seeds: Vec<u64> = match std::env::var("CAIRN_WATCH_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3],
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for seed in seeds {
        let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
        match runtime.block_on(run_sequence(seed, steps, &etcd, &cairn)) {
            Ok(events) => eprintln!("seed {seed}: {steps} steps, {events} events, identical feeds"),
            Err(difference) => panic!("{difference}\nreplay with CAIRN_WATCH_DIFF_SEED={seed}"),
        }
    }
}

/// Fragments of one large revision, as (events, fragment flag) per response.
async fn fragments(server: &EtcdServer) -> Vec<(usize, bool)> {
    let mut side = Side::connect(server).await;
    let value = vec![b'x'; 3000];
    for i in 0..800 {
        side.kv
            .put(PutRequest {
                key: format!("big/{i:04}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .expect("put");
    }
    side.open_stream().await;
    side.create(
        0,
        WatchCreateRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            prev_kv: true,
            fragment: true,
            ..Default::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    side.kv
        .delete_range(DeleteRangeRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            prev_kv: false,
        })
        .await
        .expect("delete");
    let responses = side.collect(Duration::from_millis(1500)).await.remove(0);
    debug_assert!(responses.iter().any(|r| r.created));
    responses
        .iter()
        .filter(|r| !r.created)
        .map(|r| (r.events.len(), r.fragment))
        .collect()
}

#[test]
fn a_revision_too_large_for_one_response_is_fragmented_as_etcd_fragments_it() {
    let bin = etcd35_dir();
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let expected = runtime.block_on(fragments(&etcd));
    let got = runtime.block_on(fragments(&cairn));
    assert!(
        expected.len() > 1,
        "etcd fragmented the revision: {expected:?}"
    );
    assert_eq!(got, expected);
}
