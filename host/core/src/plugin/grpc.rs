//! GOST's gRPC plugin protocol: a call is one unary call of the module's
//! service (`/proto.Authenticator/Authenticate`...), with the plugin's
//! token as the `token` metadata, as GOST's per-call credentials send it.
//!
//! The plugin's HTTP/2 connection is opened on the first call and kept;
//! when it breaks, the calls in flight fail and the next call opens
//! another, as Go's gRPC client reconnects.

use std::sync::OnceLock;

use gost_proto::plugin::Call;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{CallError, PluginError, MAX_ANSWER};
use crate::config::PluginConfig;

pub(super) struct GrpcClient {
    endpoint: Endpoint,
    token: Option<MetadataValue<Ascii>>,
    /// Made on the first call, inside the runtime the channel's tasks need.
    channel: OnceLock<Channel>,
}

impl GrpcClient {
    /// `cfg.addr` as GOST's gRPC client takes it: `host:port`.
    pub(super) fn new(owner: &str, cfg: &PluginConfig) -> Result<Self, PluginError> {
        let owner = owner.to_string();
        if cfg.tls.is_some() {
            return Err(PluginError::Https { owner });
        }
        let bad_addr = || PluginError::Addr {
            owner: owner.clone(),
            addr: cfg.addr.clone(),
            form: "host:port",
        };
        if crate::config::split_host_port(&cfg.addr).is_err() || cfg.addr.contains('/') {
            return Err(bad_addr());
        }
        let mut endpoint =
            Endpoint::from_shared(format!("http://{}", cfg.addr)).map_err(|_| bad_addr())?;
        if !cfg.timeout.0.is_zero() {
            endpoint = endpoint.connect_timeout(cfg.timeout.0);
        }
        let token = match cfg.token.as_str() {
            "" => None,
            t => Some(t.parse().map_err(|_| PluginError::Token {
                owner: owner.clone(),
            })?),
        };
        Ok(GrpcClient {
            endpoint,
            token,
            channel: OnceLock::new(),
        })
    }

    pub(super) async fn call<Q: Call + Send + Sync>(&self, req: Q) -> Result<Q::Reply, CallError>
    where
        Q::Reply: Send,
    {
        let channel = self
            .channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone();
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_ANSWER);
        let status = |s| CallError::Grpc(Box::new(s));
        grpc.ready()
            .await
            .map_err(|e| status(tonic::Status::unavailable(e.to_string())))?;
        let mut request = tonic::Request::new(req);
        if let Some(t) = &self.token {
            request.metadata_mut().insert("token", t.clone());
        }
        let path = hyper::http::uri::PathAndQuery::from_static(Q::GRPC_PATH);
        let codec = tonic_prost::ProstCodec::<Q, Q::Reply>::default();
        grpc.unary(request, path, codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str) -> PluginConfig {
        PluginConfig {
            r#type: "grpc".into(),
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_as_gost_takes_them() {
        assert!(GrpcClient::new("auther \"a\"", &cfg("127.0.0.1:8000")).is_ok());
        assert!(GrpcClient::new("auther \"a\"", &cfg("[::1]:8000")).is_ok());
        for bad in ["http://h:1", "h", "h:1/x", ""] {
            let e = GrpcClient::new("auther \"a\"", &cfg(bad))
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("auther \"a\"") && e.contains("not host:port"),
                "{bad}: {e}"
            );
        }
        let mut bad_token = cfg("h:1");
        bad_token.token = "a\nb".into();
        let e = GrpcClient::new("a", &bad_token).err().unwrap();
        assert!(e.to_string().contains("token"), "{e}");
    }
}
