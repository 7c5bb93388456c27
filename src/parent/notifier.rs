//! Wake-ups: long-polls on this parent are woken directly, long-polls on the other parents of
//! a shared PostgreSQL database through `NOTIFY`; children are told over HTTP (PROTOCOL §10)
//! in the background, after the dispatch committed.

use super::AppState;
use super::callback::CallError;
use crate::protocol::time::to_wire;
use crate::store::{CreatedAllocation, Store};
use crate::telemetry::untrusted_error;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Wakes claims waiting in long-poll when work may have appeared, and the blocked claims of
/// one node when its block may have ended.
#[derive(Debug, Default)]
pub struct Notifier {
    wake: Notify,
    peers: Option<Store>,
    nodes: Mutex<HashMap<String, Arc<Notify>>>,
    /// Nodes with a command waiting (a login request made on this parent).
    commands: Mutex<HashSet<String>>,
    /// Requests waiting for a node's answer to a command (a search).
    answers: Notify,
}

/// A blocked claim's registration: [`NodeWait::notified`] completes at the next
/// [`Notifier::wake_node`] for its node; dropping it unregisters.
pub struct NodeWait<'a> {
    notifier: &'a Notifier,
    node_id: String,
    notify: Arc<Notify>,
}

impl NodeWait<'_> {
    /// The node's wake-up signal.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for NodeWait<'_> {
    fn drop(&mut self) {
        let mut nodes = self
            .notifier
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Two references left: the map's and ours; no other waiter of this node.
        if Arc::strong_count(&self.notify) <= 2 {
            nodes.remove(&self.node_id);
        }
    }
}

impl Notifier {
    /// A notifier that also tells the other parents of `store` (when it has any).
    pub fn new(store: Store) -> Self {
        Self {
            wake: Notify::new(),
            peers: Some(store),
            nodes: Mutex::default(),
            commands: Mutex::default(),
            answers: Notify::new(),
        }
    }

    /// Wakes every waiting claim here and on the other parents (they re-check and sleep
    /// again if there is nothing for them). Call it after the change committed.
    pub fn wake_all(&self) {
        self.wake_local();
        self.wake_peers();
    }

    /// Wakes the waiting claims and requests of the other parents of a shared database.
    pub fn wake_peers(&self) {
        if let Some(store) = self.peers.clone().filter(Store::has_peers) {
            tokio::spawn(async move {
                if let Err(e) = store.wake_peers().await {
                    tracing::warn!(error = %e, "cannot wake the other parents");
                }
            });
        }
    }

    /// Wakes the claims and the requests waiting for a command's answer on this parent only.
    pub fn wake_local(&self) {
        self.wake.notify_waiters();
        self.answers.notify_waiters();
    }

    /// Wakes the requests waiting for a command's answer, here and on the other parents
    /// (they read the answer from the database). Call it after the answer committed.
    pub fn answer_arrived(&self) {
        self.answers.notify_waiters();
        self.wake_peers();
    }

    /// A future that completes at the next [`Notifier::answer_arrived`] (or wake-up of this
    /// parent).
    pub fn answered(&self) -> tokio::sync::futures::Notified<'_> {
        self.answers.notified()
    }

    /// A future that completes at the next [`Notifier::wake_all`].
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Registers a blocked claim of `node_id` (see [`NodeWait`]).
    pub fn node_wait(&self, node_id: &str) -> NodeWait<'_> {
        let notify = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node_id.to_string())
            .or_default()
            .clone();
        NodeWait {
            notifier: self,
            node_id: node_id.to_string(),
            notify,
        }
    }

    /// How many nodes have a claim held in long-poll here (for tests and metrics).
    pub fn waiting_nodes(&self) -> usize {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Notes that `node_id` has a command waiting and wakes its long-poll here, which then
    /// answers at once with `commands_pending` (the node fetches the command by heartbeat).
    pub fn command_for(&self, node_id: &str) {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node_id.to_string());
        self.wake_node(node_id);
    }

    /// Whether a command waits for `node_id`; the note is taken.
    pub fn take_command(&self, node_id: &str) -> bool {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id)
    }

    /// Wakes the blocked claims of one node on this parent (its capacity, cooldown or
    /// session may have changed). Cheap when nothing waits.
    pub fn wake_node(&self, node_id: &str) {
        let notify = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}

