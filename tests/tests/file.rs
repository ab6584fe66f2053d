//! The `file` handler through the real binary and curl: GOST's file suite
//! (tests/e2e/file_test.go, its testdata/file configs) replayed, then the
//! paths that try to leave the served directory.

use std::io::{Read, Write};
use std::net::TcpStream;

use gost_e2e::*;

/// curl's status code for a request (`-w %{http_code}`, body dropped).
fn code(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    curl_body(&all).1
}

/// A served directory with GOST's test files, and a gost serving it from
/// a config like GOST's `testdata/file/*.yaml` (`extra` is appended to the
/// handler's metadata; `auth` adds GOST's `auther-0`).
struct Served {
    dir: TempDir,
    port: u16,
    _gost: Gost,
}

fn serve(metadata: &str, auth: bool) -> Served {
    let dir = TempDir::new("file");
    std::fs::create_dir(dir.0.join("files")).unwrap();
    std::fs::write(dir.0.join("files/hello.txt"), "hello-gost-file\n").unwrap();
    std::fs::write(
        dir.0.join("files/index.html"),
        "<html><body>gost file index</body></html>\n",
    )
    .unwrap();
    std::fs::write(dir.0.join("secret.txt"), "outside-the-root\n").unwrap();
    let port = free_port();
    let files = dir.path("files");
    let (auther, authers) = if auth {
        (
            "    auther: auther-0\n",
            "authers:\n- name: auther-0\n  auths:\n  - username: user\n    password: pass\n",
        )
    } else {
        ("", "")
    };
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: file-server\n  addr: 127.0.0.1:{port}\n  handler:\n    type: file\n{auther}    metadata:\n      file.dir: {files}\n{metadata}  listener:\n    type: tcp\n{authers}"
        ),
    );
    let gost = Gost::start(&["-C", &cfg]);
    gost.wait_tcp(port);
    Served {
        dir,
        port,
        _gost: gost,
    }
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[test]
fn get_existing_not_found_and_index() {
    let s = serve("", false);
    let (ok, body) = curl_body(&[&s.url("/hello.txt")]);
    assert!(ok && body.contains("hello-gost-file"), "{body}");
    assert_eq!(code(&[&s.url("/nonexistent.txt")]), "404");
    let (ok, body) = curl_body(&[&s.url("/")]);
    assert!(ok && body.contains("gost file index"), "{body}");
}

#[test]
fn put_uploads_when_enabled_and_is_refused_otherwise() {
    let s = serve("      file.put: true\n", false);
    let src = s.dir.write("upload_src.txt", "uploaded-content");
    assert_eq!(code(&["-T", &src, &s.url("/uploaded.txt")]), "201");
    let (ok, body) = curl_body(&[&s.url("/uploaded.txt")]);
    assert!(ok && body.contains("uploaded-content"), "{body}");
    // Into a new directory, and over an existing file.
    assert_eq!(code(&["-T", &src, &s.url("/new/dir/u.txt")]), "201");
    assert_eq!(
        std::fs::read_to_string(s.dir.0.join("files/new/dir/u.txt")).unwrap(),
        "uploaded-content"
    );
    let src2 = s.dir.write("upload_src2.txt", "second");
    assert_eq!(code(&["-T", &src2, &s.url("/uploaded.txt")]), "201");
    assert_eq!(curl_body(&[&s.url("/uploaded.txt")]).1, "second");
    // Nothing written outside the directory, and no temporary left over.
    assert_eq!(
        code(&["--path-as-is", "-T", &src, &s.url("/../escaped.txt")]),
        "201"
    );
    assert!(!s.dir.0.join("escaped.txt").exists());
    assert!(s.dir.0.join("files/escaped.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.0.join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".upload-"))
        .collect();
    assert!(leftovers.is_empty());

    let off = serve("", false);
    assert_eq!(code(&["-T", "/dev/null", &off.url("/test.txt")]), "405");
    assert!(!off.dir.0.join("files/test.txt").exists());
    assert_eq!(code(&["-X", "DELETE", &off.url("/hello.txt")]), "405");
}

#[test]
fn auth_is_required_when_the_handler_has_an_auther() {
    let s = serve("", true);
    assert_eq!(code(&[&s.url("/hello.txt")]), "401");
    assert_eq!(code(&["-u", "user:wrong", &s.url("/hello.txt")]), "401");
    let (ok, body) = curl_body(&["-u", "user:pass", &s.url("/hello.txt")]);
    assert!(ok && body.contains("hello-gost-file"), "{body}");
    let (_, headers) = curl_body(&["-D", "-", "-o", "/dev/null", &s.url("/")]);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{headers}"
    );
}

#[test]
fn no_path_leaves_the_directory() {
    let s = serve("", false);
    std::os::unix::fs::symlink(s.dir.0.join("secret.txt"), s.dir.0.join("files/link-out")).unwrap();
    std::os::unix::fs::symlink(&s.dir.0, s.dir.0.join("files/dir-out")).unwrap();
    std::os::unix::fs::symlink(
        s.dir.0.join("files/hello.txt"),
        s.dir.0.join("files/link-in"),
    )
    .unwrap();
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/a/%2E%2E/%2e%2e/secret.txt",
        "/link-out",
        "/dir-out/secret.txt",
    ] {
        let (_, body) = curl_body(&["--path-as-is", &s.url(path)]);
        assert!(!body.contains("outside-the-root"), "{path}: {body}");
    }
    for path in ["/..%2fsecret.txt", "/%2e%2e%5csecret.txt", "/a%00b"] {
        assert_eq!(code(&["--path-as-is", &s.url(path)]), "400", "{path}");
    }
    assert_eq!(code(&[&s.url("/link-out")]), "404");
    // A symlink that stays inside is served.
    assert_eq!(curl_body(&[&s.url("/link-in")]).1, "hello-gost-file\n");
}

