//! One test run: the run's network ([`crate::net`]) and nodes, every workload's clients at
//! once, the nemesis, and the run's folder: one history per workload (`register.jsonl`,
//! `append.jsonl`, `set.jsonl`, `watch.jsonl`, `lease.jsonl`, `lock.jsonl`), `nemesis.jsonl` (what the nemesis did, when), one log per node, plots,
//! and `summary.txt` (the verdict of every checker and the first anomaly each found).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::append::{self, AppendShared};
use crate::nemesis::{Fault, Nemesis};
use crate::net::{NetError, NetMode, Network};
use crate::nodes::{NodeError, Nodes};
use crate::register::{self, Planned, RegisterClient, OP_TIMEOUT};
use crate::set::{self, SetShared};
use crate::watch::{self, WatchShared};
use crate::{
    append_history, elle, history, lease_check, linearizable, lock_check, plot, set_check,
    watch_check,
};
use crate::{lease, lock};

/// A workload: what the clients do and which checker judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Register,
    Append,
    Set,
    Watch,
    Lease,
    Lock,
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(name: &str) -> Result<Workload, String> {
        match name {
            "register" => Ok(Workload::Register),
            "append" => Ok(Workload::Append),
            "set" => Ok(Workload::Set),
            "watch" => Ok(Workload::Watch),
            "lease" => Ok(Workload::Lease),
            "lock" => Ok(Workload::Lock),
            other => Err(format!(
                "unknown workload {other:?} (built: register, append, set, watch, lease, lock)"
            )),
        }
    }
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Append => "append",
            Workload::Set => "set",
            Workload::Watch => "watch",
            Workload::Lease => "lease",
            Workload::Lock => "lock",
        }
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cairn_bin: PathBuf,
    pub nodes: usize,
    /// Clients per workload.
    pub clients: u64,
    /// Keys of the register workload.
    pub keys: u64,
    pub time_limit: Duration,
    pub out: PathBuf,
    pub workloads: Vec<Workload>,
    pub faults: Vec<Fault>,
    pub net: NetMode,
    pub seed: u64,
}

/// Why a run could not be carried out (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Nodes(#[from] NodeError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the cluster never served a write within {0:?}")]
    NeverReady(Duration),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One checker's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Valid,
    Anomaly(String),
    /// The checker gave up, or the history could not be read back.
    Unknown(String),
}

/// Every checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct RunVerdict {
    pub judgements: Vec<(Workload, Judgement)>,
}

impl RunVerdict {
    pub fn valid(&self) -> bool {
        self.judgements
            .iter()
            .all(|(_, judgement)| *judgement == Judgement::Valid)
    }

    pub fn anomalous(&self) -> bool {
        self.judgements
            .iter()
            .any(|(_, judgement)| matches!(judgement, Judgement::Anomaly(_)))
    }
}

