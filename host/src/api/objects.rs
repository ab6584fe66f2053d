//! Create, read, update and delete of every named object kind, as GOST's
//! `/config/<kind>` routes. The objects are handled as JSON against the
//! config document, so each kind needs one line in [`KINDS`]; a change
//! goes through `App::update`, which checks the whole resulting config and
//! applies it live, except a change to one service, which
//! `App::change_service` checks and applies at the cost of that service.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::config::FormatQuery;
use super::error::{ApiError, INVALID};
use super::{ok, secrets, ApiState};
use crate::app::ApplyError;
use gost_core::config::{Config, ServiceConfig};

/// Route segment and the singular GOST uses in messages.
const KINDS: &[(&str, &str)] = &[
    ("services", "service"),
    ("chains", "chain"),
    ("hops", "hop"),
    ("authers", "auther"),
    ("admissions", "admission"),
    ("bypasses", "bypass"),
    ("resolvers", "resolver"),
    ("hosts", "hosts"),
    ("ingresses", "ingress"),
    ("routers", "router"),
    ("observers", "observer"),
    ("recorders", "recorder"),
    ("sds", "sd"),
    ("limiters", "limiter"),
    ("quotas", "quota"),
    ("climiters", "limiter"),
    ("rlimiters", "limiter"),
    ("caches", "cache"),
    ("loggers", "logger"),
];

/// Larger request bodies are refused before they are read in full.
pub const BODY_LIMIT: usize = 1 << 20;

fn kind(segment: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(k, _)| *k == segment)
        .map(|(_, singular)| *singular)
}

fn unknown_kind() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

pub async fn list(State(st): State<ApiState>, Path(segment): Path<String>) -> Response {
    if kind(&segment).is_none() {
        return unknown_kind();
    }
    let mut list = section(&st, &segment);
    if st.mask_secrets {
        list.iter_mut().for_each(secrets::mask);
    }
    Json(json!({"data": {"count": list.len(), "list": list}})).into_response()
}

/// An unknown name gives an empty body with 200, as in GOST.
/// `?format=yaml` (not in GOST) gives the object alone as YAML, for the
/// dashboard's editor.
pub async fn get(
    State(st): State<ApiState>,
    Path((segment, name)): Path<(String, String)>,
    Query(q): Query<FormatQuery>,
) -> Response {
    if kind(&segment).is_none() {
        return unknown_kind();
    }
    let name = name.trim();
    match section(&st, &segment)
        .into_iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(mut obj) => {
            if st.mask_secrets {
                secrets::mask(&mut obj);
            }
            if q.format.as_deref() == Some("yaml") {
                return match serde_yaml::to_string(&obj) {
                    Ok(y) => ([(header::CONTENT_TYPE, "text/x-yaml")], y).into_response(),
                    Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, e.to_string())
                        .into_response(),
                };
            }
            Json(json!({ "data": obj })).into_response()
        }
        None => Json(json!({})).into_response(),
    }
}

pub async fn create(
    State(st): State<ApiState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(singular) = kind(&segment) else {
        return unknown_kind();
    };
    let result = async {
        let mut obj = object(&headers, body)?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(format!("{singular} name is required")));
        }
        check_name(singular, &name)?;
        obj.insert("name".into(), Value::String(name.clone()));
        if st.mask_secrets {
            secrets::unmask(&mut obj, None).map_err(|e| invalid(singular, &e))?;
        }
        let duplicate = |exists: bool| match exists {
            true => Err(ApplyError::Duplicate(format!(
                "{singular} {name} already exists"
            ))),
            false => Ok(()),
        };
        if segment == "services" {
            let svc = parse_service(obj)?;
            st.app.change_service(&name, Some(svc), duplicate).await?;
        } else {
            st.app
                .update(|cfg| {
                    let mut doc = document(cfg);
                    let list = list_mut(&mut doc, &segment);
                    duplicate(position(list, &name).is_some())?;
                    list.push(Value::Object(obj));
                    candidate(doc, &segment, singular)
                })
                .await?;
        }
        tracing::info!(kind = %singular, name = %gost_core::escape::esc(&name), "created through the API");
        Ok(())
    }
    .await;
    respond(result)
}

