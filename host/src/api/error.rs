//! GOST's API error body and codes (go-gost/x `api/error.go`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::app::ApplyError;

pub const INVALID: u32 = 40001;
pub const DUPLICATED: u32 = 40002;
pub const FAILED: u32 = 40003;
pub const NOT_FOUND: u32 = 40004;
pub const SAVE_FAILED: u32 = 40005;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    code: u32,
    msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            msg: msg.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, INVALID, msg)
    }

    pub fn msg(&self) -> &str {
        &self.msg
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, 401, "Unauthorized")
    }
}

/// Status codes as GOST's handlers send them: a failed creation is 500
/// there (not the 409 its error table suggests).
impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let (status, code) = match &e {
            ApplyError::Invalid(_) => (StatusCode::BAD_REQUEST, INVALID),
            ApplyError::Duplicate(_) => (StatusCode::BAD_REQUEST, DUPLICATED),
            ApplyError::NotFound(_) => (StatusCode::BAD_REQUEST, NOT_FOUND),
            ApplyError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, FAILED),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}
