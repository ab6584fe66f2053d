//! Node matchers (GOST's `routing` package): a rule such as
//! `Host("*.example.com") && PathPrefix("/api")` compiled once at start-up
//! and evaluated against what is known about one request.

pub mod rule;

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

use rule::Expr;

/// What a matcher can look at. Fields a caller does not know stay empty,
/// and matchers on them do not match, as in GOST.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub client_ip: Option<IpAddr>,
    /// `tcp` or `udp`.
    pub network: &'a str,
    /// Target host, with or without a port.
    pub host: &'a str,
    /// Sniffed protocol: `http`, `tls`, or empty.
    pub protocol: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string without its `?`.
    pub query: &'a str,
    pub headers: &'a [(String, String)],
}

/// Why a rule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule `{rule}`: {source}")]
    Syntax {
        rule: String,
        source: rule::SyntaxError,
    },
    #[error("rule `{rule}`: {msg}")]
    Matcher { rule: String, msg: String },
}

/// A compiled rule.
#[derive(Debug)]
pub struct Matcher {
    tree: Tree,
}

#[derive(Debug)]
enum Tree {
    Leaf(Leaf),
    Not(Box<Tree>),
    And(Box<Tree>, Box<Tree>),
    Or(Box<Tree>, Box<Tree>),
}

#[derive(Debug)]
enum Leaf {
    ClientIp(IpNet),
    Network(String),
    Proto(String),
    /// Lower-case host; a leading dot matches every name under it.
    Host(String),
    HostRegexp(Regex),
    Method(String),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    Header(String, Option<String>),
    HeaderRegexp(String, Regex),
    Query(String, Option<String>),
    QueryRegexp(String, Regex),
}

/// Matchers GOST has that this build does not evaluate; a rule naming one
/// is refused rather than silently never matching.
const UNSUPPORTED: [&str; 4] = ["BodyJSON", "BodyRegexp", "Bypass", "Admission"];

const NAMES: [&str; 13] = [
    "ClientIP",
    "Network",
    "Proto",
    "Host",
    "HostRegexp",
    "Method",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
];

/// GOST accepts a matcher name as written, all lower, all upper, or with
/// only its first letter upper.
fn canonical(name: &str) -> Option<&'static str> {
    NAMES.iter().chain(UNSUPPORTED.iter()).copied().find(|n| {
        let lower = n.to_lowercase();
        let mut title = lower.clone();
        title[..1].make_ascii_uppercase();
        name == *n || name == lower || name == n.to_uppercase() || name == title
    })
}

impl Matcher {
    pub fn new(rule: &str) -> Result<Matcher, RuleError> {
        let expr = rule::parse(rule).map_err(|source| RuleError::Syntax {
            rule: rule.to_string(),
            source,
        })?;
        let tree = compile(&expr).map_err(|msg| RuleError::Matcher {
            rule: rule.to_string(),
            msg,
        })?;
        Ok(Matcher { tree })
    }

    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.tree.eval(req)
    }
}

/// GOST's node priority: an explicit one wins; 0 means the rule's length,
/// so a longer (more specific) rule outranks a shorter one.
pub fn priority(rule: &str, configured: i64) -> i64 {
    if configured == 0 && !rule.trim().is_empty() {
        rule.len() as i64
    } else {
        configured
    }
}

fn compile(e: &Expr) -> Result<Tree, String> {
    Ok(match e {
        Expr::Not(x) => Tree::Not(Box::new(compile(x)?)),
        Expr::And(a, b) => Tree::And(Box::new(compile(a)?), Box::new(compile(b)?)),
        Expr::Or(a, b) => Tree::Or(Box::new(compile(a)?), Box::new(compile(b)?)),
        Expr::Call { name, args } => Tree::Leaf(leaf(name, args)?),
    })
}

