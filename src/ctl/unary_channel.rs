//! The load generator's gRPC channel for unary calls: a request is encoded, framed and sent
//! straight onto one HTTP/2 connection (the `h2` crate), and its answer read back, with no
//! tonic client between.
//!
//! Why: on a machine where the generator shares the cores with the server under test, every
//! microsecond the generator spends per request is taken from the server, and more from the
//! faster one. tonic's `Channel` hands each request to a buffer task, then to hyper's dispatch
//! task, which spawns a third task to pipe the request body into h2; and tonic's codec wraps
//! even a unary call's one message in its streaming machinery. Here a call is one future on
//! the calling client's task. Streaming workloads (watch, keepalive) keep tonic's `Channel`.

use std::time::Duration;

use prost::Message;
use tonic::codegen::http::{self, uri::PathAndQuery, Uri};
use tonic::codegen::Bytes;
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/2 windows as hyper's client sets them: small answers never wait for a window update.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;

/// One HTTP/2 connection for unary gRPC calls; clones share the connection.
#[derive(Clone)]
pub struct UnaryChannel {
    send: h2::client::SendRequest<Bytes>,
    /// `http://host:port`, the scheme and authority every request carries.
    origin: Uri,
    /// Bounds each call, as `--command-timeout` bounds tonic's channel.
    timeout: Duration,
}

impl UnaryChannel {
    /// Dials a plain-TCP endpoint (`http://host:port`), with writes coalesced as the server's
    /// answers are (see [`crate::coalesced_writes`]).
    pub async fn connect(origin: Uri, timeout: Duration) -> Result<UnaryChannel, BoxError> {
        let connection = crate::coalesced_writes::dial(&origin).await?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(connection)
            .await?;
        tokio::spawn(async move {
            // Ends when every clone is dropped or the peer goes; calls in flight then fail.
            let _ = connection.await;
        });
        Ok(UnaryChannel {
            send,
            origin,
            timeout,
        })
    }

    /// Calls the unary gRPC method at `path` (`/package.Service/Method`): the request in one
    /// DATA frame that ends the stream, the answer read whole, its status from the trailers
    /// (or from the head of a trailers-only answer). The channel's timeout bounds it all.
    pub async fn unary<Req: Message, Resp: Message + Default>(
        &self,
        path: &'static str,
        request: &Req,
    ) -> Result<Resp, Status> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, self.exchange(path, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded("request timed out")),
        }
    }

    async fn exchange<Req: Message, Resp: Message + Default>(
        &self,
        path: &'static str,
        request: &Req,
    ) -> Result<Resp, Status> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        parts.path_and_query = Some(PathAndQuery::from_static(path));
        let uri = Uri::from_parts(parts).map_err(|err| Status::internal(err.to_string()))?;
        let head = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|err| Status::internal(err.to_string()))?;
        let mut send = self.send.clone().ready().await.map_err(transport)?;
        let (response, mut stream) = send.send_request(head, false).map_err(transport)?;
        stream
            .send_data(framed(request)?, true)
            .map_err(transport)?;
        let (head, mut body) = response.await.map_err(transport)?.into_parts();
        if let Some(status) = answered_status(&head.headers) {
            return Err(status);
        }
        if head.status != http::StatusCode::OK {
            return Err(Status::unknown(format!("HTTP status {}", head.status)));
        }
        let mut message: Option<Bytes> = None;
        while let Some(data) = body.data().await {
            let data = data.map_err(transport)?;
            // Read bytes give their window back, or a long run would stall.
            let _ = body.flow_control().release_capacity(data.len());
            message = Some(match message.take() {
                None => data,
                Some(first) => Bytes::from([first, data].concat()),
            });
        }
        let trailers = body.trailers().await.map_err(transport)?;
        match trailers.as_ref().and_then(answered_status) {
            Some(status) => Err(status),
            None if trailers.is_none() => Err(Status::internal("an answer without a gRPC status")),
            None => unframed(message.unwrap_or_default()),
        }
    }
}

/// The status an answer's head or trailers carry, unless it is OK.
fn answered_status(headers: &http::HeaderMap) -> Option<Status> {
    if !headers.contains_key("grpc-status") {
        return None;
    }
    Status::from_header_map(headers).filter(|status| status.code() != tonic::Code::Ok)
}

/// A connection-level failure, as tonic's channel reports one.
fn transport(err: h2::Error) -> Status {
    Status::unavailable(format!("transport error: {err}"))
}

/// `message` as one uncompressed gRPC frame.
fn framed(message: &impl Message) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let declared = u32::try_from(len).map_err(|_| Status::internal("request too large"))?;
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&declared.to_be_bytes());
    message
        .encode(&mut out)
        .map_err(|err| Status::internal(err.to_string()))?;
    Ok(Bytes::from(out))
}

