//! Which endpoints to talk to, and connecting to them.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::CtlError;

/// The default endpoint, as etcdctl's.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// The endpoints from `--endpoints`, else `CAIRNCTL_ENDPOINTS`, else `ETCDCTL_ENDPOINTS`, else
/// the default.
pub fn resolve_endpoints(
    flag: Option<&[String]>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let from_env = || {
        ["CAIRNCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS"]
            .iter()
            .find_map(|name| env(name).filter(|v| !v.trim().is_empty()))
            .map(|list| {
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            })
    };
    let endpoints = match flag {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => from_env().unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]),
    };
    endpoints.into_iter().filter(|e| !e.is_empty()).collect()
}

/// `host:port` gets `http://`; URLs keep their scheme.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Connects to the first endpoint that answers within `dial_timeout`; every call on the
/// channel is bounded by `command_timeout`.
pub async fn connect_any(
    endpoints: &[String],
    dial_timeout: Duration,
    command_timeout: Duration,
) -> Result<Channel, CtlError> {
    let mut failures = Vec::new();
    for endpoint in endpoints {
        match connect_one(endpoint, dial_timeout, command_timeout).await {
            Ok(channel) => return Ok(channel),
            Err(err) => failures.push(format!("{endpoint}: {err}")),
        }
    }
    Err(CtlError::Unreachable(failures.join("; ")))
}

pub async fn connect_one(
    endpoint: &str,
    dial_timeout: Duration,
    command_timeout: Duration,
) -> Result<Channel, String> {
    let target = Endpoint::from_shared(endpoint_url(endpoint))
        .map_err(|err| format!("bad endpoint: {err}"))?
        .connect_timeout(dial_timeout)
        .timeout(command_timeout);
    dial(target.connect(), dial_timeout).await
}

/// A connection of the load generator: as [`connect_one`], writing through
/// [`crate::coalesced_writes`] so that its many clients' requests share system calls.
pub async fn connect_for_load(
    endpoint: &str,
    dial_timeout: Duration,
    command_timeout: Duration,
) -> Result<Channel, String> {
    if endpoint.to_ascii_lowercase().starts_with("https://") {
        // TLS dials through tonic's own connector.
        return connect_one(endpoint, dial_timeout, command_timeout).await;
    }
    let target = Endpoint::from_shared(endpoint_url(endpoint))
        .map_err(|err| format!("bad endpoint: {err}"))?
        .connect_timeout(dial_timeout)
        .timeout(command_timeout);
    let dialing = target.connect_with_connector(crate::coalesced_writes::CoalescingConnector);
    dial(dialing, dial_timeout).await
}

/// A connection for long-lived streams (watch): no per-call timeout.
pub async fn connect_streaming(
    endpoints: &[String],
    dial_timeout: Duration,
) -> Result<Channel, CtlError> {
    let mut failures = Vec::new();
    for endpoint in endpoints {
        let target = Endpoint::from_shared(endpoint_url(endpoint))
            .map_err(|err| CtlError::BadArgs(format!("bad endpoint: {err}")))?
            .connect_timeout(dial_timeout);
        match dial(target.connect(), dial_timeout).await {
            Ok(channel) => return Ok(channel),
            Err(err) => failures.push(format!("{endpoint}: {err}")),
        }
    }
    Err(CtlError::Unreachable(failures.join("; ")))
}

/// Waits at most `dial_timeout` for a connection; a failure reads "outer: inner: root".
pub async fn dial<T, E>(
    dialing: impl std::future::Future<Output = Result<T, E>>,
    dial_timeout: Duration,
) -> Result<T, String>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(dial_timeout, dialing).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(error_chain(err.into().as_ref())),
        Err(_) => Err("dial timed out".to_string()),
    }
}

/// An error with its causes, "outer: inner: root".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses a Go-style duration ("2s", "500ms", "1m30s", "1.5h").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_flag_then_environment_then_default() {
        let none = |_: &str| None;
        assert_eq!(resolve_endpoints(None, &none), [DEFAULT_ENDPOINT]);
        let etcd_env = |name: &str| (name == "ETCDCTL_ENDPOINTS").then(|| "a:1,b:2".to_string());
        assert_eq!(resolve_endpoints(None, &etcd_env), ["a:1", "b:2"]);
        let both = |name: &str| Some(format!("{name}:1"));
        assert_eq!(resolve_endpoints(None, &both), ["CAIRNCTL_ENDPOINTS:1"]);
        let flag = vec!["c:3".to_string()];
        assert_eq!(resolve_endpoints(Some(&flag), &both), ["c:3"]);
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("2x").is_err());
    }

    #[test]
    fn plain_endpoints_become_http_urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
    }
}
