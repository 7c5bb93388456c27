//! WeChat sources at the parent (issue 13 §2–§3). Every WeChat feed is read through the
//! `source_chain` (default `weread_list → weread_cover → mp_list`); each claimed package tells
//! our child the chain without the sources found closed (`sources`, an extension), and the
//! child falls through to the next one when a source refuses, within the same allocation (no
//! attempt is spent).
//!
//! A source is `closed` when it refused logins on at least two nodes (or on every node with
//! a login of its kind, if fewer) with no success in between: then one alert, and the source
//! is left out of the packages except for one feed every `source_probe_every`, which tries it
//! first; the first success reopens it, with one more alert.

use crate::logins::LoginKind;
use crate::parent::AppState;
use crate::parent::alerts::{self, Alert};
use crate::parent::error::ApiResult;
use crate::protocol::time::to_wire;
use crate::protocol::wire::TaskPackage;
use chrono::TimeDelta;
use serde_json::{Value, json};

/// The sources a WeChat feed may be read through.
pub const SOURCES: &[&str] = &["weread_list", "weread_cover", "mp_list"];

/// The login kind a source needs.
pub fn kind_of(source: &str) -> LoginKind {
    if source == "mp_list" {
        LoginKind::Mp
    } else {
        LoginKind::Weread
    }
}

/// The configured chain: known sources, in order, once each (the default when none is known).
pub fn chain(state: &AppState) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &state.config.cascade.source_chain {
        let s = s.trim().to_ascii_lowercase();
        if SOURCES.contains(&s.as_str()) && !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        out = SOURCES.iter().map(|s| (*s).to_string()).collect();
    }
    out
}

/// The sources of the chain not found closed.
///
/// # Errors
/// Database failures.
pub async fn open_sources(state: &AppState) -> ApiResult<Vec<String>> {
    let rows = state.store.source_rows().await?;
    Ok(chain(state)
        .into_iter()
        .filter(|s| !rows.iter().any(|r| &r.source == s && r.state == "closed"))
        .collect())
}

/// The sources of the chain found closed (told to nodes in heartbeat answers, so a child
/// whose logins serve only closed sources stops asking for WeChat work).
///
/// # Errors
/// Database failures.
pub async fn closed_sources(state: &AppState) -> ApiResult<Vec<String>> {
    let open = open_sources(state).await?;
    Ok(chain(state)
        .into_iter()
        .filter(|s| !open.contains(s))
        .collect())
}

/// Whether some open source reads with `mp` logins, and with `weread` logins.
///
/// # Errors
/// Database failures.
pub async fn open_kinds(state: &AppState) -> ApiResult<(bool, bool)> {
    let open = open_sources(state).await?;
    let has = |k: LoginKind| open.iter().any(|s| kind_of(s) == k);
    Ok((has(LoginKind::Mp), has(LoginKind::Weread)))
}

/// The chain for the packages of one claim: closed sources left out, except a closed source
/// whose probe is due, which this claim takes (it goes first, for one feed); and every source
/// found closed.
async fn chain_now(state: &AppState) -> ApiResult<(Vec<String>, Option<String>, Vec<String>)> {
    let rows = state.store.source_rows().await?;
    let closed_all: Vec<String> = rows
        .iter()
        .filter(|r| r.state == "closed")
        .map(|r| r.source.clone())
        .collect();
    let now = state.clock.now();
    let next = now + probe_every(state);
    let mut open = Vec::new();
    let mut probe = None;
    for s in chain(state) {
        let closed = rows.iter().any(|r| r.source == s && r.state == "closed");
        if !closed {
            open.push(s);
        } else if probe.is_none() && state.store.take_source_probe(&s, now, next).await? {
            tracing::info!(source = %s, "probing a closed source with one feed");
            probe = Some(s);
        }
    }
    Ok((open, probe, closed_all))
}

fn probe_every(state: &AppState) -> TimeDelta {
    TimeDelta::seconds(
        i64::try_from(state.config.cascade.source_probe_every.max(60)).unwrap_or(1800),
    )
}

/// Sets `sources` on the WeChat feeds of claimed packages (our child reads it; a stock child
/// ignores it and reads the MP list).
///
/// # Errors
/// Database failures.
pub async fn annotate(state: &AppState, packages: &mut [TaskPackage]) -> ApiResult<()> {
    let wechat = |f: &crate::protocol::wire::PackageFeed| {
        f.source.as_deref().unwrap_or("wechat") == "wechat"
    };
    if !packages.iter().any(|p| p.feeds.iter().any(wechat)) {
        return Ok(());
    }
    let (open, mut probe, closed) = chain_now(state).await?;
    for package in packages.iter_mut() {
        for feed in package.feeds.iter_mut().filter(|f| wechat(f)) {
            let list = match feed.sources.take() {
                // The feed's own chain (set by an admin): its open sources, in its order; when
                // all of them are closed the feed still gets them (the admin asked for these
                // sources only: the child finds them refusing and the work waits, no attempt
                // spent) rather than sources the admin ruled out.
                Some(own) => {
                    let open_own: Vec<String> = own
                        .iter()
                        .filter(|s| SOURCES.contains(&s.as_str()) && !closed.contains(s))
                        .cloned()
                        .collect();
                    if open_own.is_empty() { own } else { open_own }
                }
                None => {
                    let mut list = open.clone();
                    if let Some(p) = probe.take() {
                        list.insert(0, p);
                    }
                    list
                }
            };
            feed.sources = Some(list);
        }
    }
    Ok(())
}

