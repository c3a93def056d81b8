//! `cairnctl check perf`: etcdctl's performance check. A minute of puts (256-byte keys,
//! 1 KiB values) at the load's rate from the load's number of clients, then three verdicts:
//! throughput at least 90% of the rate, no request slower than 500 ms, a latency standard
//! deviation under 100 ms. Prints PASS/FAIL lines as etcdctl does and exits 1 on a FAIL.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::bench::{self, BenchArgs, KeyArgs, Report, Workload};
use super::display::{OutputFormat, Printed};
use super::json::JsonObject;
use super::{connect, CtlError, GlobalFlags};
use crate::mvcc::key_range::prefix_end;
use crate::proto::etcdserverpb::{kv_client::KvClient, DeleteRangeRequest};

/// Connections the clients share (etcdctl opens one per client; a few hundred connections
/// on one machine measure the client more than the server).
const MAX_CONNECTIONS: usize = 100;

/// etcdctl's loads: writes per second and clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Load {
    S,
    M,
    L,
    Xl,
}

impl Load {
    /// (writes per second, clients), as etcdctl's `check perf` defines them.
    pub fn shape(self) -> (u64, usize) {
        match self {
            Load::S => (150, 50),
            Load::M => (1000, 200),
            Load::L => (8000, 500),
            Load::Xl => (15000, 1000),
        }
    }
}

#[derive(Debug, Args)]
pub struct PerfArgs {
    /// The load: s (150 writes/s, 50 clients), m (1,000, 200), l (8,000, 500), xl (15,000, 1,000).
    #[arg(long, value_enum, default_value = "s")]
    pub load: Load,
    /// Where the check writes its keys (deleted afterwards).
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// How long to write, in seconds (etcdctl: always 60).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
}

/// The three verdicts on a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub throughput: f64,
    pub throughput_ok: bool,
    pub slowest_seconds: f64,
    pub slowest_ok: bool,
    pub stddev_seconds: f64,
    pub stddev_ok: bool,
    /// Requests that failed (etcdctl would have stopped on them).
    pub errors: u64,
}

impl Verdict {
    pub fn judge(report: &Report, rate: u64, duration: Duration) -> Verdict {
        let throughput = report.requests as f64 / duration.as_secs_f64().max(1e-9);
        let slowest_seconds = report.latency.max() as f64 / 1e6;
        let stddev_seconds = report.latency.stddev() / 1e6;
        Verdict {
            throughput,
            throughput_ok: throughput >= 0.9 * rate as f64,
            slowest_seconds,
            slowest_ok: slowest_seconds <= 0.5,
            stddev_seconds,
            stddev_ok: stddev_seconds <= 0.1,
            errors: report.errors,
        }
    }

    pub fn passed(&self) -> bool {
        self.throughput_ok && self.slowest_ok && self.stddev_ok && self.errors == 0
    }

    /// etcdctl's lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&if self.throughput_ok {
            format!("PASS: Throughput is {:.0} writes/s\n", self.throughput)
        } else {
            format!(
                "FAIL: Throughput too low: {:.0} writes/s\n",
                self.throughput
            )
        });
        out.push_str(&if self.slowest_ok {
            format!("PASS: Slowest request took {:.6}s\n", self.slowest_seconds)
        } else {
            format!(
                "FAIL: Slowest request took too long: {:.6}s\n",
                self.slowest_seconds
            )
        });
        out.push_str(&if self.stddev_ok {
            format!("PASS: Stddev is {:.6}s\n", self.stddev_seconds)
        } else {
            format!("FAIL: Stddev too high: {:.6}s\n", self.stddev_seconds)
        });
        if self.errors > 0 {
            out.push_str(&format!("FAIL: {} requests failed\n", self.errors));
        }
        out.push_str(if self.passed() { "PASS\n" } else { "FAIL\n" });
        out
    }
}

pub async fn run(
    args: &PerfArgs,
    global: &GlobalFlags,
    endpoints: &[String],
    format: OutputFormat,
) -> Result<Printed, CtlError> {
    let (rate, clients) = args.load.shape();
    let duration = Duration::from_secs(args.duration.max(1));
    let bench_args = BenchArgs {
        workload: Workload::Put {
            keys: KeyArgs {
                key_size: 256,
                key_space_size: u64::MAX >> 1,
                sequential_keys: false,
                key_prefix: args.prefix.clone(),
            },
            val_size: 1024,
        },
        // At a fixed rate, the count is the duration.
        total: rate * duration.as_secs(),
        duration: None,
        conns: clients.min(MAX_CONNECTIONS),
        clients,
        rate,
        warmup: 0,
    };
    let report = bench::run(&bench_args, global, endpoints).await?;
    // Whatever the verdict, the check's keys go.
    let channel =
        connect::connect_any(endpoints, global.dial_timeout, global.command_timeout).await?;
    let prefix = args.prefix.as_bytes().to_vec();
    KvClient::new(channel)
        .delete_range(DeleteRangeRequest {
            range_end: prefix_end(&prefix).unwrap_or_else(|| vec![0]),
            key: prefix,
            prev_kv: false,
        })
        .await?;
    let verdict = Verdict::judge(&report, rate, duration);
    let stdout = match format {
        OutputFormat::Json => {
            JsonObject::new()
                .str("result", if verdict.passed() { "PASS" } else { "FAIL" })
                .count("writes_per_second", verdict.throughput as i64)
                .count("target_writes_per_second", rate as i64)
                .count("slowest_us", (verdict.slowest_seconds * 1e6) as i64)
                .count("stddev_us", (verdict.stddev_seconds * 1e6) as i64)
                .count("errors", report.errors as i64)
                .finish()
                + "\n"
        }
        _ => verdict.to_text(),
    };
    let printed = Printed {
        stdout,
        stderr: String::new(),
    };
    if verdict.passed() {
        Ok(printed)
    } else {
        Err(CtlError::Verdict(printed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::histogram::Histogram;

    fn report(latencies_us: &[u64], errors: u64) -> Report {
        let mut latency = Histogram::default();
        for l in latencies_us {
            latency.record(*l);
        }
        Report {
            workload: "put",
            requests: latency.count(),
            errors,
            elapsed: Duration::from_secs(1),
            latency,
        }
    }

    #[test]
    fn verdicts_follow_etcdctls_thresholds() {
        let good = report(&vec![2_000; 150], 0);
        let verdict = Verdict::judge(&good, 150, Duration::from_secs(1));
        assert!(verdict.passed(), "{verdict:?}");
        assert!(verdict
            .to_text()
            .starts_with("PASS: Throughput is 150 writes/s\n"));
        assert!(verdict.to_text().ends_with("\nPASS\n"));
        let slow = report(&[2_000, 900_000], 0);
        let verdict = Verdict::judge(&slow, 2, Duration::from_secs(1));
        assert!(!verdict.slowest_ok);
        assert!(!verdict.stddev_ok, "{verdict:?}");
        assert!(verdict
            .to_text()
            .contains("FAIL: Slowest request took too long"));
        let failing = report(&vec![2_000; 150], 3);
        let verdict = Verdict::judge(&failing, 150, Duration::from_secs(1));
        assert!(verdict.throughput_ok && !verdict.passed());
        assert!(verdict.to_text().contains("FAIL: 3 requests failed\n"));
        let short = report(&vec![2_000; 100], 0);
        let verdict = Verdict::judge(&short, 150, Duration::from_secs(1));
        assert!(!verdict.throughput_ok);
        assert!(verdict.to_text().ends_with("FAIL\n"));
    }
}