pub async fn update(
    State(st): State<ApiState>,
    Path((segment, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(singular) = kind(&segment) else {
        return unknown_kind();
    };
    let name = name.trim().to_string();
    let result = async {
        let mut obj = object(&headers, body)?;
        check_name(singular, &name)?;
        obj.insert("name".into(), Value::String(name.clone()));
        if st.mask_secrets {
            let current = section(&st, &segment)
                .into_iter()
                .find(|o| o.get("name").and_then(Value::as_str) == Some(&*name));
            secrets::unmask(&mut obj, current.as_ref()).map_err(|e| invalid(singular, &e))?;
        }
        if segment == "services" {
            let svc = parse_service(obj)?;
            st.app
                .change_service(&name, Some(svc), must_exist(singular, &name))
                .await?;
        } else {
            st.app
                .update(|cfg| {
                    let mut doc = document(cfg);
                    let list = list_mut(&mut doc, &segment);
                    let i = position(list, &name).ok_or_else(|| not_found(singular, &name))?;
                    list[i] = Value::Object(obj);
                    candidate(doc, &segment, singular)
                })
                .await?;
        }
        tracing::info!(kind = %singular, name = %gost_core::escape::esc(&name), "updated through the API");
        Ok(())
    }
    .await;
    respond(result)
}

pub async fn delete(
    State(st): State<ApiState>,
    Path((segment, name)): Path<(String, String)>,
) -> Response {
    let Some(singular) = kind(&segment) else {
        return unknown_kind();
    };
    let name = name.trim().to_string();
    let result = if segment == "services" {
        st.app
            .change_service(&name, None, must_exist(singular, &name))
            .await
    } else {
        st.app
            .update(|cfg| {
                let mut doc = document(cfg);
                let list = list_mut(&mut doc, &segment);
                let i = position(list, &name).ok_or_else(|| not_found(singular, &name))?;
                list.remove(i);
                candidate(doc, &segment, singular)
            })
            .await
    }
    .map_err(ApiError::from);
    if result.is_ok() {
        tracing::info!(kind = %singular, name = %gost_core::escape::esc(&name), "deleted through the API");
    }
    respond(result)
}

fn respond(result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => ok(),
        Err(e) => e.into_response(),
    }
}

fn invalid(singular: &str, msg: &str) -> ApiError {
    ApiError::invalid(format!("invalid {singular}: {msg}"))
}

fn not_found(singular: &str, name: &str) -> ApplyError {
    ApplyError::NotFound(format!("{singular} {name} not found"))
}

/// Refuses a change to an object that does not exist.
fn must_exist<'a>(
    singular: &'a str,
    name: &'a str,
) -> impl FnOnce(bool) -> Result<(), ApplyError> + 'a {
    move |exists| match exists {
        true => Ok(()),
        false => Err(not_found(singular, name)),
    }
}

/// The objects of one section, services with their live status.
fn section(st: &ApiState, segment: &str) -> Vec<Value> {
    let cfg = if segment == "services" {
        st.app.config_with_status()
    } else {
        st.app.config()
    };
    match document(&cfg).remove(segment) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    }
}

fn document(cfg: &Config) -> Map<String, Value> {
    match serde_json::to_value(cfg) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn list_mut<'a>(doc: &'a mut Map<String, Value>, segment: &str) -> &'a mut Vec<Value> {
    let v = doc
        .entry(segment.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(list) => list,
        _ => unreachable!("replaced by an array above"),
    }
}

fn position(list: &[Value], name: &str) -> Option<usize> {
    list.iter()
        .position(|o| o.get("name").and_then(Value::as_str) == Some(name))
}

