//! The lease workload's clients. Each holder grants a lease, puts a key attached to it, keeps
//! it alive for a few seconds, then either revokes it or abandons it to expire; one reader
//! lists every leased key (and its lease) several times a second. The checker
//! ([`crate::lease_check`]) holds the reads against what the holders did: a key is never
//! readable after its lease was revoked or expired, and never vanishes while its lease is
//! kept alive.
//!
//! History, JSON lines, every op with `client`, `call`, `return` (null: indeterminate) and
//! `ok`: `{"op":"grant","lease":id,"ttl":s}`, `{"op":"put","key":k,"lease":id}`,
//! `{"op":"keepalive","lease":id,"ttl":s}` (the TTL the renewal granted; 0: the lease was
//! gone), `{"op":"revoke","lease":id}`, and the reader's `{"op":"read","value":[[key,
//! lease],...]}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    lease_client::LeaseClient, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::client::{NodeClient, OP_TIMEOUT};
use crate::rng::Rng;
use crate::run::HistoryLog;

/// The TTL every lease is granted (etcd's minimum here is 2 s; a few renewals fit in it).
pub const TTL_SECONDS: i64 = 4;
const PREFIX: &str = "l/";
const KEEPALIVE_EVERY: Duration = Duration::from_millis(1000);
/// Half the leases are renewed this often instead: a lease renewed within a fraction of a
/// second of its last recorded checkpoint is answered from it (`cairn::lease`), without a
/// log entry of its own, and the faults must find no promise that path breaks.
const RAPID_KEEPALIVE_EVERY: Duration = Duration::from_millis(150);

fn lease_client(url: &str) -> Option<LeaseClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(OP_TIMEOUT);
    Some(LeaseClient::new(endpoint.connect_lazy()))
}

/// Records one operation.
struct Recorder<'a> {
    client: u64,
    origin: Instant,
    history: &'a HistoryLog,
}

impl Recorder<'_> {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn record(&self, call: u64, ret: Option<u64>, ok: bool, fields: Value) {
        let mut line = json!({"client": self.client, "call": call, "return": ret, "ok": ok});
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        self.history.push(line.to_string());
    }
}

/// One holder's or (client 1) the reader's loop until `deadline`.
pub async fn worker(
    id: u64,
    endpoints: Vec<String>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let recorder = Recorder {
        client: id,
        origin,
        history: &history,
    };
    if id == 1 {
        read_loop(&endpoints, deadline, &recorder).await;
        return;
    }
    let mut rng = Rng::new(seed);
    let mut node = NodeClient::new(id, endpoints.clone());
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let url = &endpoints[(id + round) as usize % endpoints.len()];
        let Some(mut leases) = lease_client(url) else {
            return;
        };
        // Grant.
        let call = recorder.now();
        let granted = tokio::time::timeout(
            OP_TIMEOUT,
            leases.lease_grant(LeaseGrantRequest {
                ttl: TTL_SECONDS,
                id: 0,
            }),
        )
        .await;
        let lease = match granted {
            Ok(Ok(response)) if response.get_ref().error.is_empty() => {
                let lease = response.into_inner().id;
                recorder.record(
                    call,
                    Some(recorder.now()),
                    true,
                    json!({"op": "grant", "lease": lease, "ttl": TTL_SECONDS}),
                );
                lease
            }
            // A lease granted without our knowing its id is never used: nothing to record.
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Put a key attached to it.
        let key = format!("{PREFIX}{id}/{round}");
        let Some(mut kv) = node.kv() else { return };
        let call = recorder.now();
        let put = kv.put(PutRequest {
            key: key.clone().into_bytes(),
            value: round.to_string().into_bytes(),
            lease,
            ..Default::default()
        });
        match tokio::time::timeout(OP_TIMEOUT, put).await {
            Ok(Ok(_)) => recorder.record(
                call,
                Some(recorder.now()),
                true,
                json!({"op": "put", "key": key, "lease": lease}),
            ),
            _ => {
                node.failed();
                recorder.record(
                    call,
                    None,
                    false,
                    json!({"op": "put", "key": key, "lease": lease}),
                );
            }
        }
        // Keep it alive for a while.
        let keep_for = Duration::from_millis(2000 + rng.below(6000));
        let every = if rng.below(2) == 0 {
            KEEPALIVE_EVERY
        } else {
            RAPID_KEEPALIVE_EVERY
        };
        keep_alive(
            &mut leases,
            lease,
            keep_for.min(deadline.saturating_duration_since(Instant::now())),
            every,
            &recorder,
        )
        .await;
        // Then revoke it, or abandon it to expire.
        if rng.below(2) == 0 {
            let call = recorder.now();
            let revoked = tokio::time::timeout(
                OP_TIMEOUT,
                leases.lease_revoke(LeaseRevokeRequest { id: lease }),
            )
            .await;
            match revoked {
                Ok(Ok(_)) => recorder.record(
                    call,
                    Some(recorder.now()),
                    true,
                    json!({"op": "revoke", "lease": lease}),
                ),
                // "requested lease not found": it had expired already; nothing changed.
                Ok(Err(status)) if status.message().contains("not found") => recorder.record(
                    call,
                    Some(recorder.now()),
                    false,
                    json!({"op": "revoke", "lease": lease}),
                ),
                _ => recorder.record(call, None, false, json!({"op": "revoke", "lease": lease})),
            }
        }
    }
}

