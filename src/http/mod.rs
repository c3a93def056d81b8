//! The plain-HTTP endpoints of the client port: `/health`, `/livez`, `/readyz`, `/version` and
//! `/metrics`, answering as etcd does so that probes, load balancers, `etcdctl endpoint health`
//! and dashboards written for etcd work unchanged.
//!
//! [`router`] builds an [`axum::Router`] the server merges with its tonic gRPC routes on one
//! port; the server supplies what the handlers need through [`HealthSource`].
//!
//! # What is answered (checked against a real etcd 3.5.1)
//! Every response carries etcd's default CORS headers (`Access-Control-Allow-Origin: *`,
//! `Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE`,
//! `Access-Control-Allow-Headers: accept, content-type, authorization`), and `OPTIONS` on any of
//! these paths is a bare `200`.
//!
//! | request | status | `Content-Type` | body |
//! |---|---|---|---|
//! | `GET /health` healthy | 200 | `text/plain; charset=utf-8` | `{"health":"true","reason":""}` |
//! | `GET /health` unhealthy | 503 | same, plus `X-Content-Type-Options: nosniff` | `{"health":"false","reason":"RAFT NO LEADER"}` + `\n` |
//! | `GET /version` | 200 | `application/json` | `{"etcdserver":"3.5.0","etcdcluster":"3.5.0","cairn":"0.1.0"}` |
//! | `GET /livez`, `/readyz` passing | 200 | `text/plain; charset=utf-8`, `nosniff` | `ok\n` (with `?verbose`: one `[+]<check> ok\n` line per check first) |
//! | `GET /livez`, `/readyz` failing | 503 | same | `[+]<check> ok\n` / `[-]<check> failed: <error>\n` lines, then `\n` |
//! | `GET /metrics` (any method) | 200 | `text/plain; version=0.0.4; charset=utf-8` | the Prometheus text exposition |
//! | other methods on the first four | 405 | `text/plain; charset=utf-8`, `nosniff`, `Allow: GET` | `Method Not Allowed\n` |
//!
//! `/health` reasons, first that applies: `ALARM NOSPACE` / `ALARM CORRUPT` (unless
//! `?exclude=<alarm>`), `RAFT NO LEADER` (unless `?serializable=true`), `RANGE ERROR:<error>` from
//! a keys-only, limit-1 read (serializable or linearizable as asked).
//!
//! etcd 3.5.1 itself has no `/livez` or `/readyz` (404); they are implemented as later etcd
//! releases do: `/livez` runs `serializable_read`; `/readyz` runs `data_corruption`,
//! `serializable_read`, `linearizable_read`, `non_learner` (in that order, where etcd's order is
//! random); `?exclude=<check>` skips a check; `/livez/<check>` and `/readyz/<check>` run one.
//! etcd 3.5.1 reports its own patch release in `etcdserver`; Cairn reports
//! [`crate::version::ETCD_SERVER_VERSION`], and its own version in the extra `cairn` field, which
//! JSON clients (Go's `encoding/json` included) ignore.
//!
//! Not done: etcd gzips `/metrics` when asked (`Accept-Encoding: gzip`); Cairn always answers
//! uncompressed, which every scraper accepts.
//!
//! # Mounting
//! `tonic_routes.into_axum_router().merge(http::router(source))` serves both on one listener
//! (`axum::serve` speaks HTTP/1.1 and h2c). The router sets no fallback: unknown paths get the
//! merged router's (etcd answers them `404` with `404 page not found\n`). Health reads are
//! bounded with `tokio::time`, so the runtime needs its time driver (`#[tokio::main]` has it).

mod health;
mod reply;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Response, StatusCode, Uri};
use axum::routing::any;
use axum::Router;

use crate::metrics::TEXT_CONTENT_TYPE;
use crate::version::{CAIRN_VERSION, ETCD_API_VERSION, ETCD_SERVER_VERSION};
use health::{Check, LIVEZ_CHECKS, READYZ_CHECKS};
use reply::{
    go_error, method_not_allowed, plain_text_nosniff, preflight, push_json_string, query_pairs,
    reply, TEXT_PLAIN_UTF8,
};

