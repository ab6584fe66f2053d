//! GOST's web API (go-gost/x `api`): the running configuration under
//! `<pathPrefix>/config`, read and changed live.

mod browser;
mod config;
mod connections;
mod error;
mod health;
mod json_errors;
mod objects;
mod save_path;
mod secrets;
pub mod server;
mod stream;
#[cfg(feature = "tunnel")]
mod tunnels;
mod ui;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;

use crate::app::App;
use gost_core::auth::Auther;
use gost_core::config::{APIConfig, AuthConfig};

pub use browser::beyond_loopback;
pub use error::ApiError;

/// Who may call: a named auther (looked up live, so changing it through
/// the API applies at once), else fixed credentials, else anyone.
#[derive(Clone)]
pub enum Access {
    Open,
    Basic(String, String),
    Auther(String),
}

impl Access {
    /// GOST's choice: `auther` wins over `auth`.
    pub fn new(auther: &str, auth: Option<&AuthConfig>) -> Access {
        if !auther.is_empty() {
            return Access::Auther(auther.to_string());
        }
        match auth {
            Some(a) if !a.username.is_empty() || !a.password.is_empty() => {
                Access::Basic(a.username.clone(), a.password.clone())
            }
            _ => Access::Open,
        }
    }

    /// Checks the request's basic credentials.
    pub async fn allows(&self, app: &App, headers: &HeaderMap) -> bool {
        let creds = basic_credentials(headers);
        match self {
            Access::Open => true,
            Access::Basic(user, pass) => creds.is_some_and(|(u, p)| {
                constant_time_eq(u.as_bytes(), user.as_bytes())
                    & constant_time_eq(p.as_bytes(), pass.as_bytes())
            }),
            Access::Auther(name) => {
                let (u, p) = creds.unwrap_or_default();
                let Some(a): Option<Arc<dyn Auther>> = app.auther(name) else {
                    return false;
                };
                a.authenticate(gost_core::auth::AuthRequest::new(&u, &p))
                    .await
                    .is_some()
            }
        }
    }
}

#[derive(Clone)]
pub struct ApiState {
    app: Arc<App>,
    access: Access,
    access_log: bool,
    browser: browser::BrowserPolicy,
    save_path_anywhere: bool,
    mask_secrets: bool,
}

/// Builds the API router for `cfg`, routes mounted under its `pathPrefix`.
pub fn router(app: Arc<App>, cfg: &APIConfig) -> Router {
    let access = Access::new(&cfg.auther, cfg.auth.as_ref());
    std::sync::LazyLock::force(&stream::STARTED);
    let state = ApiState {
        app,
        browser: browser::BrowserPolicy::new(cfg, !matches!(access, Access::Open)),
        access,
        access_log: cfg.accesslog,
        save_path_anywhere: cfg.save_path_anywhere,
        mask_secrets: cfg.mask_secrets,
    };
    let cors = state.browser.cors_layer();
    let routes = Router::new()
        .route("/config", get(config::get).post(config::save))
        .route("/config/reload", post(config::reload))
        .route("/config/{kind}", get(objects::list).post(objects::create))
        .route(
            "/config/{kind}/{name}",
            get(objects::get)
                .put(objects::update)
                .delete(objects::delete),
        )
        .route("/connections", get(connections::list))
        .route(
            "/connections/{id}",
            axum::routing::delete(connections::close),
        )
        .route("/health", get(health::get))
        .route("/stream", get(stream::get))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/process", get(stream::get_process))
        .layer(DefaultBodyLimit::max(objects::BODY_LIMIT));
    #[cfg(feature = "tunnel")]
    let routes = routes.route("/tunnels", get(tunnels::list));
    let routes = routes
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
    match cors {
        Some(c) => app.layer(c),
        None => app,
    }
}

/// GOST's success body.
fn ok() -> Response {
    Json(serde_json::json!({"msg": "OK"})).into_response()
}

async fn middleware(
    State(st): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = if let Err(e) = st.browser.check(req.method(), req.headers()) {
        e.into_response()
    } else if st.access.allows(&st.app, req.headers()).await {
        json_errors::as_json(next.run(req).await).await
    } else {
        unauthorized()
    };
    if st.access_log {
        tracing::info!(kind = "api", %method, uri = %gost_core::escape::esc(&uri), code = resp.status().as_u16(), duration = ?start.elapsed(), "api request");
    }
    resp
}

/// 401 with GOST's body and a basic-auth challenge.
pub fn unauthorized() -> Response {
    let mut r = ApiError::unauthorized().into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    r
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Avoids leaking how much of a guessed credential was right through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
