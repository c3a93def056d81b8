//! The streaming workloads of `cairnctl bench`: watch fan-out (one writer, many watchers on
//! many streams; events delivered per second and delivery delay) and lease keepalives (many
//! leases renewed over keepalive streams; renewals per second and round-trip latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::bench::Report;
use super::histogram::Histogram;
use super::CtlError;
use crate::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
    watch_request::RequestUnion, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    WatchCreateRequest, WatchRequest,
};

/// How long watchers may take to deliver the last events after the last put.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a quiet watch stream looks whether the writer is done.
const POLL: Duration = Duration::from_millis(100);

/// Watch fan-out settings.
#[derive(Debug, Clone, Copy)]
pub struct WatchLoad {
    pub streams: usize,
    pub watchers_per_stream: usize,
    /// Puts per second by the single writer.
    pub put_rate: u64,
    pub puts: u64,
    pub val_size: usize,
}

/// Opens one stream with `watchers` watchers on `key`; returns once all are created, with a
/// task that records each event's delivery delay until the writer is done and every
/// watcher has each of its acknowledged puts (or the drain timeout passed).
async fn open_watchers(
    channel: Channel,
    key: Vec<u8>,
    watchers: usize,
    writes: watch::Receiver<Option<u64>>,
    base: Instant,
) -> Result<tokio::task::JoinHandle<Histogram>, CtlError> {
    let (requests, receiver) = mpsc::channel(watchers.max(1));
    let create = WatchCreateRequest {
        key,
        ..Default::default()
    };
    let sender = requests.clone();
    tokio::spawn(async move {
        for _ in 0..watchers {
            let request = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create.clone())),
            };
            if sender.send(request).await.is_err() {
                return;
            }
        }
    });
    let mut responses = WatchClient::new(channel)
        .watch(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let mut created = 0;
    while created < watchers {
        match responses.message().await? {
            Some(response) if response.created => created += 1,
            Some(_) => {}
            None => return Err(CtlError::Failed("watch stream ended early".into())),
        }
    }
    Ok(tokio::spawn(async move {
        let _keep_open = requests;
        let mut delays = Histogram::default();
        let mut writer_done_at = None;
        loop {
            if let Some(puts) = *writes.borrow() {
                let done_at = *writer_done_at.get_or_insert_with(Instant::now);
                if delays.count() >= puts * watchers as u64 || done_at.elapsed() > DRAIN_TIMEOUT {
                    break;
                }
            }
            let next = tokio::time::timeout(POLL, responses.message()).await;
            let response = match next {
                Ok(Ok(Some(response))) => response,
                Ok(_) => break,
                Err(_) => continue,
            };
            let now = base.elapsed().as_micros() as u64;
            for event in &response.events {
                let sent = event.kv.as_ref().map_or(0, |kv| sent_micros(&kv.value));
                delays.record(now.saturating_sub(sent));
            }
        }
        delays
    }))
}

