//! What each plugin instance's `Store` owns, and the host side of the WIT
//! imports: `types` (the `conn` resource), `runtime` and `network`.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::common::gost::plugin::{runtime, types};
use super::bindings::handler::gost::plugin::network;
use super::conn::{ConnInfoRes, ConnRes};
use gost_chain::router::Router;
use gost_core::auth::Auther;

/// Who is running: named in every log line the plugin writes and in every
/// error about it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The plugin's file name, as the config gives it.
    pub plugin: Arc<str>,
    /// The service or object that uses the plugin.
    pub owner: Arc<str>,
    /// The plugin's `config`, as JSON.
    pub config: Arc<str>,
}

/// What a handler plugin reaches through `network`.
#[derive(Clone)]
pub struct NetCtx {
    pub router: Router,
    pub auther: Option<Arc<dyn Auther>>,
    /// The IP of the client the instance serves now, for the router's
    /// `hash` selector; set at each call.
    pub client: std::net::IpAddr,
}

pub struct PluginState {
    pub id: Identity,
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: MemoryLimit,
    pub net: Option<NetCtx>,
    /// When the guest last got control back from the host; the deadline
    /// counts from here, so time spent waiting on a socket is not charged
    /// to the plugin.
    pub resumed_at: Instant,
    /// `conn` resources alive in the table. An instance that keeps one
    /// after its call returned is not reused.
    pub live_conns: usize,
    /// What the guest said on stderr as it panicked, for the trap's error.
    pub last_words: super::output::LastWords,
}

impl PluginState {
    pub fn new(id: Identity, wasi: WasiCtx, limits: MemoryLimit, net: Option<NetCtx>) -> Self {
        PluginState {
            id,
            wasi,
            table: ResourceTable::new(),
            limits,
            net,
            resumed_at: Instant::now(),
            live_conns: 0,
            last_words: Default::default(),
        }
    }

    pub fn push_conn(&mut self, conn: ConnRes) -> wasmtime::Result<Resource<ConnRes>> {
        let r = self.table.push(conn)?;
        self.live_conns += 1;
        Ok(r)
    }

    pub fn take_conn(&mut self, r: Resource<ConnRes>) -> wasmtime::Result<ConnRes> {
        let c = self.table.delete(r)?;
        self.live_conns -= 1;
        Ok(c)
    }

    /// Puts a connection's `conn-info` in the table for one `handle` call.
    /// The call gets a borrow of it; the host keeps the owning handle and
    /// gives it to [`Self::end_lend`] afterwards.
    pub fn lend_info(&mut self, info: ConnInfoRes) -> wasmtime::Result<Resource<ConnInfoRes>> {
        Ok(self.table.push(info)?)
    }

    /// Takes back what [`Self::lend_info`] lent once the call returned (the
    /// guest cannot keep a borrowed handle past it).
    pub fn end_lend(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<()> {
        self.table.delete(info)?;
        Ok(())
    }

    /// Why a call failed, in words for the log: running out of memory,
    /// a deadline, or a trap with the guest's panic message when it wrote
    /// one.
    pub fn describe_failure(&self, e: &wasmtime::Error) -> String {
        if self.limits.hit {
            return format!("out of memory (limit {} bytes)", self.limits.max);
        }
        let what = super::describe_error(e);
        match self.last_words.get() {
            Some(words) => format!("{what} ({words})"),
            None => what,
        }
    }

    fn resume(&mut self) {
        self.resumed_at = Instant::now();
    }
}

/// Caps an instance's linear memory and remembers that the cap was hit, so
/// the trap that follows (a Rust guest aborts when allocation fails) is
/// reported as running out of memory rather than as a bare trap.
#[derive(Debug)]
pub struct MemoryLimit {
    pub max: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl types::HostConn for PluginState {
    async fn read(
        &mut self,
        conn: Resource<ConnRes>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let r = self.table.get_mut(&conn)?.read(max).await;
        self.resume();
        Ok(r.map_err(|e| e.to_string()))
    }

    async fn write(
        &mut self,
        conn: Resource<ConnRes>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let r = self.table.get_mut(&conn)?.write_all(&data).await;
        self.resume();
        Ok(r.map_err(|e| e.to_string()))
    }

    async fn exchange(
        &mut self,
        conn: Resource<ConnRes>,
        data: Vec<u8>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let c = self.table.get_mut(&conn)?;
        let r = async {
            c.write_all(&data).await?;
            c.read(max).await
        }
        .await;
        self.resume();
        Ok(r.map_err(|e| e.to_string()))
    }

    async fn shutdown_write(
        &mut self,
        conn: Resource<ConnRes>,
    ) -> wasmtime::Result<Result<(), String>> {
        let r = self.table.get_mut(&conn)?.shutdown_write().await;
        self.resume();
        Ok(r.map_err(|e| e.to_string()))
    }

    fn peer_addr(&mut self, conn: Resource<ConnRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&conn)?.peer())
    }

