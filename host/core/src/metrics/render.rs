//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `#
//! TYPE`, then one line per series, labels sorted by name as GOST's Go
//! client writes them.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::*;

/// `states`: the state of each running service, for the service gauges.
pub fn render(m: &Metrics, states: &[&str]) -> String {
    let mut out = String::new();
    let host = m.host();

    header(&mut out, SERVICES, "gauge", "Current number of services");
    // GOST counts a service from the start of its serve loop to its end.
    let live = states.iter().filter(|s| **s != "closed").count();
    series(&mut out, SERVICES, &[("host", host)], live as f64);

    header(
        &mut out,
        SERVICE_STATUS,
        "gauge",
        "Number of services in each state",
    );
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    for (state, n) in counts {
        series(
            &mut out,
            SERVICE_STATUS,
            &[("host", host), ("state", state)],
            n as f64,
        );
    }

    let clients = m.client_series();
    type Pick = fn(&crate::config::ServiceStats) -> u64;
    let families: [(&str, &str, &str, Pick); 5] = [
        (REQUESTS, "counter", "Total number of requests", |s| {
            s.total_conns
        }),
        (IN_FLIGHT, "gauge", "Current in-flight requests", |s| {
            s.current_conns
        }),
        (
            INPUT_BYTES,
            "counter",
            "Total service input data transfer size in bytes",
            |s| s.input_bytes,
        ),
        (
            OUTPUT_BYTES,
            "counter",
            "Total service output data transfer size in bytes",
            |s| s.output_bytes,
        ),
        (
            HANDLER_ERRORS,
            "counter",
            "Total service handler errors",
            |s| s.total_errs,
        ),
    ];
    let snaps: Vec<_> = clients
        .iter()
        .map(|((svc, ip), st)| (svc.clone(), ip.to_string(), st.snapshot()))
        .collect();
    for (name, kind, help, pick) in families {
        header(&mut out, name, kind, help);
        for (svc, ip, snap) in &snaps {
            series(
                &mut out,
                name,
                &[("client", ip), ("host", host), ("service", svc)],
                pick(snap) as f64,
            );
        }
    }

    header(
        &mut out,
        DURATION,
        "histogram",
        "Distribution of request latencies",
    );
    for (svc, h) in m.duration_series() {
        histogram(&mut out, DURATION, &[("host", host), ("service", &svc)], &h);
    }

    let nodes = m.chain_node_series();
    header(&mut out, CHAIN_ERRORS, "counter", "Total chain errors");
    for ((chain, node), s) in &nodes {
        let errors = s.errors.load(std::sync::atomic::Ordering::Relaxed);
        series(
            &mut out,
            CHAIN_ERRORS,
            &[("chain", chain), ("host", host), ("node", node)],
            errors as f64,
        );
    }
    header(
        &mut out,
        NODE_CONNECT_DURATION,
        "histogram",
        "Distribution of chain node connect latencies",
    );
    for ((chain, node), s) in &nodes {
        histogram(
            &mut out,
            NODE_CONNECT_DURATION,
            &[("chain", chain), ("host", host), ("node", node)],
            &s.connect,
        );
    }
    out
}

/// A histogram's `_bucket` series (with `le` last), `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let snap = h.snapshot();
    let bucket = format!("{name}_bucket");
    let les = snap
        .buckets
        .iter()
        .map(|(le, n)| (le.to_string(), *n))
        .chain([("+Inf".to_string(), snap.count)]);
    for (le, n) in les {
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        series(out, &bucket, &with_le, n as f64);
    }
    series(out, &format!("{name}_sum"), labels, snap.sum_seconds);
    series(out, &format!("{name}_count"), labels, snap.count as f64);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn series(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    let _ = writeln!(out, "}} {value}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_gost_names_and_labels() {
        let m = Metrics::new("h\"1".into());
        let svc: Arc<str> = "web".into();
        let c = m.client(&svc, "::ffff:127.0.0.1".parse().unwrap());
        {
            let _g = c.open_conn();
            c.add_input(10);
            c.add_output(20);
        }
        m.request_duration(&svc).observe(Duration::from_millis(20));
        let node = m.chain_node("c", "n");
        node.add_error();
        node.observe_connect(Duration::from_millis(30));
        let text = render(&m, &["ready"]);
        for line in [
            "gost_services{host=\"h\\\"1\"} 1",
            "gost_service_status{host=\"h\\\"1\",state=\"ready\"} 1",
            "gost_service_requests_total{client=\"127.0.0.1\",host=\"h\\\"1\",service=\"web\"} 1",
            "gost_service_requests_in_flight{client=\"127.0.0.1\",host=\"h\\\"1\",service=\"web\"} 0",
            "gost_service_transfer_input_bytes_total{client=\"127.0.0.1\",host=\"h\\\"1\",service=\"web\"} 10",
            "gost_service_transfer_output_bytes_total{client=\"127.0.0.1\",host=\"h\\\"1\",service=\"web\"} 20",
            "gost_service_request_duration_seconds_bucket{host=\"h\\\"1\",service=\"web\",le=\"0.025\"} 1",
            "gost_service_request_duration_seconds_bucket{host=\"h\\\"1\",service=\"web\",le=\"0.01\"} 0",
            "gost_service_request_duration_seconds_count{host=\"h\\\"1\",service=\"web\"} 1",
            "# TYPE gost_service_handler_errors_total counter",
            "gost_chain_errors_total{chain=\"c\",host=\"h\\\"1\",node=\"n\"} 1",
            "gost_chain_node_connect_duration_seconds_bucket{chain=\"c\",host=\"h\\\"1\",node=\"n\",le=\"0.01\"} 0",
            "gost_chain_node_connect_duration_seconds_bucket{chain=\"c\",host=\"h\\\"1\",node=\"n\",le=\"0.05\"} 1",
            "gost_chain_node_connect_duration_seconds_count{chain=\"c\",host=\"h\\\"1\",node=\"n\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
