//! GOST's `file` handler: a static file server for one directory, with
//! optional uploads (`file.put`) and Basic authentication by the service's
//! auther. Nothing outside the directory is reachable: the request path is
//! resolved lexically (`..` stops at the root, an encoded `/` or `\` in a
//! segment is refused) and then on disk, so a symlink that leads out of the
//! directory is not followed.

use std::convert::Infallible;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use gost_core::auth::Auther;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::listener::Conn;

use crate::{tcp_only, ConnContext, HandleFuture, Handler, HandlerError};

/// How long a client may take to send a request head, as the HTTP proxy
/// handler allows.
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    /// `file.dir` (or `dir`): the served directory; the working directory
    /// when empty, as GOST's.
    pub dir: PathBuf,
    /// `file.put` (or `put`): accept `PUT` uploads.
    pub put: bool,
}

impl FileOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let dir = match md.get_string("file.dir")? {
            Some(d) => Some(d),
            None => md.get_string("dir")?,
        };
        let put = match md.get_bool("file.put")? {
            Some(p) => Some(p),
            None => md.get_bool("put")?,
        };
        Ok(FileOptions {
            dir: PathBuf::from(dir.unwrap_or_default()),
            put: put.unwrap_or(false),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file handler: directory {dir:?}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("file handler: {dir:?} is not a directory")]
    NotDir { dir: PathBuf },
}

pub struct FileHandler {
    /// The served directory, with symlinks resolved: every path served is
    /// checked to resolve under it.
    root: PathBuf,
    put: bool,
    auther: Option<Arc<dyn Auther>>,
}

type Body = BoxBody<Bytes, io::Error>;

