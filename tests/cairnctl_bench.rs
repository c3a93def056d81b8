//! A short smoke run of the load generator against a real cairn (seconds, not minutes):
//! every request is counted and answered, and the reports are well formed. Benchmarks
//! themselves never assert timings.

mod common;

use common::{etcd35_dir, run, EtcdServer};

fn cairnctl() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"))
}

fn field(json: &str, name: &str) -> Option<i64> {
    json.split(&format!("\"{name}\":"))
        .nth(1)?
        .split([',', '}'])
        .next()?
        .parse()
        .ok()
}

/// A running cairn to aim the generator at, and etcd 3.5.1's tools to look at it with.
struct Target {
    bin: std::path::PathBuf,
    server: EtcdServer,
    ep: String,
}

fn target() -> Target {
    let bin = etcd35_dir();
    let server = EtcdServer::start_cairn(&bin);
    let ep = server.endpoint();
    Target { bin, server, ep }
}

#[test]
fn bench_workloads_run_against_cairn() {
    let Target {
        bin,
        server: _server,
        ep,
    } = target();
    for workload in [
        vec!["put", "--key-space-size", "50", "--val-size", "64"],
        vec![
            "range",
            "--key-space-size",
            "50",
            "--preload",
            "--consistency",
            "s",
        ],
        vec!["range", "--key-space-size", "50"],
        vec!["txn-mixed", "--key-space-size", "20", "--preload"],
        vec!["range", "--key-space-size", "50", "--keys-per-range", "10"],
    ] {
        let mut args = vec!["--endpoints", &ep, "-w", "json", "bench"];
        args.extend(&workload);
        args.extend([
            "--total",
            "200",
            "--clients",
            "4",
            "--conns",
            "2",
            "--warmup",
            "10",
        ]);
        let out = run(&cairnctl(), &args, "");
        assert_eq!(out.code, 0, "{workload:?}: {}", out.stderr);
        assert_eq!(
            field(&out.stdout, "requests"),
            Some(200),
            "{workload:?}: {}",
            out.stdout
        );
        assert_eq!(
            field(&out.stdout, "errors"),
            Some(0),
            "{workload:?}: {}",
            out.stdout
        );
        let (p50, p99) = (field(&out.stdout, "p50"), field(&out.stdout, "p99"));
        assert!(
            matches!((p50, p99), (Some(a), Some(b)) if a > 0 && a <= b),
            "{}",
            out.stdout
        );
    }
    // The keys the put workload wrote are there.
    let count = run(
        &bin.join("etcdctl"),
        &[
            "--endpoints",
            &ep,
            "get",
            "",
            "--prefix",
            "--count-only",
            "-w",
            "fields",
        ],
        "",
    );
    assert!(count.stdout.contains("\"Count\" : 50"), "{}", count.stdout);
}

#[test]
fn rate_limited_bench_takes_at_least_its_schedule() {
    let Target {
        server: _server,
        ep,
        ..
    } = target();
    let started = std::time::Instant::now();
    let out = run(
        &cairnctl(),
        &[
            "--endpoints",
            &ep,
            "-w",
            "json",
            "bench",
            "put",
            "--total",
            "50",
            "--rate",
            "100",
            "--clients",
            "4",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // 50 requests at 100/s: the last is due 0.49 s in.
    assert!(started.elapsed() >= std::time::Duration::from_millis(490));
    assert!(
        field(&out.stdout, "elapsed_us").is_some_and(|us| us >= 490_000),
        "{}",
        out.stdout
    );
}

/// The sum of every key's version: one more for each put since the key was created.
fn versions(etcdctl: &std::path::Path, ep: &str) -> i64 {
    let out = run(
        etcdctl,
        &["--endpoints", ep, "get", "", "--prefix", "-w", "json"],
        "",
    );
    out.stdout
        .split("\"version\":")
        .skip(1)
        .filter_map(|rest| rest.split([',', '}']).next()?.parse::<i64>().ok())
        .sum()
}

#[test]
fn txn_put_puts_its_ops_in_one_transaction_each() {
    let Target {
        bin,
        server: _server,
        ep,
    } = target();
    let revision = |out: &str| field(out, "revision");
    let before = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "get", "x", "-w", "json"],
        "",
    );
    let args = [
        "--endpoints",
        &ep,
        "-w",
        "json",
        "bench",
        "txn-put",
        "--key-space-size",
        "50",
        "--txn-ops",
        "5",
        "--total",
        "40",
        "--clients",
        "4",
    ];
    let out = run(&cairnctl(), &args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(field(&out.stdout, "errors"), Some(0), "{}", out.stdout);
    let after = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "get", "x", "-w", "json"],
        "",
    );
    // 40 transactions: 40 revisions, and 5 distinct keys put by each.
    assert_eq!(
        revision(&after.stdout)
            .zip(revision(&before.stdout))
            .map(|(a, b)| a - b),
        Some(40),
        "{} {}",
        before.stdout,
        after.stdout
    );
    assert_eq!(versions(&bin.join("etcdctl"), &ep), 200);
}

