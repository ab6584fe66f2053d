//! `gost`: the command-line entry. Errors become `anyhow` here, at the edge.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use gost::{api, app, cli, logger, multiprocess};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let groups = cli::split_groups(&args);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    if parsed.reload.is_some() {
        anyhow::bail!("-R (periodic reload) is not supported yet");
    }

    let api_cfg = config.api.clone().filter(|a| !a.addr.is_empty());
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

    let shutdown = CancellationToken::new();
    if let Some(api_cfg) = api_cfg {
        serve_api(built.app.clone(), &api_cfg, shutdown.clone()).await?;
    }

    let token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        token.cancel();
        // A second signal means "now": skip the drain.
        wait_for_signal().await;
        std::process::exit(130);
    });
    built.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// Binds the API (TCP, or a unix socket for `unix:///path`) and serves it
/// until shutdown. Binding happens before the services start, so a bad
/// address stops start-up.
async fn serve_api(
    app: std::sync::Arc<app::App>,
    cfg: &gost::config::APIConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let router = api::router(app, cfg);
    let stop = async move { shutdown.cancelled().await };
    if let Some(path) = cfg.addr.strip_prefix("unix://") {
        // A socket file left by an earlier run would make bind fail.
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("api: cannot listen on {}", cfg.addr))?;
        tracing::info!(addr = %cfg.addr, "api listening");
        spawn_api(listener, router, stop);
    } else {
        // `:8080` means all interfaces, as in Go.
        let addr = if cfg.addr.starts_with(':') {
            format!("[::]{}", cfg.addr)
        } else {
            cfg.addr.clone()
        };
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("api: cannot listen on {}", cfg.addr))?;
        tracing::info!(addr = %listener.local_addr()?, "api listening");
        spawn_api(listener, router, stop);
    }
    Ok(())
}

fn spawn_api<L>(
    listener: L,
    router: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "api server");
        }
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process can still be killed; never
        // treat that as a request to stop.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
