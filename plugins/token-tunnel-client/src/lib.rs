//! The client side of the token-tunnel protocol (see the `token-tunnel`
//! handler plugin): sends `TUNNEL <token> <host:port>\n` to the node and
//! waits for `OK\n`. The token comes from the config: `config: {token:
//! s3cret}`; the connector's `auth` password is used when no token is
//! configured.

use gost_plugin_sdk::connector::{ConnectRequest, Connected};
use gost_plugin_sdk::{Conn, Connector};
use serde_json::Value;

/// A reply line longer than this is not our protocol.
const MAX_LINE: usize = 1024;

struct TokenTunnelClient;

impl Connector for TokenTunnelClient {
    fn connect(req: ConnectRequest, node: Conn) -> Result<Connected, String> {
        let token = token(&req)?;
        let request = format!("TUNNEL {token} {}\n", req.address);
        // The request and the first read of the reply in one host call.
        let mut reply = node.exchange(request.as_bytes(), MAX_LINE as u32)?;
        let end = loop {
            if let Some(i) = reply.iter().position(|&b| b == b'\n') {
                break i;
            }
            if reply.is_empty() {
                return Err("node closed before replying".into());
            }
            if reply.len() >= MAX_LINE {
                return Err("reply line too long".into());
            }
            let more = node.read((MAX_LINE - reply.len()) as u32)?;
            if more.is_empty() {
                return Err("node closed mid-reply".into());
            }
            reply.extend_from_slice(&more);
        };
        let line = String::from_utf8_lossy(&reply[..end]).trim_end().to_string();
        if line != "OK" {
            return Err(format!("node refused: {line}"));
        }
        // What followed the reply is the target's first bytes.
        let early = reply[end + 1..].to_vec();
        Ok(Connected { node, early })
    }
}

fn token(req: &ConnectRequest) -> Result<String, String> {
    let config: Value = serde_json::from_str(&gost_plugin_sdk::config_json())
        .map_err(|e| format!("config: {e}"))?;
    match config["token"].as_str() {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ if !req.password.is_empty() => Ok(req.password.clone()),
        _ => Err("no token: set config.token or the connector's auth".into()),
    }
}

gost_plugin_sdk::export_connector!(TokenTunnelClient);
