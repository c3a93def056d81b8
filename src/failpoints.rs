//! Test-only failpoints, compiled in only with the `failpoints` cargo feature (never in
//! release builds): named places in the server where a test can inject a delay or a crash,
//! chosen at start through `CAIRN_FAILPOINTS`, e.g.
//! `CAIRN_FAILPOINTS="wal-fsync=delay(1500);apply=crash"`.
//!
//! Places: `wal-fsync` and `wal-fsync-after` (before a Raft turn's entries are written and
//! fdatasync'ed to the WAL, and once that is done, before they count as persisted), `apply` (before applying a run of
//! committed entries), `follower-apply` (likewise, on a member that does not lead: a lagging
//! follower), `btree-commit` and `btree-commit-after` (around the B+tree commit of
//! an applied batch), `compaction` (before applying a compaction), `snapshot-send` (before
//! each chunk of a snapshot sent to a follower), `snapshot-install` (before a received
//! snapshot replaces the key space), `lease-expiry-propose` (before the leader proposes an
//! expired lease's revoke), `peer-partition` (every Raft message sent or received,
//! and every peer handshake), `follower-local-reads` (a follower answers linearizable reads
//! from its own copy: the bug a consistency checker must catch). Actions: `delay(<ms>)`
//! sleeps the calling thread, `crash` aborts the process (as a kill -9 would, without
//! unwinding), `crash-after(<n>)` aborts it the n-th time the place is reached (so a node
//! runs a while first: the fault-test nemesis picks n at random), `error` and
//! `error-after(<n>)` make `wal-fsync` or `apply` report a failure (as a failing disk would;
//! the member must stop rather than go on), `on` makes the place fail always, `while-file(<path>)` makes the place
//! fail (a partition drops the message) for as long as the file exists, so a test can cut a
//! member's peer traffic and heal it while the member keeps serving its clients.

#[cfg(not(debug_assertions))]
compile_error!("the `failpoints` feature is for test builds only, never release builds");

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What a failpoint does when reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delay(Duration),
    Crash,
    /// Crash the n-th time the place is reached.
    CrashAfter(u64),
    /// Fail with an error (as a failing disk would) from the n-th time the place is reached,
    /// at places that can report one (`wal-fsync`, `apply`).
    ErrorAfter(u64),
    /// The place fails while this file exists.
    WhileFile(PathBuf),
    /// The place fails always.
    On,
}

/// Parses `CAIRN_FAILPOINTS`; malformed entries are reported and ignored.
pub fn parse(spec: &str) -> HashMap<String, Action> {
    let mut points = HashMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, action)) = entry.split_once('=') else {
            eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (expected name=action)");
            continue;
        };
        let action = match action.trim() {
            "crash" => Action::Crash,
            "error" => Action::ErrorAfter(1),
            after if after.starts_with("error-after(") && after.ends_with(')') => {
                match after["error-after(".len()..after.len() - 1].parse::<u64>() {
                    Ok(n) if n > 0 => Action::ErrorAfter(n),
                    _ => {
                        eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (bad count)");
                        continue;
                    }
                }
            }
            after if after.starts_with("crash-after(") && after.ends_with(')') => {
                match after["crash-after(".len()..after.len() - 1].parse::<u64>() {
                    Ok(n) if n > 0 => Action::CrashAfter(n),
                    _ => {
                        eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (bad count)");
                        continue;
                    }
                }
            }
            "on" => Action::On,
            file if file.starts_with("while-file(") && file.ends_with(')') => {
                Action::WhileFile(PathBuf::from(&file["while-file(".len()..file.len() - 1]))
            }
            delay if delay.starts_with("delay(") && delay.ends_with(')') => {
                match delay["delay(".len()..delay.len() - 1].parse::<u64>() {
                    Ok(ms) => Action::Delay(Duration::from_millis(ms)),
                    Err(_) => {
                        eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (bad delay)");
                        continue;
                    }
                }
            }
            other => {
                eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (unknown action {other:?})");
                continue;
            }
        };
        points.insert(name.trim().to_string(), action);
    }
    points
}

fn configured() -> &'static HashMap<String, Action> {
    static POINTS: OnceLock<HashMap<String, Action>> = OnceLock::new();
    POINTS.get_or_init(|| parse(&std::env::var("CAIRN_FAILPOINTS").unwrap_or_default()))
}

/// Carries out failpoint `name`'s action, if one is configured.
pub fn reach(name: &str) {
    match configured().get(name) {
        Some(Action::Delay(delay)) => std::thread::sleep(*delay),
        Some(Action::Crash) => {
            eprintln!("failpoint {name}: crashing");
            std::process::abort();
        }
        Some(Action::CrashAfter(n)) => {
            if hits(name) >= *n {
                eprintln!("failpoint {name}: crashing at hit {n}");
                std::process::abort();
            }
        }
        Some(Action::WhileFile(_) | Action::On | Action::ErrorAfter(_)) | None => {}
    }
}

/// Counts a reach of `name` (configured places only); returns the count so far.
fn hits(name: &str) -> u64 {
    static HITS: OnceLock<HashMap<String, AtomicU64>> = OnceLock::new();
    let counters = HITS.get_or_init(|| {
        configured()
            .keys()
            .map(|name| (name.clone(), AtomicU64::new(0)))
            .collect()
    });
    counters
        .get(name)
        .map_or(0, |count| count.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Whether failpoint `name` makes its place report an error now (`error`, `error-after(n)`):
/// the place then fails as if its disk had.
pub fn error(name: &str) -> bool {
    match configured().get(name) {
        Some(Action::ErrorAfter(n)) => hits(name) >= *n,
        _ => false,
    }
}

/// Whether failpoint `name` makes its place fail right now (`on`, or `while-file` and its
/// file exists).
pub fn failing(name: &str) -> bool {
    match configured().get(name) {
        Some(Action::On) => true,
        Some(Action::WhileFile(path)) => path.exists(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_places_and_actions() {
        let points = parse(
            "wal-fsync=delay(1500); apply=crash;bogus;x=explode;y=delay(z);peer-partition=while-file(/tmp/cut);btree-commit=crash-after(40);z=crash-after(0)",
        );
        assert_eq!(points.len(), 4);
        assert_eq!(points["btree-commit"], Action::CrashAfter(40));
        assert_eq!(
            points["peer-partition"],
            Action::WhileFile(PathBuf::from("/tmp/cut"))
        );
        assert_eq!(
            points["wal-fsync"],
            Action::Delay(Duration::from_millis(1500))
        );
        assert_eq!(points["apply"], Action::Crash);
        let errors = parse("wal-fsync=error;apply=error-after(3);x=error-after(0)");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors["wal-fsync"], Action::ErrorAfter(1));
        assert_eq!(errors["apply"], Action::ErrorAfter(3));
    }
}
