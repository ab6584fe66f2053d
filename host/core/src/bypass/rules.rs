//! A list of rules from inline `matchers` plus an optional `file`, read
//! again every `reload` period (GOST's file loader for bypass, admission
//! and hosts). Each rule keeps where it came from, so an error or a debug
//! log names the file and line.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
}

impl<T> std::fmt::Debug for Rules<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("owner", &self.owner)
            .field("file", &self.file)
            .finish()
    }
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
        })
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
        if let (Some(period), Some(_)) = (self.reload, &self.file) {
            let due = self
                .state
                .read()
                .map(|s| s.1.elapsed() >= period)
                .unwrap_or(false);
            if due {
                let fresh =
                    Self::read(&self.fixed, self.file.as_ref()).and_then(|l| (self.parse)(&l));
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