fn write(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Waits until some node takes a write.
async fn wait_ready(endpoints: &[String], started: Instant) -> Result<(), RunError> {
    const WITHIN: Duration = Duration::from_secs(30);
    let deadline = Instant::now() + WITHIN;
    let mut client = RegisterClient::new(0, endpoints.to_vec());
    while Instant::now() < deadline {
        if client
            .invoke("jepsen-ready", &Planned::Write(0), started)
            .await
            .ok
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(RunError::NeverReady(WITHIN))
}

/// A client's seed: distinct per workload and client, fixed by the run's seed.
fn client_seed(seed: u64, workload: usize, id: u64) -> u64 {
    seed ^ (id.wrapping_add(1000 * workload as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

static NODES_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the run's nodes and network are gone (its checks may still be running).
pub fn nodes_down() -> bool {
    NODES_DOWN.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs the test and checks its histories.
pub async fn run(config: &RunConfig) -> Result<RunVerdict, RunError> {
    std::fs::create_dir_all(&config.out).map_err(|source| RunError::Write {
        path: config.out.clone(),
        source,
    })?;
    let net = Network::build(config.net, config.nodes)?;
    let mode = net.mode;
    progress(Instant::now(), &format!("network: {}", net.describe()));
    let nodes = Nodes::start(&config.cairn_bin, &net.nodes, &config.out)?;
    let endpoints = nodes.endpoints();
    let mut nemesis = Nemesis::new(
        nodes,
        net,
        config.faults.clone(),
        config.seed,
        Instant::now(),
    );
    if !config.workloads.contains(&Workload::Watch) {
        nemesis.allow_compaction();
    }
    let origin = Instant::now();
    wait_ready(&endpoints, origin).await?;
    progress(origin, "cluster ready; the workloads and faults start");
    let deadline = Instant::now() + config.time_limit;
    let logs: Vec<Arc<HistoryLog>> = config
        .workloads
        .iter()
        .map(|_| Arc::new(HistoryLog::default()))
        .collect();
    let append_shared = Arc::new(AppendShared::default());
    let set_shared = Arc::new(SetShared::default());
    let watch_shared = Arc::new(WatchShared::default());

    let mut workers = Vec::new();
    for (w, workload) in config.workloads.iter().enumerate() {
        for id in 1..=config.clients {
            let endpoints = endpoints.clone();
            let history = Arc::clone(&logs[w]);
            let seed = client_seed(config.seed, w, id);
            workers.push(match workload {
                Workload::Register => tokio::spawn(register::worker(
                    id,
                    endpoints,
                    config.keys,
                    seed,
                    deadline,
                    origin,
                    history,
                )),
                Workload::Append => tokio::spawn(append::worker(
                    id,
                    endpoints,
                    Arc::clone(&append_shared),
                    seed,
                    deadline,
                    origin,
                    history,
                )),
                // Half the clients write, half watch.
                Workload::Watch if id % 2 == 0 => tokio::spawn(watch::writer(
                    id,
                    endpoints,
                    Arc::clone(&watch_shared),
                    seed,
                    deadline,
                    origin,
                    history,
                )),
                Workload::Watch => tokio::spawn(watch::watcher(
                    id,
                    endpoints,
                    Arc::clone(&watch_shared),
                    seed,
                    deadline,
                    origin,
                    history,
                )),
                Workload::Lock => {
                    tokio::spawn(lock::worker(id, endpoints, seed, deadline, origin, history))
                }
                Workload::Lease => tokio::spawn(lease::worker(
                    id, endpoints, seed, deadline, origin, history,
                )),
                Workload::Set => tokio::spawn(set::worker(
                    id,
                    endpoints,
                    Arc::clone(&set_shared),
                    seed,
                    deadline,
                    origin,
                    history,
                )),
            });
        }
    }

    let timeline = nemesis.run_until(deadline).await;
    progress(
        origin,
        "faults over; waiting for the clients' last operations",
    );
    for worker in workers {
        let _ = worker.await;
    }
    for (w, workload) in config.workloads.iter().enumerate() {
        progress(origin, &format!("final reads for {}", workload.name()));
        match workload {
            Workload::Append => {
                append::final_reads(&endpoints, &append_shared, origin, &logs[w]).await
            }
            Workload::Set => set::final_read(&endpoints, origin, &logs[w]).await,
            Workload::Watch => {
                watch::final_reference(&endpoints, &watch_shared, origin, &logs[w]).await
            }
            Workload::Lock => lock::final_read(&endpoints, origin, &logs[w]).await,
            Workload::Register | Workload::Lease => {}
        }
    }
    // Stops the nodes and takes the network down before the (possibly long) checks.
    drop(nemesis);
    NODES_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    write(&config.out.join("nemesis.jsonl"), &timeline)?;

    let mut verdict = RunVerdict::default();
    let mut summary = format!(
        "workloads {}; nemesis {}; {} nodes on {} network; {} clients per workload; \
         {:?}; seed {}\n",
        config
            .workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        if config.faults.is_empty() {
            "none".to_string()
        } else {
            config
                .faults
                .iter()
                .map(|f| format!("{f:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        },
        config.nodes,
        format!("{mode:?}").to_lowercase(),
        config.clients,
        config.time_limit,
        config.seed,
    );
    let mut points = Vec::new();
    for (w, workload) in config.workloads.iter().enumerate() {
        let lines = logs[w].take();
        progress(
            origin,
            &format!(
                "checking {} ({} history lines)",
                workload.name(),
                lines.len()
            ),
        );
        let text = lines.join("\n") + "\n";
        write(
            &config.out.join(format!("{}.jsonl", workload.name())),
            &text,
        )?;
        points.extend(plot::points(&text, w));
        let (counts, judgement) = judge(*workload, &text, &timeline);
        summary.push_str(&format!("{}: {counts}\n", workload.name()));
        summary.push_str(&format!(
            "{}: {}\n",
            workload.name(),
            match &judgement {
                Judgement::Valid => "valid".to_string(),
                Judgement::Anomaly(why) => format!("INVALID: {why}"),
                Judgement::Unknown(why) => format!("UNKNOWN: {why}"),
            }
        ));
        verdict.judgements.push((*workload, judgement));
    }
    let end_ns = origin.elapsed().as_nanos() as u64;
    let intervals = plot::intervals(&timeline, end_ns);
    let names: Vec<&str> = config.workloads.iter().map(|w| w.name()).collect();
    write(
        &config.out.join("latency.svg"),
        &plot::latency_svg(&points, &intervals, end_ns, OP_TIMEOUT.as_nanos() as u64),
    )?;
    write(
        &config.out.join("throughput.svg"),
        &plot::throughput_svg(&points, &names, &intervals, end_ns),
    )?;
    write(&config.out.join("summary.txt"), &summary)?;
    print!("{summary}");
    Ok(verdict)
}

/// Checks one workload's history: its counts line and the verdict. `timeline` is the
/// nemesis', if known (empty: judged as if no fault was injected).
pub fn judge(workload: Workload, text: &str, timeline: &str) -> (String, Judgement) {
    match workload {
        Workload::Register => {
            let ops = match history::parse(text) {
                Ok(ops) => ops,
                Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
            };
            let indeterminate = ops.iter().filter(|op| op.ret.is_none()).count();
            let counts = format!("{} operations ({indeterminate} indeterminate)", ops.len());
            let verdict = linearizable::check(&ops);
            let judgement = match verdict.explain() {
                None => Judgement::Valid,
                Some(why) if verdict.anomalous() => Judgement::Anomaly(why),
                Some(why) => Judgement::Unknown(why),
            };
            (counts, judgement)
        }
        Workload::Append => {
            let txns = match append_history::parse(text) {
                Ok(txns) => txns,
                Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
            };
            let indeterminate = txns.iter().filter(|t| t.ret.is_none()).count();
            let committed = txns.iter().filter(|t| t.ok).count();
            let counts = format!(
                "{} transactions ({committed} committed, {indeterminate} indeterminate)",
                txns.len()
            );
            let verdict = elle::check(&txns);
            let judgement = match verdict.explain() {
                None => Judgement::Valid,
                Some(why) if verdict.malformed.is_some() => Judgement::Unknown(why),
                Some(why) => Judgement::Anomaly(why),
            };
            (counts, judgement)
        }
        Workload::Watch => judge_watch(text),
        Workload::Lease => judge_lease(text, timeline),
        Workload::Lock => judge_lock(text),
        Workload::Set => {
            let history = match set_check::parse(text) {
                Ok(history) => history,
                Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
            };
            let indeterminate = history.adds.iter().filter(|a| a.ret.is_none()).count();
            let counts = format!(
                "{} adds ({indeterminate} indeterminate), {} reads",
                history.adds.len(),
                history.reads.len()
            );
            let verdict = set_check::check(&history);
            let judgement = match verdict.explain() {
                None if verdict.no_final_read => {
                    Judgement::Unknown("no final read of the whole set succeeded".into())
                }
                None => Judgement::Valid,
                Some(why) => Judgement::Anomaly(why),
            };
            (counts, judgement)
        }
    }
}

/// Checks the watch workload's history.
fn judge_watch(text: &str) -> (String, Judgement) {
    let history = match watch_check::parse(text) {
        Ok(history) => history,
        Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
    };
    let verdict = watch_check::check(&history);
    let judgement = match (verdict.explain(), &verdict.no_reference) {
        (Some(why), _) => Judgement::Anomaly(why),
        (None, Some(why)) => Judgement::Unknown(format!("no reference to check against: {why}")),
        (None, None) => Judgement::Valid,
    };
    (verdict.counts(), judgement)
}

/// Checks the lock workload's history.
fn judge_lock(text: &str) -> (String, Judgement) {
    let history = match lock_check::parse(text) {
        Ok(history) => history,
        Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
    };
    let verdict = lock_check::check(&history);
    let judgement = match verdict.explain() {
        Some(why) => Judgement::Anomaly(why),
        None if verdict.no_final_read() => {
            Judgement::Unknown("no final read of the guarded key succeeded".into())
        }
        None => Judgement::Valid,
    };
    (verdict.counts(), judgement)
}

/// Checks the lease workload's history, knowing from the nemesis `timeline` when a clock ran
/// fast (see [`lease_check::check_with_fast_clocks`]).
fn judge_lease(text: &str, timeline: &str) -> (String, Judgement) {
    let history = match lease_check::parse(text) {
        Ok(history) => history,
        Err(err) => return (String::new(), Judgement::Unknown(err.to_string())),
    };
    let fast_clocks = lease_check::fast_clock_windows(timeline);
    let verdict = lease_check::check_with_fast_clocks(&history, &fast_clocks);
    let mut counts = format!("{} leases, {} reads", verdict.leases, verdict.reads);
    if let Some(shown) = verdict.assumptions() {
        counts.push_str(&format!(
            "; the clock-rate assumption of leases shown at work (not an anomaly): {shown}"
        ));
    }
    let judgement = match verdict.explain() {
        None => Judgement::Valid,
        Some(why) => Judgement::Anomaly(why),
    };
    (counts, judgement)
}

/// One line on stderr saying what a long run is doing, and since when.
fn progress(origin: Instant, what: &str) {
    eprintln!(
        "cairn-jepsen: [{:.0} s] {what}",
        origin.elapsed().as_secs_f64()
    );
}

/// A workload's history as clients complete operations: one JSON line each.
#[derive(Default)]
pub struct HistoryLog(std::sync::Mutex<Vec<String>>);

impl HistoryLog {
    pub fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
}
