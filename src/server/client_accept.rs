//! The client port's listener: HTTP/2 connections are served by [`super::client_h2`], the
//! others (plain HTTP/1.1: /health, /metrics, /version) by tonic's server, as before.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::client_fallback::ClientServices;
use super::unary_kv::UnaryKv;

/// The first bytes every HTTP/2 client sends (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepts client connections until `stop` turns true, then waits for the HTTP/2 ones to
/// finish their calls (the caller bounds that wait).
pub async fn accept<S: ClientServices>(
    listener: TcpListener,
    kv: Arc<UnaryKv>,
    services: S,
    http1: mpsc::Sender<std::io::Result<TcpStream>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(%err, "accepting a client connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "a client connection closed at once");
            continue;
        }
        let kv = Arc::clone(&kv);
        let services = services.clone();
        let http1 = http1.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            match speaks_http2(&stream).await {
                Ok(true) => {
                    super::client_h2::serve(
                        crate::coalesced_writes::CoalescedWrites::new(stream),
                        kv,
                        services,
                        stop,
                    )
                    .await
                }
                Ok(false) => {
                    let _ = http1.send(Ok(stream)).await;
                }
                Err(err) => tracing::debug!(%err, "a client connection closed before a request"),
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Whether the connection opens with HTTP/2's preface (peeked: the bytes stay unread).
async fn speaks_http2(stream: &TcpStream) -> std::io::Result<bool> {
    // As long as hyper waited for an HTTP/1 request's head.
    const PREFACE_WAIT: Duration = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + PREFACE_WAIT;
    let mut head = [0u8; PREFACE.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut head))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if head[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A preface split across packets: its rest is a moment away. (A peek leaves the socket
        // readable, so there is nothing to wait on: the pause grows, so a client that stalls
        // mid-preface costs a few hundred wake-ups, not one a millisecond.)
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_preface_tells_http2_from_http1_and_stays_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cases: [(&[u8], bool); 3] = [
            (PREFACE, true),
            (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", false),
            (b"PRI * HTTP/1.1\r\n\r\n", false),
        ];
        for (sent, http2) in cases {
            let (mut client, mut server) = pair(&listener).await;
            client.write_all(sent).await.unwrap();
            assert_eq!(speaks_http2(&server).await.unwrap(), http2, "{sent:?}");
            let mut read = vec![0; sent.len()];
            server.read_exact(&mut read).await.unwrap();
            assert_eq!(read, sent, "peeking consumed nothing");
        }
    }

    #[tokio::test]
    async fn a_preface_split_across_writes_is_waited_for() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut client, server) = pair(&listener).await;
        client.write_all(&PREFACE[..5]).await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&PREFACE[5..]).await.unwrap();
            client
        });
        assert!(speaks_http2(&server).await.unwrap());
        drop(writer.await.unwrap());
        let (client, server) = pair(&listener).await;
        drop(client);
        assert!(speaks_http2(&server).await.is_err(), "closed before a byte");
    }
}
