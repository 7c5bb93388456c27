//! A real headless Chromium driven over W3C WebDriver (chromedriver), for the dashboard tests.
//! `Browser::start` is `None` (the test is skipped, said on stderr) when chromedriver or
//! Chromium is missing, unless `CASCADE_REQUIRE_BROWSER=1`.

use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

fn binary(var: &str, default: &str) -> Option<String> {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    std::path::Path::new(&path).is_file().then_some(path)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` when they are missing.
    pub async fn start() -> Option<Self> {
        let (Some(driver), Some(chromium)) = (
            binary("CASCADE_CHROMEDRIVER", "/usr/bin/chromedriver"),
            binary("CASCADE_CHROMIUM", "/usr/bin/chromium"),
        ) else {
            assert!(
                std::env::var("CASCADE_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "CASCADE_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed"
            );
            super::skips::note(super::skips::Skip::Browser);
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let mut child = Command::new(driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        loop {
            let line = lines.next_line().await.expect("chromedriver output");
            let line = line.expect("chromedriver exited before it was ready");
            if line.contains("started successfully") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().expect("profile dir");
        let http = crate::helpers::http_client();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display())]}}}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("session request")
            .json()
            .await
            .expect("session json");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        let browser = Self {
            driver: child,
            http,
            session: format!("{base}/session/{session}"),
            _profile: profile,
        };
        browser
            .call("/timeouts", json!({"script": 30_000, "implicit": 10_000}))
            .await;
        Some(browser)
    }

    pub async fn call(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        assert!(r["value"]["error"].is_null(), "webdriver {path}: {r}");
        r["value"].clone()
    }

    /// The whole answer of a WebDriver command, errors included.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json")
    }

    /// Makes the page see `zone` as its local time zone (a Chrome DevTools command).
    pub async fn time_zone(&self, zone: &str) {
        self.call(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setTimezoneOverride", "params": {"timezoneId": zone}}),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.call("/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(&format!("/element/{el}/clear"), json!({})).await;
        self.call(&format!("/element/{el}/value"), json!({ "text": text }))
            .await;
    }

    /// Clicks the first element matching `css`. The page re-renders its tables on every
    /// refresh, so an element found just before one may be gone when clicked: it is then
    /// found again (a few times at most).
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let el = self.find(css).await;
            let r = self.post(&format!("/element/{el}/click"), json!({})).await;
            match r["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("webdriver click {css}: {r}"),
            }
        }
        panic!("{css} kept being replaced before it could be clicked");
    }

    /// Waits, inside the page, until `condition` (a JS function body) returns a truthy
    /// value, re-checking on every DOM change; returns that value.
    pub async fn until(&self, condition: &str) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const test = () => {{ try {{ {condition} }} catch (e) {{ return null; }} }};
             const first = test();
             if (first) {{ done(first); return; }}
             const watch = new MutationObserver(() => {{
               const v = test();
               if (v) {{ watch.disconnect(); done(v); }}
             }});
             watch.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});"
        );
        self.call("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Saves a PNG of the page (for people looking at a failed or new run).
    pub async fn screenshot(&self, path: &std::path::Path) {
        let r: Value = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .expect("screenshot request")
            .json()
            .await
            .expect("screenshot json");
        if let Some(png) = r["value"].as_str() {
            use base64::Engine;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(png) {
                let _ = std::fs::write(path, bytes);
            }
        }
    }

    /// Logs in as the admin on the parent at `base` and waits for the console.
    pub async fn login(&self, base: &str, password: &str) {
        self.goto(&format!("{base}/")).await;
        self.type_into("#password", password).await;
        self.click("#login").await;
        self.until("return !document.querySelector('#app').hidden;")
            .await;
    }

    /// Opens a view by its tab and waits until it shows.
    pub async fn tab(&self, view: &str) {
        self.click(&format!("#tabs a[data-view={view}]")).await;
        self.until(&format!(
            "const v = document.querySelector('.view[data-view={view}]'); return v && !v.hidden;"
        ))
        .await;
    }

    /// Presses the confirm button of the open confirmation dialog.
    pub async fn confirm(&self) {
        self.until("return document.querySelector('#confirm').open;")
            .await;
        self.click("#confirm-yes").await;
    }

    /// Saves a PNG of the page under the test target folder, and into
    /// `CASCADE_SCREENSHOTS` when set (how docs/screenshots/ is made).
    pub async fn snap(&self, name: &str) {
        let file = format!("{name}.png");
        self.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&file))
            .await;
        if let Ok(dir) = std::env::var("CASCADE_SCREENSHOTS") {
            self.screenshot(&std::path::Path::new(&dir).join(&file))
                .await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}