/// Renews `lease` `every` so often for `keep_for`, one keepalive stream at a time (a new
/// one after a failure).
async fn keep_alive(
    leases: &mut LeaseClient<Channel>,
    lease: i64,
    keep_for: Duration,
    every: Duration,
    recorder: &Recorder<'_>,
) {
    let until = Instant::now() + keep_for;
    let mut stream = None;
    while Instant::now() < until {
        tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
        if stream.is_none() {
            let (sender, receiver) = mpsc::channel(4);
            let opened = tokio::time::timeout(
                OP_TIMEOUT,
                leases.lease_keep_alive(ReceiverStream::new(receiver)),
            )
            .await;
            match opened {
                Ok(Ok(responses)) => stream = Some((sender, responses.into_inner())),
                _ => continue,
            }
        }
        let Some((sender, responses)) = stream.as_mut() else {
            continue;
        };
        let call = recorder.now();
        let renewed = async {
            sender
                .send(LeaseKeepAliveRequest { id: lease })
                .await
                .ok()?;
            responses.message().await.ok()?
        };
        match tokio::time::timeout(OP_TIMEOUT, renewed).await {
            Ok(Some(response)) => {
                recorder.record(
                    call,
                    Some(recorder.now()),
                    true,
                    json!({"op": "keepalive", "lease": lease, "ttl": response.ttl}),
                );
                if response.ttl <= 0 {
                    // The lease is gone (expired during a fault): nothing left to keep.
                    return;
                }
            }
            _ => {
                recorder.record(
                    call,
                    None,
                    false,
                    json!({"op": "keepalive", "lease": lease}),
                );
                stream = None;
            }
        }
    }
}

/// Lists every leased key and its lease, several times a second, until `deadline`.
async fn read_loop(endpoints: &[String], deadline: Instant, recorder: &Recorder<'_>) {
    let mut node = NodeClient::new(1, endpoints.to_vec());
    let mut range_end = PREFIX.as_bytes().to_vec();
    if let Some(last) = range_end.last_mut() {
        *last += 1;
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(mut kv) = node.kv() else { return };
        let call = recorder.now();
        let read = kv.range(RangeRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: range_end.clone(),
            ..Default::default()
        });
        match tokio::time::timeout(OP_TIMEOUT, read).await {
            Ok(Ok(response)) => {
                let pairs: Vec<Value> = response
                    .into_inner()
                    .kvs
                    .iter()
                    .map(|kv| json!([String::from_utf8_lossy(&kv.key), kv.lease]))
                    .collect();
                recorder.record(
                    call,
                    Some(recorder.now()),
                    true,
                    json!({"op": "read", "value": pairs}),
                );
            }
            // A failed read tells nothing about the keys.
            _ => node.failed(),
        }
    }
}
