//! A connection read through a buffer, whose writes wait for the next read.

use std::io::{self, BufRead, Read, Write};

use super::{Outcome, RelayStreams};
use crate::Conn;

/// Reads the connection through a buffer and holds what is written until
/// the next time the buffer needs bytes: then the held bytes go out and
/// the answer comes back in one host call (`exchange`). A handshake that
/// answers and then waits for the peer's next message pays one host call
/// per round trip instead of two.
///
/// [`relay`](Self::relay) ends the handshake: held bytes are written to
/// the client and bytes read past the handshake to the upstream by the
/// host, before its native relay starts, so the last reply costs no call.
///
/// Like `std::io::BufWriter`, dropping it sends what it still holds (for
/// example an error reply before the handler returns `Outcome::Fail`);
/// call [`flush`](Write::flush) to see the error, if any.
pub struct BufConn {
    conn: Option<Conn>,
    buf: Vec<u8>,
    pos: usize,
    capacity: usize,
    held: Vec<u8>,
}

impl BufConn {
    /// Reads at most `capacity` bytes per host call.
    pub fn with_capacity(capacity: usize, conn: Conn) -> Self {
        BufConn {
            conn: Some(conn),
            buf: Vec::new(),
            pos: 0,
            capacity: capacity.max(1),
            held: Vec::new(),
        }
    }

    /// Bytes read from the connection and not consumed yet.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a BufConn has its conn until it is taken apart")
    }

    /// The connection, the bytes written and not sent yet, and the bytes
    /// read and not consumed yet.
    pub fn into_parts(mut self) -> (Conn, Vec<u8>, Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        let unread = self.buf.split_off(self.pos);
        let conn = self
            .conn
            .take()
            .expect("a BufConn has its conn until it is taken apart");
        (conn, held, unread)
    }

    /// Ends the handshake by handing both streams to the host's relay,
    /// which first writes the held bytes to the client and the unread ones
    /// to `upstream`.
    pub fn relay(self, upstream: Conn) -> Outcome {
        let (client, to_client, to_upstream) = self.into_parts();
        Outcome::Relay(RelayStreams {
            client,
            upstream,
            to_client,
            to_upstream,
        })
    }
}

impl BufRead for BufConn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            let max = u32::try_from(self.capacity).unwrap_or(u32::MAX);
            let conn = self.conn();
            let got = if self.held.is_empty() {
                conn.read(max)
            } else {
                conn.exchange(&self.held, max)
            };
            // Gone either way: sent, or the connection failed, and a
            // retry on drop could send them twice.
            self.held.clear();
            self.buf = got.map_err(io::Error::other)?;
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

impl Read for BufConn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Write for BufConn {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.held.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.held.is_empty() {
            self.conn().write(&self.held).map_err(io::Error::other)?;
            self.held.clear();
        }
        Ok(())
    }
}

impl Drop for BufConn {
    fn drop(&mut self) {
        if self.conn.is_some() {
            let _ = self.flush();
        }
    }
}
