//! cairnctl prints what etcdctl 3.5 prints, exits as it exits, and fails with the same
//! messages: the same command sequence runs through etcdctl against one real etcd and through
//! cairnctl against another, and the outputs must match once each server's own ids and ports
//! are masked.

mod common;

use std::path::{Path, PathBuf};

use common::{etcd35_dir, run, EtcdServer, Run};

/// One step: the arguments after `--endpoints`, and standard input.
const SCRIPT: &[(&str, &str)] = &[
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

fn cairnctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"))
}

/// Splits a script line into arguments, honouring "double quotes".
fn words(line: &str) -> Vec<String> {
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

/// Replaces what differs between two servers: ids and ports.
fn mask(text: &str, server: &EtcdServer, ids: &[(String, &str)]) -> String {
    let mut text = text.replace(&server.client_port.to_string(), "<CLIENT_PORT>");
    text = text.replace(&server.peer_port.to_string(), "<PEER_PORT>");
    for (id, name) in ids {
        text = text.replace(id.as_str(), name);
    }
    // Only etcdctl logs its client's retries as JSON lines on stderr; they are not output.
    text.lines()
        .filter(|line| !line.starts_with("{\"level\""))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The ids a server puts in headers: cluster id and member id, decimal and hex.
fn server_ids(etcdctl: &Path, server: &EtcdServer) -> Vec<(String, &'static str)> {
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

fn step(tool: &Path, server: &EtcdServer, args: &str, stdin: &str) -> Run {
    let mut argv = vec!["--endpoints".to_string(), server.endpoint()];
    argv.extend(words(args));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(tool, &argv, stdin)
}

#[test]
fn cairnctl_output_matches_etcdctl() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let version = run(&etcdctl, &["version"], "");
    assert!(
        version.stdout.contains("3.5"),
        "reference etcdctl is 3.5: {}",
        version.stdout
    );
    let (reference, ours) = (EtcdServer::start(&bin), EtcdServer::start(&bin));
    let (reference_ids, our_ids) = (
        server_ids(&etcdctl, &reference),
        server_ids(&etcdctl, &ours),
    );

    let mut mismatches = Vec::new();
    let mut succeeded = 0;
    for (args, stdin) in SCRIPT {
        let expected = step(&etcdctl, &reference, args, stdin);
        succeeded += usize::from(expected.code == 0);
        let got = step(&cairnctl(), &ours, args, stdin);
        let expected_out = mask(&expected.stdout, &reference, &reference_ids);
        let got_out = mask(&got.stdout, &ours, &our_ids);
        // Errors: etcdctl's message, where it has one, is the last line cairnctl prints.
        let expected_error = mask(&expected.stderr, &reference, &reference_ids);
        let got_error = mask(&got.stderr, &ours, &our_ids);
        if expected.code != got.code
            || expected_out != got_out
            || expected_error.lines().last() != got_error.lines().last()
        {
            mismatches.push(format!(
                "`{args}`:\n  etcdctl  (exit {}): {expected_out:?} {expected_error:?}\n  cairnctl (exit {}): {got_out:?} {got_error:?}",
                expected.code, got.code
            ));
        }
    }
    // The script exercises real work, not a wall of identical connection errors.
    assert!(
        succeeded >= 25,
        "only {succeeded} steps succeeded against etcd"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}",
        mismatches.len(),
        SCRIPT.len(),
        mismatches.join("\n")
    );
}

#[test]
fn endpoint_status_and_health_have_etcdctls_layout() {
    let bin = etcd35_dir();
    let server = EtcdServer::start(&bin);
    let ep = server.endpoint();
    let ours = run(
        &cairnctl(),
        &["--endpoints", &ep, "endpoint", "status", "-w", "table"],
        "",
    );
    let theirs = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "endpoint", "status", "-w", "table"],
        "",
    );
    assert_eq!(
        (ours.code, ours.stdout.clone()),
        (theirs.code, theirs.stdout),
        "status table"
    );
    let health = run(&cairnctl(), &["--endpoints", &ep, "endpoint", "health"], "");
    assert_eq!(health.code, 0);
    assert!(
        health.stderr.starts_with(&format!(
            "{ep} is healthy: successfully committed proposal: took = "
        )),
        "{}",
        health.stderr
    );
    let json = run(
        &cairnctl(),
        &["--endpoints", &ep, "endpoint", "health", "-w", "json"],
        "",
    );
    assert!(
        json.stdout.starts_with(&format!(
            "[{{\"endpoint\":\"{ep}\",\"health\":true,\"took\":\""
        )),
        "{}",
        json.stdout
    );
}

#[test]
fn unreachable_endpoint_fails_quickly_with_exit_one() {
    let port = common::free_port();
    let started = std::time::Instant::now();
    let out = run(
        &cairnctl(),
        &[
            "--endpoints",
            &format!("127.0.0.1:{port}"),
            "--dial-timeout",
            "1s",
            "get",
            "a",
        ],
        "",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Error: context deadline exceeded"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn endpoints_come_from_etcdctl_environment_variable() {
    let bin = etcd35_dir();
    let server = EtcdServer::start(&bin);
    let out = std::process::Command::new(cairnctl())
        .args(["put", "from-env", "yes"])
        .env("ETCDCTL_ENDPOINTS", server.endpoint())
        .output()
        .expect("cairnctl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
}
