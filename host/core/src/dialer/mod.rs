//! Opening TCP connections: to targets, and to a chain's first node
//! under any transport (see [`gost_transport`]).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;

pub mod loops;

/// Opens a TCP connection to `addr` (`host:port`), with Nagle off as GOST
/// sets it, since proxy handshakes are small writes that wait for replies.
/// Each resolved address is tried in turn, as `TcpStream::connect` does.
pub async fn dial_tcp(addr: &str) -> io::Result<TcpStream> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

async fn connect(a: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(a),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
    let pending = match sock.connect(&a.into()) {
        Ok(()) => false,
        // To a loopback or same-host target the kernel has usually run the
        // whole handshake before connect(2) returned: a peer address then
        // says so, and the reactor trip (and, for a plugin that dials,
        // parking its instance) is skipped.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => sock.peer_addr().is_err(),
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std(sock.into())?;
    if pending {
        stream.writable().await?;
    }
    match stream.take_error()? {
        Some(e) => Err(e),
        None => {
            loops::record(stream.local_addr()?, a);
            Ok(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn dials_loopback_at_once_and_reports_refusal() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = dial_tcp(&addr.to_string()).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
        assert!(s.nodelay().unwrap());
        // Done on the first poll: no trip through the reactor.
        let target = addr.to_string();
        let mut dial = std::pin::pin!(dial_tcp(&target));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            matches!(dial.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(_))),
            "a loopback dial waited for the reactor"
        );
        drop(l);
        let e = dial_tcp(&addr.to_string()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn first_write_to_a_fresh_dial_is_done_on_its_first_poll() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut s = dial_tcp(&addr.to_string()).await.unwrap();
        let (mut peer, _) = l.accept().unwrap();
        // tokio's own write_all would answer Pending here: no turn of the
        // reactor has reported the new socket writable yet.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut w = std::pin::pin!(crate::stream::write_all(&mut s, b"hi"));
        assert!(matches!(
            w.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(()))
        ));
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    /// A connect that is not done at once (here: the listener's accept
    /// queue is full, so the kernel drops the SYN and the client sends it
    /// again about a second later) waits in the reactor and then succeeds.
    #[tokio::test]
    async fn waits_for_a_connect_that_is_not_done_at_once() {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let l: std::net::TcpListener = l.into();
        // Fill the accept queue (a backlog of 0 still holds one); these
        // connects do not wait, whether or not their SYN was taken.
        let mut held = Vec::new();
        for _ in 0..2 {
            let c = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None).unwrap();
            let _ = c.connect(&addr.into());
            held.push(c);
        }
        let start = Instant::now();
        let dial = tokio::spawn(async move { dial_tcp(&addr.to_string()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!dial.is_finished(), "the dial did not have to wait");
        l.set_nonblocking(true).unwrap();
        let accept = tokio::spawn(async move {
            let mut n = 0;
            while n < 8 && start.elapsed() < Duration::from_secs(10) {
                match l.accept() {
                    Ok(_) => n += 1,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        let s = tokio::time::timeout(Duration::from_secs(10), dial)
            .await
            .expect("dial never finished")
            .unwrap()
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
        accept.abort();
    }
}
