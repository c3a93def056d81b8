//! Watch at scale, over real gRPC streams, with writes going on: 10,000 watchers on one key
//! (100 streams of 100) each receive every one of the writes, in order, exactly once; one
//! watcher on a prefix receives all of 10,000 keys written by concurrent clients, each once,
//! in revision order.

mod common;

use std::time::Duration;

use cairn::proto::etcdserverpb::{
    kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion, PutRequest,
    RangeRequest, WatchCreateRequest, WatchRequest,
};
use common::{etcd35_dir, EtcdServer};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const STREAMS: usize = 100;
const WATCHERS_PER_STREAM: usize = 100;
const HOT_KEY_WRITES: i64 = 100;
const PREFIX_KEYS: usize = 10_000;
const PREFIX_WRITERS: usize = 10;

async fn connect(server: &EtcdServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.endpoint()))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn revision(kv: &mut KvClient<Channel>) -> i64 {
    kv.range(RangeRequest {
        key: b"x".to_vec(),
        ..Default::default()
    })
    .await
    .expect("range")
    .into_inner()
    .header
    .map_or(0, |h| h.revision)
}

/// Opens a stream with `watchers` watchers of `create`; returns, per watcher, the revisions
/// of the events it received, once it has `expected` events each (or the time ran out).
async fn watch_stream(
    channel: Channel,
    create: WatchCreateRequest,
    watchers: usize,
    expected: usize,
) -> Vec<Vec<i64>> {
    let (requests, receiver) = mpsc::channel(watchers + 1);
    for _ in 0..watchers {
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create.clone())),
            })
            .await
            .expect("create queued");
    }
    let mut responses = WatchClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .watch(ReceiverStream::new(receiver))
        .await
        .expect("watch stream")
        .into_inner();
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); watchers];
    let mut complete = 0;
    while complete < watchers {
        let next = tokio::time::timeout(Duration::from_secs(60), responses.message()).await;
        let Ok(Ok(Some(response))) = next else { break };
        let Ok(watcher) = usize::try_from(response.watch_id) else {
            continue;
        };
        let events = &mut seen[watcher];
        let before = events.len();
        events.extend(
            response
                .events
                .iter()
                .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision)),
        );
        if before < expected && events.len() >= expected {
            complete += 1;
        }
    }
    drop(requests);
    seen
}

#[test]
fn ten_thousand_watchers_on_one_key_each_get_every_write() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = connect(&cairn).await;
        let mut kv = KvClient::new(channel.clone());
        let first = revision(&mut kv).await + 1;
        let create = WatchCreateRequest {
            key: b"hot".to_vec(),
            start_revision: first,
            ..Default::default()
        };
        let mut streams = Vec::new();
        for n in 0..STREAMS {
            // Ten connections, as clients would share them.
            let channel = if n % 10 == 0 {
                connect(&cairn).await
            } else {
                channel.clone()
            };
            streams.push(tokio::spawn(watch_stream(
                channel,
                create.clone(),
                WATCHERS_PER_STREAM,
                HOT_KEY_WRITES as usize,
            )));
        }
        // The writes run while the watchers are still being created: the ones created
        // late catch up from storage, then continue live.
        for i in 0..HOT_KEY_WRITES {
            kv.put(PutRequest {
                key: b"hot".to_vec(),
                value: i.to_string().into_bytes(),
                ..Default::default()
            })
            .await
            .expect("put");
        }
        let expected: Vec<i64> = (first..first + HOT_KEY_WRITES).collect();
        let mut watchers = 0;
        for stream in streams {
            for (watch_id, revisions) in stream.await.expect("stream").iter().enumerate() {
                assert_eq!(
                    revisions, &expected,
                    "watcher {watch_id}: every write once, in order"
                );
                watchers += 1;
            }
        }
        assert_eq!(watchers, STREAMS * WATCHERS_PER_STREAM);
    });
}

#[test]
fn one_watcher_on_ten_thousand_keys_gets_every_key_once_in_order() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = connect(&cairn).await;
        let mut kv = KvClient::new(channel.clone());
        let first = revision(&mut kv).await + 1;
        let watcher = tokio::spawn(watch_stream(
            channel.clone(),
            WatchCreateRequest {
                key: b"many/".to_vec(),
                range_end: b"many0".to_vec(),
                start_revision: first,
                ..Default::default()
            },
            1,
            PREFIX_KEYS,
        ));
        let mut writers = Vec::new();
        for w in 0..PREFIX_WRITERS {
            let mut kv = KvClient::new(channel.clone());
            writers.push(tokio::spawn(async move {
                for i in (w..PREFIX_KEYS).step_by(PREFIX_WRITERS) {
                    kv.put(PutRequest {
                        key: format!("many/{i:05}").into_bytes(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .expect("put");
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let revisions = watcher.await.expect("watcher").remove(0);
        let expected: Vec<i64> = (first..first + PREFIX_KEYS as i64).collect();
        assert_eq!(revisions.len(), PREFIX_KEYS, "every key once");
        assert_eq!(revisions, expected, "in revision order, none skipped");
    });
}
