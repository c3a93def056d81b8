//! The network the nodes under test talk over, and the partitions the nemesis imposes on it.
//! Two ways to build it: network namespaces on a bridge with `iptables` (needs root; the way
//! a real network fails) or per-node loopback addresses behind harness-owned TCP proxies
//! (anyone can run it). Both give every node its own address, so a partition can separate
//! any set of pairs; the harness's clients are never cut off.

pub mod netns;
pub mod proxy;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use netns::Netns;
use proxy::{ProxyNet, ProxyRoute};

/// Which network to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    /// Namespaces when running as root and they can be created, proxies otherwise.
    Auto,
    Netns,
    Proxy,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("setting up the network: {0}")]
    Setup(String),
    #[error("no free port on {0}: {1}")]
    Port(IpAddr, std::io::Error),
}

/// Pairs of nodes that cannot reach each other (both ways).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grudge(BTreeSet<(usize, usize)>);

impl Grudge {
    /// Cuts every node of `side` off from every node of `other`.
    pub fn separate(&mut self, side: &[usize], other: &[usize]) {
        for &a in side {
            for &b in other {
                if a != b {
                    self.0.insert((a.min(b), a.max(b)));
                }
            }
        }
    }

    pub fn cuts(&self, a: usize, b: usize) -> bool {
        self.0.contains(&(a.min(b), a.max(b)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How one node is started and reached.
#[derive(Debug, Clone)]
pub struct NodeAddress {
    /// Program and arguments the `cairn` command line is run under (a namespace's `ip netns
    /// exec`), empty when none.
    pub wrapper: Vec<String>,
    pub listen_client: String,
    pub advertise_client: String,
    pub listen_peer: String,
    pub advertise_peer: String,
    pub dial_from: Option<IpAddr>,
}

impl NodeAddress {
    /// Where the harness's clients connect (never through a proxy).
    pub fn client_endpoint(&self) -> &str {
        &self.listen_client
    }
}

/// The network of one run.
pub struct Network {
    pub mode: NetMode,
    pub nodes: Vec<NodeAddress>,
    inner: Inner,
}

enum Inner {
    Netns(Netns),
    Proxy(ProxyNet),
}

/// Ports for nodes to bind come from below the kernel's ephemeral range: a port the kernel
/// picked for `bind(0)` and the harness then released could be given to an outgoing
/// connection before the node binds it (this happened: AddrInUse on 3 runs in 6 of a test).
/// With the default range (32768 on) that is 20000-32000; where the ephemeral range starts
/// too low to leave room, the race is back (rare: a run would exit 2, not report an anomaly).
fn node_ports() -> std::ops::Range<u16> {
    const SPAN: u16 = 12_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let end = ephemeral_start.min(32_000);
    if end >= 1_024 + SPAN {
        end - SPAN..end
    } else {
        20_000..32_000
    }
}

/// A number telling this network apart from others built at the same time: by process, and
/// by a per-process counter (tests build several at once).
fn run_number() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::process::id()
        .wrapping_mul(8)
        .wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Where this run starts looking for node ports: apart from concurrent runs, which probe
/// past each other's taken ports anyway.
fn node_port_base(ports: &std::ops::Range<u16>) -> u16 {
    let run = run_number();
    let span = u32::from(ports.end - ports.start);
    // run % span < span <= u16::MAX, so the sum stays in the range.
    ports.start + ((run.wrapping_mul(40)) % span) as u16
}

/// Binds the first free port of `ports` from `*next` on (wrapping around).
fn bind_node_port(
    ip: IpAddr,
    ports: &std::ops::Range<u16>,
    next: &mut u16,
) -> Result<std::net::TcpListener, NetError> {
    let mut last_err = None;
    for _ in 0..(ports.end - ports.start) {
        let port = *next;
        *next = if port + 1 >= ports.end {
            ports.start
        } else {
            port + 1
        };
        match std::net::TcpListener::bind((ip, port)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = Some(err),
        }
    }
    Err(NetError::Port(
        ip,
        last_err.unwrap_or_else(|| std::io::Error::other("no port in range")),
    ))
}

impl Network {
    /// What was built, naming what a cleanup must leave no trace of.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Netns(net) => format!(
                "namespaces {}..{} on a bridge",
                net.namespace(0),
                net.namespace(self.nodes.len().saturating_sub(1))
            ),
            Inner::Proxy(_) => "loopback addresses behind proxies".to_string(),
        }
    }

    /// Builds the network for `count` nodes. `Auto` falls back to proxies when namespaces
    /// cannot be made, and says why on stderr.
    pub fn build(mode: NetMode, count: usize) -> Result<Network, NetError> {
        match mode {
            NetMode::Netns => Self::namespaces(count),
            NetMode::Proxy => Self::proxies(count),
            NetMode::Auto => {
                let root = Self::is_root();
                if root {
                    match Self::namespaces(count) {
                        Ok(net) => return Ok(net),
                        Err(err) => eprintln!("cairn-jepsen: {err}; using TCP proxies instead"),
                    }
                }
                Self::proxies(count)
            }
        }
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
                line.split_whitespace().nth(2).map(|euid| euid == "0")
            })
            .unwrap_or(false)
    }

    fn namespaces(count: usize) -> Result<Network, NetError> {
        let netns = Netns::create(count)?;
        let nodes = (0..count)
            .map(|i| {
                let ip = netns.address(i);
                NodeAddress {
                    wrapper: vec![
                        "ip".into(),
                        "netns".into(),
                        "exec".into(),
                        netns.namespace(i),
                    ],
                    listen_client: format!("http://{ip}:2379"),
                    advertise_client: format!("http://{ip}:2379"),
                    listen_peer: format!("http://{ip}:2380"),
                    advertise_peer: format!("http://{ip}:2380"),
                    dial_from: None,
                }
            })
            .collect();
        Ok(Network {
            mode: NetMode::Netns,
            nodes,
            inner: Inner::Netns(netns),
        })
    }

    fn proxies(count: usize) -> Result<Network, NetError> {
        // 127.0.0.1 is the harness's clients' source address; nodes get .10, .11, ...
        // (ports keep concurrent runs apart).
        let mut nodes = Vec::new();
        let mut routes = Vec::new();
        let mut node_of = HashMap::new();
        let mut held = Vec::new();
        let ports = node_ports();
        let mut next_port = node_port_base(&ports);
        for i in 0..count.min(200) {
            let ip: IpAddr = std::net::Ipv4Addr::new(127, 0, 0, 10 + i as u8).into();
            node_of.insert(ip, i);
            let bind = || -> Result<std::net::TcpListener, NetError> {
                std::net::TcpListener::bind((ip, 0)).map_err(|err| NetError::Port(ip, err))
            };
            let (client, peer) = (
                bind_node_port(ip, &ports, &mut next_port)?,
                bind_node_port(ip, &ports, &mut next_port)?,
            );
            let (client_proxy, peer_proxy) = (bind()?, bind()?);
            let port =
                |l: &std::net::TcpListener| l.local_addr().map_err(|err| NetError::Port(ip, err));
            let (client_addr, peer_addr) = (port(&client)?, port(&peer)?);
            nodes.push(NodeAddress {
                wrapper: Vec::new(),
                listen_client: format!("http://{client_addr}"),
                advertise_client: format!("http://{}", port(&client_proxy)?),
                listen_peer: format!("http://{peer_addr}"),
                advertise_peer: format!("http://{}", port(&peer_proxy)?),
                dial_from: Some(ip),
            });
            routes.push(ProxyRoute {
                listener: client_proxy,
                owner: i,
                target: client_addr,
            });
            routes.push(ProxyRoute {
                listener: peer_proxy,
                owner: i,
                target: peer_addr,
            });
            // The node binds these itself; holding them until every port is chosen keeps
            // one run's ports distinct, and being below the ephemeral range they cannot be
            // handed to some outgoing connection before (or while) the node binds them.
            held.push(client);
            held.push(peer);
        }
        drop(held);
        let proxy =
            ProxyNet::start(routes, node_of).map_err(|err| NetError::Setup(err.to_string()))?;
        Ok(Network {
            mode: NetMode::Proxy,
            nodes,
            inner: Inner::Proxy(proxy),
        })
    }

    /// Makes `grudge` the network's partition (an empty one heals it).
    pub fn set(&self, grudge: &Grudge) -> Result<(), NetError> {
        match &self.inner {
            Inner::Netns(netns) => netns.set(grudge),
            Inner::Proxy(proxy) => {
                proxy.set(grudge.clone());
                Ok(())
            }
        }
    }
}
