//! The client side's sessions, one per node address (GOST's mux dialers
//! keep a map of them): a stream per connection over a live session,
//! a new session when there is none or the last one died.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;

use super::{MuxConfig, MuxStream, Session};
use gost_core::stream::Stream;

#[derive(Debug, Default)]
pub struct SessionPool {
    /// Held across making a session, as GOST holds its dialer's lock, so
    /// that connections starting at once share the one new session.
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionPool {
    /// A stream over the session to `key`. A new session runs over the
    /// connection `connect` makes, after `handshake` (the transport under
    /// the session: TLS, WebSocket); neither runs while a live session
    /// exists. A session that fails to open a stream is dropped, so the
    /// next connection makes a new one.
    pub async fn open<C, H, F>(
        &self,
        key: &str,
        cfg: &MuxConfig,
        connect: C,
        handshake: H,
    ) -> io::Result<Stream>
    where
        C: Future<Output = io::Result<Stream>>,
        H: FnOnce(Stream) -> F,
        F: Future<Output = io::Result<Stream>>,
    {
        let mut map = self.sessions.lock().await;
        if let Some(s) = map.get(key).cloned() {
            if !s.is_closed() {
                drop(map);
                match s.open().await {
                    Ok(st) => return Ok(st.into_stream()),
                    Err(e) => {
                        tracing::debug!(node = %key, error = %e, "mux: session lost, opening a new one");
                        map = self.sessions.lock().await;
                    }
                }
            } else {
                tracing::debug!(
                    node = %key,
                    reason = s.end().unwrap_or_default(),
                    "mux: session ended, opening a new one"
                );
            }
            if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                map.remove(key);
            }
        }
        // Another connection may have made a session meanwhile.
        if let Some(s) = map.get(key).filter(|s| !s.is_closed()).cloned() {
            drop(map);
            return s.open().await.map(MuxStream::into_stream);
        }
        let raw = connect.await?;
        let carried = handshake(raw).await?;
        let session = Arc::new(Session::client(carried, cfg));
        let stream = session.open().await?;
        map.insert(key.to_string(), session);
        Ok(stream.into_stream())
    }
}
