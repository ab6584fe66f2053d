//! The open-file limit, as Go programs (GOST among them) set it: the Go
//! runtime raises the soft RLIMIT_NOFILE to the hard limit at start-up, so
//! a GOST user never had to run `ulimit -n` before serving thousands of
//! connections, and it gives child processes the original soft limit back
//! (select(2)-based programs break above 1,024). gost-rs does both.

use std::sync::OnceLock;

/// The soft limit the process started with, when [`raise`] changed it.
static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the soft open-file limit to the hard limit; returns the new
/// soft limit, or the error of a kernel that refused.
pub fn raise() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let _ = ORIGINAL.set(lim);
        }
    }
    Ok(lim.rlim_max)
}

/// Makes `cmd` start with the soft limit this process started with.
pub fn restore_for_child(cmd: &mut tokio::process::Command) {
    let Some(&original) = ORIGINAL.get() else {
        return;
    };
    // SAFETY: the closure runs between fork and exec and calls only
    // setrlimit, which is async-signal-safe, on a copied struct.
    unsafe {
        cmd.pre_exec(move || {
            libc::setrlimit(libc::RLIMIT_NOFILE, &original);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    /// Run in a child process of its own (the test binary re-executed),
    /// so the raise does not leak into the other tests' process.
    #[test]
    fn raise_lifts_the_soft_limit_to_the_hard_one_and_children_get_it_back() {
        if std::env::var_os("GOST_NOFILE_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "nofile::tests::raise_lifts_the_soft_limit_to_the_hard_one_and_children_get_it_back",
                    "--nocapture",
                ])
                .env("GOST_NOFILE_CHILD", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            return;
        }
        let soft = |pid: &str| -> String {
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .unwrap()
                .to_string();
            line.split_whitespace().nth(3).unwrap().to_string()
        };
        let lower = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 4096.min(current_hard()),
        };
        // SAFETY: setrlimit with a local struct, in this child process.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lower) }, 0);
        assert_eq!(super::raise().unwrap(), lower.rlim_max);
        assert_eq!(soft("self"), lower.rlim_max.to_string());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.args(["-c", "ulimit -n"]);
            super::restore_for_child(&mut cmd);
            cmd.output().await.unwrap()
        });
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "256");
    }

    fn current_hard() -> u64 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid pointer to a local struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        lim.rlim_max
    }
}
