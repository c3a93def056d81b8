//! The lock workload's history format and checker (the clients are [`crate::lock`]'s).
//!
//! # History
//! JSON lines, one per operation, each with `client`, `call` and `return` (ns since the run's
//! origin; a null `return` means the outcome is unknown), `ok` and `op`:
//!
//! | `op` | fields | meaning |
//! |---|---|---|
//! | `acquire` | `key`, `lease`, `token` | ok: the client believes it holds the lock from `return` on, with `token` (its key's create revision). Not ok with a `return`: it gave up waiting (session lost, an error, the run's end). `return` null: creating its key timed out (`token` null). |
//! | `fenced-write` | `token`, `entry`, `fence` (rejections only) | `entry` is `token:client:seq`, unique in the run. ok: committed. Not ok with a `return`: certainly not applied (the compare refused it: `fence` is the fence it met; or the read before it failed). `return` null: unknown. |
//! | `hold` | `token`, `from`, `to`, `end` | The bare hold: from the acquire's return to the start of the release, or to the moment the client gave up (`end`: `released`, `session-lost`, `fenced-out`, `error`). A note, not a call: `call` and `return` are both `to`. |
//! | `release` | `token`, `key`, `revoked` | Deleting the key (ok), then revoking the lease (`revoked`). |
//! | `final` | `value`, `fence` | Client 0, after the faults: the guarded list's entries in order, and the fence key's raw value (null: none). |
//!
//! # Findings
//! Anomalies, judged against the last `final` read:
//! - `fence-violated`: a token in the guarded list is smaller than the one before it, so a
//!   write from an older holder landed after a newer holder's: two holders' writes
//!   interleaved although every write compared the fence;
//! - `lost-fenced-write`: an acknowledged fenced write's entry is missing;
//! - `phantom-write`: an entry no client attempted;
//! - `rejected-write-landed`: the entry of a write that was certainly not applied is there;
//! - `duplicate-entry`: an entry is there twice (a write applied twice);
//! - `duplicate-token`: two clients acquired the lock with the same token (two keys with one
//!   create revision).
//!
//! Documented, not an anomaly: `bare-holds-overlap`, two clients' bare holds overlapped in
//! real time. A lock built on a lease is a belief that can outlive the lease (a stalled
//! holder, keepalives that stop reaching the leader), so etcd's locks alone do not give
//! mutual exclusion under faults, as Jepsen found; the fenced writes are what keep the
//! resource safe, and the anomalies above are what would show them failing.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum LockHistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

#[derive(Deserialize)]
struct RawOp {
    client: u64,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    ok: bool,
    op: String,
    token: Option<i64>,
    entry: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    end: Option<String>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    fence: Value,
}

/// A successful acquisition.
#[derive(Debug, Clone)]
pub struct Acquisition {
    pub client: u64,
    pub token: i64,
    pub ret: u64,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Committed,
    /// Certainly not applied.
    NotApplied,
    Unknown,
}

#[derive(Debug, Clone)]
pub struct FencedWrite {
    pub client: u64,
    pub token: i64,
    pub entry: String,
    pub outcome: WriteOutcome,
    pub line: usize,
}

