//! The register workload's client: reads, writes and compare-and-sets of small integers on a
//! few keys through the etcd v3 API, each with a timeout. An operation whose outcome is not
//! known (timeout, connection lost) is recorded as indeterminate and never retried.

use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    compare, kv_client::KvClient, request_op, Compare, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

/// How long an operation may take before its outcome counts as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

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
    endpoints: Vec<String>,
    next_endpoint: usize,
    kv: Option<KvClient<Channel>>,
}

/// What happened, as the history records it.
pub struct Outcome {
    pub ret: Option<u64>,
    pub value: Value,
    pub ok: bool,
}

impl RegisterClient {
    pub fn new(id: u64, endpoints: Vec<String>) -> Self {
        let next_endpoint = id as usize % endpoints.len().max(1);
        RegisterClient {
            id,
            endpoints,
            next_endpoint,
            kv: None,
        }
    }

    fn connection(&mut self) -> Option<KvClient<Channel>> {
        if self.kv.is_none() {
            let url = self.endpoints.get(self.next_endpoint)?.clone();
            self.next_endpoint = (self.next_endpoint + 1) % self.endpoints.len();
            let endpoint = Endpoint::from_shared(url).ok()?.connect_timeout(OP_TIMEOUT);
            self.kv = Some(KvClient::new(endpoint.connect_lazy()));
        }
        self.kv.clone()
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
        let Some(mut kv) = self.connection() else {
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
                self.kv = None;
                unknown(planned_value)
            }
        }
    }
}
