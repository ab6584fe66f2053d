//! `api.maskSecrets`: the API's reads show every password, token and
//! passphrase as [`MASK`], so a dashboard screen or a pasted `GET /config`
//! does not spread credentials. The file a save writes keeps them.
//!
//! A client that edits what it read sends the masks back; each one takes
//! the secret at the same place in the object it replaces, so a round
//! trip (read, change one field, write) keeps every credential. A mask
//! where the current object has no secret (a new object, a new entry in a
//! list) is refused: it would silently become the password `******`.

use serde_json::{Map, Value};

pub const MASK: &str = "******";

/// Keys whose string values are credentials wherever they appear: auth
/// blocks (`password`), plugin tokens (`token`), key passphrases.
const SECRET_KEYS: &[&str] = &["password", "token", "passphrase"];

fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// Replaces every non-empty secret in `v` with [`MASK`].
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match child {
                    Value::String(s) if is_secret(k) && !s.is_empty() => {
                        *s = MASK.to_string();
                    }
                    _ => mask(child),
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(mask),
        _ => {}
    }
}

/// Puts back the secrets `new` carries masked from `current` (the object
/// it replaces, if any); the error names the first masked field without
/// a secret to take.
pub fn unmask(new: &mut Map<String, Value>, current: Option<&Value>) -> Result<(), String> {
    let mut path = String::new();
    unmask_map(new, current.and_then(Value::as_object), &mut path)
}

fn unmask_map(
    new: &mut Map<String, Value>,
    current: Option<&Map<String, Value>>,
    path: &mut String,
) -> Result<(), String> {
    for (k, child) in new.iter_mut() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        let old = current.and_then(|c| c.get(k));
        match child {
            Value::String(s) if is_secret(k) && s == MASK => match old {
                Some(Value::String(o)) if !o.is_empty() => *s = o.clone(),
                _ => {
                    return Err(format!(
                        "{path}: the masked value {MASK:?} was sent, and there is no current secret to keep; send the real value"
                    ))
                }
            },
            _ => unmask_value(child, old, path)?,
        }
        path.truncate(len);
    }
    Ok(())
}

fn unmask_value(new: &mut Value, current: Option<&Value>, path: &mut String) -> Result<(), String> {
    match new {
        Value::Object(m) => unmask_map(m, current.and_then(Value::as_object), path),
        Value::Array(list) => {
            let old = current.and_then(Value::as_array);
            for (i, item) in list.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unmask_value(item, old.and_then(|o| o.get(i)), path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_everywhere_and_nothing_else() {
        let mut v = json!({
            "name": "a",
            "auth": {"username": "u", "password": "p"},
            "auths": [{"username": "x", "password": "y"}, {"username": "z", "password": ""}],
            "plugin": {"addr": "127.0.0.1:1", "token": "t"},
            "metadata": {"passphrase": "k", "password_hint": "h"},
            "password": 5
        });
        mask(&mut v);
        assert_eq!(
            v,
            json!({
                "name": "a",
                "auth": {"username": "u", "password": MASK},
                "auths": [{"username": "x", "password": MASK}, {"username": "z", "password": ""}],
                "plugin": {"addr": "127.0.0.1:1", "token": MASK},
                "metadata": {"passphrase": MASK, "password_hint": "h"},
                "password": 5
            })
        );
    }

    #[test]
    fn a_round_trip_keeps_the_secrets_and_a_mask_without_one_is_refused() {
        let current = json!({
            "name": "a",
            "auths": [{"username": "x", "password": "y"}],
            "plugin": {"token": "t"}
        });
        let mut read = current.clone();
        mask(&mut read);
        let Value::Object(mut edited) = read else {
            unreachable!()
        };
        edited.insert("extra".into(), json!(1));
        unmask(&mut edited, Some(&current)).unwrap();
        assert_eq!(edited["auths"][0]["password"], "y");
        assert_eq!(edited["plugin"]["token"], "t");

        let Value::Object(mut added) = json!({
            "auths": [{"username": "x", "password": MASK}, {"username": "n", "password": MASK}]
        }) else {
            unreachable!()
        };
        let err = unmask(&mut added, Some(&current)).unwrap_err();
        assert!(
            err.starts_with("auths[1].password: the masked value"),
            "{err}"
        );
        let Value::Object(mut new) = json!({"auth": {"password": MASK}}) else {
            unreachable!()
        };
        assert!(unmask(&mut new, None)
            .unwrap_err()
            .starts_with("auth.password"));
    }
}
