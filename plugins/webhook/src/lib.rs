//! POSTs each batch of events to `config.url` (`http://IP:PORT/path`) as
//! `{"events":[...]}`, the body GOST's HTTP observer plugin sends, and
//! wants a 2xx answer. The host denies network access unless the plugin's
//! `connect` list names the address:
//!
//! ```yaml
//! plugin: {type: wasm, path: webhook.wasm, connect: [127.0.0.1:9000],
//!          config: {url: "http://127.0.0.1:9000/hook"}}
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;

use gost_plugin_sdk::observer::Event;
use gost_plugin_sdk::Observer;
use serde_json::{json, Value};

struct Webhook;

impl Observer for Webhook {
    fn observe(events: Vec<Event>) -> Result<(), String> {
        let config: Value = serde_json::from_str(&gost_plugin_sdk::config_json())
            .map_err(|e| format!("config: {e}"))?;
        let url = config["url"].as_str().ok_or("config.url is missing")?;
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("url {url:?} is not http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let body =
            json!({"events": events.iter().map(|e| e.to_json()).collect::<Vec<_>>()}).to_string();
        let mut c =
            TcpStream::connect(authority).map_err(|e| format!("connect {authority}: {e}"))?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        c.take(64 * 1024)
            .read_to_end(&mut reply)
            .map_err(|e| e.to_string())?;
        let status = String::from_utf8_lossy(&reply);
        let code = status.split_whitespace().nth(1).unwrap_or("");
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(format!("{url}: HTTP status {code:?}"))
        }
    }
}

gost_plugin_sdk::export_observer!(Webhook);
