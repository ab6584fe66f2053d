//! The `--` split: each group of arguments runs as a child process of the
//! same binary, as in GOST (`_GOST_ID=<index>` in the child's environment).

use std::process::ExitCode;

use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Runs one child per group and waits for all. SIGINT and SIGTERM are passed
/// on to every child. When a child fails, the others are stopped too and the
/// parent exits with the failed child's code; GOST exits at once and leaves
/// the other children running, orphaned.
pub async fn run(groups: Vec<Vec<String>>) -> anyhow::Result<ExitCode> {
    // Before any child exists, so a signal sent as soon as one serves is
    // forwarded instead of killing the parent by the default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let exe = std::env::current_exe()?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut pids: Vec<Option<u32>> = Vec::with_capacity(groups.len());
    for (id, args) in groups.iter().enumerate() {
        let spawned = Command::new(&exe)
            .args(args)
            .env("_GOST_ID", id.to_string())
            // Own process group: a terminal's Ctrl-C then reaches only the
            // parent, which forwards it once.
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                signal_all(&pids, libc::SIGTERM);
                anyhow::bail!(
                    "cannot start process for group {id} ({}): {e}",
                    args.join(" ")
                );
            }
        };
        pids.push(child.id());
        let tx = done_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((id, child.wait().await));
        });
    }
    drop(done_tx);

    let mut code: u8 = 0;
    loop {
        tokio::select! {
            done = done_rx.recv() => {
                let Some((id, status)) = done else { break };
                pids[id] = None;
                let failed_code = match status {
                    Ok(s) if s.success() => continue,
                    Ok(s) => {
                        tracing::error!(group = id, status = %s, "child process failed");
                        s.code().map(|c| c.clamp(1, 255) as u8).unwrap_or(1)
                    }
                    Err(e) => {
                        tracing::error!(group = id, error = %e, "waiting for child process");
                        1
                    }
                };
                if code == 0 {
                    code = failed_code;
                    signal_all(&pids, libc::SIGTERM);
                }
            }
            _ = sigint.recv() => signal_all(&pids, libc::SIGINT),
            _ = sigterm.recv() => signal_all(&pids, libc::SIGTERM),
        }
    }
    Ok(ExitCode::from(code))
}

fn signal_all(pids: &[Option<u32>], sig: i32) {
    for pid in pids.iter().flatten() {
        // SAFETY: kill(2) has no memory effects. The pid is a child of ours
        // whose exit we have not yet processed; only in the instant between
        // its reaping and our processing could the pid be reused.
        unsafe {
            libc::kill(*pid as i32, sig);
        }
    }
}
