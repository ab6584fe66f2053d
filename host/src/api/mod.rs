//! GOST's web API (read-only so far): `GET <pathPrefix>/config` returns the
//! running configuration with each service's live `status`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::app::App;
use crate::config::APIConfig;

/// GOST's error body.
#[derive(Debug, Serialize)]
struct ErrorBody {
    code: u16,
    msg: String,
}

#[derive(Clone)]
struct ApiState {
    app: Arc<App>,
    auth: Option<(String, String)>,
    access_log: bool,
}

#[derive(Debug, Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// Builds the API router for `cfg`, routes mounted under its `pathPrefix`.
pub fn router(app: Arc<App>, cfg: &APIConfig) -> Router {
    let auth = cfg
        .auth
        .as_ref()
        .filter(|a| !a.username.is_empty() || !a.password.is_empty())
        .map(|a| (a.username.clone(), a.password.clone()));
    let state = ApiState {
        app,
        auth,
        access_log: cfg.accesslog,
    };
    let routes = Router::new()
        .route("/config", get(get_config))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware,
        ))
        .with_state(state);
    let prefix = cfg.path_prefix.trim_end_matches('/');
    let app = if prefix.is_empty() {
        routes
    } else {
        let prefix = if prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        Router::new().nest(&prefix, routes)
    };
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::any())
            .allow_methods(AllowMethods::list([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ]))
            .allow_headers(AllowHeaders::any()),
    )
}

async fn middleware(
    State(st): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = if authorized(&st, req.headers()) {
        next.run(req).await
    } else {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                code: 401,
                msg: "Unauthorized".into(),
            }),
        )
            .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    };
    if st.access_log {
        tracing::info!(kind = "api", %method, %uri, code = resp.status().as_u16(), duration = ?start.elapsed(), "api request");
    }
    resp
}

fn authorized(st: &ApiState, headers: &HeaderMap) -> bool {
    let Some((user, pass)) = &st.auth else {
        return true;
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((u, p)) = text.split_once(':') else {
        return false;
    };
    constant_time_eq(u.as_bytes(), user.as_bytes())
        & constant_time_eq(p.as_bytes(), pass.as_bytes())
}

/// Avoids leaking how much of a guessed credential was right through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_config(State(st): State<ApiState>, Query(q): Query<FormatQuery>) -> Response {
    let cfg = st.app.config_with_status();
    let (body, content_type) = match q.format.as_deref() {
        Some("yaml") => (cfg.to_yaml(), "text/x-yaml"),
        _ => (cfg.to_json(), "application/json"),
    };
    match body {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody {
                code: 500,
                msg: e.to_string(),
            }),
        )
            .into_response(),
    }
}
