//! A running cairn answers etcd's plain-HTTP endpoints on its client port, next to gRPC:
//! health probes, version and Prometheus metrics that reflect real traffic.

mod common;

use common::{etcd35_dir, http_get, run, EtcdServer};

#[test]
fn health_version_and_metrics_share_the_client_port() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    assert_eq!(
        run(
            &bin.join("etcdctl"),
            &["--endpoints", &ep, "put", "k", "v"],
            ""
        )
        .code,
        0
    );

    let (status, body) = http_get(cairn.client_port, "/health");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"health":"true","reason":""}"#)
    );
    let (status, body) = http_get(cairn.client_port, "/version");
    assert_eq!(status, 200);
    assert!(
        body.starts_with(r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0""#),
        "{body}"
    );
    let (status, body) = http_get(cairn.client_port, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (status, metrics) = http_get(cairn.client_port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
    // The disk histograms saw the write: WAL syncs and B+tree commits.
    for family in [
        "etcd_disk_wal_fsync_duration_seconds_count ",
        "etcd_disk_backend_commit_duration_seconds_count ",
    ] {
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(family))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(count.is_some_and(|c| c >= 1), "{family}: {count:?}");
    }
    let term = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_raft_term "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        term.is_some_and(|t| t >= 2),
        "raft term after the first election: {term:?}"
    );
}

/// The value of an unlabelled series in a Prometheus text page.
fn series(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn watch_and_lease_metrics_follow_what_is_open() {
    use std::process::{Command, Stdio};
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let ep = cairn.endpoint();
    let mut watchers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(bin.join("etcdctl"))
                .args(["--endpoints", &ep, "watch", "w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcdctl watch")
        })
        .collect();
    let granted = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "lease", "grant", "60"],
        "",
    );
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let put = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "put", "w", "x"],
        "",
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, page) = http_get(cairn.client_port, "/metrics");
    assert_eq!(series(&page, "cairn_watch_streams"), Some(2.0), "{page}");
    assert_eq!(series(&page, "cairn_watchers"), Some(2.0));
    assert_eq!(
        series(&page, "etcd_debugging_mvcc_watcher_total"),
        Some(2.0)
    );
    assert_eq!(
        series(&page, "cairn_watch_events_total"),
        Some(2.0),
        "one put, two watchers"
    );
    assert_eq!(
        series(&page, "cairn_watch_buffered_events"),
        Some(0.0),
        "all sent"
    );
    assert_eq!(series(&page, "cairn_lease_live"), Some(1.0));
    assert_eq!(
        series(&page, "etcd_debugging_lease_granted_total"),
        Some(1.0)
    );
    for watcher in &mut watchers {
        let _ = watcher.kill();
        let _ = watcher.wait();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, page) = http_get(cairn.client_port, "/metrics");
    assert_eq!(
        series(&page, "cairn_watchers"),
        Some(0.0),
        "closed streams let go"
    );
}
