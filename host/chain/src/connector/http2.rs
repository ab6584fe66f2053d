//! HTTP/2 proxy connector (GOST's `connector/http2`): a `CONNECT` to the
//! target on the `http2` dialer's connection to the node, with `auth` as
//! `Proxy-Authorization` and the `header` metadata; the stream once the
//! node answers 200.

use base64::Engine;
use gost_core::stream::Stream;
use gost_transport::http2::{Client, ConnectError as H2Error};

use super::upstream::Upstream;
use super::{ConnectError, Credentials};
use gost_core::metadata::Metadata;
use gost_transport::BoxFuture;

const NAME: &str = "http2";

#[derive(Debug)]
pub struct Http2Connector {
    /// `header` and, with `auth`, `Proxy-Authorization`.
    headers: Vec<(String, String)>,
}

impl Http2Connector {
    pub fn new(
        auth: Option<Credentials>,
        md: &Metadata,
    ) -> Result<Self, gost_core::metadata::MetadataError> {
        // The same `header` map as the http connector's.
        let mut headers = super::http::HttpConnector::new(None, md)?.headers;
        if let Some(a) = auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password));
            headers.push(("proxy-authorization".into(), format!("Basic {token}")));
        }
        Ok(Http2Connector { headers })
    }

    async fn handshake(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        // Stands in for the stream while the exchange takes it over.
        let gone = Stream::boxed(tokio::io::empty(), Default::default());
        let (mut stream, owed) = std::mem::replace(up, Upstream::direct(gone)).into_parts();
        let client = match (stream.take_attached::<Client>(), owed) {
            (Some(c), None) => c,
            _ => {
                return Err(ConnectError::Io {
                    connector: NAME,
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "the http2 connector needs the http2 dialer (-F http2://)",
                    ),
                })
            }
        };
        match client.connect(addr, &self.headers).await {
            Ok(s) => {
                *up = Upstream::direct(s);
                Ok(())
            }
            Err(H2Error::Refused(status)) => Err(ConnectError::Refused {
                connector: NAME,
                reply: status.to_string(),
            }),
            Err(H2Error::Io(source)) => Err(ConnectError::Io {
                connector: NAME,
                source,
            }),
        }
    }
}

impl super::Connector for Http2Connector {
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
