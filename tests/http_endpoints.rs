//! The client port's plain-HTTP endpoints answer as etcd 3.5's do (status, headers, exact bodies;
//! the expected texts were recorded from a real etcd 3.5.1, and one test compares with a live
//! one), over a real socket with a fake node behind them, and `/metrics` is a well-formed
//! Prometheus exposition.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::http::{router, Alarm, HealthSource, ReadProbe, VersionInfo};
use cairn::metrics::{Registry, ServerMetrics};
use cairn::version::{CAIRN_VERSION, ETCD_SERVER_VERSION};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A node whose health facts the test sets directly.
struct FakeNode {
    alarms: Mutex<Vec<Alarm>>,
    has_leader: AtomicBool,
    learner: AtomicBool,
    /// Linearizable reads never finish (a ReadIndex that never returns).
    linearizable_read_hangs: AtomicBool,
    registry: Registry,
    metrics: ServerMetrics,
}

impl FakeNode {
    fn healthy() -> Arc<Self> {
        let registry = Registry::new();
        let metrics = ServerMetrics::register(&registry).expect("fresh registry");
        Arc::new(Self {
            alarms: Mutex::new(Vec::new()),
            has_leader: AtomicBool::new(true),
            learner: AtomicBool::new(false),
            linearizable_read_hangs: AtomicBool::new(false),
            registry,
            metrics,
        })
    }
}

impl HealthSource for FakeNode {
    fn alarms(&self) -> Vec<Alarm> {
        self.alarms.lock().clone()
    }

    fn has_leader(&self) -> bool {
        self.has_leader.load(Ordering::SeqCst)
    }

    fn is_learner(&self) -> bool {
        self.learner.load(Ordering::SeqCst)
    }

    fn read(&self, serializable: bool) -> ReadProbe<'_> {
        Box::pin(async move {
            if serializable {
                return Ok(());
            }
            if self.linearizable_read_hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.has_leader() {
                Ok(())
            } else {
                Err("etcdserver: no leader".to_owned())
            }
        })
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn metrics(&self) -> String {
        self.registry.render()
    }

    fn health_checked(&self, healthy: bool) {
        if healthy {
            self.metrics.health_success.inc();
        } else {
            self.metrics.health_failures.inc();
        }
    }
}

/// Serves `router(node)` on a loopback ephemeral port; returns the address.
async fn serve(node: Arc<FakeNode>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router(node)).await.expect("serve");
    });
    addr
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn assert_etcd_cors(&self) {
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some("*"),
            "{self:?}"
        );
        assert_eq!(
            self.header("access-control-allow-methods"),
            Some("POST, GET, OPTIONS, PUT, DELETE")
        );
        assert_eq!(
            self.header("access-control-allow-headers"),
            Some("accept, content-type, authorization")
        );
    }
}

