use super::*;
use clap::Parser;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    flags: ServerFlags,
}

fn flags(args: &[&str]) -> ServerFlags {
    let mut argv = vec!["cairn"];
    argv.extend_from_slice(args);
    TestCli::try_parse_from(argv).expect("flags parse").flags
}

#[test]
fn defaults_match_etcd_single_member() {
    let config = flags(&[]).validate().expect("defaults are valid");
    assert_eq!(config.name, "default");
    assert_eq!(config.data_dir, PathBuf::from("default.cairn"));
    assert_eq!(
        config.listen_client_urls[0].to_string(),
        "http://localhost:2379"
    );
    assert_eq!(
        config.listen_peer_urls[0].to_string(),
        "http://localhost:2380"
    );
    assert_eq!(config.initial_cluster.len(), 1);
    assert_eq!(config.initial_cluster[0].name, "default");
    assert_eq!(config.initial_cluster_state, ClusterState::New);
    assert_eq!(config.initial_cluster_token, "etcd-cluster");
}

#[test]
fn data_dir_defaults_to_name() {
    let config = flags(&[
        "--name",
        "infra1",
        "--initial-cluster",
        "infra1=http://localhost:2380",
    ])
    .validate()
    .expect("valid");
    assert_eq!(config.data_dir, PathBuf::from("infra1.cairn"));
}

#[test]
fn three_member_cluster_parses_in_order() {
    let config = flags(&[
        "--name",
        "b",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-cluster",
        "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380",
        "--initial-cluster-state",
        "existing",
    ])
    .validate()
    .expect("valid");
    let names: Vec<&str> = config
        .initial_cluster
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(config.initial_cluster[2].peer_urls[0].port, 32380);
    assert_eq!(config.initial_cluster_state, ClusterState::Existing);
}

#[test]
fn member_may_list_several_peer_urls() {
    let config = flags(&[
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:2380,http://10.0.0.2:2380",
        "--initial-cluster",
        "default=http://10.0.0.2:2380,default=http://10.0.0.1:2380",
    ])
    .validate()
    .expect("same URLs in another order are fine");
    assert_eq!(config.initial_cluster[0].peer_urls.len(), 2);
}

#[test]
fn local_name_must_be_in_initial_cluster() {
    let err = flags(&[
        "--name",
        "x",
        "--initial-cluster",
        "a=http://localhost:2380",
    ])
    .validate()
    .expect_err("x is not a member");
    assert_eq!(
        err.to_string(),
        "couldn't find local name \"x\" in the initial cluster configuration"
    );
}

#[test]
fn advertised_peer_urls_must_match_initial_cluster() {
    let err = flags(&["--initial-cluster", "default=http://localhost:9999"])
        .validate()
        .expect_err("mismatch");
    assert!(
        matches!(err, ConfigError::AdvertisedPeerUrlsMismatch { .. }),
        "{err}"
    );
}

#[test]
fn malformed_entries_are_refused() {
    for spec in ["default", "=http://localhost:2380", "default="] {
        let err = flags(&["--initial-cluster", spec])
            .validate()
            .expect_err(spec);
        assert!(
            matches!(err, ConfigError::MalformedClusterEntry { .. }),
            "{spec}: {err}"
        );
    }
}

#[test]
fn url_forms() {
    let ok = [
        ("http://localhost:2379", "localhost", 2379, Scheme::Http),
        ("https://10.1.2.3:443/", "10.1.2.3", 443, Scheme::Https),
        ("http://[::1]:2379", "::1", 2379, Scheme::Http),
    ];
    for (text, host, port, scheme) in ok {
        let url = MemberUrl::parse(text).expect(text);
        assert_eq!(
            (url.host.as_str(), url.port, url.scheme),
            (host, port, scheme)
        );
    }
    assert_eq!(
        MemberUrl::parse("http://[::1]:2379").unwrap().to_string(),
        "http://[::1]:2379"
    );

    let bad = [
        "localhost:2379",
        "ftp://localhost:2379",
        "http://localhost",
        "http://localhost:",
        "http://:2379",
        "http://localhost:70000",
        "http://localhost:23a9",
        "http://::1:2379",
        "http://localhost:2379/path",
        "http://user@localhost:2379",
        "http://[::1]2379",
    ];
    for text in bad {
        assert!(MemberUrl::parse(text).is_err(), "{text} should be refused");
    }
}

#[test]
fn empty_lists_are_refused() {
    let err = flags(&["--listen-client-urls", ","])
        .validate()
        .expect_err("empty");
    assert_eq!(
        err,
        ConfigError::EmptyList {
            flag: "listen-client-urls"
        }
    );
}

#[test]
fn timing_flags_follow_etcds_rules() {
    let config = flags(&["--heartbeat-interval", "50", "--election-timeout", "500"])
        .validate()
        .expect("valid");
    assert_eq!(config.election_ticks, 10);
    assert_eq!(
        config.heartbeat_interval,
        std::time::Duration::from_millis(50)
    );
    let err = flags(&["--heartbeat-interval", "300", "--election-timeout", "1000"])
        .validate()
        .expect_err("too short");
    assert_eq!(
        err.to_string(),
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );
    assert!(matches!(
        flags(&["--election-timeout", "60000"]).validate(),
        Err(ConfigError::ElectionTooLong(60000))
    ));
}

#[test]
fn request_limits_default_to_etcds() {
    let config = flags(&[]).validate().expect("valid");
    assert_eq!(
        (config.max_request_bytes, config.max_txn_ops),
        (1_572_864, 128)
    );
}