/// etcd's default request timeout (5 s plus two 1 s election timeouts), the bound on a health
/// read when the server does not say otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// The outcome of a health read: `Err` carries the error text etcd would print.
pub type ReadProbe<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// An active cluster alarm, as etcd's `AlarmType` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// The backend reached its quota; writes are refused.
    NoSpace,
    /// A member's data was found to differ from the others'.
    Corrupt,
}

impl Alarm {
    /// The name etcd uses in `?exclude=` and in reasons.
    pub fn name(self) -> &'static str {
        match self {
            Alarm::NoSpace => "NOSPACE",
            Alarm::Corrupt => "CORRUPT",
        }
    }
}

/// What `/version` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// `etcdserver`: the etcd server version presented to clients.
    pub etcd_server: String,
    /// `etcdcluster`: the cluster version (`major.minor.0`), or `not_decided` before the
    /// members agree, as etcd says.
    pub etcd_cluster: String,
    /// `cairn`: Cairn's own version; left out when `None`.
    pub cairn: Option<String>,
}

impl VersionInfo {
    /// The versions this build reports once the cluster version is settled.
    pub fn current() -> Self {
        Self {
            etcd_server: ETCD_SERVER_VERSION.to_owned(),
            etcd_cluster: format!("{ETCD_API_VERSION}.0"),
            cairn: Some(CAIRN_VERSION.to_owned()),
        }
    }

    /// The JSON body, fields in etcd's order.
    pub fn to_json(&self) -> String {
        let mut body = String::from("{\"etcdserver\":");
        push_json_string(&mut body, &self.etcd_server);
        body.push_str(",\"etcdcluster\":");
        push_json_string(&mut body, &self.etcd_cluster);
        if let Some(cairn) = &self.cairn {
            body.push_str(",\"cairn\":");
            push_json_string(&mut body, cairn);
        }
        body.push('}');
        body
    }
}

/// What the endpoints ask of the server. Implemented by the server; cheap calls except
/// [`HealthSource::read`].
pub trait HealthSource: Send + Sync + 'static {
    /// The cluster's active alarms.
    fn alarms(&self) -> Vec<Alarm>;
    /// Whether this member currently knows a Raft leader.
    fn has_leader(&self) -> bool;
    /// Whether this member is a learner (not a voter).
    fn is_learner(&self) -> bool;
    /// Perform a keys-only, limit-1 Range of the empty key through the path a client's Range
    /// takes (auth as root), serializable (local) or linearizable (through ReadIndex), as etcd's
    /// health check does; `Err` carries the error's text as a client would see it.
    fn read(&self, serializable: bool) -> ReadProbe<'_>;
    /// The bound on one [`HealthSource::read`]; past it the check fails with
    /// `context deadline exceeded`.
    fn request_timeout(&self) -> Duration {
        DEFAULT_REQUEST_TIMEOUT
    }
    /// What `/version` reports.
    fn version(&self) -> VersionInfo {
        VersionInfo::current()
    }
    /// The Prometheus text exposition for `/metrics` (usually `Registry::render`).
    fn metrics(&self) -> String;
    /// Told the outcome of every `/health` check (for `etcd_server_health_success`/`_failures`).
    fn health_checked(&self, _healthy: bool) {}
}

type Source = Arc<dyn HealthSource>;

