//! Partitions with the kernel's own tools (root only): each node lives in its own network
//! namespace with one veth interface on a bridge the harness creates, and a partition is a
//! set of `iptables` rules in each namespace dropping what arrives from the other side, the
//! way a real switch fault looks to a node (silence, not resets). The harness's clients reach
//! every node from the bridge's own address, which no partition drops.

use std::net::Ipv4Addr;
use std::process::Command;

use super::{Grudge, NetError};

/// The namespaces, veths and bridge of one run; removed when dropped.
pub struct Netns {
    run: u32,
    nodes: usize,
    subnet: [u8; 3],
    created: Vec<Teardown>,
}

enum Teardown {
    Namespace(String),
    Link(String),
}

/// Runs `ip`/`iptables` and reports what went wrong with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| NetError::Setup(format!("{program}: {err}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetError::Setup(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl Netns {
    /// Creates the bridge and one namespace per node.
    pub fn create(nodes: usize) -> Result<Netns, NetError> {
        // Runs in one process (tests run several at once) and across processes get distinct
        // names and subnets.
        let run = super::run_number() % 10_000;
        let mut net = Netns {
            run,
            nodes,
            subnet: [10, 200 + (run / 256 % 50) as u8, (run % 256) as u8],
            created: Vec::new(),
        };
        let bridge = net.bridge();
        run_ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.created.push(Teardown::Link(bridge.clone()));
        let host = format!("{}/24", net.host_address());
        run_ip(&["addr", "add", &host, "dev", &bridge])?;
        run_ip(&["link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let namespace = net.namespace(i);
            let veth = format!("cj{run}v{i}");
            run_ip(&["netns", "add", &namespace])?;
            net.created.push(Teardown::Namespace(namespace.clone()));
            run_ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            net.created.push(Teardown::Link(veth.clone()));
            run_ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let address = format!("{}/24", net.address(i));
            run_ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            run_ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            run_ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        // A partition that cannot be applied must fail the setup, not the run's verdict.
        net.set(&Grudge::default())?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("cj{}br", self.run)
    }

    fn host_address(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("cj{}n{i}", self.run)
    }

    pub fn address(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + i as u8)
    }

    /// Replaces every node's rules with the ones `grudge` asks for.
    pub fn set(&self, grudge: &Grudge) -> Result<(), NetError> {
        for i in 0..self.nodes {
            let namespace = self.namespace(i);
            run(
                "ip",
                &["netns", "exec", &namespace, "iptables", "-F", "INPUT"],
            )?;
            for j in (0..self.nodes).filter(|&j| grudge.cuts(i, j)) {
                let source = self.address(j).to_string();
                run(
                    "ip",
                    &[
                        "netns", "exec", &namespace, "iptables", "-A", "INPUT", "-s", &source,
                        "-j", "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }
}

fn run_ip(args: &[&str]) -> Result<(), NetError> {
    run("ip", args)
}

impl Drop for Netns {
    fn drop(&mut self) {
        for item in self.created.drain(..).rev() {
            let _ = match item {
                Teardown::Namespace(name) => run_ip(&["netns", "del", &name]),
                Teardown::Link(name) => run_ip(&["link", "del", &name]),
            };
        }
    }
}
