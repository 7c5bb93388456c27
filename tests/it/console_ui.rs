//! The operator's console in real headless Chromium (issue 16): each action an operator takes
//! from the dashboard, checked in what the parent then holds. Skipped (said on stderr) when
//! chromedriver is missing, unless `CASCADE_REQUIRE_BROWSER=1`.

use crate::helpers::browser::Browser;
use crate::helpers::{PASSWORD, TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use werss_cascade::parent::sampler::Sampler;

/// The text of the first element matching `css`, once it satisfies `test` (a JS expression
/// over `t`).
async fn text_when(browser: &Browser, css: &str, test: &str) -> String {
    let script = format!(
        "const e = document.querySelector({css:?}); const t = e ? e.textContent : null; return t !== null && ({test}) ? t : null;"
    );
    browser
        .until(&script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_added_its_credentials_shown_once_rotated_tested_and_removed() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    browser.login(&p.url(""), PASSWORD).await;
    browser.tab("nodes").await;
    browser.type_into("#node-name", "console-node").await;
    browser.type_into("#node-capacity", "6").await;
    browser.click("#node-create").await;
    let shown = browser
        .until("const k = document.querySelector('#cred-key').value, s = document.querySelector('#cred-secret').value;
                return !document.querySelector('#credentials').hidden && k && s ? [k, s, document.querySelector('#cred-snippet').value] : null;")
        .await;
    let (key, secret, snippet) = (
        shown[0].as_str().expect("key").to_string(),
        shown[1].as_str().expect("secret").to_string(),
        shown[2].as_str().expect("snippet").to_string(),
    );
    for line in [
        format!("parent_api_url: {}", p.url("")),
        format!("api_key: {key}"),
        format!("api_secret: {secret}"),
        "capacity: 6".to_string(),
    ] {
        assert!(snippet.contains(&line), "{line} in {snippet}");
    }
    let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
    let id = nodes.ok()[0]["id"].as_str().expect("id").to_string();
    assert!(
        !nodes.text.contains(&secret),
        "the parent never lists a secret"
    );
    // The credentials shown work: the node's heartbeat is accepted and it comes online.
    let node = TestNode {
        id: id.clone(),
        key,
        secret: secret.clone(),
    };
    p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
        .await
        .ok();
    text_when(
        &browser,
        "#nodes tbody tr",
        "t.includes('console-node') && t.includes('online') && t.includes('0/6')",
    )
    .await;

    // Edited from its row: a new name and capacity.
    browser.click("#nodes button.edit").await;
    text_when(&browser, "#node-form-title", "t === 'Edit console-node'").await;
    browser.type_into("#node-name", "console-node-2").await;
    browser.type_into("#node-capacity", "8").await;
    browser.click("#node-create").await;
    text_when(
        &browser,
        "#nodes tbody tr",
        "t.includes('console-node-2') && t.includes('0/8')",
    )
    .await;
    let edited = p.get(&cascade(&format!("/nodes/{id}")), &p.admin()).await;
    assert_eq!(
        (
            &edited.ok()["name"],
            &edited.ok()["sync_config"]["max_capacity"]
        ),
        (&json!("console-node-2"), &json!(8))
    );

    // "Done" takes the secret out of the page.
    browser.click("#cred-done").await;
    let gone = browser
        .until(&format!(
            "return document.querySelector('#credentials').hidden &&
                [...document.querySelectorAll('input, textarea')].every(i => !i.value.includes({secret:?})) &&
                !document.documentElement.innerHTML.includes({secret:?}) ? 'gone' : null;"
        ))
        .await;
    assert_eq!(gone, "gone");

    // Rotating, once confirmed, issues new credentials: the old secret stops working.
    browser.click("#nodes button.rotate").await;
    browser.confirm().await;
    let rotated = browser
        .until(&format!(
            "const s = document.querySelector('#cred-secret').value; return s && s !== {secret:?} ? [document.querySelector('#cred-key').value, s] : null;"
        ))
        .await;
    p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
        .await
        .err(401);
    let fresh = TestNode {
        id: id.clone(),
        key: rotated[0].as_str().expect("key").into(),
        secret: rotated[1].as_str().expect("secret").into(),
    };
    p.post(&cascade("/heartbeat"), &fresh.auth(), json!({}))
        .await
        .ok();
    browser.click("#cred-done").await;

    // Test connection: the node has no callback, and the page says why that is fine.
    browser.click("#nodes button.test").await;
    let tested = text_when(&browser, "#test-result", "t.length > 0").await;
    assert!(
        tested.starts_with("console-node-2: node has no callback_url (it is online"),
        "{tested}"
    );
    browser.snap("nodes").await;

    // Removing asks first; kept, the node stays.
    browser.click("#nodes button.remove").await;
    browser
        .until("return document.querySelector('#confirm').open;")
        .await;
    browser.click("#confirm-no").await;
    let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
    assert_eq!(nodes.ok().as_array().map(Vec::len), Some(1));
    browser.click("#nodes button.remove").await;
    browser.confirm().await;
    text_when(&browser, "#nodes tbody tr", "t === 'nothing here'").await;
    let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
    assert_eq!(nodes.ok(), &json!([]));

    // Every action is in the audit log under the admin's name, and no secret is.
    browser.tab("activity").await;
    let actions = browser
        .until("const rows = [...document.querySelectorAll('#audit tbody tr')].map(r => r.children[1].textContent + ' ' + r.children[2].textContent);
                return rows.some(r => r.includes('DELETE /nodes/{id}')) ? rows : null;")
        .await;
    let actions: Vec<&str> = actions
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "admin POST /nodes",
        "admin POST /nodes/{id}/credentials",
        "admin POST /nodes/{id}/test-connection",
        "admin PUT /nodes/{id}",
        "admin DELETE /nodes/{id}",
    ] {
        assert!(actions.contains(&wanted), "{wanted} in {actions:?}");
    }
    let audit = p.get(&cascade("/audit?limit=200"), &p.admin()).await;
    assert!(!audit.text.contains(&secret) && !audit.text.contains(&fresh.secret));
    browser.snap("activity").await;
    browser.close().await;
    p.shutdown().await;
}

/// Two allocations that failed for good after a retry each, and 60 waiting.
async fn failed_and_waiting(p: &TestParent) -> (TestNode, String, String) {
    let node = p
        .online_node("worker", json!({"capacity": 100, "version": "test-1"}))
        .await;
    let doomed = p.feeds(12_000_000, 2).await;
    let doomed_task = p.task(&doomed).await;
    p.dispatch(&doomed_task).await;
    for (reason, error) in [
        ("network", "connection reset"),
        ("not_found", "account gone"),
    ] {
        for _ in 0..2 {
            let pkg = p.claim_one(&node).await;
            p.status(
                &node,
                &pkg,
                "failed",
                json!({"reason": reason, "error_message": error}),
            )
            .await
            .ok();
        }
        p.clock.advance(TimeDelta::hours(1));
        p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
            .await
            .ok();
    }
    let waiting = p.feeds(12_100_000, 60).await;
    let waiting_task = p.task(&waiting).await;
    p.dispatch(&waiting_task).await;
    (node, doomed_task, waiting_task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_page_filter_open_in_the_drawer_and_retry_or_cancel_in_bulk() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    let (_node, _doomed, waiting_task) = failed_and_waiting(&p).await;
    browser.login(&p.url(""), PASSWORD).await;
    browser.tab("allocations").await;

    // Paging: 62 allocations, 50 a page.
    text_when(&browser, "#alloc-pages .page-label", "t === '1–50 of 62'").await;
    browser.click("#alloc-pages .next").await;
    text_when(&browser, "#alloc-pages .page-label", "t === '51–62 of 62'").await;

    // The dead letters: the two failed allocations, with their last error.
    browser.click("#dead-letters").await;
    text_when(&browser, "#alloc-pages .page-label", "t === '1–2 of 2'").await;
    let errors = browser
        .until("const rows = [...document.querySelectorAll('#allocations tbody tr')]; return rows.length === 2 ? rows.map(r => r.children[2].textContent + ' ' + r.children[7].textContent) : null;")
        .await;
    assert_eq!(
        errors,
        json!(["failed account gone", "failed account gone"])
    );

    // The drawer: the feed by name, both attempts with their errors.
    browser.click("#allocations tbody tr.clickable").await;
    let attempts = browser
        .until("const rows = [...document.querySelectorAll('#drawer-attempts tbody tr')]; return !document.querySelector('#drawer').hidden && rows.length === 2 ? rows.map(r => [r.children[0].textContent, r.children[1].textContent, r.children[3].textContent, r.children[4].textContent]) : null;")
        .await;
    assert_eq!(
        attempts,
        json!([
            ["1", "worker", "network", "connection reset"],
            ["2", "worker", "not_found", "account gone"]
        ])
    );
    let feed = text_when(&browser, "#drawer-feeds tbody tr", "t.length > 0").await;
    assert!(feed.starts_with("feed MP_WXS_1200000"), "{feed}");
    browser.snap("allocation-drawer").await;
    browser.click("#drawer-close").await;

    // Retry everything the filter matches: both go back to pending, attempts reset.
    browser.click("#bulk-retry").await;
    browser.confirm().await;
    let result = text_when(&browser, "#bulk-result", "t.length > 0").await;
    assert_eq!(result, "2 of 2 retried");
    let failed = p
        .get(&cascade("/allocations?status=failed"), &p.admin())
        .await;
    assert_eq!(failed.ok()["total"], 0);
    let pending = p
        .get(&cascade("/allocations?status=pending"), &p.admin())
        .await;
    assert_eq!(pending.ok()["total"], 62);

    // Cancel the waiting task's work by a filter (task + pending).
    browser.click("#alloc-clear").await;
    text_when(&browser, "#alloc-pages .page-label", "t === '1–50 of 62'").await;
    browser.snap("allocations").await;
    browser
        .click(&format!("#alloc-task option[value='{waiting_task}']"))
        .await;
    browser.click("#alloc-status option[value='pending']").await;
    text_when(&browser, "#alloc-pages .page-label", "t === '1–50 of 60'").await;
    browser.click("#bulk-cancel").await;
    browser.confirm().await;
    let result = text_when(&browser, "#bulk-result", "t.length > 0").await;
    assert_eq!(result, "60 of 60 cancelled");
    let cancelled = p
        .get(
            &cascade(&format!(
                "/allocations?task_id={waiting_task}&status=failed&reason=cancelled"
            )),
            &p.admin(),
        )
        .await;
    assert_eq!(cancelled.ok()["total"], 60);
    browser.close().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_page_search_and_pause_and_tasks_are_created_and_edited() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    let feeds = p.feeds(13_000_000, 60).await;
    browser.login(&p.url(""), PASSWORD).await;
    browser.tab("feeds").await;
    text_when(&browser, "#feed-pages .page-label", "t === '1–50 of 60'").await;
    browser.type_into("#feed-q", "13000059").await;
    text_when(&browser, "#feed-pages .page-label", "t === '1–1 of 1'").await;
    let row = text_when(&browser, "#feeds tbody tr", "t.includes('13000059')").await;
    assert!(row.contains("enabled"), "{row}");
    browser.click("#feeds button.pause").await;
    text_when(&browser, "#feeds tbody tr", "t.includes('paused')").await;
    let feed = p
        .get(&cascade(&format!("/feeds/{}", feeds[59])), &p.admin())
        .await;
    assert_eq!(feed.ok()["status"], 0);
    browser.snap("feeds").await;

    // Its history: the allocations view filtered on it (none yet).
    browser.click("#feeds button.history").await;
    browser
        .until("const v = document.querySelector('.view[data-view=allocations]'); return v && !v.hidden;")
        .await;
    let filtered = text_when(&browser, "#alloc-pages .page-label", "t === '0–0 of 0'").await;
    assert_eq!(filtered, "0–0 of 0");
    let picked = browser
        .until("const v = document.querySelector('#alloc-feed').value; return v ? v : null;")
        .await;
    assert_eq!(picked, "feed MP_WXS_13000059");

    // An RSS feed added from its form.
    browser.tab("feeds").await;
    browser.type_into("#rss-name", "Example RSS").await;
    browser
        .type_into("#rss-url", "https://example.com/feed.xml")
        .await;
    browser.click("#feed-rss button[type=submit]").await;
    text_when(&browser, "#notice", "t.includes('Example RSS')").await;
    let rss = p.get(&cascade("/feed-status?source=rss"), &p.admin()).await;
    assert_eq!(rss.ok()["total"], 1);
    assert_eq!(rss.ok()["list"][0]["mp_name"], "Example RSS");

    // A task over every feed, then edited and disabled from its row.
    browser.tab("tasks").await;
    browser.type_into("#task-name", "every feed").await;
    browser.type_into("#task-cron", "*/30 * * * *").await;
    browser.click("#task-all").await;
    browser.click("#task-save").await;
    // Its cron is shown with the zone the parent reads it in.
    text_when(
        &browser,
        "#tasks tbody tr",
        "t.includes('every feed') && t.includes('*/30 * * * * (')",
    )
    .await;
    let tasks = p.get(&cascade("/message-tasks"), &p.admin()).await;
    let task = tasks.ok()[0].clone();
    assert_eq!(
        (&task["name"], &task["cron_exp"], &task["all_feeds"]),
        (&json!("every feed"), &json!("*/30 * * * *"), &json!(true))
    );
    browser.click("#tasks button.edit").await;
    text_when(&browser, "#task-form-title", "t === 'Edit every feed'").await;
    browser.type_into("#task-priority", "40").await;
    browser.click("#task-save").await;
    text_when(&browser, "#tasks tbody tr", "t.includes('40')").await;
    browser.click("#tasks button.toggle").await;
    text_when(&browser, "#tasks tbody tr", "t.includes('disabled')").await;
    let id = task["id"].as_str().expect("id");
    let task = p
        .get(&cascade(&format!("/message-tasks/{id}")), &p.admin())
        .await;
    assert_eq!(
        (&task.ok()["priority"], &task.ok()["status"]),
        (&json!(40), &json!(0))
    );
    // Cron firings held and let go from the view; every parent of the database obeys.
    browser.click("#scheduler-toggle").await;
    browser.confirm().await;
    text_when(
        &browser,
        "#scheduler-state",
        "t.startsWith('Cron firings are held')",
    )
    .await;
    let held = p.get(&cascade("/scheduler"), &p.admin()).await;
    assert_eq!(held.ok()["running"], false);
    browser.click("#scheduler-toggle").await;
    text_when(
        &browser,
        "#scheduler-state",
        "t.startsWith('Cron firings dispatch')",
    )
    .await;
    let running = p.get(&cascade("/scheduler"), &p.admin()).await;
    assert_eq!(running.ok()["running"], true);
    browser.snap("tasks").await;
    browser.close().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_draws_throughput_feed_age_and_health_from_a_known_fixture() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    let a = p.online_node("node-a", json!({"capacity": 10})).await;
    let b = p.online_node("node-b", json!({"capacity": 10})).await;
    let feeds = p.feeds(14_000_000, 6).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    // Minute one: node-a completes 3. Minute two: node-a fails 1 for good, node-b completes 2.
    for _ in 0..3 {
        let pkg = p.claim_one(&a).await;
        p.complete(&a, &pkg).await.ok();
    }
    p.clock.advance(TimeDelta::minutes(1));
    let pkg = p.claim_one(&a).await;
    p.status(&a, &pkg, "failed", json!({"reason": "not_found"}))
        .await
        .ok();
    for _ in 0..2 {
        let pkg = p.claim_one(&b).await;
        p.complete(&b, &pkg).await.ok();
    }
    // The parent's once-a-minute sample of each node, at the test clock.
    Sampler::new(p.state.clone())
        .run_once()
        .await
        .expect("sampled");
    browser.login(&p.url(""), PASSWORD).await;
    let totals = browser
        .until("const rows = [...document.querySelectorAll('#throughput-chart .chart-row')]; return rows.length === 2 ? rows.map(r => r.querySelector('.chart-name').textContent + ': ' + r.querySelector('.chart-total').textContent) : null;")
        .await;
    let mut totals: Vec<String> = totals
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    totals.sort();
    assert_eq!(
        totals,
        vec![
            "node-a: 3 completed, 1 failed".to_string(),
            "node-b: 2 completed, 0 failed".to_string()
        ]
    );
    let bars = browser
        .until("const c = document.querySelectorAll('#throughput-chart rect.completed-bar').length, f = document.querySelectorAll('#throughput-chart rect.failed-bar').length; return c ? [c, f] : null;")
        .await;
    assert_eq!(bars, json!([2, 1]), "a bar per node and minute with work");
    let headline = text_when(&browser, "#age-headline", "t.length > 0").await;
    assert_eq!(headline, "6 feed(s) with nothing newer than 24 h");
    let never = browser
        .until("const t = [...document.querySelectorAll('#age-chart text')].map(e => e.textContent); return t.length ? t : null;")
        .await;
    let never: Vec<&str> = never
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(never.last(), Some(&"6"), "the 'never' bar: {never:?}");
    let health = browser
        .until("const rows = [...document.querySelectorAll('#health-chart .chart-row')]; return rows.length === 2 ? rows.map(r => r.children[0].textContent) : null;")
        .await;
    let mut health: Vec<&str> = health
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    health.sort_unstable();
    assert_eq!(health, ["node-a", "node-b"]);
    let online = browser
        .until("const n = document.querySelectorAll('#health-chart rect.h-online').length; return n ? n : null;")
        .await;
    assert_eq!(online, 2, "each node's sampled minute shows online");
    browser.snap("overview").await;
    browser.close().await;
    p.shutdown().await;
}
