//! Turns responses into the text `etcdctl` prints for them, in each output format, so that
//! scripts written against etcdctl read cairnctl's output unchanged.

use super::json::{self, JsonObject};
use super::table;
use crate::proto::etcdserverpb::{
    response_op, CompactionResponse, DeleteRangeResponse, Member, MemberListResponse, PutResponse,
    RangeResponse, ResponseHeader, StatusResponse, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines (etcdctl's default).
    Simple,
    /// The response as JSON, shaped like etcdctl's.
    Json,
    /// A bordered table (for status, health and member listings).
    Table,
}

/// What a command prints, and where.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

impl Printed {
    pub fn out(text: String) -> Self {
        Printed {
            stdout: text,
            stderr: String::new(),
        }
    }
}

/// Display errors: a format a command has no layout for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} not supported as output format")]
pub struct UnsupportedFormat(pub &'static str);

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn simple_kv(out: &mut String, kv: &KeyValue, value_only: bool) {
    if !value_only {
        out.push_str(&lossy(&kv.key));
        out.push('\n');
    }
    out.push_str(&lossy(&kv.value));
    out.push('\n');
}

pub fn header_json(header: &Option<ResponseHeader>) -> Option<JsonObject> {
    header.as_ref().map(|h| {
        JsonObject::new()
            .u64("cluster_id", h.cluster_id)
            .u64("member_id", h.member_id)
            .i64("revision", h.revision)
            .u64("raft_term", h.raft_term)
    })
}

pub fn kv_json(kv: &KeyValue) -> JsonObject {
    JsonObject::new()
        .bytes("key", &kv.key)
        .i64("create_revision", kv.create_revision)
        .i64("mod_revision", kv.mod_revision)
        .i64("version", kv.version)
        .bytes("value", &kv.value)
        .i64("lease", kv.lease)
}

fn range_json(r: &RangeResponse) -> JsonObject {
    JsonObject::new()
        .object("header", header_json(&r.header))
        .objects("kvs", r.kvs.iter().map(kv_json).collect())
        .bool("more", r.more)
        .i64("count", r.count)
}

fn put_json(r: &PutResponse) -> JsonObject {
    JsonObject::new()
        .object("header", header_json(&r.header))
        .object("prev_kv", r.prev_kv.as_ref().map(kv_json))
}

fn delete_json(r: &DeleteRangeResponse) -> JsonObject {
    JsonObject::new()
        .object("header", header_json(&r.header))
        .i64("deleted", r.deleted)
        .objects("prev_kvs", r.prev_kvs.iter().map(kv_json).collect())
}

fn txn_json(r: &TxnResponse) -> JsonObject {
    let responses = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(response_op::Response::ResponseRange(r)) => {
                    JsonObject::new().object("response_range", Some(range_json(r)))
                }
                Some(response_op::Response::ResponsePut(r)) => {
                    JsonObject::new().object("response_put", Some(put_json(r)))
                }
                Some(response_op::Response::ResponseDeleteRange(r)) => {
                    JsonObject::new().object("response_delete_range", Some(delete_json(r)))
                }
                Some(response_op::Response::ResponseTxn(r)) => {
                    JsonObject::new().object("response_txn", Some(txn_json(r)))
                }
                None => JsonObject::new(),
            };
            JsonObject::new().object("Response", Some(inner))
        })
        .collect();
    JsonObject::new()
        .object("header", header_json(&r.header))
        .bool("succeeded", r.succeeded)
        .objects("responses", responses)
}

/// `get`: key and value lines (or values only), or the count alone for `--count-only`.
pub fn get(
    r: &RangeResponse,
    format: OutputFormat,
    value_only: bool,
    count_only: bool,
) -> Result<Printed, UnsupportedFormat> {
    match format {
        OutputFormat::Simple if count_only => Ok(Printed::out(format!("{}\n", r.count))),
        OutputFormat::Simple => {
            let mut out = String::new();
            for kv in &r.kvs {
                simple_kv(&mut out, kv, value_only);
            }
            Ok(Printed::out(out))
        }
        OutputFormat::Json => Ok(Printed::out(range_json(r).finish() + "\n")),
        OutputFormat::Table => Err(UnsupportedFormat("table")),
    }
}

pub fn put(r: &PutResponse, format: OutputFormat) -> Result<Printed, UnsupportedFormat> {
    match format {
        OutputFormat::Simple => Ok(Printed::out(simple_put(r))),
        OutputFormat::Json => Ok(Printed::out(put_json(r).finish() + "\n")),
        OutputFormat::Table => Err(UnsupportedFormat("table")),
    }
}

fn simple_put(r: &PutResponse) -> String {
    let mut out = String::from("OK\n");
    if let Some(prev) = &r.prev_kv {
        simple_kv(&mut out, prev, false);
    }
    out
}

