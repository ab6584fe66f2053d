//! `host:port` as config addresses write it, the port maybe a range,
//! with errors as text for validation messages.

/// Go's `net.SplitHostPort` (see [`crate::addr`]), with its error as text.
pub fn split_host_port(addr: &str) -> Result<(&str, &str), String> {
    crate::addr::split_host_port(addr).map_err(|e| e.to_string())
}

/// A port (`8080`) or a range (`8000-8010`), as GOST's `PortRange`, but
/// refusing what GOST silently turns into port 0.
pub fn parse_port_range(port: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        if p.is_empty() {
            return Err("missing port".into());
        }
        match p.parse::<u32>() {
            Ok(n) => u16::try_from(n).map_err(|_| format!("invalid port {p} (0-65535)")),
            Err(_) => Err(format!("invalid port \"{p}\"")),
        }
    };
    match port.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (one(lo)?, one(hi)?);
            if lo > hi {
                return Err(format!("invalid port range {port}"));
            }
            Ok((lo, hi))
        }
        None => one(port).map(|p| (p, p)),
    }
}

/// Why an address is not `[host]:port` (the port may be a range).
pub fn check_host_port(addr: &str) -> Result<(), String> {
    let (_, port) = split_host_port(addr)?;
    parse_port_range(port).map(|_| ())
}
