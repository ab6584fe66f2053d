//! `loadgen report`: turns the JSON result lines of a run into the
//! markdown table of bench/README.md. Medians, not means: one round that
//! collided with another engineer's compile should not move the figure.

use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::fmt_num;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Files of result lines (lines not starting with '{' are skipped);
    /// "-" reads standard input.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Label of the no-proxy run, for the first ratio column.
    #[arg(long, default_value = "direct")]
    pub baseline: String,
    /// Label of the reference proxy, for the second ratio column.
    #[arg(long, default_value = "haproxy")]
    pub reference: String,
}

/// A row of the table: which field of which test, and its title.
struct Metric {
    test: &'static str,
    field: &'static str,
    title: &'static str,
    /// Field of the record that parametrises the title (e.g. "conns").
    param: Option<(&'static str, &'static str)>,
}

const METRICS: &[Metric] = &[
    Metric {
        test: "bulk",
        field: "mib_per_s",
        title: "Bulk, 1 stream (MiB/s)",
        param: None,
    },
    Metric {
        test: "bulk",
        field: "mib_per_cpu_s",
        title: "Bulk, MiB per proxy CPU-s",
        param: None,
    },
    Metric {
        test: "keepalive",
        field: "rps",
        title: "Keep-alive requests/s",
        param: Some(("conns", "conns")),
    },
    Metric {
        test: "keepalive",
        field: "requests_per_cpu_s",
        title: "Keep-alive requests per proxy CPU-s",
        param: None,
    },
    Metric {
        test: "connrate",
        field: "cps",
        title: "New connections/s",
        param: Some(("concurrency", "workers")),
    },
    Metric {
        test: "connrate",
        field: "conns_per_cpu_s",
        title: "New connections per proxy CPU-s",
        param: None,
    },
    Metric {
        test: "dns",
        field: "qps",
        title: "DNS queries/s, warm cache",
        param: Some(("outstanding", "outstanding")),
    },
    Metric {
        test: "dns",
        field: "queries_per_cpu_s",
        title: "DNS queries per proxy CPU-s",
        param: None,
    },
    Metric {
        test: "idle",
        field: "pss_kib_per_conn",
        title: "Idle connection, PSS KiB/conn",
        param: Some(("conns", "conns")),
    },
    Metric {
        test: "idle",
        field: "rss_kib_per_conn",
        title: "Idle connection, RSS KiB/conn",
        param: None,
    },
];

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn read_records(files: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in files {
        let reader: Box<dyn BufRead> = if f == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(f).with_context(|| format!("open {f}"))?,
            ))
        };
        for line in reader.lines() {
            let line = line?;
            let line = line.trim();
            if !line.starts_with('{') {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("bad result line: {line}"))?;
            if v.get("test").is_some() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

fn ratio(v: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 => format!("{:.2}", v / r),
        _ => "–".to_string(),
    }
}

/// Builds the markdown table (and notes about errors) from result records.
pub fn render(records: &[Value], baseline: &str, reference: &str) -> String {
    let label = |r: &Value| r["label"].as_str().unwrap_or("").to_string();
    let mut systems: Vec<String> = Vec::new();
    for r in records {
        let l = label(r);
        if !systems.contains(&l) {
            systems.push(l);
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "| Metric | System | Median | ÷ {baseline} | ÷ {reference} | Min – max (runs) |\n"
    ));
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for m in METRICS {
        let mut values: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut param = None;
        for r in records.iter().filter(|r| r["test"] == m.test) {
            if let Some(v) = r[m.field].as_f64() {
                if let Some(sys) = systems.iter().find(|s| **s == label(r)) {
                    values.entry(sys.as_str()).or_default().push(v);
                }
                if let Some((field, unit)) = m.param {
                    param.get_or_insert_with(|| format!("{} {unit}", r[field]));
                }
            }
        }
        let medians: HashMap<&str, f64> = values
            .iter_mut()
            .filter_map(|(k, v)| median(v).map(|m| (*k, m)))
            .collect();
        let title = match &param {
            Some(p) => format!("{} ({p})", m.title),
            None => m.title.to_string(),
        };
        for sys in &systems {
            let (Some(med), Some(vals)) = (medians.get(sys.as_str()), values.get(sys.as_str()))
            else {
                continue;
            };
            let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.push_str(&format!(
                "| {title} | {sys} | {} | {} | {} | {} – {} ({}) |\n",
                fmt_num(*med),
                ratio(*med, medians.get(baseline).copied()),
                ratio(*med, medians.get(reference).copied()),
                fmt_num(min),
                fmt_num(max),
                vals.len()
            ));
        }
    }
    let mut notes = Vec::new();
    for r in records {
        let errors = r["errors"].as_u64().unwrap_or(0);
        let short = r["test"] == "idle" && r["opened"].as_u64() < r["conns"].as_u64();
        if errors > 0 || short {
            notes.push(format!(
                "- {} {} round {}: {errors} errors{}{}",
                label(r),
                r["test"].as_str().unwrap_or("?"),
                r["round"],
                if short {
                    format!(", only {} of {} opened", r["opened"], r["conns"])
                } else {
                    String::new()
                },
                r["first_error"]
                    .as_str()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nErrors during the run:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

pub fn run(a: ReportArgs) -> Result<()> {
    let records = read_records(&a.files)?;
    anyhow::ensure!(!records.is_empty(), "no result lines found");
    print!("{}", render(&records, &a.baseline, &a.reference));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn table_has_medians_and_ratios() {
        let recs = vec![
            json!({"test":"keepalive","label":"direct","round":1,"conns":50,"rps":100.0,"errors":0}),
            json!({"test":"keepalive","label":"direct","round":2,"conns":50,"rps":300.0,"errors":0}),
            json!({"test":"keepalive","label":"haproxy","round":1,"conns":50,"rps":100.0,"errors":2}),
            json!({"test":"idle","label":"haproxy","round":1,"conns":10,"opened":9,"errors":1,"pss_kib_per_conn":3.2}),
        ];
        let t = render(&recs, "direct", "haproxy");
        assert!(t.contains("| Keep-alive requests/s (50 conns) | direct | 200 | 1.00 | 2.00 |"));
        assert!(t.contains("| Keep-alive requests/s (50 conns) | haproxy | 100 | 0.50 | 1.00 |"));
        assert!(
            t.contains("| Idle connection, PSS KiB/conn (10 conns) | haproxy | 3.20 | – | 1.00 |")
        );
        assert!(t.contains("only 9 of 10 opened"));
    }
}