/// A bare hold: when the client believed it held the lock.
#[derive(Debug, Clone)]
pub struct Hold {
    pub client: u64,
    pub token: i64,
    pub from: u64,
    pub to: u64,
    pub end: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct FinalRead {
    pub call: u64,
    pub entries: Vec<String>,
    pub fence: Option<String>,
    pub line: usize,
}

/// A parsed lock history.
#[derive(Debug, Default)]
pub struct LockHistory {
    pub acquisitions: Vec<Acquisition>,
    /// Acquires that gave up or whose outcome is unknown.
    pub failed_acquisitions: usize,
    pub writes: Vec<FencedWrite>,
    pub holds: Vec<Hold>,
    pub releases: usize,
    pub finals: Vec<FinalRead>,
}

/// The token of an entry `token:client:seq` (None: not of that form).
pub fn entry_token(entry: &str) -> Option<i64> {
    let mut parts = entry.split(':');
    let token = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some(token)
}

pub fn parse(text: &str) -> Result<LockHistory, LockHistoryError> {
    let mut history = LockHistory::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| LockHistoryError::Line {
            line: number,
            reason,
        };
        let raw: RawOp = serde_json::from_str(line).map_err(|err| bad(err.to_string()))?;
        let token = || {
            raw.token
                .ok_or_else(|| bad(format!("a {} needs its token", raw.op)))
        };
        let ret = || {
            raw.ret
                .ok_or_else(|| bad(format!("a successful {} needs its return", raw.op)))
        };
        match raw.op.as_str() {
            "acquire" if raw.ok => history.acquisitions.push(Acquisition {
                client: raw.client,
                token: token()?,
                ret: ret()?,
                line: number,
            }),
            "acquire" => history.failed_acquisitions += 1,
            "fenced-write" => {
                let entry = raw
                    .entry
                    .clone()
                    .ok_or_else(|| bad("a fenced-write needs its entry".into()))?;
                let token = token()?;
                if entry_token(&entry) != Some(token) {
                    return Err(bad(format!(
                        "entry {entry:?} is not of the form {token}:client:seq"
                    )));
                }
                let outcome = match (raw.ok, raw.ret) {
                    (true, _) => {
                        ret()?;
                        WriteOutcome::Committed
                    }
                    (false, Some(_)) => WriteOutcome::NotApplied,
                    (false, None) => WriteOutcome::Unknown,
                };
                history.writes.push(FencedWrite {
                    client: raw.client,
                    token,
                    entry,
                    outcome,
                    line: number,
                });
            }
            "hold" => {
                let (Some(from), Some(to)) = (raw.from, raw.to) else {
                    return Err(bad("a hold needs its from and to".into()));
                };
                if to < from {
                    return Err(bad(format!(
                        "a hold that ends ({to}) before it begins ({from})"
                    )));
                }
                history.holds.push(Hold {
                    client: raw.client,
                    token: token()?,
                    from,
                    to,
                    end: raw.end.clone().unwrap_or_default(),
                    line: number,
                });
            }
            "release" => history.releases += 1,
            "final" if raw.ok => {
                let entries = raw
                    .value
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|item| item.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "a final read's value must be a list of entries, not {}",
                            raw.value
                        ))
                    })?;
                history.finals.push(FinalRead {
                    call: raw.call,
                    entries,
                    fence: raw.fence.as_str().map(str::to_string),
                    line: number,
                });
            }
            "final" => {}
            other => {
                return Err(bad(format!(
                    "unknown op {other:?} (acquire, fenced-write, hold, release or final)"
                )))
            }
        }
    }
    Ok(history)
}

/// Findings that are not anomalies: they document what a lease-based lock does not promise.
pub const DOCUMENTED: [&str; 1] = ["bare-holds-overlap"];

/// The checker's findings: each kind with its count and first example.
#[derive(Debug, Default)]
pub struct LockVerdict {
    pub acquisitions: usize,
    pub failed_acquisitions: usize,
    pub committed_writes: usize,
    pub rejected_writes: usize,
    pub unknown_writes: usize,
    pub holds: usize,
    /// The final list's length (None: no final read, so lost and phantom writes were not
    /// checked).
    pub final_entries: Option<usize>,
    /// Kind → (count, first example), anomalies and documented findings alike.
    pub findings: BTreeMap<&'static str, (usize, String)>,
}

impl LockVerdict {
    pub fn valid(&self) -> bool {
        self.findings.keys().all(|kind| DOCUMENTED.contains(kind))
    }

    pub fn no_final_read(&self) -> bool {
        self.final_entries.is_none()
    }

    fn describe(&self, documented: bool) -> Option<String> {
        let shown: Vec<String> = self
            .findings
            .iter()
            .filter(|(kind, _)| DOCUMENTED.contains(kind) == documented)
            .map(|(kind, (count, first))| format!("{kind} ({count}): {first}"))
            .collect();
        (!shown.is_empty()).then(|| shown.join("; "))
    }

    /// The anomalies, if any.
    pub fn explain(&self) -> Option<String> {
        self.describe(false)
    }

    /// The documented findings (not anomalies), if any.
    pub fn documented_findings(&self) -> Option<String> {
        self.describe(true)
    }

    /// One line for the summary, the documented findings included.
    pub fn counts(&self) -> String {
        let mut line = format!(
            "{} acquisitions ({} failed or unknown), {} holds, fenced writes: {} committed, \
             {} rejected, {} unknown; ",
            self.acquisitions,
            self.failed_acquisitions,
            self.holds,
            self.committed_writes,
            self.rejected_writes,
            self.unknown_writes,
        );
        match self.final_entries {
            Some(entries) => line.push_str(&format!("final list of {entries} entries")),
            None => line.push_str("no final read"),
        }
        if let Some(documented) = self.documented_findings() {
            line.push_str(&format!(
                "; a lease-based lock alone did not exclude (fencing is what protects the \
                 resource; not an anomaly): {documented}"
            ));
        }
        line
    }

    fn note(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        self.findings
            .entry(kind)
            .or_insert_with(|| (0, example()))
            .0 += 1;
    }
}

fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