/// The config the change makes, or where the changed object does not fit
/// its type: `invalid bypass: matchers: invalid type: ...`.
fn candidate(doc: Map<String, Value>, segment: &str, singular: &str) -> Result<Config, ApplyError> {
    serde_path_to_error::deserialize(Value::Object(doc)).map_err(|e| {
        let path = e.path().to_string();
        // Only the changed object can be wrong; drop its index in the list.
        let field = path
            .strip_prefix(segment)
            .and_then(|p| p.strip_prefix('['))
            .and_then(|p| p.split_once(']'))
            .map(|(_, rest)| rest.trim_start_matches('.'))
            .unwrap_or(&path);
        type_error(singular, field, e.into_inner())
    })
}

/// A service as the request gives it, with the same errors as
/// [`candidate`] gives for it inside a whole config.
fn parse_service(obj: Map<String, Value>) -> Result<ServiceConfig, ApplyError> {
    serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
        let path = e.path().to_string();
        type_error("service", &path, e.into_inner())
    })
}

fn type_error(singular: &str, field: &str, inner: serde_json::Error) -> ApplyError {
    if field.is_empty() || field == "?" || field == "." {
        ApplyError::Invalid(format!("invalid {singular}: {inner}"))
    } else {
        ApplyError::Invalid(format!("invalid {singular}: {field}: {inner}"))
    }
}

/// The request body as a JSON object. GOST's Go decoder ignores unknown
/// fields, and so do we; anything that is not an object is refused. A
/// body sent as `application/yaml` (not in GOST: the dashboard's editor)
/// is read as YAML, then checked exactly as JSON is.
fn object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), INVALID, e.body_text()))?;
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("yaml"));
    let parsed = if yaml {
        serde_yaml::from_slice::<Value>(&body).map_err(|e| format!("invalid YAML: {e}"))
    } else {
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("invalid JSON: {e}"))
    };
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) if yaml => Err(ApiError::invalid("request body must be a YAML mapping")),
        Ok(_) => Err(ApiError::invalid("request body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(e)),
    }
}

/// Names end up in URL paths, file names of saved configs and log fields;
/// path separators and control characters would make them ambiguous.
fn check_name(singular: &str, name: &str) -> Result<(), ApiError> {
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(ApiError::invalid(format!(
            "{singular} name {name:?} must not contain '/', '\\' or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_path_characters_are_refused() {
        assert!(check_name("service", "web-1").is_ok());
        for bad in ["a/b", "a\\b", "a\nb", "../x"] {
            assert!(check_name("service", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        let json = HeaderMap::new();
        assert!(object(&json, Ok(Bytes::from_static(b"[1]"))).is_err());
        assert!(object(&json, Ok(Bytes::from_static(b"{\"name\":"))).is_err());
        let m = object(
            &json,
            Ok(Bytes::from_static(b"{\"name\":\"x\",\"extra\":1}")),
        )
        .unwrap();
        assert_eq!(m["name"], "x");
        let mut yaml = HeaderMap::new();
        yaml.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        let m = object(&yaml, Ok(Bytes::from_static(b"name: y\naddr: ':1'\n"))).unwrap();
        assert_eq!(m["addr"], ":1");
        let e = object(&yaml, Ok(Bytes::from_static(b"name: [\n"))).unwrap_err();
        assert!(e.msg().starts_with("invalid YAML: "), "{}", e.msg());
        assert!(object(&yaml, Ok(Bytes::from_static(b"- 1\n"))).is_err());
    }

    #[test]
    fn candidate_reports_wrong_types() {
        let mut doc = Map::new();
        doc.insert(
            "services".into(),
            json!([{"name": "x", "addr": 5, "handler": {"type": "tcp"}}]),
        );
        let err = candidate(doc, "services", "service")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid service: addr: invalid type"),
            "{err}"
        );
    }
}
