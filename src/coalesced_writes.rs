//! Connections whose writes wait one pass of the scheduler, so that messages finishing
//! together leave in one `writev`: the server's client connections, and the load generator's.
//!
//! Every answer on an HTTP/2 connection is finished by its own task, which wakes the
//! connection's task; tokio runs a task woken that way next, on the same worker (its "LIFO
//! slot"), so the connection wrote each answer with a system call of its own even when a
//! hundred finished at once (a checkpoint round answering every waiting keepalive, a burst
//! of reads): 0.67 writes a response under 100 concurrent clients, and `writev` was a quarter
//! of the server's time on keepalives. Yielding once before the first write of a burst lets
//! the other ready tasks queue their frames first; h2 then writes them all together.
//!
//! A yield costs a trip through the run queue and the I/O driver (6-15 us measured on a
//! single client's serializable gets), so a connection yields only while yielding pays: after
//! `n` yields in a row that found nothing more to write, the next `2^n - 1` bursts (at most
//! `MAX_SKIPPED_BURSTS`) go out at once, and then one yield tries again.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Where a burst of writes stands.
enum Burst {
    /// The last burst was flushed: the next write yields first.
    Flushed,
    /// Yielding to the tasks that were ready before this write.
    Yielding(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Yielded already: writes go straight to the socket until the next flush.
    Writing,
}

/// Most bursts written without yielding after yields that gathered nothing.
const MAX_SKIPPED_BURSTS: u32 = 7;

/// A client connection (see the module docs).
pub struct CoalescedWrites {
    inner: TcpStream,
    burst: Burst,
    /// Bytes offered by the write that started the current yield.
    offered_before_yield: usize,
    /// Yields in a row that gathered nothing.
    idle_yields: u32,
    /// Bursts still to write without yielding.
    skip_yields: u32,
}

impl CoalescedWrites {
    pub fn new(inner: TcpStream) -> CoalescedWrites {
        CoalescedWrites {
            inner,
            burst: Burst::Flushed,
            offered_before_yield: 0,
            idle_yields: 0,
            skip_yields: 0,
        }
    }

    /// Ready once this burst may write: it has yielded to the tasks queued before it, or
    /// yielding does not pay on this connection now. `offered`: the bytes h2 asks to write.
    fn poll_yielded(&mut self, cx: &mut Context<'_>, offered: usize) -> Poll<()> {
        loop {
            match &mut self.burst {
                Burst::Flushed if self.skip_yields > 0 => {
                    self.skip_yields -= 1;
                    self.burst = Burst::Writing;
                }
                Burst::Flushed => {
                    self.offered_before_yield = offered;
                    self.burst = Burst::Yielding(Box::pin(tokio::task::yield_now()));
                }
                Burst::Yielding(yielding) => {
                    ready!(yielding.as_mut().poll(cx));
                    if offered > self.offered_before_yield {
                        self.idle_yields = 0;
                    } else {
                        self.idle_yields = (self.idle_yields + 1).min(3);
                        self.skip_yields = ((1 << self.idle_yields) - 1).min(MAX_SKIPPED_BURSTS);
                    }
                    self.burst = Burst::Writing;
                }
                Burst::Writing => return Poll::Ready(()),
            }
        }
    }
}

impl AsyncRead for CoalescedWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescedWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_yielded(cx, buf.len()));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let offered = bufs.iter().map(|buf| buf.len()).sum();
        ready!(self.poll_yielded(cx, offered));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.burst = Burst::Flushed;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for CoalescedWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// Dials plain-TCP connections with coalesced writes, for a tonic `Endpoint`: the load
/// generator's hundred clients share a few connections, and their requests then leave
/// together as the server's answers do.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoalescingConnector;

impl tower_service::Service<tonic::codegen::http::Uri> for CoalescingConnector {
    type Response = hyper_util::rt::TokioIo<CoalescedWrites>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        Box::pin(async move {
            let Some(authority) = uri.authority() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no host:port in {uri}"),
                ));
            };
            // As tonic's own connector: no port means HTTP's.
            let address = match authority.port_u16() {
                Some(_) => authority.as_str().to_string(),
                None => format!("{}:80", authority.host()),
            };
            let stream = TcpStream::connect(address).await?;
            // As the server: small messages must not wait for the peer's delayed ACK.
            stream.set_nodelay(true)?;
            Ok(hyper_util::rt::TokioIo::new(CoalescedWrites::new(stream)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn connected_pair() -> (CoalescedWrites, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (CoalescedWrites::new(accepted.unwrap().0), dialed.unwrap())
    }

    /// One poll of a write of `bytes`, as h2 makes it.
    async fn write_once(connection: &mut CoalescedWrites, bytes: &[u8]) -> Poll<usize> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut *connection).poll_write(cx, bytes) {
                Poll::Ready(written) => Poll::Ready(written.unwrap()),
                Poll::Pending => Poll::Pending,
            })
        })
        .await
    }

    async fn flush(connection: &mut CoalescedWrites) {
        std::future::poll_fn(|cx| Pin::new(&mut *connection).poll_flush(cx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_burst_yields_once_and_stops_yielding_while_yields_gather_nothing() {
        let (mut connection, mut peer) = connected_pair().await;
        assert_eq!(
            write_once(&mut connection, b"a").await,
            Poll::Pending,
            "yields first"
        );
        assert_eq!(write_once(&mut connection, b"a").await, Poll::Ready(1));
        assert_eq!(
            write_once(&mut connection, b"b").await,
            Poll::Ready(1),
            "same burst"
        );
        flush(&mut connection).await;
        // That yield gathered nothing more: the next burst goes out at once.
        assert_eq!(write_once(&mut connection, b"c").await, Poll::Ready(1));
        flush(&mut connection).await;
        assert_eq!(write_once(&mut connection, b"d").await, Poll::Pending);
        // This one gathered more (h2 offers its grown buffer): keep yielding.
        assert_eq!(write_once(&mut connection, b"de").await, Poll::Ready(2));
        flush(&mut connection).await;
        assert_eq!(write_once(&mut connection, b"f").await, Poll::Pending);
        assert_eq!(write_once(&mut connection, b"f").await, Poll::Ready(1));
        flush(&mut connection).await;
        let mut received = [0u8; 6];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"abcdef", "every byte, in order");
    }

    #[tokio::test]
    async fn idle_yields_in_a_row_skip_more_bursts_up_to_a_bound() {
        let (mut connection, _peer) = connected_pair().await;
        let mut skipped_after_each_idle_yield = Vec::new();
        assert_eq!(write_once(&mut connection, b"x").await, Poll::Pending);
        for _ in 0..5 {
            // The yield ends with nothing more offered: an idle one.
            assert_eq!(write_once(&mut connection, b"x").await, Poll::Ready(1));
            flush(&mut connection).await;
            let mut skipped = 0;
            // Bursts out at once, until one yields again.
            while write_once(&mut connection, b"x").await.is_ready() {
                flush(&mut connection).await;
                skipped += 1;
            }
            skipped_after_each_idle_yield.push(skipped);
        }
        assert_eq!(skipped_after_each_idle_yield, [1, 3, 7, 7, 7]);
    }
}