/// One HTTP/1.1 request over a fresh connection, read to the end.
async fn request(addr: std::net::SocketAddr, method: &str, target: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    if let Some(length) = headers.get("content-length") {
        if method != "HEAD" {
            assert_eq!(
                length.parse::<usize>().ok(),
                Some(body.len()),
                "content-length"
            );
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut chunked: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, rest) = chunked.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
}

#[tokio::test]
async fn healthy_node_answers_each_endpoint_with_etcds_bodies_and_headers() {
    let addr = serve(FakeNode::healthy()).await;

    let health = request(addr, "GET", "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, r#"{"health":"true","reason":""}"#);
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.header("x-content-type-options"), None);
    health.assert_etcd_cors();

    let version = request(addr, "GET", "/version").await;
    assert_eq!(version.status, 200);
    assert_eq!(
        version.body,
        format!(
            r#"{{"etcdserver":"{ETCD_SERVER_VERSION}","etcdcluster":"3.5.0","cairn":"{CAIRN_VERSION}"}}"#
        )
    );
    assert_eq!(version.header("content-type"), Some("application/json"));
    version.assert_etcd_cors();

    for path in [
        "/livez",
        "/readyz",
        "/livez/serializable_read",
        "/readyz/linearizable_read",
    ] {
        let reply = request(addr, "GET", path).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"), "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        reply.assert_etcd_cors();
    }

    let verbose = request(addr, "GET", "/readyz?verbose").await;
    assert_eq!(verbose.status, 200);
    assert_eq!(
        verbose.body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
    );
    let verbose_one = request(addr, "GET", "/livez/serializable_read?verbose=1").await;
    assert_eq!(verbose_one.body, "[+]serializable_read ok\nok\n");
}

#[tokio::test]
async fn leaderless_node_is_unhealthy_and_unready_but_live() {
    let node = FakeNode::healthy();
    node.has_leader.store(false, Ordering::SeqCst);
    let addr = serve(Arc::clone(&node)).await;

    let health = request(addr, "GET", "/health").await;
    assert_eq!(health.status, 503);
    // Exactly what etcd 3.5.1 sent with its peer down: http.Error adds the newline.
    assert_eq!(
        health.body,
        "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
    );
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    health.assert_etcd_cors();

    // A serializable check skips the leader test and reads locally.
    let local = request(addr, "GET", "/health?serializable=true").await;
    assert_eq!(
        (local.status, local.body.as_str()),
        (200, r#"{"health":"true","reason":""}"#)
    );

    let ready = request(addr, "GET", "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body,
        "[+]data_corruption ok\n[+]serializable_read ok\n\
         [-]linearizable_read failed: etcdserver: no leader\n[+]non_learner ok\n\n"
    );
    assert_eq!(ready.header("x-content-type-options"), Some("nosniff"));

    let one = request(addr, "GET", "/readyz/linearizable_read").await;
    assert_eq!(
        (one.status, one.body.as_str()),
        (
            503,
            "[-]linearizable_read failed: etcdserver: no leader\n\n"
        )
    );
    // `exclude` applies to the root path only, as in etcd.
    let excluded = request(addr, "GET", "/readyz?exclude=linearizable_read").await;
    assert_eq!((excluded.status, excluded.body.as_str()), (200, "ok\n"));
    let ignored = request(
        addr,
        "GET",
        "/readyz/linearizable_read?exclude=linearizable_read",
    )
    .await;
    assert_eq!(ignored.status, 503);

    let live = request(addr, "GET", "/livez").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));

    // The outcomes reach etcd's health counters.
    let metrics = request(addr, "GET", "/metrics").await.body;
    assert!(
        metrics.contains("\netcd_server_health_failures 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\netcd_server_health_success 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn alarms_fail_health_unless_excluded_and_corruption_fails_readiness() {
    let node = FakeNode::healthy();
    let addr = serve(Arc::clone(&node)).await;

    node.alarms.lock().push(Alarm::NoSpace);
    let nospace = request(addr, "GET", "/health").await;
    assert_eq!(
        (nospace.status, nospace.body.as_str()),
        (503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n")
    );
    let excluded = request(addr, "GET", "/health?exclude=NOSPACE").await;
    assert_eq!(excluded.status, 200);
    // NOSPACE does not make a member unready (reads still work).
    assert_eq!(request(addr, "GET", "/readyz").await.status, 200);

    node.alarms.lock().push(Alarm::Corrupt);
    let both = request(addr, "GET", "/health?exclude=NOSPACE").await;
    assert_eq!(
        both.body,
        "{\"health\":\"false\",\"reason\":\"ALARM CORRUPT\"}\n"
    );
    let all_excluded = request(addr, "GET", "/health?exclude=NOSPACE&exclude=CORRUPT").await;
    assert_eq!(all_excluded.status, 200);
    let corrupt = request(addr, "GET", "/readyz/data_corruption").await;
    assert_eq!(
        (corrupt.status, corrupt.body.as_str()),
        (
            503,
            "[-]data_corruption failed: alarm activated: CORRUPT\n\n"
        )
    );
}

#[tokio::test]
async fn learner_is_not_ready() {
    let node = FakeNode::healthy();
    node.learner.store(true, Ordering::SeqCst);
    let addr = serve(node).await;
    let ready = request(addr, "GET", "/readyz/non_learner").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "[-]non_learner failed: not supported for learner\n\n")
    );
    assert_eq!(request(addr, "GET", "/health").await.status, 200);
}

#[tokio::test]
async fn stuck_linearizable_read_fails_health_after_the_request_timeout() {
    let node = FakeNode::healthy();
    node.linearizable_read_hangs.store(true, Ordering::SeqCst);
    let addr = serve(node).await;
    let started = Instant::now();
    let health = request(addr, "GET", "/health").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (
            503,
            "{\"health\":\"false\",\"reason\":\"RANGE ERROR:context deadline exceeded\"}\n"
        )
    );
    // Bounded by the node's 300 ms timeout, not hung.
    assert!(started.elapsed() < Duration::from_secs(5));
    let ready = request(addr, "GET", "/readyz").await;
    assert!(ready
        .body
        .contains("[-]linearizable_read failed: context deadline exceeded\n"));
}

