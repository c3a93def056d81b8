//! The load generator's gRPC channel for unary calls: requests go straight onto one HTTP/2
//! connection (the `h2` crate) instead of through tonic's `Channel`.
//!
//! Why: on a machine where the generator shares the cores with the server under test, every
//! microsecond the generator spends per request is taken from the server, and more from the
//! faster one. tonic's `Channel` hands each request to a buffer task, then to hyper's dispatch
//! task, which spawns a third task to pipe the request body into h2; here a request is one
//! boxed future on the calling client's task. Streaming workloads (watch, keepalive) keep
//! tonic's `Channel`: this channel sends a request only once its body has ended.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame};
use tonic::codegen::http::{self, uri::PathAndQuery, Uri};
use tonic::codegen::Bytes;

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

    /// The request's URI: tonic gives the method's path, HTTP/2 wants scheme and authority.
    fn full_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        parts.path_and_query = Some(path);
        Ok(Uri::from_parts(parts)?)
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for UnaryChannel {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The call waits for a stream slot itself, on its own clone of the sender.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (mut head, body) = request.into_parts();
        let uri = self.full_uri(&head.uri);
        let send = self.send.clone();
        let deadline = tokio::time::Instant::now() + self.timeout;
        Box::pin(async move {
            head.uri = uri?;
            let call = async move {
                let message = whole_body(body).await?;
                let mut send = send.ready().await?;
                let request = http::Request::from_parts(head, ());
                let (response, mut stream) = send.send_request(request, false)?;
                // Unary: the whole message and the end of the stream in one DATA frame.
                stream.send_data(message, true)?;
                let response = response.await?;
                Ok::<_, BoxError>(response.map(|stream| ResponseBody::new(stream, deadline)))
            };
            match tokio::time::timeout_at(deadline, call).await {
                Ok(answer) => answer,
                Err(_) => Err("request timed out".into()),
            }
        })
    }
}

/// The request body's bytes, once it has ended (unary requests end at once, in one frame).
async fn whole_body(mut body: tonic::body::Body) -> Result<Bytes, BoxError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        // Requests carry no trailers; nothing else to send.
        if let Ok(data) = frame?.into_data() {
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

/// A response body read off its HTTP/2 stream: the data frames, then the trailers (where
/// gRPC puts its status); the call's deadline bounds it too.
pub struct ResponseBody {
    stream: h2::RecvStream,
    data_done: bool,
    trailers_done: bool,
    deadline: tokio::time::Instant,
    /// Armed only when the body has to wait (a unary answer has usually arrived whole).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ResponseBody {
    fn new(stream: h2::RecvStream, deadline: tokio::time::Instant) -> ResponseBody {
        ResponseBody {
            stream,
            data_done: false,
            trailers_done: false,
            deadline,
            timer: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.as_mut().poll_stream(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BoxError::from))),
            Poll::Pending => {
                let deadline = self.deadline;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(timer.as_mut().poll(cx));
                // Over: later polls see the end of the body.
                self.data_done = true;
                self.trailers_done = true;
                Poll::Ready(Some(Err("request timed out".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_done || (self.data_done && self.stream.is_end_stream())
    }
}

impl ResponseBody {
    fn poll_stream(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read bytes give their window back, or a long run would stall.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => self.data_done = true,
            }
        }
        if self.trailers_done {
            return Poll::Ready(None);
        }
        let trailers = ready!(self.stream.poll_trailers(cx));
        self.trailers_done = true;
        Poll::Ready(match trailers {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        })
    }
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

    #[test]
    fn origins_are_plain_http_with_an_authority() {
        let origin = plain_origin("127.0.0.1:2379").unwrap();
        assert_eq!(origin.scheme_str(), Some("http"));
        assert_eq!(origin.authority().unwrap().as_str(), "127.0.0.1:2379");
        assert!(plain_origin("https://127.0.0.1:2379").is_err());
    }

    #[tokio::test]
    async fn a_body_of_several_frames_is_sent_whole() {
        let chunks: Vec<Result<Frame<Bytes>, tonic::Status>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ];
        let body = tonic::body::Body::new(StreamBody(chunks.into_iter()));
        assert_eq!(&whole_body(body).await.unwrap()[..], b"abcd");
        let single: Vec<Result<Frame<Bytes>, tonic::Status>> =
            vec![Ok(Frame::data(Bytes::from_static(b"xyz")))];
        let body = tonic::body::Body::new(StreamBody(single.into_iter()));
        assert_eq!(&whole_body(body).await.unwrap()[..], b"xyz");
        assert!(whole_body(tonic::body::Body::empty())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn an_answer_that_stops_midway_fails_at_the_calls_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        // A server that sends the answer's head and one byte of it, then goes quiet.
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(socket).await.unwrap();
            let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
            let head = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut body = respond.send_response(head, false).unwrap();
            body.send_data(Bytes::from_static(b"\0"), false).unwrap();
            // Keep the connection served (and the stream open) until the test ends.
            let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
        });
        let channel = UnaryChannel::connect(origin, Duration::from_millis(200))
            .await
            .unwrap();
        let mut client = crate::proto::etcdserverpb::kv_client::KvClient::new(channel);
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            client.range(crate::proto::etcdserverpb::RangeRequest::default()),
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
        let mut client = crate::proto::etcdserverpb::kv_client::KvClient::new(channel);
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            client.range(crate::proto::etcdserverpb::RangeRequest::default()),
        )
        .await
        .expect("fails long before the call's 30 s deadline");
        assert!(outcome.is_err(), "{outcome:?}");
    }

    /// A body whose frames are all ready.
    struct StreamBody<I>(I);

    impl<I> Body for StreamBody<I>
    where
        I: Iterator<Item = Result<Frame<Bytes>, tonic::Status>> + Unpin,
    {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            Poll::Ready(self.0.next())
        }
    }
}
