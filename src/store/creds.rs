//! A short-lived cache of node credentials for authentication: every node request
//! authenticates, and most of them (heartbeats, claims) would otherwise start with a read.
//! An entry lives [`TTL`]; any change of a node on this parent (credentials, update, removal)
//! empties the cache, and a change made by another parent of a shared database is seen within
//! [`TTL`]. A deactivated node is refused inside every write regardless (`NodeInactive`).

use super::NodeCredential;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a cached credential is trusted.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Most keys kept; beyond this the cache starts over (keys are one per node).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct CredCache {
    entries: Mutex<HashMap<String, (NodeCredential, Instant)>>,
}

impl CredCache {
    pub(crate) fn get(&self, api_key: &str) -> Option<NodeCredential> {
        let entries = self.entries.lock().ok()?;
        let (cred, at) = entries.get(api_key)?;
        (at.elapsed() < TTL).then(|| cred.clone())
    }

    pub(crate) fn put(&self, api_key: &str, cred: &NodeCredential) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(api_key.to_string(), (cred.clone(), Instant::now()));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
