//! The verdicts behind `/health`, `/livez` and `/readyz`, in etcd's order and words.

use std::collections::HashSet;

use super::{Alarm, HealthSource};

/// The checks `/livez` runs, in order (etcd: is the process able to read locally at all).
pub(crate) const LIVEZ_CHECKS: &[Check] = &[Check::SerializableRead];

/// The checks `/readyz` runs, in order (etcd: can this member serve clients now).
pub(crate) const READYZ_CHECKS: &[Check] = &[
    Check::DataCorruption,
    Check::SerializableRead,
    Check::LinearizableRead,
    Check::NonLearner,
];

/// One named check of `/livez` or `/readyz`, also reachable alone at `/livez/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
    NonLearner,
}

impl Check {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
            Check::NonLearner => "non_learner",
        }
    }

    async fn run(self, source: &dyn HealthSource) -> Result<(), String> {
        match self {
            Check::DataCorruption => {
                if source.alarms().contains(&Alarm::Corrupt) {
                    Err(format!("alarm activated: {}", Alarm::Corrupt.name()))
                } else {
                    Ok(())
                }
            }
            Check::SerializableRead => bounded_read(source, true).await,
            Check::LinearizableRead => bounded_read(source, false).await,
            Check::NonLearner => {
                if source.is_learner() {
                    Err("not supported for learner".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The read probe, cut off after the server's request timeout with the error Go's context
/// reports, so a stuck ReadIndex cannot hang a probe.
async fn bounded_read(source: &dyn HealthSource, serializable: bool) -> Result<(), String> {
    match tokio::time::timeout(source.request_timeout(), source.read(serializable)).await {
        Ok(result) => result,
        Err(_) => Err("context deadline exceeded".to_owned()),
    }
}

/// etcd's `/health`: the first active alarm not excluded, then (unless serializable) a missing
/// leader, then a keys-only, limit-1 range; `Err` carries the `reason`.
pub(crate) async fn health(
    source: &dyn HealthSource,
    excluded_alarms: &HashSet<String>,
    serializable: bool,
) -> Result<(), String> {
    if let Some(alarm) = source
        .alarms()
        .into_iter()
        .find(|alarm| !excluded_alarms.contains(alarm.name()))
    {
        return Err(format!("ALARM {}", alarm.name()));
    }
    if !serializable && !source.has_leader() {
        return Err("RAFT NO LEADER".to_owned());
    }
    bounded_read(source, serializable)
        .await
        .map_err(|error| format!("RANGE ERROR:{error}"))
}

/// Runs `checks` in order; returns whether all passed and etcd's per-check report
/// (`[+]name ok\n` or `[-]name failed: <error>\n` per check).
pub(crate) async fn run_checks(source: &dyn HealthSource, checks: &[Check]) -> (bool, String) {
    let mut all_ok = true;
    let mut report = String::new();
    for check in checks {
        match check.run(source).await {
            Ok(()) => {
                report.push_str("[+]");
                report.push_str(check.name());
                report.push_str(" ok\n");
            }
            Err(error) => {
                all_ok = false;
                report.push_str("[-]");
                report.push_str(check.name());
                report.push_str(" failed: ");
                report.push_str(&error);
                report.push('\n');
            }
        }
    }
    (all_ok, report)
}
