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
    if !st.access.allows(&st.app, &headers) {
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
    let text = render(enable(), &states);
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
