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
#[derive(Debug, Args, Default)]
pub struct WatchArgs {
    /// Interactive mode: read `watch [options] <key> [range_end] [-- <exec-command>]` lines
    /// from standard input, each adding a watcher to the same stream.
    #[arg(short, long)]
    pub interactive: bool,
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

/// Why a line of interactive input is not a watch (etcdctl's wording).
fn invalid_line(line: &str, reason: &str) -> String {
    format!("Invalid command {line} ({reason})")
}

/// A `watch …` line of interactive input, parsed with the command's own flags.
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true)]
struct InteractiveLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// Parses one interactive line: `Ok(None)` for a line to report and skip, `Err` for one
/// that ends the command (an unknown flag, as etcdctl exits on it).
fn parse_line(line: &str) -> Result<Option<(WatchCreateRequest, Vec<String>)>, CtlError> {
    use clap::Parser;
    let words =
        super::txn_input::argify(line).map_err(|e| CtlError::InvalidInput(e.to_string()))?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(None);
    };
    if first != "watch" {
        eprintln!("{}", invalid_line(line, "only support watch"));
        return Ok(None);
    }
    let parsed = InteractiveLine::try_parse_from(rest).map_err(|err| {
        let text = err.to_string();
        let flag = text.split('\'').nth(1).map_or_else(
            || text.lines().next().unwrap_or_default().to_string(),
            str::to_string,
        );
        CtlError::BadArgs(format!("unknown flag: {flag}"))
    })?;
    if parsed.args.key.is_none() {
        eprintln!(
            "{}",
            invalid_line(line, "command type or key is not provided")
        );
        return Ok(None);
    }
    match parsed.args.request() {
        Ok(create) => Ok(Some((create, parsed.args.command))),
        Err(err) => {
            eprintln!("{}", invalid_line(line, &err.to_string()));
            Ok(None)
        }
    }
}

/// What a stream's responses mean for the watchers of one `cairnctl watch`.
struct Watchers {
    /// Commands of watchers created but not yet acknowledged, in creation order.
    pending: std::collections::VecDeque<Vec<String>>,
    /// Each watcher's command to run per event.
    commands: std::collections::HashMap<i64, Vec<String>>,
}

impl Watchers {
    /// Prints a response's events (running each watcher's command); an error ends the watch.
    fn handle(
        &mut self,
        response: &crate::proto::etcdserverpb::WatchResponse,
    ) -> Result<(), CtlError> {
        if response.created {
            let command = self.pending.pop_front().unwrap_or_default();
            self.commands.insert(response.watch_id, command);
        }
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
        let stdout = std::io::stdout();
        let command = self.commands.get(&response.watch_id);
        for event in &response.events {
            {
                let mut out = stdout.lock();
                let _ = out.write_all(simple_event(event).as_bytes());
                let _ = out.flush();
            }
            if let Some((program, rest)) = command.and_then(|c| c.split_first()) {
                run_for_event(program, rest, event);
            }
        }
        Ok(())
    }
}

/// Runs a watcher's command with the event in its environment, as etcdctl does.
fn run_for_event(program: &str, rest: &[String], event: &Event) {
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

/// Opens the watch stream. The call runs in a task of its own and hands responses over a
/// channel: etcd sends its response headers only with the first response, so waiting for
/// the call before sending a request would wait forever.
fn open_stream(
    channel: Channel,
) -> (
    mpsc::Sender<WatchRequest>,
    mpsc::Receiver<Result<crate::proto::etcdserverpb::WatchResponse, tonic::Status>>,
) {
    let (requests, receiver) = mpsc::channel(16);
    let (forward, responses) = mpsc::channel(64);
    tokio::spawn(async move {
        let call = WatchClient::new(channel)
            .watch(ReceiverStream::new(receiver))
            .await;
        let mut stream = match call {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let _ = forward.send(Err(status)).await;
                return;
            }
        };
        loop {
            let next = stream.message().await.transpose();
            let Some(next) = next else { return };
            let failed = next.is_err();
            if forward.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    (requests, responses)
}

fn create_request(create: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    }
}

/// Watches until the server ends the stream (or the process is stopped).
pub async fn run(args: &WatchArgs, channel: Channel) -> Result<Printed, CtlError> {
    if args.interactive {
        return run_interactive(channel).await;
    }
    let create = args.request()?;
    let (requests, mut responses) = open_stream(channel);
    let mut watchers = Watchers {
        pending: [args.command.clone()].into(),
        commands: Default::default(),
    };
    requests
        .send(create_request(create))
        .await
        .map_err(|_| CtlError::Failed("watch request could not be queued".into()))?;
    while let Some(response) = responses.recv().await {
        watchers.handle(&response?)?;
    }
    drop(requests);
    Ok(Printed::default())
}

/// `watch -i`: watchers come from standard input, one `watch …` line each, on one stream;
/// the end of the input ends the command, as in etcdctl.
async fn run_interactive(channel: Channel) -> Result<Printed, CtlError> {
    let (line_sender, mut lines) = mpsc::channel::<Option<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in std::io::BufRead::lines(stdin.lock()) {
            let Ok(line) = line else { break };
            if line_sender.blocking_send(Some(line)).is_err() {
                return;
            }
        }
        let _ = line_sender.blocking_send(None);
    });
    let (requests, mut responses) = open_stream(channel);
    let mut watchers = Watchers {
        pending: Default::default(),
        commands: Default::default(),
    };
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(Some(line)) = line else {
                    return Err(CtlError::InvalidInput(
                        "error reading watch request line: EOF".into(),
                    ));
                };
                if let Some((create, command)) = parse_line(line.trim())? {
                    watchers.pending.push_back(command);
                    requests
                        .send(create_request(create))
                        .await
                        .map_err(|_| CtlError::Failed("watch request could not be queued".into()))?;
                }
            }
            response = responses.recv() => {
                let Some(response) = response else { return Ok(Printed::default()) };
                watchers.handle(&response?)?;
            }
        }
    }
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
            ..Default::default()
        };
        assert!(matches!(args.request(), Err(CtlError::BadArgs(_))));
        let args = WatchArgs {
            range_end: None,
            ..args
        };
        assert_eq!(args.request().unwrap().range_end, b"b");
    }
}
