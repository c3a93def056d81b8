//! Connections that hold what h2 writes and send it with one system call when h2 flushes,
//! after letting the scheduler run once: the server's client connections, and the load
//! generator's.
//!
//! Every answer on an HTTP/2 connection is finished by its own task, which wakes the
//! connection's task; tokio runs a task woken that way next, on the same worker (its "LIFO
//! slot"), so the connection wrote each answer with a system call of its own even when a
//! hundred finished at once (a checkpoint round answering every waiting keepalive, a burst
//! of reads): 0.67 writes a response under 100 concurrent clients, and `writev` was a quarter
//! of the server's time on keepalives. Yielding once before a burst goes out lets the other
//! ready tasks queue their frames first; h2 then hands them all over together. The yield
//! lasts until tokio's deferred wake ([`YieldWake`]), not merely until the next poll.
//!
//! h2 itself sends a DATA frame of more than 256 bytes from the caller's buffer rather than
//! copying it into its own, and must write out everything before it can take the next such
//! frame: a put of a 256-byte value cost the load generator 1.47 `writev`s a request, each
//! carrying the loopback receiver's TCP work too (a third of the generator's time). So this
//! connection tells h2 it has no vectored writes (h2 then copies frames up to 1 KiB) and
//! keeps every write in its own buffer until h2 flushes: one system call a flush however
//! many frames it carries. This relies on h2 flushing after every batch of frames it
//! writes and before it shuts down (`FramedWrite::flush`), which it does.
//!
//! A yield costs a trip through the run queue and the I/O driver (6-15 us measured on a
//! single client's serializable gets), so a connection yields only while yielding pays: after
//! `n` yields in a row that found nothing more to write, the next `2^n - 1` bursts (at most
//! `MAX_SKIPPED_BURSTS`) go out at once, and then one yield tries again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Where a burst of writes stands.
enum Burst {
    /// Nothing held since the last flush: the next flush of held bytes yields first.
    Flushed,
    /// Yielding to the tasks that were ready before this flush, until tokio's deferred wake.
    Yielding(Arc<YieldWake>),
    /// Yielded already (or skipping the yield): the held bytes go to the socket now.
    Writing,
}

/// Most bursts written without yielding after yields that gathered nothing.
const MAX_SKIPPED_BURSTS: u32 = 7;

/// Most bytes held between flushes; a write that would pass it sends what is held first.
const MAX_HELD: usize = 64 * 1024;

/// The buffer kept between bursts (a burst of small answers fits); one that grew past it is
/// given back after its burst, so ten thousand idle watch connections hold 40 MiB at most.
const KEPT_CAPACITY: usize = 4 * 1024;

/// The wake of a yield: tokio defers it until the worker has run the tasks already ready (or
/// polls its I/O driver), whatever else wakes the task meanwhile. `yield_now` alone is ready
/// at the next poll of any cause, and each answer finished wakes the connection's task
/// through tokio's LIFO slot at once: a yield then gathered one more answer, not all of the
/// burst (2.4 answers a `sendto` under a hundred clients' gets; 6.7 waiting for this wake).
///
/// Deferred wakes belong to the worker thread that took them: a yield polled on another
/// thread (the task moved to the worker that woke it) waits for that worker's deferred wake
/// instead, not for the first worker, which may be busy with a long task. Ending the yield
/// there instead cost a third more `sendto`s on two workers.
struct YieldWake {
    fired: AtomicBool,
    /// The waker of the task's latest poll, as the `Future` contract wants woken.
    task: parking_lot::Mutex<Waker>,
    thread: std::thread::ThreadId,
}

impl YieldWake {
    fn register(cx: &mut Context<'_>) -> Arc<YieldWake> {
        let wake = Arc::new(YieldWake {
            fired: AtomicBool::new(false),
            task: parking_lot::Mutex::new(cx.waker().clone()),
            thread: std::thread::current().id(),
        });
        let waker = Waker::from(Arc::clone(&wake));
        let mut yielding = std::pin::pin!(tokio::task::yield_now());
        // The first poll hands `waker` to tokio's deferred wakes (or, outside a runtime,
        // wakes it at once) and is pending.
        if yielding
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            wake.fired.store(true, Ordering::Release);
        }
        wake
    }

    /// Registered on another thread than this poll's, and not yet woken.
    fn left_behind(&self) -> bool {
        !self.fired.load(Ordering::Acquire) && std::thread::current().id() != self.thread
    }

    /// Whether the yield is over; if not, the task's latest waker is the one to wake.
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut task = self.task.lock();
            if !task.will_wake(cx.waker()) {
                task.clone_from(cx.waker());
            }
        }
        // A wake that came while the waker was being replaced woke the old one.
        if self.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Wake for YieldWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.lock().wake_by_ref();
    }
}

