//! Saving a login a QR scan produced: under `<kind>-<label>`, so scanning the same account
//! again (in the terminal, from the dashboard or by `auto_login`) replaces its old login.

use super::{Login, LoginKind, LoginSecrets, LoginStore, StoreError};
use chrono::{DateTime, Utc};

/// The id a scanned login is saved under: `<kind>-<label>` with the label reduced to
/// lower-case ASCII letters, digits and dashes.
pub fn scanned_id(kind: LoginKind, label: &str) -> String {
    let slug: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    // A name with little ASCII (most Chinese account names) would reduce to nothing, or two
    // names to one slug: a short hash of the whole label keeps them apart.
    let hash = crate::protocol::credentials::sha256_hex(label.trim());
    let tag = hash.get(..8).unwrap_or_default();
    if slug.is_empty() {
        format!("{}-{tag}", kind.as_str())
    } else if slug.len() == label.trim().len() && !label.contains(char::is_whitespace) {
        format!("{}-{slug}", kind.as_str())
    } else {
        format!("{}-{slug}-{tag}", kind.as_str())
    }
}

/// Saves a freshly scanned login in `store` (replacing one with the same id) and returns it.
/// A `weread` login counts as renewed at `now` (its `wr_skey` is brand new).
///
/// # Errors
/// The store file could not be written.
pub fn save_scanned(
    store: &LoginStore,
    kind: LoginKind,
    label: &str,
    account_name: &str,
    secrets: LoginSecrets,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Login, StoreError> {
    let id = scanned_id(kind, label);
    let mut login = Login::new(&id, kind, account_name, secrets);
    login.expires_at = Some(expires_at);
    login.last_ok_at = Some(now);
    if kind == LoginKind::Weread {
        login.renewed_at = Some(now);
    }
    store.upsert(login.clone())?;
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_stable_ascii_ids() {
        assert!(scanned_id(LoginKind::Mp, "My Account!").starts_with("mp-my-account-"));
        assert_eq!(scanned_id(LoginKind::Weread, "A1"), "weread-a1");
        assert_eq!(scanned_id(LoginKind::Mp, "tech-daily"), "mp-tech-daily");
        // Names that reduce to the same slug stay apart; the same name keeps its id.
        let (a, b) = (
            scanned_id(LoginKind::Weread, "读书"),
            scanned_id(LoginKind::Weread, "微信"),
        );
        assert!(a.starts_with("weread-") && a.len() > "weread-".len());
        assert_ne!(a, b);
        assert_eq!(a, scanned_id(LoginKind::Weread, "读书"));
        assert_ne!(
            scanned_id(LoginKind::Mp, "A B"),
            scanned_id(LoginKind::Mp, "A-B")
        );
    }
}