    fn drop(&mut self, conn: Resource<ConnRes>) -> wasmtime::Result<()> {
        self.take_conn(conn)?;
        Ok(())
    }
}

impl types::HostConnInfo for PluginState {
    fn service(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&info)?.service.to_string())
    }

    fn network(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<String> {
        self.table.get(&info)?;
        Ok("tcp".into())
    }

    fn client_addr(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&info)?.client.to_string())
    }

    fn local_addr(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&info)?.local.to_string())
    }

    /// Only reached for a handle the guest owns, and the host only lends
    /// `conn-info`; deleting keeps the table clean all the same.
    fn drop(&mut self, info: Resource<ConnInfoRes>) -> wasmtime::Result<()> {
        self.end_lend(info)
    }
}

impl runtime::Host for PluginState {
    fn log(&mut self, level: types::Level, msg: String) -> wasmtime::Result<()> {
        let (plugin, owner) = (&*self.id.plugin, &*self.id.owner);
        match level {
            types::Level::Trace => {
                tracing::trace!(plugin, service = owner, "{}", gost_core::escape::esc(&msg))
            }
            types::Level::Debug => {
                tracing::debug!(plugin, service = owner, "{}", gost_core::escape::esc(&msg))
            }
            types::Level::Info => {
                tracing::info!(plugin, service = owner, "{}", gost_core::escape::esc(&msg))
            }
            types::Level::Warn => {
                tracing::warn!(plugin, service = owner, "{}", gost_core::escape::esc(&msg))
            }
            types::Level::Error => {
                tracing::error!(plugin, service = owner, "{}", gost_core::escape::esc(&msg))
            }
        }
        Ok(())
    }

    /// Asks the same callsite filter `log` goes through, so the answer
    /// follows the log level and every logger the API reconfigures.
    fn log_enabled(&mut self, level: types::Level) -> wasmtime::Result<bool> {
        Ok(match level {
            types::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            types::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            types::Level::Info => tracing::enabled!(tracing::Level::INFO),
            types::Level::Warn => tracing::enabled!(tracing::Level::WARN),
            types::Level::Error => tracing::enabled!(tracing::Level::ERROR),
        })
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.id.config.to_string())
    }
}

impl network::Host for PluginState {
    async fn dial(
        &mut self,
        network: String,
        address: String,
    ) -> wasmtime::Result<Result<Resource<ConnRes>, String>> {
        let Some(net) = &self.net else {
            return Ok(Err("dial is not available to this plugin".into()));
        };
        if network != "tcp" {
            return Ok(Err(format!("network \"{network}\" is not supported (tcp)")));
        }
        let r = net.router.dial_tcp(&address, net.client).await;
        self.resume();
        match r {
            Ok(s) => Ok(Ok(self.push_conn(ConnRes::upstream(s))?)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    async fn authenticate(
        &mut self,
        user: String,
        password: String,
    ) -> wasmtime::Result<Option<String>> {
        let Some(a) = self.net.as_ref().and_then(|n| n.auther.clone()) else {
            return Ok(Some(String::new()));
        };
        let id = a
            .authenticate(gost_core::auth::AuthRequest::new(&user, &password))
            .await;
        self.resume();
        Ok(id)
    }
}
