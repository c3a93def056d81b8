//! Many leases kept alive by many clients: none expires early. 100 clients grant 100,000
//! leases (TTL 20 s) between them and renew all they hold every 5 s over their own keepalive
//! streams, from their first grant until a TTL after the last one; every renewal must answer
//! with the full TTL, every lease must still exist at the end, and the server must report no
//! expiry.
//! `CAIRN_LEASE_LOAD=<n>` sets the number of leases.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    lease_client::LeaseClient, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest,
};
use common::{etcd35_dir, http_get, EtcdServer};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const TTL_SECONDS: i64 = 20;
/// Clients: each grants its share of the leases and keeps them alive over its own stream.
const HOLDERS: usize = 100;
const CONNECTIONS: usize = 10;
/// Each holder renews everything it holds this often (a quarter of the TTL).
const RENEW_PERIOD: Duration = Duration::from_secs(5);

fn lease_count() -> usize {
    std::env::var("CAIRN_LEASE_LOAD")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

async fn connect(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint url")
        .connect()
        .await
        .expect("connect")
}

/// A client holding leases: it renews whatever it holds every period (from its first grant
/// on) until `stop`, and checks that every renewal comes back with the full TTL.
struct Holder {
    renewer: tokio::task::JoinHandle<()>,
    checker: tokio::task::JoinHandle<usize>,
    ids: Arc<Mutex<Vec<i64>>>,
}

async fn hold(channel: Channel, share: usize, stop: watch::Receiver<bool>) -> Holder {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(share)));
    let (requests, receiver) = mpsc::channel(1024);
    let mut responses = LeaseClient::new(channel.clone())
        .lease_keep_alive(ReceiverStream::new(receiver))
        .await
        .expect("keepalive stream")
        .into_inner();
    let checker = tokio::spawn(async move {
        let mut renewed = 0;
        while let Some(response) = responses.message().await.expect("keepalive response") {
            assert_eq!(
                response.ttl, TTL_SECONDS,
                "lease {:016x} lost while kept alive",
                response.id
            );
            renewed += 1;
        }
        renewed
    });
    let held = Arc::clone(&ids);
    let renewer = tokio::spawn(async move {
        let mut period = tokio::time::interval(RENEW_PERIOD);
        loop {
            period.tick().await;
            if *stop.borrow() {
                return;
            }
            let batch = held.lock().expect("ids").clone();
            for id in batch {
                if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut lease = LeaseClient::new(channel);
    for _ in 0..share {
        let granted = lease
            .lease_grant(LeaseGrantRequest {
                ttl: TTL_SECONDS,
                id: 0,
            })
            .await
            .expect("grant")
            .into_inner();
        assert_eq!(granted.ttl, TTL_SECONDS);
        ids.lock().expect("ids").push(granted.id);
    }
    Holder {
        renewer,
        checker,
        ids,
    }
}

#[test]
fn no_lease_expires_while_kept_alive() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let count = lease_count();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let endpoint = cairn.endpoint();
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(connect(&endpoint).await);
        }
        let granting = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let mut holders = Vec::new();
        for n in 0..HOLDERS {
            let share = count / HOLDERS + usize::from(n < count % HOLDERS);
            let channel = channels[n % channels.len()].clone();
            holders.push(tokio::spawn(hold(channel, share, stopped.clone())));
        }
        let mut held = Vec::new();
        for holder in holders {
            held.push(holder.await.expect("holder granted its share"));
        }
        let granted: usize = held.iter().map(|h| h.ids.lock().expect("ids").len()).sum();
        assert_eq!(granted, count);
        eprintln!("granted {count} leases in {:?}", granting.elapsed());
        // Kept alive for more than a TTL after the last grant.
        tokio::time::sleep(Duration::from_secs(TTL_SECONDS as u64) + 2 * RENEW_PERIOD).await;
        stop.send(true).expect("holders listen");
        let mut renewals = 0;
        for holder in held {
            holder.renewer.await.expect("renewer");
            renewals += holder.checker.await.expect("every renewal kept its lease");
        }
        eprintln!(
            "{renewals} renewals, all with the full TTL, over {:?}",
            granting.elapsed()
        );
        assert!(
            renewals >= 2 * count,
            "each lease renewed repeatedly: {renewals}"
        );

        let listed = LeaseClient::new(channels[0].clone())
            .lease_leases(LeaseLeasesRequest {})
            .await
            .expect("lease list")
            .into_inner();
        assert_eq!(listed.leases.len(), count, "every lease still exists");
    });
    let (_, metrics) = http_get(cairn.client_port, "/metrics");
    assert!(
        metrics.contains("\ncairn_lease_expired_total 0\n"),
        "no lease expired: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("cairn_lease"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
