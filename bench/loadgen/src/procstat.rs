//! CPU time and memory of the proxy under test, read from /proc.
//!
//! Figures cover the whole process tree rooted at the given PID, because
//! socat forks one child per connection: measuring only the parent would
//! make it look free. For haproxy and gost-rs the tree is one process.

use std::collections::HashMap;
use std::fs;

use anyhow::{Context, Result};

/// Fields of /proc/PID/stat we need.
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

/// Parses /proc/PID/stat. The command name is in parentheses and may contain
/// spaces, so fields are counted from the last ')'.
fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = num(11)? + num(12)? + num(13).unwrap_or(0) + num(14).unwrap_or(0);
    Some(Stat { ppid, ticks })
}

/// `pid` and all its live descendants.
fn tree(pid: u32) -> Result<Vec<u32>> {
    anyhow::ensure!(
        fs::metadata(format!("/proc/{pid}")).is_ok(),
        "process {pid} does not exist"
    );
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(p) {
            children.entry(st.ppid).or_default().push(p);
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend_from_slice(c);
        }
        i += 1;
    }
    // Root last: a child that exits and is reaped while the list is being
    // read then still counts, through the root's cutime/cstime.
    out.rotate_left(1);
    Ok(out)
}

/// Number of live processes in the tree (1 for a single-process proxy).
pub fn process_count(pid: u32) -> Result<usize> {
    Ok(tree(pid)?.len())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) used so far by the tree, including children
/// that already exited and were reaped by a member of the tree (cutime and
/// cstime), which is how socat's per-connection children stay counted.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let ticks: u64 = tree(pid)?
        .into_iter()
        .filter_map(read_stat)
        .map(|s| s.ticks)
        .sum();
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Memory of the tree in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// Proportional set size: shared pages divided among their users, so
    /// forked children are not double-counted.
    pub pss_kib: u64,
    /// Resident set size summed over the tree (over-counts shared pages).
    pub rss_kib: u64,
    pub processes: usize,
}

/// Sums `Pss:` and `Rss:` of /proc/PID/smaps_rollup over the tree.
pub fn memory(pid: u32) -> Result<Mem> {
    let mut mem = Mem::default();
    for p in tree(pid)? {
        let Ok(text) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue; // exited meanwhile
        };
        for line in text.lines() {
            let field = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            };
            if let Some(v) = field("Rss:") {
                mem.rss_kib += v;
            } else if let Some(v) = field("Pss:") {
                mem.pss_kib += v;
            }
        }
        mem.processes += 1;
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        let m = memory(me).unwrap();
        assert!(m.rss_kib > 0 && m.pss_kib > 0 && m.processes >= 1);
    }

    #[test]
    fn missing_process_is_an_error() {
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
