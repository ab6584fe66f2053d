//! The whole document: `GET /config`, `POST /config` (save to a file) and
//! `POST /config/reload`.

use std::path::PathBuf;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, SAVE_FAILED};
use super::{ok, save_path, secrets, ApiState};
use gost_core::config::Config;

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    pub format: Option<String>,
}

pub async fn get(State(st): State<ApiState>, Query(q): Query<FormatQuery>) -> Response {
    let mut cfg = st.app.config_with_status();
    if st.mask_secrets {
        cfg = match masked(&cfg) {
            Ok(c) => c,
            Err(e) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, e).into_response()
            }
        };
    }
    let (body, content_type) = match q.format.as_deref() {
        Some("yaml") => (cfg.to_yaml(), "text/x-yaml"),
        _ => (cfg.to_json(), "application/json"),
    };
    match body {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, e.to_string()).into_response()
        }
    }
}

/// `cfg` with its secrets masked, still a config so it prints in the
/// usual order.
fn masked(cfg: &Config) -> Result<Config, String> {
    let mut v = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    secrets::mask(&mut v);
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[derive(Debug, Deserialize)]
pub struct SaveQuery {
    format: Option<String>,
    path: Option<String>,
}

/// Saves the running config (without live status) as GOST does: to
/// `?path=`, else the loaded config file, else `gost.yaml` (`gost.json`
/// with `?format=json`); the format follows `?format=` or the extension.
pub async fn save(State(st): State<ApiState>, Query(q): Query<SaveQuery>) -> Response {
    let format = q.format.as_deref().map(str::to_ascii_lowercase);
    let path = match q.path.filter(|p| !p.is_empty()) {
        Some(p) if st.save_path_anywhere => PathBuf::from(p),
        Some(p) => match save_path::inside_config_dir(st.app.config_file(), &p) {
            Ok(p) => p,
            Err(msg) => {
                return ApiError::new(StatusCode::FORBIDDEN, SAVE_FAILED, msg).into_response()
            }
        },
        None => match st.app.config_file() {
            Some(p) => p.clone(),
            None if format.as_deref() == Some("json") => PathBuf::from("gost.json"),
            None => PathBuf::from("gost.yaml"),
        },
    };
    let json = match format.as_deref() {
        Some("json") => true,
        Some("yaml") => false,
        _ => path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json")),
    };
    let cfg: Config = st.app.config();
    let text = if json { cfg.to_json() } else { cfg.to_yaml() };
    let result = text.map_err(|e| format!("save config: {e}")).and_then(|t| {
        gost_core::config::save::write_config_file(&path, t.as_bytes())
            .map_err(|e| format!("save config: {e}"))
    });
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), "config saved through the API");
            ok()
        }
        Err(msg) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, SAVE_FAILED, msg).into_response()
        }
    }
}

/// GOST answers every failed reload, a port in use included, with 400
/// and code 40001.
pub async fn reload(State(st): State<ApiState>) -> Response {
    match st.app.reload().await {
        Ok(()) => {
            tracing::info!("config reloaded through the API");
            ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload through the API failed, keeping the running config");
            ApiError::invalid(e.to_string()).into_response()
        }
    }
}
