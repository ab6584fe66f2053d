//! `GET /tunnels`: the clients registered with each tunnel service and
//! each tunnel's counters. GOST's API has no such route (its tunnel
//! clients are seen only in its logs); this one is gost-rs's own, read
//! only, under the same access rules as the rest of the API.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

pub async fn list() -> Response {
    let mut services = Map::new();
    for (name, connectors) in gost_handler::tunnel::connected() {
        services.insert(
            name,
            json!({"connectors": connectors.iter().map(|c| c.to_json()).collect::<Vec<_>>()}),
        );
    }
    for (name, refused, tunnels) in gost_handler::tunnel::tunnel_counts() {
        let entry = services
            .entry(name)
            .or_insert_with(|| json!({"connectors": []}));
        let tunnels: Vec<Value> = tunnels
            .into_iter()
            .map(|(id, clients, stats)| {
                let s = stats.snapshot();
                json!({
                    "tunnel": id,
                    "clients": clients,
                    "totalConns": s.total_conns,
                    "currentConns": s.current_conns,
                    "inputBytes": s.input_bytes,
                    "outputBytes": s.output_bytes,
                })
            })
            .collect();
        entry["refused"] = json!(refused);
        entry["tunnels"] = json!(tunnels);
    }
    Json(json!({"data": {"services": services}})).into_response()
}
