//! cairnctl prints what etcdctl 3.5 prints, exits as it exits, and fails with the same
//! messages: the same command sequence runs through etcdctl against one real etcd and through
//! cairnctl against another, and the outputs must match once each server's own ids and ports
//! are masked.

mod common;

use std::path::PathBuf;

use common::{assert_same_output, etcd35_dir, run, EtcdServer, KV_SCRIPT};

fn cairnctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"))
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
    // The script exercises real work, not a wall of identical connection errors.
    assert_same_output(
        KV_SCRIPT,
        (&etcdctl, &reference),
        (&cairnctl(), &ours),
        &etcdctl,
        25,
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
