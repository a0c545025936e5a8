//! A 408 for a request head that is not received in time.
//!
//! hyper's `header_read_timeout` closes such a connection without a
//! response. [`HeadWatch`] sits between hyper and the connection, notes
//! whether bytes arrived since the last response was written, and keeps a
//! handle to the connection so that, once hyper has given up on it, a
//! `408 Request Timeout` (RFC 9110 §15.5.9) can be written to a client
//! that was part-way through a request, or that sent nothing at all on a
//! new connection. An idle keep-alive connection is closed quietly, as
//! HTTP/1.1 lets either side do at any time (RFC 9112 §9.6): writing a 408
//! there could be read as the answer to a request the client is sending
//! at that moment.
//!
//! # Trust
//! Trusts nothing of the peer: the 408 is written with a short timeout and
//! the connection is closed after it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The response written to a late head: no body, the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// How long the 408 may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// Bytes arrived since the last response bytes were written.
    pending: AtomicBool,
    /// A response was written on this connection.
    responded: AtomicBool,
}

/// The connection as hyper sees it.
pub(crate) struct HeadWatch<I> {
    io: Arc<Mutex<I>>,
    state: Arc<State>,
}

/// What stays with the listener, to answer a late head after hyper is
/// done with the connection.
pub(crate) struct HeadHandle<I> {
    io: Arc<Mutex<I>>,
    state: Arc<State>,
}

impl<I> HeadWatch<I> {
    pub(crate) fn new(io: I) -> (HeadWatch<I>, HeadHandle<I>) {
        let io = Arc::new(Mutex::new(io));
        let state = Arc::new(State::default());
        (
            HeadWatch {
                io: io.clone(),
                state: state.clone(),
            },
            HeadHandle { io, state },
        )
    }

    fn with<R>(&self, f: impl FnOnce(&mut I) -> R) -> R {
        // Only hyper's task polls the connection: the lock is never
        // contended while hyper holds it.
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut io)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadWatch<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.with(|io| Pin::new(io).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.state.pending.store(true, Ordering::Release);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadWatch<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.with(|io| Pin::new(io).poll_write(cx, buf));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.pending.store(false, Ordering::Release);
            self.state.responded.store(true, Ordering::Release);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| Pin::new(io).poll_shutdown(cx))
    }
}

impl<I: AsyncWrite + Unpin> HeadHandle<I> {
    /// Whether a request was waiting for its head (bytes since the last
    /// response, or nothing yet on a new connection).
    fn request_pending(&self) -> bool {
        self.state.pending.load(Ordering::Acquire) || !self.state.responded.load(Ordering::Acquire)
    }

    /// After hyper's head timeout: write the 408 if a request was pending
    /// (true), and close the connection either way. Call only once hyper
    /// has dropped its side.
    pub(crate) async fn answer_timeout(self) -> bool {
        let pending = self.request_pending();
        let Ok(io) = Arc::try_unwrap(self.io) else {
            // hyper still holds the connection: nothing safe to write.
            return pending;
        };
        let mut io = io.into_inner().unwrap_or_else(PoisonError::into_inner);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            if pending {
                io.write_all(REQUEST_TIMEOUT).await?;
            }
            io.shutdown().await
        })
        .await;
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_partial_head_gets_408_an_idle_connection_does_not() {
        // Part of a request arrived: 408.
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut watched, handle) = HeadWatch::new(server);
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 16];
        let n = watched.read(&mut buf).await.unwrap();
        assert_eq!(n, 8);
        drop(watched);
        assert!(handle.answer_timeout().await);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 408 "), "{answer:?}");

        // A response went out and nothing came after: quiet close.
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut watched, handle) = HeadWatch::new(server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _ = watched.read(&mut buf).await.unwrap();
        watched.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        drop(watched);
        assert!(!handle.answer_timeout().await);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n");
    }
}