pub fn delete(r: &DeleteRangeResponse, format: OutputFormat) -> Result<Printed, UnsupportedFormat> {
    match format {
        OutputFormat::Simple => Ok(Printed::out(simple_delete(r))),
        OutputFormat::Json => Ok(Printed::out(delete_json(r).finish() + "\n")),
        OutputFormat::Table => Err(UnsupportedFormat("table")),
    }
}

fn simple_delete(r: &DeleteRangeResponse) -> String {
    let mut out = format!("{}\n", r.deleted);
    for kv in &r.prev_kvs {
        simple_kv(&mut out, kv, false);
    }
    out
}

/// `txn`: SUCCESS or FAILURE, then each operation's result after a blank line.
pub fn txn(r: &TxnResponse, format: OutputFormat) -> Result<Printed, UnsupportedFormat> {
    match format {
        OutputFormat::Simple => Ok(Printed::out(simple_txn(r))),
        OutputFormat::Json => Ok(Printed::out(txn_json(r).finish() + "\n")),
        OutputFormat::Table => Err(UnsupportedFormat("table")),
    }
}

fn simple_txn(r: &TxnResponse) -> String {
    let mut out = String::from(if r.succeeded {
        "SUCCESS\n"
    } else {
        "FAILURE\n"
    });
    for op in &r.responses {
        out.push('\n');
        match &op.response {
            Some(response_op::Response::ResponseRange(r)) => {
                for kv in &r.kvs {
                    simple_kv(&mut out, kv, false);
                }
            }
            Some(response_op::Response::ResponsePut(r)) => out.push_str(&simple_put(r)),
            Some(response_op::Response::ResponseDeleteRange(r)) => out.push_str(&simple_delete(r)),
            Some(response_op::Response::ResponseTxn(r)) => out.push_str(&simple_txn(r)),
            None => out.push_str("unexpected empty response\n"),
        }
    }
    out
}

pub fn compaction(
    r: &CompactionResponse,
    revision: i64,
    format: OutputFormat,
) -> Result<Printed, UnsupportedFormat> {
    match format {
        OutputFormat::Simple => Ok(Printed::out(format!("compacted revision {revision}\n"))),
        OutputFormat::Json => Ok(Printed::out(
            JsonObject::new()
                .object("header", header_json(&r.header))
                .finish()
                + "\n",
        )),
        OutputFormat::Table => Err(UnsupportedFormat("table")),
    }
}

const MEMBER_HEADER: [&str; 6] = [
    "ID",
    "STATUS",
    "NAME",
    "PEER ADDRS",
    "CLIENT ADDRS",
    "IS LEARNER",
];

fn member_row(m: &Member) -> Vec<String> {
    let status = if m.name.is_empty() {
        "unstarted"
    } else {
        "started"
    };
    vec![
        format!("{:x}", m.id),
        status.to_string(),
        m.name.clone(),
        m.peer_ur_ls.join(","),
        m.client_ur_ls.join(","),
        m.is_learner.to_string(),
    ]
}

/// One member as etcdctl's JSON shows it.
pub fn member_json(m: &Member) -> JsonObject {
    JsonObject::new()
        .u64("ID", m.id)
        .str("name", &m.name)
        .strings("peerURLs", &m.peer_ur_ls)
        .strings("clientURLs", &m.client_ur_ls)
        .bool("isLearner", m.is_learner)
}

pub fn member_list(r: &MemberListResponse, format: OutputFormat) -> Printed {
    let rows: Vec<Vec<String>> = r.members.iter().map(member_row).collect();
    match format {
        OutputFormat::Simple => Printed::out(
            rows.iter()
                .map(|row| row.join(", ") + "\n")
                .collect::<String>(),
        ),
        OutputFormat::Table => Printed::out(table::render(&MEMBER_HEADER, &rows)),
        OutputFormat::Json => {
            let members = r.members.iter().map(member_json).collect();
            Printed::out(
                JsonObject::new()
                    .object("header", header_json(&r.header))
                    .objects("members", members)
                    .finish()
                    + "\n",
            )
        }
    }
}

/// One endpoint's answer to `endpoint status`.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: StatusResponse,
}

const STATUS_HEADER: [&str; 10] = [
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
];

fn status_row(s: &EndpointStatus) -> Vec<String> {
    let member = s.status.header.as_ref().map_or(0, |h| h.member_id);
    vec![
        s.endpoint.clone(),
        format!("{member:x}"),
        s.status.version.clone(),
        table::human_bytes(u64::try_from(s.status.db_size).unwrap_or(0)),
        (s.status.leader == member).to_string(),
        s.status.is_learner.to_string(),
        s.status.raft_term.to_string(),
        s.status.raft_index.to_string(),
        s.status.raft_applied_index.to_string(),
        s.status.errors.join(", "),
    ]
}

