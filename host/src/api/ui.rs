//! The dashboard (not in GOST): a few static files embedded in the
//! binary, served at `<pathPrefix>/ui/` behind the API's auth, that read
//! the API's routes and its live stream. Nothing is fetched from
//! elsewhere, so it works offline.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// The page allows only its own scripts, styles and API: a name or log
/// line that reached the page as markup still could not run anything.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

/// `/ui` without the slash: relative asset paths need it. Relative, so
/// it keeps the `pathPrefix` the router does not see.
pub async fn redirect() -> Response {
    Redirect::permanent("ui/").into_response()
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "" | "index.html" => index().await,
        "app.js" => file(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => file(APP_CSS, "text/css; charset=utf-8"),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    /// The page's code builds text nodes only; markup from data would
    /// need one of these.
    #[test]
    fn the_script_never_writes_markup() {
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!super::APP_JS.contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [super::INDEX, super::APP_JS, super::APP_CSS] {
            // The SVG namespace is a name, not a place.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }
}
