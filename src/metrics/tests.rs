use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::version::ETCD_SERVER_VERSION;

#[test]
fn counter_and_gauge_render_help_type_and_value_exactly() {
    let r = Registry::new();
    let c = r.counter("b_total", "Things counted.").unwrap();
    let g = r.gauge("a_bytes", "A size.").unwrap();
    let f = r.gauge_f64("c_ratio", "A ratio.").unwrap();
    c.inc();
    c.add(41);
    g.set(-7);
    f.set(0.25);
    assert_eq!(
        r.render(),
        "# HELP a_bytes A size.\n\
         # TYPE a_bytes gauge\n\
         a_bytes -7\n\
         # HELP b_total Things counted.\n\
         # TYPE b_total counter\n\
         b_total 42\n\
         # HELP c_ratio A ratio.\n\
         # TYPE c_ratio gauge\n\
         c_ratio 0.25\n"
    );
}

#[test]
fn histogram_renders_cumulative_buckets_sum_and_count() {
    let r = Registry::new();
    let buckets = Buckets::new(&[0.25, 1.0, 4.0]).unwrap();
    let h = r.histogram("op_seconds", "Op latency.", &buckets).unwrap();
    // Binary fractions, so the sum is exact.
    for v in [0.125, 0.25, 0.5, 2.0, 8.0] {
        h.observe(v);
    }
    assert_eq!(
        r.render(),
        "# HELP op_seconds Op latency.\n\
         # TYPE op_seconds histogram\n\
         op_seconds_bucket{le=\"0.25\"} 2\n\
         op_seconds_bucket{le=\"1\"} 3\n\
         op_seconds_bucket{le=\"4\"} 4\n\
         op_seconds_bucket{le=\"+Inf\"} 5\n\
         op_seconds_sum 10.875\n\
         op_seconds_count 5\n"
    );
}

#[test]
fn labelled_series_are_sorted_by_values_and_escaped() {
    let r = Registry::new();
    let fam: Family<Counter> = r
        .family("req_total", "Requests.", &["code", "method"], ())
        .unwrap();
    fam.with(&["OK", "Range"]).add(3);
    fam.with(&["NotFound", "Put"]).inc();
    fam.with(&["OK", "Put"]).inc();
    fam.with(&["OK", "Range"]).inc();
    fam.with(&["OK", "we\"ird\\\nname"]).inc();
    assert_eq!(
        r.render(),
        "# HELP req_total Requests.\n\
         # TYPE req_total counter\n\
         req_total{code=\"NotFound\",method=\"Put\"} 1\n\
         req_total{code=\"OK\",method=\"Put\"} 1\n\
         req_total{code=\"OK\",method=\"Range\"} 4\n\
         req_total{code=\"OK\",method=\"we\\\"ird\\\\\\nname\"} 1\n"
    );
}

#[test]
fn labelled_histogram_puts_le_after_its_labels() {
    let r = Registry::new();
    let buckets = Buckets::new(&[1.0]).unwrap();
    let fam: Family<Histogram> = r
        .family("rpc_seconds", "RPC latency.", &["method"], buckets)
        .unwrap();
    fam.with(&["Put"]).observe(0.5);
    fam.with(&["Put"]).observe(2.0);
    assert_eq!(
        r.render(),
        "# HELP rpc_seconds RPC latency.\n\
         # TYPE rpc_seconds histogram\n\
         rpc_seconds_bucket{method=\"Put\",le=\"1\"} 1\n\
         rpc_seconds_bucket{method=\"Put\",le=\"+Inf\"} 2\n\
         rpc_seconds_sum{method=\"Put\"} 2.5\n\
         rpc_seconds_count{method=\"Put\"} 2\n"
    );
}

#[test]
fn unused_labelled_family_is_left_out() {
    let r = Registry::new();
    let _fam: Family<Counter> = r.family("x_total", "X.", &["a"], ()).unwrap();
    assert_eq!(r.render(), "");
}

#[test]
fn help_text_is_escaped() {
    let r = Registry::new();
    r.gauge("g", "line one\nback\\slash \"quoted\"").unwrap();
    assert_eq!(
        r.render(),
        "# HELP g line one\\nback\\\\slash \"quoted\"\n# TYPE g gauge\ng 0\n"
    );
}

#[test]
fn alias_exports_the_same_values_under_another_name_and_help() {
    let r = Registry::new();
    let g = r.gauge("cairn_up", "Cairn's words.").unwrap();
    r.alias("etcd_up", "etcd's words.", &g).unwrap();
    g.set(1);
    assert_eq!(
        r.render(),
        "# HELP cairn_up Cairn's words.\n# TYPE cairn_up gauge\ncairn_up 1\n\
         # HELP etcd_up etcd's words.\n# TYPE etcd_up gauge\netcd_up 1\n"
    );
}