/// A client connection (see the module docs).
pub struct CoalescedWrites {
    inner: TcpStream,
    /// Bytes h2 has written and the socket has not yet taken, from `sent` on.
    held: Vec<u8>,
    sent: usize,
    burst: Burst,
    /// Bytes ever taken from h2, and that count when the current yield started: whether a
    /// yield gathered anything (bytes held may have gone out meanwhile, so not `held.len()`).
    taken: u64,
    taken_before_yield: u64,
    /// Yields in a row that gathered nothing.
    idle_yields: u32,
    /// Bursts still to write without yielding.
    skip_yields: u32,
}

impl CoalescedWrites {
    pub fn new(inner: TcpStream) -> CoalescedWrites {
        CoalescedWrites {
            inner,
            held: Vec::new(),
            sent: 0,
            burst: Burst::Flushed,
            taken: 0,
            taken_before_yield: 0,
            idle_yields: 0,
            skip_yields: 0,
        }
    }

    /// Ready once this burst may go out: it has yielded to the tasks queued before it, or
    /// yielding does not pay on this connection now.
    fn poll_yielded(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.burst {
                Burst::Flushed if self.skip_yields > 0 => {
                    self.skip_yields -= 1;
                    self.burst = Burst::Writing;
                }
                Burst::Flushed => {
                    self.taken_before_yield = self.taken;
                    self.burst = Burst::Yielding(YieldWake::register(cx));
                }
                Burst::Yielding(wake) => {
                    if wake.left_behind() {
                        *wake = YieldWake::register(cx);
                    }
                    // Polls before the deferred wake come from other wakes of this task (the
                    // answers joining the burst); the burst waits for the rest of them.
                    ready!(wake.poll_fired(cx));
                    if self.taken > self.taken_before_yield {
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

    /// Writes every held byte to the socket.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        self.held.clear();
        self.sent = 0;
        if self.held.capacity() > KEPT_CAPACITY {
            self.held.shrink_to(KEPT_CAPACITY);
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `bufs` into the held bytes, or, when they would not fit, sends what is held
    /// first; a write bigger than the whole buffer then goes straight to the socket (h2's
    /// frames are 16 KiB unless the peer allows larger ones, so this is rare).
    fn poll_hold(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let offered: usize = bufs.iter().map(|buf| buf.len()).sum();
        if self.held.len() + offered > MAX_HELD {
            ready!(self.poll_send_held(cx))?;
            if offered > MAX_HELD {
                let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
                self.taken += written as u64;
                return Poll::Ready(Ok(written));
            }
        }
        for buf in bufs {
            self.held.extend_from_slice(buf);
        }
        self.taken += offered as u64;
        Poll::Ready(Ok(offered))
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
        self.poll_hold(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_hold(cx, bufs)
    }

    /// No: h2 then copies frames of up to 1 KiB into its buffer instead of asking for a
    /// write of each (see the module docs); the held buffer gathers the rest.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held.len() > self.sent {
            ready!(self.poll_yielded(cx));
            ready!(self.poll_send_held(cx))?;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.burst = Burst::Flushed;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
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
        Box::pin(async move { Ok(hyper_util::rt::TokioIo::new(dial(&uri).await?)) })
    }
}

/// Dials `uri`'s `host:port` (no port: HTTP's, as tonic's own connector) over plain TCP.
pub async fn dial(uri: &tonic::codegen::http::Uri) -> io::Result<CoalescedWrites> {
    let Some(authority) = uri.authority() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no host:port in {uri}"),
        ));
    };
    let address = match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:80", authority.host()),
    };
    let stream = TcpStream::connect(address).await?;
    // As the server: small messages must not wait for the peer's delayed ACK.
    stream.set_nodelay(true)?;
    Ok(CoalescedWrites::new(stream))
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

    async fn write(connection: &mut CoalescedWrites, bytes: &[u8]) {
        let written = std::future::poll_fn(|cx| Pin::new(&mut *connection).poll_write(cx, bytes))
            .await
            .unwrap();
        assert_eq!(written, bytes.len(), "a write is taken whole");
    }

    /// One poll of a flush, as h2 makes it.
    async fn flush_once(connection: &mut CoalescedWrites) -> Poll<()> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut *connection).poll_flush(cx) {
                Poll::Ready(flushed) => {
                    flushed.unwrap();
                    Poll::Ready(())
                }
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

    /// Waits briefly for bytes: whatever the peer has received by then.
    async fn received_now(peer: &mut TcpStream) -> Vec<u8> {
        let mut received = vec![0u8; 4 * MAX_HELD];
        match tokio::time::timeout(
            std::time::Duration::from_millis(50),
            peer.read(&mut received),
        )
        .await
        {
            Ok(read) => received.truncate(read.unwrap()),
            Err(_) => received.clear(),
        }
        received
    }

    #[tokio::test]
    async fn writes_are_held_until_a_flush_which_yields_once_first() {
        let (mut connection, mut peer) = connected_pair().await;
        assert!(!connection.is_write_vectored(), "h2 must copy small frames");
        write(&mut connection, b"ab").await;
        write(&mut connection, &[b'c'; 300]).await;
        assert!(
            received_now(&mut peer).await.is_empty(),
            "held until flushed"
        );
        assert_eq!(
            flush_once(&mut connection).await,
            Poll::Pending,
            "yields first"
        );
        assert!(received_now(&mut peer).await.is_empty());
        // What the other tasks queued meanwhile joins the burst.
        write(&mut connection, b"d").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Ready(()));
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&[b'c'; 300]);
        expected.push(b'd');
        let mut received = vec![0u8; expected.len()];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(received, expected, "every byte, in order");
        assert_eq!(
            flush_once(&mut connection).await,
            Poll::Ready(()),
            "nothing held"
        );
    }

    #[tokio::test]
    async fn a_yield_lasts_until_the_ready_tasks_have_run_however_often_it_is_polled() {
        let (mut connection, mut peer) = connected_pair().await;
        write(&mut connection, b"a").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
        // Polled again by another wake (an answer finished) before the scheduler ran the
        // other ready tasks: still yielding, and what that wake brought joins the burst.
        write(&mut connection, b"b").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
        write(&mut connection, b"c").await;
        assert!(received_now_without_yielding(&mut peer).is_empty());
        tokio::task::yield_now().await;
        assert_eq!(flush_once(&mut connection).await, Poll::Ready(()));
        let mut received = [0u8; 3];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"abc");
    }

    #[tokio::test]
    async fn a_yield_left_on_another_thread_does_not_wait_for_that_thread() {
        let (mut connection, mut peer) = connected_pair().await;
        write(&mut connection, b"a").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
        // This test's thread is blocked below and never gets to its deferred wakes; the
        // poll from the other thread takes a deferred wake there (none outside a runtime:
        // at once) and the burst goes out.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut cx = Context::from_waker(Waker::noop());
                let flushed = Pin::new(&mut connection).poll_flush(&mut cx);
                assert!(matches!(flushed, Poll::Ready(Ok(()))), "{flushed:?}");
            });
        });
        let mut received = [0u8; 1];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"a");
    }

    /// What the peer has received, without letting the scheduler run.
    fn received_now_without_yielding(peer: &mut TcpStream) -> Vec<u8> {
        let mut received = vec![0u8; 16];
        match peer.try_read(&mut received) {
            Ok(read) => received.truncate(read),
            Err(_) => received.clear(),
        }
        received
    }

    #[tokio::test]
    async fn idle_yields_in_a_row_skip_more_bursts_up_to_a_bound() {
        let (mut connection, _peer) = connected_pair().await;
        let mut skipped_after_each_idle_yield = Vec::new();
        write(&mut connection, b"x").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
        for _ in 0..5 {
            // The yield ends with nothing more held: an idle one.
            tokio::task::yield_now().await;
            assert_eq!(flush_once(&mut connection).await, Poll::Ready(()));
            let mut skipped = 0;
            // Bursts out at once, until one yields again.
            loop {
                write(&mut connection, b"x").await;
                if flush_once(&mut connection).await.is_pending() {
                    break;
                }
                skipped += 1;
            }
            skipped_after_each_idle_yield.push(skipped);
        }
        assert_eq!(skipped_after_each_idle_yield, [1, 3, 7, 7, 7]);
        // A yield that gathers more resets the count: the next burst yields again.
        write(&mut connection, b"y").await;
        tokio::task::yield_now().await;
        assert_eq!(flush_once(&mut connection).await, Poll::Ready(()));
        write(&mut connection, b"z").await;
        assert_eq!(flush_once(&mut connection).await, Poll::Pending);
    }

    #[tokio::test]
    async fn a_write_past_the_held_limit_sends_what_is_held_first_and_keeps_order() {
        let (mut connection, mut peer) = connected_pair().await;
        let reader = tokio::spawn(async move {
            let mut received = vec![0u8; 10 + MAX_HELD + 1 + 5];
            peer.read_exact(&mut received).await.unwrap();
            received
        });
        write(&mut connection, &[1; 10]).await;
        let big = vec![2u8; MAX_HELD + 1];
        let mut offered = &big[..];
        while !offered.is_empty() {
            let written =
                std::future::poll_fn(|cx| Pin::new(&mut connection).poll_write(cx, offered))
                    .await
                    .unwrap();
            offered = &offered[written..];
        }
        write(&mut connection, &[3; 5]).await;
        flush(&mut connection).await;
        let received = reader.await.unwrap();
        assert!(received[..10].iter().all(|&b| b == 1));
        assert!(received[10..10 + MAX_HELD + 1].iter().all(|&b| b == 2));
        assert!(received[10 + MAX_HELD + 1..].iter().all(|&b| b == 3));
        assert!(
            connection.held.capacity() <= KEPT_CAPACITY,
            "the grown buffer is given back after its burst"
        );
    }

    #[tokio::test]
    async fn bytes_held_while_the_peer_stops_reading_go_out_in_order_once_it_reads() {
        let (mut connection, mut peer) = connected_pair().await;
        let pattern = |n: usize| (n % 251) as u8;
        let mut written = 0usize;
        let chunk = 16 * 1024;
        // Fill the socket until a flush cannot finish: part of the held bytes went out.
        loop {
            let bytes: Vec<u8> = (written..written + chunk).map(pattern).collect();
            write(&mut connection, &bytes).await;
            written += chunk;
            let flushed =
                tokio::time::timeout(std::time::Duration::from_millis(50), flush(&mut connection))
                    .await;
            if flushed.is_err() {
                break;
            }
            assert!(written < 256 << 20, "the socket never filled");
        }
        // More frames arrive while the send is stuck; they queue behind the rest.
        let bytes: Vec<u8> = (written..written + 100).map(pattern).collect();
        write(&mut connection, &bytes).await;
        written += 100;
        let reader = tokio::spawn(async move {
            let mut received = vec![0u8; written];
            peer.read_exact(&mut received).await.unwrap();
            received
        });
        flush(&mut connection).await;
        let received = reader.await.unwrap();
        assert!(
            received.iter().enumerate().all(|(n, &b)| b == pattern(n)),
            "every byte once, in order"
        );
    }

    #[tokio::test]
    async fn a_flush_to_a_peer_that_has_gone_fails_instead_of_hanging() {
        let (mut connection, peer) = connected_pair().await;
        drop(peer);
        let failed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            // The first bytes may still fit the socket's buffer; the peer's reset then fails
            // a later flush.
            for _ in 0..100 {
                write(&mut connection, &[7; 1024]).await;
                let flushed =
                    std::future::poll_fn(|cx| Pin::new(&mut connection).poll_flush(cx)).await;
                if flushed.is_err() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            false
        })
        .await;
        assert_eq!(failed, Ok(true), "the write error reaches h2");
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_held() {
        let (mut connection, mut peer) = connected_pair().await;
        write(&mut connection, b"last words").await;
        std::future::poll_fn(|cx| Pin::new(&mut connection).poll_shutdown(cx))
            .await
            .unwrap();
        let mut received = Vec::new();
        peer.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"last words");
    }
}
