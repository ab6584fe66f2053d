//! GOST's HTTP plugin protocol: a call is one request to the plugin's URL
//! (`POST`, or `GET`/`PUT` where GOST uses them) with a JSON body, answered
//! `200` with a JSON body.
//!
//! Connections are kept for reuse, as Go's HTTP client keeps them, so a
//! plugin consulted on every connection costs one request, not one TCP
//! handshake, per decision.

use std::sync::Mutex;

use bytes::Bytes;
use gost_proto::plugin::{Call, HttpMethod};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::{CallError, PluginError, MAX_ANSWER};
use crate::config::PluginConfig;

/// Idle connections kept per plugin.
const MAX_IDLE: usize = 16;

pub(super) struct HttpClient {
    /// `host:port`, dialed and sent as `Host`.
    authority: String,
    path: String,
    token: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl HttpClient {
    /// `cfg.addr` as GOST takes it: a URL `http://host:port/path` (the
    /// scheme may be left out).
    pub(super) fn new(owner: &str, cfg: &PluginConfig) -> Result<Self, PluginError> {
        let owner = owner.to_string();
        if cfg.addr.starts_with("https://") || cfg.tls.is_some() {
            return Err(PluginError::Https { owner });
        }
        let rest = cfg.addr.strip_prefix("http://").unwrap_or(&cfg.addr);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if crate::config::split_host_port(authority).is_err()
            || rest.contains("://")
            || hyper::Uri::try_from(path).is_err()
        {
            return Err(PluginError::Addr {
                owner,
                addr: cfg.addr.clone(),
                form: "http://host:port[/path]",
            });
        }
        if hyper::header::HeaderValue::try_from(format!("Bearer {}", cfg.token)).is_err() {
            return Err(PluginError::Token { owner });
        }
        Ok(HttpClient {
            authority: authority.to_string(),
            path: path.to_string(),
            token: cfg.token.clone(),
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(super) async fn call<Q: Call>(&self, req: &Q) -> Result<Q::Reply, CallError> {
        let (method, target, body) = match Q::HTTP_METHOD {
            HttpMethod::Post => (
                hyper::Method::POST,
                self.path.clone(),
                Some(req.http_body()?),
            ),
            HttpMethod::Put => (
                hyper::Method::PUT,
                self.path.clone(),
                Some(req.http_body()?),
            ),
            HttpMethod::Get => (hyper::Method::GET, self.with_query(&req.query()), None),
        };
        let body = self.exchange(method, &target, body).await?;
        Ok(Q::http_reply(&body)?)
    }

    /// The plugin's URL with `query` added, as GOST's ingress plugin asks
    /// for a rule.
    pub(super) fn with_query(&self, query: &[(&str, &str)]) -> String {
        let (path, old) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let mut q = url::form_urlencoded::Serializer::new(old.unwrap_or("").to_string());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        format!("{path}?{}", q.finish())
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) async fn exchange(
        &self,
        method: hyper::Method,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, CallError> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if !self.token.is_empty() {
            builder = builder.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(CallError::Request)?;
        let (mut sender, reused) = self.sender().await?;
        let resp = match sender.try_send_request(request).await {
            Ok(resp) => resp,
            // A kept connection the plugin closed while it was idle: the
            // request was not sent, so it goes once more on a new one,
            // as Go's client does.
            Err(mut e) if reused && e.message().is_some() => {
                let Some(request) = e.take_message() else {
                    return Err(e.into_error().into());
                };
                sender = self.connect().await?;
                sender.send_request(request).await?
            }
            Err(e) => return Err(e.into_error().into()),
        };
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(CallError::Status(status));
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => CallError::Http(*e),
                Err(_) => CallError::TooLarge,
            })?
            .to_bytes();
        self.give_back(sender);
        Ok(body)
    }

    /// An idle connection that can take a request (and `true`), or a new
    /// one.
    async fn sender(&self) -> Result<(SendRequest<Full<Bytes>>, bool), CallError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok((s, true));
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let tcp = tokio::net::TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| CallError::Connect(self.authority.clone(), e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // The connection ends when the plugin closes it or the sender
            // is dropped; either way there is nobody to tell.
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str) -> PluginConfig {
        PluginConfig {
            r#type: "http".into(),
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_as_gost_takes_them() {
        let p = HttpClient::new("auther \"a\"", &cfg("http://127.0.0.1:8000/auth")).unwrap();
        assert_eq!(
            (p.authority.as_str(), p.path.as_str()),
            ("127.0.0.1:8000", "/auth")
        );
        let p = HttpClient::new("auther \"a\"", &cfg("localhost:80")).unwrap();
        assert_eq!(
            (p.authority.as_str(), p.path.as_str()),
            ("localhost:80", "/")
        );
        assert_eq!(p.with_query(&[("host", "a b")]), "/?host=a+b");
        for bad in ["http://nohost/x", "ftp://h:1/x", ""] {
            let e = HttpClient::new("bypass \"b\"", &cfg(bad))
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("bypass \"b\"") && e.contains("not http://"),
                "{bad}: {e}"
            );
        }
        let e = HttpClient::new("hosts \"h\"", &cfg("https://h:1/x"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("https"), "{e}");
        let mut bad_token = cfg("h:1");
        bad_token.token = "a\nb".into();
        let e = HttpClient::new("hosts \"h\"", &bad_token).err().unwrap();
        assert!(e.to_string().contains("token"), "{e}");
    }
}
