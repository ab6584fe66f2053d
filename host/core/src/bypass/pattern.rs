//! GOST's address patterns (x/internal/matcher): CIDR, IP range, host
//! with optional port or port range, `.domain` suffix, and wildcards.

use std::net::IpAddr;

use ipnet::IpNet;

use super::rules::{Line, RuleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortRange(u16, u16);

impl PortRange {
    fn parse(s: &str) -> Option<PortRange> {
        match s.split_once('-') {
            Some((a, b)) => Some(PortRange(a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|p| PortRange(p, p)),
        }
    }

    fn contains(&self, port: Option<u16>) -> bool {
        port.is_some_and(|p| self.0 <= p && p <= self.1)
    }
}

#[derive(Debug)]
enum Kind {
    Cidr(IpNet),
    Range(IpAddr, IpAddr),
    /// A host (or `.domain`, which also takes its subdomains) and ports.
    Host(String, Option<PortRange>),
    Wildcard(Vec<Glob>, Option<PortRange>),
}

#[derive(Debug)]
pub struct Pattern {
    kind: Kind,
    /// The rule as written and where, for logs.
    pub line: Line,
}

/// Go's `SplitHostPort` as the matcher uses it: `None` when there is no
/// port to split off (a bare host, or a bare IPv6 address).
fn split_port(s: &str) -> Option<(&str, &str)> {
    crate::addr::split_host_port(s).ok()
}

impl Pattern {
    pub fn parse(line: &Line) -> Result<Pattern, RuleError> {
        let err = |msg: String| RuleError {
            at: line.at.clone(),
            msg,
        };
        let text = line.text.as_str();
        let kind = if text.contains('/') {
            Kind::Cidr(
                text.parse::<IpNet>()
                    .map_err(|_| err(format!("invalid CIDR {text:?}")))?
                    .trunc(),
            )
        } else if let Some((a, b)) = text
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<IpAddr>().ok()?, b.parse::<IpAddr>().ok()?)))
        {
            if a.is_ipv4() != b.is_ipv4() || a > b {
                return Err(err(format!("invalid IP range {text:?}")));
            }
            Kind::Range(a, b)
        } else {
            let (host, ports) = match split_port(text) {
                Some((h, p)) => (
                    h,
                    Some(PortRange::parse(p).ok_or_else(|| err(format!("invalid port {p:?}")))?),
                ),
                None => (text, None),
            };
            let host = host.to_ascii_lowercase();
            if host.contains(['*', '?', '[', '{']) {
                Kind::Wildcard(Glob::parse(&host).map_err(err)?, ports)
            } else {
                Kind::Host(host, ports)
            }
        };
        Ok(Pattern {
            kind,
            line: line.clone(),
        })
    }

    /// Whether `host` (lowercase, no brackets) with `port` matches.
    pub fn matches(&self, host: &str, ip: Option<IpAddr>, port: Option<u16>) -> bool {
        let port_ok = |pr: &Option<PortRange>| pr.is_none_or(|pr| pr.contains(port));
        match &self.kind {
            Kind::Cidr(net) => ip.is_some_and(|ip| net.contains(&ip.to_canonical())),
            Kind::Range(a, b) => ip
                .map(|ip| ip.to_canonical())
                .is_some_and(|ip| *a <= ip && ip <= *b),
            Kind::Host(h, pr) => {
                let hit = match h.strip_prefix('.') {
                    Some(domain) => host == domain || host.ends_with(h.as_str()),
                    None => {
                        host == h || ip.is_some_and(|ip| h.parse::<IpAddr>().is_ok_and(|p| p == ip))
                    }
                };
                hit && port_ok(pr)
            }
            Kind::Wildcard(globs, pr) => globs.iter().any(|g| g.matches(host)) && port_ok(pr),
        }
    }
}

/// Patterns in order; the first that matches is reported.
#[derive(Debug, Default)]
pub struct PatternSet(pub Vec<Pattern>);

impl PatternSet {
    pub fn parse(lines: &[Line]) -> Result<PatternSet, RuleError> {
        lines
            .iter()
            .map(Pattern::parse)
            .collect::<Result<_, _>>()
            .map(PatternSet)
    }

