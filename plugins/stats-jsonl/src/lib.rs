//! Appends each observer event as one JSON line, in the shape GOST's HTTP
//! observer plugin sends, to `/data/<file>`. The host maps `/data` to the
//! directory given as the plugin's `dir`; `config: {file: NAME}` names the
//! file (default `stats.jsonl`).

use std::fs::OpenOptions;
use std::io::Write;

use gost_plugin_sdk::observer::Event;
use gost_plugin_sdk::Observer;
use serde_json::Value;

struct StatsJsonl;

impl Observer for StatsJsonl {
    fn observe(events: Vec<Event>) -> Result<(), String> {
        let config: Value = serde_json::from_str(&gost_plugin_sdk::config_json())
            .map_err(|e| format!("config: {e}"))?;
        let name = config["file"].as_str().unwrap_or("stats.jsonl");
        if name.contains('/') {
            return Err(format!("config.file {name:?} must be a plain file name"));
        }
        let path = format!("/data/{name}");
        let mut out = String::new();
        for e in &events {
            out.push_str(&e.to_json().to_string());
            out.push('\n');
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(out.as_bytes()))
            .map_err(|e| format!("{path}: {e}"))
    }
}

gost_plugin_sdk::export_observer!(StatsJsonl);
