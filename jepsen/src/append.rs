//! The list-append workload's clients: transactions of reads and appends over a few lists,
//! each list a key whose value is its elements separated by spaces. A transaction reads
//! every key it touches in one read-only etcd Txn (one revision), then commits its appends in
//! a second Txn guarded by `mod_revision == what it read` on every key it touches, so it
//! takes effect at one instant or not at all. Appended values are unique in the whole run
//! (one shared counter), and keys rotate (a new key every few dozen appends) so that lists
//! stay short and every key's history is checked in full.
//!
//! Outcomes: the guard failed or the read phase failed → `ok: false` (definitely not
//! committed); the commit timed out or lost its connection → indeterminate (`return: null`),
//! never retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cairn::proto::etcdserverpb::{
    compare, kv_client::KvClient, request_op, response_op, Compare, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::client::{connect, NodeClient, OP_TIMEOUT};
use crate::rng::Rng;
use crate::run::HistoryLog;

/// Keys written at once; each takes about `APPENDS_PER_KEY` appends before it rotates out.
const ACTIVE_KEYS: u64 = 8;
const APPENDS_PER_KEY: u64 = 32;
const MAX_OPS_PER_TXN: u64 = 4;
/// Keys per final-read transaction (etcd allows 128 operations in one).
const FINAL_READ_KEYS_PER_TXN: usize = 100;

/// State the workload's clients share.
#[derive(Default)]
pub struct AppendShared {
    next_value: AtomicU64,
}

impl AppendShared {
    /// Every key the run may have written (for the final reads).
    pub fn keys_used(&self) -> Vec<String> {
        let appended = self.next_value.load(Ordering::SeqCst);
        let last = appended / APPENDS_PER_KEY + ACTIVE_KEYS;
        (0..=last).map(key_name).collect()
    }
}

fn key_name(n: u64) -> String {
    format!("a{n}")
}

/// One planned micro-operation.
#[derive(Clone)]
enum Micro {
    Read(String),
    Append(String, u64),
}

fn plan(rng: &mut Rng, shared: &AppendShared) -> Vec<Micro> {
    let count = 1 + rng.below(MAX_OPS_PER_TXN);
    let mut ops = Vec::new();
    for _ in 0..count {
        // The window of live keys slides by one key every APPENDS_PER_KEY appends; with
        // ACTIVE_KEYS keys in the window each gets about APPENDS_PER_KEY appends in all.
        let base = shared.next_value.load(Ordering::Relaxed) / APPENDS_PER_KEY;
        let key = key_name(base + rng.below(ACTIVE_KEYS));
        if rng.below(2) == 0 {
            ops.push(Micro::Read(key));
        } else {
            let value = shared.next_value.fetch_add(1, Ordering::SeqCst) + 1;
            ops.push(Micro::Append(key, value));
        }
    }
    ops
}

fn parse_list(bytes: &[u8]) -> Vec<u64> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn encode_list(list: &[u64]) -> Vec<u8> {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
        .into_bytes()
}

/// What the read phase saw of one key.
struct Seen {
    list: Vec<u64>,
    mod_revision: i64,
}

async fn read_phase(
    kv: &mut KvClient<Channel>,
    keys: &[String],
) -> Result<HashMap<String, Seen>, tonic::Status> {
    let request = TxnRequest {
        success: keys
            .iter()
            .map(|key| RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    };
    let response = kv.txn(request).await?.into_inner();
    let mut seen = HashMap::new();
    for (key, op) in keys.iter().zip(response.responses) {
        let Some(response_op::Response::ResponseRange(range)) = op.response else {
            return Err(tonic::Status::internal(
                "a range answered with something else",
            ));
        };
        let entry = match range.kvs.first() {
            Some(kv) => Seen {
                list: parse_list(&kv.value),
                mod_revision: kv.mod_revision,
            },
            None => Seen {
                list: Vec::new(),
                mod_revision: 0,
            },
        };
        seen.insert(key.clone(), entry);
    }
    Ok(seen)
}

/// The micro-operations as the history records them, given each key's list before the
/// transaction (`None`: results unknown).
fn record(ops: &[Micro], before: Option<&HashMap<String, Seen>>) -> Value {
    let mut lists: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut out = Vec::new();
    for op in ops {
        match op {
            Micro::Read(key) => {
                let value = before.map(|seen| {
                    let list = lists.entry(key).or_insert_with(|| {
                        seen.get(key).map(|s| s.list.clone()).unwrap_or_default()
                    });
                    json!(list)
                });
                out.push(json!(["r", key, value]));
            }
            Micro::Append(key, value) => {
                if let Some(seen) = before {
                    lists
                        .entry(key)
                        .or_insert_with(|| {
                            seen.get(key).map(|s| s.list.clone()).unwrap_or_default()
                        })
                        .push(*value);
                }
                out.push(json!(["append", key, value]));
            }
        }
    }
    Value::Array(out)
}

/// Commits `ops`' appends if no key changed since `seen`. Ok(false): a key changed.
async fn commit_phase(
    kv: &mut KvClient<Channel>,
    ops: &[Micro],
    seen: &HashMap<String, Seen>,
) -> Result<bool, tonic::Status> {
    let mut lists: HashMap<&str, Vec<u64>> = HashMap::new();
    for op in ops {
        if let Micro::Append(key, value) = op {
            lists
                .entry(key)
                .or_insert_with(|| seen.get(key).map(|s| s.list.clone()).unwrap_or_default())
                .push(*value);
        }
    }
    let compare = seen
        .iter()
        .map(|(key, s)| Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(s.mod_revision)),
            ..Default::default()
        })
        .collect();
    let success = lists
        .iter()
        .map(|(key, list)| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: encode_list(list),
                ..Default::default()
            })),
        })
        .collect();
    let response = kv
        .txn(TxnRequest {
            compare,
            success,
            failure: vec![],
        })
        .await?
        .into_inner();
    Ok(response.succeeded)
}

