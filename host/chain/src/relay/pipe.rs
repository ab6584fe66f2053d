//! Kernel pipes for splice(2): bulk bytes go socket -> pipe -> socket
//! without being copied into user space, which halves the proxy's CPU per
//! byte on a bulk stream.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// 1 MiB (the unprivileged maximum) moves a bulk stream in few syscalls;
/// if the user's pipe quota is used up the kernel's default size is kept.
const PIPE_SIZE: libc::c_int = 1 << 20;
/// Pipes kept per worker thread once returned empty; the rest are closed.
const POOL_KEEP: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A pipe with nothing in it whenever it is in the pool.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub len: usize,
}

impl Pipe {
    /// One from this thread's pool, or a new one.
    pub fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.with(|p| p.borrow_mut().pop()) {
            return Ok(p);
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on a descriptor we own; failure is harmless.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe {
            read,
            write,
            len: 0,
        })
    }

    /// Moves up to `max` bytes from the socket `src` into the pipe.
    pub fn fill(&mut self, src: RawFd, max: usize) -> io::Result<usize> {
        let n = splice(src, self.write.as_raw_fd(), max)?;
        self.len += n;
        Ok(n)
    }

    /// Moves what the pipe holds (or as much as fits) into the socket `dst`.
    pub fn drain(&mut self, dst: RawFd) -> io::Result<usize> {
        let n = splice(self.read.as_raw_fd(), dst, self.len)?;
        self.len -= n;
        Ok(n)
    }

    /// Back to the pool if empty; a pipe still holding bytes (its
    /// connection failed) is closed so they cannot leak into another.
    pub fn give_back(self) {
        if self.len == 0 {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_KEEP {
                    p.push(self);
                }
            });
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call; null offsets make the
    // kernel use (and advance) the sockets' and pipe's own positions.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Pipes waiting in this thread's pool.
#[cfg(test)]
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}
