//! A small Redis client for GOST's recorders and loaders: one connection,
//! one command at a time, with `AUTH` and `SELECT` as the config asks.
//! The protocol's bytes are [`gost_proto::resp`].

use std::time::Duration;

use gost_proto::resp::{self, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one command (or the connect and login) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisOptions {
    pub addr: String,
    pub db: i64,
    pub username: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis {}: {source}", crate::escape::esc(.addr))]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("redis {}: timed out", crate::escape::esc(.addr))]
    Timeout { addr: String },
    #[error("redis {}: {source}", crate::escape::esc(.addr))]
    Protocol {
        addr: String,
        source: resp::RespError,
    },
    #[error("redis {}: the server answered {}", crate::escape::esc(.addr), crate::escape::esc(.msg))]
    Server { addr: String, msg: String },
    #[error("redis {}: the server closed the connection", crate::escape::esc(.addr))]
    Closed { addr: String },
}

pub struct RedisConn {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RedisConn {
    /// Connects and logs in: `AUTH [username] password` when a password is
    /// set, `SELECT db` when it is not 0.
    pub async fn connect(opts: &RedisOptions) -> Result<Self, RedisError> {
        let addr = opts.addr.clone();
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(&opts.addr))
            .await
            .map_err(|_| RedisError::Timeout { addr: addr.clone() })?
            .map_err(|source| RedisError::Io {
                addr: addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = RedisConn {
            addr,
            stream,
            buf: Vec::new(),
        };
        if !opts.password.is_empty() {
            if opts.username.is_empty() {
                conn.command(&[b"AUTH", opts.password.as_bytes()]).await?;
            } else {
                conn.command(&[b"AUTH", opts.username.as_bytes(), opts.password.as_bytes()])
                    .await?;
            }
        }
        if opts.db != 0 {
            conn.command(&[b"SELECT", opts.db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; a Redis error reply is an
    /// error.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let addr = self.addr.clone();
        match tokio::time::timeout(DEFAULT_TIMEOUT, self.exchange(args)).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout { addr }),
        }
    }

    async fn exchange(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let io = |addr: &str, source| RedisError::Io {
            addr: addr.to_string(),
            source,
        };
        self.stream
            .write_all(&resp::encode(args))
            .await
            .map_err(|e| io(&self.addr, e))?;
        loop {
            match resp::parse(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return match reply {
                        Reply::Error(msg) => Err(RedisError::Server {
                            addr: self.addr.clone(),
                            msg,
                        }),
                        r => Ok(r),
                    };
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(RedisError::Protocol {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| io(&self.addr, e))?;
            if n == 0 {
                return Err(RedisError::Closed {
                    addr: self.addr.clone(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
