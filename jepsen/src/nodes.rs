//! The cluster under test: real `cairn` processes, each at its own address on the run's
//! network ([`crate::net`]) with its own data dir and log file in the run's folder; killed,
//! restarted, paused and resumed by the nemesis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::net::NodeAddress;

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a member of the cluster (removed)")]
    Removed(String),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Node {
    pub name: String,
    pub address: NodeAddress,
    child: Option<Child>,
    paused: bool,
    pub membership: Membership,
}

const SNAPSHOT_COUNT: &str = "2000";
const SNAPSHOT_CATCHUP_ENTRIES: &str = "500";

/// How a node stands in the cluster's membership (the member nemesis changes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Bootstrapped with the cluster.
    Original,
    /// Removed: its process stopped itself and must not be started on its old data.
    Removed,
    /// Added back as a new member: joins with `--initial-cluster-state existing` and this
    /// `--initial-cluster`.
    Joined(String),
}

impl Node {
    pub fn endpoint(&self) -> String {
        self.address.client_endpoint().to_string()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct Nodes {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    out: PathBuf,
    initial_cluster: String,
}

impl Nodes {
    /// Starts one member of a new cluster per address; data and logs go under `out`.
    pub fn start(bin: &Path, addresses: &[NodeAddress], out: &Path) -> Result<Nodes, NodeError> {
        let nodes: Vec<Node> = addresses
            .iter()
            .enumerate()
            .map(|(i, address)| Node {
                name: format!("n{i}"),
                address: address.clone(),
                child: None,
                paused: false,
                membership: Membership::Original,
            })
            .collect();
        let initial_cluster = nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.address.advertise_peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Nodes {
            nodes,
            bin: bin.to_path_buf(),
            out: out.to_path_buf(),
            initial_cluster,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Starts node `i` (again), on its data dir.
    pub fn spawn(&mut self, i: usize) -> Result<(), NodeError> {
        self.spawn_with_env(i, &[])
    }

    /// Starts node `i` (again) with extra environment variables (test-only failpoints, a
    /// skewed clock).
    pub fn spawn_with_env(&mut self, i: usize, env: &[(String, String)]) -> Result<(), NodeError> {
        let node = &self.nodes[i];
        let (initial_cluster, state) = match &node.membership {
            Membership::Original => (self.initial_cluster.as_str(), "new"),
            Membership::Joined(cluster) => (cluster.as_str(), "existing"),
            Membership::Removed => return Err(NodeError::Removed(node.name.clone())),
        };
        let data = self.data_dir(i);
        std::fs::create_dir_all(&data).map_err(|source| NodeError::Dir {
            path: data.clone(),
            source,
        })?;
        let log_path = self.out.join(format!("{}.log", node.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| NodeError::Dir {
                path: log_path.clone(),
                source,
            })?;
        let address = &node.address;
        let mut command = match address.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        command
            .args(["--name", &node.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &address.listen_client])
            .args(["--advertise-client-urls", &address.advertise_client])
            .args(["--listen-peer-urls", &address.listen_peer])
            .args(["--initial-advertise-peer-urls", &address.advertise_peer])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--log-level", "info"])
            // Snapshots every few seconds of load, and a short log behind them: a node down
            // for a fault's length catches up by snapshot, so snapshots are sent, received
            // and installed under faults too.
            .args(["--snapshot-count", SNAPSHOT_COUNT])
            .args([
                "--experimental-snapshot-catchup-entries",
                SNAPSHOT_CATCHUP_ENTRIES,
            ]);
        if let Some(ip) = address.dial_from {
            command.args(["--peer-dial-address", &ip.to_string()]);
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| NodeError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT of node `i`, if it runs.
    pub fn pause(&mut self, i: usize, pause: bool) {
        let node = &mut self.nodes[i];
        let Some(child) = &node.child else { return };
        let signal = if pause { "-STOP" } else { "-CONT" };
        // `kill` the program: the harness has no libc binding of its own.
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if sent {
            node.paused = pause;
        }
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i].paused
    }

    /// If node `i` has exited by itself, how.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.nodes[i].child.as_mut()?.try_wait().ok()??;
        self.nodes[i].child = None;
        Some(status)
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.out.join("data").join(&self.nodes[i].name)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // Every node gets its SIGKILL before any is waited for: a node stuck in a disk write
        // on a loaded machine then delays the others' end by nothing.
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.kill();
            }
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
