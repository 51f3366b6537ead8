//! Reading the first bytes of a TCP connection without consuming them.
//!
//! `TcpStream::peek` returns at once while any byte is queued, so it cannot wait for *more*
//! bytes. The peeker instead peeks inside `try_io` and reports "would block" when nothing new
//! arrived: tokio then clears the socket's readiness and the next `ready()` waits for the next
//! segment. The peek itself goes through a duplicate of the socket's descriptor (same socket,
//! same non-blocking flag), because tokio exposes no synchronous peek and a `recv(MSG_PEEK)`
//! of our own would need `unsafe`.

use std::io;
use std::os::fd::AsFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The bytes peeked so far from one connection, shared by its listener filters.
pub(crate) struct Peeker<'a> {
    stream: &'a TcpStream,
    fd: std::net::TcpStream,
    buf: Vec<u8>,
    len: usize,
}

impl<'a> Peeker<'a> {
    /// A peeker over `stream` (duplicates its descriptor; dropped with the peeker).
    pub(crate) fn new(stream: &'a TcpStream) -> io::Result<Self> {
        let fd = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
        Ok(Self {
            stream,
            fd,
            buf: Vec::new(),
            len: 0,
        })
    }

    /// Wait until at least `at_least` bytes are queued (at most `window` are looked at; a
    /// larger `at_least` is cut to `window`) and return every byte seen, from the first.
    /// `None` when the peer closes (or resets) first.
    pub(crate) async fn fill(
        &mut self,
        at_least: usize,
        window: usize,
    ) -> io::Result<Option<&[u8]>> {
        let window = window.max(1);
        let at_least = at_least.clamp(1, window);
        if self.buf.len() < window {
            self.buf.resize(window, 0);
        }
        while self.len < at_least {
            let ready = self.stream.ready(Interest::READABLE).await?;
            let (fd, seen) = (&self.fd, self.len);
            let buf = &mut self.buf[..window];
            let peeked = self.stream.try_io(Interest::READABLE, || {
                let n = fd.peek(buf)?;
                if n == 0 || n > seen {
                    Ok(n)
                } else {
                    // Nothing new: clear readiness and wait for the next segment.
                    Err(io::ErrorKind::WouldBlock.into())
                }
            });
            match peeked {
                Ok(0) => return Ok(None),
                Ok(n) => self.len = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A FIN keeps the socket readable; no new bytes after it means the end.
                    if ready.is_read_closed() {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(&self.buf[..self.len]))
    }
}
