//! `gost`: the command-line entry. Errors become `anyhow` here, at the edge.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use gost::{api, app, cli, logger, multiprocess, scrape};
use gost_chain::relay;
use gost_core::{config, metrics};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "plugin") {
        return gost::plugin_tool::run(&args[1..]);
    }
    let groups = cli::split_groups(&args);
    let busy_poll = match relay::busy_poll::window_from_env() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("gost: {}: {e}", relay::busy_poll::ENV);
            return ExitCode::FAILURE;
        }
    };
    // With one CPU (a proxy pinned with taskset, or a container limited to
    // one core) a current-thread runtime does the same work without the
    // work-stealing scheduler's cross-thread wake-ups.
    let single_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if single_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gost: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if groups.len() > 1 {
        let _ = logger::init(None, None);
        rt.block_on(multiprocess::run(groups))
    } else {
        if let Some(window) = busy_poll {
            rt.spawn(relay::busy_poll::poller(window));
        }
        rt.block_on(run(&args))
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let parsed = match cli::parse_args(args) {
        Ok(a) => a,
        Err(cli::CliError::Help(text)) => {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    if parsed.version {
        println!(
            "gost {} (rust {}/{})",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (config, warnings) = cli::load_config_and_warnings(&parsed)?;
    if let Some(format) = parsed.output {
        let text = match format {
            cli::OutputFormat::Yaml => config.to_yaml(),
            cli::OutputFormat::Json => config.to_json(),
        }?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let level = if parsed.trace {
        Some("trace")
    } else if parsed.debug {
        Some("debug")
    } else {
        None
    };
    logger::init(config.log.as_ref(), level)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match gost_core::nofile::raise() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit to its hard limit"),
    }
    let api_cfg = config.api.clone().filter(|a| !a.addr.is_empty());
    let metrics_cfg = config.metrics.clone().filter(|m| !m.addr.is_empty());
    if let Some(a) = api_cfg.as_ref().filter(|a| {
        matches!(
            api::Access::new(&a.auther, a.auth.as_ref()),
            api::Access::Open
        )
    }) {
        if api::beyond_loopback(&a.addr) {
            tracing::warn!(addr = %a.addr, "the web API listens beyond loopback without auth: anyone who reaches it can read every credential and change the config");
        }
    }
    if let Some(m) = metrics_cfg.as_ref().filter(|m| {
        matches!(
            api::Access::new(&m.auther, m.auth.as_ref()),
            api::Access::Open
        )
    }) {
        if api::beyond_loopback(&m.addr) {
            tracing::warn!(addr = %m.addr, "metrics listen beyond loopback without auth");
        }
    }
    // Registered before any port is bound: a signal sent as soon as a port
    // accepts must stop (or reload) gost, not kill it by the default action.
    let stop_signals = StopSignals::new();
    if api_cfg.is_some() {
        // Before any service is built: the API lists and closes live
        // connections, and only those accepted while it is on are listed.
        gost_core::connections::enable();
    }
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let built = match app::build(config) {
        Ok(b) => b,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("invalid configuration:\n  {}", list.join("\n  "));
        }
    };

    let app = built.app.clone();
    if let Some(path) =
        parsed
            .configs
            .iter()
            .rev()
            .find_map(|c| match config::Source::classify(c) {
                config::Source::File(p) => Some(p),
                _ => None,
            })
    {
        app.set_config_file(path);
    }
    let args = parsed.clone();
    app.set_reloader(Box::new(move || {
        cli::load_config_and_warnings(&args)
            .map(|(cfg, _)| cfg)
            .map_err(|e| e.to_string())
    }));

    let shutdown = CancellationToken::new();
    if let Some(api_cfg) = api_cfg {
        let router = api::router(app.clone(), &api_cfg);
        serve_http("api", &api_cfg.addr, router, shutdown.clone()).await?;
    }
    if let Some(m) = metrics_cfg {
        metrics::enable();
        let router = scrape::router(app.clone(), &m);
        serve_http("metrics", &m.addr, router, shutdown.clone()).await?;
    }
    tokio::spawn(reload_on_signal(app.clone(), hup, parsed.reload));

    let token = shutdown.clone();
    tokio::spawn(async move {
        let Some(mut signals) = stop_signals else {
            // Without signal handlers the process can still be killed;
            // never treat that as a request to stop.
            return;
        };
        signals.recv().await;
        tracing::info!("shutting down");
        token.cancel();
        // A second signal means "now": skip the drain.
        signals.recv().await;
        std::process::exit(130);
    });
    built.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP, and every `-R` period when given, reads the config again and
/// applies the difference, as GOST does; a bad config is logged and the
/// running one kept.
async fn reload_on_signal(
    app: Arc<app::App>,
    hup: std::io::Result<tokio::signal::unix::Signal>,
    period: Option<std::time::Duration>,
) {
    let Ok(mut hup) = hup else {
        tracing::warn!("cannot listen for SIGHUP; reload by signal is off");
        return;
    };
    let mut tick = period.map(tokio::time::interval);
    if let Some(t) = &mut tick {
        t.tick().await;
    }
    loop {
        let by = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = async { match &mut tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => "-R",
        };
        match app.reload().await {
            Ok(()) => tracing::info!(by, "config reloaded"),
            Err(e) => {
                tracing::error!(by, error = %e, "config reload failed, keeping the running config")
            }
        }
    }
}

/// Binds an HTTP endpoint (TCP, or a unix socket for `unix:///path`) and
/// serves it until shutdown. Binding happens before the services start,
/// so a bad address stops start-up.
async fn serve_http(
    what: &'static str,
    addr: &str,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stop = async move { shutdown.cancelled().await };
    if let Some(path) = addr.strip_prefix("unix://") {
        // A socket file left by an earlier run would make bind fail.
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("{what}: cannot listen on {addr}"))?;
        tracing::info!(%addr, "{what} listening");
        spawn_http(what, listener, router, stop);
    } else {
        // `:8080` means all interfaces, as in Go.
        let bind = if addr.starts_with(':') {
            format!("[::]{addr}")
        } else {
            addr.to_string()
        };
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("{what}: cannot listen on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "{what} listening");
        spawn_http(what, listener, router, stop);
    }
    Ok(())
}

fn spawn_http<L>(
    what: &'static str,
    listener: L,
    router: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
{
    tokio::spawn(api::server::serve(what, listener, router, stop));
}

/// SIGINT and SIGTERM, the two ways to ask gost to stop.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(StopSignals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
