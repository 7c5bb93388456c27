//! The child-local login store: [`LoginStore`] keeps the logins in memory and in
//! `<data_dir>/logins.json` (written atomically, mode 0600).

use super::budget::{BudgetView, Budgets};
use super::{
    CONFIG_MP_ID, EXPIRING_WITHIN, Login, LoginKind, LoginSecrets, LoginState, LoginView,
    STORE_FILE,
};
use crate::protocol::credentials::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Login store failures, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("login store {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a login store.
    #[error("login store {path} is unreadable: {message}")]
    Format {
        /// The file.
        path: String,
        /// The parser's message (no values).
        message: String,
    },
}

/// The file form of one login (the only place secrets are serialised).
#[derive(Serialize, Deserialize)]
struct StoredLogin {
    id: String,
    kind: LoginKind,
    #[serde(default)]
    name: String,
    state: LoginState,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    cooldown_until: Option<DateTime<Utc>>,
    #[serde(default)]
    last_ok_at: Option<DateTime<Utc>>,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    cookies: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renewed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spent: Vec<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shelved: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    /// Random per write: another process wrote the file when it differs from ours.
    #[serde(default)]
    revision: String,
    logins: Vec<StoredLogin>,
}

impl From<&Login> for StoredLogin {
    fn from(l: &Login) -> Self {
        Self {
            id: l.id.clone(),
            kind: l.kind,
            name: l.name.clone(),
            state: l.state,
            expires_at: l.expires_at,
            cooldown_until: l.cooldown_until,
            last_ok_at: l.last_ok_at,
            last_error: l.last_error.clone(),
            last_used_at: l.last_used_at,
            token: l.secrets.token.as_ref().map(|t| t.expose().to_string()),
            cookies: l
                .secrets
                .cookies
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            renewed_at: l.renewed_at,
            spent: l.spent.clone(),
            shelved: l.shelved.clone(),
        }
    }
}

impl From<StoredLogin> for Login {
    fn from(s: StoredLogin) -> Self {
        Self {
            id: s.id,
            kind: s.kind,
            name: s.name,
            state: s.state,
            expires_at: s.expires_at,
            cooldown_until: s.cooldown_until,
            last_ok_at: s.last_ok_at,
            last_error: s.last_error,
            last_used_at: s.last_used_at,
            secrets: LoginSecrets {
                token: s.token.map(Secret::new),
                cookies: s
                    .cookies
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect(),
            },
            renewed_at: s.renewed_at,
            spent: s.spent,
            shelved: s.shelved,
        }
    }
}

/// A child's logins, in memory and in `<data_dir>/logins.json`. Every change that matters
/// after a restart (a login added or replaced, a state change, an error) is written at once;
/// `last_used_at` and `last_ok_at` alone are kept in memory until the next write.
///
/// Another process may write the file too (`cascade child login` beside a running child):
/// before each write, and on [`LoginStore::reload`], logins another process added, replaced
/// (new secrets) or removed since this store last read or wrote the file are taken over.
#[derive(Debug)]
pub struct LoginStore {
    path: PathBuf,
    logins: Mutex<Vec<Login>>,
    sync: Mutex<SyncState>,
    budgets: Mutex<Budgets>,
}

/// What this store last read or wrote: the file's revision and each login's secrets.
#[derive(Debug, Default)]
struct SyncState {
    revision: String,
    synced: std::collections::HashMap<String, LoginSecrets>,
}

