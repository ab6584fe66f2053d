//! Dialers: how a chain reaches its first node (GOST's `dialer` packages).
//! Only the plain `tcp` dialer exists so far; every other transport is
//! refused at start-up by name.

use std::io;

use tokio::net::TcpStream;

/// Dialer types this build implements.
pub const DIALERS: &[&str] = &["tcp"];

/// Opens a TCP connection to `addr` (`host:port`), with Nagle off as GOST
/// sets it, since proxy handshakes are small writes that wait for replies.
pub async fn dial_tcp(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
