//! A hop's `file` loader (GOST's hop file loader): a JSON array of node
//! objects, in the config's node syntax, added to the hop's inline nodes
//! and re-read every `reload` period (checked on use, no background task).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::Node;
use gost_core::config::NodeConfig;

/// Builds one node of the file as the hop's inline nodes are built (with
/// their bypass, hosts and resolver looked up in the config).
pub type BuildNode = Box<dyn Fn(&NodeConfig) -> Result<Node, String> + Send + Sync>;

pub struct NodeFile {
    owner: String,
    path: PathBuf,
    reload: Option<Duration>,
    build: BuildNode,
    state: RwLock<(Arc<Vec<Arc<Node>>>, Instant)>,
}

impl std::fmt::Debug for NodeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFile")
            .field("path", &self.path)
            .finish()
    }
}

impl NodeFile {
    /// Loads the file once: at start-up an unreadable file or a bad node
    /// is an error naming the file.
    pub fn new(
        owner: &str,
        path: &str,
        reload: Duration,
        build: BuildNode,
    ) -> Result<NodeFile, String> {
        let mut f = NodeFile {
            owner: owner.to_string(),
            path: PathBuf::from(path),
            reload: (!reload.is_zero()).then(|| reload.max(Duration::from_secs(1))),
            build,
            state: RwLock::new((Arc::default(), Instant::now())),
        };
        let nodes = f.load()?;
        f.state = RwLock::new((Arc::new(nodes), Instant::now()));
        Ok(f)
    }

    fn load(&self) -> Result<Vec<Arc<Node>>, String> {
        let shown = self.path.display();
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{shown}: {e}"))?;
        let cfgs: Vec<NodeConfig> =
            serde_json::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        cfgs.iter()
            .map(|n| {
                (self.build)(n)
                    .map(Arc::new)
                    .map_err(|e| format!("{shown}: {e}"))
            })
            .collect()
    }

    /// The file's nodes, re-read first when the reload period has passed;
    /// a failed reload is logged and the previous nodes stay.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        if let Some(period) = self.reload {
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
