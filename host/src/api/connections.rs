//! The live connections (not in GOST): `GET /connections` lists them
//! (`?service=` for one service's), `DELETE /connections/{id}` closes
//! one. The registry is on whenever the API runs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, NOT_FOUND};
use super::{ok, ApiState};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    service: Option<String>,
}

pub async fn list(State(_): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let service = q.service.as_deref().filter(|s| !s.is_empty());
    let list: Vec<_> = gost_core::connections::enable()
        .list(service)
        .iter()
        .map(|c| c.info())
        .collect();
    Json(json!({"data": {"count": list.len(), "list": list}})).into_response()
}

pub async fn close(State(_): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim().parse::<u64>() else {
        return ApiError::invalid(format!(
            "connection id {:?} is not a number",
            gost_core::escape::esc(&id).to_string()
        ))
        .into_response();
    };
    if gost_core::connections::enable().close(id) {
        tracing::info!(id, "connection close asked through the API");
        ok()
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            NOT_FOUND,
            format!("connection {id} not found"),
        )
        .into_response()
    }
}
