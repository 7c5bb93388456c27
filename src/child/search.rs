//! Searches a child runs for its parent (issue 13 §6): a `search` command in a heartbeat
//! answer asks WeChat's `searchbiz` for accounts by name with one of the child's `mp` logins;
//! the candidates (never a cookie or token) go back to `POST {P}/node-commands/{id}/answer`.
//! A command repeats in heartbeat answers until answered; each id runs once.

use super::Shared;
use crate::fetch::FetchError;
use crate::fetch::wechat::WechatFetcher;
use crate::logins::LoginKind;
use crate::telemetry::{untrusted, untrusted_error};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most ids remembered (a command expires long before this many more arrive).
const MAX_SEEN: usize = 1000;

/// The searches this child runs, and the ids it has taken.
#[derive(Default)]
pub(super) struct Searches {
    running: JoinSet<()>,
    seen: HashSet<String>,
}

impl Searches {
    /// Starts the `search` commands of a heartbeat answer that are new.
    pub(super) fn take_commands(
        &mut self,
        shared: &Arc<Shared>,
        data: &Value,
        shutdown: &CancellationToken,
    ) {
        while self.running.try_join_next().is_some() {}
        for command in data["commands"].as_array().into_iter().flatten() {
            let (Some(id), Some("search")) = (command["id"].as_str(), command["type"].as_str())
            else {
                continue;
            };
            if self.seen.len() >= MAX_SEEN {
                self.seen.clear();
            }
            if !self.seen.insert(id.to_string()) {
                continue;
            }
            let query = command["query"].as_str().unwrap_or_default().to_string();
            let limit = command["limit"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(10);
            tracing::info!(command.id = %untrusted(id), "the parent asks for an account search");
            let (shared, id, stop) = (shared.clone(), id.to_string(), shutdown.clone());
            self.running.spawn(async move {
                tokio::select! {
                    () = run(&shared, &id, &query, limit) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    }
}

/// Runs one search and posts its answer.
async fn run(shared: &Shared, id: &str, query: &str, limit: usize) {
    let answer = match search(shared, query, limit).await {
        Ok(candidates) => json!({ "candidates": candidates }),
        Err(e) => {
            tracing::warn!(command.id = %untrusted(id), error = %e, "account search failed");
            json!({ "error": e.to_string() })
        }
    };
    if let Err(e) = shared.client.answer_command(id, &answer).await {
        tracing::warn!(command.id = %untrusted(id), error = %untrusted_error(&e), "could not answer the parent's search");
    }
}

/// `searchbiz` with each usable `mp` login in turn until one answers.
async fn search(shared: &Shared, query: &str, limit: usize) -> Result<Vec<Value>, FetchError> {
    if query.trim().is_empty() {
        return Err(FetchError::Parse("empty search".into()));
    }
    let mut tried = Vec::new();
    let mut last = None;
    loop {
        let now = chrono::Utc::now();
        let Some(login) = shared.logins.pick(LoginKind::Mp, now) else {
            break;
        };
        if tried.contains(&login.id) {
            break;
        }
        tried.push(login.id.clone());
        let fetcher = WechatFetcher::new(
            shared.http.clone(),
            &shared.config.cascade.wechat_base_url,
            login.secrets.token.clone().unwrap_or_default(),
            login.secrets.cookie_header(),
            shared.pacer(&login.id),
        )
        .with_budget(shared.reserve_for(&login.id));
        match fetcher.search(query, limit).await {
            Ok(found) => {
                shared.logins.mark_ok(&login.id, chrono::Utc::now());
                return Ok(found);
            }
            Err(e @ FetchError::SessionExpired(_)) => {
                let same = shared
                    .logins
                    .get(&login.id)
                    .is_some_and(|l| l.secrets == login.secrets);
                if same {
                    tracing::warn!(login.id = %login.id, error = %e, "WeChat login expired");
                    shared.logins.mark_expired(&login.id, &e.to_string());
                }
                last = Some(e);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| FetchError::SessionExpired("no usable mp login".into())))
}