#[test]
fn timed_bench_runs_for_its_duration() {
    let Target {
        server: _server,
        ep,
        ..
    } = target();
    let bench = |extra: &[&str]| {
        let mut args = vec!["--endpoints", &ep, "-w", "json", "bench"];
        args.extend(extra);
        run(&cairnctl(), &args, "")
    };
    // 200 requests/s for one second: requests 0-199 are due inside it (each is sent, late if
    // the server is slow), and --total (left at its default of 10,000) does not count.
    let out = bench(&["put", "--duration", "1s", "--rate", "200", "--clients", "4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(field(&out.stdout, "requests"), Some(200), "{}", out.stdout);
    assert_eq!(field(&out.stdout, "errors"), Some(0), "{}", out.stdout);
    assert!(
        field(&out.stdout, "elapsed_us").is_some_and(|us| us >= 995_000),
        "{}",
        out.stdout
    );
    // More clients than requests due: the ten due inside the second are sent, and the rest
    // stop at once rather than sleeping until their (later) turn.
    let out = bench(&["put", "--duration", "1s", "--rate", "10", "--clients", "20"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(field(&out.stdout, "requests"), Some(10), "{}", out.stdout);
    assert!(
        field(&out.stdout, "elapsed_us").is_some_and(|us| us < 1_800_000),
        "{}",
        out.stdout
    );
    // Streaming workloads count --total; a duration there is refused, not ignored.
    let out = bench(&["watch", "--duration", "1s"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("--duration applies to put, range, txn-put and txn-mixed"),
        "{}",
        out.stderr
    );
}

#[test]
fn disk_check_reports_fdatasync_percentiles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(
        &cairnctl(),
        &[
            "-w",
            "json",
            "check",
            "disk",
            "--count",
            "20",
            "--dir",
            dir.path().to_str().expect("utf-8"),
        ],
        "",
    );
    // Pass or fail depends on the disk; the report is what is checked.
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    assert_eq!(field(&out.stdout, "writes"), Some(20), "{}", out.stdout);
    assert!(
        field(&out.stdout, "fdatasync_p99_us").is_some(),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "the probe file is removed"
    );
}

#[test]
fn streaming_workloads_count_every_delivery() {
    let Target {
        bin,
        server: _server,
        ep,
    } = target();
    // 4 streams of 5 watchers, 50 puts: 1,000 events, every one delivered.
    let watch = run(
        &cairnctl(),
        &[
            "--endpoints",
            &ep,
            "-w",
            "json",
            "bench",
            "watch",
            "--streams",
            "4",
            "--watchers-per-stream",
            "5",
            "--put-rate",
            "0",
            "--total",
            "50",
            "--conns",
            "2",
        ],
        "",
    );
    assert_eq!(watch.code, 0, "{}", watch.stderr);
    assert_eq!(
        field(&watch.stdout, "requests"),
        Some(1000),
        "{}",
        watch.stdout
    );
    assert_eq!(field(&watch.stdout, "errors"), Some(0), "{}", watch.stdout);
    let keepalive = run(
        &cairnctl(),
        &[
            "--endpoints",
            &ep,
            "-w",
            "json",
            "bench",
            "lease-keepalive",
            "--leases",
            "20",
            "--clients",
            "4",
            "--total",
            "300",
        ],
        "",
    );
    assert_eq!(keepalive.code, 0, "{}", keepalive.stderr);
    assert_eq!(
        field(&keepalive.stdout, "requests"),
        Some(300),
        "{}",
        keepalive.stdout
    );
    assert_eq!(
        field(&keepalive.stdout, "errors"),
        Some(0),
        "{}",
        keepalive.stdout
    );
    let leases = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "lease", "list"],
        "",
    );
    assert!(
        leases.stdout.starts_with("found 20 leases"),
        "{}",
        leases.stdout
    );
}

#[test]
fn check_perf_gives_etcdctls_verdicts_and_cleans_up() {
    let Target {
        bin,
        server: _server,
        ep,
    } = target();
    let out = run(
        &cairnctl(),
        &["--endpoints", &ep, "check", "perf", "--duration", "2"],
        "",
    );
    // The verdict depends on the machine; its shape and exit code do not.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].contains("Throughput"), "{}", out.stdout);
    assert!(lines[1].contains("Slowest request took"), "{}", out.stdout);
    assert!(lines[2].contains("Stddev"), "{}", out.stdout);
    let passed = lines[3] == "PASS";
    assert!(passed || lines[3] == "FAIL", "{}", out.stdout);
    assert_eq!(out.code, if passed { 0 } else { 1 }, "{}", out.stderr);
    assert!(
        lines[..3].iter().all(|l| l.starts_with("PASS: ")) == passed,
        "{}",
        out.stdout
    );
    let left = run(
        &bin.join("etcdctl"),
        &[
            "--endpoints",
            &ep,
            "get",
            "/etcdctl-check-perf/",
            "--prefix",
            "--count-only",
            "-w",
            "fields",
        ],
        "",
    );
    assert!(left.stdout.contains("\"Count\" : 0"), "{}", left.stdout);
    // It wrote: 150 puts a second for two seconds, then one delete.
    let status = run(
        &bin.join("etcdctl"),
        &["--endpoints", &ep, "endpoint", "status", "-w", "json"],
        "",
    );
    assert!(
        field(&status.stdout, "revision").is_some_and(|r| r > 300),
        "{}",
        status.stdout
    );
}
