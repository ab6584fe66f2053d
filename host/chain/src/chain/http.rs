//! GOST's node `http` settings that a sniffed HTTP request is rewritten
//! with on its way to the node (`host`, `requestHeader`, `rewriteURL`)
//! and its response on the way back (`responseHeader`). `failCodes`
//! lives in [`super::failcodes`]; the body rewrites and `auth` are
//! refused by the router's check.

use gost_core::config::HTTPNodeConfig;

/// One `rewriteURL` rule: the first rule whose pattern matches the path
/// and gives a non-empty result rewrites it.
#[derive(Debug)]
pub struct UrlRewrite {
    pub pattern: regex::Regex,
    /// Go's `$1`/`${name}` expansion, which the `regex` crate shares.
    pub replacement: String,
}

#[derive(Debug, Default)]
pub struct NodeHttp {
    /// Replaces the request's `Host` when not empty.
    pub host: String,
    /// Set on the request; an empty value removes the field.
    pub request_header: Vec<(String, String)>,
    /// Set on the response.
    pub response_header: Vec<(String, String)>,
    pub rewrite_url: Vec<UrlRewrite>,
}

/// A `rewriteURL` pattern that is not a regular expression. GOST skips
/// such a rule; here it is a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("http.rewriteURL: {pattern:?} is not a regular expression: {source}")]
pub struct RewriteError {
    pattern: String,
    source: regex::Error,
}

impl NodeHttp {
    /// The settings a config asks for; `None` when it asks for none of
    /// them. As in GOST, `requestHeader` replaces the deprecated `header`
    /// and `rewriteURL` the deprecated `rewrite` when set.
    pub fn from_config(cfg: &HTTPNodeConfig) -> Result<Option<NodeHttp>, RewriteError> {
        let request_header = if cfg.request_header.is_empty() {
            &cfg.header
        } else {
            &cfg.request_header
        };
        let rules = if cfg.rewrite_url.is_empty() {
            &cfg.rewrite
        } else {
            &cfg.rewrite_url
        };
        let rewrite_url = rules
            .iter()
            .map(|r| {
                regex::Regex::new(&r.r#match)
                    .map(|pattern| UrlRewrite {
                        pattern,
                        replacement: r.replacement.clone(),
                    })
                    .map_err(|source| RewriteError {
                        pattern: gost_core::escape::esc(&r.r#match).to_string(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let http = NodeHttp {
            host: cfg.host.trim().to_string(),
            request_header: pairs(request_header),
            response_header: pairs(&cfg.response_header),
            rewrite_url,
        };
        let none = http.host.is_empty()
            && http.request_header.is_empty()
            && http.response_header.is_empty()
            && http.rewrite_url.is_empty();
        Ok((!none).then_some(http))
    }

    /// The path (and query, when the replacement has a `?`) the first
    /// matching rule makes of `path`; `None` when no rule rewrites it.
    pub fn rewrite(&self, path: &str) -> Option<(String, Option<String>)> {
        self.rewrite_url.iter().find_map(|r| {
            if !r.pattern.is_match(path) {
                return None;
            }
            let s = r.pattern.replace_all(path, r.replacement.as_str());
            if s.is_empty() {
                return None;
            }
            Some(match s.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (s.into_owned(), None),
            })
        })
    }
}

fn pairs(m: &gost_core::config::StringMap) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_core::config::HTTPURLRewriteConfig;

    fn rule(m: &str, r: &str) -> HTTPURLRewriteConfig {
        HTTPURLRewriteConfig {
            r#match: m.into(),
            replacement: r.into(),
        }
    }

    #[test]
    fn rewrite_rules_as_gost_applies_them() {
        let cfg = HTTPNodeConfig {
            rewrite_url: vec![
                rule("^/none$", ""),
                rule("^/api/(.*)$", "/v2/$1"),
                rule("^/q$", "/search?x=1"),
            ],
            rewrite: vec![rule(".*", "/ignored")],
            ..Default::default()
        };
        let h = NodeHttp::from_config(&cfg).unwrap().unwrap();
        assert_eq!(h.rewrite("/api/users"), Some(("/v2/users".into(), None)));
        assert_eq!(
            h.rewrite("/q"),
            Some(("/search".into(), Some("x=1".into())))
        );
        assert_eq!(h.rewrite("/none"), None);
        assert_eq!(h.rewrite("/other"), None);
        // The deprecated names stand in when the new ones are empty.
        let old = HTTPNodeConfig {
            rewrite: vec![rule("^/a", "/b")],
            header: [("X-A".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let h = NodeHttp::from_config(&old).unwrap().unwrap();
        assert_eq!(h.rewrite("/a"), Some(("/b".into(), None)));
        assert_eq!(h.request_header, vec![("X-A".into(), "1".into())]);
        assert!(NodeHttp::from_config(&Default::default())
            .unwrap()
            .is_none());
        let bad = HTTPNodeConfig {
            rewrite_url: vec![rule("(", "/x")],
            ..Default::default()
        };
        assert!(NodeHttp::from_config(&bad).is_err());
    }
}
