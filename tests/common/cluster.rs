//! A cluster of real cairn processes on loopback, and etcdctl helpers for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cairn_bin, free_port, run, Run};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// Flags every member gets.
    pub flags: Vec<String>,
    initial_cluster: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` members at once.
    pub fn start(size: usize) -> Cluster {
        Self::start_with(size, &[])
    }

    /// Starts `size` members, those listed in `env` with extra environment variables
    /// (member index, name, value).
    pub fn start_with(size: usize, env: &[(usize, &str, &str)]) -> Cluster {
        let mut cluster = Self::new(size);
        for i in 0..size {
            let vars: Vec<(&str, &str)> = env
                .iter()
                .filter(|(member, _, _)| *member == i)
                .map(|(_, k, v)| (*k, *v))
                .collect();
            cluster.spawn_with(i, &vars);
        }
        cluster
    }

    /// A cluster of `size` members with ports and data dirs, none started yet.
    pub fn new(size: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            members,
            flags: Vec::new(),
            initial_cluster,
            _dir: dir,
        }
    }

    /// Starts member `i` (again).
    pub fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    /// Starts member `i` with extra environment variables.
    pub fn spawn_with(&mut self, i: usize, env: &[(&str, &str)]) {
        let initial_cluster = self.initial_cluster.clone();
        self.spawn_as(i, &initial_cluster, &[], env);
    }

    /// A new member's ports and data dir (not started, not yet added to the cluster).
    pub fn add_slot(&mut self) -> usize {
        let i = self.members.len();
        self.members.push(Member {
            name: format!("m{i}"),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: self._dir.path().join(format!("m{i}")),
            child: None,
        });
        i
    }

    /// A new member's slot, added to the cluster as a learner with `tool` (`member add
    /// --learner` through `endpoints`, again while the cluster is "unhealthy"): its index, and
    /// what `member add` printed.
    pub fn add_learner(&mut self, tool: &Path, endpoints: &str) -> (usize, Run) {
        let new = self.add_slot();
        let name = self.members[new].name.clone();
        let peer_url = format!("http://127.0.0.1:{}", self.members[new].peer_port);
        let added = change_when_healthy(
            tool,
            endpoints,
            &[
                "member",
                "add",
                &name,
                "--learner",
                "--peer-urls",
                &peer_url,
            ],
        );
        (new, added)
    }

    /// The `--initial-cluster` a new member joins with, from what `member add` printed.
    pub fn initial_cluster_printed(added: &Run) -> String {
        added
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no initial cluster printed: {}", added.stdout))
            .to_string()
    }

    /// Starts member `i` joining a running cluster, with the `--initial-cluster` that
    /// `member add` printed.
    pub fn spawn_joining(&mut self, i: usize, initial_cluster: &str) {
        self.spawn_as(
            i,
            initial_cluster,
            &["--initial-cluster-state", "existing"],
            &[],
        );
    }

    /// Waits up to `within` for member `i`'s process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.members[i].child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.members[i].child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn spawn_as(&mut self, i: usize, initial_cluster: &str, extra: &[&str], env: &[(&str, &str)]) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(cairn_bin())
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
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
            .args(["--initial-cluster", initial_cluster])
            .args([
                "--log-level",
                if std::env::var_os("CAIRN_TEST_LOG_DIR").is_some() {
                    "info"
                } else {
                    "warn"
                },
            ])
            .args(&self.flags)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file(&m.name))
            .spawn()
            .expect("cairn starts");
        self.members[i].child = Some(child);
    }

    /// Sends a signal (e.g. "STOP", "CONT") to member `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.members[i].child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -{signal} member {i}");
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a member's log goes: `$CAIRN_TEST_LOG_DIR/<name>.log` when that is set (to read
/// what a failing cluster test's members said), else nowhere.
fn log_file(name: &str) -> Stdio {
    let Some(dir) = std::env::var_os("CAIRN_TEST_LOG_DIR") else {
        return Stdio::null();
    };
    let path = Path::new(&dir).join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

pub fn etcdctl(bin: &Path, endpoint: &str, args: &[&str]) -> Run {
    let mut argv = vec!["--endpoints", endpoint, "--command-timeout", "3s"];
    argv.extend_from_slice(args);
    run(&bin.join("etcdctl"), &argv, "")
}

/// Runs `program` with `--endpoints endpoints args...`, again while the leader refuses a
/// membership change as "unhealthy cluster" (a new member's connection is younger than
/// etcd's 5 s health interval), for up to 20 s.
pub fn change_when_healthy(program: &Path, endpoints: &str, args: &[&str]) -> Run {
    let mut argv = vec!["--endpoints", endpoints, "--command-timeout", "5s"];
    argv.extend_from_slice(args);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(program, &argv, "");
        if out.code == 0 || !out.stderr.contains("unhealthy cluster") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Retries `args` against `endpoint` until it succeeds (up to `within`).
pub fn eventually(bin: &Path, endpoint: &str, args: &[&str], within: Duration) -> Run {
    let deadline = Instant::now() + within;
    loop {
        let out = etcdctl(bin, endpoint, args);
        if out.code == 0 || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A number field of a member's `endpoint status -w json` (e.g. `leader`, `member_id`,
/// `raft_term`).
pub fn status_field(bin: &Path, endpoint: &str, field: &str) -> Option<u64> {
    let out = etcdctl(bin, endpoint, &["endpoint", "status", "-w", "json"]);
    let start = out.stdout.find(&format!("\"{field}\":"))? + field.len() + 3;
    out.stdout[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// The member id a server reports as leader, and its own id (from `endpoint status`).
pub fn leader_of(bin: &Path, endpoint: &str) -> Option<(u64, u64)> {
    Some((
        status_field(bin, endpoint, "leader")?,
        status_field(bin, endpoint, "member_id")?,
    ))
}

/// The position in `endpoints` of the member that leads (as the first endpoint reports it).
pub fn leader_index(bin: &Path, endpoints: &[String]) -> usize {
    let (leader, _) = leader_of(bin, &endpoints[0]).expect("status");
    (0..endpoints.len())
        .find(|&i| leader_of(bin, &endpoints[i]).is_some_and(|(_, me)| me == leader))
        .expect("the leader is a member")
}

/// Waits (up to 30 s each) until every endpoint answers a health check.
pub fn wait_healthy(bin: &Path, endpoints: &[String]) {
    for endpoint in endpoints {
        let health = eventually(
            bin,
            endpoint,
            &["endpoint", "health"],
            Duration::from_secs(30),
        );
        assert_eq!(health.code, 0, "{endpoint}: {}", health.stderr);
    }
}

/// Waits (up to `within`) until a serializable read of `key` on `endpoint` gives `value`: the
/// member has caught up at least that far.
pub fn wait_for_value(bin: &Path, endpoint: &str, key: &str, value: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = etcdctl(
            bin,
            endpoint,
            &["get", key, "--consistency", "s", "--print-value-only"],
        );
        if got.stdout == format!("{value}\n") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} did not catch up to {key}={value}: {}",
            got.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
