//! Authentication (GOST's `auth` module): checks a user name and password
//! and names the client, so handlers and observers can tell clients apart.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::plugin::Plugin;

/// What a client presented, and where from: an auther plugin is told the
/// service and the client's address, as GOST tells it.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub service: &'a str,
    pub client: Option<SocketAddr>,
}

impl<'a> AuthRequest<'a> {
    pub fn new(user: &'a str, password: &'a str) -> Self {
        AuthRequest {
            user,
            password,
            service: "",
            client: None,
        }
    }

    pub fn from(mut self, service: &'a str, client: SocketAddr) -> Self {
        self.service = service;
        self.client = Some(client);
        self
    }
}

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// What a handler asks when a client presents credentials. `Some(id)` lets
/// the client in; the id is what GOST's handler-level observers report
/// per client (GOST uses the user name when the auther has no other id).
/// A future, because a plugin auther asks another process.
pub trait Auther: Send + Sync {
    fn authenticate<'a>(&'a self, req: AuthRequest<'a>) -> AuthFuture<'a>;
}

/// Fixed users: `handler.auth` / `user:pass@` on `-L`.
#[derive(Debug, Default)]
pub struct StaticAuther {
    users: std::collections::HashMap<String, String>,
}

impl StaticAuther {
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        StaticAuther {
            users: users.into_iter().collect(),
        }
    }
}

impl StaticAuther {
    fn check(&self, user: &str, password: &str) -> Option<String> {
        (self.users.get(user)? == password).then(|| user.to_string())
    }
}

impl Auther for StaticAuther {
    fn authenticate<'a>(&'a self, req: AuthRequest<'a>) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.check(req.user, req.password)))
    }
}

/// A named auther from the top-level `authers` section (GOST's
/// x/auth): users from `auths` plus those of a `file`, which is read again
/// every `reload` period. A user listed with an empty password accepts any
/// password, and an auther with no users at all lets nobody in, as in
/// GOST.
#[derive(Debug)]
pub struct TableAuther {
    name: String,
    fixed: HashMap<String, String>,
    file: Option<PathBuf>,
    reload: Option<Duration>,
    state: RwLock<Table>,
    /// A `redis` (hash of user to password) or `http` loader, and the
    /// users it last gave.
    remote: crate::loader::Loaded<Vec<(String, String)>>,
}

#[derive(Debug)]
struct Table {
    users: HashMap<String, String>,
    loaded: Instant,
}

impl TableAuther {
    /// Loads the file once; a file that cannot be read is logged and its
    /// users are missing until a reload succeeds (GOST starts the same way).
    pub fn new(
        name: &str,
        fixed: impl IntoIterator<Item = (String, String)>,
        file: Option<PathBuf>,
        reload: Option<Duration>,
    ) -> Self {
        let fixed: HashMap<String, String> = fixed.into_iter().collect();
        let a = TableAuther {
            name: name.to_string(),
            fixed: fixed.clone(),
            file,
            // GOST reloads at most once a second.
            reload: reload.map(|r| r.max(Duration::from_secs(1))),
            state: RwLock::new(Table {
                users: fixed,
                loaded: Instant::now(),
            }),
            remote: None,
        };
        a.reload_now();
        a
    }

    /// Adds the users of a `redis` or `http` loader, read now and then
    /// every `reload` period (GOST's `reload`, or once when it is 0).
    pub fn with_remote(mut self, source: crate::loader::Source, reload: Duration) -> Self {
        let remote =
            crate::loader::Remote::new(&format!("auther \"{}\"", self.name), source, reload);
        let first = remote.initial();
        self.remote = Some((remote, RwLock::new(Vec::new())));
        if let Some(text) = first {
            self.take_remote(&text);
        }
        self
    }

    fn take_remote(&self, text: &str) {
        if let Some((_, good)) = &self.remote {
            if let Ok(mut g) = good.write() {
                *g = parse_users(text);
            }
            self.reload_now();
        }
    }

    /// Re-reads the file; on failure the previous users stay, so a file
    /// caught mid-rewrite does not lock everyone out.
    fn reload_now(&self) {
        let mut users = self.fixed.clone();
        if let Some((_, good)) = &self.remote {
            users.extend(good.read().map(|g| g.clone()).unwrap_or_default());
        }
        if let Some(path) = &self.file {
            match std::fs::read_to_string(path) {
                Ok(text) => users.extend(parse_users(&text)),
                Err(e) => {
                    tracing::warn!(auther = %self.name, path = %path.display(), error = %e, "auther file");
                    if let Ok(mut t) = self.state.write() {
                        t.loaded = Instant::now();
                    }
                    return;
                }
            }
        }
        if let Ok(mut t) = self.state.write() {
            t.users = users;
            t.loaded = Instant::now();
        }
    }

    /// Reloading on use instead of on a timer needs no background task,
    /// and a lookup never sees a table older than the period.
    fn reload_if_due(&self) {
        if let Some(text) = self.remote.as_ref().and_then(|(r, _)| r.poll()) {
            self.take_remote(&text);
        }
        let (Some(period), Some(_)) = (self.reload, &self.file) else {
            return;
        };
        let due = self
            .state
            .read()
            .map(|t| t.loaded.elapsed() >= period)
            .unwrap_or(false);
        if due {
            self.reload_now();
        }
    }
}

impl TableAuther {
    fn check(&self, user: &str, password: &str) -> Option<String> {
        self.reload_if_due();
        let t = self.state.read().ok()?;
        let want = t.users.get(user)?;
        (want.is_empty() || want == password).then(|| user.to_string())
    }
}

