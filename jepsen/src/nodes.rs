//! The cluster under test: real `cairn` processes on loopback, each with its own ports, data
//! dir and log file in the run's folder; killed and restarted by the nemesis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Node {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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

/// A port nobody listens on now; the listener is held until every port is chosen, so one
/// run's ports are distinct.
fn free_port(held: &mut Vec<std::net::TcpListener>) -> Result<u16, NodeError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(NodeError::Port)?;
    let port = listener.local_addr().map_err(NodeError::Port)?.port();
    held.push(listener);
    Ok(port)
}

impl Nodes {
    /// Starts `count` members of a new cluster; data and logs go under `out`.
    pub fn start(bin: &Path, count: usize, out: &Path) -> Result<Nodes, NodeError> {
        let mut nodes = Vec::with_capacity(count);
        let mut held = Vec::new();
        for i in 0..count {
            nodes.push(Node {
                name: format!("n{i}"),
                client_port: free_port(&mut held)?,
                peer_port: free_port(&mut held)?,
                child: None,
            });
        }
        drop(held);
        let initial_cluster = nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Nodes {
            nodes,
            bin: bin.to_path_buf(),
            out: out.to_path_buf(),
            initial_cluster,
        };
        for i in 0..count {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Starts node `i` (again), on its data dir.
    pub fn spawn(&mut self, i: usize) -> Result<(), NodeError> {
        let node = &self.nodes[i];
        let data = self.out.join("data").join(&node.name);
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
        let client = node.endpoint();
        let peer = format!("http://127.0.0.1:{}", node.peer_port);
        let child = Command::new(&self.bin)
            .args(["--name", &node.name, "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| NodeError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        self.nodes[i].child = Some(child);
        Ok(())
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
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
