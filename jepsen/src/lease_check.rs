//! The lease workload's checker (history format in [`crate::lease`]).
//!
//! A lease granted with TTL t and renewed by a keepalive called at time c is alive at least
//! until c + t: the renewal took effect after c, on the leader's monotonic clock, which runs
//! at the harness's rate (unless the clock nemesis skews it: then this check documents what
//! leases assume). The findings:
//! - vanished-while-alive: a read that began after the key's put returned and ended before
//!   its lease's guaranteed life ran out (and before any revoke was asked for) lacks the key;
//! - revoked-but-readable: a read that began after a revoke of the key's lease returned holds
//!   the key;
//! - expired-but-readable: a read that began after a keepalive was told the lease was gone
//!   (TTL 0) holds the key;
//! - outlived-lease: a read holds the key more than [`EXPIRY_SLACK_NS`] after its lease's last
//!   possible renewal ran out, not counting the time the cluster served no one (the lease
//!   never expired, or its keys were not deleted);
//! - unexpected: a read holds a key no put wrote, or under another lease.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::client::OP_TIMEOUT;

/// How long past its last possible renewal a lease's key may stay readable: the leader's
/// expiry scan, a leader change (the new leader keeps the time left plus a grace of an
/// election timeout and a checkpoint interval), and faults that stall the revoke's commit
/// (a paused leader, a killed majority) all fit inside it. No lease expires while there is
/// no leader: in a 30-minute 5-node run a majority was killed twice within 20 s, each
/// restart took 9 s (a key space of a million revisions is indexed at start-up), and a
/// lease whose last renewal ran out at 589 s was revoked at about 606 s, 2 s after the
/// leader that followed took over (15 s was too tight). An outlived lease is late, not
/// unsafe (etcd sets no bound at all: it hands every lease a fresh TTL on a leader
/// change); the check is for a lease that never expires.
pub const EXPIRY_SLACK_NS: u64 = 30_000_000_000;

/// A span this long with no successful operation of the workload's ten clients (each op has
/// a 1 s timeout and they are issued back to back) is taken as a time without a leader, and
/// no lease expires without one: the time does not count against a lease. In a 30-minute run
/// three of four members restarted at once, each start-up took 30 s, and nothing was served
/// for 36 s; a lease whose last renewal ran out during it was revoked soon after.
pub const OUTAGE_GAP_NS: u64 = 2 * OP_TIMEOUT.as_nanos() as u64;

#[derive(Debug, thiserror::Error)]
pub enum LeaseHistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

#[derive(Deserialize)]
struct RawOp {
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    ok: bool,
    op: String,
    lease: Option<i64>,
    ttl: Option<i64>,
    key: Option<String>,
    #[serde(default)]
    value: Value,
}

/// What happened to one lease.
#[derive(Debug, Default, Clone)]
struct LeaseLife {
    /// Its key can be relied on up to this time (ns).
    alive_until: u64,
    /// Its key can be readable up to this time (ns) at the latest.
    readable_until: u64,
    /// The earliest call of a revoke (any outcome): no promise of life after it.
    revoke_called: Option<u64>,
    /// When a revoke was acknowledged (line).
    revoked: Option<(u64, usize)>,
    /// When a keepalive was told the lease was gone (line).
    gone: Option<(u64, usize)>,
}

#[derive(Debug, Clone)]
struct Put {
    key: String,
    lease: i64,
    ret: Option<u64>,
    line: usize,
}

#[derive(Debug, Clone)]
struct Read {
    call: u64,
    ret: u64,
    pairs: Vec<(String, i64)>,
    line: usize,
}

/// A parsed lease history.
#[derive(Debug, Default)]
pub struct LeaseHistory {
    leases: HashMap<i64, LeaseLife>,
    puts: Vec<Put>,
    reads: Vec<Read>,
    /// Spans (ns, from..to) in which no operation succeeded, longer than [`OUTAGE_GAP_NS`].
    outages: Vec<(u64, u64)>,
}

/// The gaps longer than [`OUTAGE_GAP_NS`] between the returns of successful operations.
fn outages(mut served: Vec<u64>) -> Vec<(u64, u64)> {
    served.sort_unstable();
    served
        .windows(2)
        .filter(|pair| pair[1] - pair[0] > OUTAGE_GAP_NS)
        .map(|pair| (pair[0], pair[1]))
        .collect()
}

fn seconds(ttl: i64) -> u64 {
    ttl.max(0) as u64 * 1_000_000_000
}

