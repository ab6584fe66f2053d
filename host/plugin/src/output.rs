//! A plugin's stdout and stderr, written to the host log a line at a time
//! and tagged with the plugin and its service, so `println!`, `eprintln!`
//! and a panic's message reach the operator instead of nowhere.
//!
//! A plugin is untrusted, so its output is bounded: a line longer than
//! [`MAX_LINE`] bytes is cut there, each line is escaped like any
//! client-controlled value, and each plugin and service may write at most
//! [`BURST`] lines at once and [`LINES_PER_SEC`] a second after that; what
//! is left out is counted and said in the next line written.
//!
//! A Rust guest that panics writes `thread '..' panicked at FILE:LINE:COL:`
//! and the message to stderr before it aborts; the abort is a bare
//! `unreachable` trap, so the message is kept in the [`LastWords`] the
//! store shares with this stream and named in the trap's error.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::state::Identity;

/// Longest line written to the log, in bytes; the rest of a longer line
/// is left out.
pub const MAX_LINE: usize = 1024;
/// Lines a plugin (per service) may write at once.
pub const BURST: f64 = 200.0;
/// Lines a second a plugin (per service) may write past the burst.
pub const LINES_PER_SEC: f64 = 50.0;
/// Plugin and service pairs whose budget is remembered at once.
const MAX_BUCKETS: usize = 4096;

/// The panic message a guest wrote to stderr, if it panicked.
#[derive(Debug, Clone, Default)]
pub struct LastWords(Arc<Mutex<Option<String>>>);

impl LastWords {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, s: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    fn append(&self, line: &str) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.as_mut() {
            if s.len() < MAX_LINE {
                // The first line of the message follows the place it
                // was raised; later ones are set apart.
                s.push_str(if s.contains(": ") { " / " } else { ": " });
                s.push_str(line);
                truncate(s, MAX_LINE);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Stdout,
    Stderr,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }
}

/// One stream of one instance: the WASI context holds it and hands out
/// writers that share its line buffer.
#[derive(Clone)]
pub struct PluginOutput(Arc<Mutex<Lines>>);

impl PluginOutput {
    pub fn new(id: &Identity, which: Which, last_words: LastWords) -> Self {
        PluginOutput(Arc::new(Mutex::new(Lines {
            plugin: id.plugin.clone(),
            owner: id.owner.clone(),
            which,
            partial: Vec::new(),
            cut: false,
            in_panic: false,
            last_words,
        })))
    }

    fn write(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(bytes);
    }
}

struct Lines {
    plugin: Arc<str>,
    owner: Arc<str>,
    which: Which,
    /// The line being written, at most `MAX_LINE` bytes.
    partial: Vec<u8>,
    /// The line being written was longer than `MAX_LINE`.
    cut: bool,
    /// The lines after a panic's header are its message.
    in_panic: bool,
    last_words: LastWords,
}

impl Lines {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.push(&bytes[..i]);
            self.end_line();
            bytes = &bytes[i + 1..];
        }
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.partial.len();
        if bytes.len() > room {
            self.cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let raw = std::mem::take(&mut self.partial);
        let cut = std::mem::take(&mut self.cut);
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches('\r');
        if self.which == Which::Stderr {
            self.watch_panic(line);
        }
        if line.is_empty() {
            return;
        }
        let Some(left_out) = admit(&self.plugin, &self.owner) else {
            return;
        };
        let (plugin, service, stream) = (&*self.plugin, &*self.owner, self.which.name());
        let line = gost_core::escape::esc(line);
        match (self.which, left_out) {
            (Which::Stdout, 0) => tracing::info!(plugin, service, stream, cut, "{line}"),
            (Which::Stdout, n) => {
                tracing::info!(plugin, service, stream, cut, left_out = n, "{line}")
            }
            (Which::Stderr, 0) => tracing::warn!(plugin, service, stream, cut, "{line}"),
            (Which::Stderr, n) => {
                tracing::warn!(plugin, service, stream, cut, left_out = n, "{line}")
            }
        }
    }

    fn watch_panic(&mut self, line: &str) {
        if let Some(at) = panic_header(line) {
            self.in_panic = true;
            self.last_words.set(format!("panicked at {at}"));
        } else if self.in_panic {
            if line.starts_with("note: run with `RUST_BACKTRACE") {
                self.in_panic = false;
            } else if !line.is_empty() {
                self.last_words.append(line);
            }
        }
    }
}