    /// The first pattern matching `addr` (`host:port` or a bare host/IP).
    pub fn find(&self, addr: &str) -> Option<&Pattern> {
        let (host, port) = match split_port(addr) {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (addr, None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.0.iter().find(|p| p.matches(&host, ip, port))
    }
}

/// A shell-style wildcard as GOST's glob library reads it: `*` (any run),
/// `?` (one character), `[abc]`, `[a-z]`, `[!abc]`, and `{a,b}`
/// alternatives (expanded into one glob each, at most
/// [`MAX_EXPANSIONS`]).
#[derive(Debug, Clone)]
pub struct Glob(Vec<Tok>);

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    Any,
    One,
    Class {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
}

/// How many globs one pattern's `{a,b}` groups may expand to. Groups
/// multiply (`{a,b}{c,d}` is four), so a short pattern could otherwise
/// ask for more memory than the machine has; fuzzing found a 250-byte
/// one that did.
pub const MAX_EXPANSIONS: usize = 1024;

impl Glob {
    pub fn parse(pattern: &str) -> Result<Vec<Glob>, String> {
        let count = expansions(pattern);
        if count > MAX_EXPANSIONS {
            return Err(format!(
                "invalid wildcard {pattern:?}: its {{}} alternatives expand to more than {MAX_EXPANSIONS} patterns"
            ));
        }
        expand_braces(pattern)?
            .iter()
            .map(|p| Glob::parse_one(p))
            .collect()
    }

    fn parse_one(p: &str) -> Result<Glob, String> {
        let mut toks = Vec::new();
        let mut chars = p.chars().peekable();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '*' => Tok::Any,
                '?' => Tok::One,
                '[' => {
                    let negate = chars.next_if(|c| *c == '!' || *c == '^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let Some(a) = chars.next() else {
                            return Err(format!("invalid wildcard {p:?}: unclosed '['"));
                        };
                        if a == ']' && !ranges.is_empty() {
                            break;
                        }
                        if chars.next_if_eq(&'-').is_some() {
                            let b = chars
                                .next()
                                .filter(|b| *b != ']')
                                .ok_or_else(|| format!("invalid wildcard {p:?}: bad range"))?;
                            ranges.push((a, b));
                        } else {
                            ranges.push((a, a));
                        }
                    }
                    Tok::Class { negate, ranges }
                }
                c => Tok::Lit(c),
            });
        }
        Ok(Glob(toks))
    }

    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        match_from(&self.0, &s)
    }
}