pub fn parse(text: &str) -> Result<LeaseHistory, LeaseHistoryError> {
    let mut history = LeaseHistory::default();
    let mut served = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| LeaseHistoryError::Line {
            line: number,
            reason: reason.to_string(),
        };
        let raw: RawOp = serde_json::from_str(line).map_err(|err| bad(&err.to_string()))?;
        let lease = || raw.lease.ok_or_else(|| bad("missing lease"));
        if let (true, Some(ret)) = (raw.ok, raw.ret) {
            served.push(ret);
        }
        match raw.op.as_str() {
            "grant" if raw.ok => {
                let life = history.leases.entry(lease()?).or_default();
                let ttl = seconds(raw.ttl.ok_or_else(|| bad("a grant needs its ttl"))?);
                life.alive_until = life.alive_until.max(raw.call + ttl);
                let ret = raw
                    .ret
                    .ok_or_else(|| bad("a successful grant needs its return"))?;
                life.readable_until = life.readable_until.max(ret + ttl);
            }
            "grant" => {}
            "put" => history.puts.push(Put {
                key: raw.key.clone().ok_or_else(|| bad("a put needs its key"))?,
                lease: lease()?,
                ret: raw.ret.filter(|_| raw.ok),
                line: number,
            }),
            "keepalive" => {
                let life = history.leases.entry(lease()?).or_default();
                match (raw.ret, raw.ttl) {
                    (Some(ret), Some(ttl)) if raw.ok && ttl > 0 => {
                        life.alive_until = life.alive_until.max(raw.call + seconds(ttl));
                        life.readable_until = life.readable_until.max(ret + seconds(ttl));
                    }
                    (Some(ret), Some(_)) if raw.ok => {
                        if life.gone.is_none_or(|(at, _)| ret < at) {
                            life.gone = Some((ret, number));
                        }
                    }
                    // Unknown: it may have renewed the lease as late as its timeout.
                    _ => {
                        let latest = raw.call + OP_TIMEOUT.as_nanos() as u64;
                        let ttl = seconds(crate::lease::TTL_SECONDS);
                        life.readable_until = life.readable_until.max(latest + ttl);
                    }
                }
            }
            "revoke" => {
                let life = history.leases.entry(lease()?).or_default();
                life.revoke_called = Some(life.revoke_called.map_or(raw.call, |c| c.min(raw.call)));
                if let (true, Some(ret)) = (raw.ok, raw.ret) {
                    if life.revoked.is_none_or(|(at, _)| ret < at) {
                        life.revoked = Some((ret, number));
                    }
                }
            }
            "read" if raw.ok => {
                let pairs = raw
                    .value
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|pair| {
                                Some((pair.get(0)?.as_str()?.to_string(), pair.get(1)?.as_i64()?))
                            })
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| bad("a read's value must be a list of [key, lease] pairs"))?;
                history.reads.push(Read {
                    call: raw.call,
                    ret: raw
                        .ret
                        .ok_or_else(|| bad("a successful read needs its return"))?,
                    pairs,
                    line: number,
                });
            }
            "read" => {}
            other => return Err(bad(&format!("unknown op {other:?}"))),
        }
    }
    history.reads.sort_by_key(|read| read.call);
    history.outages = outages(served);
    Ok(history)
}

/// The checker's findings: each kind with its count and first example.
#[derive(Debug, Default)]
pub struct LeaseVerdict {
    pub leases: usize,
    pub reads: usize,
    pub anomalies: BTreeMap<&'static str, (usize, String)>,
}

/// Findings that are not anomalies: they show an assumption the store makes.
const ASSUMPTIONS: [&str; 1] = ["vanished-under-fast-clock"];

impl LeaseVerdict {
    pub fn valid(&self) -> bool {
        self.anomalies.keys().all(|kind| ASSUMPTIONS.contains(kind))
    }

    /// The assumptions shown at work, if any (for the summary of a valid run).
    pub fn assumptions(&self) -> Option<String> {
        let shown: Vec<String> = self
            .anomalies
            .iter()
            .filter(|(kind, _)| ASSUMPTIONS.contains(kind))
            .map(|(kind, (count, first))| format!("{kind} ({count}): {first}"))
            .collect();
        (!shown.is_empty()).then(|| shown.join("; "))
    }