#[tokio::test]
async fn methods_other_than_get_are_refused_as_etcd_refuses_them() {
    let addr = serve(FakeNode::healthy()).await;
    for (method, path) in [
        ("POST", "/health"),
        ("PUT", "/version"),
        ("HEAD", "/health"),
        ("DELETE", "/livez"),
        ("POST", "/readyz/non_learner"),
    ] {
        let reply = request(addr, method, path).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET"), "{method} {path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        if method != "HEAD" {
            assert_eq!(reply.body, "Method Not Allowed\n");
        }
        reply.assert_etcd_cors();
    }
    // A CORS preflight is a bare 200 on every path.
    for path in ["/health", "/version", "/metrics", "/readyz"] {
        let preflight = request(addr, "OPTIONS", path).await;
        assert_eq!(
            (preflight.status, preflight.body.as_str()),
            (200, ""),
            "{path}"
        );
        preflight.assert_etcd_cors();
    }
    // The metrics handler serves any method, as the Prometheus Go client's does.
    let posted = request(addr, "POST", "/metrics").await;
    assert_eq!(posted.status, 200);
    assert!(posted
        .body
        .contains("# TYPE etcd_server_has_leader gauge\n"));
    // Paths not ours are left to the server's fallback (none here).
    assert_eq!(request(addr, "GET", "/healthz").await.status, 404);
}

#[tokio::test]
async fn metrics_exposition_is_well_formed_with_consistent_histograms() {
    let node = FakeNode::healthy();
    let m = &node.metrics;
    m.has_leader.set_bool(true);
    m.is_leader.set_bool(true);
    m.raft_term.set(3);
    m.db_total_size_bytes.set_u64(20480);
    for micros in [300u64, 1_500, 2_500, 9_000, 20_000_000] {
        m.wal_fsync_duration
            .observe_duration(Duration::from_micros(micros));
        m.btree_commit_duration
            .observe_duration(Duration::from_micros(micros / 2));
    }
    for (path, code) in [
        ("/etcdserverpb.KV/Range", tonic::Code::Ok),
        ("/etcdserverpb.KV/Put", tonic::Code::Ok),
        ("/etcdserverpb.KV/Put", tonic::Code::InvalidArgument),
    ] {
        m.grpc_started(path);
        m.observe_grpc(path, code, Duration::from_millis(4));
    }
    let addr = serve(Arc::clone(&node)).await;
    let reply = request(addr, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.assert_etcd_cors();

    let exposition = parse_exposition(&reply.body);
    for (name, kind) in [
        ("cairn_grpc_requests_total", "counter"),
        ("cairn_grpc_request_duration_seconds", "histogram"),
        ("cairn_wal_fsync_duration_seconds", "histogram"),
        ("cairn_btree_commit_duration_seconds", "histogram"),
        ("cairn_db_total_size_in_bytes", "gauge"),
        ("cairn_raft_term", "gauge"),
        ("cairn_server_is_leader", "gauge"),
        ("cairn_server_has_leader", "gauge"),
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_is_leader", "gauge"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_disk_backend_commit_duration_seconds", "histogram"),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
    ] {
        assert_eq!(
            exposition.kinds.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    assert_eq!(
        exposition.samples.get("etcd_mvcc_db_total_size_in_bytes"),
        Some(&20480.0)
    );
    assert_eq!(
        exposition
            .samples
            .get("cairn_grpc_requests_total{code=\"OK\",method=\"Put\"}"),
        Some(&1.0)
    );
    assert_eq!(
        exposition
            .samples
            .get("etcd_disk_wal_fsync_duration_seconds_count"),
        Some(&5.0)
    );
    assert_eq!(
        exposition
            .samples
            .get("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"}"),
        Some(&2.0)
    );
}

/// What a scrape contains: each family's TYPE and every sample's value, keyed by the series text.
struct Exposition {
    kinds: HashMap<String, String>,
    samples: HashMap<String, f64>,
}

/// Parses a text exposition, asserting the format's rules on the way: HELP then TYPE before a
/// family's samples, each family once, every sample belongs to the family declared last, and
/// every histogram series has non-decreasing buckets in ascending `le`, ending in `+Inf` equal
/// to its `_count`, plus a `_sum`.
fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'));
    let mut kinds = HashMap::new();
    let mut samples = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut pending_help: Option<String> = None;
    // Per histogram series (name + labels without le): (le, cumulative count) in order.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP has text");
            assert!(!kinds.contains_key(name), "{name} declared twice");
            pending_help = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert_eq!(
                pending_help.take().as_deref(),
                Some(name),
                "HELP before TYPE"
            );
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{kind}");
            kinds.insert(name.to_owned(), kind.to_owned());
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("number in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let (family, kind) = current.as_ref().expect("sample after TYPE");
        if kind == "histogram" {
            let suffix = name
                .strip_prefix(family.as_str())
                .expect("sample of its family");
            match suffix {
                "_bucket" => {
                    let (rest, le) = labels.rsplit_once("le=\"").expect("le label last");
                    let le = le.strip_suffix('"').expect("quoted le");
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("numeric le")
                    };
                    let key = format!("{family}{{{}", rest.trim_end_matches(','));
                    buckets.entry(key).or_default().push((le, value));
                }
                "_sum" => {}
                "_count" => {
                    let key = format!("{family}{{{labels}");
                    let series_buckets = buckets.get(&key).expect("buckets before _count");
                    assert!(
                        series_buckets
                            .windows(2)
                            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                        "ascending le, non-decreasing counts: {key} {series_buckets:?}"
                    );
                    let last = series_buckets.last().expect("at least +Inf");
                    assert_eq!(last.0, f64::INFINITY, "{key} ends with +Inf");
                    assert_eq!(last.1, value, "{key}: +Inf bucket equals _count");
                    let sum_key = if labels.is_empty() {
                        format!("{family}_sum")
                    } else {
                        format!("{family}_sum{{{labels}}}")
                    };
                    assert!(samples.contains_key(&sum_key), "{sum_key} before _count");
                }
                other => panic!("unexpected histogram sample suffix {other:?} in {line}"),
            }
        } else {
            assert_eq!(name, family, "sample {line} under family {family}");
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    assert!(pending_help.is_none(), "HELP without TYPE");
    Exposition { kinds, samples }
}

/// The headers that must match etcd's: all but those describing the transfer or the moment.
fn comparable_headers(reply: &Reply) -> BTreeMap<String, String> {
    reply
        .headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "date" | "content-length" | "transfer-encoding" | "connection"
            )
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[tokio::test]
async fn healthy_node_answers_as_a_live_etcd_351_does() {
    let etcd = common::EtcdServer::start(&common::etcd35_dir());
    let etcd_addr: std::net::SocketAddr = format!("127.0.0.1:{}", etcd.client_port)
        .parse()
        .expect("etcd address");
    let node = FakeNode::healthy();
    node.metrics.has_leader.set_bool(true);
    node.metrics
        .preregister_grpc("/etcdserverpb.Maintenance/Status");
    node.metrics.grpc_started("/etcdserverpb.KV/Range");
    node.metrics.observe_grpc(
        "/etcdserverpb.KV/Range",
        tonic::Code::NotFound,
        Duration::from_millis(1),
    );
    let addr = serve(node).await;

    for (method, target) in [
        ("GET", "/health"),
        ("GET", "/health?serializable=true"),
        ("GET", "/health?exclude=NOSPACE&exclude="),
        ("POST", "/health"),
        ("HEAD", "/health"),
        ("PUT", "/version"),
        ("DELETE", "/version"),
        ("OPTIONS", "/health"),
        ("OPTIONS", "/version"),
        ("OPTIONS", "/metrics"),
    ] {
        let expected = request(etcd_addr, method, target).await;
        let got = request(addr, method, target).await;
        assert_eq!(got.status, expected.status, "{method} {target}");
        assert_eq!(got.body, expected.body, "{method} {target}");
        assert_eq!(
            comparable_headers(&got),
            comparable_headers(&expected),
            "{method} {target}"
        );
    }

    // /version: same status and headers; the same fields in the same order, where etcd's
    // server field names its own patch release and Cairn adds its own version after them.
    let expected = request(etcd_addr, "GET", "/version").await;
    let got = request(addr, "GET", "/version").await;
    assert_eq!(got.status, expected.status);
    assert_eq!(comparable_headers(&got), comparable_headers(&expected));
    let fields = |body: &str| -> Vec<String> {
        body.trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|field| field.split(':').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(fields(&got.body)[..2], fields(&expected.body)[..]);
    assert!(
        expected.body.contains(r#""etcdcluster":"3.5.0""#),
        "{}",
        expected.body
    );
    assert!(
        got.body.contains(r#""etcdcluster":"3.5.0""#),
        "{}",
        got.body
    );

    // /metrics: same content type, and every etcd-named family Cairn exports carries etcd's
    // HELP and TYPE lines and, for histograms, etcd's bucket labels.
    let expected = request(etcd_addr, "GET", "/metrics").await;
    let got = request(addr, "GET", "/metrics").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), expected.header("content-type"));
    let mut checked = 0;
    for line in got.body.lines() {
        let is_etcd_meta = [
            "# HELP etcd_",
            "# TYPE etcd_",
            "# HELP grpc_",
            "# TYPE grpc_",
        ]
        .iter()
        .any(|prefix| line.starts_with(prefix));
        // Series whose label sets etcd also exports: disk histogram buckets, and the RPC
        // counters (etcd creates every method × code at startup).
        let is_etcd_series = (line.starts_with("etcd_disk_") && line.contains("_bucket{le="))
            || line.starts_with("grpc_server_");
        if is_etcd_meta || is_etcd_series {
            let shape = line.rsplit_once(' ').map_or(line, |(series, _)| series);
            let key = if is_etcd_meta { line } else { shape };
            assert!(
                expected.body.lines().any(|l| l.starts_with(key)),
                "etcd 3.5.1 has no line starting {key:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 44, "compared only {checked} lines");
    drop(etcd);
}

#[test]
fn version_info_json_leaves_cairn_out_when_absent() {
    let info = VersionInfo {
        etcd_server: "3.5.0".into(),
        etcd_cluster: "not_decided".into(),
        cairn: None,
    };
    assert_eq!(
        info.to_json(),
        r#"{"etcdserver":"3.5.0","etcdcluster":"not_decided"}"#
    );
}
