//! Node matchers (GOST's `routing` package): a rule such as
//! `Host("*.example.com") && PathPrefix("/api")` compiled once at start-up
//! and evaluated against what is known about one request.

pub mod rule;

/// GOST's `matcher.bodySize` default and cap: how much of a request body
/// a node matcher may look at.
pub const DEFAULT_BODY_SIZE: usize = 1 << 20;
pub const MAX_BODY_SIZE: usize = 10 << 20;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;

use crate::admission::AdmissionGroup;
use crate::bypass::BypassGroup;
use crate::config::Config;
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
    /// A prefix of the HTTP request body, as much as the sniffer read.
    pub body: &'a [u8],
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
    HeaderCmp(String, Compare),
    QueryCmp(String, Compare),
    BodyRegexp(regex::bytes::Regex),
    BodyJson(String, JsonTest),
    /// Matches a target host the named bypass lets through.
    Bypass(Arc<BypassGroup>),
    /// Matches a client the named admission admits.
    Admission(Arc<AdmissionGroup>),
}

/// GOST's numeric comparison (`Header("X-N", "gt", "10")`): values that
/// do not parse as numbers never match.
#[derive(Debug, Clone, Copy)]
struct Compare {
    op: Op,
    value: f64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Compare {
    fn parse(op: &str, value: &str) -> Result<Compare, String> {
        let op = match op {
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            _ => {
                return Err(format!(
                    "unknown comparison operator {op:?} (gt, ge, lt, le, eq, ne)"
                ))
            }
        };
        let value = value
            .parse()
            .map_err(|_| format!("invalid compare value {value:?}: not a number"))?;
        Ok(Compare { op, value })
    }

    fn test(&self, s: &str) -> bool {
        let Ok(f) = s.parse::<f64>() else {
            return false;
        };
        match self.op {
            Op::Gt => f > self.value,
            Op::Ge => f >= self.value,
            Op::Lt => f < self.value,
            Op::Le => f <= self.value,
            Op::Eq => f == self.value,
            Op::Ne => f != self.value,
        }
    }
}

/// What `BodyJSON` checks the value at its path with.
#[derive(Debug)]
enum JsonTest {
    Regexp(Regex),
    Compare(Compare),
}

const NAMES: [&str; 17] = [
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
    "BodyJSON",
    "BodyRegexp",
    "Bypass",
    "Admission",
];

/// GOST accepts a matcher name as written, all lower, all upper, or with
/// only its first letter upper.
fn canonical(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| {
        let lower = n.to_lowercase();
        let mut title = lower.clone();
        title[..1].make_ascii_uppercase();
        name == *n || name == lower || name == n.to_uppercase() || name == title
    })
}