    pub fn explain(&self) -> Option<String> {
        (!self.valid()).then(|| {
            self.anomalies
                .iter()
                .filter(|(kind, _)| !ASSUMPTIONS.contains(kind))
                .map(|(kind, (count, first))| format!("{kind} ({count}): {first}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn note(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        self.anomalies
            .entry(kind)
            .or_insert_with(|| (0, example()))
            .0 += 1;
    }
}

/// When some node's clock ran fast, from the nemesis timeline (`clock rate xR` with R > 1
/// until `clock over`), each span stretched by a lease's TTL and the expiry slack, within
/// which a fast leader's early expiries show.
pub fn fast_clock_windows(timeline: &str) -> Vec<(u64, u64)> {
    let stretch = seconds(crate::lease::TTL_SECONDS) + EXPIRY_SLACK_NS;
    let mut windows = Vec::new();
    let mut open: Option<u64> = None;
    for event in timeline
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let (Some(time), Some(action)) = (
            event.get("time").and_then(Value::as_u64),
            event.get("action").and_then(Value::as_str),
        ) else {
            continue;
        };
        if let Some(rate) = action.strip_prefix("clock rate x") {
            if rate.parse::<f64>().is_ok_and(|rate| rate > 1.0) {
                open = Some(time);
            }
        } else if action.starts_with("clock over") {
            if let Some(from) = open.take() {
                windows.push((from, time + stretch));
            }
        }
    }
    if let Some(from) = open {
        windows.push((from, u64::MAX));
    }
    windows
}

/// The time without service that postponed the lease's expiry: outages from a TTL before
/// its last possible expiry (a leader lost then hands the lease on with up to a TTL left)
/// that began before the deadline as postponed so far. An outage after the lease should
/// already have been revoked excuses nothing.
fn outage_allowance(history: &LeaseHistory, life: &LeaseLife) -> u64 {
    let ttl = seconds(crate::lease::TTL_SECONDS);
    let from = life.readable_until.saturating_sub(ttl);
    let mut deadline = life.readable_until + EXPIRY_SLACK_NS;
    let mut allowance = 0;
    for &(start, end) in &history.outages {
        if start >= deadline {
            break;
        }
        let counted = end.saturating_sub(start.max(from));
        allowance += counted;
        deadline += counted;
    }
    allowance
}

fn outlived(history: &LeaseHistory, life: &LeaseLife, read_call: u64) -> bool {
    let deadline = life.readable_until + EXPIRY_SLACK_NS;
    deadline < read_call && deadline + outage_allowance(history, life) < read_call
}

/// Checks `history` strictly.
pub fn check(history: &LeaseHistory) -> LeaseVerdict {
    check_with_fast_clocks(history, &[])
}

/// Checks `history`, knowing when (ns, from..to) some node's clock ran fast (the clock
/// nemesis). Leases, etcd's and Cairn's, assume every member's clock runs at the real rate:
/// a leader whose clock runs fast expires leases early, and no store without an outside time
/// source can tell. A key that vanished early while a clock ran fast is reported as
/// `vanished-under-fast-clock`, which shows the assumption at work and is not counted as
/// an anomaly; everything else is checked as strictly as ever.
pub fn check_with_fast_clocks(history: &LeaseHistory, fast_clocks: &[(u64, u64)]) -> LeaseVerdict {
    let mut verdict = LeaseVerdict {
        leases: history.leases.len(),
        reads: history.reads.len(),
        ..Default::default()
    };
    let puts: HashMap<&str, &Put> = history
        .puts
        .iter()
        .map(|put| (put.key.as_str(), put))
        .collect();
    let no_life = LeaseLife::default();
    // What reads held.
    for read in &history.reads {
        for (key, lease) in &read.pairs {
            let Some(put) = puts.get(key.as_str()).filter(|put| put.lease == *lease) else {
                verdict.note("unexpected", || {
                    format!("the read at line {} holds {key:?} under lease {lease:x}, which no put wrote", read.line)
                });
                continue;
            };
            let life = history.leases.get(&put.lease).unwrap_or(&no_life);
            if let Some((at, line)) = life.revoked.filter(|&(at, _)| at < read.call) {
                verdict.note("revoked-but-readable", || {
                    format!("lease {lease:x}'s revoke (line {line}) returned at {at} ns, but the read at line {} (called at {} ns) holds its key {key:?}", read.line, read.call)
                });
            } else if let Some((at, line)) = life.gone.filter(|&(at, _)| at < read.call) {
                verdict.note("expired-but-readable", || {
                    format!("a keepalive of lease {lease:x} (line {line}) was told at {at} ns that it was gone, but the read at line {} (called at {} ns) holds its key {key:?}", read.line, read.call)
                });
            } else if outlived(history, life, read.call) {
                verdict.note("outlived-lease", || {
                    format!("lease {lease:x} could last at most until {} ns (plus {} s in which nothing was served), but the read at line {} (called at {} ns, {} s later) holds its key {key:?}",
                        life.readable_until, outage_allowance(history, life) / 1_000_000_000, read.line, read.call, (read.call - life.readable_until) / 1_000_000_000)
                });
            }
        }
    }
    // What reads had to hold.
    for put in &history.puts {
        let Some(put_ret) = put.ret else { continue };
        let life = history.leases.get(&put.lease).unwrap_or(&no_life);
        let mut must_end = life.alive_until;
        for end in [life.revoke_called, life.gone.map(|(at, _)| at)]
            .into_iter()
            .flatten()
        {
            must_end = must_end.min(end);
        }
        let first = history.reads.partition_point(|read| read.call <= put_ret);
        for read in history.reads[first..]
            .iter()
            .take_while(|read| read.call < must_end)
        {
            if read.ret < must_end && !read.pairs.iter().any(|(key, _)| *key == put.key) {
                let skewed = fast_clocks
                    .iter()
                    .any(|&(from, to)| read.ret >= from && read.call <= to);
                let kind = if skewed {
                    // Not counted as an anomaly: see `fast_clocks`.
                    "vanished-under-fast-clock"
                } else {
                    "vanished-while-alive"
                };
                verdict.note(kind, || {
                    format!("{:?} (put at line {}, returned at {put_ret} ns) is missing from the read at line {} ({}..{} ns) while lease {:x} was alive until at least {must_end} ns",
                        put.key, put.line, read.line, read.call, read.ret, put.lease)
                });
            }
        }
    }
    verdict
}
