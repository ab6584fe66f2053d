//! Shadowsocks settings as GOST takes them, for the `ss`/`ssu` handlers
//! and connectors: the cipher method is the auth username, the password
//! the auth password (for the 2022 ciphers a base64 key, on a client
//! `iPSK:uPSK` for a multi-user server), and the server's `users`
//! metadata (`name: base64 key`) the 2022 identity users (SIP023).
//! The protocol itself, its ciphers and its replay filters are
//! shadowsocks-rust's crate.

use std::sync::{Arc, OnceLock};

use shadowsocks::config::{
    ReplayAttackPolicy, ServerAddr, ServerConfig, ServerType, ServerUser, ServerUserManager,
};
use shadowsocks::context::{Context, SharedContext};
use shadowsocks::crypto::CipherKind;

use gost_core::metadata::Metadata;

pub use shadowsocks::relay::socks5::Address;

/// The methods this build speaks, as GOST names them.
pub const METHODS: [&str; 6] = [
    "aes-128-gcm",
    "aes-256-gcm",
    "chacha20-ietf-poly1305",
    "2022-blake3-aes-128-gcm",
    "2022-blake3-aes-256-gcm",
    "2022-blake3-chacha20-poly1305",
];

#[derive(Debug, thiserror::Error)]
pub enum SsConfigError {
    #[error("{0}: auth is required (username: the cipher method, password: the password or key)")]
    NoAuth(&'static str),
    #[error("{kind}: cipher method {method:?} is not supported (supported: {})", METHODS.join(", "))]
    Method { kind: &'static str, method: String },
    #[error("{kind}: {method}: {msg}")]
    Key {
        kind: &'static str,
        method: &'static str,
        msg: String,
    },
    #[error("{kind}: metadata \"users\": {msg}")]
    Users { kind: &'static str, msg: String },
}

/// One side's cipher: method, key and, for a client of a multi-user
/// server, the identity keys; for a server, its users.
#[derive(Clone)]
pub struct Cipher {
    pub config: ServerConfig,
    pub users: Option<Arc<ServerUserManager>>,
}

impl std::fmt::Debug for Cipher {
    /// Keys stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("method", &self.config.method().to_string())
            .field("users", &self.users.as_ref().map(|u| u.user_count()))
            .finish()
    }
}

impl Cipher {
    pub fn method(&self) -> CipherKind {
        self.config.method()
    }

    pub fn key(&self) -> &[u8] {
        self.config.key()
    }

    /// A client's cipher: `kind` names the handler or connector in errors.
    pub fn client(kind: &'static str, auth: Option<(&str, &str)>) -> Result<Cipher, SsConfigError> {
        let (method, password) = auth.ok_or(SsConfigError::NoAuth(kind))?;
        Ok(Cipher {
            config: config(kind, method, password)?,
            users: None,
        })
    }

    /// A server's cipher, with the 2022 identity users of `users`
    /// metadata.
    pub fn server(
        kind: &'static str,
        auth: Option<(&str, &str)>,
        md: &Metadata,
    ) -> Result<Cipher, SsConfigError> {
        let (method, password) = auth.ok_or(SsConfigError::NoAuth(kind))?;
        let config = config(kind, method, password)?;
        let users = users(kind, config.method(), md)?;
        Ok(Cipher { config, users })
    }
}

fn config(kind: &'static str, method: &str, password: &str) -> Result<ServerConfig, SsConfigError> {
    let lower = method.to_ascii_lowercase();
    let Some(name) = METHODS.iter().find(|m| **m == lower) else {
        let msg = if matches!(lower.as_str(), "none" | "dummy" | "plain") {
            format!("{method} (GOST's unencrypted framing is not implemented)")
        } else {
            method.to_string()
        };
        return Err(SsConfigError::Method { kind, method: msg });
    };
    let cipher: CipherKind = name.parse().map_err(|_| SsConfigError::Method {
        kind,
        method: method.to_string(),
    })?;
    if password.is_empty() {
        return Err(SsConfigError::Key {
            kind,
            method: name,
            msg: "the password is empty".into(),
        });
    }
    let any = ServerAddr::SocketAddr(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    ServerConfig::new(any, password, cipher).map_err(|e| SsConfigError::Key {
        kind,
        method: name,
        msg: key_error(cipher, &e.to_string()),
    })
}

/// The crate's message, with what a 2022 key must be.
fn key_error(cipher: CipherKind, msg: &str) -> String {
    if cipher.is_aead_2022() {
        format!(
            "{msg} (the password of a 2022 cipher is a base64 key of {} bytes, e.g. from `openssl rand -base64 {}`)",
            cipher.key_len(),
            cipher.key_len()
        )
    } else {
        msg.to_string()
    }
}

fn users(
    kind: &'static str,
    cipher: CipherKind,
    md: &Metadata,
) -> Result<Option<Arc<ServerUserManager>>, SsConfigError> {
    let err = |msg: String| SsConfigError::Users { kind, msg };
    let Some(v) = md.get("users") else {
        return Ok(None);
    };
    let map = v
        .as_object()
        .ok_or_else(|| err("expected a map of user name to base64 key".into()))?;
    if map.is_empty() {
        return Ok(None);
    }
    if !shadowsocks::config::method_support_eih(cipher) {
        return Err(err(format!(
            "{} has no identity headers; users need 2022-blake3-aes-128-gcm or 2022-blake3-aes-256-gcm",
            cipher
        )));
    }
    let mut manager = ServerUserManager::new();
    for (name, key) in map {
        let key = key
            .as_str()
            .ok_or_else(|| err(format!("user {name:?}: the key must be a string")))?;
        let user = ServerUser::with_encoded_key(name.as_str(), key)
            .map_err(|e| err(format!("user {name:?}: key is not base64: {e}")))?;
        if user.key().len() != cipher.key_len() {
            return Err(err(format!(
                "user {name:?}: key of {} bytes, {} needs {}",
                user.key().len(),
                cipher,
                cipher.key_len()
            )));
        }
        manager.add_user(user);
    }
    Ok(Some(Arc::new(manager)))
}

/// The process-wide server context: its replay filter (salts seen, for
/// AEAD a ping-pong bloom filter, for 2022 the salts within the time
/// window) is one for all services, like GOST's one salt filter, so a
/// first packet replayed to another service with the same key is caught
/// too. AEAD replays are rejected, not only detected.
pub fn server_context() -> SharedContext {
    static CTX: OnceLock<SharedContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut c = Context::new(ServerType::Server);
        c.set_replay_attack_policy(ReplayAttackPolicy::Reject);
        Arc::new(c)
    })
    .clone()
}

/// The process-wide client context: the salts it generates are unique
/// and its replay filter checks the servers' answers.
pub fn client_context() -> SharedContext {
    static CTX: OnceLock<SharedContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut c = Context::new(ServerType::Local);
        c.set_replay_attack_policy(ReplayAttackPolicy::Reject);
        Arc::new(c)
    })
    .clone()
}

