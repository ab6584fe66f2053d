//! The scrape endpoint (go-gost/x `metrics/service`): `GET <path>` (default
//! `/metrics`), optionally behind basic auth or a named auther.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::Access;
use crate::app::App;
use gost_core::config::MetricsConfig;
use gost_core::metrics::{enable, render};

pub const DEFAULT_PATH: &str = "/metrics";

#[derive(Clone)]
struct MetricsState {
    app: Arc<App>,
    access: Access,
}

pub fn router(app: Arc<App>, cfg: &MetricsConfig) -> Router {
    let path = match cfg.path.trim() {
        "" => DEFAULT_PATH.to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    let state = MetricsState {
        app,
        access: Access::new(&cfg.auther, cfg.auth.as_ref()),
    };
    Router::new().route(&path, get(scrape)).with_state(state)
}

async fn scrape(State(st): State<MetricsState>, headers: HeaderMap) -> Response {
    // As GOST: a bare 401 without a body.
    if !st.access.allows(&st.app, &headers).await {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
        )
            .into_response();
    }
    let states: Vec<&str> = st
        .app
        .service_states()
        .into_iter()
        .map(|s| s.as_str())
        .collect();
    #[allow(unused_mut)]
    let mut text = render(enable(), &states);
    #[cfg(feature = "tunnel")]
    text.push_str(&tunnel_metrics());
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        text,
    )
        .into_response()
}

/// gost-rs's own series for the tunnel handler (GOST has none): clients
/// registered, visitor connections and bytes per tunnel, and requests
/// refused per service.
#[cfg(feature = "tunnel")]
fn tunnel_metrics() -> String {
    use std::fmt::Write;
    let counts = gost_handler::tunnel::tunnel_counts();
    if counts.is_empty() {
        return String::new();
    }
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let series: [(&str, &str, &str); 5] = [
        (
            "gost_tunnel_clients",
            "gauge",
            "Clients registered with the tunnel",
        ),
        (
            "gost_tunnel_conns_total",
            "counter",
            "Visitor connections through the tunnel",
        ),
        (
            "gost_tunnel_conns_current",
            "gauge",
            "Visitor connections open through the tunnel",
        ),
        (
            "gost_tunnel_input_bytes_total",
            "counter",
            "Bytes read from the tunnel's visitors",
        ),
        (
            "gost_tunnel_output_bytes_total",
            "counter",
            "Bytes written to the tunnel's visitors",
        ),
    ];
    for (i, (name, kind, help)) in series.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (svc, _, tunnels) in &counts {
            for (id, clients, stats) in tunnels {
                let s = stats.snapshot();
                let v = [
                    *clients as u64,
                    s.total_conns,
                    s.current_conns,
                    s.input_bytes,
                    s.output_bytes,
                ][i];
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",tunnel=\"{id}\"}} {v}",
                    esc(svc)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP gost_tunnel_refused_total Tunnel requests and visitors refused\n# TYPE gost_tunnel_refused_total counter");
    for (svc, refused, _) in &counts {
        let _ = writeln!(
            out,
            "gost_tunnel_refused_total{{service=\"{}\"}} {refused}",
            esc(svc)
        );
    }
    out
}
