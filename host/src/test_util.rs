//! Helpers shared by the library's unit tests.

use tokio::net::{TcpListener, TcpStream};

/// A connected loopback TCP pair: (the connecting side, the accepted side).
pub(crate) async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    (c, l.accept().await.unwrap().0)
}
