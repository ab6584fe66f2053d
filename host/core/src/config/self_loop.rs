//! A forwarder node that is the service's own listen address: each
//! connection would dial itself again and again until file descriptors
//! run out. Refused when the config is loaded or changed; loops through
//! other services are cut at run time (`dialer::loops`).

use std::net::IpAddr;

use super::ports::{parse_port_range, split_host_port};

/// Loopback names and addresses count as one host: `localhost` may
/// resolve to either family.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_any(host: &str) -> bool {
    host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether dialing `node` (`host:port`) reaches the service listening on
/// `listen` (`host:port`, the port maybe a range).
pub fn is_own_address(listen: &str, node: &str) -> bool {
    let (Ok((lh, lp)), Ok((nh, np))) = (split_host_port(listen), split_host_port(node)) else {
        return false;
    };
    let (Ok((lo, hi)), Ok(port)) = (parse_port_range(lp), np.parse::<u16>()) else {
        return false;
    };
    if !(lo..=hi).contains(&port) {
        return false;
    }
    let same = |a: &str, b: &str| {
        a.eq_ignore_ascii_case(b)
            || matches!((a.parse::<IpAddr>(), b.parse::<IpAddr>()), (Ok(x), Ok(y)) if x.to_canonical() == y.to_canonical())
    };
    same(lh, nh)
        || (is_any(lh) && (is_any(nh) || is_loopback(nh)))
        || (is_loopback(lh) && (is_any(nh) || nh.eq_ignore_ascii_case("localhost")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_address_in_any_spelling_is_its_own() {
        for (listen, node) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            (":8080", "127.0.0.1:8080"),
            (":8080", "localhost:8080"),
            ("0.0.0.0:8080", "[::1]:8080"),
            ("[::]:8080", ":8080"),
            ("127.0.0.1:8080", "localhost:8080"),
            ("LocalHost:8080", "localhost:8080"),
            ("127.0.0.1:8000-8010", "127.0.0.1:8005"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1:80"),
        ] {
            assert!(is_own_address(listen, node), "{listen} {node}");
        }
        for (listen, node) in [
            ("127.0.0.1:8080", "127.0.0.1:8081"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("127.0.0.1:8000-8010", "127.0.0.1:8011"),
            (":8080", "example.com:8080"),
            ("192.0.2.1:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "nonsense"),
        ] {
            assert!(!is_own_address(listen, node), "{listen} {node}");
        }
    }

    #[test]
    fn validation_refuses_a_forwarder_to_its_own_address_but_not_a_reverse_one() {
        let errors = |listener: &str| {
            let yaml = format!("services:\n- name: s\n  addr: :8080\n  handler: {{type: tcp}}\n  listener: {{type: {listener}}}\n  forwarder:\n    nodes:\n    - {{name: n, addr: \"127.0.0.1:8080\"}}\n");
            let cfg = crate::config::Config::from_yaml_str(&yaml).unwrap().config;
            cfg.validate()
                .err()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            errors("tcp"),
            ["service \"s\": forwarder node \"n\": addr \"127.0.0.1:8080\" is the service's own address; forwarding there would loop"]
        );
        assert!(errors("rtcp").iter().all(|e| !e.contains("own address")));
    }
}
