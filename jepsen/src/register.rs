//! The register workload's client: reads, writes and compare-and-sets of small integers on a
//! few keys through the etcd v3 API, each with a timeout. An operation whose outcome is not
//! known (timeout, connection lost) is recorded as indeterminate and never retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use cairn::proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use serde_json::{json, Value};

use crate::client::NodeClient;
use crate::rng::Rng;
use crate::run::HistoryLog;

pub use crate::client::{connect, OP_TIMEOUT};

/// What a client is about to do.
#[derive(Debug, Clone)]
pub enum Planned {
    Read,
    Write(i64),
    Cas(i64, i64),
}

/// One client: one connection at a time, moving to the next node after a failure.
pub struct RegisterClient {
    pub id: u64,
    node: NodeClient,
}

/// What happened, as the history records it.
pub struct Outcome {
    pub ret: Option<u64>,
    pub value: Value,
    pub ok: bool,
}

impl RegisterClient {
    pub fn new(id: u64, endpoints: Vec<String>) -> Self {
        RegisterClient {
            id,
            node: NodeClient::new(id, endpoints),
        }
    }

    /// Carries out `op` on `key`; `started` is the run's clock origin.
    pub async fn invoke(&mut self, key: &str, op: &Planned, started: Instant) -> Outcome {
        let unknown = |value: Value| Outcome {
            ret: None,
            value,
            ok: false,
        };
        let planned_value = match op {
            Planned::Read => Value::Null,
            Planned::Write(v) => json!(v),
            Planned::Cas(expected, new) => json!([expected, new]),
        };
        let Some(mut kv) = self.node.kv() else {
            return unknown(planned_value);
        };
        let call = async {
            match op {
                Planned::Read => {
                    let response = kv
                        .range(RangeRequest {
                            key: key.as_bytes().to_vec(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let value = response
                        .kvs
                        .first()
                        .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<i64>().ok());
                    Ok::<_, tonic::Status>((json!(value), true))
                }
                Planned::Write(v) => {
                    kv.put(PutRequest {
                        key: key.as_bytes().to_vec(),
                        value: v.to_string().into_bytes(),
                        ..Default::default()
                    })
                    .await?;
                    Ok((json!(v), true))
                }
                Planned::Cas(expected, new) => {
                    let response = kv
                        .txn(TxnRequest {
                            compare: vec![Compare {
                                result: compare::CompareResult::Equal as i32,
                                target: compare::CompareTarget::Value as i32,
                                key: key.as_bytes().to_vec(),
                                target_union: Some(compare::TargetUnion::Value(
                                    expected.to_string().into_bytes(),
                                )),
                                ..Default::default()
                            }],
                            success: vec![RequestOp {
                                request: Some(request_op::Request::RequestPut(PutRequest {
                                    key: key.as_bytes().to_vec(),
                                    value: new.to_string().into_bytes(),
                                    ..Default::default()
                                })),
                            }],
                            failure: vec![],
                        })
                        .await?
                        .into_inner();
                    Ok((json!([expected, new]), response.succeeded))
                }
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(Ok((value, ok))) => Outcome {
                ret: Some(started.elapsed().as_nanos() as u64),
                value,
                ok,
            },
            Ok(Err(_)) | Err(_) => {
                // The node may be gone: the next operation goes to another one.
                self.node.failed();
                unknown(planned_value)
            }
        }
    }
}

/// One client's loop until `deadline`: reads, writes and compare-and-sets on `keys` keys.
pub async fn worker(
    id: u64,
    endpoints: Vec<String>,
    keys: u64,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let mut rng = Rng::new(seed);
    let mut client = RegisterClient::new(id, endpoints);
    let mut written = 0i64;
    // What this client last saw in each key: its compare-and-sets expect that, so many of
    // them succeed (and race each other).
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    while Instant::now() < deadline {
        let key = format!("r{}", rng.below(keys));
        let op = match rng.below(3) {
            0 => Planned::Read,
            1 => {
                written += 1;
                Planned::Write(id as i64 * 1_000_000 + written)
            }
            _ => {
                written += 1;
                let expected = last_seen.get(&key).copied().unwrap_or(0);
                Planned::Cas(expected, id as i64 * 1_000_000 + written)
            }
        };
        let call = origin.elapsed().as_nanos() as u64;
        let outcome = client.invoke(&key, &op, origin).await;
        if outcome.ret.is_some() && outcome.ok {
            let now_holds = match op {
                Planned::Read => outcome.value.as_i64(),
                Planned::Write(v) | Planned::Cas(_, v) => Some(v),
            };
            if let Some(v) = now_holds {
                last_seen.insert(key.clone(), v);
            }
        }
        let name = match op {
            Planned::Read => "read",
            Planned::Write(_) => "write",
            Planned::Cas(..) => "cas",
        };
        history.push(
            json!({
                "client": id, "call": call, "return": outcome.ret, "op": name,
                "key": key, "value": outcome.value, "ok": outcome.ok,
            })
            .to_string(),
        );
    }
}
