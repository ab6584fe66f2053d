//! A transport that misbehaves on purpose, for the host's tests:
//! `config: {fault: grow}` answers every chunk with far more bytes than
//! it got; `config: {fault: withhold}` decodes nothing, ever. Both pass
//! bytes through unchanged otherwise.

use gost_plugin_sdk::Transport;
use serde_json::Value;

fn fault() -> String {
    let config: Value =
        serde_json::from_str(&gost_plugin_sdk::config_json()).unwrap_or(Value::Null);
    config["fault"].as_str().unwrap_or_default().to_string()
}

struct Faulty;

impl Transport for Faulty {
    fn encode(data: Vec<u8>) -> Result<Vec<u8>, String> {
        match fault().as_str() {
            "grow" => Ok(vec![0; data.len() * 16 + (1 << 20)]),
            _ => Ok(data),
        }
    }

    fn decode(data: Vec<u8>) -> Result<Vec<u8>, String> {
        match fault().as_str() {
            "grow" => Ok(vec![0; data.len() * 16 + (1 << 20)]),
            "withhold" => Ok(Vec::new()),
            _ => Ok(data),
        }
    }
}

gost_plugin_sdk::export_transport!(Faulty);
