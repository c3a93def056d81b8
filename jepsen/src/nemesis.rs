//! The nemesis: faults on a random schedule, one at a time with quiet (recovery) phases in
//! between, until the run's deadline; then everything healed, resumed and restarted so the
//! clients' last operations (and final reads) meet a whole cluster.
//!
//! - kill: kill -9 of a random node, of the leader, or of a majority; restarted 1-3 s later;
//! - pause: SIGSTOP of a random node or of the leader; SIGCONT 1-7 s later;
//! - partition: the leader or a random node isolated, the cluster cut into a majority and a
//!   minority, or (5 nodes and more) two halves joined by one bridge node, or a ring where
//!   each node reaches only its two neighbours; healed 3-6 s later;
//! - clock: the leader or a random node restarted with its clocks running at 0.5-3 times the
//!   real rate (libfaketime), for 4-9 s;
//! - failpoint: the leader or a random node restarted with a test-only failpoint (crash at the
//!   n-th WAL fsync, B+tree commit, apply, snapshot chunk sent or snapshot install, or at a
//!   compaction the nemesis asks for; an fsync or apply error; or a slow fsync), for 4-9 s;
//! - member: the leader or a random node removed from the cluster (it stops by itself), its
//!   data wiped, and 2-5 s later added back as a new member that joins the running cluster.
//!
//! Every action goes in the timeline, one JSON line each:
//! `{"time":ns,"action":"kill","nodes":["n1"],"target":"leader"}`; an action that begins a
//! fault (`kill`, `pause`, `partition`, `clock ...`, `failpoint ...`) is ended by its
//! `restart`, `resume`, `heal` or `... over`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    cluster_client::ClusterClient, maintenance_client::MaintenanceClient, CompactionRequest,
    MemberAddRequest, MemberRemoveRequest, RangeRequest, StatusRequest,
};
use serde_json::json;

use crate::net::{Grudge, Network};
use crate::nodes::{Membership, Nodes};
use crate::rng::Rng;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
    Clock,
    Failpoint,
    Member,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Fault, String> {
        match name {
            "kill" => Ok(Fault::Kill),
            "pause" => Ok(Fault::Pause),
            "partition" => Ok(Fault::Partition),
            "clock" => Ok(Fault::Clock),
            "failpoint" => Ok(Fault::Failpoint),
            "member" => Ok(Fault::Member),
            other => Err(format!(
                "unknown nemesis {other:?} (built: kill, pause, partition, clock, failpoint, \
                 member, or none)"
            )),
        }
    }
}

/// Parses `kill,pause,...` (or `none`).
pub fn parse_faults(list: &str) -> Result<Vec<Fault>, String> {
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(',').map(|name| name.trim().parse()).collect()
}

pub struct Nemesis {
    pub nodes: Nodes,
    pub net: Network,
    faults: Vec<Fault>,
    rng: Rng,
    origin: Instant,
    timeline: Vec<String>,
    may_compact: bool,
}

impl Nemesis {
    pub fn new(nodes: Nodes, net: Network, faults: Vec<Fault>, seed: u64, origin: Instant) -> Self {
        Nemesis {
            nodes,
            net,
            faults,
            rng: Rng::new(seed),
            origin,
            timeline: Vec::new(),
            may_compact: false,
        }
    }

    /// Lets the failpoint nemesis compact the key space (no workload needs old revisions).
    pub fn allow_compaction(&mut self) {
        self.may_compact = true;
    }

