//! The server's configuration: etcd's flag names and defaults, so that an etcd deployment
//! recipe works by swapping the binary, and the checks etcd makes before it starts.
//!
//! [`ServerFlags`] is what the command line (or `CAIRN_*` environment variables) says;
//! [`ServerConfig`] is the validated result the server runs with.

pub mod file;
mod url;

pub use url::{MemberUrl, Scheme, UrlError};

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Whether this member starts a new cluster or joins one that exists (etcd's
/// `--initial-cluster-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs (the member was added with `member add` first).
    Existing,
}

/// etcd-compatible server flags. Names, defaults and meanings follow etcd's so that existing
/// deployment recipes work unchanged.
#[derive(Debug, Clone, Args)]
pub struct ServerFlags {
    /// Human-readable name for this member.
    #[arg(long, env = "CAIRN_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: ${name}.cairn].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic.
    #[arg(
        long,
        env = "CAIRN_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member, advertised to the rest of the cluster and
    /// to clients.
    #[arg(
        long,
        env = "CAIRN_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,

    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "CAIRN_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member, advertised to the rest of the cluster.
    #[arg(
        long,
        env = "CAIRN_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping, as name=peer-url pairs separated by
    /// commas [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state: 'new' to bootstrap, 'existing' to join a running cluster.
    #[arg(
        long,
        env = "CAIRN_INITIAL_CLUSTER_STATE",
        value_enum,
        default_value = "new"
    )]
    pub initial_cluster_state: ClusterState,

    /// Initial cluster token, so that members of different clusters bootstrapped from the same
    /// configuration never mistake each other for peers.
    #[arg(
        long,
        env = "CAIRN_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "CAIRN_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "CAIRN_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Number of committed transactions to trigger a snapshot to disk (which lets the WAL
    /// release older segments).
    #[arg(long, env = "CAIRN_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Entries kept in the log behind each snapshot, so a follower a little behind catches
    /// up from the log instead of receiving a snapshot (etcd's name and default).
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "CAIRN_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub snapshot_catchup_entries: u64,

    /// Local IP address that connections to other members (and to the leader's client URL)
    /// are made from [default: chosen by the operating system]. For hosts with several
    /// addresses whose peers or firewalls tell members apart by source address.
    #[arg(long, env = "CAIRN_PEER_DIAL_ADDRESS")]
    pub peer_dial_address: Option<std::net::IpAddr>,

    /// Size of each preallocated WAL segment file, in bytes (tests use small ones).
    #[arg(long, env = "CAIRN_WAL_SEGMENT_BYTES", default_value_t = 64 << 20, hide = true)]
    pub wal_segment_bytes: u64,
}

/// One member of `--initial-cluster`: a name and the peer URLs it is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<MemberUrl>,
}

/// The validated configuration a server starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<MemberUrl>,
    pub advertise_client_urls: Vec<MemberUrl>,
    pub listen_peer_urls: Vec<MemberUrl>,
    pub initial_advertise_peer_urls: Vec<MemberUrl>,
    /// Members in the order `--initial-cluster` names them.
    pub initial_cluster: Vec<InitialMember>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat_interval: std::time::Duration,
    /// Election timeout, a whole number of heartbeat intervals.
    pub election_ticks: u32,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub wal_segment_bytes: u64,
    pub peer_dial_address: Option<std::net::IpAddr>,
}

/// Why a configuration was refused. Messages follow etcd's where etcd has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid value for --{flag}: {source}")]
    Url {
        flag: &'static str,
        #[source]
        source: UrlError,
    },
    #[error("--{flag} must not be empty")]
    EmptyList { flag: &'static str },
    #[error("--name must not be empty")]
    EmptyName,
    #[error("--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]")]
    ElectionTooShort { election_ms: u64, heartbeat_ms: u64 },
    #[error("--election-timeout[{0}ms] is too long, and should be set less than 50000ms")]
    ElectionTooLong(u64),
    #[error("--heartbeat-interval must be at least 1ms")]
    HeartbeatZero,
    #[error("--max-txn-ops must be at least 1")]
    NoTxnOps,
    #[error("invalid --initial-cluster entry {entry:?}: expected name=url")]
    MalformedClusterEntry { entry: String },
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    LocalNameMissing { name: String },
    #[error(
        "--initial-cluster has {cluster_urls} but missing from --initial-advertise-peer-urls={advertised} \
         (the peer URLs of {name:?} in the initial cluster must equal its advertised peer URLs)"
    )]
    AdvertisedPeerUrlsMismatch {
        name: String,
        cluster_urls: String,
        advertised: String,
    },
}

