//! Where `POST /config?path=` may write: GOST writes anywhere the process
//! can, which lets any API caller (or a page in a browser, before the
//! checks in `browser`) put a file in `~/.ssh` or a cron directory. Here
//! the path must lie in the loaded config file's directory (the working
//! directory when there is none) unless `api.savePathAnywhere` is set.

use std::path::{Component, PathBuf};

/// `requested` (relative to the working directory, as GOST takes it) if it
/// names a file inside the config's directory; else why not.
pub fn inside_config_dir(
    config_file: Option<&PathBuf>,
    requested: &str,
) -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("save config: working directory: {e}"))?;
    let base = match config_file.and_then(|f| f.parent()) {
        Some(d) if !d.as_os_str().is_empty() => cwd.join(d),
        _ => cwd.clone(),
    };
    let wanted = cwd.join(requested);
    let refuse = || {
        format!(
            "save config: path \"{}\" is outside the config's directory {} (set api.savePathAnywhere to allow it)",
            gost_core::escape::esc(requested),
            base.display()
        )
    };
    if wanted.components().any(|c| c == Component::ParentDir) {
        return Err(refuse());
    }
    let (Some(dir), Some(_)) = (wanted.parent(), wanted.file_name()) else {
        return Err(refuse());
    };
    if !dir.starts_with(&base) {
        return Err(refuse());
    }
    // Compared again after resolving symlinks, so a link to elsewhere is
    // not a way out. A directory that does not exist holds no link, and
    // the write itself reports it missing.
    if let (Ok(dir), Ok(base)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&base)) {
        if !dir.starts_with(base) {
            return Err(refuse());
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_paths_in_the_config_directory_are_allowed() {
        let dir = std::env::temp_dir().join(format!("gost-savepath-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let cfg = dir.join("gost.yaml");
        let ok = |p: &Path| inside_config_dir(Some(&cfg), p.to_str().unwrap());
        assert!(ok(&dir.join("backup.yaml")).is_ok());
        assert!(ok(&dir.join("sub/x.json")).is_ok());
        let e = ok(&dir.join("../evil.yaml")).unwrap_err();
        assert!(e.contains("outside the config's directory"), "{e}");
        assert!(ok(Path::new("/etc/cron.d/x")).is_err());
        assert!(ok(Path::new("/nonexistent-dir/x.yaml")).is_err());
        // Inside but missing: allowed here, the write reports it.
        assert!(ok(&dir.join("missing/x.yaml")).is_ok());
        std::os::unix::fs::symlink("/tmp", dir.join("out")).unwrap();
        assert!(ok(&dir.join("out/x.yaml")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
