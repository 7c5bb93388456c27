//! `cascade dispatch` and `cascade allocations [show ID]`: dispatching work and reading what
//! became of it, locally or on a running parent (`--url`).

use super::api::Api;
use super::colour;
use super::out::{out, outln};
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
                colour::state(&text(&a["status"])),
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

/// `cascade allocations show ID`: one allocation (`GET {P}/allocations/{id}`), its feeds, and
/// its attempts with what became of each.
pub async fn allocation(api: &Api, json: bool, id: &str) -> anyhow::Result<()> {
    let a = api.get(&format!("/allocations/{id}")).await?;
    if json {
        return print(json, &a, Table::pairs);
    }
    let node = if a["node_name"].is_null() {
        text(&a["assigned_node_id"])
    } else {
        text(&a["node_name"])
    };
    let waiting = a["status"] == "pending";
    let mut head = Table::new(&["ALLOCATION", &text(&a["id"])]);
    for (field, value) in [
        (
            "task",
            format!("{} ({})", text(&a["task_name"]), text(&a["task_id"])),
        ),
        ("status", colour::state(&text(&a["status"]))),
        ("node", node),
        (
            "attempt",
            format!("{}/{}", text(&a["attempt"]), text(&a["max_attempts"])),
        ),
        ("dispatched (UTC)", text(&a["dispatched_at"])),
        ("lease expires (UTC)", text(&a["lease_expires_at"])),
        // When a waiting allocation may be claimed again (a retry's backoff).
        (
            "next attempt (UTC)",
            if waiting {
                text(&a["available_at"])
            } else {
                "-".into()
            },
        ),
        ("reason", text(&a["reason"])),
        ("error", text(&a["error_message"])),
    ] {
        head.row(vec![field.into(), value]);
    }
    out!("{head}")?;
    let feeds = a["feeds"].as_array().cloned().unwrap_or_default();
    outln!("\nfeeds ({}):", feeds.len())?;
    let mut t = Table::new(&["ID", "NAME", "SOURCE", "STATE"]);
    for f in &feeds {
        let state = match f["status"].as_i64() {
            Some(1) => "enabled",
            Some(_) => "paused",
            None => "-",
        };
        let name = if f["name"].is_null() {
            "(deleted)".to_string()
        } else {
            text(&f["name"])
        };
        t.row(vec![
            text(&f["id"]),
            name,
            text(&f["source"]),
            colour::state(state),
        ]);
    }
    out!("{t}")?;
    let attempts = a["attempts"].as_array().cloned().unwrap_or_default();
    outln!(
        "\nattempts that ended without completing ({}):",
        attempts.len()
    )?;
    if attempts.is_empty() {
        return outln!("none");
    }
    let mut t = Table::new(&["#", "NODE", "OUTCOME", "REASON", "ERROR", "AT (UTC)"]);
    for x in &attempts {
        let node = if x["node_name"].is_null() {
            &x["node_id"]
        } else {
            &x["node_name"]
        };
        t.row(vec![
            text(&x["attempt"]),
            text(node),
            colour::state(&text(&x["outcome"])),
            text(&x["reason"]),
            text(&x["error_message"]),
            text(&x["at"]),
        ]);
    }
    out!("{t}")
}