impl ServerFlags {
    /// Checks the flags the way etcd does before it touches the disk or the network.
    pub fn validate(&self) -> Result<ServerConfig, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let listen_client_urls = parse_url_list("listen-client-urls", &self.listen_client_urls)?;
        let advertise_client_urls =
            parse_url_list("advertise-client-urls", &self.advertise_client_urls)?;
        let listen_peer_urls = parse_url_list("listen-peer-urls", &self.listen_peer_urls)?;
        let initial_advertise_peer_urls = parse_url_list(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => vec![InitialMember {
                name: self.name.clone(),
                peer_urls: initial_advertise_peer_urls.clone(),
            }],
        };
        check_local_member(&self.name, &initial_cluster, &initial_advertise_peer_urls)?;
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::HeartbeatZero);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election_ms: self.election_timeout,
                heartbeat_ms: self.heartbeat_interval,
            });
        }
        if self.election_timeout > 50_000 {
            return Err(ConfigError::ElectionTooLong(self.election_timeout));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::NoTxnOps);
        }
        let election_ticks =
            u32::try_from(self.election_timeout / self.heartbeat_interval).unwrap_or(u32::MAX);
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.cairn", self.name)));
        Ok(ServerConfig {
            name: self.name.clone(),
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: self.initial_cluster_state,
            initial_cluster_token: self.initial_cluster_token.clone(),
            heartbeat_interval: std::time::Duration::from_millis(self.heartbeat_interval),
            election_ticks,
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            snapshot_count: self.snapshot_count.max(1),
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            wal_segment_bytes: self.wal_segment_bytes,
            peer_dial_address: self.peer_dial_address,
        })
    }
}

fn parse_url_list(flag: &'static str, list: &str) -> Result<Vec<MemberUrl>, ConfigError> {
    let urls = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| MemberUrl::parse(s).map_err(|source| ConfigError::Url { flag, source }))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError::EmptyList { flag });
    }
    Ok(urls)
}

/// Parses `name=url,name=url,...`. A name may repeat to give a member several peer URLs, as in
/// etcd; members keep the order of their first appearance.
fn parse_initial_cluster(spec: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut members: Vec<InitialMember> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .filter(|(name, url)| !name.is_empty() && !url.is_empty())
            .ok_or_else(|| ConfigError::MalformedClusterEntry {
                entry: entry.to_string(),
            })?;
        let url = MemberUrl::parse(url).map_err(|source| ConfigError::Url {
            flag: "initial-cluster",
            source,
        })?;
        match members.iter_mut().find(|m| m.name == name) {
            Some(member) => member.peer_urls.push(url),
            None => members.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url],
            }),
        }
    }
    if members.is_empty() {
        return Err(ConfigError::EmptyList {
            flag: "initial-cluster",
        });
    }
    Ok(members)
}

/// The local member must be in the initial cluster, at exactly the peer URLs it advertises:
/// otherwise peers would dial an address this member never answers on.
fn check_local_member(
    name: &str,
    cluster: &[InitialMember],
    advertised: &[MemberUrl],
) -> Result<(), ConfigError> {
    let member =
        cluster
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ConfigError::LocalNameMissing {
                name: name.to_string(),
            })?;
    let mut in_cluster: Vec<String> = member.peer_urls.iter().map(ToString::to_string).collect();
    let mut in_flags: Vec<String> = advertised.iter().map(ToString::to_string).collect();
    in_cluster.sort();
    in_flags.sort();
    if in_cluster != in_flags {
        return Err(ConfigError::AdvertisedPeerUrlsMismatch {
            name: name.to_string(),
            cluster_urls: in_cluster.join(","),
            advertised: in_flags.join(","),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