/// The writer's send time, carried in the first 8 bytes of each value.
fn sent_micros(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// A value of `size` bytes (at least 8) that carries `micros`.
pub fn stamped_value(micros: u64, size: usize) -> Vec<u8> {
    let mut value = micros.to_be_bytes().to_vec();
    value.resize(size.max(8), b'v');
    value
}

pub async fn run_watch(load: WatchLoad, channels: &[Channel]) -> Result<Report, CtlError> {
    let base = Instant::now();
    let key = b"cairn-bench-watch".to_vec();
    let (writes_done, writes) = watch::channel(None);
    let mut receivers = Vec::new();
    for stream in 0..load.streams.max(1) {
        let channel = channels[stream % channels.len()].clone();
        let watchers = load.watchers_per_stream;
        receivers.push(open_watchers(channel, key.clone(), watchers, writes.clone(), base).await?);
    }
    let mut writer = KvClient::new(channels[0].clone());
    let started = Instant::now();
    let mut errors = 0;
    for n in 0..load.puts {
        if load.put_rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / load.put_rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let value = stamped_value(base.elapsed().as_micros() as u64, load.val_size);
        let put = PutRequest {
            key: key.clone(),
            value,
            ..Default::default()
        };
        if writer.put(put).await.is_err() {
            errors += 1;
        }
    }
    let acknowledged = load.puts - errors;
    let _ = writes_done.send(Some(acknowledged));
    let mut delays = Histogram::default();
    for receiver in receivers {
        if let Ok(stream_delays) = receiver.await {
            delays.merge(&stream_delays);
        }
    }
    // Every acknowledged put must reach every watcher; a missing event counts as an error.
    let expected = acknowledged * (load.streams.max(1) * load.watchers_per_stream) as u64;
    let lost = expected.saturating_sub(delays.count());
    Ok(Report {
        workload: "watch",
        requests: delays.count(),
        errors: errors + lost,
        elapsed: started.elapsed(),
        latency: delays,
    })
}

/// Lease keepalive settings.
#[derive(Debug, Clone, Copy)]
pub struct KeepaliveLoad {
    pub leases: usize,
    pub ttl_seconds: i64,
    /// Keepalives to measure.
    pub total: u64,
    pub clients: usize,
}

pub async fn run_keepalive(load: KeepaliveLoad, channels: &[Channel]) -> Result<Report, CtlError> {
    // Grant the leases first (not measured), from as many clients.
    let granted = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(load.leases)));
    let next = Arc::new(AtomicU64::new(0));
    let mut grants = Vec::new();
    for client in 0..load.clients.max(1) {
        let mut lease = LeaseClient::new(channels[client % channels.len()].clone());
        let (granted, next) = (Arc::clone(&granted), Arc::clone(&next));
        let ttl = load.ttl_seconds;
        grants.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < load.leases as u64 {
                let response = lease.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?;
                granted.lock().push(response.into_inner().id);
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    for grant in grants {
        grant
            .await
            .map_err(|err| CtlError::Failed(format!("granting leases: {err}")))??;
    }
    let ids: Arc<Vec<i64>> = Arc::new(std::mem::take(&mut *granted.lock()));
    if ids.is_empty() {
        return Err(CtlError::Failed("no leases to keep alive".into()));
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..load.clients.max(1) {
        let channel = channels[client % channels.len()].clone();
        let (ids, next) = (Arc::clone(&ids), Arc::clone(&next));
        clients.push(tokio::spawn(async move {
            let (requests, receiver) = mpsc::channel(1);
            let mut latency = Histogram::default();
            let mut errors = 0u64;
            let first = next.fetch_add(1, Ordering::Relaxed);
            if first >= load.total {
                return (latency, errors);
            }
            let id = ids[first as usize % ids.len()];
            let _ = requests.send(LeaseKeepAliveRequest { id }).await;
            let sent = Instant::now();
            let Ok(response) = LeaseClient::new(channel)
                .lease_keep_alive(ReceiverStream::new(receiver))
                .await
            else {
                return (latency, errors + 1);
            };
            let mut responses = response.into_inner();
            let mut sent = sent;
            loop {
                match responses.message().await {
                    Ok(Some(r)) if r.ttl > 0 => latency.record(sent.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= load.total {
                    return (latency, errors);
                }
                let id = ids[n as usize % ids.len()];
                sent = Instant::now();
                if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    return (latency, errors + 1);
                }
            }
        }));
    }
    let (mut latency, mut errors) = (Histogram::default(), 0);
    for client in clients {
        if let Ok((h, e)) = client.await {
            latency.merge(&h);
            errors += e;
        }
    }
    Ok(Report {
        workload: "lease-keepalive",
        requests: latency.count(),
        errors,
        elapsed: started.elapsed(),
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_send_time() {
        let value = stamped_value(1_234_567, 256);
        assert_eq!(value.len(), 256);
        assert_eq!(sent_micros(&value), 1_234_567);
        assert_eq!(stamped_value(5, 2).len(), 8, "at least the stamp");
        assert_eq!(sent_micros(b"short"), 0);
    }
}