#[test]
fn registration_refuses_bad_names_labels_duplicates_and_buckets() {
    let r = Registry::new();
    assert!(matches!(
        r.counter("1abc", "h"),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(matches!(
        r.counter("a-b", "h"),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(matches!(
        r.counter("", "h"),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(r.counter("ns:sub_total", "h").is_ok());
    assert_eq!(
        r.gauge("ns:sub_total", "h").unwrap_err(),
        MetricsError::AlreadyRegistered {
            name: "ns:sub_total".into()
        }
    );
    assert!(matches!(
        r.family::<Counter>("f1", "h", &["__x"], ()),
        Err(MetricsError::InvalidLabel { .. })
    ));
    assert!(matches!(
        r.family::<Counter>("f2", "h", &["a:b"], ()),
        Err(MetricsError::InvalidLabel { .. })
    ));
    assert!(matches!(
        r.family::<Counter>("f3", "h", &["a", "a"], ()),
        Err(MetricsError::DuplicateLabel { .. })
    ));
    let b = Buckets::new(&[1.0]).unwrap();
    assert!(matches!(
        r.family::<Histogram>("f4", "h", &["le"], b),
        Err(MetricsError::InvalidLabel { .. })
    ));
    // `le` is an ordinary label on a counter.
    assert!(r.family::<Counter>("f5", "h", &["le"], ()).is_ok());
    assert!(matches!(
        Buckets::new(&[]),
        Err(MetricsError::BucketCount { .. })
    ));
    assert!(matches!(
        Buckets::new(&[1.0, 1.0]),
        Err(MetricsError::BucketBound { index: 1, .. })
    ));
    assert!(matches!(
        Buckets::new(&[f64::NAN]),
        Err(MetricsError::BucketBound { index: 0, .. })
    ));
    assert!(matches!(
        Buckets::new(&[0.5, f64::INFINITY]),
        Err(MetricsError::BucketBound { index: 1, .. })
    ));
    assert!(matches!(
        Buckets::exponential(1.0, 2.0, MAX_HISTOGRAM_BUCKETS + 1),
        Err(MetricsError::BucketCount { .. })
    ));
}

#[test]
fn family_stops_exporting_new_label_sets_past_its_bound() {
    let r = Registry::new();
    let fam: Family<Counter> = r.family("many_total", "h", &["id"], ()).unwrap();
    for i in 0..MAX_SERIES_PER_FAMILY + 10 {
        fam.with(&[&i.to_string()]).inc();
    }
    assert_eq!(fam.len(), MAX_SERIES_PER_FAMILY);
    // An existing series keeps counting past the bound.
    fam.with(&["0"]).inc();
    assert!(r.render().contains("many_total{id=\"0\"} 2\n"));
}

#[test]
fn histogram_edge_values_land_in_the_right_buckets() {
    let h = Histogram::new(&Buckets::new(&[0.0, 1.0]).unwrap());
    h.observe(-1.0); // below the first bound: first bucket
    h.observe(1.0); // equal to a bound: that bucket (le is inclusive)
    h.observe(f64::NAN); // NaN: only +Inf, as in the Go client
    let mut out = String::new();
    h.render("h", "", &mut out);
    assert_eq!(
        out,
        "h_bucket{le=\"0\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum NaN\nh_count 3\n"
    );
}

#[test]
fn concurrent_observations_are_all_counted_and_scrapes_stay_consistent() {
    let h = Histogram::new(&Buckets::exponential(0.001, 2.0, 14).unwrap());
    let threads = 4;
    let per_thread = 20_000u64;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    h.observe_duration(Duration::from_micros((i * 7 + t) % 20_000_000));
                }
            })
        })
        .collect();
    // Scrape while recording: every scrape must be internally consistent.
    while !workers.iter().all(|w| w.is_finished()) {
        let mut out = String::new();
        h.render("h", "", &mut out);
        let (buckets, count) = parse_histogram(&out);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{out}");
        assert_eq!(buckets.last().copied(), Some(count), "{out}");
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(h.count(), threads * per_thread);
}

/// Bucket counts in order and the `_count` of one rendered histogram series.
fn parse_histogram(text: &str) -> (Vec<u64>, u64) {
    let mut buckets = Vec::new();
    let mut count = None;
    for line in text.lines() {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if series.contains("_bucket{") {
            buckets.push(value.parse().unwrap());
        } else if series.ends_with("_count") {
            count = Some(value.parse().unwrap());
        }
    }
    (buckets, count.unwrap())
}

#[test]
fn server_metrics_export_cairn_and_etcd_names() {
    let r = Arc::new(Registry::new());
    let m = ServerMetrics::register(&r).unwrap();
    m.has_leader.set_bool(true);
    m.is_leader.set_bool(true);
    m.db_total_size_bytes.set_u64(20480);
    m.raft_committed_index.set_u64(4);
    m.wal_fsync_duration.observe(0.0015);
    m.grpc_started("/etcdserverpb.KV/Range");
    m.observe_grpc(
        "/etcdserverpb.KV/Range",
        tonic::Code::Ok,
        Duration::from_millis(3),
    );
    m.observe_grpc("not a path", tonic::Code::Ok, Duration::from_millis(3));
    let text = r.render();
    for expected in [
        "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.\n\
         # TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n",
        "# TYPE etcd_server_is_leader gauge\netcd_server_is_leader 1\n",
        "# TYPE cairn_server_has_leader gauge\ncairn_server_has_leader 1\n",
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\netcd_mvcc_db_total_size_in_bytes 20480\n",
        "# TYPE etcd_server_proposals_committed_total gauge\netcd_server_proposals_committed_total 4\n",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n\
         etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1\n",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1\n\
         etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 1\n\
         etcd_disk_wal_fsync_duration_seconds_sum 0.0015\n\
         etcd_disk_wal_fsync_duration_seconds_count 1\n",
        "# TYPE cairn_wal_fsync_duration_seconds histogram\n",
        "cairn_grpc_requests_total{code=\"OK\",method=\"Range\"} 1\n",
        "cairn_grpc_request_duration_seconds_bucket{method=\"Range\",le=\"0.005\"} 1\n",
        "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n",
        &format!("etcd_server_version{{server_version=\"{ETCD_SERVER_VERSION}\"}} 1\n"),
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // A second registration in the same registry is refused rather than double-exported.
    assert!(matches!(
        ServerMetrics::register(&r),
        Err(MetricsError::AlreadyRegistered { .. })
    ));
}

#[test]
fn disk_histograms_use_etcds_bucket_labels_exactly() {
    let r = Registry::new();
    let _m = ServerMetrics::register(&r).unwrap();
    let text = r.render();
    let prefix = "etcd_disk_backend_commit_duration_seconds_bucket{le=\"";
    let les: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once('"').map(|(le, _)| le))
        .collect();
    // As etcd 3.5.1's /metrics lists them.
    assert_eq!(
        les,
        [
            "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256",
            "0.512", "1.024", "2.048", "4.096", "8.192", "+Inf"
        ]
    );
}

#[test]
fn preregistered_rpc_has_every_code_at_zero() {
    let r = Registry::new();
    let m = ServerMetrics::register(&r).unwrap();
    m.preregister_grpc("/etcdserverpb.Watch/Watch");
    let text = r.render();
    let handled: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .collect();
    assert_eq!(handled.len(), ALL_GRPC_CODES.len());
    assert!(handled.iter().all(|l| l.ends_with(" 0")));
    assert!(handled.contains(
        &"grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 0"
    ));
    assert!(text.contains(
        "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 0\n"
    ));
    // Nothing Cairn-named appears before a request completes.
    assert!(!text.contains("cairn_grpc_requests_total{"));
}

#[test]
fn a_cached_method_handle_records_as_the_path_calls_do_and_nothing_before_a_call() {
    let r = Arc::new(Registry::new());
    let m = ServerMetrics::register(&r).unwrap();
    assert!(m.grpc_method_series("not a path").is_none());
    let series = m.grpc_method_series("/etcdserverpb.KV/Put").unwrap();
    assert!(
        !r.render().contains("cairn_grpc_requests_total{"),
        "no Cairn-named series before a call completes"
    );
    series.record_started();
    series.record(&m, tonic::Code::Ok, Duration::from_millis(3));
    series.record(&m, tonic::Code::Ok, Duration::from_millis(3));
    series.record(&m, tonic::Code::NotFound, Duration::from_millis(3));
    let text = r.render();
    for expected in [
        "cairn_grpc_requests_total{code=\"OK\",method=\"Put\"} 2\n",
        "cairn_grpc_requests_total{code=\"NotFound\",method=\"Put\"} 1\n",
        "cairn_grpc_request_duration_seconds_count{method=\"Put\"} 3\n",
        "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 2\n",
        "grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