impl Matcher {
    /// Compiles `rule`; the bypasses and admissions it names are looked up
    /// in `root` now, so a missing one is a start-up error.
    pub fn new(rule: &str, root: &Config) -> Result<Matcher, RuleError> {
        let expr = rule::parse(rule).map_err(|source| RuleError::Syntax {
            rule: rule.to_string(),
            source,
        })?;
        let tree = compile(&expr, root).map_err(|msg| RuleError::Matcher {
            rule: rule.to_string(),
            msg,
        })?;
        Ok(Matcher { tree })
    }

    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.tree.eval(req)
    }

    /// Whether the rule looks at the request body, so a sniffer must read
    /// a prefix of it before selecting a node.
    pub fn reads_body(&self) -> bool {
        self.tree.reads_body()
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

fn compile(e: &Expr, root: &Config) -> Result<Tree, String> {
    Ok(match e {
        Expr::Not(x) => Tree::Not(Box::new(compile(x, root)?)),
        Expr::And(a, b) => Tree::And(Box::new(compile(a, root)?), Box::new(compile(b, root)?)),
        Expr::Or(a, b) => Tree::Or(Box::new(compile(a, root)?), Box::new(compile(b, root)?)),
        Expr::Call { name, args } => Tree::Leaf(leaf(name, args, root)?),
    })
}

fn leaf(name: &str, args: &[String], root: &Config) -> Result<Leaf, String> {
    let Some(canon) = canonical(name) else {
        return Err(format!(
            "unknown matcher {name} (known: {})",
            NAMES.join(", ")
        ));
    };
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
            let cmp =
                Compare::parse(&args[1], &args[2]).map_err(|e| format!("matcher {canon}: {e}"))?;
            if canon == "Header" {
                Leaf::HeaderCmp(a0.to_string(), cmp)
            } else {
                Leaf::QueryCmp(a0.to_string(), cmp)
            }
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
        "BodyRegexp" => {
            arity(&[1])?;
            Leaf::BodyRegexp(
                regex::bytes::Regex::new(a0).map_err(|e| format!("matcher {canon}: {e}"))?,
            )
        }
        "BodyJSON" => {
            arity(&[2, 3])?;
            let test = match args.len() {
                3 => JsonTest::Compare(
                    Compare::parse(&args[1], &args[2])
                        .map_err(|e| format!("matcher {canon}: {e}"))?,
                ),
                _ => JsonTest::Regexp(regex(&args[1])?),
            };
            Leaf::BodyJson(a0.to_string(), test)
        }
        "Bypass" => {
            arity(&[1])?;
            let group = crate::bypass::group(root, a0, &[])
                .map_err(|e| format!("matcher {canon}: {e}"))?
                .ok_or_else(|| format!("matcher {canon}: no bypass named"))?;
            if group.has_plugin() {
                return Err(format!(
                    "matcher {canon}: a bypass with a plugin is not supported in routing rules yet"
                ));
            }
            Leaf::Bypass(group)
        }
        "Admission" => {
            arity(&[1])?;
            let group = crate::admission::group(root, a0, &[])
                .map_err(|e| format!("matcher {canon}: {e}"))?
                .ok_or_else(|| format!("matcher {canon}: no admission named"))?;
            if group.has_plugin() {
                return Err(format!(
                    "matcher {canon}: an admission with a plugin is not supported in routing rules yet"
                ));
            }
            Leaf::Admission(group)
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

    fn reads_body(&self) -> bool {
        match self {
            Tree::Leaf(l) => matches!(l, Leaf::BodyRegexp(_) | Leaf::BodyJson(..)),
            Tree::Not(t) => t.reads_body(),
            Tree::And(a, b) | Tree::Or(a, b) => a.reads_body() || b.reads_body(),
        }
    }
}

/// The host without its port, lower-cased, as GOST's `parseHost`.
fn bare_host(host: &str) -> String {
    let h = crate::addr::split_host_port(host)
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
            Leaf::HeaderCmp(k, cmp) => header_values(req, k).any(|x| cmp.test(x)),
            Leaf::QueryCmp(k, cmp) => query_values(req, k).any(|x| cmp.test(&x)),
            Leaf::BodyRegexp(re) => !req.body.is_empty() && re.is_match(req.body),
            Leaf::BodyJson(path, test) => {
                if req.body.is_empty() {
                    return false;
                }
                // A prefix cut mid-character still has its valid start.
                let text = match std::str::from_utf8(req.body) {
                    Ok(t) => t,
                    Err(e) => std::str::from_utf8(&req.body[..e.valid_up_to()]).unwrap_or(""),
                };
                let v = gjson::get(text, path);
                match test {
                    JsonTest::Regexp(re) => re.is_match(v.str()),
                    JsonTest::Compare(cmp) => cmp.test(v.str()),
                }
            }
            Leaf::Bypass(b) => !b.contains("tcp", req.host),
            Leaf::Admission(a) => req.client_ip.is_some_and(|ip| a.admit(ip)),
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
        let m = Matcher::new(
            r#"Host("*.example.com") && !PathPrefix("/admin")"#,
            &Config::default(),
        )
        .unwrap();
        assert!(m.matches(&req("www.example.com:80", "/x")));
        assert!(!m.matches(&req("www.example.com", "/admin/1")));
        assert!(!m.matches(&req("example.org", "/x")));
        let m = Matcher::new(r#"host("a.test") || PATH("/p")"#, &Config::default()).unwrap();
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
            body: b"",
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
            assert!(
                Matcher::new(rule, &Config::default()).unwrap().matches(&r),
                "{rule}"
            );
        }
        for rule in [
            r#"ClientIP("192.168.0.0/16")"#,
            r#"Proto("tls")"#,
            r#"Header("X-Env", "dev")"#,
            r#"Query("c")"#,
        ] {
            assert!(
                !Matcher::new(rule, &Config::default()).unwrap().matches(&r),
                "{rule}"
            );
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
            (
                r#"Header("a", ">", "1")"#,
                "unknown comparison operator \">\"",
            ),
            (r#"Query("a", "gt", "x")"#, "invalid compare value \"x\""),
            (r#"BodyJSON("a")"#, "expected one of [2, 3]"),
            (r#"BodyRegexp("(")"#, "BodyRegexp"),
            (r#"Bypass("nope")"#, "bypass"),
            (r#"Admission("nope")"#, "admission"),
            (r#"Host("a") &&"#, "at byte 12"),
        ] {
            let e = Matcher::new(rule, &Config::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(msg), "{rule}: {e}");
            assert!(e.contains(rule), "{rule}: {e}");
        }
    }

    #[test]
    fn numeric_comparisons() {
        let headers = vec![("X-N".to_string(), "12.5".to_string())];
        let r = Request {
            query: "n=3&n=x",
            headers: &headers,
            ..Default::default()
        };
        let yes = |rule: &str| Matcher::new(rule, &Config::default()).unwrap().matches(&r);
        for rule in [
            r#"Header("x-n", "gt", "12")"#,
            r#"Header("X-N", "le", "12.5")"#,
            r#"Header("X-N", "ne", "1")"#,
            r#"Query("n", "eq", "3")"#,
            r#"Query("n", "ge", "-1e3")"#,
        ] {
            assert!(yes(rule), "{rule}");
        }
        for rule in [
            r#"Header("X-N", "lt", "12.5")"#,
            r#"Header("X-M", "ne", "0")"#,
            r#"Query("n", "gt", "3")"#,
        ] {
            assert!(!yes(rule), "{rule}");
        }
    }

    #[test]
    fn body_matchers() {
        let body = br#"{"user":{"name":"ann","age":41},"tags":["a","b"]}"#;
        let r = Request {
            body,
            ..Default::default()
        };
        let m = |rule: &str| Matcher::new(rule, &Config::default()).unwrap();
        for rule in [
            r#"BodyRegexp(`"name":"ann"`)"#,
            r#"BodyJSON("user.name", "^an")"#,
            r#"BodyJSON("user.age", "gt", "40")"#,
            r#"BodyJSON("tags.1", "^b$")"#,
        ] {
            assert!(m(rule).matches(&r), "{rule}");
            assert!(m(rule).reads_body(), "{rule}");
            assert!(!m(rule).matches(&Request::default()), "{rule}");
        }
        for rule in [
            r#"BodyJSON("user.age", "lt", "40")"#,
            r#"BodyJSON("user.name", "gt", "1")"#,
            r#"BodyJSON("missing", "x")"#,
        ] {
            assert!(!m(rule).matches(&r), "{rule}");
        }
        assert!(!m(r#"Host("a") || !Path("/")"#).reads_body());
        let cut = Request {
            body: "{\"k\":\"é\"".as_bytes().split_last().unwrap().1,
            ..Default::default()
        };
        assert!(!m(r#"BodyJSON("k", "x")"#).matches(&cut));
    }

    #[test]
    fn bypass_and_admission_by_name() {
        use crate::config::{AdmissionConfig, BypassConfig};
        let root = Config {
            bypasses: vec![BypassConfig {
                name: "no-internal".into(),
                matchers: vec!["*.internal".into()],
                ..Default::default()
            }],
            admissions: vec![AdmissionConfig {
                name: "lan".into(),
                whitelist: true,
                matchers: vec!["10.0.0.0/8".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = |rule: &str| Matcher::new(rule, &root).unwrap();
        let r = |host: &'static str, ip: &str| Request {
            host,
            client_ip: Some(ip.parse().unwrap()),
            ..Default::default()
        };
        let bp = m(r#"Bypass("no-internal")"#);
        assert!(bp.matches(&r("example.com:80", "1.1.1.1")));
        assert!(!bp.matches(&r("db.internal:5432", "1.1.1.1")));
        let adm = m(r#"Admission("lan")"#);
        assert!(adm.matches(&r("x", "10.2.3.4")));
        assert!(!adm.matches(&r("x", "192.168.1.1")));
        assert!(!adm.matches(&Request::default()));
        let e = Matcher::new(r#"Bypass("other")"#, &root)
            .unwrap_err()
            .to_string();
        assert!(e.contains("other"), "{e}");
    }

    #[test]
    fn priority_defaults_to_rule_length() {
        assert_eq!(priority(r#"Host("a")"#, 0), 9);
        assert_eq!(priority(r#"Host("a")"#, 5), 5);
        assert_eq!(priority(r#"Host("a")"#, -1), -1);
        assert_eq!(priority("", 0), 0);
    }
}
