//! GOST answers every API error with its JSON shape; axum's extractors
//! answer theirs (a path segment that is not UTF-8, a body too large) as
//! plain text. Those become `{"code": 40001, "msg": ...}` with the same
//! status.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, INVALID};

/// The most of a plain-text error body kept as the message.
const MAX_MSG: usize = 4096;

pub async fn as_json(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), MAX_MSG)
        .await
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&body).into_owned();
    ApiError::new(status, INVALID, msg).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_gosts_json_error() {
        let plain = (StatusCode::BAD_REQUEST, "Invalid URL: bad utf-8").into_response();
        let resp = as_json(plain).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 40001, "msg": "Invalid URL: bad utf-8"})
        );
        // Answers that are not plain-text errors pass as they are.
        let ok = as_json((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let json = ApiError::invalid("x").into_response();
        let json = as_json(json).await;
        let body = axum::body::to_bytes(json.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"code":40001,"msg":"x"}"#);
    }
}
