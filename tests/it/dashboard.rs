//! The dashboard in real headless Chromium, driven over W3C WebDriver (chromedriver): log in,
//! see a node come online, press dispatch, see the allocations appear. Skipped (said once on
//! stderr) when chromedriver is missing, unless `CASCADE_REQUIRE_BROWSER=1`.

use crate::helpers::browser::Browser;
use crate::helpers::{PASSWORD, TestParent};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_logs_in_sees_a_node_come_online_and_dispatches() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    let feeds = p.feeds(11_000_000, 3).await;
    p.task(&feeds).await;

    // The operator sits in UTC+8: times must show in that zone.
    browser.time_zone("Asia/Shanghai").await;
    browser.goto(&p.url("/")).await;
    browser.type_into("#password", "wrong").await;
    browser.click("#login").await;
    let refused = browser
        .until("return document.querySelector('#login-error').textContent;")
        .await;
    assert!(!refused.as_str().unwrap_or_default().is_empty());

    browser.type_into("#password", PASSWORD).await;
    browser.click("#login").await;
    browser
        .until("return !document.querySelector('#app').hidden;")
        .await;

    // The planner's line: three feeds, nothing to read them with yet.
    let plan = browser
        .until("const t = document.querySelector('#plan').textContent; return t ? t : null;")
        .await;
    let plan = plan.as_str().unwrap_or_default();
    assert!(
        plan.starts_with("3 WeChat feeds, 0.0 articles a day; no usable WeRead login"),
        "{plan}"
    );

    // A node comes online: the live refresh shows it.
    p.online_node("browser-node", json!({"capacity": 3, "version": "test-1"}))
        .await;
    browser.tab("nodes").await;
    let row = browser
        .until("const r = [...document.querySelectorAll('#nodes tbody tr')].find(r => r.textContent.includes('browser-node')); return r && r.textContent.includes('online') ? r.textContent : null;")
        .await;
    assert!(row.as_str().unwrap_or_default().contains("0/3"), "{row}");
    // Its last heartbeat in the viewer's zone (UTC+8), with how long ago.
    let nodes = p.get(&crate::helpers::cascade("/nodes"), &p.admin()).await;
    let beat = nodes.ok()[0]["last_heartbeat_at"]
        .as_str()
        .expect("beat")
        .to_string();
    let beat = chrono::NaiveDateTime::parse_from_str(&beat, "%Y-%m-%dT%H:%M:%S%.f").expect("time");
    let local = (beat + chrono::TimeDelta::hours(8))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let cell = browser
        .until("const r = document.querySelector('#nodes tbody tr'); return r ? r.children[6].textContent : null;")
        .await;
    let cell = cell.as_str().unwrap_or_default();
    assert!(
        cell.starts_with(&format!("{local} (")) && cell.ends_with(" ago)"),
        "{cell} for {beat} UTC"
    );

    // Dispatch from the task's button: the allocations appear.
    browser.tab("tasks").await;
    browser
        .until("return document.querySelectorAll('#tasks tbody tr:not(.empty)').length === 1;")
        .await;
    browser.click("#tasks button.dispatch").await;
    let result = browser
        .until("const t = document.querySelector('#dispatch-result').textContent; return t.includes('created') ? t : null;")
        .await;
    assert_eq!(result, "dispatched: 3 allocation(s) created");
    browser.tab("allocations").await;
    let statuses = browser
        .until("const rows = [...document.querySelectorAll('#allocations tbody tr')]; return rows.length === 3 ? rows.map(r => r.children[2].textContent) : null;")
        .await;
    assert_eq!(statuses, json!(["pending", "pending", "pending"]));

    // "Check now" on a feed whose allocation waits: it goes to the head of the claims.
    browser.tab("feeds").await;
    browser.click("#feeds button.check").await;
    let checked = browser
        .until(
            "const t = document.querySelector('#check-result').textContent; return t ? t : null;",
        )
        .await;
    assert!(
        checked
            .as_str()
            .unwrap_or_default()
            .ends_with(": its pending allocation goes first"),
        "{checked}"
    );

    // Disable the node from its row, once confirmed: the parent records it and the row says
    // so.
    browser.tab("nodes").await;
    browser.click("#nodes button.toggle").await;
    browser.confirm().await;
    browser
        .until("const r = document.querySelector('#nodes tbody tr'); return r && r.children[1].textContent === 'disabled';")
        .await;
    let nodes = p.get(&crate::helpers::cascade("/nodes"), &p.admin()).await;
    assert_eq!(nodes.ok()[0]["is_active"], false);

    // Everything the page loaded came from the parent itself.
    let origins = browser
        .until("return [...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin).concat([location.origin]))];")
        .await;
    assert_eq!(origins, json!([p.url("")]));
    browser
        .screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"))
        .await;
    browser.close().await;
    p.shutdown().await;
}

