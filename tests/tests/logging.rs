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
    let body = "{\"name\":\"x\",\"addr\":\"127.0.0.1:1\",\"handler\":{\"type\":\"relay\"}}";
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
        .find(|v| v["message"] == "api request")
        .unwrap_or_else(|| panic!("no access log line in {text}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["kind"], "api");
    assert_eq!(line["uri"], "/config?format=yaml");
    assert_eq!(line["code"], 200);
}

#[test]
fn the_file_rotates_by_size_and_keeps_max_backups() {
    let dir = TempDir::new("logrotate");
    let api = free_port();
    let out = dir.path("gost.log");
    let file = dir.write(
        "gost.yaml",
        &config(
            api,
            &format!("  output: {out}\n  rotation: {{maxSize: 1, maxBackups: 1}}\n"),
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    // Each access log line carries the 32 KiB URI: about 3 MiB in all.
    let pad = "a".repeat(32 * 1024);
    for _ in 0..100 {
        assert_eq!(http_get(api, &format!("/config?x={pad}"), None).0, 200);
    }
    drop(g);
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gost"))
        .collect();
    names.sort();
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
fn unsupported_rotation_options_stop_start_up() {
    let dir = TempDir::new("logbad");
    let out = dir.path("gost.log");
    let file = dir.write(
        "gost.yaml",
        &config(
            free_port(),
            &format!("  output: {out}\n  rotation: {{compress: true}}\n"),
        ),
    );
    let (status, _, err) = run_gost(&["-C", &file]);
    assert!(!status.success());
    assert!(
        err.contains("log.rotation.compress is not supported yet"),
        "{err}"
    );
    let file = dir.write(
        "gost.yaml",
        &config(free_port(), "  output: stderr\n  rotation: {maxSize: 1}\n"),
    );
    let (status, _, err) = run_gost(&["-C", &file]);
    assert!(!status.success());
    assert!(err.contains("log.rotation needs log.output"), "{err}");
}
