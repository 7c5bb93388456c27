//! Admin tokens of `--url` logins, cached per parent URL and user in
//! `$XDG_CACHE_HOME/werss-cascade/` (else `~/.cache/werss-cascade/`): one file each, readable
//! by its owner only (0600 in a 0700 directory). A token is reused until the parent answers
//! 401, then replaced by a new login. Tokens are never printed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The cache file of one parent URL and user.
pub struct TokenCache {
    path: PathBuf,
    url: String,
    user: String,
}

/// What a cache file holds (the URL and user, so a person can tell the files apart).
#[derive(Serialize, Deserialize)]
struct Entry {
    url: String,
    user: String,
    token: String,
}

impl TokenCache {
    /// The cache of `url` and `user` in this user's cache directory; `None` when there is
    /// none (neither `XDG_CACHE_HOME` nor `HOME` is set).
    pub fn locate(url: &str, user: &str) -> Option<Self> {
        let dir = cache_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))?;
        Some(Self::in_dir(&dir, url, user))
    }

    /// The cache of `url` and `user` in `dir`.
    pub fn in_dir(dir: &Path, url: &str, user: &str) -> Self {
        let digest = hex::encode(Sha256::digest(format!("{url}\n{user}").as_bytes()));
        Self {
            path: dir.join(format!("token-{}.json", &digest[..32])),
            url: url.to_string(),
            user: user.to_string(),
        }
    }

    /// The cached token, if there is one for this URL and user.
    pub fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let entry: Entry = serde_json::from_str(&text).ok()?;
        (entry.url == self.url && entry.user == self.user && !entry.token.is_empty())
            .then_some(entry.token)
    }

    /// Replaces the cached token (written whole to a new 0600 file, then renamed over).
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn store(&self, token: &str) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let entry = Entry {
            url: self.url.clone(),
            user: self.user.clone(),
            token: token.to_string(),
        };
        // A temporary file is created 0600 on Unix.
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(serde_json::to_string(&entry)?.as_bytes())?;
        file.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Forgets the cached token.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `$XDG_CACHE_HOME/werss-cascade` (an absolute path, as the XDG spec requires), else
/// `$HOME/.cache/werss-cascade`.
fn cache_dir(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        home.filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".cache"))
    })?;
    Some(base.join("werss-cascade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_lives_under_xdg_cache_home_else_home() {
        let dir =
            |x: Option<&str>, h: Option<&str>| cache_dir(x.map(Into::into), h.map(Into::into));
        assert_eq!(
            dir(Some("/c"), Some("/h")),
            Some(PathBuf::from("/c/werss-cascade"))
        );
        assert_eq!(
            dir(Some("relative"), Some("/h")),
            Some(PathBuf::from("/h/.cache/werss-cascade")),
            "a relative XDG_CACHE_HOME is ignored"
        );
        assert_eq!(dir(None, None), None);
    }

    #[test]
    fn a_token_is_kept_per_url_and_user_in_an_owner_only_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache_dir = dir.path().join("werss-cascade");
        let cache = TokenCache::in_dir(&cache_dir, "http://a:1", "admin");
        assert_eq!(cache.load(), None);
        cache.store("t1").expect("stored");
        assert_eq!(cache.load().as_deref(), Some("t1"));
        cache.store("t2").expect("replaced");
        assert_eq!(cache.load().as_deref(), Some("t2"));
        for other in [
            TokenCache::in_dir(&cache_dir, "http://a:2", "admin"),
            TokenCache::in_dir(&cache_dir, "http://a:1", "root"),
        ] {
            assert_eq!(other.load(), None);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode(&cache.path), 0o600);
            assert_eq!(mode(&cache_dir), 0o700);
        }
        cache.remove();
        assert_eq!(cache.load(), None);
    }
}
