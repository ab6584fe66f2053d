//! A log file that rotates by size, with lumberjack's rules (the library
//! GOST uses for `log.rotation`): when a write would take the file past
//! `maxSize` megabytes, it is renamed to `<name>-<time>.<ext>` and a new
//! one is started; then backups beyond `maxBackups` (0: all kept) or older
//! than `maxAge` days (0: kept) are removed, oldest first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// lumberjack's default when `maxSize` is 0.
pub const DEFAULT_MAX_SIZE_MB: u64 = 100;

#[derive(Debug, Clone)]
pub struct Rotation {
    pub max_size: u64,
    pub max_backups: usize,
    pub max_age: Option<Duration>,
    pub local_time: bool,
}

pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let backup = self.backup_name(SystemTime::now());
        std::fs::rename(&self.path, &backup)?;
        self.file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.path)?;
        self.size = 0;
        self.remove_old_backups();
        Ok(())
    }

    /// `dir/name-2006-01-02T15-04-05.000.ext`, lumberjack's layout.
    fn backup_name(&self, t: SystemTime) -> PathBuf {
        let (stem, ext) = self.stem_ext();
        let stamp = timestamp(t, self.rotation.local_time);
        self.path.with_file_name(format!("{stem}-{stamp}{ext}"))
    }

    fn stem_ext(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.rfind('.') {
            Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name, String::new()),
        }
    }

    /// Backups sorted newest first, by the time in their names.
    fn backups(&self) -> Vec<PathBuf> {
        let (stem, ext) = self.stem_ext();
        let prefix = format!("{stem}-");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(&ext)?;
                // 2006-01-02T15-04-05.000
                (stamp.len() == 23 && stamp.as_bytes()[10] == b'T')
                    .then(|| (stamp.to_string(), e.path()))
            })
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found.into_iter().map(|(_, p)| p).collect()
    }

    fn remove_old_backups(&self) {
        let cutoff = self
            .rotation
            .max_age
            .and_then(|age| SystemTime::now().checked_sub(age));
        for (i, path) in self.backups().into_iter().enumerate() {
            let too_many = self.rotation.max_backups > 0 && i >= self.rotation.max_backups;
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
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        f.write_all(&[1; 50]).unwrap();
        f.write_all(&[2; 50]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![2; 50]);
        assert_eq!(f.backups().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
