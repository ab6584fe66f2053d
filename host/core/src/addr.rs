//! Network addresses as GOST writes them: `host:port`, `[ipv6]:port` and
//! `:port`. One parser, Go's `net.SplitHostPort`, for every module.

/// Why an address is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("missing ']' in address")]
    MissingBracket,
    #[error("missing port")]
    MissingPort,
    #[error("unexpected text after ']'")]
    AfterBracket,
    #[error("too many colons (put an IPv6 address in brackets)")]
    TooManyColons,
}

/// Go's `net.SplitHostPort`: `host:port` or `[ipv6]:port`, brackets
/// removed; the host or the port may be empty, the caller decides.
pub fn split_host_port(addr: &str) -> Result<(&str, &str), AddrError> {
    if let Some(rest) = addr.strip_prefix('[') {
        let end = rest.find(']').ok_or(AddrError::MissingBracket)?;
        return match rest[end + 1..].strip_prefix(':') {
            Some(port) => Ok((&rest[..end], port)),
            None if rest.len() == end + 1 => Err(AddrError::MissingPort),
            None => Err(AddrError::AfterBracket),
        };
    }
    match addr.rfind(':') {
        None => Err(AddrError::MissingPort),
        Some(i) if addr[..i].contains(':') => Err(AddrError::TooManyColons),
        Some(i) => Ok((&addr[..i], &addr[i + 1..])),
    }
}

/// The host of `host:port`, or of a bare host (brackets removed), for
/// server names, `Host` headers and filters.
pub fn host_of(addr: &str) -> &str {
    match split_host_port(addr) {
        Ok((host, _)) => host,
        Err(_) => addr
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(addr),
    }
}

/// `host:port` with a numeric port.
pub fn host_and_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = split_host_port(addr).map_err(|e| e.to_string())?;
    let port = port.parse().map_err(|_| "invalid port".to_string())?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_go_does() {
        assert_eq!(split_host_port("a:1"), Ok(("a", "1")));
        assert_eq!(split_host_port(":8080"), Ok(("", "8080")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port("a"), Err(AddrError::MissingPort));
        assert_eq!(split_host_port("[::1]"), Err(AddrError::MissingPort));
        assert_eq!(split_host_port("[::1"), Err(AddrError::MissingBracket));
        assert_eq!(split_host_port("[::1]x"), Err(AddrError::AfterBracket));
        assert_eq!(split_host_port("::1:80"), Err(AddrError::TooManyColons));
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("bare"), "bare");
        assert_eq!(host_and_port("h:80"), Ok(("h", 80)));
        assert!(host_and_port("h:x").is_err());
    }
}
