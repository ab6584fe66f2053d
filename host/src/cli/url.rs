//! The subset of Go's `net/url` that GOST's command line relies on.
//!
//! The WHATWG parser of the `url` crate normalises what GOST keeps as
//! typed: it drops default ports (`http://h:80`), lower-cases hosts and
//! refuses host lists (`a:1,b:2`) and port ranges (`:8000-8010`). So the
//! command line is parsed here with Go's rules instead: scheme, optional
//! `user[:password]@`, host, path, query, with Go's percent-decoding.

use std::collections::BTreeMap;

/// A URL the way Go's `url.Parse` splits it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoUrl {
    /// Lower-cased, as Go does.
    pub scheme: String,
    pub user: Option<UserInfo>,
    /// Not decoded and not validated beyond Go's port check.
    pub host: String,
    /// The path in its escaped form (Go's `EscapedPath`).
    pub path: String,
    pub raw_query: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub password: Option<String>,
}

impl GoUrl {
    /// Go's `url.Parse` for URLs of the form `scheme://authority/path?query`.
    pub fn parse(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("invalid control character in URL".into());
        }
        let raw = raw.split_once('#').map(|(u, _)| u).unwrap_or(raw);
        let (scheme, rest) = split_scheme(raw)?;
        let (rest, raw_query) = match rest.split_once('?') {
            Some((r, q)) => (r, q.to_string()),
            None => (rest, String::new()),
        };
        let Some(rest) = rest.strip_prefix("//") else {
            return Err(format!("expected \"{scheme}://\""));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (user, host) = match authority.rfind('@') {
            Some(i) => {
                let info = &authority[..i];
                (Some(parse_userinfo(info)?), &authority[i + 1..])
            }
            None => (None, authority),
        };
        check_host(host)?;
        // Decoding validates the escapes; the escaped form is what GOST uses.
        unescape(path, false)?;
        Ok(GoUrl {
            scheme,
            user,
            host: host.to_string(),
            path: escape_path(path),
            raw_query,
        })
    }

    /// Go's `URL.Hostname()`: the host without port and brackets.
    pub fn hostname(&self) -> &str {
        let mut host = self.host.as_str();
        if let Some(i) = host.rfind(':') {
            if valid_optional_port(&host[i..]) {
                host = &host[..i];
            }
        }
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// Go's `url.Query()` reduced to the first value of each key, as GOST
    /// reads it. Pairs Go would refuse (a `;`, a bad escape) are skipped, as
    /// Go skips them.
    pub fn query(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(k), Ok(v)) = (unescape(k, true), unescape(v, true)) else {
                continue;
            };
            out.entry(k).or_insert(v);
        }
        out
    }
}

/// Go's `getScheme`: letters first, then letters, digits, `+`, `-`, `.`.
fn split_scheme(raw: &str) -> Result<(String, &str), String> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i > 0 => return Ok((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            ':' => return Err("missing protocol scheme".into()),
            _ => return Err(format!("invalid character {c:?} in scheme")),
        }
    }
    Err("missing protocol scheme".into())
}

fn parse_userinfo(info: &str) -> Result<UserInfo, String> {
    let valid = info
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
    if !valid {
        return Err("invalid userinfo".into());
    }
    Ok(match info.split_once(':') {
        Some((u, p)) => UserInfo {
            username: unescape(u, false)?,
            password: Some(unescape(p, false)?),
        },
        None => UserInfo {
            username: unescape(info, false)?,
            password: None,
        },
    })
}

/// Go's `parseHost` checks: a closing bracket for IPv6, and digits only
/// after the last colon.
fn check_host(host: &str) -> Result<(), String> {
    if let Some(rest) = host.strip_prefix('[') {
        let Some(i) = rest.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let port = &rest[i + 1..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port \"{port}\" after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port \"{port}\" after host"));
        }
    }
    if let Some(c) = host.chars().find(|c| c.is_ascii() && !host_char_ok(*c)) {
        return Err(format!("invalid character {c:?} in host name"));
    }
    Ok(())
}

