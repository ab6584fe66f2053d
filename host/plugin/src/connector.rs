//! The `wasm` connector: the client side of a protocol as a plugin of the
//! `connector` world. The host dials the node as for any connector, lends
//! the plugin that stream for the handshake, and takes it back (with any
//! bytes the plugin read past the node's reply) for the native relay.

use std::sync::Arc;
use std::time::Duration;

use gost_chain::connector::upstream::Upstream;
use gost_chain::connector::{Common, ConnectError, Connector, ConnectorBuildError, Credentials};
use gost_core::metadata::Metadata;
use gost_core::stream::Stream;
use gost_transport::BoxFuture;

use super::bindings::connector::{ConnectRequest, ConnectorPre};
use super::conn::ConnRes;
use super::pool::Pool;
use super::spec::PluginSpec;
use super::state::PluginState;

/// How long a handshake may take unless the connector's `timeout` says
/// otherwise: a plugin that never hands the stream back gives up here.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

const NAME: &str = "wasm";

pub struct WasmConnector {
    pool: Arc<Pool<ConnectorPre<PluginState>>>,
    auth: Option<Credentials>,
    timeout: Duration,
}

impl std::fmt::Debug for WasmConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmConnector")
            .field("plugin", &self.pool.spec().name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `connector: {type: wasm, plugin: {type: wasm, path: ...}}`, with the
/// connector's `auth` passed to the plugin and `timeout` bounding each
/// handshake.
pub fn build(md: &Metadata, c: Common) -> Result<Box<dyn Connector>, ConnectorBuildError> {
    let plugin = c.plugin.as_ref().ok_or_else(|| {
        ConnectorBuildError::Invalid(
            "connector type 'wasm' needs connector.plugin (a component of the connector world)"
                .into(),
        )
    })?;
    let invalid = |e: super::PluginError| ConnectorBuildError::Invalid(e.to_string());
    let spec = PluginSpec::from_config(plugin).map_err(invalid)?;
    let timeout = md
        .get_duration("timeout")?
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok(Box::new(WasmConnector {
        pool: Pool::watched(spec, "connector").map_err(invalid)?,
        auth: c.auth,
        timeout,
    }))
}

fn plugin_err(msg: String) -> ConnectError {
    ConnectError::Plugin {
        connector: NAME,
        msg,
    }
}

impl WasmConnector {
    async fn handshake(&self, stream: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        let mut w = self.pool.acquire().await.map_err(plugin_err)?;
        // Stands in for the node's stream while the plugin holds it; a
        // failed handshake leaves it, and the caller drops both.
        let gone = Upstream::direct(Stream::boxed(tokio::io::empty(), Default::default()));
        let node = std::mem::replace(stream, gone);
        let node = w
            .store
            .data_mut()
            .push_conn(ConnRes::upstream(node))
            .map_err(|e| plugin_err(self.pool.named(e)))?;
        let (username, password) = match &self.auth {
            Some(a) => (a.username.clone(), a.password.clone()),
            None => Default::default(),
        };
        let req = ConnectRequest {
            network: "tcp".into(),
            address: addr.into(),
            username,
            password,
        };
        w.arm();
        let call = w.bindings.call_connect(&mut w.store, &req, node);
        let connected = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(Ok(c))) => c,
            Ok(Ok(Err(msg))) => {
                self.pool.release(w);
                return Err(plugin_err(self.pool.named(msg)));
            }
            // The instance may be in any state after a trap: dropped.
            Ok(Err(e)) => return Err(plugin_err(self.pool.failure(&w.store, &e))),
            // Dropping the call unwinds the guest; the instance goes too.
            Err(_) => {
                return Err(plugin_err(self.pool.named(format!(
                    "did not hand the stream back within {:?}, closed",
                    self.timeout
                ))))
            }
        };
        let conn =
            w.store.data_mut().take_conn(connected.node).map_err(|e| {
                plugin_err(self.pool.named(format!("invalid connected stream: {e}")))
            })?;
        self.pool.release(w);
        let mut up = conn.into_upstream();
        up.unread(&connected.early).await?;
        *stream = up;
        Ok(())
    }
}

impl Connector for WasmConnector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn connect<'a>(
        &'a self,
        stream: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(self.handshake(stream, addr))
    }
}
