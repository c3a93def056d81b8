//! Lease requests that only the leader can answer (keepalives, time left), forwarded from a
//! follower to the leader's client URL, as etcd forwards them to its leader.

use std::time::Duration;

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use crate::proto::etcdserverpb::{
    lease_client::LeaseClient, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Request metadata marking a request one member forwarded to another: it is never forwarded
/// again (two members that each think the other leads would bounce it back and forth).
pub const FORWARDED_KEY: &str = "cairn-forwarded";

/// Whether a request arrived forwarded by another member.
pub fn was_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_KEY)
}

pub fn marked<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// A client connection to the leader's client URL.
pub fn leader_channel(url: &str) -> Result<Channel, Status> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|err| Status::unavailable(format!("etcdserver: bad leader URL {url}: {err}")))?;
    let endpoint = crate::server::dial_source::apply(endpoint)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

fn leader_unreachable(status: &Status) -> Status {
    Status::unavailable(format!(
        "etcdserver: leader unreachable: {}",
        status.message()
    ))
}

/// One keepalive stream to the leader, carrying a follower's client stream's renewals.
pub struct KeepaliveProxy {
    /// The leader this stream goes to.
    pub leader: u64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

impl KeepaliveProxy {
    pub async fn open(leader: u64, url: &str, timeout: Duration) -> Result<Self, Status> {
        // Room for a whole batch: every renewal is sent before any answer is read.
        let (requests, receiver) = mpsc::channel(super::keepalive::MAX_RENEWALS_PER_BATCH);
        let mut client = LeaseClient::new(leader_channel(url)?);
        let call = client.lease_keep_alive(marked(ReceiverStream::new(receiver)));
        let responses = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Status::unavailable("etcdserver: request timed out"))?
            .map_err(|status| leader_unreachable(&status))?
            .into_inner();
        Ok(KeepaliveProxy {
            leader,
            requests,
            responses,
        })
    }

    /// Renews every lease of `ids` at the leader; the TTLs it answered with, in order (the
    /// leader answers a stream's renewals in the order they came).
    pub async fn renew_all(&mut self, ids: &[i64], timeout: Duration) -> Result<Vec<i64>, Status> {
        debug_assert!(
            ids.len() <= super::keepalive::MAX_RENEWALS_PER_BATCH,
            "sends never wait"
        );
        for &id in ids {
            self.requests
                .send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Status::unavailable("etcdserver: leader stream closed"))?;
        }
        let give_up = tokio::time::Instant::now() + timeout;
        let mut ttls = Vec::with_capacity(ids.len());
        while ttls.len() < ids.len() {
            let answer = tokio::time::timeout_at(give_up, self.responses.message())
                .await
                .map_err(|_| Status::unavailable("etcdserver: request timed out"))?;
            match answer {
                Ok(Some(response)) => ttls.push(response.ttl),
                Ok(None) => return Err(Status::unavailable("etcdserver: leader stream closed")),
                Err(status) => return Err(leader_unreachable(&status)),
            }
        }
        Ok(ttls)
    }
}

/// Asks the leader how long a lease has left.
pub async fn time_to_live(
    url: &str,
    request: LeaseTimeToLiveRequest,
    timeout: Duration,
) -> Result<LeaseTimeToLiveResponse, Status> {
    let mut client = LeaseClient::new(leader_channel(url)?);
    let call = client.lease_time_to_live(marked(request));
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Status::unavailable("etcdserver: request timed out"))?
        .map(tonic::Response::into_inner)
        .map_err(|status| leader_unreachable(&status))
}