fn leaf(name: &str, args: &[String]) -> Result<Leaf, String> {
    let Some(canon) = canonical(name) else {
        return Err(format!(
            "unknown matcher {name} (known: {})",
            NAMES.join(", ")
        ));
    };
    if UNSUPPORTED.contains(&canon) {
        return Err(format!("matcher {canon} is not supported yet"));
    }
    if args.is_empty() {
        return Err(format!("no args for matcher {canon}"));
    }
    if args.iter().any(String::is_empty) {
        return Err(format!("empty args for matcher {canon}"));
    }
    let arity = |allowed: &[usize]| {
        if allowed.contains(&args.len()) {
            Ok(())
        } else {
            Err(format!(
                "matcher {canon}: got {} arguments, expected one of {allowed:?}",
                args.len()
            ))
        }
    };
    let regex = |s: &str| Regex::new(s).map_err(|e| format!("matcher {canon}: {e}"));
    let slash = |s: &str| {
        if s.starts_with('/') {
            Ok(s.to_string())
        } else {
            Err(format!(
                "matcher {canon}: path {s:?} does not start with a '/'"
            ))
        }
    };
    let a0 = args[0].as_str();
    Ok(match canon {
        "ClientIP" => {
            arity(&[1])?;
            let net = match a0.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => a0
                    .parse::<IpNet>()
                    .map_err(|_| format!("invalid value {a0:?} for ClientIP matcher"))?,
            };
            Leaf::ClientIp(net)
        }
        "Network" => {
            arity(&[1])?;
            Leaf::Network(a0.to_lowercase())
        }
        "Proto" => {
            arity(&[1])?;
            Leaf::Proto(a0.to_lowercase())
        }
        "Host" => {
            arity(&[1])?;
            if !a0.is_ascii() {
                return Err(format!(
                    "invalid value {a0:?} for Host matcher, non-ASCII characters are not allowed"
                ));
            }
            let mut h = a0.trim().to_lowercase();
            if let Some(rest) = h.strip_prefix('*') {
                h = if rest.starts_with('.') {
                    rest.to_string()
                } else {
                    format!(".{rest}")
                };
            }
            Leaf::Host(h)
        }
        "HostRegexp" => {
            arity(&[1])?;
            Leaf::HostRegexp(regex(a0)?)
        }
        "Method" => {
            arity(&[1])?;
            Leaf::Method(a0.to_uppercase())
        }
        "Path" => {
            arity(&[1])?;
            Leaf::Path(slash(a0)?)
        }
        "PathPrefix" => {
            arity(&[1])?;
            Leaf::PathPrefix(slash(a0)?)
        }
        "PathRegexp" => {
            arity(&[1])?;
            Leaf::PathRegexp(regex(a0)?)
        }
        "Header" | "Query" if args.len() == 3 => {
            return Err(format!(
                "matcher {canon} with a numeric comparison is not supported yet"
            ))
        }
        "Header" => {
            arity(&[1, 2])?;
            Leaf::Header(a0.to_string(), args.get(1).cloned())
        }
        "Query" => {
            arity(&[1, 2])?;
            Leaf::Query(a0.to_string(), args.get(1).cloned())
        }
        "HeaderRegexp" | "QueryRegexp" => {
            arity(&[1, 2])?;
            let re = regex(args.get(1).map_or(".*", String::as_str))?;
            if canon == "HeaderRegexp" {
                Leaf::HeaderRegexp(a0.to_string(), re)
            } else {
                Leaf::QueryRegexp(a0.to_string(), re)
            }
        }
        _ => unreachable!("every name in NAMES is compiled above"),
    })
}

impl Tree {
    fn eval(&self, req: &Request<'_>) -> bool {
        match self {
            Tree::Leaf(l) => l.eval(req),
            Tree::Not(t) => !t.eval(req),
            Tree::And(a, b) => a.eval(req) && b.eval(req),
            Tree::Or(a, b) => a.eval(req) || b.eval(req),
        }
    }
}

/// The host without its port, lower-cased, as GOST's `parseHost`.
fn bare_host(host: &str) -> String {
    let h = crate::listener::split_host_port(host)
        .map(|(h, _)| h)
        .unwrap_or(host);
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_lowercase()
}

