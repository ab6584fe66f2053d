//! Caps on config input, checked before a parser sees it: `-C /dev/zero`
//! would otherwise grow without bound, and YAML nested 100,000 deep takes
//! the YAML library a minute to refuse.

use std::io::Read;

use super::ConfigError;

/// The largest config document read from a file or standard input, or
/// parsed from any source (a config with thousands of services is a few
/// hundred KiB).
pub const MAX_CONFIG_BYTES: usize = 16 << 20;

/// The deepest nesting of maps and lists accepted, as serde_json's own
/// limit; GOST's schema nests less than 10 deep.
pub const MAX_CONFIG_DEPTH: usize = 128;

/// Reads all of `r` as text, refusing more than [`MAX_CONFIG_BYTES`].
pub fn read_capped(r: impl Read, origin: &str) -> Result<String, ConfigError> {
    let mut buf = Vec::new();
    r.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ConfigError::Read {
            origin: origin.to_string(),
            source,
        })?;
    check_size(buf.len(), origin)?;
    String::from_utf8(buf).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        msg: format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
    })
}

fn check_size(len: usize, origin: &str) -> Result<(), ConfigError> {
    if len > MAX_CONFIG_BYTES {
        return Err(ConfigError::Parse {
            origin: origin.to_string(),
            msg: format!(
                "larger than the config size limit of {} MiB",
                MAX_CONFIG_BYTES >> 20
            ),
        });
    }
    Ok(())
}

/// Refuses a document too large or nested deeper than
/// [`MAX_CONFIG_DEPTH`], by an upper bound on its depth that needs no
/// parser: the open flow brackets (`[`, `{` outside quotes and comments)
/// plus, for block style, the indentation levels open at a line and the
/// compact `- ` entries that start it. Real documents stay far below the
/// limit by either count.
pub fn check(text: &str, origin: &str) -> Result<(), ConfigError> {
    check_size(text.len(), origin)?;
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut rest = body;
        let mut dashes = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        let too_deep = || ConfigError::Parse {
            origin: origin.to_string(),
            msg: format!(
                "line {}: nested deeper than the config depth limit of {MAX_CONFIG_DEPTH}",
                n + 1
            ),
        };
        let block = indents.len() + dashes;
        if block + flow > MAX_CONFIG_DEPTH {
            return Err(too_deep());
        }
        let mut quote = None;
        let mut prev = ' ';
        for c in rest.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if prev == ' ' => break,
                (None, '[' | '{') => {
                    flow += 1;
                    // Checked as it opens: a whole document may sit on one
                    // line and close every bracket by its end.
                    if block + flow > MAX_CONFIG_DEPTH {
                        return Err(too_deep());
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn depth_error(text: &str) -> String {
        check(text, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn deep_flow_block_and_compact_nesting_is_refused_quickly() {
        let start = Instant::now();
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(depth_error(&flow).contains("depth limit of 128"));
        let json = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(depth_error(&json).contains("line 1"));
        let block: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(
            depth_error(&block).contains("line 129"),
            "{}",
            depth_error(&block)
        );
        let compact = format!("{}x\n", "- ".repeat(200));
        assert!(depth_error(&compact).contains("depth limit"));
        assert!(start.elapsed() < Duration::from_secs(2));
        // And through the parser's entry point, JSON and YAML alike.
        let e = crate::config::Config::from_yaml_str(&flow).unwrap_err();
        assert!(e.to_string().contains("depth limit"), "{e}");
        let e = crate::config::Config::from_json_str(&json).unwrap_err();
        assert!(e.to_string().contains("depth limit"), "{e}");
    }

    #[test]
    fn ordinary_documents_pass() {
        let yaml = "services:\n- name: a # [ not a bracket\n  addr: \":8080\"\n  handler:\n    type: http\n    metadata: {a: [1, 2, {b: \"]]]\"}]}\n  listener:\n    type: tcp\nchains:\n- name: c\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: 1.2.3.4:80\n      connector:\n        type: socks5\n";
        check(yaml, "t").unwrap();
        crate::config::Config::from_yaml_str(yaml).unwrap();
        let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        check(&nested, "t").unwrap();
    }

    #[test]
    fn reading_stops_at_the_size_limit() {
        let e = read_capped(std::io::repeat(b' '), "/dev/zero").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero: larger than the config size limit of 16 MiB"
        );
        let e = read_capped(&b"a: \xff"[..], "x.yaml").unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        assert_eq!(read_capped(&b"a: 1"[..], "x").unwrap(), "a: 1");
    }
}
