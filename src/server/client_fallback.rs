//! Calls on a client's HTTP/2 connection that [`super::unary_kv`] does not serve (watch,
//! lease, cluster, maintenance, plain HTTP over HTTP/2): handed to the tonic services with
//! their layers, each on a task of its own, the answer's frames piped back as they come.
//!
//! This is what hyper did for every call before; `grpc-timeout` is honoured here as tonic's
//! server honoured it (`CANCELLED`, "Timeout expired").

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http_body::{Body, Frame};
use tonic::codegen::http;
use tonic::Status;

/// The tonic services (with the gates and metrics around them) as one service.
pub trait ClientServices:
    tonic::codegen::Service<
        http::Request<RequestBody>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> ClientServices for S where
    S: tonic::codegen::Service<
            http::Request<RequestBody>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A request's body as the services read it: DATA frames (their flow-control capacity given
/// back as they are taken), then any trailers.
pub struct RequestBody {
    stream: RecvStream,
    data_done: bool,
}

impl RequestBody {
    pub fn new(stream: RecvStream) -> Self {
        RequestBody {
            stream,
            data_done: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => self.data_done = true,
            }
        }
        match ready!(self.stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// The deadline a client set with `grpc-timeout` (up to 8 digits and a unit, as gRPC's
/// protocol spells it), read as tonic read it; a malformed value is ignored.
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at_checked(unit_at)?;
    if digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The status of a call whose `grpc-timeout` passed, worded as tonic's.
pub fn timeout_expired() -> Status {
    Status::cancelled("Timeout expired")
}

/// Serves one call through `services` and sends its answer; returns when the answer is sent
/// or the client reset the stream.
pub async fn serve_call<S: ClientServices>(
    mut services: S,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let timeout = grpc_timeout(request.headers());
    let request = request.map(RequestBody::new);
    let answer = async {
        if std::future::poll_fn(|cx| services.poll_ready(cx))
            .await
            .is_err()
        {
            return Err(Status::unavailable("service not ready"));
        }
        let call = services.call(request);
        let response = match timeout {
            Some(after) => tokio::time::timeout(after, call)
                .await
                .map_err(|_| timeout_expired())?,
            None => call.await,
        };
        Ok(match response {
            Ok(response) => response,
            Err(never) => match never {},
        })
    };
    let answered = tokio::select! {
        answered = answer => answered,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let response = match answered {
        Ok(response) => response,
        Err(status) => {
            let (parts, ()) = status.into_http::<()>().into_parts();
            let _ = respond.send_response(http::Response::from_parts(parts, ()), true);
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    let ends = body.is_end_stream();
    let Ok(mut stream) = respond.send_response(http::Response::from_parts(parts, ()), ends) else {
        return;
    };
    if !ends {
        let _ = pipe_body(&mut body, &mut stream).await;
    }
}

/// Sends `body`'s frames on `stream`, waiting for the client's flow-control window; stops
/// when the body ends, fails, or the client resets the stream.
async fn pipe_body(body: &mut tonic::body::Body, stream: &mut SendStream<Bytes>) -> Result<(), ()> {
    loop {
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)) => frame,
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return Err(()),
        };
        match frame {
            None => return stream.send_data(Bytes::new(), true).map_err(drop),
            Some(Err(status)) => {
                // A body that fails mid-answer ends the call with its status, as tonic does.
                let mut trailers = http::HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                return stream.send_trailers(trailers).map_err(drop);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => send_all(stream, data).await?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return stream.send_trailers(trailers).map_err(drop);
                    }
                }
            },
        }
    }
}

/// Sends `data` once the stream has some of the client's flow-control window (as hyper
/// does: h2 holds what exceeds the window and sends it as the window opens; waiting for the
/// whole of it would cost a trip through the connection's task per message).
async fn send_all(stream: &mut SendStream<Bytes>, data: Bytes) -> Result<(), ()> {
    stream.reserve_capacity(1);
    while stream.capacity() == 0 {
        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(()),
        }
    }
    stream.send_data(data, false).map_err(drop)
}

/// A boxed call future, for the connection's set of tasks.
pub type CallTask = Pin<Box<dyn Future<Output = ()> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_str(value).unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_read_in_every_unit() {
        assert_eq!(with_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(with_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(with_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(with_timeout("4999m"), Some(Duration::from_millis(4999)));
        assert_eq!(with_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            with_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        // "+5S" passes, as tonic read it.
        assert_eq!(with_timeout("+5S"), Some(Duration::from_secs(5)));
        for bad in ["", "S", "5", "5s", "123456789S", "-5S", "5 S", "1.5S"] {
            assert_eq!(with_timeout(bad), None, "{bad:?}");
        }
    }
}