pub fn check(history: &LockHistory) -> LockVerdict {
    let count = |outcome| {
        history
            .writes
            .iter()
            .filter(|write| write.outcome == outcome)
            .count()
    };
    let mut verdict = LockVerdict {
        acquisitions: history.acquisitions.len(),
        failed_acquisitions: history.failed_acquisitions,
        committed_writes: count(WriteOutcome::Committed),
        rejected_writes: count(WriteOutcome::NotApplied),
        unknown_writes: count(WriteOutcome::Unknown),
        holds: history.holds.len(),
        ..Default::default()
    };
    check_tokens(history, &mut verdict);
    if let Some(last) = history.finals.iter().max_by_key(|read| read.call) {
        verdict.final_entries = Some(last.entries.len());
        check_final(history, last, &mut verdict);
    }
    check_holds(history, &mut verdict);
    verdict
}

/// Tokens are create revisions of distinct keys, so no two clients share one.
fn check_tokens(history: &LockHistory, verdict: &mut LockVerdict) {
    let mut first_by_token: HashMap<i64, &Acquisition> = HashMap::new();
    for acquisition in &history.acquisitions {
        let first = *first_by_token
            .entry(acquisition.token)
            .or_insert(acquisition);
        if first.client != acquisition.client {
            verdict.note("duplicate-token", || {
                format!(
                    "clients {} (line {}) and {} (line {}) both acquired the lock with token {}",
                    first.client,
                    first.line,
                    acquisition.client,
                    acquisition.line,
                    acquisition.token
                )
            });
        }
    }
}

/// The final guarded list against the writes.
fn check_final(history: &LockHistory, last: &FinalRead, verdict: &mut LockVerdict) {
    let writes: HashMap<&str, &FencedWrite> = history
        .writes
        .iter()
        .map(|write| (write.entry.as_str(), write))
        .collect();
    let mut present: HashSet<&str> = HashSet::new();
    let mut previous: Option<(usize, &str, i64)> = None;
    for (position, entry) in last.entries.iter().enumerate() {
        if !present.insert(entry) {
            verdict.note("duplicate-entry", || {
                format!(
                    "{entry:?} is in the final list (line {}) more than once",
                    last.line
                )
            });
        }
        match writes.get(entry.as_str()) {
            None => verdict.note("phantom-write", || {
                format!(
                    "the final list (line {}) holds {entry:?} at position {position}, which no \
                     client attempted",
                    last.line
                )
            }),
            Some(write) if write.outcome == WriteOutcome::NotApplied => {
                verdict.note("rejected-write-landed", || {
                    format!(
                        "the write of {entry:?} (line {}) was refused or never sent, yet the \
                         final list (line {}) holds it",
                        write.line, last.line
                    )
                })
            }
            Some(_) => {}
        }
        let Some(token) = entry_token(entry) else {
            continue;
        };
        if let Some((before_position, before, before_token)) = previous {
            if token < before_token {
                verdict.note("fence-violated", || {
                    format!(
                        "in the final list (line {}), {entry:?} (position {position}, token \
                         {token}) comes after {before:?} (position {before_position}, token \
                         {before_token}): an older holder's write landed after a newer \
                         holder's",
                        last.line
                    )
                });
            }
        }
        previous = Some((position, entry, token));
    }
    for write in &history.writes {
        if write.outcome == WriteOutcome::Committed && !present.contains(write.entry.as_str()) {
            verdict.note("lost-fenced-write", || {
                format!(
                    "the fenced write of {:?} by client {} (line {}) was acknowledged but is \
                     missing from the final list (line {})",
                    write.entry, write.client, write.line, last.line
                )
            });
        }
    }
}

/// Pairs of different clients' bare holds that overlapped in real time.
fn check_holds(history: &LockHistory, verdict: &mut LockVerdict) {
    let mut holds: Vec<&Hold> = history.holds.iter().collect();
    holds.sort_by_key(|hold| (hold.from, hold.to));
    // Holds still open at the current hold's start; one client's holds never overlap each
    // other, so this stays about as small as the number of clients.
    let mut open: Vec<&Hold> = Vec::new();
    for hold in holds {
        open.retain(|earlier| earlier.to > hold.from);
        for earlier in open.iter().filter(|earlier| earlier.client != hold.client) {
            verdict.note("bare-holds-overlap", || {
                format!(
                    "client {} held token {} from {} to {} (line {}, ended {}), while client {} \
                     held token {} from {} to {} (line {}, ended {}): {} of overlap",
                    earlier.client,
                    earlier.token,
                    seconds(earlier.from),
                    seconds(earlier.to),
                    earlier.line,
                    earlier.end,
                    hold.client,
                    hold.token,
                    seconds(hold.from),
                    seconds(hold.to),
                    hold.line,
                    hold.end,
                    seconds(earlier.to.min(hold.to) - hold.from),
                )
            });
        }
        open.push(hold);
    }
}
