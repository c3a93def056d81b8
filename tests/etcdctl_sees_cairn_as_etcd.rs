//! The real etcdctl 3.5.1 cannot tell Cairn from etcd: the same script of KV commands runs
//! against a real etcd and against a cairn started with the same etcd flags, and every step's
//! output, error message and exit code must match, once each server's own ids and ports are
//! masked. Revisions included.

mod common;

use common::{assert_same_output, etcd35_dir, etcdctl34, run, EtcdServer, KV_SCRIPT};

#[test]
fn etcdctl_output_is_identical_against_etcd_and_cairn() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    assert_same_output(
        KV_SCRIPT,
        (&etcdctl, &etcd),
        (&etcdctl, &cairn),
        &etcdctl,
        25,
    );
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let mut cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    for i in 0..20 {
        let out = run(
            &etcdctl,
            &[
                "--endpoints",
                &ep,
                "put",
                &format!("key{i:02}"),
                &format!("value{i}"),
            ],
            "",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let before = run(
        &etcdctl,
        &["--endpoints", &ep, "get", "--prefix", "key", "-w", "json"],
        "",
    );
    cairn.kill_and_restart(&bin);
    let after = run(
        &etcdctl,
        &["--endpoints", &ep, "get", "--prefix", "key", "-w", "json"],
        "",
    );
    let kvs = |json: &str| json.split("\"kvs\":").nth(1).map(str::to_string);
    assert_eq!(
        kvs(&after.stdout),
        kvs(&before.stdout),
        "same keys, values and revisions"
    );
    assert!(after.stdout.contains("\"count\":20"), "{}", after.stdout);
    // The next write continues the revision sequence: nothing was applied twice.
    let put = run(
        &etcdctl,
        &["--endpoints", &ep, "put", "next", "v", "-w", "json"],
        "",
    );
    assert!(put.stdout.contains("\"revision\":22"), "{}", put.stdout);
}

#[test]
fn sigterm_stops_cleanly_and_data_stays() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let mut cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    assert_eq!(
        run(&etcdctl, &["--endpoints", &ep, "put", "k", "v"], "").code,
        0
    );
    assert_eq!(cairn.terminate(), Some(0), "exits 0 on SIGTERM");
    cairn.kill_and_restart(&bin);
    let out = run(
        &etcdctl,
        &["--endpoints", &ep, "get", "k", "--print-value-only"],
        "",
    );
    assert_eq!(out.stdout, "v\n");
}

#[test]
fn oversized_and_overlong_requests_fail_as_on_etcd() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    let big_value = "x".repeat(1_600_000);
    let too_many_ops: String = (0..129).map(|i| format!("put k{i} v\n")).collect();
    let many_ops: String = (0..128).map(|i| format!("put k{i} v\n")).collect();
    let duplicate = "put a 1\nput a 2\n".to_string();
    let script: Vec<(&str, String)> = vec![
        ("put big", big_value),
        ("txn", format!("\n{too_many_ops}\n\n")),
        ("txn", format!("\n{many_ops}\n\n")),
        ("txn", format!("\n{duplicate}\n\n")),
        ("get k1", String::new()),
        ("put empty \"\"", String::new()),
        ("get empty -w json", String::new()),
    ];
    let script: Vec<(&str, &str)> = script.iter().map(|(a, s)| (*a, s.as_str())).collect();
    assert_same_output(&script, (&etcdctl, &etcd), (&etcdctl, &cairn), &etcdctl, 3);
}

#[test]
fn etcdctl_3_4_output_is_identical_against_etcd_and_cairn() {
    let bin = etcd35_dir();
    let old = etcdctl34();
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    assert_same_output(
        KV_SCRIPT,
        (&old, &etcd),
        (&old, &cairn),
        &bin.join("etcdctl"),
        20,
    );
}

#[test]
fn garbage_on_the_client_port_does_not_disturb_the_server() {
    use std::io::Write;
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    let garbage: [&[u8]; 4] = [
        b"\x00\x01\x02\x03 not http at all\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"POST /etcdserverpb.KV/Put HTTP/1.1\r\ncontent-type: application/grpc\r\ncontent-length: 7\r\n\r\n\x00\xff\xff\xff\xff\x01\x02",
        &[0xffu8; 4096],
    ];
    for bytes in garbage {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", cairn.client_port)) {
            let _ = stream.write_all(bytes);
        }
    }
    let put = run(
        &etcdctl,
        &["--endpoints", &ep, "put", "still", "serving"],
        "",
    );
    assert_eq!(
        (put.code, put.stdout.as_str()),
        (0, "OK\n"),
        "{}",
        put.stderr
    );
}

#[test]
fn cairnctl_on_cairn_prints_what_etcdctl_prints_on_etcd() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairnctl = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    assert_same_output(
        KV_SCRIPT,
        (&etcdctl, &etcd),
        (&cairnctl, &cairn),
        &etcdctl,
        25,
    );
}

#[test]
fn etcdctl_endpoint_commands_work_against_cairn() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    let health = run(
        &etcdctl,
        &["--endpoints", &ep, "endpoint", "health", "-w", "json"],
        "",
    );
    assert_eq!(health.code, 0, "{}", health.stderr);
    assert!(
        health.stdout.contains("\"health\":true"),
        "{}",
        health.stdout
    );
    let status = run(
        &etcdctl,
        &["--endpoints", &ep, "endpoint", "status", "-w", "json"],
        "",
    );
    assert_eq!(status.code, 0, "{}", status.stderr);
    for field in [
        "\"version\":\"3.5.0\"",
        "\"raftIndex\":",
        "\"raftAppliedIndex\":",
        "\"dbSize\":",
    ] {
        assert!(
            status.stdout.contains(field),
            "{field} in {}",
            status.stdout
        );
    }
    let number = |field: &str| -> Option<u64> {
        status
            .stdout
            .split(field)
            .nth(1)?
            .split([',', '}'])
            .next()?
            .parse()
            .ok()
    };
    let (size, in_use) = (number("\"dbSize\":"), number("\"dbSizeInUse\":"));
    assert!(
        matches!((size, in_use), (Some(s), Some(u)) if u > 0 && u <= s),
        "db size {size:?}, in use {in_use:?}"
    );
    // The member is its own leader.
    let member = status
        .stdout
        .split("\"member_id\":")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next());
    let leader = status
        .stdout
        .split("\"leader\":")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next());
    assert_eq!(member, leader, "{}", status.stdout);
    let table = run(
        &etcdctl,
        &["--endpoints", &ep, "endpoint", "status", "-w", "table"],
        "",
    );
    assert!(
        table.stdout.contains("| IS LEADER |") && table.stdout.contains("|      true |"),
        "{}",
        table.stdout
    );
}