fn host_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"%".contains(c)
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Percent-decoding; `plus_is_space` for query components.
fn unescape(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits exactly: from_str_radix alone would also
                // take a sign ("%+1"), which Go refuses.
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => out.push(b),
                    None => {
                        let end = (i + 3).min(s.len());
                        let bad = s.get(i..end).unwrap_or("%");
                        return Err(format!("invalid URL escape \"{bad}\""));
                    }
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("invalid UTF-8 in \"{s}\""))
}

/// Go's `EscapedPath`: the path as typed when that is a valid encoding,
/// with characters a path may not hold percent-encoded.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        let u = GoUrl::parse("HTTP+tls://us%40er:p%3Ass@[::1]:8080/a:1,b:2?x=1&y=a+b&x=2#frag")
            .unwrap();
        assert_eq!(u.scheme, "http+tls");
        assert_eq!(
            u.user,
            Some(UserInfo {
                username: "us@er".into(),
                password: Some("p:ss".into())
            })
        );
        assert_eq!(u.host, "[::1]:8080");
        assert_eq!(u.hostname(), "::1");
        assert_eq!(u.path, "/a:1,b:2");
        let q = u.query();
        assert_eq!(q["x"], "1");
        assert_eq!(q["y"], "a b");
    }

    #[test]
    fn host_lists_and_ranges_survive() {
        let u = GoUrl::parse("http://a.com:1,b.com:2").unwrap();
        assert_eq!(u.host, "a.com:1,b.com:2");
        assert_eq!(u.hostname(), "a.com:1,b.com");
        let u = GoUrl::parse("http://Example.COM:80").unwrap();
        assert_eq!(u.host, "Example.COM:80");
    }

    #[test]
    fn refuses_what_go_refuses() {
        assert!(GoUrl::parse("http://host:8x")
            .unwrap_err()
            .contains("invalid port"));
        assert!(GoUrl::parse("1http://h:1").is_err());
        assert!(GoUrl::parse("ht tp://h:1").is_err());
        assert!(GoUrl::parse("http://u%zz@h:1")
            .unwrap_err()
            .contains("invalid URL escape"));
        assert!(GoUrl::parse("http://[::1:80").is_err());
        assert!(GoUrl::parse("http://h:1/\u{1}").is_err());
    }

    #[test]
    fn query_skips_bad_pairs() {
        let u = GoUrl::parse("auto://:1?a=1;b=2&c=%zz&d=4&=5&e").unwrap();
        let q = u.query();
        assert_eq!(q.len(), 3, "{q:?}");
        assert_eq!(q["d"], "4");
        assert_eq!(q[""], "5");
        assert_eq!(q["e"], "");
    }

    #[test]
    fn an_escape_is_two_hex_digits() {
        assert!(GoUrl::parse("tcp://:8080/a%+1b").is_err());
        let u = GoUrl::parse("tcp://:8080?k=%+1&j=%41").unwrap();
        assert_eq!(u.query().get("k"), None);
        assert_eq!(u.query().get("j").map(String::as_str), Some("A"));
    }

    /// Mutated service URLs: parsing, the hostname and the query return.
    #[test]
    fn mutated_urls() {
        let corpus: [&[u8]; 4] = [
            b"socks5+tls://u%40x:p%3Ass@[::1]:1080/path%20x?a=1&b=%41+c#frag",
            b"tcp://:8080/127.0.0.1:80,127.0.0.2:80?strategy=round&maxFails=2",
            b"relay+wss://user@example.com:443/p?path=/ws&host=h",
            "http://ü:p@h:1/ö?ä=ö".as_bytes(),
        ];
        for (_, b) in gost_core::test_util::mutations(&corpus, 3000) {
            if let Ok(u) = GoUrl::parse(&String::from_utf8_lossy(&b)) {
                u.hostname();
                u.query();
            }
        }
    }
}
