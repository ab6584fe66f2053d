//! The web API in a world of browsers: any page a local user opens can
//! send requests to `localhost`. GOST answers every origin with
//! `Access-Control-Allow-Origin: *` and takes any body; here, by default:
//!
//! - a write (a request other than GET, HEAD or OPTIONS) that carries a
//!   body must say `Content-Type: application/json`, which a page can only
//!   send after a CORS preflight (`api.anyContentType` lifts this);
//! - a write from a page (an `Origin` header) of another origin is
//!   refused unless `api.cors` lists that origin;
//! - CORS headers are sent only for the origins `api.cors` lists (`*` for
//!   any, as GOST);
//! - an API without auth answers only requests whose `Host` is an IP
//!   address, `localhost` or a name `api.hosts` lists (`*` for any), so a
//!   page cannot reach it through a name it points at 127.0.0.1 (DNS
//!   rebinding).
//!
//! Every refusal answers GOST's JSON error shape.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use super::error::{ApiError, INVALID};
use gost_core::config::APIConfig;

#[derive(Clone, Debug)]
pub struct BrowserPolicy {
    cors: Vec<String>,
    hosts: Vec<String>,
    /// Whether the `Host` header is checked: an API without auth on TCP.
    check_host: bool,
    any_content_type: bool,
}

/// GOST's error code for a forbidden request.
const FORBIDDEN: u32 = 40003;

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// JSON, or YAML (the dashboard's object editor): neither is a type a
/// page may send to another origin without a CORS preflight.
fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            t == "application/json"
                || (t.starts_with("application/") && t.ends_with("+json"))
                || t == "application/yaml"
                || t == "application/x-yaml"
        })
}

/// The host of a `Host` header or of an origin's authority, without port
/// or brackets.
fn host_part(authority: &str) -> &str {
    gost_core::addr::host_of(authority)
}

impl BrowserPolicy {
    pub fn new(cfg: &APIConfig, authenticated: bool) -> Self {
        BrowserPolicy {
            cors: cfg.cors.clone(),
            hosts: cfg.hosts.clone(),
            check_host: !authenticated && !cfg.addr.starts_with("unix://"),
            any_content_type: cfg.any_content_type,
        }
    }

    fn origin_listed(&self, origin: &str) -> bool {
        self.cors
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host_part(host);
        host.parse::<std::net::IpAddr>().is_ok()
            || host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost")
            || self
                .hosts
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(host))
    }

    /// The refusal for a request, if it gets one.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if self.check_host {
            if let Some(h) = host.filter(|h| !self.host_allowed(h)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    FORBIDDEN,
                    format!(
                        "Host \"{}\" is not allowed for an API without auth (api.hosts)",
                        gost_core::escape::esc(h)
                    ),
                ));
            }
        }
        if !is_write(method) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let same = origin.split_once("://").is_some_and(|(_, authority)| {
                host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
            });
            if !same && !self.origin_listed(origin) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    FORBIDDEN,
                    format!(
                        "writes from origin \"{}\" are not allowed (api.cors)",
                        gost_core::escape::esc(origin)
                    ),
                ));
            }
        }
        if !self.any_content_type && has_body(headers) && !is_json(headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID,
                "a request body must be sent with Content-Type: application/json (or application/yaml)",
            ));
        }
        Ok(())
    }

    /// The CORS layer for the listed origins, if any are.
    pub fn cors_layer(&self) -> Option<CorsLayer> {
        if self.cors.is_empty() {
            return None;
        }
        let origin = if self.cors.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let listed = self.cors.clone();
            AllowOrigin::predicate(move |o: &HeaderValue, _| {
                o.to_str()
                    .is_ok_and(|o| listed.iter().any(|l| l.eq_ignore_ascii_case(o)))
            })
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
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
}