impl FileHandler {
    pub fn new(opts: FileOptions, auther: Option<Arc<dyn Auther>>) -> Result<Self, FileError> {
        let dir = if opts.dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            opts.dir
        };
        let root = std::fs::canonicalize(&dir).map_err(|source| FileError::Dir {
            dir: dir.clone(),
            source,
        })?;
        if !root.is_dir() {
            return Err(FileError::NotDir { dir });
        }
        Ok(FileHandler {
            root,
            put: opts.put,
            auther,
        })
    }

    async fn serve_conn(&self, stream: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let service = hyper::service::service_fn(|req| {
            let ctx = &ctx;
            async move { Ok::<_, Infallible>(self.respond(req, ctx).await) }
        });
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .await
            .or_else(|e| {
                // A client that goes away or idles out is not a server
                // error; a malformed request got hyper's 400 already.
                if e.is_incomplete_message() || e.is_timeout() || e.is_canceled() {
                    Ok(())
                } else if e.is_parse() {
                    Err(HandlerError::Protocol(format!("file: {e}")))
                } else {
                    Err(HandlerError::Io(io::Error::other(e)))
                }
            })
    }

    async fn respond(&self, req: Request<Incoming>, ctx: &ConnContext) -> Response<Body> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut user = None;
        let resp = match self.authorize(&req, ctx).await {
            None => {
                let mut r = empty(StatusCode::UNAUTHORIZED);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
            Some(u) => {
                user = u;
                match method {
                    Method::GET | Method::HEAD => self.get(&req).await,
                    Method::PUT if self.put => self.put(req).await,
                    _ => {
                        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
                        let allow = if self.put {
                            "GET, HEAD, PUT"
                        } else {
                            "GET, HEAD"
                        };
                        r.headers_mut()
                            .insert(header::ALLOW, HeaderValue::from_static(allow));
                        r
                    }
                }
            }
        };
        tracing::info!(
            service = %ctx.service,
            client = %ctx.peer,
            user = ?user.as_deref().unwrap_or(""),
            method = ?method.as_str(),
            uri = ?uri.to_string(),
            status = resp.status().as_u16(),
            "file"
        );
        resp
    }

    /// `Some(user)` when the request may go on (`Some(None)` without an
    /// auther), `None` for a 401.
    async fn authorize(
        &self,
        req: &Request<Incoming>,
        ctx: &ConnContext,
    ) -> Option<Option<String>> {
        let Some(auther) = &self.auther else {
            return Some(None);
        };
        let creds = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::parse_basic);
        let (u, p) = creds?;
        let who = gost_core::auth::AuthRequest::new(&u, &p).from(&ctx.service, ctx.peer);
        auther.authenticate(who).await?;
        Some(Some(u))
    }

    async fn get(&self, req: &Request<Incoming>) -> Response<Body> {
        let raw = req.uri().path();
        let Some(rel) = resolve(raw) else {
            return text(StatusCode::BAD_REQUEST, "invalid path\n");
        };
        // GOST (Go's file server) sends `/dir/index.html` to `/dir/`.
        if raw.ends_with("/index.html") {
            return redirect(raw.trim_end_matches("index.html"));
        }
        let Some(path) = self.contained(&rel) else {
            return not_found();
        };
        let Ok(meta) = tokio::fs::metadata(&path).await else {
            return not_found();
        };
        if meta.is_dir() {
            if !raw.ends_with('/') {
                return redirect(&format!("{raw}/"));
            }
            let index = path.join("index.html");
            match tokio::fs::metadata(&index).await {
                Ok(m) if m.is_file() && self.contained_path(&index).is_some() => {
                    return serve_file(req, &index, &m).await;
                }
                _ => return listing(&path, req.method() == Method::HEAD).await,
            }
        }
        serve_file(req, &path, &meta).await
    }

    async fn put(&self, req: Request<Incoming>) -> Response<Body> {
        let raw = req.uri().path().to_string();
        let rel = match resolve(&raw) {
            Some(rel) if !raw.ends_with('/') && rel.file_name().is_some() => rel,
            _ => return text(StatusCode::BAD_REQUEST, "invalid path\n"),
        };
        let dest = self.root.join(&rel);
        let Some(parent) = dest.parent() else {
            return text(StatusCode::BAD_REQUEST, "invalid path\n");
        };
        if let Err((status, msg)) = self.create_dirs(parent).await {
            return text(status, msg);
        }
        if tokio::fs::symlink_metadata(&dest)
            .await
            .is_ok_and(|m| m.is_dir() || m.file_type().is_symlink())
        {
            return text(StatusCode::CONFLICT, "not a regular file\n");
        }
        match write_atomically(&dest, req.into_body()).await {
            Ok(()) => empty(StatusCode::CREATED),
            Err(e) => {
                tracing::warn!(path = ?rel, error = %e, "file: upload failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "upload failed\n")
            }
        }
    }

    /// Creates the upload's directories one by one, so a symlink met on
    /// the way must still lead inside the root.
    async fn create_dirs(&self, dir: &Path) -> Result<(), (StatusCode, &'static str)> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut at = self.root.clone();
        for part in rel.components() {
            at.push(part);
            match tokio::fs::metadata(&at).await {
                Ok(m) if m.is_dir() => {
                    if self.contained_path(&at).is_none() {
                        return Err((StatusCode::NOT_FOUND, "404 page not found\n"));
                    }
                }
                Ok(_) => return Err((StatusCode::CONFLICT, "not a directory\n")),
                Err(_) => {
                    if tokio::fs::create_dir(&at).await.is_err() {
                        return Err((
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot create directory\n",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The file a resolved path names, if it lies inside the root once
    /// symlinks are followed.
    fn contained(&self, rel: &Path) -> Option<PathBuf> {
        self.contained_path(&self.root.join(rel))
    }

    fn contained_path(&self, path: &Path) -> Option<PathBuf> {
        let real = std::fs::canonicalize(path).ok()?;
        real.starts_with(&self.root).then_some(real)
    }
}

impl Handler for FileHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        tcp_only("file", conn, move |s| self.serve_conn(s, ctx))
    }
}

/// The request path as a relative path: percent-decoded per segment,
/// `.` dropped, `..` taking one segment back and never past the root.
/// `None` for a path that is not absolute or has a segment that decodes
/// to a separator, a NUL or invalid UTF-8.
fn resolve(raw: &str) -> Option<PathBuf> {
    let rest = raw.strip_prefix('/')?;
    let mut parts: Vec<String> = Vec::new();
    for seg in rest.split('/') {
        let seg = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .ok()?;
        if seg.contains(['/', '\\', '\0']) {
            return None;
        }
        match seg.as_ref() {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s.to_string()),
        }
    }
    let path: PathBuf = parts.iter().collect();
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

async fn serve_file(
    req: &Request<Incoming>,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Response<Body> {
    let len = meta.len();
    let modified = meta.modified().ok();
    if let (Some(m), Some(since)) = (
        modified,
        req.headers()
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
    ) {
        if truncate_secs(m) <= since {
            return empty(StatusCode::NOT_MODIFIED);
        }
    }
    let range = match req.headers().get(header::RANGE).map(|v| byte_range(v, len)) {
        None => None,
        Some(Some(r)) => Some(r),
        Some(None) => {
            let mut r = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            return r;
        }
    };
    let (start, count) = range.unwrap_or((0, len));
    let mut builder = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_TYPE,
            mime_guess::from_path(path)
                .first_raw()
                .unwrap_or("application/octet-stream"),
        );
    if let Some(m) = modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    if range.is_some() {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    if req.method() == Method::HEAD {
        return builder
            .body(Empty::new().map_err(never).boxed())
            .expect("valid response");
    }
    let file = match tokio::fs::File::open(path).await {
        Ok(mut f) => {
            if start > 0 && f.seek(io::SeekFrom::Start(start)).await.is_err() {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file\n");
            }
            f
        }
        Err(_) => return not_found(),
    };
    use futures_util::TryStreamExt;
    let frames = ReaderStream::new(tokio::io::AsyncReadExt::take(file, count)).map_ok(Frame::data);
    builder
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("valid response")
}

/// One `bytes=a-b` range (`a-`, `-n` too) within a file of `len` bytes:
/// `Some((start, count))`, or `None` when it cannot be satisfied. Several
/// ranges are answered with the first, as a client that asked for them
/// accepts.
fn byte_range(value: &HeaderValue, len: u64) -> Option<(u64, u64)> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let first = spec.split(',').next()?.trim();
    let (a, b) = first.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && start < len).then(|| (start, end - start + 1))
}

fn truncate_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// Writes the upload next to its destination and renames it over, so a
/// reader never sees half a file and a failed upload leaves the old one.
async fn write_atomically(dest: &Path, mut body: Incoming) -> io::Result<()> {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.upload-{}", rand::random::<u32>()));
    let result = async {
        let mut f = tokio::fs::File::create_new(&tmp).await?;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                f.write_all(&data).await?;
            }
        }
        f.flush().await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, dest).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Go's directory listing: one link per entry, directories with a
/// trailing `/`; names are HTML-escaped text and percent-encoded links.
async fn listing(dir: &Path, head: bool) -> Response<Body> {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return not_found();
    };
    let mut names = Vec::new();
    while let Ok(Some(e)) = rd.next_entry().await {
        let mut name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().await.is_ok_and(|t| t.is_dir()) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut html = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for n in &names {
        let href = percent_encoding::utf8_percent_encode(n, HREF).to_string();
        html += &format!("<a href=\"{href}\">{}</a>\n", html_escape(n));
    }
    html += "</pre>\n";
    let len = html.len();
    let body = if head {
        Empty::new().map_err(never).boxed()
    } else {
        Full::new(Bytes::from(html)).map_err(never).boxed()
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .expect("valid response")
}

/// What a link to a directory entry must encode: everything but
/// unreserved characters and the trailing `/` of a directory.
const HREF: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '&' => out += "&amp;",
            '"' => out += "&#34;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

fn never(e: Infallible) -> io::Error {
    match e {}
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().map_err(never).boxed());
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(never)
                .boxed(),
        )
        .expect("valid response")
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn redirect(to: &str) -> Response<Body> {
    match HeaderValue::from_str(to) {
        Ok(loc) => {
            let mut r = empty(StatusCode::MOVED_PERMANENTLY);
            r.headers_mut().insert(header::LOCATION, loc);
            r
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "invalid path\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root() {
        let ok = |raw: &str| resolve(raw).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(ok("/"), Some(String::new()));
        assert_eq!(ok("/a/b.txt"), Some("a/b.txt".into()));
        assert_eq!(ok("/a/../../../etc/passwd"), Some("etc/passwd".into()));
        assert_eq!(ok("/%2e%2e/%2E%2E/x"), Some("x".into()));
        assert_eq!(ok("/./a//b/."), Some("a/b".into()));
        assert_eq!(ok("/sp%20ace"), Some("sp ace".into()));
        for bad in ["a", "", "/..%2fetc", "/a%2Fb", "/a%5cb", "/a%00b", "/%ff"] {
            assert_eq!(resolve(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let r = |s: &str, len| byte_range(&HeaderValue::from_str(s).unwrap(), len);
        assert_eq!(r("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(r("bytes=90-", 100), Some((90, 10)));
        assert_eq!(r("bytes=-5", 100), Some((95, 5)));
        assert_eq!(r("bytes=-500", 100), Some((0, 100)));
        assert_eq!(r("bytes=10-1000", 100), Some((10, 90)));
        assert_eq!(r("bytes=5-9, 20-30", 100), Some((5, 5)));
        for bad in [
            "bytes=100-",
            "bytes=9-5",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=0-0",
        ] {
            let len = if bad == "bytes=0-0" { 0 } else { 100 };
            assert_eq!(r(bad, len), None, "{bad}");
        }
    }

    #[test]
    fn listing_names_are_text() {
        assert_eq!(
            html_escape("<img src=x onerror=alert(1)>&\"'"),
            "&lt;img src=x onerror=alert(1)&gt;&amp;&#34;&#39;"
        );
        let href = percent_encoding::utf8_percent_encode("a b\"<.txt", HREF).to_string();
        assert_eq!(href, "a%20b%22%3C.txt");
    }

    #[test]
    fn options_from_metadata() {
        let md: Metadata =
            serde_json::from_value(serde_json::json!({"dir": "/srv", "put": "true"})).unwrap();
        let o = FileOptions::from_metadata(&md).unwrap();
        assert_eq!((o.dir, o.put), (PathBuf::from("/srv"), true));
        let md: Metadata = serde_json::from_value(
            serde_json::json!({"file.dir": "/a", "dir": "/b", "file.put": false, "put": true}),
        )
        .unwrap();
        let o = FileOptions::from_metadata(&md).unwrap();
        assert_eq!((o.dir, o.put), (PathBuf::from("/a"), false));
        let md: Metadata =
            serde_json::from_value(serde_json::json!({"file.put": "maybe"})).unwrap();
        assert!(FileOptions::from_metadata(&md).is_err());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = FileHandler::new(
            FileOptions {
                dir: "/nonexistent/gost-file-test".into(),
                put: false,
            },
            None,
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("/nonexistent/gost-file-test"),
            "{err}"
        );
    }
}
