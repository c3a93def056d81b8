//! `cairnctl lease …`: grant, revoke, timetolive, list and keep-alive, with etcdctl's
//! arguments, output in each format, messages and exit codes.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::display::{header_json, OutputFormat, Printed, UnsupportedFormat};
use super::json::JsonObject;
use super::CtlError;
use crate::proto::etcdserverpb::{
    lease_client::LeaseClient, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases.
    Grant {
        /// TTL in seconds.
        ttl: Option<String>,
    },
    /// Revokes leases (and deletes the keys attached to them).
    Revoke {
        /// Lease ID, in hexadecimal.
        id: Option<String>,
    },
    /// Gets lease information.
    Timetolive(TimeToLiveArgs),
    /// Lists all active leases.
    List,
    /// Keeps leases alive (renews them).
    #[command(name = "keep-alive")]
    KeepAlive(KeepAliveArgs),
}

/// `lease timetolive [options] <leaseID>`
#[derive(Debug, Args)]
pub struct TimeToLiveArgs {
    pub id: Option<String>,
    /// Get keys attached to this lease.
    #[arg(long)]
    pub keys: bool,
}

/// `lease keep-alive [options] <leaseID>`
#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    pub id: Option<String>,
    /// Resets the keep-alive time to its original value and exits immediately.
    #[arg(long)]
    pub once: bool,
}

/// A lease id as etcdctl prints it: Go's `%016x` of a signed number (`-000000000000007`).
pub fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

/// A lease ID argument: hexadecimal, signed, as etcdctl parses them.
pub fn parse_lease_id(arg: &str) -> Result<i64, CtlError> {
    i64::from_str_radix(arg, 16).map_err(|err| {
        CtlError::BadArgs(format!(
            "bad lease ID arg ({}), expecting ID in Hex",
            super::kv::go_parse_error(arg, &err)
        ))
    })
}

fn required(arg: &Option<String>, message: &str) -> Result<String, CtlError> {
    arg.clone().ok_or_else(|| CtlError::BadArgs(message.into()))
}

/// Runs a lease command on `channel`.
pub async fn run(
    command: &LeaseCommand,
    format: OutputFormat,
    channel: Channel,
) -> Result<Printed, CtlError> {
    let mut client = LeaseClient::new(channel);
    match command {
        LeaseCommand::Grant { ttl } => {
            let ttl = required(ttl, "lease grant command needs TTL argument")?;
            let ttl: i64 = ttl.parse().map_err(|err| {
                CtlError::BadArgs(format!(
                    "bad TTL ({})",
                    super::kv::go_parse_error(&ttl, &err)
                ))
            })?;
            let response = client
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .map_err(|status| {
                    CtlError::Failed(format!(
                        "failed to grant lease ({})",
                        super::status_message(&status)
                    ))
                })?
                .into_inner();
            Ok(grant(&response, format)?)
        }
        LeaseCommand::Revoke { id } => {
            let id = parse_lease_id(&required(id, "lease revoke command needs 1 argument")?)?;
            let response = client
                .lease_revoke(LeaseRevokeRequest { id })
                .await
                .map_err(|status| {
                    CtlError::Failed(format!(
                        "failed to revoke lease ({})",
                        super::status_message(&status)
                    ))
                })?
                .into_inner();
            Ok(revoke(id, &response, format)?)
        }
        LeaseCommand::Timetolive(args) => {
            let id = parse_lease_id(&required(
                &args.id,
                "lease timetolive command needs lease ID as argument",
            )?)?;
            let response = client
                .lease_time_to_live(LeaseTimeToLiveRequest {
                    id,
                    keys: args.keys,
                })
                .await
                .map_err(CtlError::BadConnection)?
                .into_inner();
            Ok(time_to_live(&response, args.keys, format)?)
        }
        LeaseCommand::List => {
            let response = client
                .lease_leases(LeaseLeasesRequest {})
                .await
                .map_err(|status| {
                    CtlError::Failed(format!(
                        "failed to list leases ({})",
                        super::status_message(&status)
                    ))
                })?
                .into_inner();
            Ok(leases(&response, format)?)
        }
        LeaseCommand::KeepAlive(args) => {
            let id = parse_lease_id(&required(
                &args.id,
                "lease keep-alive command needs lease ID as argument",
            )?)?;
            keep_alive(client, id, args.once, format).await
        }
    }
}

/// Renews `id` until it is gone (or once); prints each renewal as it comes.
async fn keep_alive(
    mut client: LeaseClient<Channel>,
    id: i64,
    once: bool,
    format: OutputFormat,
) -> Result<Printed, CtlError> {
    let (requests, receiver) = mpsc::channel(1);
    let queued = |_| CtlError::Failed("keepalive request could not be queued".into());
    requests
        .send(LeaseKeepAliveRequest { id })
        .await
        .map_err(queued)?;
    let mut responses = client
        .lease_keep_alive(ReceiverStream::new(receiver))
        .await
        .map_err(CtlError::BadConnection)?
        .into_inner();
    let stdout = std::io::stdout();
    loop {
        let Some(response) = responses.message().await.map_err(CtlError::BadConnection)? else {
            break;
        };
        if response.ttl <= 0 {
            if once {
                return Err(CtlError::BadConnection(tonic::Status::not_found(
                    "etcdserver: requested lease not found",
                )));
            }
            break;
        }
        let printed = keep_alive_response(&response, format)?;
        if once {
            return Ok(printed);
        }
        {
            let mut out = stdout.lock();
            let _ = out.write_all(printed.stdout.as_bytes());
            let _ = out.flush();
        }
        // As etcd's client: renew again a third of the TTL later.
        let ttl_secs = u64::try_from(response.ttl).unwrap_or(1);
        tokio::time::sleep(Duration::from_millis(ttl_secs * 1000 / 3)).await;
        requests
            .send(LeaseKeepAliveRequest { id })
            .await
            .map_err(queued)?;
    }
    let stdout = if format == OutputFormat::Simple {
        format!("lease {} expired or revoked.\n", lease_hex(id))
    } else {
        String::new()
    };
    Ok(Printed {
        stdout,
        stderr: String::new(),
    })
}