/// Learns from one report's result items: a success marks its source working (and reopens a
/// closed one); each refusal (`refused: [{source, error}]`, or a failure with reason `closed`)
/// is evidence that may close the source.
///
/// # Errors
/// Database failures.
pub async fn learn(state: &AppState, node_id: &str, results: &[Value]) -> ApiResult<()> {
    let now = state.clock.now();
    let mut refusals: Vec<(String, String)> = Vec::new();
    let mut read: Vec<(String, String)> = Vec::new();
    for item in results {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
        let source = text("source").filter(|s| SOURCES.contains(&s.as_str()));
        for r in item
            .get("refused")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(s) = r
                .get("source")
                .and_then(Value::as_str)
                .filter(|s| SOURCES.contains(s))
            {
                let error = r.get("error").and_then(Value::as_str).unwrap_or("refused");
                refusals.push((s.to_string(), error.chars().take(300).collect()));
            }
        }
        let Some(source) = source else { continue };
        let success = item
            .get("success")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if success {
            if let Some(feed) = text("feed_id").or_else(|| text("mp_id")) {
                read.push((source, feed));
            }
        } else if text("reason").as_deref() == Some("closed") {
            let error = text("error").unwrap_or_else(|| "refused".into());
            refusals.push((source, error.chars().take(300).collect()));
        }
    }
    for (source, feed) in &read {
        state
            .store
            .feeds_read_by(source, vec![feed.clone()], now)
            .await?;
    }
    let mut succeeded: Vec<&String> = read.iter().map(|(s, _)| s).collect();
    succeeded.dedup();
    for source in succeeded {
        if state.store.source_ok(source, now).await? {
            tracing::warn!(source = %source, "source reopened");
            alerts::raise(
                state,
                Alert::new(
                    "source_reopened",
                    format!("{source} works again"),
                    format!(
                        "The WeChat source {source} read a feed again; feeds use it from now on."
                    ),
                )
                .field("source", source.clone()),
            );
        }
    }
    if refusals.is_empty() {
        return Ok(());
    }
    let with_logins = state.store.nodes_with_usable_logins().await?;
    for (source, error) in refusals {
        let kind = kind_of(&source).as_str();
        let nodes = with_logins
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n);
        let needed = nodes.clamp(1, 2);
        let probe_at = now + probe_every(state);
        if state
            .store
            .source_refused(&source, node_id, &error, needed, now, probe_at)
            .await?
        {
            tracing::warn!(source = %source, error = %crate::telemetry::untrusted(&error), "source closed: it refuses logins of several nodes");
            alerts::raise(
                state,
                Alert::new(
                    "source_closed",
                    format!("{source} is closed"),
                    format!(
                        "The WeChat source {source} refused logins on {needed} node(s) with no success \
                         in between ({error}). Feeds go through the next sources of the chain; one \
                         feed tries {source} again every {} minutes.",
                        probe_every(state).num_minutes()
                    ),
                )
                .field("source", source.clone())
                .field("error", error.clone()),
            );
        }
    }
    Ok(())
}

/// `GET {P}/sources`: each source of the chain with its state and what serves it.
///
/// # Errors
/// Database failures.
pub async fn list(state: &AppState) -> ApiResult<Vec<Value>> {
    let rows = state.store.source_rows().await?;
    let logins = state.store.usable_logins().await?;
    let feeds = state.store.feeds_by_source().await?;
    let mut out = Vec::new();
    for source in chain(state) {
        let row = rows.iter().find(|r| r.source == source);
        let kind = kind_of(&source).as_str();
        out.push(json!({
            "source": source,
            "state": row.map_or("open", |r| r.state.as_str()),
            "since": row.and_then(|r| r.since).map(to_wire),
            "last_ok_at": row.and_then(|r| r.last_ok_at).map(to_wire),
            "last_error": row.and_then(|r| r.last_error.clone()),
            "refused_by_nodes": row.map_or(0, |r| r.refused_by.len()),
            "probe_at": row.and_then(|r| r.probe_at).map(to_wire),
            "login_kind": kind,
            "logins_usable": logins.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n),
            "feeds_served": feeds.iter().find(|(s, _)| *s == source).map_or(0, |(_, n)| *n),
        }));
    }
    Ok(out)
}
