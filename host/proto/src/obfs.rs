//! GOST's simple obfuscation (go-gost/x `listener/obfs`, `dialer/obfs`):
//! `ohttp` opens the connection with what looks like a WebSocket upgrade,
//! `otls` with what looks like a TLS 1.2 handshake, then wraps the data
//! in TLS records. Neither hides anything from a reader of the bytes;
//! they only make the first bytes look familiar.

pub mod http;
pub mod tls;
