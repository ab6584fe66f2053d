//! A hop's `file`, `redis` and `http` loaders (GOST's hop loaders): a
//! JSON array of node objects, in the config's node syntax, added to the
//! hop's inline nodes and read again every `reload` period: the file on
//! use, the Redis key (a string, `GET`) or URL in the background (see
//! [`gost_core::loader`]).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::Node;
use gost_core::config::NodeConfig;
use gost_core::loader::{Remote, Source};

/// Builds one node of the file as the hop's inline nodes are built (with
/// their bypass, hosts and resolver looked up in the config).
pub type BuildNode = Box<dyn Fn(&NodeConfig) -> Result<Node, String> + Send + Sync>;

pub struct NodeLoader {
    owner: String,
    path: Option<PathBuf>,
    reload: Option<Duration>,
    build: BuildNode,
    state: RwLock<(Arc<Vec<Arc<Node>>>, Instant)>,
    /// The `redis` or `http` loader and the nodes it last gave.
    remote: gost_core::loader::Loaded<Arc<Vec<Arc<Node>>>>,
}

impl std::fmt::Debug for NodeLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLoader")
            .field("path", &self.path)
            .field("remote", &self.remote.as_ref().map(|r| &r.0))
            .finish()
    }
}

impl NodeLoader {
    /// Loads the file once: at start-up an unreadable file or a bad node
    /// is an error naming the file. A `redis` or `http` source is read
    /// too; one that cannot be read or gives bad nodes is logged, and the
    /// hop starts without its nodes, as in GOST.
    pub fn new(
        owner: &str,
        path: Option<&str>,
        remote: Option<Source>,
        reload: Duration,
        build: BuildNode,
    ) -> Result<NodeLoader, String> {
        let mut f = NodeLoader {
            owner: owner.to_string(),
            path: path.map(PathBuf::from),
            reload: (!reload.is_zero()).then(|| reload.max(Duration::from_secs(1))),
            build,
            state: RwLock::new((Arc::default(), Instant::now())),
            remote: None,
        };
        let nodes = f.load()?;
        f.state = RwLock::new((Arc::new(nodes), Instant::now()));
        if let Some(source) = remote {
            let r = Remote::new(owner, source, reload);
            let first = r.initial();
            f.remote = Some((r, RwLock::default()));
            if let Some(text) = first {
                f.take_remote(&text);
            }
        }
        Ok(f)
    }

    fn parse(&self, shown: &str, text: &str) -> Result<Vec<Arc<Node>>, String> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let cfgs: Vec<NodeConfig> =
            serde_json::from_str(text).map_err(|e| format!("{shown}: {e}"))?;
        cfgs.iter()
            .map(|n| {
                (self.build)(n)
                    .map(Arc::new)
                    .map_err(|e| format!("{shown}: {e}"))
            })
            .collect()
    }

    fn load(&self) -> Result<Vec<Arc<Node>>, String> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        if text.trim().is_empty() {
            // An empty file is a mistake here, not "no nodes".
            return Err(format!("{shown}: empty"));
        }
        self.parse(&shown, &text)
    }

    fn take_remote(&self, text: &str) {
        let Some((remote, good)) = &self.remote else {
            return;
        };
        match self.parse(&remote.source.describe(), text) {
            Ok(nodes) => {
                if let Ok(mut g) = good.write() {
                    *g = Arc::new(nodes);
                }
            }
            Err(e) => remote.refused(&e),
        }
    }

    /// The file's nodes then the loader's, re-read first when the reload
    /// period has passed; a failed reload is logged and the previous
    /// nodes stay.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        let file = self.file_nodes();
        let Some((remote, good)) = &self.remote else {
            return file;
        };
        if let Some(text) = remote.poll() {
            self.take_remote(&text);
        }
        let remote = good.read().map(|g| g.clone()).unwrap_or_default();
        if file.is_empty() {
            return remote;
        }
        Arc::new(file.iter().chain(remote.iter()).cloned().collect())
    }

    fn file_nodes(&self) -> Arc<Vec<Arc<Node>>> {
        if let (Some(period), Some(_)) = (self.reload, &self.path) {
            let due = self
                .state
                .read()
                .map(|s| s.1.elapsed() >= period)
                .unwrap_or(false);
            if due {
                let fresh = self.load();
                if let Ok(mut s) = self.state.write() {
                    s.1 = Instant::now();
                    match fresh {
                        Ok(n) => s.0 = Arc::new(n),
                        Err(e) => {
                            tracing::warn!(hop = %self.owner, error = %e, "node file reload failed; keeping the previous nodes")
                        }
                    }
                }
            }
        }
        self.state
            .read()
            .map(|s| s.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }
}
