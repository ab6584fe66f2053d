//! `GET /health` (not in GOST): each service's chains, hops and forwarder
//! nodes with their nodes' failures, dead marks and probe results, as
//! `gost_chain::chain::health` reads them (`?service=` for one service's).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiState;

#[derive(Debug, Deserialize)]
pub struct HealthQuery {
    service: Option<String>,
}

/// The health list, of one service when `service` is given.
pub fn list(service: Option<&str>) -> Vec<Value> {
    let mut list = gost_chain::chain::health::snapshot();
    if let Some(s) = service {
        list.retain(|v| v["service"] == s);
    }
    list
}

pub async fn get(State(_): State<ApiState>, Query(q): Query<HealthQuery>) -> Response {
    let list = list(q.service.as_deref().filter(|s| !s.is_empty()));
    axum::Json(json!({"data": {"count": list.len(), "list": list}})).into_response()
}
