//! One test run: a cluster of real nodes, the register workload's clients, the kill nemesis,
//! and the run's folder: `history.jsonl` (the register history), `nemesis.jsonl` (what the
//! nemesis did, when), one log per node, and `summary.txt` (the verdict and the first anomaly).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::history;
use crate::linearizable::{self, Verdict};
use crate::nodes::{NodeError, Nodes};
use crate::register::{Planned, RegisterClient};

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cairn_bin: PathBuf,
    pub nodes: usize,
    pub clients: u64,
    pub keys: u64,
    pub time_limit: Duration,
    pub out: PathBuf,
    /// Kill -9 a random node now and then (and restart it).
    pub kill: bool,
    pub seed: u64,
}

/// Why a run could not be carried out (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Nodes(#[from] NodeError),
    #[error("the cluster never served a write within {0:?}")]
    NeverReady(Duration),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading back the history: {0}")]
    History(#[from] history::HistoryError),
}

/// A small deterministic generator (the run prints its seed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
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

/// Runs the test and checks its history.
pub async fn run(config: &RunConfig) -> Result<Verdict, RunError> {
    std::fs::create_dir_all(&config.out).map_err(|source| RunError::Write {
        path: config.out.clone(),
        source,
    })?;
    let nodes = Nodes::start(&config.cairn_bin, config.nodes, &config.out)?;
    let endpoints = nodes.endpoints();
    let origin = Instant::now();
    wait_ready(&endpoints, origin).await?;
    let deadline = Instant::now() + config.time_limit;
    let history = Arc::new(HistoryLog::default());

    let mut workers = Vec::new();
    for id in 1..=config.clients {
        let endpoints = endpoints.clone();
        let history = Arc::clone(&history);
        let keys = config.keys;
        let mut rng = Rng(config.seed ^ (id.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
        workers.push(tokio::spawn(async move {
            let mut client = RegisterClient::new(id, endpoints);
            let mut written = 0i64;
            // What this client last saw in each key: its compare-and-sets expect that, so
            // many of them succeed (and race each other).
            let mut last_seen: std::collections::HashMap<String, i64> = Default::default();
            while Instant::now() < deadline {
                let key = format!("r{}", rng.below(keys));
                let op = match rng.below(3) {
                    0 => Planned::Read,
                    1 => {
                        written += 1;
                        Planned::Write(id as i64 * 1_000_000 + written)
                    }
                    _ => {
                        written += 1;
                        let expected = last_seen.get(&key).copied().unwrap_or(0);
                        Planned::Cas(expected, id as i64 * 1_000_000 + written)
                    }
                };
                let call = origin.elapsed().as_nanos() as u64;
                let outcome = client.invoke(&key, &op, origin).await;
                if outcome.ret.is_some() && outcome.ok {
                    let now_holds = match op {
                        Planned::Read => outcome.value.as_i64(),
                        Planned::Write(v) | Planned::Cas(_, v) => Some(v),
                    };
                    if let Some(v) = now_holds {
                        last_seen.insert(key.clone(), v);
                    }
                }
                let name = match op {
                    Planned::Read => "read",
                    Planned::Write(_) => "write",
                    Planned::Cas(..) => "cas",
                };
                history.push(
                    json!({
                        "client": id, "call": call, "return": outcome.ret, "op": name,
                        "key": key, "value": outcome.value, "ok": outcome.ok,
                    })
                    .to_string(),
                );
            }
        }));
    }

    let nemesis_log = nemesis(nodes, config, deadline, origin).await;
    for worker in workers {
        let _ = worker.await;
    }
    write(&config.out.join("nemesis.jsonl"), &nemesis_log)?;
    let lines = history.take();
    write(
        &config.out.join("history.jsonl"),
        &(lines.join("\n") + "\n"),
    )?;
    let ops = history::parse(&lines.join("\n"))?;
    let verdict = linearizable::check(&ops);
    let indeterminate = ops.iter().filter(|op| op.ret.is_none()).count();
    let summary = format!(
        "workload register, nemesis {}, {} nodes, {} clients, {} keys, {:?}, seed {}\n\
         {} operations ({indeterminate} indeterminate)\nregister: {}\n",
        if config.kill { "kill" } else { "none" },
        config.nodes,
        config.clients,
        config.keys,
        config.time_limit,
        config.seed,
        ops.len(),
        match verdict.explain() {
            None => "valid (linearizable)".to_string(),
            Some(why) if verdict.anomalous() => format!("INVALID: {why}"),
            Some(why) => format!("UNKNOWN: {why}"),
        },
    );
    write(&config.out.join("summary.txt"), &summary)?;
    print!("{summary}");
    Ok(verdict)
}

/// Kills a random node every few seconds and restarts it a little later, until `deadline`;
/// then restarts every node it left down. Returns its timeline as JSON lines.
async fn nemesis(
    mut nodes: Nodes,
    config: &RunConfig,
    deadline: Instant,
    origin: Instant,
) -> String {
    let mut rng = Rng(config.seed | 1);
    let mut timeline = Vec::new();
    let event = |action: &str, node: usize, timeline: &mut Vec<String>| {
        timeline.push(
            json!({"time": origin.elapsed().as_nanos() as u64, "action": action, "node": format!("n{node}")})
                .to_string(),
        );
    };
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
        if !config.kill || Instant::now() >= deadline {
            continue;
        }
        let victim = rng.below(config.nodes as u64) as usize;
        event("kill", victim, &mut timeline);
        nodes.kill(victim);
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(2000))).await;
        event("restart", victim, &mut timeline);
        if let Err(err) = nodes.spawn(victim) {
            event(&format!("restart failed: {err}"), victim, &mut timeline);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = nodes.exited(victim) {
            event(
                &format!("exited after its restart: {status}"),
                victim,
                &mut timeline,
            );
        }
    }
    // Keep the nodes up until the clients' last operations end.
    tokio::time::sleep(crate::register::OP_TIMEOUT).await;
    drop(nodes);
    timeline.join("\n") + "\n"
}

/// The history as clients complete operations: one JSON line each.
#[derive(Default)]
struct HistoryLog(std::sync::Mutex<Vec<String>>);

impl HistoryLog {
    fn push(&self, line: String) {
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
