//! A client's HTTP/2 connection, served on our side of the `h2` crate: the KV service's unary
//! calls are answered inside the connection's own task ([`UnaryKv`]); every other call goes
//! to the tonic services as before, each on a task of its own ([`super::client_fallback`]).
//!
//! Why the connection's own task: a put waits for the Raft loop, which wakes whoever waits;
//! waking the connection directly saves a task, its scheduling and a second wake per call. A
//! call whose handler may run long (a read over a range of keys) gets a task of its own
//! anyway, so it cannot hold up the connection's other calls.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::RecvStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http;
use tonic::Status;

use super::client_fallback::{grpc_timeout, serve_call, timeout_expired, CallTask, ClientServices};
use super::unary_kv::{declared_len, message_too_large, Answer, KvMethod, UnaryKv};

/// Settings as tonic's server (through hyper) used them, what clients met here before,
/// except for a bound (h2's default) on the streams a client's errors may leave reset.
fn builder() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_frame_size(16 << 10)
        .max_header_list_size(16 << 10)
        .max_send_buffer_size(400 << 10)
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// Serves `io` until the client leaves or `stop` turns true (then the calls in flight finish
/// first, as HTTP/2's graceful shutdown lets them).
pub async fn serve<IO, S>(
    io: IO,
    kv: Arc<UnaryKv>,
    services: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ClientServices,
{
    let mut connection = match builder().handshake::<_, Bytes>(io).await {
        Ok(connection) => connection,
        Err(err) => {
            tracing::debug!(%err, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut calls: FuturesUnordered<CallTask> = FuturesUnordered::new();
    // Other calls' tasks: aborted with the connection's task if the server stops without
    // waiting (their streams end with the connection anyway).
    let mut others = tokio::task::JoinSet::new();
    let mut stopping = false;
    let mut stopped = Box::pin(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    });
    loop {
        let next = std::future::poll_fn(|cx| {
            // Calls first: what they send goes out when the connection is polled next.
            while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {}
            while let Poll::Ready(Some(_)) = others.poll_join_next(cx) {}
            if !stopping && stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            connection.poll_accept(cx).map(Some)
        })
        .await;
        match next {
            None => {
                stopping = true;
                connection.graceful_shutdown();
            }
            Some(None) => break,
            Some(Some(Ok((request, respond)))) => match KvMethod::from_path(request.uri().path()) {
                Some(method) => calls.push(Box::pin(unary_call(
                    Arc::clone(&kv),
                    method,
                    request,
                    respond,
                ))),
                None => {
                    others.spawn(serve_call(services.clone(), request, respond));
                }
            },
            Some(Some(Err(err))) => {
                tracing::debug!(%err, "client HTTP/2 connection failed");
                break;
            }
        }
    }
}

async fn unary_call(
    kv: Arc<UnaryKv>,
    method: KvMethod,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, body) = request.into_parts();
    let metered = kv.metered(method, &parts.headers);
    let call = async {
        if let Some(refused) = kv.refusal(method, &parts.headers) {
            return Err(refused);
        }
        let body = read_body(body, kv.max_message_bytes()).await?;
        kv.call(method, body).await
    };
    let call = async {
        match grpc_timeout(&parts.headers) {
            Some(after) => tokio::time::timeout(after, call)
                .await
                .unwrap_or_else(|_| Err(timeout_expired())),
            None => call.await,
        }
    };
    // A panic fails this call alone, as it did when every call had a task of its own.
    let call = std::panic::AssertUnwindSafe(call).catch_unwind();
    // A client that resets the stream has given up: the call is dropped, as hyper dropped it.
    let answer = tokio::select! {
        biased;
        answer = call => answer.unwrap_or_else(|_| Err(Status::internal("etcdserver: the call failed"))),
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    metered.finish(&answer);
    send_answer(respond, answer);
}

/// A unary call's message from the request body, releasing flow-control capacity as the body
/// arrives. A message declared longer than `max_message_bytes` is refused as soon as its
/// length is known, before the rest of it is read; anything after the first message is read
/// and dropped (tonic ignored it too).
async fn read_body(mut body: RecvStream, max_message_bytes: usize) -> Result<Bytes, Status> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut complete = false;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|err| Status::internal(format!("h2 protocol error: {err}")))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        // A sender ends its body with an empty DATA frame: nothing to join.
        if complete || chunk.is_empty() {
            continue;
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut joined = BytesMut::with_capacity(head.len() + chunk.len());
                joined.extend_from_slice(head);
                joined.extend_from_slice(&chunk);
                more = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&chunk),
        }
        let read = more.as_deref().or(first.as_deref()).unwrap_or_default();
        if let Some(declared) = declared_len(read) {
            if declared > max_message_bytes {
                return Err(message_too_large(declared, max_message_bytes));
            }
            complete = read.len() >= 5 + declared;
        }
    }
    Ok(match (first, more) {
        (_, Some(joined)) => joined.freeze(),
        (Some(first), None) => first,
        (None, None) => Bytes::new(),
    })
}

fn send_answer(mut respond: SendResponse<Bytes>, answer: Answer) {
    let message = match answer {
        Ok(message) => message,
        Err(status) => return refuse(respond, status),
    };
    let head = http::Response::builder()
        .status(http::StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(())
        .expect("a fixed, valid head");
    let Ok(mut stream) = respond.send_response(head, false) else {
        return; // the client reset the stream: nobody to answer
    };
    let mut trailers = http::HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    // Capacity is not awaited: the answer is queued whole (h2 buffers up to its send limit
    // and sends as the client's window allows).
    if stream.send_data(message, false).is_ok() {
        let _ = stream.send_trailers(trailers);
    }
}

/// A trailers-only answer carrying `status`, as tonic writes it.
fn refuse(mut respond: SendResponse<Bytes>, status: Status) {
    let (parts, ()) = status.into_http::<()>().into_parts();
    let _ = respond.send_response(http::Response::from_parts(parts, ()), true);
}
