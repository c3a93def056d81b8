//! Test-only failpoints, compiled in only with the `failpoints` cargo feature (never in
//! release builds): named places in the server where a test can inject a delay or a crash,
//! chosen at start through `CAIRN_FAILPOINTS`, e.g.
//! `CAIRN_FAILPOINTS="wal-fsync=delay(1500);apply=crash"`.
//!
//! Places: `wal-fsync` (before waiting for a WAL append's fsync), `apply` (before applying a
//! run of committed entries), `peer-partition` (every Raft message sent or received, and
//! every peer handshake), `follower-local-reads` (a follower answers linearizable reads from
//! its own copy: the bug a consistency checker must catch). Actions: `delay(<ms>)` sleeps the calling thread, `crash` aborts
//! the process (as a kill -9 would, without unwinding), `on` makes the place fail always,
//! `while-file(<path>)` makes the place
//! fail (a partition drops the message) for as long as the file exists, so a test can cut a
//! member's peer traffic and heal it while the member keeps serving its clients.

#[cfg(not(debug_assertions))]
compile_error!("the `failpoints` feature is for test builds only, never release builds");

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// What a failpoint does when reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delay(Duration),
    Crash,
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
        Some(Action::WhileFile(_) | Action::On) | None => {}
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
            "wal-fsync=delay(1500); apply=crash;bogus;x=explode;y=delay(z);peer-partition=while-file(/tmp/cut)",
        );
        assert_eq!(points.len(), 3);
        assert_eq!(
            points["peer-partition"],
            Action::WhileFile(PathBuf::from("/tmp/cut"))
        );
        assert_eq!(
            points["wal-fsync"],
            Action::Delay(Duration::from_millis(1500))
        );
        assert_eq!(points["apply"], Action::Crash);
    }
}
