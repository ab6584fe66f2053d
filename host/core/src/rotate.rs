//! A file that rotates by size, with lumberjack's rules (the library
//! GOST uses for `log.rotation` and a file recorder's `rotation`): when a write would take the file past
//! `maxSize` megabytes, it is renamed to `<name>-<time>.<ext>` and a new
//! one is started; then backups beyond `maxBackups` (0: all kept) or older
//! than `maxAge` days (0: kept) are removed, oldest first; with `compress`,
//! the remaining backups are gzipped to `<backup>.gz` in the background.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// lumberjack's default when `maxSize` is 0.
pub const DEFAULT_MAX_SIZE_MB: u64 = 100;

const GZ: &str = ".gz";

#[derive(Debug, Clone)]
pub struct Rotation {
    pub max_size: u64,
    pub max_backups: usize,
    pub max_age: Option<Duration>,
    pub local_time: bool,
    pub compress: bool,
}

impl Rotation {
    /// lumberjack's options: sizes in megabytes, ages in days, 0 (or
    /// less) for "no limit" (size: 100 MB).
    pub fn from_config(r: &crate::config::LogRotationConfig) -> Self {
        let mb = u64::try_from(r.max_size)
            .ok()
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MAX_SIZE_MB);
        Rotation {
            max_size: mb.saturating_mul(1024 * 1024),
            max_backups: usize::try_from(r.max_backups).unwrap_or(0),
            max_age: u64::try_from(r.max_age)
                .ok()
                .filter(|d| *d > 0)
                .map(|d| Duration::from_secs(d * 24 * 3600)),
            local_time: r.local_time,
            compress: r.compress,
        }
    }
}

pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
    backups: Backups,
    /// Wakes the thread that gzips backups (with `compress`); it ends when
    /// the file is dropped.
    compressor: Option<mpsc::Sender<()>>,
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        let backups = Backups::of(path);
        let compressor = if rotation.compress {
            let tx = spawn_compressor(backups.clone())?;
            // Backups an earlier run left uncompressed, as lumberjack does
            // on open.
            let _ = tx.send(());
            Some(tx)
        } else {
            None
        };
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
            backups,
            compressor,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let stamp = timestamp(SystemTime::now(), self.rotation.local_time);
        std::fs::rename(&self.path, self.backups.name(&stamp))?;
        self.file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.path)?;
        self.size = 0;
        self.remove_old_backups();
        if let Some(tx) = &self.compressor {
            let _ = tx.send(());
        }
        Ok(())
    }

    #[cfg(test)]
    fn backups(&self) -> Vec<PathBuf> {
        self.backups.list().into_iter().map(|(_, p)| p).collect()
    }

    fn remove_old_backups(&self) {
        let cutoff = self
            .rotation
            .max_age
            .and_then(|age| SystemTime::now().checked_sub(age));
        // A backup being compressed has two files; it counts once.
        let mut kept: Vec<String> = Vec::new();
        for (stamp, path) in self.backups.list() {
            if kept.last() != Some(&stamp) {
                kept.push(stamp);
            }
            let too_many = self.rotation.max_backups > 0 && kept.len() > self.rotation.max_backups;
            let too_old = cutoff.is_some_and(|c| {
                std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < c)
            });
            if too_many || too_old {
                if let Err(e) = std::fs::remove_file(&path) {
                    eprintln!("gost: cannot remove old log {}: {e}", path.display());
                }
            }
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if self.size > 0 && self.size + len > self.rotation.max_size {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Where a log file's backups live and how they are named:
/// `dir/name-2006-01-02T15-04-05.000.ext`, lumberjack's layout, plus `.gz`
/// once compressed.
#[derive(Debug, Clone)]
struct Backups {
    dir: PathBuf,
    prefix: String,
    ext: String,
}

impl Backups {
    fn of(path: &Path) -> Backups {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name, String::new()),
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Backups {
            dir,
            prefix: format!("{stem}-"),
            ext,
        }
    }

    fn name(&self, stamp: &str) -> PathBuf {
        self.dir.join(format!("{}{stamp}{}", self.prefix, self.ext))
    }

    /// Every backup file with its time stamp, newest first.
    fn list(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(&self.prefix)?;
                let rest = rest.strip_suffix(GZ).unwrap_or(rest);
                let stamp = rest.strip_suffix(&self.ext)?;
                // 2006-01-02T15-04-05.000
                (stamp.len() == 23 && stamp.as_bytes()[10] == b'T')
                    .then(|| (stamp.to_string(), e.path()))
            })
            .collect();
        found.sort_by(|a, b| b.cmp(a));
        found
    }
}

