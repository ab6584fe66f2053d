//! Hot reload: a plugin's file is checked for changes (time and size)
//! twice a second; a changed file that loads replaces the module for new
//! connections and calls, while live connections finish on the old one. A
//! file that does not load leaves the running module in place and the
//! reason is logged.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use super::PluginError;

/// A plugin user that can swap in a new module.
pub trait Reload: Send + Sync {
    /// The plugin's file as configured, for the log.
    fn plugin(&self) -> &str;
    fn reload(&self) -> Result<(), PluginError>;
}

const POLL: Duration = Duration::from_millis(500);

/// A compiled module and its generation: a reload bumps the generation so
/// a long-lived instance made from the old module is replaced on next use.
pub struct Versioned<T>(std::sync::RwLock<(T, u64)>);

impl<T: Clone> Versioned<T> {
    pub fn new(value: T) -> Self {
        Versioned(std::sync::RwLock::new((value, 0)))
    }

    pub fn get(&self) -> (T, u64) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, value: T) {
        let mut cur = self.0.write().unwrap_or_else(|p| p.into_inner());
        let generation = cur.1 + 1;
        *cur = (value, generation);
    }
}

/// Shares `user` and watches its plugin file until it is dropped.
pub fn watched<T: Reload + 'static>(user: T, path: PathBuf) -> std::sync::Arc<T> {
    let user = std::sync::Arc::new(user);
    let dyn_user: std::sync::Arc<dyn Reload> = user.clone();
    watch(std::sync::Arc::downgrade(&dyn_user), path);
    user
}

/// Watches until the plugin's user is dropped.
pub fn watch(user: Weak<dyn Reload>, path: PathBuf) {
    let mut last = stamp(&path);
    let shown = path.display().to_string();
    let spawned = std::thread::Builder::new()
        .name("wasm-reload".into())
        .spawn(move || loop {
            std::thread::sleep(POLL);
            let Some(h) = user.upgrade() else { return };
            let now = stamp(&path);
            if now == last || now.is_none() {
                continue;
            }
            last = now;
            let plugin = h.plugin();
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