/// Wakes this parent's long-polls whenever another parent on the same database signals work,
/// until shutdown. Returns at once when the store has no peers (SQLite).
pub async fn listen_to_peers(state: AppState) {
    let shutdown = state.shutdown.clone();
    loop {
        let listener = tokio::select! {
            l = state.store.wake_listener() => l,
            () = shutdown.cancelled() => return,
        };
        match listener {
            Ok(None) => return,
            Ok(Some(mut listener)) => loop {
                tokio::select! {
                    got = listener.next() => match got {
                        Ok(()) => state.notifier.wake_local(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the wake-up channel of the other parents");
                            break;
                        }
                    },
                    () = shutdown.cancelled() => return,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen to the other parents"),
        }
        // Work may have been announced while the channel was down.
        state.notifier.wake_local();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One task's share of a dispatch, for notify bodies.
#[derive(Debug, Clone)]
pub struct RunNotice {
    /// The task.
    pub task_id: String,
    /// The run.
    pub schedule_run_id: String,
    /// What this run created for the task.
    pub created: RunCreated,
}

/// A summary of what one run created for one task: enough to tell each child about it, and
/// bounded by the number of nodes, not of allocations.
#[derive(Debug, Default, Clone)]
pub struct RunCreated {
    /// Allocations created.
    pub allocations: usize,
    /// Feeds in them.
    pub feeds: i64,
    /// The first allocation created.
    pub first: Option<String>,
    /// The first allocation created for each assigned node.
    pub first_by_node: HashMap<String, String>,
}

impl RunCreated {
    /// Counts `a` in.
    pub fn add(&mut self, a: &CreatedAllocation) {
        self.allocations += 1;
        self.feeds += a.feed_count;
        if self.first.is_none() {
            self.first = Some(a.id.clone());
        }
        if let Some(node) = &a.assigned_node_id {
            self.first_by_node
                .entry(node.clone())
                .or_insert_with(|| a.id.clone());
        }
    }
}

/// Sends `new_task` notifications for `runs` to every online child with a callback URL, in
/// the background; failures are logged, never retried.
pub fn notify_children(state: &AppState, runs: Vec<RunNotice>) {
    let runs: Vec<RunNotice> = runs
        .into_iter()
        .filter(|r| r.created.allocations > 0)
        .collect();
    if runs.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let now = state.clock.now();
        let offline_after = i64::try_from(state.config.cascade.offline_after).unwrap_or(180);
        let targets = match state.store.notify_targets(now, offline_after).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list nodes to notify");
                return;
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for run in &runs {
            let created = &run.created;
            for t in &targets {
                let first = created
                    .first_by_node
                    .get(&t.node_id)
                    .or(created.first.as_ref());
                let body = json!({
                    "type": "new_task", "allocation_id": first, "feed_count": created.feeds,
                    "timestamp": to_wire(now), "task_id": run.task_id,
                    "schedule_run_id": run.schedule_run_id, "allocation_count": created.allocations,
                });
                let auth = super::ops::notify_authorization(&t.api_key, &t.secret_hash);
                let callbacks = state.callbacks.clone();
                let url = t.callback_url.clone();
                let node_id = t.node_id.clone();
                sends.spawn(async move {
                    match callbacks.post(&url, &auth, &body).await {
                        Ok(s) if s.is_success() => tracing::debug!(node.id = %node_id, "notified"),
                        Ok(s) => tracing::info!(node.id = %node_id, status = s.as_u16(), "notify refused"),
                        Err(CallError::Refused(why)) => tracing::info!(node.id = %node_id, reason = %why, "notify not sent"),
                        Err(CallError::Failed(e)) => tracing::info!(node.id = %node_id, error = %untrusted_error(&e), "notify failed"),
                    }
                });
            }
        }
        while sends.join_next().await.is_some() {}
    });
}