/// The Logins view (issue 12 §3(b)): an admin asks a running child for a WeRead login from
/// the page, the QR code is painted from the parent's matrix, the fake phone scans and
/// confirms, and the page shows the flow confirmed and the login valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_logins_view_shows_the_qr_and_turns_valid_after_the_scan() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let p = TestParent::spawn().await;
    let weread = werss_cascade::testkit::weread::FakeWeread::start()
        .await
        .expect("fake weread");
    weread.set_nickname("Browser Reader");
    let node = p.add_node("qr-node").await;
    let mut c = crate::helpers::test_config(&p.dir);
    c.cascade.data_dir = p.dir.path().join("child").display().to_string();
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = werss_cascade::protocol::credentials::Secret::new(&node.secret);
    c.cascade.weread_base_url = weread.base_url().to_string();
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    c.cascade.shutdown_grace = 5;
    let stop = tokio_util::sync::CancellationToken::new();
    let child = werss_cascade::child::Child::new(c).expect("child");
    let running = tokio::spawn(child.run(stop.clone()));
    p.poll_until(
        &format!("/nodes/{}", node.id),
        "the child's first heartbeat",
        |n| !n["last_heartbeat_at"].is_null(),
    )
    .await;

    browser.login(&p.url(""), PASSWORD).await;
    // The overview lists the chain of sources, every source open on a new parent.
    let sources = browser
        .until("const rows = [...document.querySelectorAll('#source-list tbody tr')]; return rows.length === 3 ? rows.map(r => r.children[0].textContent + ' ' + r.children[1].textContent) : null;")
        .await;
    assert_eq!(
        sources,
        json!(["weread_list open", "weread_cover open", "mp_list open"])
    );
    browser.tab("logins").await;
    browser
        .until("const s = document.querySelector('#login-node'); return s && [...s.options].some(o => o.textContent === 'qr-node');")
        .await;
    browser.click("#login-request").await;
    // The QR code is painted: a square canvas with dark and light pixels.
    let painted = browser
        .until("const s = document.querySelector('#flow-state').textContent; const c = document.querySelector('#qr');
                if (s !== 'pending_scan' || c.width === 0) return null;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === 0) dark++;
                return dark > 0 && dark < d.length / 4 ? [c.width, c.height, dark] : null;")
        .await;
    assert_eq!(painted[0], painted[1], "a square code: {painted}");
    assert!(weread.scan(), "the fake phone scans");
    browser
        .until("return document.querySelector('#flow-state').textContent === 'scanned';")
        .await;
    assert!(weread.confirm().is_none(), "no code asked");
    let title = browser
        .until("return document.querySelector('#flow-state').textContent === 'confirmed' ? document.querySelector('#flow-title').textContent : null;")
        .await;
    assert!(
        title
            .as_str()
            .unwrap_or_default()
            .contains("Browser Reader"),
        "{title}"
    );
    let row = browser
        .until("const r = [...document.querySelectorAll('#login-list tbody tr')].find(r => r.textContent.includes('Browser Reader')); return r && r.children[3].textContent === 'valid' ? r.textContent : null;")
        .await;
    assert!(row.as_str().unwrap_or_default().contains("weread"), "{row}");
    let qr_cleared = browser
        .until("return document.querySelector('#qr').width === 0 ? 'cleared' : null;")
        .await;
    assert_eq!(qr_cleared, "cleared");
    browser.snap("logins").await;
    browser.close().await;
    stop.cancel();
    running.await.expect("joined").expect("child exits");
    weread.stop();
    p.shutdown().await;
}
