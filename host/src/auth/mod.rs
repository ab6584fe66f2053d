//! Authentication (GOST's `auth` module): checks a user name and password
//! and names the client, so handlers and observers can tell clients apart.

/// What a handler asks when a client presents credentials. `Some(id)` lets
/// the client in; the id is what GOST's handler-level observers report
/// per client (GOST uses the user name when the auther has no other id).
pub trait Auther: Send + Sync {
    fn authenticate(&self, user: &str, password: &str) -> Option<String>;
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

impl Auther for StaticAuther {
    fn authenticate(&self, user: &str, password: &str) -> Option<String> {
        (self.users.get(user)? == password).then(|| user.to_string())
    }
}