/// One client's loop until `deadline`.
pub async fn worker(
    id: u64,
    endpoints: Vec<String>,
    shared: Arc<AppendShared>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let mut rng = Rng::new(seed);
    let mut node = NodeClient::new(id, endpoints);
    while Instant::now() < deadline {
        let ops = plan(&mut rng, &shared);
        let call = origin.elapsed().as_nanos() as u64;
        let Some(client) = node.kv() else { return };
        let (ret, ok, txn) = transact(client, &ops, origin).await;
        if ret.is_none() || !ok {
            // The node may be gone or partitioned away: the next transaction goes elsewhere.
            node.failed();
        }
        history.push(
            json!({"client": id, "call": call, "return": ret, "ok": ok, "txn": txn}).to_string(),
        );
    }
}

/// Runs one transaction: (return time or None when unknown, committed, recorded ops).
async fn transact(
    mut kv: KvClient<Channel>,
    ops: &[Micro],
    origin: Instant,
) -> (Option<u64>, bool, Value) {
    let mut keys: Vec<String> = ops
        .iter()
        .map(|op| match op {
            Micro::Read(key) | Micro::Append(key, _) => key.clone(),
        })
        .collect();
    keys.sort();
    keys.dedup();
    let now = || Some(origin.elapsed().as_nanos() as u64);
    let seen = match tokio::time::timeout(OP_TIMEOUT, read_phase(&mut kv, &keys)).await {
        Ok(Ok(seen)) => seen,
        // Nothing was written: a definite failure.
        _ => return (now(), false, record(ops, None)),
    };
    if !ops.iter().any(|op| matches!(op, Micro::Append(..))) {
        return (now(), true, record(ops, Some(&seen)));
    }
    match tokio::time::timeout(OP_TIMEOUT, commit_phase(&mut kv, ops, &seen)).await {
        Ok(Ok(true)) => (now(), true, record(ops, Some(&seen))),
        Ok(Ok(false)) => (now(), false, record(ops, None)),
        Ok(Err(_)) | Err(_) => (None, false, record(ops, None)),
    }
}

/// Reads every key after the faults end (retrying: reads change nothing), recorded as
/// ordinary read-only transactions so lost appends show.
pub async fn final_reads(
    endpoints: &[String],
    shared: &AppendShared,
    origin: Instant,
    history: &HistoryLog,
) {
    let keys = shared.keys_used();
    // The node that answered last is asked first: a node a fault left down (or removed)
    // would otherwise cost every chunk a timeout, and a 30-minute run has tens of thousands
    // of keys.
    let mut node = 0;
    for chunk in keys.chunks(FINAL_READ_KEYS_PER_TXN) {
        let ops: Vec<Micro> = chunk.iter().cloned().map(Micro::Read).collect();
        for attempt in 0..30 {
            let at = (node + attempt) % endpoints.len();
            let Some(client) = connect(&endpoints[at]) else {
                continue;
            };
            let call = origin.elapsed().as_nanos() as u64;
            let (ret, ok, txn) = transact(client, &ops, origin).await;
            if ok {
                node = at;
                history.push(
                    json!({"client": 0, "call": call, "return": ret, "ok": ok, "txn": txn})
                        .to_string(),
                );
                break;
            }
            if attempt + 1 >= endpoints.len() {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