    fn event(&mut self, action: &str, nodes: &[usize], target: &str) {
        let names: Vec<String> = nodes.iter().map(|i| format!("n{i}")).collect();
        self.timeline.push(
            json!({
                "time": self.origin.elapsed().as_nanos() as u64,
                "action": action, "nodes": names, "target": target,
            })
            .to_string(),
        );
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.rng.below(to - from))
    }

    /// Injects faults until `deadline`, then heals everything. Returns the timeline.
    pub async fn run_until(&mut self, deadline: Instant) -> String {
        while Instant::now() < deadline {
            let quiet = self.millis(1500, 3500);
            tokio::time::sleep(quiet).await;
            if self.faults.is_empty() || Instant::now() >= deadline {
                continue;
            }
            let fault = self.faults[self.rng.below(self.faults.len() as u64) as usize];
            match fault {
                Fault::Kill => self.kill().await,
                Fault::Pause => self.pause().await,
                Fault::Partition => self.partition().await,
                Fault::Clock => self.skew_clock().await,
                Fault::Failpoint => self.failpoint().await,
                Fault::Member => self.remove_and_add_back().await,
            }
        }
        self.heal_all();
        self.timeline.join("\n") + "\n"
    }

    /// The node that says it leads, if one answers within a moment.
    async fn leader(&self) -> Option<usize> {
        for (i, endpoint) in self.nodes.endpoints().into_iter().enumerate() {
            let ask = async {
                let mut client = MaintenanceClient::connect(endpoint).await.ok()?;
                let status = client.status(StatusRequest {}).await.ok()?.into_inner();
                let me = status.header?.member_id;
                Some(me != 0 && me == status.leader)
            };
            if let Ok(Some(true)) = tokio::time::timeout(Duration::from_millis(500), ask).await {
                return Some(i);
            }
        }
        None
    }

    /// A random node, or the leader (when one answers) half the time.
    async fn one_target(&mut self) -> (usize, &'static str) {
        let n = self.nodes.nodes.len() as u64;
        if self.rng.below(2) == 0 {
            if let Some(leader) = self.leader().await {
                return (leader, "leader");
            }
        }
        (self.rng.below(n) as usize, "random")
    }

    async fn kill(&mut self) {
        let n = self.nodes.nodes.len();
        let (victims, target) = if self.rng.below(3) == 0 {
            (self.rng.sample(n, n / 2 + 1), "majority")
        } else {
            let (one, target) = self.one_target().await;
            (vec![one], target)
        };
        self.event("kill", &victims, target);
        for &i in &victims {
            self.nodes.kill(i);
        }
        let down = self.millis(1000, 3000);
        tokio::time::sleep(down).await;
        self.event("restart", &victims, target);
        for &i in &victims {
            if let Err(err) = self.nodes.spawn(i) {
                self.event(&format!("restart failed: {err}"), &[i], target);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for &i in &victims {
            if let Some(status) = self.nodes.exited(i) {
                self.event(&format!("exited after its restart: {status}"), &[i], target);
            }
        }
    }

    async fn pause(&mut self) {
        let (victim, target) = self.one_target().await;
        self.event("pause", &[victim], target);
        self.nodes.pause(victim, true);
        // Up to longer than a lease TTL: a leader paused past its leases' deadlines wakes
        // up believing they expired, the case leases must survive.
        let paused = self.millis(1000, 7000);
        tokio::time::sleep(paused).await;
        self.event("resume", &[victim], target);
        self.nodes.pause(victim, false);
    }

    async fn partition(&mut self) {
        let n = self.nodes.nodes.len();
        let everyone: Vec<usize> = (0..n).collect();
        let mut grudge = Grudge::default();
        // Bridges and rings need five nodes (with three, a ring cuts nothing).
        let shape = self.rng.below(if n >= 5 { 4 } else { 2 });
        let (affected, target) = match shape {
            0 => {
                let (one, target) = self.one_target().await;
                grudge.separate(&[one], &everyone);
                (
                    vec![one],
                    if target == "leader" {
                        "isolate-leader"
                    } else {
                        "isolate-one"
                    },
                )
            }
            1 => {
                let order = self.rng.sample(n, n);
                let (minority, majority) = order.split_at(n / 2);
                grudge.separate(minority, majority);
                (minority.to_vec(), "majority-minority")
            }
            2 => {
                // Two halves that only the bridge node reaches both of.
                let order = self.rng.sample(n, n);
                let (bridge, rest) = order.split_at(1);
                let (left, right) = rest.split_at(rest.len() / 2);
                grudge.separate(left, right);
                (bridge.to_vec(), "bridge")
            }
            _ => {
                // Each node reaches only its two neighbours in a random ring: every node
                // sees a majority (itself and two of five), but no two see the same one.
                let ring = self.rng.sample(n, n);
                for (i, &a) in ring.iter().enumerate() {
                    for (j, &b) in ring.iter().enumerate() {
                        let apart = (i + n - j) % n;
                        if apart > 1 && apart < n - 1 {
                            grudge.separate(&[a], &[b]);
                        }
                    }
                }
                (ring, "ring")
            }
        };
        self.event("partition", &affected, target);
        if let Err(err) = self.net.set(&grudge) {
            self.event(&format!("partition failed: {err}"), &affected, target);
        }
        let lasting = self.millis(3000, 6000);
        tokio::time::sleep(lasting).await;
        self.event("heal", &affected, target);
        if let Err(err) = self.net.set(&Grudge::default()) {
            self.event(&format!("heal failed: {err}"), &affected, target);
        }
    }

    /// Restarts a node (the leader or a random one) under `env` for a few seconds, then
    /// normally again. Returns the node.
    async fn restart_under(&mut self, env: Vec<(String, String)>, action: &str, what: &str) {
        let (victim, target) = self.one_target().await;
        self.event(&format!("{action} {what}"), &[victim], target);
        self.nodes.kill(victim);
        if let Err(err) = self.nodes.spawn_with_env(victim, &env) {
            self.event(&format!("restart failed: {err}"), &[victim], target);
        }
        let lasting = self.millis(4000, 9000);
        if what.starts_with("compaction=") {
            // The place is reached only when a compaction applies: ask for one.
            tokio::time::sleep(Duration::from_millis(2000)).await;
            let compacted = self.compact().await;
            self.event(&compacted, &[victim], target);
        }
        tokio::time::sleep(lasting).await;
        let status = self.nodes.exited(victim);
        self.event(
            &match status {
                Some(status) => format!("{action} over (the node had exited: {status})"),
                None => format!("{action} over"),
            },
            &[victim],
            target,
        );
        self.nodes.kill(victim);
        if let Err(err) = self.nodes.spawn(victim) {
            self.event(&format!("restart failed: {err}"), &[victim], target);
        }
    }

    /// A node whose clock runs fast or slow (libfaketime on its monotonic and wall clocks):
    /// its elections, heartbeats and lease timers run at the wrong rate.
    async fn skew_clock(&mut self) {
        const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
        if !std::path::Path::new(LIBFAKETIME).exists() {
            self.event(
                "clock skipped: libfaketime is not installed (Debian's faketime)",
                &[],
                "",
            );
            return;
        }
        let rates = ["x0.5", "x1.5", "x2", "x3"];
        let rate = rates[self.rng.below(rates.len() as u64) as usize];
        let env = vec![
            ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
            ("FAKETIME".to_string(), format!("+0 {rate}")),
        ];
        self.restart_under(env, "clock", &format!("rate {rate}"))
            .await;
    }

    /// A node restarted with a test-only failpoint (a cairn built with the `failpoints`
    /// feature; others ignore it): a crash at the n-th WAL fsync, B+tree commit or apply, or
    /// a slow disk.
    async fn failpoint(&mut self) {
        let places = [
            "wal-fsync",
            "wal-fsync-after",
            "apply",
            "btree-commit",
            "btree-commit-after",
        ];
        // Snapshots are rarer than fsyncs: those places crash at their first few chunks.
        let rare_places = ["snapshot-send", "snapshot-install"];
        let spec = match self.rng.below(7) {
            0 | 1 => format!("wal-fsync=delay({})", 50 + self.rng.below(450)),
            // A disk that starts failing: the member must stop, not go on.
            6 => {
                let place = ["wal-fsync", "apply"][self.rng.below(2) as usize];
                format!("{place}=error-after({})", 1 + self.rng.below(300))
            }
            2 => {
                let place = rare_places[self.rng.below(rare_places.len() as u64) as usize];
                format!("{place}=crash-after({})", 1 + self.rng.below(3))
            }
            _ => {
                let place = places[self.rng.below(places.len() as u64) as usize];
                format!("{place}=crash-after({})", 1 + self.rng.below(300))
            }
        };
        // A compaction (which no workload asks for) crashes the node applying it; not when
        // the watch workload runs, whose reference history starts at revision 1.
        let spec = if self.may_compact && self.rng.below(6) == 0 {
            "compaction=crash-after(1)".to_string()
        } else {
            spec
        };
        let env = vec![("CAIRN_FAILPOINTS".to_string(), spec.clone())];
        self.restart_under(env, "failpoint", &spec).await;
    }

    /// Compacts the key space up to 1,000 revisions behind the current one, through the
    /// first node that answers; what happened, for the timeline.
    async fn compact(&self) -> String {
        for endpoint in self.nodes.endpoints() {
            let Some(mut kv) = crate::client::connect(&endpoint) else {
                continue;
            };
            let ask = async {
                let revision = kv
                    .range(RangeRequest {
                        key: b"jepsen-ready".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .header?
                    .revision;
                let to = revision - 1000;
                if to < 1 {
                    return Some(format!("compaction skipped at revision {revision}"));
                }
                kv.compact(CompactionRequest {
                    revision: to,
                    physical: false,
                })
                .await
                .ok()?;
                Some(format!("compacted to revision {to}"))
            };
            if let Ok(Some(done)) = tokio::time::timeout(Duration::from_secs(3), ask).await {
                return done;
            }
        }
        "compaction failed: no node answered".to_string()
    }

    /// Removes a member (MemberRemove through another node), lets its process stop itself,
    /// wipes its data, and after a while adds it back as a new member (MemberAdd) that joins
    /// with `--initial-cluster-state existing`.
    async fn remove_and_add_back(&mut self) {
        let n = self.nodes.nodes.len();
        let (victim, target) = self.one_target().await;
        if self.nodes.nodes[victim].membership == Membership::Removed {
            return;
        }
        let endpoints = self.nodes.endpoints();
        let via = (victim + 1 + self.rng.below(n as u64 - 1) as usize) % n;
        let remove = || async {
            let mut status = MaintenanceClient::connect(endpoints[victim].clone())
                .await
                .map_err(|e| e.to_string())?;
            let id = status
                .status(StatusRequest {})
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner()
                .header
                .map_or(0, |h| h.member_id);
            let mut cluster = ClusterClient::connect(endpoints[via].clone())
                .await
                .map_err(|e| e.to_string())?;
            cluster
                .member_remove(MemberRemoveRequest { id })
                .await
                .map_err(|e| e.message().to_string())?;
            Ok::<u64, String>(id)
        };
        // A cluster still settling from the last fault refuses (etcd's strict reconfiguration
        // check wants every voter connected for a while): ask again for some seconds.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match tokio::time::timeout(Duration::from_secs(5), remove()).await {
                Ok(Ok(id)) => {
                    self.event(&format!("member removed {id:x}"), &[victim], target);
                    break;
                }
                Ok(Err(err)) if attempt < 20 && err.contains("unhealthy cluster") => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(Err(err)) => {
                    return self.event(&format!("member remove refused: {err}"), &[victim], target)
                }
                Err(_) => {
                    // It may still happen: the node's fate is unknown, so it is left as it is.
                    return self.event("member remove timed out", &[victim], target);
                }
            }
        }
        self.nodes.nodes[victim].membership = Membership::Removed;
        // A removed member stops by itself; one that has not within a while is stopped.
        let stopped_by_itself = {
            let mut waited = Duration::ZERO;
            loop {
                if self.nodes.exited(victim).is_some() {
                    break true;
                }
                if waited > Duration::from_secs(10) {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                waited += Duration::from_millis(200);
            }
        };
        if !stopped_by_itself {
            self.event(
                "removed member still running after 10 s: killed",
                &[victim],
                target,
            );
        }
        self.nodes.kill(victim);
        let data = self.nodes.data_dir(victim);
        let _ = std::fs::remove_dir_all(&data);
        let away = self.millis(2000, 5000);
        tokio::time::sleep(away).await;
        self.add_back(victim, target).await;
    }

    /// Adds node `victim` back as a new member and starts it; retried for a while, since a
    /// cluster still settling refuses changes (etcd's strict reconfiguration check).
    async fn add_back(&mut self, victim: usize, target: &str) {
        let peer_url = self.nodes.nodes[victim].address.advertise_peer.clone();
        let endpoints = self.nodes.endpoints();
        let mut last_error = String::new();
        for attempt in 0..20 {
            let via = (victim + 1 + attempt) % endpoints.len();
            if via == victim {
                continue;
            }
            let added = async {
                let mut cluster = ClusterClient::connect(endpoints[via].clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let response = cluster
                    .member_add(MemberAddRequest {
                        peer_ur_ls: vec![peer_url.clone()],
                        is_learner: false,
                    })
                    .await
                    .map_err(|e| e.message().to_string())?
                    .into_inner();
                Ok::<_, String>(response)
            };
            match tokio::time::timeout(Duration::from_secs(5), added).await {
                Ok(Ok(response)) => {
                    let new_id = response.member.as_ref().map_or(0, |m| m.id);
                    let name = self.nodes.nodes[victim].name.clone();
                    let initial_cluster = response
                        .members
                        .iter()
                        .flat_map(|member| {
                            let name = if member.id == new_id {
                                name.clone()
                            } else {
                                member.name.clone()
                            };
                            member
                                .peer_ur_ls
                                .iter()
                                .map(move |url| format!("{name}={url}"))
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    self.event(&format!("member added {new_id:x}"), &[victim], target);
                    self.nodes.nodes[victim].membership = Membership::Joined(initial_cluster);
                    if let Err(err) = self.nodes.spawn(victim) {
                        self.event(&format!("restart failed: {err}"), &[victim], target);
                    }
                    return;
                }
                Ok(Err(err)) => last_error = err,
                Err(_) => last_error = "timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.event(
            &format!("member add failed: {last_error}"),
            &[victim],
            target,
        );
    }

    /// Ends every fault still in force: heals the network, resumes and restarts nodes.
    fn heal_all(&mut self) {
        let _ = self.net.set(&Grudge::default());
        for i in 0..self.nodes.nodes.len() {
            if self.nodes.is_paused(i) {
                self.nodes.pause(i, false);
            }
            if self.nodes.nodes[i].membership == Membership::Removed {
                continue;
            }
            if self.nodes.exited(i).is_some() || !self.nodes.nodes[i].is_running() {
                self.event("restart", &[i], "final");
                let _ = self.nodes.spawn(i);
            }
        }
    }
}