impl LoginStore {
    /// Opens (or starts empty) the store in `data_dir`. Nothing is written until a change.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let store = Self {
            path: data_dir.join(STORE_FILE),
            logins: Mutex::default(),
            sync: Mutex::default(),
            budgets: Mutex::default(),
        };
        store.reload()?;
        Ok(store)
    }

    /// Takes over what another process changed in the file since this store last read or
    /// wrote it.
    ///
    /// # Errors
    /// An unreadable or malformed file (the logins in memory stay as they are).
    pub fn reload(&self) -> Result<(), StoreError> {
        let mut logins = self.lock();
        self.merge(&mut logins)
    }

    fn read_file(&self) -> Result<Option<StoreFile>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Format {
                    path: self.path.display().to_string(),
                    // serde_json's messages name positions and types, never values.
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                path: self.path.display().to_string(),
                source,
            }),
        }
    }

    /// Merges the file into `logins` when another process wrote it: its new logins are
    /// added, logins whose secrets it changed are replaced, logins it removed are dropped;
    /// the rest keep this process's state.
    fn merge(&self, logins: &mut Vec<Login>) -> Result<(), StoreError> {
        let Some(file) = self.read_file()? else {
            return Ok(());
        };
        let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        if !sync.revision.is_empty() && file.revision == sync.revision {
            return Ok(());
        }
        let disk: Vec<Login> = file.logins.into_iter().map(Login::from).collect();
        logins.retain(|l| !sync.synced.contains_key(&l.id) || disk.iter().any(|d| d.id == l.id));
        for d in disk {
            let known = sync.synced.get(&d.id);
            match logins.iter_mut().find(|l| l.id == d.id) {
                Some(mine) if known != Some(&d.secrets) && mine.secrets != d.secrets => {
                    *mine = d.clone();
                }
                Some(_) => {}
                None if known.is_none() => logins.push(d.clone()),
                None => {}
            }
            sync.synced.insert(d.id, d.secrets);
        }
        sync.revision = file.revision;
        Ok(())
    }

    /// Sets the caps each kind's logins are held to (none until set).
    pub fn set_budgets(&self, budgets: Budgets) {
        *self.budgets.lock().unwrap_or_else(|p| p.into_inner()) = budgets;
    }

    fn budgets(&self) -> Budgets {
        *self.budgets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `l` may make one more upstream call at `now` as far as its budget goes.
    fn has_room(budgets: &Budgets, l: &Login, now: DateTime<Utc>) -> bool {
        budgets.caps(l.kind).next_free(&l.spent, now).is_none()
    }

    /// Reserves one upstream call of login `id` at `now`, before it is sent: counted and
    /// saved at once, so neither concurrent feeds nor a restart let the login pass its caps.
    /// A login whose kind has no caps is not counted.
    ///
    /// # Errors
    /// The login has no call left: when the next one frees.
    pub fn reserve(&self, id: &str, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let budgets = self.budgets();
        self.update(|logins| {
            let Some(l) = logins.iter_mut().find(|l| l.id == id) else {
                return (Ok(()), false);
            };
            let caps = budgets.caps(l.kind);
            if caps.unlimited() {
                return (Ok(()), false);
            }
            caps.prune(&mut l.spent, now);
            if let Some(free) = caps.next_free(&l.spent, now) {
                return (Err(free), false);
            }
            l.spent.push(now);
            (Ok(()), true)
        })
    }

    /// When a login of `kind` that is otherwise usable gets a call back, while none of them
    /// has budget left now (when to look again); `None` when one has, or none is usable.
    pub fn next_budget_free(&self, kind: LoginKind, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let budgets = self.budgets();
        let caps = budgets.caps(kind);
        let frees: Vec<Option<DateTime<Utc>>> = self
            .lock()
            .iter()
            .filter(|l| l.kind == kind && l.usable(now))
            .map(|l| caps.next_free(&l.spent, now))
            .collect();
        if frees.iter().any(Option::is_none) {
            return None;
        }
        frees.into_iter().flatten().min()
    }

    /// What login `id` has left at `now`; `None` when its kind has no caps.
    pub fn budget(&self, id: &str, now: DateTime<Utc>) -> Option<BudgetView> {
        let budgets = self.budgets();
        self.lock()
            .iter()
            .find(|l| l.id == id)
            .and_then(|l| budgets.caps(l.kind).view(&l.spent, now))
    }

    /// Whether `weread` login `id` has put `book` on its shelf.
    pub fn is_shelved(&self, id: &str, book: &str) -> bool {
        self.lock()
            .iter()
            .any(|l| l.id == id && l.shelved.iter().any(|b| b == book))
    }

    /// Records that `weread` login `id` put `book` on its shelf; saved at once.
    pub fn mark_shelved(&self, id: &str, book: &str) {
        self.mark(id, |l| {
            if l.shelved.iter().any(|b| b == book) {
                return false;
            }
            l.shelved.push(book.to_string());
            true
        });
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Login>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `logins` atomically: a temp file in the same directory (0600), fsync, rename,
    /// then the directory is synced. Another process's changes are merged in first.
    fn write(&self, logins: &mut Vec<Login>) -> Result<(), StoreError> {
        if let Err(e) = self.merge(logins) {
            tracing::warn!(error = %e, "login store unreadable; writing this process's logins");
        }
        let io = |source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let revision = crate::protocol::credentials::random_token();
        let file = StoreFile {
            version: 1,
            revision: revision.clone(),
            logins: logins.iter().map(StoredLogin::from).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = dir.join(format!(
            ".{STORE_FILE}.{}.{}.tmp",
            std::process::id(),
            crate::protocol::credentials::random_token()
        ));
        let written = (|| {
            let mut f = open_private(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        sync.revision = revision;
        sync.synced = logins
            .iter()
            .map(|l| (l.id.clone(), l.secrets.clone()))
            .collect();
        Ok(())
    }

    /// Applies `change` to the logins and writes the file when it says so; a write failure is
    /// logged (the in-memory state stays authoritative for this run).
    fn update<R>(&self, change: impl FnOnce(&mut Vec<Login>) -> (R, bool)) -> R {
        let mut logins = self.lock();
        let (out, persist) = change(&mut logins);
        if persist && let Err(e) = self.write(&mut logins) {
            tracing::warn!(error = %e, "could not save the login store");
        }
        out
    }

    /// Adds `login`, or replaces the one with its id; saved at once.
    ///
    /// # Errors
    /// The file could not be written (the login is kept in memory anyway).
    pub fn upsert(&self, login: Login) -> Result<(), StoreError> {
        let mut logins = self.lock();
        match logins.iter_mut().find(|l| l.id == login.id) {
            Some(slot) => *slot = login,
            None => logins.push(login),
        }
        self.write(&mut logins)
    }

    /// Removes a login; whether it existed.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let mut logins = self.lock();
        let before = logins.len();
        logins.retain(|l| l.id != id);
        let removed = logins.len() != before;
        if removed {
            self.write(&mut logins)?;
        }
        Ok(removed)
    }

    /// Makes the old `wechat_token`/`wechat_cookie` keys one `mp` login, id [`CONFIG_MP_ID`].
    /// Unchanged secrets keep the stored state (an expired login stays expired across a
    /// restart); new secrets make it a fresh valid login. Empty keys change nothing.
    pub fn adopt_config(&self, token: &Secret, cookie: &Secret) {
        if token.is_empty() {
            return;
        }
        let secrets = LoginSecrets::from_cookie_header(Some(token.clone()), cookie.expose());
        self.update(
            |logins| match logins.iter_mut().find(|l| l.id == CONFIG_MP_ID) {
                Some(l) if l.secrets == secrets => ((), false),
                Some(l) => {
                    *l = Login::new(CONFIG_MP_ID, LoginKind::Mp, &l.name.clone(), secrets);
                    ((), true)
                }
                None => {
                    let name = "wechat_token (config)";
                    logins.push(Login::new(CONFIG_MP_ID, LoginKind::Mp, name, secrets));
                    ((), false)
                }
            },
        );
    }

    /// A copy of one login.
    pub fn get(&self, id: &str) -> Option<Login> {
        self.lock().iter().find(|l| l.id == id).cloned()
    }

    /// Every login without secrets; a login past its known expiry shows as `expired`.
    pub fn views(&self) -> Vec<LoginView> {
        self.views_at(Utc::now())
    }

    /// [`LoginStore::views`] at `now`, each with what its budget has left.
    pub fn views_at(&self, now: DateTime<Utc>) -> Vec<LoginView> {
        let budgets = self.budgets();
        self.lock()
            .iter()
            .map(|l| {
                let mut v = l.view();
                v.budget = budgets.caps(l.kind).view(&l.spent, now);
                if l.expires_at.is_some_and(|t| t <= now) {
                    v.state = LoginState::Expired;
                }
                v
            })
            .collect()
    }

    /// Whether any login of `kind` is held at all.
    pub fn has_kind(&self, kind: LoginKind) -> bool {
        self.lock().iter().any(|l| l.kind == kind)
    }

    /// Whether a login of `kind` is usable at `now`, with budget left.
    pub fn any_usable(&self, kind: LoginKind, now: DateTime<Utc>) -> bool {
        let budgets = self.budgets();
        self.lock()
            .iter()
            .any(|l| l.kind == kind && l.usable(now) && Self::has_room(&budgets, l, now))
    }

    /// The earliest end of a cooldown among the cooling logins of `kind`, when none of that
    /// kind is usable now (when to look again).
    pub fn next_cooldown_end(&self, kind: LoginKind) -> Option<DateTime<Utc>> {
        self.lock()
            .iter()
            .filter(|l| l.kind == kind && l.state == LoginState::Cooling)
            .filter_map(|l| l.cooldown_until)
            .min()
    }

    /// The least recently used usable login of `kind` at `now` with budget left, its
    /// `last_used_at` set to `now`. Cooling logins whose cooldown is over, and logins past
    /// `expires_at`, are updated on the way.
    pub fn pick(&self, kind: LoginKind, now: DateTime<Utc>) -> Option<Login> {
        let budgets = self.budgets();
        self.update(|logins| {
            let mut persist = false;
            for l in logins.iter_mut().filter(|l| l.kind == kind) {
                if l.state == LoginState::Cooling && l.cooldown_until.is_none_or(|t| t <= now) {
                    l.state = LoginState::Valid;
                    l.cooldown_until = None;
                    persist = true;
                }
                if l.expires_at.is_some_and(|t| t <= now) && l.state != LoginState::Expired {
                    l.state = LoginState::Expired;
                    persist = true;
                }
            }
            let chosen = logins
                .iter_mut()
                .filter(|l| l.kind == kind && l.usable(now) && Self::has_room(&budgets, l, now))
                // `None` (never used) sorts first.
                .min_by_key(|l| l.last_used_at)
                .map(|l| {
                    // The caller sees when the login was used before this pick (a first
                    // request after a rest tells closure from throttling).
                    let before = l.last_used_at.replace(now);
                    let mut picked = l.clone();
                    picked.last_used_at = before;
                    picked
                });
            (chosen, persist)
        })
    }

    fn mark(&self, id: &str, change: impl FnOnce(&mut Login) -> bool) {
        self.update(|logins| match logins.iter_mut().find(|l| l.id == id) {
            Some(l) => ((), change(l)),
            None => ((), false),
        });
    }

    /// A successful upstream call: a cooling login is valid again, the error is cleared.
    pub fn mark_ok(&self, id: &str, now: DateTime<Utc>) {
        self.mark(id, |l| {
            l.last_ok_at = Some(now);
            let changed = l.state == LoginState::Cooling || l.last_error.is_some();
            if l.state == LoginState::Cooling {
                l.state = LoginState::Valid;
                l.cooldown_until = None;
            }
            l.last_error = None;
            changed
        });
    }

    /// An upstream error that says nothing about the login's state.
    pub fn mark_error(&self, id: &str, error: &str) {
        self.mark(id, |l| {
            l.last_error = Some(error.to_string());
            true
        });
    }

    /// The session is gone (`200003`, `200040`, …): a scan is needed.
    pub fn mark_expired(&self, id: &str, error: &str) {
        self.mark(id, |l| {
            l.state = LoginState::Expired;
            l.cooldown_until = None;
            l.last_error = Some(error.to_string());
            true
        });
    }

    /// Rate limited (`200013`): skipped until `until`.
    pub fn mark_cooling(&self, id: &str, until: DateTime<Utc>, error: &str) {
        self.mark(id, |l| {
            if l.state != LoginState::Expired {
                l.state = LoginState::Cooling;
                l.cooldown_until = Some(until);
            }
            l.last_error = Some(error.to_string());
            true
        });
    }

    /// Renewed secrets (a rotated `wr_skey`): replaces the login's secrets, records
    /// `renewed_at` and a success, and saves at once (the old key dies soon). Whether the
    /// login exists.
    ///
    /// # Errors
    /// The file could not be written (the secrets are kept in memory anyway).
    pub fn replace_secrets(
        &self,
        id: &str,
        secrets: LoginSecrets,
        renewed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut logins = self.lock();
        let Some(l) = logins.iter_mut().find(|l| l.id == id) else {
            return Ok(false);
        };
        l.secrets = secrets;
        l.renewed_at = Some(renewed_at);
        l.last_ok_at = Some(renewed_at);
        l.last_error = None;
        self.write(&mut logins)?;
        Ok(true)
    }

    /// Moves logins with a known expiry along at `now`: `valid` within
    /// [`EXPIRING_WITHIN`] of `expires_at` becomes `expiring` (still usable), any login past it
    /// becomes `expired`. Saved when something changed; returns each change (id, new state),
    /// so a caller can warn once per transition.
    pub fn track_expiry(&self, now: DateTime<Utc>) -> Vec<(Login, LoginState)> {
        self.update(|logins| {
            let mut changed = Vec::new();
            for l in logins.iter_mut() {
                let Some(end) = l.expires_at else { continue };
                let to = if end <= now {
                    LoginState::Expired
                } else if end - EXPIRING_WITHIN <= now && l.state == LoginState::Valid {
                    LoginState::Expiring
                } else {
                    continue;
                };
                if l.state != to && l.state != LoginState::Expired {
                    l.state = to;
                    if to == LoginState::Expired {
                        l.cooldown_until = None;
                    }
                    changed.push((l.clone(), to));
                }
            }
            let persist = !changed.is_empty();
            (changed, persist)
        })
    }

    /// Copies of every login (the keeper walks them).
    pub fn all(&self) -> Vec<Login> {
        self.lock().clone()
    }

    /// Saves the in-memory state now (e.g. `last_ok_at` on shutdown).
    ///
    /// # Errors
    /// The file could not be written.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut logins = self.lock();
        self.write(&mut logins)
    }
}

/// Creates `path` for writing with mode 0600 (owner only), truncating it.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` applies only to a new file; make sure of it whatever existed.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