/// A target address in the protocol's form.
pub fn address(host: &str, port: u16) -> Address {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Address::SocketAddress((ip, port).into()),
        Err(_) => Address::DomainNameAddress(host.to_string(), port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(json: &str) -> Metadata {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn methods_keys_and_users_are_checked() {
        for m in METHODS {
            let pw = if m.starts_with("2022") {
                if m.contains("128") {
                    "MTIzNDU2Nzg5MDEyMzQ1Ng=="
                } else {
                    "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="
                }
            } else {
                "secret"
            };
            Cipher::client("ss", Some((m, pw))).unwrap();
            Cipher::server("ss", Some((&m.to_uppercase(), pw)), &md("{}")).unwrap();
        }
        let e = Cipher::client("ss", None).unwrap_err().to_string();
        assert!(e.contains("auth is required"), "{e}");
        let e = Cipher::client("ss", Some(("rc4-md5", "x")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"rc4-md5\" is not supported"), "{e}");
        let e = Cipher::client("ssu", Some(("none", "")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unencrypted framing"), "{e}");
        let e = Cipher::client("ss", Some(("2022-blake3-aes-256-gcm", "short")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("base64 key of 32 bytes"), "{e}");
        let e = Cipher::client("ss", Some(("aes-128-gcm", "")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password is empty"), "{e}");
        // A client of a multi-user server: iPSK:uPSK.
        let c = Cipher::client(
            "ss",
            Some((
                "2022-blake3-aes-128-gcm",
                "MTIzNDU2Nzg5MDEyMzQ1Ng==:Vbwi6yqCwvPMPR1bCi32Dg==",
            )),
        )
        .unwrap();
        assert_eq!(c.config.identity_keys().len(), 1);
        let users = md(r#"{"users": {"test": "Vbwi6yqCwvPMPR1bCi32Dg=="}}"#);
        let s = Cipher::server(
            "ss",
            Some(("2022-blake3-aes-128-gcm", "MTIzNDU2Nzg5MDEyMzQ1Ng==")),
            &users,
        )
        .unwrap();
        assert_eq!(s.users.unwrap().user_count(), 1);
        let e = Cipher::server("ss", Some(("aes-128-gcm", "x")), &users)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no identity headers"), "{e}");
        let bad = md(r#"{"users": {"u": "AAAA"}}"#);
        let e = Cipher::server(
            "ss",
            Some(("2022-blake3-aes-128-gcm", "MTIzNDU2Nzg5MDEyMzQ1Ng==")),
            &bad,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key of 3 bytes"), "{e}");
    }
}
