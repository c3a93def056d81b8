//! A workload client's connection to the cluster: one node at a time, moving to the next
//! after a failure (the node may be dead, paused or cut off), as an etcd client library
//! balancing over its endpoints does.

use std::time::Duration;

use cairn::proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

/// How long an operation may take before its outcome counts as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting KV client of `url` (None: not a URL).
pub fn connect(url: &str) -> Option<KvClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(OP_TIMEOUT);
    Some(KvClient::new(endpoint.connect_lazy()))
}

pub struct NodeClient {
    endpoints: Vec<String>,
    next: usize,
    kv: Option<KvClient<Channel>>,
}

impl NodeClient {
    /// Client `id` starts on node `id` (mod the node count), so clients spread over nodes.
    pub fn new(id: u64, endpoints: Vec<String>) -> NodeClient {
        let next = id as usize % endpoints.len().max(1);
        NodeClient {
            endpoints,
            next,
            kv: None,
        }
    }

    /// The current connection, or one to the next node.
    pub fn kv(&mut self) -> Option<KvClient<Channel>> {
        if self.kv.is_none() {
            let url = self.endpoints.get(self.next)?.clone();
            self.next = (self.next + 1) % self.endpoints.len();
            self.kv = connect(&url);
        }
        self.kv.clone()
    }

    /// The last operation failed: the next one goes to another node.
    pub fn failed(&mut self) {
        self.kv = None;
    }
}
