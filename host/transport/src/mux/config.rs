//! GOST's `mux.*` metadata (internal/util/mux `Config`) with smux's
//! defaults and its `VerifyConfig` checks.

use std::time::Duration;

use gost_core::metadata::{Metadata, MetadataError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxConfig {
    /// smux protocol version, 1 or 2.
    pub version: u8,
    pub keepalive_disabled: bool,
    /// How often a `NOP` goes out.
    pub keepalive_interval: Duration,
    /// A session that received nothing for this long is closed.
    pub keepalive_timeout: Duration,
    /// The largest payload of a frame we send.
    pub max_frame_size: usize,
    /// The most bytes buffered for all streams of a session before it
    /// stops reading its connection.
    pub max_receive_buffer: usize,
    /// The window a version-2 stream announces to its peer.
    pub max_stream_buffer: usize,
}

impl Default for MuxConfig {
    /// smux's `DefaultConfig`, version 1 as GOST sets it.
    fn default() -> Self {
        MuxConfig {
            version: 1,
            keepalive_disabled: false,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
            max_frame_size: 32_768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65_536,
        }
    }
}

/// Why the `mux.*` settings cannot make a session.
#[derive(Debug, thiserror::Error)]
pub enum MuxConfigError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("mux.type \"{0}\" is not supported (smux only; yamux is not implemented)")]
    Type(String),
    #[error("mux.version {0}: smux has versions 1 and 2")]
    Version(i64),
    #[error("mux.keepaliveTimeout ({timeout:?}) must not be shorter than mux.keepaliveInterval ({interval:?})")]
    Keepalive {
        timeout: Duration,
        interval: Duration,
    },
    #[error("mux.maxFrameSize {0}: at most 65535")]
    FrameSize(i64),
    #[error("mux.maxReceiveBuffer {0}: at most 2147483647")]
    ReceiveBuffer(i64),
    #[error("mux.maxStreamBuffer {stream} must not exceed mux.maxReceiveBuffer {session}")]
    StreamBuffer { stream: usize, session: usize },
}

impl MuxConfig {
    /// Reads GOST's keys. Zero or absent means the default, as GOST's
    /// `convertConfig` has it; `default_version` is 2 for `mtcp` and 1 for
    /// the others, as in go-gost/x.
    pub fn from_metadata(md: &Metadata, default_version: u8) -> Result<Self, MuxConfigError> {
        let mut c = MuxConfig {
            version: default_version,
            ..MuxConfig::default()
        };
        if let Some(t) = md.get_string("mux.type")? {
            if !t.is_empty() && t != "smux" {
                return Err(MuxConfigError::Type(t));
            }
        }
        match md.get_int("mux.version")? {
            None | Some(0) => {}
            Some(v @ (1 | 2)) => c.version = v as u8,
            Some(v) => return Err(MuxConfigError::Version(v)),
        }
        c.keepalive_disabled = md.get_bool("mux.keepaliveDisabled")?.unwrap_or(false);
        if let Some(d) = md
            .get_duration("mux.keepaliveInterval")?
            .filter(|d| !d.is_zero())
        {
            c.keepalive_interval = d;
        }
        if let Some(d) = md
            .get_duration("mux.keepaliveTimeout")?
            .filter(|d| !d.is_zero())
        {
            c.keepalive_timeout = d;
        }
        if !c.keepalive_disabled && c.keepalive_timeout < c.keepalive_interval {
            return Err(MuxConfigError::Keepalive {
                timeout: c.keepalive_timeout,
                interval: c.keepalive_interval,
            });
        }
        let positive =
            |key| -> Result<Option<i64>, MetadataError> { Ok(md.get_int(key)?.filter(|n| *n > 0)) };
        if let Some(n) = positive("mux.maxFrameSize")? {
            if n > 65_535 {
                return Err(MuxConfigError::FrameSize(n));
            }
            c.max_frame_size = n as usize;
        }
        if let Some(n) = positive("mux.maxReceiveBuffer")? {
            if n > i64::from(i32::MAX) {
                return Err(MuxConfigError::ReceiveBuffer(n));
            }
            c.max_receive_buffer = n as usize;
        }
        if let Some(n) = positive("mux.maxStreamBuffer")? {
            c.max_stream_buffer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if c.max_stream_buffer > c.max_receive_buffer {
            return Err(MuxConfigError::StreamBuffer {
                stream: c.max_stream_buffer,
                session: c.max_receive_buffer,
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, serde_json::Value)]) -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in pairs {
            m.insert(*k, v.clone());
        }
        m
    }

    #[test]
    fn defaults_are_smux_and_gost() {
        let c = MuxConfig::from_metadata(&Metadata::new(), 1).unwrap();
        assert_eq!(c, MuxConfig::default());
        assert_eq!(
            MuxConfig::from_metadata(&Metadata::new(), 2)
                .unwrap()
                .version,
            2
        );
    }

    #[test]
    fn gost_keys_are_read() {
        use serde_json::json;
        let c = MuxConfig::from_metadata(
            &md(&[
                ("mux.version", json!(2)),
                ("mux.keepaliveDisabled", json!(true)),
                ("mux.keepaliveInterval", json!("2s")),
                ("mux.keepaliveTimeout", json!("1s")),
                ("mux.maxFrameSize", json!(1024)),
                ("mux.maxReceiveBuffer", json!(100_000)),
                ("mux.maxStreamBuffer", json!(50_000)),
            ]),
            1,
        )
        .unwrap();
        assert_eq!(c.version, 2);
        assert!(c.keepalive_disabled);
        assert_eq!(c.keepalive_interval, Duration::from_secs(2));
        assert_eq!(c.max_frame_size, 1024);
        assert_eq!(c.max_receive_buffer, 100_000);
        assert_eq!(c.max_stream_buffer, 50_000);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        use serde_json::json;
        let err = |pairs: &[(&str, serde_json::Value)]| {
            MuxConfig::from_metadata(&md(pairs), 1)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("mux.version", json!(3))]).contains("mux.version 3"));
        assert!(err(&[("mux.type", json!("yamux"))]).contains("yamux"));
        assert!(err(&[("mux.maxFrameSize", json!(70_000))]).contains("mux.maxFrameSize"));
        assert!(err(&[("mux.keepaliveTimeout", json!("1s"))]).contains("mux.keepaliveTimeout"));
        assert!(err(&[("mux.maxStreamBuffer", json!(5_000_000))]).contains("mux.maxStreamBuffer"));
        assert!(err(&[("mux.version", json!("two"))]).contains("mux.version"));
    }
}
