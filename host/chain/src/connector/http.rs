//! HTTP CONNECT connector (GOST's `connector/http`).

use base64::Engine;
use gost_core::stream::Stream;
use serde_json::Value;

use super::upstream::Upstream;
use super::{write_all, ConnectError, Credentials};
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::BoxFuture;

const NAME: &str = "http";
/// A CONNECT reply head longer than this is refused rather than buffered.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug)]
pub struct HttpConnector {
    pub auth: Option<Credentials>,
    /// Extra request headers (metadata `header`), in a stable order.
    pub headers: Vec<(String, String)>,
}

impl HttpConnector {
    pub fn new(auth: Option<Credentials>, md: &Metadata) -> Result<Self, MetadataError> {
        let headers = match md.get("header") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k.clone(), s.clone()),
                    other => (k.clone(), other.to_string()),
                })
                .collect(),
            Some(v) => {
                return Err(MetadataError {
                    key: "header".into(),
                    value: v.to_string(),
                    expected: "a map of header names to values",
                })
            }
        };
        Ok(HttpConnector { auth, headers })
    }

    fn request(&self, addr: &str) -> String {
        let mut req = format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in &self.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Proxy-Connection: keep-alive\r\n");
        if let Some(a) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password));
            req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        req.push_str("\r\n");
        req
    }

    async fn handshake(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        write_all(NAME, up.writer(), self.request(addr).as_bytes()).await?;
        let head = read_head(up.settled().await?).await?;
        let status = parse_status(&head)?;
        if status != 200 {
            let line = head.lines().next().unwrap_or_default().to_string();
            return Err(ConnectError::Refused {
                connector: NAME,
                reply: line,
            });
        }
        Ok(())
    }
}

impl super::Connector for HttpConnector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn connect<'a>(
        &'a self,
        up: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(self.handshake(up, addr))
    }
}

/// Reads the reply head up to and including the blank line; tunnelled
/// bytes read past it are handed back to the stream.
async fn read_head(stream: &mut Stream) -> Result<String, ConnectError> {
    use tokio::io::AsyncReadExt;
    let mut head: Vec<u8> = Vec::with_capacity(256);
    loop {
        let scanned = head.len().saturating_sub(3);
        head.reserve(1024);
        let n = (&mut *stream)
            .take((MAX_HEAD + 4 - head.len()) as u64)
            .read_buf(&mut head)
            .await
            .map_err(|source| ConnectError::Io {
                connector: NAME,
                source,
            })?;
        if let Some(pos) = head[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = scanned + pos + 4;
            stream.unread(&head[end..]);
            head.truncate(end);
            return String::from_utf8(head).map_err(|_| ConnectError::BadReply {
                connector: NAME,
                msg: "reply head is not UTF-8".into(),
            });
        }
        if n == 0 && head.len() > MAX_HEAD {
            return Err(ConnectError::BadReply {
                connector: NAME,
                msg: format!("reply head longer than {MAX_HEAD} bytes"),
            });
        }
        if n == 0 {
            return Err(ConnectError::BadReply {
                connector: NAME,
                msg: "connection closed before the reply head ended".into(),
            });
        }
    }
}

fn parse_status(head: &str) -> Result<u16, ConnectError> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if version.starts_with("HTTP/1.") => Ok(code),
        _ => Err(ConnectError::BadReply {
            connector: NAME,
            msg: format!("status line {line:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn connector(auth: bool) -> HttpConnector {
        HttpConnector {
            auth: auth.then(|| Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            headers: vec![("X-Test".into(), "1".into())],
        }
    }

    #[tokio::test]
    async fn connect_sends_auth_and_leaves_tunnel_bytes_unread() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            // The reply and the first tunnelled bytes arrive together.
            s.write_all(b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nhello")
                .await
                .unwrap();
            req
        });
        connector(true)
            .handshake(&mut c, "example.com:80")
            .await
            .unwrap();
        let mut rest = [0u8; 5];
        c.into_parts().0.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello");
        let req = server.await.unwrap();
        assert!(req.starts_with("CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n"));
        assert!(req.contains("Proxy-Authorization: Basic dTpw\r\n"));
        assert!(req.contains("X-Test: 1\r\n"));
    }

    #[tokio::test]
    async fn refusal_carries_the_status_line() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            for chunk in [
                &b"HTTP/1.1 407 Proxy Auth"[..],
                b"entication Required\r\n\r",
                b"\n",
            ] {
                s.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let err = connector(false).handshake(&mut c, "h:1").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("407 Proxy Authentication Required"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn garbage_reply_is_bad_reply() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            s.write_all(b"SSH-2.0-x\r\n\r\n").await.unwrap();
        });
        let err = connector(false).handshake(&mut c, "h:1").await.unwrap_err();
        assert!(matches!(err, ConnectError::BadReply { .. }), "{err}");
    }
}
