//! Read and write deadlines on a connection's socket.
//!
//! hyper 1.x bounds only the time to read a request's headers. A client that sends a
//! request and never reads the reply blocks the write forever, and a keep-alive
//! client that never sends the next request holds its slot forever: both would hold
//! a connection slot until Prometheus is locked out. [`Deadlined`] fails a read that
//! makes no progress for `read` (the idle deadline between requests) and a write or
//! flush that makes no progress for `write`, which ends the connection.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// One direction's deadline: armed when an operation first returns Pending, reset
/// by progress.
struct Deadline {
    limit: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Deadline {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// Passes a ready result through (disarming); on Pending, arms the timer and
    /// turns its expiry into `TimedOut`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        what: &str,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.armed {
                    self.sleep.as_mut().reset(Instant::now() + self.limit);
                    self.armed = true;
                }
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} made no progress for {:?}", self.limit),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// A stream whose reads and writes fail after a stall longer than their deadline.
pub struct Deadlined<S> {
    stream: S,
    read: Deadline,
    write: Deadline,
}

impl<S> Deadlined<S> {
    pub fn new(stream: S, read: Duration, write: Duration) -> Self {
        Self {
            stream,
            read: Deadline::new(read),
            write: Deadline::new(write),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.read.watch(cx, poll, "read")
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.write.watch(cx, poll, "write")
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.write.watch(cx, poll, "write")
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.write.watch(cx, poll, "flush")
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.write.watch(cx, poll, "shutdown")
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn a_reader_that_never_reads_fails_the_write() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut stream = Deadlined::new(ours, Duration::from_secs(60), Duration::from_millis(100));
        let started = std::time::Instant::now();
        let error = stream.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_idle_peer_fails_the_read_and_progress_resets_the_deadline() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        // Progress every 100 ms against a 1 s deadline: wide margins for a loaded
        // machine (a 200 ms deadline failed there).
        let mut stream = Deadlined::new(ours, Duration::from_secs(1), Duration::from_secs(60));
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                theirs.write_all(b"x").await.unwrap();
            }
            theirs
        });
        let mut byte = [0; 1];
        for _ in 0..4 {
            stream.read_exact(&mut byte).await.unwrap();
        }
        let _theirs = writer.await.unwrap();
        let error = stream.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