/// The thread that gzips backups, so a rotation never makes the logging
/// caller wait for compression.
fn spawn_compressor(backups: Backups) -> io::Result<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("gost-log-gzip".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                let plain = backups
                    .list()
                    .into_iter()
                    .filter(|(_, p)| !p.to_string_lossy().ends_with(GZ));
                for (_, path) in plain {
                    if let Err(e) = gzip(&path) {
                        eprintln!("gost: cannot compress old log {}: {e}", path.display());
                    }
                }
            }
        })?;
    Ok(tx)
}

/// Writes `path.gz` with `path`'s permissions, then removes `path`; on
/// failure the partial `.gz` goes and `path` stays.
fn gzip(path: &Path) -> io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(GZ);
    let gz_path = PathBuf::from(gz_name);
    let written = (|| {
        let mut src = File::open(path)?;
        let perms = src.metadata()?.permissions();
        let dst = File::create(&gz_path)?;
        dst.set_permissions(perms)?;
        let mut enc = flate2::write::GzEncoder::new(dst, flate2::Compression::default());
        io::copy(&mut src, &mut enc)?;
        enc.finish()?.sync_all()
    })();
    match written {
        Ok(()) => std::fs::remove_file(path),
        Err(e) => {
            let _ = std::fs::remove_file(&gz_path);
            Err(e)
        }
    }
}

/// The calendar fields of `t`, in UTC or local time.
fn civil(t: SystemTime, local: bool) -> (libc::tm, Duration) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value; gmtime_r/localtime_r fill
    // it from `secs` and touch nothing else.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        if local {
            libc::localtime_r(&secs, &mut tm);
        } else {
            libc::gmtime_r(&secs, &mut tm);
        }
    }
    (tm, d)
}

/// `2006-01-02T15:04:05.000000Z`, for log lines.
pub fn rfc3339(t: SystemTime) -> String {
    let (tm, d) = civil(t, false);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_micros()
    )
}

/// `2006-01-02T15-04-05.000` in UTC or local time.
fn timestamp(t: SystemTime, local: bool) -> String {
    let (tm, d) = civil(t, local);
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gost-rotate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn timestamp_layout_is_lumberjack_s() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_136_214_245_123);
        assert_eq!(timestamp(t, false), "2006-01-02T15-04-05.123");
        assert_eq!(rfc3339(t), "2006-01-02T15:04:05.123000Z");
    }

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let d = dir("size");
        let path = d.join("sub/gost.log");
        let rotation = Rotation {
            max_size: 100,
            max_backups: 2,
            max_age: None,
            local_time: false,
            compress: false,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        for i in 0..5 {
            f.write_all(&[b'a' + i; 60]).unwrap();
            // Backup names have millisecond resolution.
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'e'; 60]);
        let backups = f.backups();
        assert_eq!(backups.len(), 2, "{backups:?}");
        assert_eq!(std::fs::read(&backups[0]).unwrap(), vec![b'd'; 60]);
        assert_eq!(std::fs::read(&backups[1]).unwrap(), vec![b'c'; 60]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_single_large_write_goes_to_an_empty_file() {
        let d = dir("large");
        let path = d.join("x");
        let rotation = Rotation {
            max_size: 10,
            max_backups: 0,
            max_age: None,
            local_time: true,
            compress: false,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        f.write_all(&[1; 50]).unwrap();
        f.write_all(&[2; 50]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![2; 50]);
        assert_eq!(f.backups().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compress_gzips_backups_and_counts_each_once() {
        use std::io::Read;
        let d = dir("gzip");
        let path = d.join("gost.log");
        let rotation = Rotation {
            max_size: 100,
            max_backups: 2,
            max_age: None,
            local_time: false,
            compress: true,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        for i in 0..4 {
            f.write_all(&[b'a' + i; 60]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let start = std::time::Instant::now();
        let backups = loop {
            let b = f.backups();
            if b.len() == 2 && b.iter().all(|p| p.to_string_lossy().ends_with(".log.gz")) {
                break b;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{b:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        for (p, want) in backups.iter().zip([b'c', b'b']) {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(File::open(p).unwrap())
                .read_to_end(&mut text)
                .unwrap();
            assert_eq!(text, vec![want; 60], "{p:?}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'd'; 60]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