fn header_values<'r>(req: &Request<'r>, key: &'r str) -> impl Iterator<Item = &'r str> {
    req.headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn query_values<'r>(req: &Request<'r>, key: &'r str) -> impl Iterator<Item = String> + 'r {
    url::form_urlencoded::parse(req.query.as_bytes())
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl Leaf {
    fn eval(&self, req: &Request<'_>) -> bool {
        match self {
            Leaf::ClientIp(net) => req.client_ip.is_some_and(|ip| net.contains(&ip)),
            Leaf::Network(n) => req.network.starts_with(n.as_str()),
            Leaf::Proto(p) => req.protocol == p,
            Leaf::Host(want) => {
                let h = bare_host(req.host);
                !h.is_empty()
                    && (h == *want || (want.starts_with('.') && h.ends_with(want.as_str())))
            }
            Leaf::HostRegexp(re) => re.is_match(&bare_host(req.host)),
            Leaf::Method(m) => req.method == m,
            Leaf::Path(p) => req.path == p,
            Leaf::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Leaf::PathRegexp(re) => re.is_match(req.path),
            Leaf::Header(k, v) => {
                let mut vals = header_values(req, k).peekable();
                match v {
                    None => vals.peek().is_some(),
                    Some(v) => vals.any(|x| x == v),
                }
            }
            Leaf::HeaderRegexp(k, re) => header_values(req, k).any(|x| re.is_match(x)),
            Leaf::Query(k, v) => {
                let mut vals = query_values(req, k).peekable();
                match v {
                    None => vals.peek().is_some(),
                    Some(v) => vals.any(|x| x == *v),
                }
            }
            Leaf::QueryRegexp(k, re) => query_values(req, k).any(|x| re.is_match(&x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(host: &'a str, path: &'a str) -> Request<'a> {
        Request {
            network: "tcp",
            host,
            path,
            ..Default::default()
        }
    }

    #[test]
    fn host_path_and_operators() {
        let m = Matcher::new(r#"Host("*.example.com") && !PathPrefix("/admin")"#).unwrap();
        assert!(m.matches(&req("www.example.com:80", "/x")));
        assert!(!m.matches(&req("www.example.com", "/admin/1")));
        assert!(!m.matches(&req("example.org", "/x")));
        let m = Matcher::new(r#"host("a.test") || PATH("/p")"#).unwrap();
        assert!(m.matches(&req("A.test", "/")));
        assert!(m.matches(&req("b.test", "/p")));
        assert!(!m.matches(&req("", "")));
    }

    #[test]
    fn request_fields() {
        let headers = vec![("X-Env".to_string(), "prod".to_string())];
        let r = Request {
            client_ip: Some("10.1.2.3".parse().unwrap()),
            network: "tcp",
            host: "h",
            protocol: "http",
            method: "POST",
            path: "/v1/items",
            query: "a=1&b=two",
            headers: &headers,
        };
        for rule in [
            r#"ClientIP("10.0.0.0/8")"#,
            r#"ClientIP("10.1.2.3")"#,
            r#"Network("tcp")"#,
            r#"Proto("HTTP")"#,
            r#"Method("post")"#,
            r#"PathRegexp("^/v[0-9]+/")"#,
            r#"HostRegexp("^h$")"#,
            r#"Header("x-env")"#,
            r#"Header("X-Env", "prod")"#,
            r#"HeaderRegexp("X-Env", "^pr")"#,
            r#"Query("b", "two")"#,
            r#"QueryRegexp("a", "^[0-9]$")"#,
        ] {
            assert!(Matcher::new(rule).unwrap().matches(&r), "{rule}");
        }
        for rule in [
            r#"ClientIP("192.168.0.0/16")"#,
            r#"Proto("tls")"#,
            r#"Header("X-Env", "dev")"#,
            r#"Query("c")"#,
        ] {
            assert!(!Matcher::new(rule).unwrap().matches(&r), "{rule}");
        }
    }

    #[test]
    fn bad_rules_say_why() {
        for (rule, msg) in [
            (r#"Hots("a")"#, "unknown matcher Hots"),
            (r#"Path("x")"#, "does not start with a '/'"),
            (r#"Host()"#, "no args for matcher Host"),
            (r#"Host("")"#, "empty args"),
            (r#"Host("a", "b")"#, "expected one of [1]"),
            (r#"PathRegexp("(")"#, "PathRegexp"),
            (r#"ClientIP("nope")"#, "invalid value"),
            (r#"BodyRegexp("x")"#, "BodyRegexp is not supported yet"),
            (r#"Header("a", ">", "1")"#, "numeric comparison"),
            (r#"Host("a") &&"#, "at byte 12"),
        ] {
            let e = Matcher::new(rule).unwrap_err().to_string();
            assert!(e.contains(msg), "{rule}: {e}");
            assert!(e.contains(rule), "{rule}: {e}");
        }
    }

    #[test]
    fn priority_defaults_to_rule_length() {
        assert_eq!(priority(r#"Host("a")"#, 0), 9);
        assert_eq!(priority(r#"Host("a")"#, 5), 5);
        assert_eq!(priority(r#"Host("a")"#, -1), -1);
        assert_eq!(priority("", 0), 0);
    }
}