/// A lease command's output in `format`: etcdctl has a simple line and a JSON object for
/// each, and no table.
fn shaped(
    format: OutputFormat,
    simple: impl FnOnce() -> String,
    json: impl FnOnce() -> JsonObject,
) -> Result<Printed, UnsupportedFormat> {
    let stdout = match format {
        OutputFormat::Simple => simple(),
        OutputFormat::Json => json().finish() + "\n",
        OutputFormat::Table => return Err(UnsupportedFormat("table")),
    };
    Ok(Printed {
        stdout,
        stderr: String::new(),
    })
}

fn grant(r: &LeaseGrantResponse, format: OutputFormat) -> Result<Printed, UnsupportedFormat> {
    shaped(
        format,
        || format!("lease {} granted with TTL({}s)\n", lease_hex(r.id), r.ttl),
        || {
            flat_header(r.header.as_ref())
                .count("ID", r.id)
                .count("TTL", r.ttl)
                .str_always("Error", &r.error)
        },
    )
}

fn revoke(
    id: i64,
    r: &LeaseRevokeResponse,
    format: OutputFormat,
) -> Result<Printed, UnsupportedFormat> {
    shaped(
        format,
        || format!("lease {} revoked\n", lease_hex(id)),
        || JsonObject::new().object("header", header_json(&r.header)),
    )
}

fn time_to_live(
    r: &LeaseTimeToLiveResponse,
    with_keys: bool,
    format: OutputFormat,
) -> Result<Printed, UnsupportedFormat> {
    let simple = || {
        if r.granted_ttl == 0 && r.ttl == -1 {
            return format!("lease {} already expired\n", lease_hex(r.id));
        }
        let mut text = format!(
            "lease {} granted with TTL({}s), remaining({}s)",
            lease_hex(r.id),
            r.granted_ttl,
            r.ttl
        );
        if with_keys {
            let keys: Vec<String> = r
                .keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            text.push_str(&format!(", attached keys([{}])", keys.join(" ")));
        }
        text + "\n"
    };
    shaped(format, simple, || {
        flat_header(r.header.as_ref())
            .count("id", r.id)
            .count("ttl", r.ttl)
            .count("granted-ttl", r.granted_ttl)
            .byte_list("keys", &r.keys)
    })
}

fn leases(r: &LeaseLeasesResponse, format: OutputFormat) -> Result<Printed, UnsupportedFormat> {
    let simple = || {
        let mut text = format!("found {} leases\n", r.leases.len());
        for lease in &r.leases {
            text.push_str(&lease_hex(lease.id));
            text.push('\n');
        }
        text
    };
    shaped(format, simple, || {
        let listed = r
            .leases
            .iter()
            .map(|l| JsonObject::new().count("id", l.id))
            .collect();
        flat_header(r.header.as_ref()).objects_always("leases", listed)
    })
}

fn keep_alive_response(
    r: &LeaseKeepAliveResponse,
    format: OutputFormat,
) -> Result<Printed, UnsupportedFormat> {
    shaped(
        format,
        || format!("lease {} keepalived with TTL({})\n", lease_hex(r.id), r.ttl),
        || {
            flat_header(r.header.as_ref())
                .count("ID", r.id)
                .count("TTL", r.ttl)
        },
    )
}

/// etcdctl prints the client library's lease responses, which embed the header: its fields
/// come first, at the top level.
fn flat_header(header: Option<&crate::proto::etcdserverpb::ResponseHeader>) -> JsonObject {
    let header = header.cloned().unwrap_or_default();
    JsonObject::new()
        .u64("cluster_id", header.cluster_id)
        .u64("member_id", header.member_id)
        .i64("revision", header.revision)
        .u64("raft_term", header.raft_term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_hexadecimal_and_bad_ones_are_explained_as_etcdctl_does() {
        assert_eq!(
            parse_lease_id("694d7c5f8e2a7b0d").unwrap(),
            0x694d_7c5f_8e2a_7b0d
        );
        assert_eq!(parse_lease_id("1f").unwrap(), 31);
        let bad = parse_lease_id("zz").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
        assert_eq!(bad.exit_code(), 128);
        assert!(parse_lease_id("ffffffffffffffff").is_err());
        assert_eq!(parse_lease_id("-7").unwrap(), -7);
        assert_eq!(lease_hex(-7), "-000000000000007");
        assert_eq!(lease_hex(100), "0000000000000064");
    }

    #[test]
    fn time_to_live_prints_keys_and_expiry_as_etcdctl_does() {
        let live = LeaseTimeToLiveResponse {
            id: 0x1f,
            ttl: 7,
            granted_ttl: 10,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
            header: None,
        };
        let out = time_to_live(&live, true, OutputFormat::Simple).unwrap();
        assert_eq!(
            out.stdout,
            "lease 000000000000001f granted with TTL(10s), remaining(7s), attached keys([a b])\n"
        );
        let gone = LeaseTimeToLiveResponse {
            id: 0x1f,
            ttl: -1,
            ..Default::default()
        };
        let out = time_to_live(&gone, false, OutputFormat::Simple).unwrap();
        assert_eq!(out.stdout, "lease 000000000000001f already expired\n");
    }
}
