//! The whole document: `GET /config`, `POST /config` (save to a file) and
//! `POST /config/reload`.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, SAVE_FAILED};
use super::{ok, ApiState};
use gost_core::config::Config;

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

pub async fn get(State(st): State<ApiState>, Query(q): Query<FormatQuery>) -> Response {
    let cfg = st.app.config_with_status();
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
        Some(p) => PathBuf::from(p),
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
        write_atomically(&path, t.as_bytes())
            .map_err(|e| format!("save config to {}: {e}", path.display()))
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

/// A crash or a full disk mid-write must not leave a truncated config:
/// write a temporary file beside the target, flush it to disk, then
/// rename it over the target in one step.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself is durable only once the directory is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("gost-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gost.yaml");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(write_atomically(&dir.join("missing/x.yaml"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
