//! The `log` section: level, text or JSON format, file output and
//! size-based rotation.

use gost_e2e::*;

fn config(api: u16, log: &str) -> String {
    format!("api:\n  addr: 127.0.0.1:{api}\n  accesslog: true\nlog:\n{log}")
}

#[test]
fn json_lines_go_to_the_file_at_the_configured_level() {
    let dir = TempDir::new("logjson");
    let api = free_port();
    let out = dir.path("logs/gost.log");
    let file = dir.write(
        "gost.yaml",
        &config(
            api,
            &format!("  level: warn\n  format: json\n  output: {out}\n"),
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    // An info line (the access log) is below `warn`: nothing is written.
    assert_eq!(http_get(api, "/config", None).0, 200);
    let body = "{\"name\":\"x\",\"addr\":\"127.0.0.1:1\",\"handler\":{\"type\":\"ss\"}}";
    assert_eq!(
        http_request(api, "POST", "/config/services", Some(body), None).0,
        400
    );
    drop(g);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!text.contains("api request"), "{text}");

    let file = dir.write(
        "gost.yaml",
        &config(
            api,
            &format!("  level: info\n  format: json\n  output: {out}\n"),
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    assert_eq!(http_get(api, "/config?format=yaml", None).0, 200);
    drop(g);
    let text = std::fs::read_to_string(&out).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .find(|v| v["msg"] == "api request")
        .unwrap_or_else(|| panic!("no access log line in {text}"));
    assert_eq!(line["level"], "info");
    let t = line["time"].as_str().unwrap();
    assert!(t.len() == 24 && t.ends_with('Z'), "{t}");
    assert_eq!(line["kind"], "api");
    assert_eq!(line["uri"], "/config?format=yaml");
    assert_eq!(line["code"], 200);
}

/// Runs gost with `rotation` on `gost.log` and writes about 3 MiB of
/// access log; returns the directory and its file names, sorted.
fn fill_rotated_log(tag: &str, rotation: &str) -> (TempDir, Vec<String>) {
    let dir = TempDir::new(tag);
    let api = free_port();
    let out = dir.path("gost.log");
    let file = dir.write(
        "gost.yaml",
        &config(api, &format!("  output: {out}\n  rotation: {rotation}\n")),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    // Each access log line carries the 32 KiB URI.
    let pad = "a".repeat(32 * 1024);
    for _ in 0..100 {
        assert_eq!(http_get(api, &format!("/config?x={pad}"), None).0, 200);
    }
    drop(g);
    let names = file_names(&dir);
    (dir, names)
}

fn file_names(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gost"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_file_rotates_by_size_and_keeps_max_backups() {
    let (dir, names) = fill_rotated_log("logrotate", "{maxSize: 1, maxBackups: 1}");
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names[0].starts_with("gost-") && names[0].ends_with(".log"),
        "{names:?}"
    );
    assert_eq!(names[1..], ["gost.log", "gost.yaml"]);
    for n in &names[..2] {
        let size = std::fs::metadata(dir.0.join(n)).unwrap().len();
        assert!(size > 0 && size <= 1024 * 1024, "{n}: {size}");
    }
}

#[test]
fn compress_gzips_the_rotated_files() {
    let (dir, mut names) =
        fill_rotated_log("loggzip", "{maxSize: 1, maxBackups: 2, compress: true}");
    // gost was killed, maybe before its compressor finished: a restart
    // compresses what is left, as lumberjack does.
    if names
        .iter()
        .any(|n| n.starts_with("gost-") && n.ends_with(".log"))
    {
        let file = dir.path("gost.yaml");
        let g = Gost::start(&["-C", &file]);
        let start = std::time::Instant::now();
        while file_names(&dir)
            .iter()
            .any(|n| n.starts_with("gost-") && n.ends_with(".log"))
        {
            assert!(start.elapsed() < TIMEOUT, "{:?}", file_names(&dir));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(g);
        names = file_names(&dir);
    }
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[2..], ["gost.log", "gost.yaml"]);
    for n in &names[..2] {
        assert!(
            n.starts_with("gost-") && n.ends_with(".log.gz"),
            "{names:?}"
        );
        let out = std::process::Command::new("gzip")
            .args(["-dc", &dir.path(n)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{n} is not gzip");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.len() > 512 * 1024 && text.len() <= 1024 * 1024,
            "{n}: {}",
            text.len()
        );
        assert!(text.contains("api request"), "{n}");
    }
}

#[test]
fn rotation_needs_a_file_output() {
    let dir = TempDir::new("logbad");
    let file = dir.write(
        "gost.yaml",
        &config(free_port(), "  output: stderr\n  rotation: {maxSize: 1}\n"),
    );
    let (status, _, err) = run_gost(&["-C", &file]);
    assert!(!status.success());
    assert!(err.contains("log.rotation needs log.output"), "{err}");
}

fn json_lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn wait_line(path: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let start = std::time::Instant::now();
    while !json_lines(path).iter().any(&pred) {
        assert!(
            start.elapsed() < TIMEOUT,
            "no such line in {path}: {:?}",
            json_lines(path)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_service_with_loggers_writes_there_instead_of_the_main_log() {
    let dir = TempDir::new("loggers");
    let echo = tcp_echo_server();
    let (a, b, api) = (free_port(), free_port(), free_port());
    let (main, own) = (dir.path("main.log"), dir.path("own.log"));
    let svc = |name: &str, port: u16, logger: &str| {
        format!("- name: {name}\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\n{logger}")
    };
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:\n{}{}loggers:\n- name: own\n  log: {{output: {own}, format: json, level: debug}}\napi: {{addr: 127.0.0.1:{api}}}\nlog: {{output: {main}, format: json}}\n",
            svc("a", a, "  logger: own\n"),
            svc("b", b, ""),
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(a);
    let listening = |name: &'static str| {
        move |v: &serde_json::Value| v["service"] == name && v["msg"] == "listening"
    };
    wait_line(&own, listening("a"));
    wait_line(&main, listening("b"));
    assert!(!json_lines(&main).iter().any(|v| v["service"] == "a"));
    assert!(json_lines(&own)
        .iter()
        .all(|v| v["service"] == "a" && v["logger"] == "own"));

    // Through the API: b takes the logger; the logger cannot go while used.
    let body = format!("{{\"addr\":\"127.0.0.1:{b}\",\"handler\":{{\"type\":\"tcp\"}},\"logger\":\"own\",\"forwarder\":{{\"nodes\":[{{\"name\":\"t\",\"addr\":\"{echo}\"}}]}}}}");
    assert_eq!(
        http_request(api, "PUT", "/config/services/b", Some(&body), None).0,
        200
    );
    wait_line(&own, |v| {
        v["service"] == "b" && v["msg"] == "handler replaced for new connections"
    });
    assert_eq!(
        http_request(api, "DELETE", "/config/loggers/own", None, None).0,
        400
    );
    let (code, body) = http_request(
        api,
        "POST",
        "/config/loggers",
        Some("{\"name\":\"bad\",\"log\":{\"format\":\"xml\"}}"),
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("xml"), "{body}");
    let (code, body) = http_request(api, "GET", "/config/loggers", None, None);
    assert_eq!(code, 200);
    assert!(body.contains("\"count\":1"), "{body}");
}
