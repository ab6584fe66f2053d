//! Hot reload: every plugin file in use is checked for changes (time and
//! size) twice a second, and at once whenever the configuration changes
//! through the web API or a reload ([`refresh`]). A changed file that loads
//! replaces the module for new connections and calls, while live
//! connections finish on the old one. A file that does not load leaves the
//! running module in place and the reason is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
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

/// One plugin user and the file state its module was loaded from.
struct Watched {
    user: Weak<dyn Reload>,
    path: PathBuf,
    last: Option<(SystemTime, u64)>,
}

/// Every live plugin user; entries go when their user is dropped. Created
/// with the first plugin, so a config without plugins starts no watcher.
static REGISTRY: OnceLock<Mutex<Vec<Watched>>> = OnceLock::new();

fn registry() -> &'static Mutex<Vec<Watched>> {
    REGISTRY.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("wasm-reload".into())
            .spawn(|| loop {
                std::thread::sleep(POLL);
                refresh();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "plugin reload watcher not started; files are checked on config changes only");
        }
        Mutex::default()
    })
}

/// Shares `user` and watches its plugin file until it is dropped.
pub fn watched<T: Reload + 'static>(user: T, path: PathBuf) -> Arc<T> {
    let user = Arc::new(user);
    let dyn_user: Arc<dyn Reload> = user.clone();
    let last = stamp(&path);
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Watched {
            user: Arc::downgrade(&dyn_user),
            path,
            last,
        });
    user
}

/// Reloads every plugin whose file changed since its module was loaded, and
/// forgets users that are gone. Returns when done, so a caller knows that
/// new connections from now on use what the files hold.
pub fn refresh() {
    let Some(registry) = REGISTRY.get() else {
        return;
    };
    let mut all = registry.lock().unwrap_or_else(|p| p.into_inner());
    all.retain_mut(|w| {
        let Some(user) = w.user.upgrade() else {
            return false;
        };
        let now = stamp(&w.path);
        if now == w.last || now.is_none() {
            return true;
        }
        w.last = now;
        let plugin = user.plugin();
        match user.reload() {
            Ok(()) => tracing::info!(plugin, "plugin reloaded"),
            Err(e) => {
                tracing::error!(plugin, error = %e, "plugin reload failed, keeping the running module")
            }
        }
        true
    });
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