#[test]
fn listing_ranges_head_and_redirects() {
    let s = serve("", false);
    std::fs::remove_file(s.dir.0.join("files/index.html")).unwrap();
    let hostile = "<img src=x onerror=alert(1)>.txt";
    std::fs::write(s.dir.0.join("files").join(hostile), "x").unwrap();
    std::fs::create_dir(s.dir.0.join("files/sub")).unwrap();
    let (ok, page) = curl_body(&[&s.url("/")]);
    assert!(ok);
    assert!(
        page.contains("<a href=\"hello.txt\">hello.txt</a>"),
        "{page}"
    );
    assert!(page.contains("<a href=\"sub/\">sub/</a>"), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;.txt"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    // A directory without its slash, and index.html, redirect as Go's.
    let (_, h) = curl_body(&["-D", "-", "-o", "/dev/null", &s.url("/sub")]);
    let h = h.to_ascii_lowercase();
    assert!(
        h.starts_with("http/1.1 301") && h.contains("location: /sub/"),
        "{h}"
    );
    // Ranges and HEAD.
    let (_, part) = curl_body(&["-r", "6-9", &s.url("/hello.txt")]);
    assert_eq!(part, "gost");
    assert_eq!(code(&["-r", "100-", &s.url("/hello.txt")]), "416");
    let (_, h) = curl_body(&["-I", &s.url("/hello.txt")]);
    let h = h.to_ascii_lowercase();
    assert!(
        h.contains("content-length: 16") && h.contains("content-type: text/plain"),
        "{h}"
    );
    // Keep-alive: two requests on one connection.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    c.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("hello-gost-file").count(), 2, "{all}");
}

#[test]
fn cli_form_and_a_missing_directory() {
    let dir = TempDir::new("file-cli");
    dir.write("a.txt", "from-the-cli");
    let port = free_port();
    let url = format!("file://u:p@127.0.0.1:{port}?dir={}", dir.0.display());
    let g = Gost::start(&["-L", &url]);
    g.wait_tcp(port);
    let a = format!("http://127.0.0.1:{port}/a.txt");
    assert_eq!(code(&[&a]), "401");
    assert_eq!(curl_body(&["-u", "u:p", &a]).1, "from-the-cli");
    let (status, _, err) = run_gost(&["-L", "file://127.0.0.1:0?dir=/nonexistent/gost-e2e"]);
    assert!(!status.success());
    assert!(err.contains("/nonexistent/gost-e2e"), "{err}");
}