/// The message in an answer's one gRPC frame.
fn unframed<Resp: Message + Default>(body: Bytes) -> Result<Resp, Status> {
    let Some(prefix) = body.get(..5) else {
        return Err(Status::internal("an answer without a message"));
    };
    if prefix[0] != 0 {
        return Err(Status::internal("a compressed answer (none was asked for)"));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let message = body
        .get(5..)
        .filter(|rest| rest.len() == len)
        .ok_or_else(|| Status::internal("an answer that is not one whole message"))?;
    Resp::decode(message).map_err(|err| Status::internal(err.to_string()))
}

/// `host:port` or `http://host:port` as an origin URI; `https://` is not for this channel.
pub fn plain_origin(endpoint: &str) -> Result<Uri, String> {
    let url = super::connect::endpoint_url(endpoint);
    if url.to_ascii_lowercase().starts_with("https://") {
        return Err("TLS endpoints use tonic's channel".to_string());
    }
    url.parse::<Uri>()
        .map_err(|err| format!("bad endpoint {endpoint:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};

    #[test]
    fn origins_are_plain_http_with_an_authority() {
        let origin = plain_origin("127.0.0.1:2379").unwrap();
        assert_eq!(origin.scheme_str(), Some("http"));
        assert_eq!(origin.authority().unwrap().as_str(), "127.0.0.1:2379");
        assert!(plain_origin("https://127.0.0.1:2379").is_err());
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let answer = RangeResponse {
            count: 7,
            ..Default::default()
        };
        let bytes = framed(&answer).unwrap();
        assert_eq!(unframed::<RangeResponse>(bytes.clone()).unwrap(), answer);
        assert!(unframed::<RangeResponse>(bytes.slice(..bytes.len() - 1)).is_err());
        assert!(unframed::<RangeResponse>(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
        assert!(unframed::<RangeResponse>(Bytes::from_static(&[0, 0])).is_err());
    }

    /// A server on loopback that answers its first call with `answer`; returns its origin.
    async fn one_answer_server(
        answer: impl FnOnce(h2::server::SendResponse<Bytes>) + Send + 'static,
    ) -> (Uri, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(socket).await.unwrap();
            let (request, respond) = connection.accept().await.unwrap().unwrap();
            assert_eq!(request.uri().path(), "/etcdserverpb.KV/Range");
            answer(respond);
            // Keep the connection served (and the stream open) until the test ends.
            let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
        });
        (origin, server)
    }

    fn grpc_head() -> http::Response<()> {
        http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_split_across_frames_is_read_whole() {
        let (origin, server) = one_answer_server(|mut respond| {
            let message = framed(&RangeResponse {
                count: 42,
                ..Default::default()
            })
            .unwrap();
            let mut body = respond.send_response(grpc_head(), false).unwrap();
            body.send_data(message.slice(..3), false).unwrap();
            body.send_data(message.slice(3..), false).unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            body.send_trailers(trailers).unwrap();
        })
        .await;
        let channel = UnaryChannel::connect(origin, Duration::from_secs(5))
            .await
            .unwrap();
        let answer: RangeResponse = channel
            .unary("/etcdserverpb.KV/Range", &RangeRequest::default())
            .await
            .unwrap();
        assert_eq!(answer.count, 42);
        server.abort();
    }

    #[tokio::test]
    async fn a_trailers_only_refusal_is_its_status() {
        let (origin, server) = one_answer_server(|mut respond| {
            let status =
                Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
            let (parts, ()) = status.into_http::<()>().into_parts();
            respond
                .send_response(http::Response::from_parts(parts, ()), true)
                .unwrap();
        })
        .await;
        let channel = UnaryChannel::connect(origin, Duration::from_secs(5))
            .await
            .unwrap();
        let refused = channel
            .unary::<_, RangeResponse>("/etcdserverpb.KV/Range", &RangeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::OutOfRange);
        assert!(refused.message().contains("compacted"), "{refused:?}");
        server.abort();
    }

    #[tokio::test]
    async fn an_answer_that_stops_midway_fails_at_the_calls_deadline() {
        // A server that sends the answer's head and one byte of it, then goes quiet.
        let (origin, server) = one_answer_server(|mut respond| {
            let mut body = respond.send_response(grpc_head(), false).unwrap();
            body.send_data(Bytes::from_static(b"\0"), false).unwrap();
            std::mem::forget(body);
        })
        .await;
        let channel = UnaryChannel::connect(origin, Duration::from_millis(200))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            channel.unary::<_, RangeResponse>("/etcdserverpb.KV/Range", &RangeRequest::default()),
        )
        .await
        .expect("the call's own deadline ends it");
        let status = outcome.expect_err("a half answer is no answer");
        assert!(status.message().contains("timed out"), "{status:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        server.abort();
    }

    #[tokio::test]
    async fn a_call_on_a_connection_the_peer_dropped_fails_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        // A server that completes the HTTP/2 handshake, then goes away.
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let connection = h2::server::handshake(socket).await.unwrap();
            drop(connection);
        });
        let channel = UnaryChannel::connect(origin, Duration::from_secs(30))
            .await
            .unwrap();
        server.await.unwrap();
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            channel.unary::<_, RangeResponse>("/etcdserverpb.KV/Range", &RangeRequest::default()),
        )
        .await
        .expect("fails long before the call's 30 s deadline");
        assert!(outcome.is_err(), "{outcome:?}");
    }
}