/// The routes `/health`, `/livez`, `/livez/<check>`, `/readyz`, `/readyz/<check>`, `/version`,
/// `/metrics`. Sets no fallback, so it merges with tonic's routes (which have one).
pub fn router(source: Arc<dyn HealthSource>) -> Router {
    let mut router: Router<Source> = Router::new()
        .route("/health", any(serve_health))
        .route("/version", any(serve_version))
        .route("/metrics", any(serve_metrics))
        .route(
            "/livez",
            any(|State(s): State<Source>, m: Method, u: Uri| async move {
                serve_checks(&*s, &m, &u, LIVEZ_CHECKS, true).await
            }),
        )
        .route(
            "/readyz",
            any(|State(s): State<Source>, m: Method, u: Uri| async move {
                serve_checks(&*s, &m, &u, READYZ_CHECKS, true).await
            }),
        );
    for (root, checks) in [("/livez", LIVEZ_CHECKS), ("/readyz", READYZ_CHECKS)] {
        for check in checks {
            let one: Check = *check;
            router = router.route(
                &format!("{root}/{}", one.name()),
                any(
                    move |State(s): State<Source>, m: Method, u: Uri| async move {
                        serve_checks(&*s, &m, &u, &[one], false).await
                    },
                ),
            );
        }
    }
    router.with_state(source)
}

async fn serve_health(State(source): State<Source>, method: Method, uri: Uri) -> Response<Body> {
    if method == Method::OPTIONS {
        return preflight();
    }
    if method != Method::GET {
        return method_not_allowed();
    }
    let query = query_pairs(uri.query());
    let excluded: HashSet<String> = query
        .iter()
        .filter(|(key, value)| key == "exclude" && !value.is_empty())
        .map(|(_, value)| value.clone())
        .collect();
    // Go's `Query().Get` reads the first value only.
    let serializable = query
        .iter()
        .find(|(key, _)| key == "serializable")
        .is_some_and(|(_, value)| value == "true");
    let verdict = health::health(&*source, &excluded, serializable).await;
    source.health_checked(verdict.is_ok());
    let (healthy, reason) = match &verdict {
        Ok(()) => ("true", ""),
        Err(reason) => ("false", reason.as_str()),
    };
    let mut body = format!("{{\"health\":\"{healthy}\",\"reason\":");
    push_json_string(&mut body, reason);
    body.push('}');
    match verdict {
        // etcd writes no Content-Type here; Go's sniffing then picks this one.
        Ok(()) => reply(StatusCode::OK, Some(TEXT_PLAIN_UTF8), body),
        Err(_) => go_error(StatusCode::SERVICE_UNAVAILABLE, &body),
    }
}

/// `/livez`, `/readyz` and their per-check paths. `honour_exclude` is false on a per-check path,
/// where etcd ignores `?exclude`.
async fn serve_checks(
    source: &dyn HealthSource,
    method: &Method,
    uri: &Uri,
    checks: &[Check],
    honour_exclude: bool,
) -> Response<Body> {
    if method == Method::OPTIONS {
        return preflight();
    }
    if method != Method::GET {
        return method_not_allowed();
    }
    let query = query_pairs(uri.query());
    let excluded: HashSet<&str> = query
        .iter()
        .filter(|(key, value)| honour_exclude && key == "exclude" && !value.is_empty())
        .map(|(_, value)| value.as_str())
        .collect();
    let selected: Vec<Check> = checks
        .iter()
        .copied()
        .filter(|check| !excluded.contains(check.name()))
        .collect();
    let (passed, report) = health::run_checks(source, &selected).await;
    if !passed {
        // Failures always carry the report; etcd sends it through `http.Error`.
        return go_error(StatusCode::SERVICE_UNAVAILABLE, &report);
    }
    let verbose = query.iter().any(|(key, _)| key == "verbose");
    let mut body = if verbose { report } else { String::new() };
    body.push_str("ok\n");
    plain_text_nosniff(StatusCode::OK, body)
}

async fn serve_version(State(source): State<Source>, method: Method) -> Response<Body> {
    if method == Method::OPTIONS {
        return preflight();
    }
    if method != Method::GET {
        return method_not_allowed();
    }
    reply(
        StatusCode::OK,
        Some("application/json"),
        source.version().to_json(),
    )
}

/// Any method but OPTIONS gets the metrics, as from the Prometheus Go client's handler.
async fn serve_metrics(State(source): State<Source>, method: Method) -> Response<Body> {
    if method == Method::OPTIONS {
        return preflight();
    }
    reply(StatusCode::OK, Some(TEXT_CONTENT_TYPE), source.metrics())
}