impl Drop for Lines {
    /// A last line without a newline is still a line.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.end_line();
        }
    }
}

/// `FILE:LINE:COL` from Rust's `thread 'NAME' (ID) panicked at
/// FILE:LINE:COL:` (older Rust leaves out the ` (ID)`).
fn panic_header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("thread '")?;
    let (_, at) = rest.split_once(" panicked at ")?;
    Some(at.trim_end_matches(':'))
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    left_out: u64,
}

/// Each plugin and service's budget, by (plugin, service).
type Buckets = HashMap<(Arc<str>, Arc<str>), Bucket>;

static BUCKETS: Mutex<Option<Buckets>> = Mutex::new(None);

/// Whether the plugin may write a line now: `Some(n)` with the lines left
/// out before it, or `None` to leave this one out too.
fn admit(plugin: &Arc<str>, owner: &Arc<str>) -> Option<u64> {
    admit_at(plugin, owner, Instant::now())
}

fn admit_at(plugin: &Arc<str>, owner: &Arc<str>, now: Instant) -> Option<u64> {
    let mut guard = BUCKETS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_BUCKETS && !map.contains_key(&(plugin.clone(), owner.clone())) {
        // Buckets that refilled completely say nothing a new one would not.
        map.retain(|_, b| {
            b.left_out > 0 || (now.duration_since(b.at).as_secs_f64() * LINES_PER_SEC) < BURST
        });
        if map.len() >= MAX_BUCKETS {
            map.clear();
        }
    }
    let b = map
        .entry((plugin.clone(), owner.clone()))
        .or_insert(Bucket {
            tokens: BURST,
            at: now,
            left_out: 0,
        });
    let refill = now.duration_since(b.at).as_secs_f64() * LINES_PER_SEC;
    b.tokens = (b.tokens + refill).min(BURST);
    b.at = now;
    if b.tokens < 1.0 {
        b.left_out += 1;
        return None;
    }
    b.tokens -= 1.0;
    Some(std::mem::take(&mut b.left_out))
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Writing to the log never waits, so the stream is always ready and
/// takes any amount (only the first `MAX_LINE` bytes of a line are kept).
#[wasmtime_wasi::async_trait]
impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        PluginOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        PluginOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines(which: Which) -> (Lines, LastWords) {
        let last = LastWords::default();
        let l = Lines {
            plugin: "t.wasm".into(),
            owner: "svc-output-test".into(),
            which,
            partial: Vec::new(),
            cut: false,
            in_panic: false,
            last_words: last.clone(),
        };
        (l, last)
    }

    #[test]
    fn a_rust_panic_becomes_the_last_words() {
        let (mut l, last) = lines(Which::Stderr);
        l.write(b"\nthread '<unnamed>' (1) panicked at src/lib.rs:25:21:\nasked ");
        assert_eq!(last.get().as_deref(), Some("panicked at src/lib.rs:25:21"));
        l.write(b"to trap\nnote: run with `RUST_BACKTRACE=1` environment variable\nlater\n");
        assert_eq!(
            last.get().as_deref(),
            Some("panicked at src/lib.rs:25:21: asked to trap")
        );
        let (mut l, last) = lines(Which::Stdout);
        l.write(b"thread 'x' panicked at a.rs:1:1:\nboom\n");
        assert_eq!(last.get(), None, "stdout is not where panics go");
    }

    #[test]
    fn long_lines_are_cut_and_the_buffer_stays_bounded() {
        let (mut l, _) = lines(Which::Stdout);
        for _ in 0..100 {
            l.write(&[b'x'; 1000]);
        }
        assert_eq!(l.partial.len(), MAX_LINE);
        assert!(l.cut);
        l.write(b"\nnext");
        assert_eq!(l.partial, b"next");
        assert!(!l.cut);
    }

    #[test]
    fn lines_past_the_budget_are_counted_then_reported() {
        let (p, o): (Arc<str>, Arc<str>) = ("rate.wasm".into(), "svc-rate-test".into());
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert_eq!(admit_at(&p, &o, t0), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(admit_at(&p, &o, t0), None);
        }
        // Another service's lines have their own budget.
        assert_eq!(admit_at(&p, &"other".into(), t0), Some(0));
        let later = t0 + Duration::from_secs_f64(1.0 / LINES_PER_SEC);
        assert_eq!(admit_at(&p, &o, later), Some(7));
        assert_eq!(admit_at(&p, &o, later), None);
    }
}