impl Auther for TableAuther {
    fn authenticate<'a>(&'a self, req: AuthRequest<'a>) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.check(req.user, req.password)))
    }
}

/// GOST's auther plugin (`auth/plugin/http.go`, `grpc.go`): the plugin's
/// `id` names the client. A failed call denies, as in GOST.
pub struct PluginAuther(Plugin);

impl Auther for PluginAuther {
    fn authenticate<'a>(&'a self, req: AuthRequest<'a>) -> AuthFuture<'a> {
        Box::pin(async move {
            let body = gost_proto::plugin::AuthenticateRequest {
                service: req.service.to_string(),
                username: req.user.to_string(),
                password: req.password.to_string(),
                client: req.client.map(|c| c.to_string()).unwrap_or_default(),
            };
            let a = self.0.call(body, "denied").await.ok()?;
            a.ok.then_some(a.id)
        })
    }
}

/// GOST's auth file: one `user password` per line (tabs count as spaces),
/// `#` starts a comment line, a lone user name has an empty password.
pub fn parse_users(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.replace('\t', " ");
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (user, pass) = line.split_once(' ').unwrap_or((line, ""));
            Some((user.trim().to_string(), pass.trim().to_string()))
        })
        .collect()
}

/// The auther of a handler or listener, as GOST picks it: the named
/// `auther` and `authers` (tried in order), or else `auth` (`user:pass@`
/// on `-L`). Names were checked by `Config::validate`.
pub fn from_config(
    root: &crate::config::Config,
    auther: &str,
    authers: &[String],
    auth: Option<&crate::config::AuthConfig>,
) -> Result<Option<Arc<dyn Auther>>, crate::plugin::PluginError> {
    let named: Vec<Arc<dyn Auther>> = std::iter::once(auther)
        .chain(authers.iter().map(String::as_str))
        .filter(|n| !n.is_empty())
        .filter_map(|n| root.authers.iter().find(|a| a.name == n))
        .map(named)
        .collect::<Result<_, _>>()?;
    if !named.is_empty() {
        return Ok(Some(Arc::new(AutherGroup(named))));
    }
    let Some(auth) = auth else {
        return Ok(None);
    };
    if auth.username.is_empty() && auth.password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(StaticAuther::new([(
        auth.username.clone(),
        auth.password.clone(),
    )]))))
}

/// An auther of the top-level `authers` section: its plugin when it has
/// one (GOST then ignores the other sources), its users otherwise.
pub fn named(
    a: &crate::config::AutherConfig,
) -> Result<Arc<dyn Auther>, crate::plugin::PluginError> {
    if let Some(p) = &a.plugin {
        return Ok(Arc::new(PluginAuther(Plugin::new("auther", &a.name, p)?)));
    }
    let users = a
        .auths
        .iter()
        .filter(|u| !u.username.is_empty())
        .map(|u| (u.username.clone(), u.password.clone()));
    let file = a
        .file
        .as_ref()
        .filter(|f| !f.path.is_empty())
        .map(|f| f.path.clone().into());
    let reload = Some(a.reload.0).filter(|r| !r.is_zero());
    let table = TableAuther::new(&a.name, users, file, reload);
    // A source that cannot be built was refused by the config check.
    Ok(
        match crate::loader::Source::from_config(
            a.redis.as_ref(),
            a.http.as_ref(),
            crate::loader::RedisKind::Hash,
        ) {
            Ok(Some(source)) => Arc::new(table.with_remote(source, a.reload.0)),
            _ => Arc::new(table),
        },
    )
}

/// Several authers (`handler.authers`): the first that accepts decides.
pub struct AutherGroup(pub Vec<Arc<dyn Auther>>);

impl Auther for AutherGroup {
    fn authenticate<'a>(&'a self, req: AuthRequest<'a>) -> AuthFuture<'a> {
        Box::pin(async move {
            for a in &self.0 {
                if let Some(id) = a.authenticate(req).await {
                    return Some(id);
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_format_and_empty_password_rule() {
        let users = parse_users("# comment\nalice  secret one\n\tbob\t pw\ncarol\n\n");
        assert_eq!(
            users,
            vec![
                ("alice".into(), "secret one".into()),
                ("bob".into(), "pw".into()),
                ("carol".into(), "".into())
            ]
        );
        let a = TableAuther::new("a", users, None, None);
        assert_eq!(a.check("alice", "secret one").as_deref(), Some("alice"));
        assert_eq!(a.check("alice", "secret"), None);
        assert_eq!(a.check("carol", "anything").as_deref(), Some("carol"));
        assert_eq!(a.check("dave", ""), None);
        let empty = TableAuther::new("e", [], None, None);
        assert_eq!(empty.check("", ""), None);
    }

    #[test]
    fn file_is_reloaded_after_the_period() {
        let path = std::env::temp_dir().join(format!("gost-auther-{}", std::process::id()));
        std::fs::write(&path, "u old\n").unwrap();
        let a = TableAuther::new("f", [], Some(path.clone()), Some(Duration::from_secs(1)));
        assert!(a.check("u", "old").is_some());
        std::fs::write(&path, "u new\n").unwrap();
        assert!(a.check("u", "old").is_some(), "not due yet");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(a.check("u", "new").is_some());
        assert!(a.check("u", "old").is_none());
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(a.check("u", "new").is_some(), "kept when unreadable");
    }
}
