//! `cascade check` and the configuration warnings a parent or child logs at start.

use super::api;
use super::out::outln;
use crate::config::{self, Config};
use crate::store::{Store, redact_url};
use anyhow::Context;

/// Logs the configuration's warnings for `role` (PROTOCOL §13) at start.
pub(super) fn warn_about(config: &Config, role: config::Role) {
    for w in config.warnings(role, &|k| std::env::var(k).ok()) {
        tracing::warn!("{w}");
    }
}

/// `cascade check`: the config (and its warnings), the database (parent) or the parent
/// (child), each on a line.
pub(super) async fn check(config: Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let source = file.map_or_else(
        || "defaults and environment".into(),
        |f| f.display().to_string(),
    );
    outln!("config    ok   ({source})")?;
    // A child config names its credentials (or is an enabled child); anything else is a parent.
    let child = !config.cascade.api_key.is_empty()
        || (config.cascade.enabled && config.cascade.node_type == "child");
    let role = if child {
        config::Role::Child
    } else {
        config::Role::Parent
    };
    for w in config.warnings(role, &|k| std::env::var(k).ok()) {
        outln!("warning: {w}")?;
    }
    if child {
        let check = crate::child::Child::new(config)?
            .check()
            .await
            .context("parent check failed")?;
        return outln!("parent    ok   (credentials accepted: {check})");
    }
    let public = format!("http://{}:{}", config.bind, config.port);
    let busy = |e: crate::store::Error| {
        let e = anyhow::Error::new(e);
        match api::busy_hint(&e, &config.db, &public) {
            Some(hint) => anyhow::anyhow!(hint),
            None => e.context(format!("database {} is not usable", redact_url(&config.db))),
        }
    };
    let store = Store::connect(&config.db).await.map_err(busy)?;
    store.ping().await.map_err(busy)?;
    let admins = store.count_users().await.map_err(busy)?;
    outln!(
        "database  ok   ({} {}, {admins} admin account{})",
        store.backend_name(),
        redact_url(&config.db),
        if admins == 1 { "" } else { "s" }
    )?;
    if admins == 0 {
        outln!("note: no admin yet; `cascade init` or the first `cascade parent` creates one")?;
    }
    Ok(())
}
