//! Partitions without privileges: every node has its own loopback address (127.0.0.0/8 is all
//! local on Linux) and dials its peers from it (`--peer-dial-address`); what it advertises to
//! the cluster (peer URL and client URL) is a harness-owned TCP proxy in front of its real
//! listener. A proxy tells the dialing node by the connection's source address, so it can
//! stall exactly the pairs a partition separates.
//!
//! A cut pair's connections are stalled, not reset: bytes stop flowing both ways and the
//! sockets stay open, as with packets dropped on a wire; keepalives and timeouts notice, as
//! they would on a real network. When the partition heals, stalled connections flow again
//! and new ones are forwarded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Grudge;

/// The proxies of one run and the partition they enforce.
pub struct ProxyNet {
    grudge: watch::Sender<Grudge>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Who a proxy stands in front of, and where it forwards to.
pub struct ProxyRoute {
    pub listener: std::net::TcpListener,
    pub owner: usize,
    pub target: SocketAddr,
}

impl ProxyNet {
    /// Serves `routes`; `node_of` names the node each source address belongs to (other
    /// sources, such as the harness's clients, are never cut).
    pub fn start(
        routes: Vec<ProxyRoute>,
        node_of: HashMap<IpAddr, usize>,
    ) -> std::io::Result<ProxyNet> {
        let (grudge, _) = watch::channel(Grudge::default());
        let node_of = Arc::new(node_of);
        let mut tasks = Vec::new();
        for route in routes {
            route.listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(route.listener)?;
            let grudge = grudge.subscribe();
            let node_of = Arc::clone(&node_of);
            tasks.push(tokio::spawn(async move {
                while let Ok((inbound, from)) = listener.accept().await {
                    let pair = node_of.get(&from.ip()).map(|&source| (source, route.owner));
                    tokio::spawn(forward(inbound, route.target, pair, grudge.clone()));
                }
            }));
        }
        Ok(ProxyNet { grudge, tasks })
    }

    pub fn set(&self, grudge: Grudge) {
        self.grudge.send_replace(grudge);
    }
}

impl Drop for ProxyNet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Waits while `pair` is cut. Returns false when the proxy is gone.
async fn wait_connected(
    pair: Option<(usize, usize)>,
    grudge: &mut watch::Receiver<Grudge>,
) -> bool {
    let Some((a, b)) = pair else { return true };
    loop {
        if !grudge.borrow_and_update().cuts(a, b) {
            return true;
        }
        if grudge.changed().await.is_err() {
            return false;
        }
    }
}

async fn forward(
    inbound: TcpStream,
    target: SocketAddr,
    pair: Option<(usize, usize)>,
    mut grudge: watch::Receiver<Grudge>,
) {
    if !wait_connected(pair, &mut grudge).await {
        return;
    }
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let there = tokio::spawn(copy(in_read, out_write, pair, grudge.clone()));
    copy(out_read, in_write, pair, grudge).await;
    there.abort();
}

/// Copies one direction, stalling while the pair is cut.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pair: Option<(usize, usize)>,
    mut grudge: watch::Receiver<Grudge>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if !wait_connected(pair, &mut grudge).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // The partition may have begun while this side waited for bytes; the proxy may
            // be gone (a closed watch answers at once: looping on it would spin).
            changed = grudge.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as a cut began are held back until it heals, like packets queued
        // for retransmission.
        if !wait_connected(pair, &mut grudge).await {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