/// Whether an API or metrics endpoint at `addr` can be reached from other
/// hosts: not a unix socket and not bound to a loopback address.
pub fn beyond_loopback(addr: &str) -> bool {
    if addr.starts_with("unix://") {
        return false;
    }
    let host = host_part(addr);
    !(host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn policy(yaml: &str, auth: bool) -> BrowserPolicy {
        let cfg: APIConfig = serde_yaml::from_str(yaml).unwrap();
        BrowserPolicy::new(&cfg, auth)
    }

    fn status(p: &BrowserPolicy, m: Method, h: &[(&'static str, &str)]) -> u16 {
        match p.check(&m, &headers(h)) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn a_simple_cross_origin_write_is_refused_by_default() {
        let p = policy("addr: 127.0.0.1:18080", false);
        let host = ("host", "127.0.0.1:18080");
        // The browser's "simple" POST: text/plain, no preflight.
        let simple = [
            host,
            ("origin", "http://evil.test"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ];
        assert_eq!(status(&p, Method::POST, &simple), 403);
        // Without an Origin (curl), a text body is still refused...
        let curl_form = [
            host,
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "2"),
        ];
        assert_eq!(status(&p, Method::POST, &curl_form), 415);
        // ...and JSON, or no body at all, is fine.
        let json = [
            host,
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "2"),
        ];
        assert_eq!(status(&p, Method::POST, &json), 200);
        assert_eq!(
            status(&p, Method::POST, &[host, ("content-length", "0")]),
            200
        );
        // Reading is not a write; a same-origin write is fine.
        assert_eq!(
            status(&p, Method::GET, &[host, ("origin", "http://evil.test")]),
            200
        );
        let same = [
            host,
            ("origin", "http://127.0.0.1:18080"),
            ("content-type", "application/json"),
            ("content-length", "2"),
        ];
        assert_eq!(status(&p, Method::DELETE, &same), 200);
    }

    #[test]
    fn a_foreign_host_is_refused_only_without_auth() {
        let open = policy("addr: 127.0.0.1:18080", false);
        for ok in [
            "127.0.0.1:18080",
            "[::1]:18080",
            "localhost:18080",
            "app.localhost",
            "10.0.0.1",
        ] {
            assert_eq!(status(&open, Method::GET, &[("host", ok)]), 200, "{ok}");
        }
        assert_eq!(
            status(&open, Method::GET, &[("host", "rebind.evil.test:18080")]),
            403
        );
        let authed = policy("addr: 127.0.0.1:18080", true);
        assert_eq!(
            status(&authed, Method::GET, &[("host", "rebind.evil.test:18080")]),
            200
        );
        let listed = policy("addr: :18080\nhosts: [gost.example]", false);
        assert_eq!(
            status(&listed, Method::GET, &[("host", "GOST.example:18080")]),
            200
        );
        let unix = policy("addr: unix:///tmp/gost.sock", false);
        assert_eq!(status(&unix, Method::GET, &[("host", "anything")]), 200);
    }

    #[test]
    fn gosts_behaviour_is_reachable_by_config() {
        let p = policy(
            "addr: 127.0.0.1:18080\ncors: ['*']\nhosts: ['*']\nanyContentType: true",
            false,
        );
        let h = [
            ("host", "rebind.evil.test"),
            ("origin", "http://evil.test"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ];
        assert_eq!(status(&p, Method::POST, &h), 200);
        assert!(p.cors_layer().is_some());
        assert!(policy("addr: 127.0.0.1:18080", false)
            .cors_layer()
            .is_none());
    }

    #[test]
    fn loopback_and_unix_addresses_are_local() {
        for a in [
            "127.0.0.1:80",
            "[::1]:80",
            "localhost:80",
            "unix:///run/g.sock",
        ] {
            assert!(!beyond_loopback(a), "{a}");
        }
        for a in [":80", "0.0.0.0:80", "[::]:80", "192.0.2.1:80"] {
            assert!(beyond_loopback(a), "{a}");
        }
    }
}