pub fn endpoint_status(statuses: &[EndpointStatus], format: OutputFormat) -> Printed {
    let rows: Vec<Vec<String>> = statuses.iter().map(status_row).collect();
    match format {
        OutputFormat::Simple => Printed::out(
            rows.iter()
                .map(|row| row.join(", ") + "\n")
                .collect::<String>(),
        ),
        OutputFormat::Table => Printed::out(table::render(&STATUS_HEADER, &rows)),
        OutputFormat::Json => {
            let items = statuses
                .iter()
                .map(|s| {
                    let st = &s.status;
                    let status = JsonObject::new()
                        .object("header", header_json(&st.header))
                        .str("version", &st.version)
                        .i64("dbSize", st.db_size)
                        .u64("leader", st.leader)
                        .u64("raftIndex", st.raft_index)
                        .u64("raftTerm", st.raft_term)
                        .u64("raftAppliedIndex", st.raft_applied_index)
                        .strings("errors", &st.errors)
                        .i64("dbSizeInUse", st.db_size_in_use)
                        .bool("isLearner", st.is_learner);
                    JsonObject::new()
                        .str("Endpoint", &s.endpoint)
                        .object("Status", Some(status))
                })
                .collect();
            Printed::out(json::array(items) + "\n")
        }
    }
}

/// One endpoint's answer to `endpoint health`.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub took: std::time::Duration,
    pub error: String,
}

pub fn endpoint_health(results: &[EndpointHealth], format: OutputFormat) -> Printed {
    match format {
        OutputFormat::Simple => {
            // etcdctl reports health on standard error.
            let mut err = String::new();
            for h in results {
                if h.healthy {
                    err.push_str(&format!(
                        "{} is healthy: successfully committed proposal: took = {}\n",
                        h.endpoint,
                        go_duration(h.took)
                    ));
                } else {
                    err.push_str(&format!(
                        "{} is unhealthy: failed to commit proposal: {}\n",
                        h.endpoint, h.error
                    ));
                }
            }
            Printed {
                stdout: String::new(),
                stderr: err,
            }
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|h| {
                    vec![
                        h.endpoint.clone(),
                        h.healthy.to_string(),
                        go_duration(h.took),
                        h.error.clone(),
                    ]
                })
                .collect();
            Printed::out(table::render(
                &["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
                &rows,
            ))
        }
        OutputFormat::Json => {
            let items = results
                .iter()
                .map(|h| {
                    JsonObject::new()
                        .str("endpoint", &h.endpoint)
                        .bool("health", h.healthy)
                        .str("took", &go_duration(h.took))
                        .str("error", &h.error)
                })
                .collect();
            Printed::out(json::array(items) + "\n")
        }
    }
}

/// A duration as Go's `time.Duration.String()` writes it ("1.817512ms", "2.5s", "850µs").
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let (value, unit, scale) = if nanos < 1_000 {
        return format!("{nanos}ns");
    } else if nanos < 1_000_000 {
        (nanos, "µs", 1_000u128)
    } else if nanos < 1_000_000_000 {
        (nanos, "ms", 1_000_000)
    } else {
        (nanos, "s", 1_000_000_000)
    };
    if unit == "s" && nanos >= 60_000_000_000 {
        let secs = nanos / 1_000_000_000;
        let frac = nanos % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let seconds = trim_fraction(s, frac, 1_000_000_000);
        return if h > 0 {
            format!("{h}h{m}m{seconds}s")
        } else {
            format!("{m}m{seconds}s")
        };
    }
    format!(
        "{}{unit}",
        trim_fraction(value / scale, value % scale, scale)
    )
}

/// `whole.fraction` with the fraction's trailing zeros (and a bare dot) removed.
fn trim_fraction(whole: u128, fraction: u128, scale: u128) -> String {
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let text = format!("{fraction:0digits$}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_nanos(1_817_512)), "1.817512ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(go_duration(Duration::from_nanos(15)), "15ns");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn txn_simple_output_separates_results_with_blank_lines() {
        use crate::proto::etcdserverpb::ResponseOp;
        let response = TxnResponse {
            succeeded: true,
            responses: vec![
                ResponseOp {
                    response: Some(response_op::Response::ResponsePut(PutResponse::default())),
                },
                ResponseOp {
                    response: Some(response_op::Response::ResponseRange(RangeResponse {
                        kvs: vec![KeyValue {
                            key: b"k".to_vec(),
                            value: b"v".to_vec(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        };
        let printed = txn(&response, OutputFormat::Simple).unwrap();
        assert_eq!(printed.stdout, "SUCCESS\n\nOK\n\nk\nv\n");
    }
}
