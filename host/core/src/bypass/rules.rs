//! A list of rules from inline `matchers` plus an optional `file`, read
//! again every `reload` period (GOST's file loader for bypass, admission
//! and hosts). Each rule keeps where it came from, so an error or a debug
//! log names the file and line.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::loader::{Remote, Source};

/// One rule's text and where it was written (`matchers[2]`, `file.txt:7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {msg}")]
pub struct RuleError {
    pub at: String,
    pub msg: String,
}

/// Parsed rules of type `T`, reloaded on use once the period has passed.
/// Reloading on use needs no background task and a lookup never sees rules
/// older than the period.
pub struct Rules<T> {
    owner: String,
    fixed: Vec<Line>,
    file: Option<PathBuf>,
    reload: Option<Duration>,
    parse: fn(&[Line]) -> Result<T, RuleError>,
    state: RwLock<(Arc<T>, Instant)>,
    /// A `redis` or `http` loader, and the lines it last gave that were
    /// taken.
    remote: crate::loader::Loaded<Vec<Line>>,
}

impl<T> std::fmt::Debug for Rules<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("owner", &self.owner)
            .field("file", &self.file)
            .finish()
    }
}

/// The `redis` or `http` loader of a rule list's config, if any.
pub fn source(
    owner: &str,
    redis: Option<&crate::config::RedisLoader>,
    http: Option<&crate::config::HTTPLoader>,
    kind: crate::loader::RedisKind,
) -> Result<Option<Source>, RuleError> {
    Source::from_config(redis, http, kind).map_err(|msg| RuleError {
        at: owner.to_string(),
        msg,
    })
}

/// Lines of a rule file: `#` starts a comment, blank lines are skipped.
pub fn file_lines(path: &str, text: &str) -> Vec<Line> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next().unwrap_or_default().trim();
            (!l.is_empty()).then(|| Line {
                at: format!("{path}:{}", i + 1),
                text: l.to_string(),
            })
        })
        .collect()
}

impl<T> Rules<T> {
    /// Loads everything once; any bad rule or an unreadable file is an
    /// error, so a typo stops start-up instead of silently matching nothing.
    pub fn new(
        owner: &str,
        field: &str,
        matchers: &[String],
        file: Option<&str>,
        reload: Duration,
        parse: fn(&[Line]) -> Result<T, RuleError>,
    ) -> Result<Self, RuleError> {
        let fixed: Vec<Line> = matchers
            .iter()
            .enumerate()
            .map(|(i, m)| Line {
                at: format!("{owner}: {field}[{i}]"),
                text: m.trim().to_string(),
            })
            .filter(|l| !l.text.is_empty())
            .collect();
        let file = file.filter(|f| !f.is_empty()).map(PathBuf::from);
        let reload = (!reload.is_zero()).then(|| reload.max(Duration::from_secs(1)));
        let lines = Self::read(&fixed, file.as_ref())?;
        let parsed = parse(&lines)?;
        Ok(Rules {
            owner: owner.to_string(),
            fixed,
            file,
            reload,
            parse,
            state: RwLock::new((Arc::new(parsed), Instant::now())),
            remote: None,
        })
    }

    /// Adds the rules of a `redis` or `http` loader, read now and then
    /// every `reload` period. A source that cannot be read or gives bad
    /// rules is logged and leaves the other rules working, as GOST starts.
    /// [`Rules::with_remote`] for a config's `redis` and `http` loaders.
    pub fn with_loaders(
        self,
        redis: Option<&crate::config::RedisLoader>,
        http: Option<&crate::config::HTTPLoader>,
        kind: crate::loader::RedisKind,
        reload: Duration,
    ) -> Result<Self, RuleError> {
        let source = source(&self.owner, redis, http, kind)?;
        Ok(self.with_remote(source, reload))
    }

    pub fn with_remote(mut self, source: Option<Source>, reload: Duration) -> Self {
        let Some(source) = source else {
            return self;
        };
        let remote = Remote::new(&self.owner, source, reload);
        let first = remote.initial();
        self.remote = Some((remote, RwLock::new(Vec::new())));
        if let Some(text) = first {
            self.take_remote(&text);
        }
        self
    }

    /// Swaps in the rules with `text` from the loader, unless they are
    /// refused.
    fn take_remote(&self, text: &str) {
        let Some((remote, good)) = &self.remote else {
            return;
        };
        let lines = file_lines(&remote.source.describe(), text);
        let parsed = Self::read(&self.fixed, self.file.as_ref()).and_then(|mut all| {
            all.extend(lines.iter().cloned());
            (self.parse)(&all)
        });
        match parsed {
            Ok(t) => {
                if let Ok(mut g) = good.write() {
                    *g = lines;
                }
                if let Ok(mut s) = self.state.write() {
                    s.0 = Arc::new(t);
                }
            }
            Err(e) => remote.refused(&e),
        }
    }

    /// The lines of the inline rules, the file and the loader's last good
    /// data.
    fn lines(&self) -> Result<Vec<Line>, RuleError> {
        let mut lines = Self::read(&self.fixed, self.file.as_ref())?;
        if let Some((_, good)) = &self.remote {
            lines.extend(good.read().map(|g| g.clone()).unwrap_or_default());
        }
        Ok(lines)
    }

    fn read(fixed: &[Line], file: Option<&PathBuf>) -> Result<Vec<Line>, RuleError> {
        let mut lines = fixed.to_vec();
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| RuleError {
                at: shown.clone(),
                msg: e.to_string(),
            })?;
            lines.extend(file_lines(&shown, &text));
        }
        Ok(lines)
    }

    /// The current rules, re-read first when the reload period has passed.
    /// A reload that fails is logged and the previous rules stay.
    pub fn current(&self) -> Arc<T> {
        if let Some(text) = self.remote.as_ref().and_then(|(r, _)| r.poll()) {
            self.take_remote(&text);
        }
        if let (Some(period), Some(_)) = (self.reload, &self.file) {
            let due = self
                .state
                .read()
                .map(|s| s.1.elapsed() >= period)
                .unwrap_or(false);
            if due {
                let fresh = self.lines().and_then(|l| (self.parse)(&l));
                if let Ok(mut s) = self.state.write() {
                    s.1 = Instant::now();
                    match fresh {
                        Ok(t) => s.0 = Arc::new(t),
                        Err(e) => {
                            tracing::warn!(owner = %self.owner, error = %e, "reload failed; keeping the previous rules")
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
