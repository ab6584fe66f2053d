//! Writing the config file back (the API's `POST /config`): the file holds
//! every password in clear, so a save must never widen who can read it,
//! and a crash or a full disk mid-write must never leave it truncated.
//!
//! The new text goes to a temporary file beside the real file (after
//! following symlinks, so a symlinked config stays a symlink and its target
//! is replaced, as GOST's in-place write does), created with the old file's
//! mode (0600 for a new file) and owner, synced, then renamed over it.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a config file that did not exist before: owner only.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Symlinks followed before giving up, as the kernel's `ELOOP` limit.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: more than {MAX_LINKS} symbolic links")]
    TooManyLinks { path: PathBuf },
    #[error("{path}: not a file path")]
    NotAFile { path: PathBuf },
    #[error("{path}: cannot keep its owner {uid}:{gid}: {source}")]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SaveError + '_ {
    move |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file a write to `path` lands in: `path` with every symlink on its
/// last component followed (a dangling link names the file to create).
fn resolve(path: &Path) -> Result<PathBuf, SaveError> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p).map_err(io_at(&p))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(SaveError::TooManyLinks {
        path: path.to_path_buf(),
    })
}

/// Replaces the file at `path` (through symlinks) with `data`, keeping its
/// mode and owner.
pub fn write_config_file(path: &Path, data: &[u8]) -> Result<(), SaveError> {
    let target = resolve(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().ok_or_else(|| SaveError::NotAFile {
        path: target.clone(),
    })?;
    let old = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_at(&target)(e)),
    };
    let mode = old
        .as_ref()
        .map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        // Created owner-only: nobody else can open it before its mode is set.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(&tmp)
            .map_err(io_at(&tmp))?;
        if let Some(m) = &old {
            let new = f.metadata().map_err(io_at(&tmp))?;
            if (new.uid(), new.gid()) != (m.uid(), m.gid()) {
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).map_err(|source| {
                    SaveError::Owner {
                        path: target.clone(),
                        uid: m.uid(),
                        gid: m.gid(),
                        source,
                    }
                })?;
            }
        }
        // Set explicitly: the umask applies to the mode given at creation.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(io_at(&tmp))?;
        f.write_all(data).map_err(io_at(&tmp))?;
        f.sync_all().map_err(io_at(&tmp))?;
        fs::rename(&tmp, &target).map_err(io_at(&target))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename itself is durable only once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("gost-save-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_save_keeps_the_mode_and_owner_and_leaves_no_temp_file() {
        let d = Dir::new("mode");
        let path = d.0.join("gost.yaml");
        for m in [0o600, 0o640, 0o604] {
            fs::write(&path, "old").unwrap();
            fs::set_permissions(&path, Permissions::from_mode(m)).unwrap();
            let before = fs::metadata(&path).unwrap();
            write_config_file(&path, b"new").unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), "new");
            assert_eq!(mode(&path), m, "mode {m:o}");
            let after = fs::metadata(&path).unwrap();
            assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
            assert_ne!(after.ino(), before.ino(), "replaced by rename");
        }
        assert_eq!(d.names(), ["gost.yaml"]);
    }

    #[test]
    fn a_new_file_is_owner_only() {
        let d = Dir::new("new");
        let path = d.0.join("gost.json");
        write_config_file(&path, b"{}").unwrap();
        assert_eq!(mode(&path), NEW_FILE_MODE);
        assert!(write_config_file(&d.0.join("missing/x.yaml"), b"x").is_err());
        assert_eq!(d.names(), ["gost.json"]);
    }

    #[test]
    fn a_symlinked_config_stays_a_symlink_and_its_target_is_replaced() {
        let d = Dir::new("link");
        fs::create_dir(d.0.join("real")).unwrap();
        let real = d.0.join("real/gost.yaml");
        fs::write(&real, "old").unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o600)).unwrap();
        // A relative link, then a link to that link.
        let link = d.0.join("gost.yaml");
        std::os::unix::fs::symlink("real/gost.yaml", &link).unwrap();
        let link2 = d.0.join("current.yaml");
        std::os::unix::fs::symlink(&link, &link2).unwrap();
        write_config_file(&link2, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(&link2)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(mode(&real), 0o600);
        assert_eq!(
            fs::read_dir(d.0.join("real")).unwrap().count(),
            1,
            "no temp file beside the target"
        );
        let a = d.0.join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", d.0.join("b")).unwrap();
        assert!(matches!(
            write_config_file(&a, b"x"),
            Err(SaveError::TooManyLinks { .. })
        ));
    }
}
