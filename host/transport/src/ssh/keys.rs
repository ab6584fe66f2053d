//! Key material of the SSH transports: private keys from files (GOST's
//! `privateKeyFile` and `passphrase`), a host key made at start-up when
//! none is given, and the `authorizedKeys` file.

use std::path::PathBuf;

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::AuthorizedKeys;
use russh::keys::{PrivateKey, PublicKey};

/// GOST expands a leading `~` in key paths (go-homedir).
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// A private key in OpenSSH, PEM (PKCS#1, PKCS#8) or PuTTY form,
/// decrypted with `passphrase` when it is encrypted.
pub(crate) fn load_private_key(path: &str, passphrase: Option<&str>) -> Result<PrivateKey, String> {
    let file = expand_home(path);
    russh::keys::load_secret_key(&file, passphrase.filter(|p| !p.is_empty()))
        .map_err(|e| format!("privateKeyFile {:?}: {e}", file.display()))
}

/// A fresh Ed25519 host key. GOST signs with its TLS key when no
/// `privateKeyFile` is given, itself generated at start-up unless
/// configured: either way clients see a key that changes per run.
pub(crate) fn generate_host_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// The public keys of an OpenSSH `authorized_keys` file; a line that
/// does not parse is an error naming its number, as in GOST.
pub(crate) fn load_authorized_keys(path: &str) -> Result<Vec<PublicKey>, String> {
    let file = expand_home(path);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("authorizedKeys {:?}: {e}", file.display()))?;
    let mut keys = Vec::new();
    for (i, entry) in AuthorizedKeys::new(&text).enumerate() {
        let entry = entry
            .map_err(|e| format!("authorizedKeys {:?}: key {}: {e}", file.display(), i + 1))?;
        keys.push(entry.public_key().clone());
    }
    if keys.is_empty() {
        return Err(format!("authorizedKeys {:?}: no keys", file.display()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_are_read_and_bad_lines_named() {
        let dir = std::env::temp_dir().join(format!("gost-ssh-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = generate_host_key();
        let line = key.public_key().to_openssh().unwrap();
        let good = dir.join("good");
        std::fs::write(&good, format!("# comment\n\n{line} someone\n")).unwrap();
        let keys = load_authorized_keys(good.to_str().unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_data(), key.public_key().key_data());

        let bad = dir.join("bad");
        std::fs::write(&bad, format!("{line}\nssh-ed25519 AAAA!!\n")).unwrap();
        let err = load_authorized_keys(bad.to_str().unwrap()).unwrap_err();
        assert!(err.contains("key 2"), "{err}");
        let empty = dir.join("empty");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert!(load_authorized_keys(empty.to_str().unwrap())
            .unwrap_err()
            .contains("no keys"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let err = load_private_key("/nonexistent/gost-key", None).unwrap_err();
        assert!(err.contains("/nonexistent/gost-key"), "{err}");
    }
}
