//! The set workload's clients: unique adds (each a put of its own key) and reads of the whole
//! set, then one final linearizable read after the faults end. Every acknowledged add must be
//! in the final read, and in every read that began after it was acknowledged.
//!
//! Keys are `s/<epoch>/<value>`, the epoch counting ten-second spans of the run, and reads
//! during the run read one recent epoch's prefix: a read of the whole set would grow with the
//! run (a thirty-minute run adds hundreds of thousands of elements), a read of one epoch
//! stays bounded and still overlaps the adds racing it.
//!
//! History, JSON lines: `{"client":3,"call":ns,"return":ns|null,"op":"add","epoch":2,
//! "value":17,"ok":true}` and `{"client":0,"call":ns,"return":ns,"op":"read","epoch":2 or
//! null (all epochs),"value":[...],"ok":true}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use serde_json::json;
use tonic::transport::Channel;

use crate::client::{connect, NodeClient, OP_TIMEOUT};
use crate::rng::Rng;
use crate::run::HistoryLog;

const EPOCH: Duration = Duration::from_secs(10);
const PREFIX: &str = "s/";

/// State the workload's clients share: the next value to add.
#[derive(Default)]
pub struct SetShared {
    next_value: AtomicU64,
}

fn epoch_of(origin: Instant) -> u64 {
    (origin.elapsed().as_nanos() / EPOCH.as_nanos()) as u64
}

/// The key range of one epoch (or, for None, the whole set).
fn range_of(epoch: Option<u64>) -> (Vec<u8>, Vec<u8>) {
    let prefix = match epoch {
        Some(epoch) => format!("{PREFIX}{epoch}/"),
        None => PREFIX.to_string(),
    };
    let mut end = prefix.clone().into_bytes();
    // Every key under the prefix sorts below the prefix with its last byte raised ('/' + 1).
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (prefix.into_bytes(), end)
}

/// The set's elements in `epoch` (None: all), read in pages at one revision: a thirty-minute
/// run's whole set is far larger than one gRPC message may be.
async fn read(kv: &mut KvClient<Channel>, epoch: Option<u64>) -> Result<Vec<u64>, tonic::Status> {
    const PAGE: i64 = 10_000;
    let (mut key, range_end) = range_of(epoch);
    let mut revision = 0;
    let mut values = Vec::new();
    loop {
        let response = kv
            .range(RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                keys_only: true,
                limit: PAGE,
                revision,
                ..Default::default()
            })
            .await?
            .into_inner();
        if revision == 0 {
            revision = response.header.as_ref().map_or(0, |h| h.revision);
        }
        values.extend(response.kvs.iter().filter_map(|kv| {
            let key = std::str::from_utf8(&kv.key).ok()?;
            key.rsplit('/').next()?.parse::<u64>().ok()
        }));
        match response.kvs.last() {
            Some(last) if response.more => {
                // The next page starts just after the last key of this one.
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }
    values.sort_unstable();
    Ok(values)
}

/// One client's loop until `deadline`: client 1 reads a recent epoch every ~100 ms, the
/// others add.
pub async fn worker(
    id: u64,
    endpoints: Vec<String>,
    shared: Arc<SetShared>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let mut rng = Rng::new(seed);
    let mut node = NodeClient::new(id, endpoints);
    while Instant::now() < deadline {
        let Some(mut client) = node.kv() else { return };
        let call = origin.elapsed().as_nanos() as u64;
        let now = || origin.elapsed().as_nanos() as u64;
        let line = if id == 1 {
            tokio::time::sleep(Duration::from_millis(50 + rng.below(100))).await;
            let call = origin.elapsed().as_nanos() as u64;
            let epoch = epoch_of(origin).saturating_sub(rng.below(2));
            match tokio::time::timeout(OP_TIMEOUT, read(&mut client, Some(epoch))).await {
                Ok(Ok(values)) => json!({"client": id, "call": call, "return": now(),
                    "op": "read", "epoch": epoch, "value": values, "ok": true}),
                // A read that failed tells nothing: it is recorded as failed.
                _ => {
                    node.failed();
                    json!({"client": id, "call": call, "return": now(), "op": "read",
                        "epoch": epoch, "value": null, "ok": false})
                }
            }
        } else {
            let value = shared.next_value.fetch_add(1, Ordering::SeqCst) + 1;
            let epoch = epoch_of(origin);
            let put = client.put(PutRequest {
                key: format!("{PREFIX}{epoch}/{value}").into_bytes(),
                ..Default::default()
            });
            match tokio::time::timeout(OP_TIMEOUT, put).await {
                Ok(Ok(_)) => json!({"client": id, "call": call, "return": now(), "op": "add",
                    "epoch": epoch, "value": value, "ok": true}),
                // An error may come after the put was proposed: the outcome is unknown.
                _ => {
                    node.failed();
                    json!({"client": id, "call": call, "return": null, "op": "add",
                        "epoch": epoch, "value": value, "ok": false})
                }
            }
        };
        history.push(line.to_string());
    }
}

/// Reads the whole set once the faults are over (retrying: a read changes nothing).
pub async fn final_read(endpoints: &[String], origin: Instant, history: &HistoryLog) {
    for attempt in 0..30 {
        let Some(mut client) = connect(&endpoints[attempt % endpoints.len()]) else {
            continue;
        };
        let call = origin.elapsed().as_nanos() as u64;
        if let Ok(Ok(values)) =
            tokio::time::timeout(Duration::from_secs(60), read(&mut client, None)).await
        {
            let ret = origin.elapsed().as_nanos() as u64;
            history.push(
                json!({"client": 0, "call": call, "return": ret, "op": "read",
                    "epoch": null, "value": values, "ok": true})
                .to_string(),
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