/// Greedy matching that backtracks only to the last `*`: O(pattern x
/// text), so no pattern can make a lookup slow.
fn match_from(toks: &[Tok], s: &[char]) -> bool {
    let (mut t, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(t) {
            Some(Tok::Any) => {
                star = Some((t, i));
                t += 1;
            }
            Some(tok) if one(tok, s[i]) => {
                t += 1;
                i += 1;
            }
            _ => match star {
                Some((st, si)) => {
                    t = st + 1;
                    i = si + 1;
                    star = Some((st, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[t..].iter().all(|tok| matches!(tok, Tok::Any))
}

fn one(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::One => true,
        Tok::Class { negate, ranges } => ranges.iter().any(|(a, b)| *a <= c && c <= *b) != *negate,
        Tok::Any => false,
    }
}

/// How many patterns `p`'s brace groups expand to (saturating), counted
/// without expanding them; malformed groups count as one, for
/// [`expand_braces`] to refuse.
fn expansions(p: &str) -> usize {
    let mut count: usize = 1;
    let mut rest = p;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|i| open + i) else {
            break;
        };
        count = count.saturating_mul(rest[open + 1..close].split(',').count());
        rest = &rest[close + 1..];
    }
    count
}

/// `a{b,c}d` -> `abd`, `acd`; nested braces are refused.
fn expand_braces(p: &str) -> Result<Vec<String>, String> {
    let Some(open) = p.find('{') else {
        return Ok(vec![p.to_string()]);
    };
    let close = p[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| format!("invalid wildcard {p:?}: unclosed '{{'"))?;
    let inner = &p[open + 1..close];
    if inner.contains('{') {
        return Err(format!("invalid wildcard {p:?}: nested '{{'"));
    }
    let mut out = Vec::new();
    for alt in inner.split(',') {
        out.extend(expand_braces(&format!(
            "{}{alt}{}",
            &p[..open],
            &p[close + 1..]
        ))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[&str]) -> PatternSet {
        let lines: Vec<Line> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Line {
                at: format!("t:{}", i + 1),
                text: r.to_string(),
            })
            .collect();
        PatternSet::parse(&lines).unwrap()
    }

    fn hit(s: &PatternSet, addr: &str) -> Option<String> {
        s.find(addr).map(|p| p.line.text.clone())
    }

    #[test]
    fn ip_cidr_range_and_hosts() {
        let s = set(&[
            "10.0.0.0/8",
            "192.168.1.10-192.168.1.20",
            "example.com",
            ".example.org",
            "api.test:443",
            "svc.local:8000-8100",
            "::1",
        ]);
        assert_eq!(hit(&s, "10.2.3.4:80").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "11.2.3.4:80"), None);
        assert_eq!(
            hit(&s, "192.168.1.15:1").as_deref(),
            Some("192.168.1.10-192.168.1.20")
        );
        assert_eq!(hit(&s, "192.168.1.21:1"), None);
        assert_eq!(hit(&s, "EXAMPLE.com:80").as_deref(), Some("example.com"));
        assert_eq!(hit(&s, "www.example.com:80"), None);
        assert_eq!(hit(&s, "example.org:80").as_deref(), Some(".example.org"));
        assert_eq!(
            hit(&s, "a.b.example.org:80").as_deref(),
            Some(".example.org")
        );
        assert_eq!(hit(&s, "notexample.org:80"), None);
        assert_eq!(hit(&s, "api.test:443").as_deref(), Some("api.test:443"));
        assert_eq!(hit(&s, "api.test:80"), None);
        assert_eq!(
            hit(&s, "svc.local:8050").as_deref(),
            Some("svc.local:8000-8100")
        );
        assert_eq!(hit(&s, "svc.local:8101"), None);
        assert_eq!(hit(&s, "[::1]:22").as_deref(), Some("::1"));
        assert_eq!(
            hit(&s, "[::ffff:10.0.0.1]:22").as_deref(),
            Some("10.0.0.0/8")
        );
    }

    #[test]
    fn wildcards() {
        let s = set(&["*.example.com", "host-?.lan:22", "db[0-9].{x,y}.net"]);
        assert!(hit(&s, "a.example.com:80").is_some());
        assert!(hit(&s, "example.com:80").is_none());
        assert!(hit(&s, "host-1.lan:22").is_some());
        assert!(hit(&s, "host-1.lan:23").is_none());
        assert!(hit(&s, "host-12.lan:22").is_none());
        assert!(hit(&s, "db7.y.net:1").is_some());
        assert!(hit(&s, "dbx.y.net:1").is_none());
        let many = set(&["*a*a*a*a*a*a*a*a*a*a*b"]);
        assert!(hit(&many, &format!("{}:1", "a".repeat(200))).is_none());
        assert!(hit(&many, &format!("{}b:1", "a".repeat(200))).is_some());
    }

    /// Brace groups multiply; past the cap the pattern is refused by name
    /// instead of expanded (fuzzing found a short one that ran out of
    /// memory).
    #[test]
    fn brace_expansion_is_capped() {
        let groups = |n: usize| "{a,b}".repeat(n) + ".test";
        assert_eq!(Glob::parse(&groups(10)).unwrap().len(), 1024);
        let e = Glob::parse(&groups(11)).unwrap_err();
        assert!(e.contains("more than 1024 patterns"), "{e}");
        let e = Glob::parse(&"{a,b,c,d,e,f,g,h,i,j}".repeat(40)).unwrap_err();
        assert!(e.contains("more than 1024"), "{e}");
    }

    #[test]
    fn bad_patterns_are_named_with_their_line() {
        for (rule, want) in [
            ("10.0.0.0/33", "invalid CIDR"),
            ("300.1.1.1/8", "invalid CIDR"),
            ("10.0.0.9-10.0.0.1", "invalid IP range"),
            ("host:http", "invalid port"),
            ("a[b", "unclosed '['"),
            ("a{b", "unclosed '{'"),
        ] {
            let line = Line {
                at: "rules.txt:3".into(),
                text: rule.into(),
            };
            let e = Pattern::parse(&line).unwrap_err().to_string();
            assert!(
                e.starts_with("rules.txt:3: ") && e.contains(want),
                "{rule}: {e}"
            );
        }
    }
}
