//! `cascade dispatch` and `cascade allocations`: dispatching work and reading what became of
//! it, locally or on a running parent (`--url`).

use super::admin::Api;
use super::table::{Table, print, text};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::time::Duration;

/// `cascade dispatch [TASK]`: one task, or every enabled task.
pub async fn dispatch(api: &Api, json: bool, task: Option<String>) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner().with_message("dispatching");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let path = match &task {
        Some(id) => format!("/dispatch-task?task_id={id}"),
        None => "/dispatch-task".to_string(),
    };
    let result = api.post(&path, json!({})).await;
    spinner.finish_and_clear();
    let data = result?;
    print(json, &data, |d| {
        let mut t = Table::new(&[
            "TASK",
            "NAME",
            "FEEDS",
            "CREATED",
            "ALREADY OPEN",
            "MISSING",
        ]);
        let tasks = d["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![d.clone()]);
        for x in &tasks {
            t.row(vec![
                text(&x["id"]),
                text(&x["name"]),
                text(&x["feed_count"]),
                text(&x["created"]),
                text(&x["skipped_open"]),
                text(&x["missing"]),
            ]);
        }
        t
    })
}

/// An allocation's feeds: the only one, or the first and how many more.
fn feeds_cell(a: &Value) -> String {
    let ids: Vec<String> = a["feed_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    match ids.as_slice() {
        [] => text(&a["feed_count"]),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

/// `cascade allocations`
pub async fn allocations(
    api: &Api,
    json: bool,
    status: Option<String>,
    node: Option<String>,
    task: Option<String>,
    limit: u32,
) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={limit}")];
    for (k, v) in [("status", status), ("node_id", node), ("task_id", task)] {
        if let Some(v) = v {
            query.push(format!("{k}={v}"));
        }
    }
    let data = api
        .get(&format!("/allocations?{}", query.join("&")))
        .await?;
    print(json, &data, |d| {
        let mut t = Table::new(&[
            "ID",
            "TASK",
            "NODE",
            "STATUS",
            "FEEDS",
            "ATTEMPT",
            "DISPATCHED",
            "NEXT ATTEMPT",
            "REASON",
            "ERROR",
        ]);
        for a in d["list"].as_array().into_iter().flatten() {
            let node = if a["node_name"].is_null() {
                &a["assigned_node_id"]
            } else {
                &a["node_name"]
            };
            t.row(vec![
                text(&a["id"]),
                text(&a["task_name"]),
                text(node),
                text(&a["status"]),
                feeds_cell(a),
                format!("{}/{}", text(&a["attempt"]), text(&a["max_attempts"])),
                text(&a["dispatched_at"]),
                // When a waiting allocation may be claimed again (a retry's backoff).
                if a["status"] == "pending" {
                    text(&a["available_at"])
                } else {
                    "-".into()
                },
                text(&a["reason"]),
                text(&a["error_message"]),
            ]);
        }
        t.footer(format!(
            "{} of {} shown",
            d["list"].as_array().map_or(0, Vec::len),
            text(&d["total"])
        ));
        t
    })
}
