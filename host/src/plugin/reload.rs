//! Hot reload: a handler plugin's file is checked for changes (time and
//! size) twice a second; a changed file that loads replaces the module for
//! new connections, while live ones finish on the old one. A file that does
//! not load leaves the running module in place and the reason is logged.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use super::handler::WasmHandler;

const POLL: Duration = Duration::from_millis(500);

/// Watches until the handler is dropped.
pub fn watch(handler: Weak<WasmHandler>, path: PathBuf) {
    let mut last = stamp(&path);
    let shown = path.display().to_string();
    let spawned = std::thread::Builder::new()
        .name("wasm-reload".into())
        .spawn(move || loop {
            std::thread::sleep(POLL);
            let Some(h) = handler.upgrade() else { return };
            let now = stamp(&path);
            if now == last || now.is_none() {
                continue;
            }
            last = now;
            let plugin = &*h.spec().name;
            match h.reload() {
                Ok(()) => tracing::info!(plugin, "plugin reloaded"),
                Err(e) => {
                    tracing::error!(plugin, error = %e, "plugin reload failed, keeping the running module")
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(path = %shown, error = %e, "plugin reload watcher not started");
    }
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
