//! `loadgen`: target servers, load generators and the report for the
//! benchmarks in bench/ (forward.sh, proxy.sh, chain.sh, tls.sh, ws.sh).
//! See bench/README.md.
//!
//! Everything runs on a current-thread tokio runtime by default: the script
//! pins the load generator and the target server to one core, where a
//! multi-thread runtime would only add wake-up and stealing overhead.

mod client;
mod http;
mod procstat;
mod proxy;
mod report;
mod server;
mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the gost-rs forwarding benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a target server (echo, http, sink or source).
    Server(ServerArgs),
    /// One stream: upload to a sink (or download from a source); MiB/s.
    Bulk(client::BulkArgs),
    /// HTTP requests back to back on C kept-alive connections; requests/s.
    Keepalive(client::KeepaliveArgs),
    /// One new TCP connection per request; connections/s.
    Connrate(client::ConnrateArgs),
    /// Open N forwarded connections, print "ready", hold them idle.
    Idle(client::IdleArgs),
    /// Print free loopback TCP port(s) outside the ephemeral range.
    Freeport(FreeportArgs),
    /// Wait until something accepts connections on an address.
    Waitport(WaitportArgs),
    /// Print CPU time and memory of a process tree as JSON.
    Procstat(ProcstatArgs),
    /// Markdown table of medians and ratios from result lines.
    Report(report::ReportArgs),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// Address to listen on, e.g. 127.0.0.1:9000.
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, value_enum)]
    mode: server::Mode,
    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Worker threads; 1 means a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit after this many seconds even if nobody stops the server, so a
    /// crashed benchmark script never leaves it running for good.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
    /// Fixed SO_RCVBUF for accepted connections, in bytes (the kernel
    /// doubles it). Unset, the kernel autotunes the receive window, which
    /// on a machine with a large `tcp_rmem` maximum lets a sink that shares
    /// its core with the client build a queue of tens of MiB.
    #[arg(long)]
    rcvbuf: Option<u32>,
}

#[derive(clap::Args, Debug)]
struct FreeportArgs {
    /// How many distinct ports to print, one a line.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[derive(clap::Args, Debug)]
struct WaitportArgs {
    #[arg(long)]
    target: SocketAddr,
    /// Give up (exit status 1) after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(clap::Args, Debug)]
struct ProcstatArgs {
    #[arg(long)]
    pid: u32,
}

/// Human formatting: thousands separators for big numbers, a few decimals
/// for small ones (KiB per connection).
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() < 10.0 {
        return format!("{v:.2}");
    }
    if v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// The lowest ephemeral port: listeners are placed below it, so the ~28k
/// client ports that `connrate` churns through never collide with them.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn freeport(a: FreeportArgs) -> Result<()> {
    let high = ephemeral_low().max(12_000);
    let low = 10_000u16;
    let span = u32::from(high - low);
    // A cheap random start so parallel runs do not race for the same port.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut held = Vec::new();
    for i in 0..span {
        if held.len() == a.count {
            break;
        }
        let port = low + ((seed.wrapping_add(i)) % span) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            println!("{port}");
        }
    }
    anyhow::ensure!(held.len() == a.count, "not enough free ports");
    Ok(())
}

fn waitport(a: WaitportArgs) -> Result<()> {
    let bound = Duration::try_from_secs_f64(a.timeout).context("bad --timeout")?;
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&a.target, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() >= bound => {
                anyhow::bail!("{} not accepting after {:.1} s: {e}", a.target, a.timeout)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Server(a) => runtime(a.threads)?.block_on(server::run(
            a.listen,
            a.mode,
            a.backlog,
            a.max_seconds,
            a.rcvbuf,
        )),
        Cmd::Bulk(a) => runtime(1)?.block_on(client::bulk(a)),
        Cmd::Keepalive(a) => runtime(1)?.block_on(client::keepalive(a)),
        Cmd::Connrate(a) => runtime(1)?.block_on(client::connrate(a)),
        Cmd::Idle(a) => runtime(1)?.block_on(client::idle(a)),
        Cmd::Freeport(a) => freeport(a),
        Cmd::Waitport(a) => waitport(a),
        Cmd::Procstat(a) => {
            let mem = procstat::memory(a.pid)?;
            let cpu = procstat::cpu_seconds(a.pid)?;
            println!(
                "{}",
                serde_json::json!({
                    "pid": a.pid, "cpu_s": cpu, "pss_kib": mem.pss_kib,
                    "rss_kib": mem.rss_kib, "processes": mem.processes,
                })
            );
            Ok(())
        }
        Cmd::Report(a) => report::run(a),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1695.4), "1,695");
        assert_eq!(fmt_num(75_000.0), "75,000");
        assert_eq!(fmt_num(3.2), "3.20");
        assert_eq!(fmt_num(60.04), "60.0");
        assert_eq!(fmt_num(-1234567.0), "-1,234,567");
    }
}
