//! `cairnctl watch`: prints changes to a key or range as they happen, as etcdctl does, and can
//! run a command for each event (`-- command args…`) with the event in its environment.

use std::io::Write;

use clap::Args;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::display::Printed;
use super::CtlError;
use crate::mvcc::key_range::prefix_end;
use crate::proto::etcdserverpb::{
    watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest, WatchRequest,
};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

/// `watch [options] <key> [range_end] [-- <exec-command>]`
#[derive(Debug, Args)]
pub struct WatchArgs {
    pub key: Option<String>,
    pub range_end: Option<String>,
    /// Watch on a prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching from.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get the previous key-value pair before the event happens.
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// A command to run for each event, after `--`; the event is in its environment
    /// (ETCD_WATCH_REVISION, ETCD_WATCH_KEY, ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_VALUE).
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl WatchArgs {
    fn request(&self) -> Result<WatchCreateRequest, CtlError> {
        let key = self.key.as_deref().ok_or_else(|| {
            CtlError::BadArgs("watch in non-interactive mode requires one or two arguments as key or prefix, with range end".into())
        })?;
        if self.prefix && self.range_end.is_some() {
            return Err(CtlError::BadArgs(
                "`range_end` and `--prefix` are mutually exclusive".into(),
            ));
        }
        let (key, range_end) = if self.prefix {
            if key.is_empty() {
                (vec![0], vec![0])
            } else {
                (
                    key.as_bytes().to_vec(),
                    prefix_end(key.as_bytes()).unwrap_or_else(|| vec![0]),
                )
            }
        } else {
            (
                key.as_bytes().to_vec(),
                self.range_end.as_deref().unwrap_or("").as_bytes().to_vec(),
            )
        };
        Ok(WatchCreateRequest {
            key,
            range_end,
            start_revision: self.rev,
            prev_kv: self.prev_kv,
            ..Default::default()
        })
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An event as etcdctl prints it: the type, then the previous pair if asked, then the pair.
pub fn simple_event(event: &Event) -> String {
    let kind = if event.r#type == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    };
    let mut out = format!("{kind}\n");
    let mut pair = |kv: &KeyValue| {
        out.push_str(&lossy(&kv.key));
        out.push('\n');
        out.push_str(&lossy(&kv.value));
        out.push('\n');
    };
    if let Some(prev) = &event.prev_kv {
        pair(prev);
    }
    if let Some(kv) = &event.kv {
        pair(kv);
    }
    out
}

/// Watches until the server ends the stream (or the process is stopped).
pub async fn run(args: &WatchArgs, channel: Channel) -> Result<Printed, CtlError> {
    let create = args.request()?;
    let (requests, receiver) = mpsc::channel(1);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .map_err(|_| CtlError::Failed("watch request could not be queued".into()))?;
    let mut responses = WatchClient::new(channel)
        .watch(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let stdout = std::io::stdout();
    while let Some(response) = responses.message().await? {
        if response.canceled {
            let reason = if response.compact_revision > 0 {
                format!("watch is canceled by the server: required revision has been compacted (compact revision {})", response.compact_revision)
            } else {
                format!(
                    "watch is canceled by the server: {}",
                    response.cancel_reason
                )
            };
            return Err(CtlError::Failed(reason));
        }
        for event in &response.events {
            {
                let mut out = stdout.lock();
                let _ = out.write_all(simple_event(event).as_bytes());
                let _ = out.flush();
            }
            if let Some((program, rest)) = args.command.split_first() {
                let kv = event.kv.clone().unwrap_or_default();
                let kind = if event.r#type == EventType::Delete as i32 {
                    "DELETE"
                } else {
                    "PUT"
                };
                let status = std::process::Command::new(program)
                    .args(rest)
                    .env("ETCD_WATCH_REVISION", kv.mod_revision.to_string())
                    .env("ETCD_WATCH_KEY", lossy(&kv.key))
                    .env("ETCD_WATCH_EVENT_TYPE", kind)
                    .env("ETCD_WATCH_VALUE", lossy(&kv.value))
                    .status();
                if let Err(err) = status {
                    eprintln!("Error: running {program}: {err}");
                }
            }
        }
    }
    // Keep the request side open until the server is done.
    drop(requests);
    Ok(Printed::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_like_etcdctl() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        let put = Event {
            r#type: EventType::Put as i32,
            kv: Some(kv("foo", "bar")),
            prev_kv: None,
        };
        assert_eq!(simple_event(&put), "PUT\nfoo\nbar\n");
        let delete = Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv("foo", "")),
            prev_kv: Some(kv("foo", "bar")),
        };
        assert_eq!(simple_event(&delete), "DELETE\nfoo\nbar\nfoo\n\n");
    }

    #[test]
    fn prefix_and_range_end_exclude_each_other() {
        let args = WatchArgs {
            key: Some("a".into()),
            range_end: Some("b".into()),
            prefix: true,
            rev: 0,
            prev_kv: false,
            command: Vec::new(),
        };
        assert!(matches!(args.request(), Err(CtlError::BadArgs(_))));
        let args = WatchArgs {
            range_end: None,
            ..args
        };
        assert_eq!(args.request().unwrap().range_end, b"b");
    }
}
