//! Login, lockout, JWT checks and the role matrix (PROTOCOL §3, D1, D19).

use crate::helpers::db::on_both;
use crate::helpers::{ADMIN, Auth, PASSWORD, TestParent, cascade, cascade_doc, test_config};
use chrono::TimeDelta;
use reqwest::Method;
use serde_json::json;
use werss_cascade::parent::auth::MAX_FAILURES;

on_both! {
    #[tokio::test]
    async fn login_works_on_both_paths_and_token_is_bare_oauth2(backend) {
        let p = TestParent::on(backend.clone()).await;
        for path in ["/api/v1/wx/auth/login", "/api/v1/auth/login"] {
            let resp = p
                .client
                .post(p.url(path))
                .form(&[("username", ADMIN), ("password", PASSWORD)])
                .send()
                .await
                .expect("sent");
            let r = TestParent::reply(resp).await;
            let d = r.ok();
            assert_eq!(r.body["message"], "success");
            assert_eq!(d["token_type"], "bearer");
            assert_eq!(d["expires_in"], 4320 * 60);
            let token = d["access_token"].as_str().expect("token");
            p.get(&cascade("/nodes"), &Auth::Bearer(token.into()))
                .await
                .ok();
        }
        for path in ["/api/v1/wx/auth/token", "/api/v1/auth/token"] {
            let resp = p
                .client
                .post(p.url(path))
                .form(&[
                    ("username", ADMIN),
                    ("password", PASSWORD),
                    ("grant_type", "password"),
                ])
                .send()
                .await
                .expect("sent");
            let r = TestParent::reply(resp).await;
            assert_eq!(r.status, 200);
            assert!(r.body.get("code").is_none(), "bare object: {}", r.text);
            assert_eq!(r.body["token_type"], "bearer");
            assert!(r.body["access_token"].is_string());
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn wrong_password_counts_down_then_locks_for_fifteen_minutes(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p.login(ADMIN, "wrong").await;
        assert_eq!(r.err(401), "login_failed");
        assert_eq!(r.body["code"], 40101);
        assert_eq!(r.body["message"], "用户名或密码错误，您还有4次机会");
        for _ in 0..3 {
            p.login(ADMIN, "wrong").await.err(401);
        }
        let locked = p.login(ADMIN, "wrong").await;
        assert_eq!(locked.err(429), "locked");
        assert!(locked.headers.contains_key("retry-after"));
        let still = p.login(ADMIN, PASSWORD).await;
        assert_eq!(
            still.err(429),
            "locked",
            "even the right password waits out the lock"
        );
        p.clock
            .advance(TimeDelta::minutes(15) + TimeDelta::seconds(1));
        p.login(ADMIN, PASSWORD).await.ok();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn success_resets_the_failure_count(backend) {
        let p = TestParent::on(backend.clone()).await;
        for _ in 0..4 {
            p.login(ADMIN, "wrong").await.err(401);
        }
        p.login(ADMIN, PASSWORD).await.ok();
        let r = p.login(ADMIN, "wrong").await;
        assert_eq!(r.body["message"], "用户名或密码错误，您还有4次机会");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn login_rejects_missing_fields_and_non_form_bodies(backend) {
        let p = TestParent::on(backend.clone()).await;
        let resp = p
            .client
            .post(p.url("/api/v1/auth/login"))
            .form(&[("username", ADMIN)])
            .send()
            .await
            .expect("sent");
        let r = TestParent::reply(resp).await;
        r.err(400);
        assert_eq!(r.body["data"]["field"], "password");
        let resp = p
            .client
            .post(p.url("/api/v1/auth/login"))
            .json(&json!({"username": ADMIN, "password": PASSWORD}))
            .send()
            .await
            .expect("sent");
        TestParent::reply(resp).await.err(400);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn bad_or_expired_tokens_and_unknown_schemes_get_401(backend) {
        let p = TestParent::on(backend.clone()).await;
        let path = cascade("/nodes");
        for auth in [
            Auth::None,
            Auth::Bearer("not.a.jwt".into()),
            Auth::Raw("Basic YWRtaW46eA==".into()),
            Auth::Raw("AK-SK nocolon".into()),
            Auth::AkSk("WKuserkey".into(), "SKusersecret".into()),
            // alg=none token for sub=admin
            Auth::Bearer(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0."
                    .into(),
            ),
        ] {
            let r = p.get(&path, &auth).await;
            assert_eq!(r.err(401), "unauthorized", "{auth:?}");
            assert_eq!(
                r.headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap_or("")),
                Some("Bearer")
            );
        }
        p.clock
            .advance(TimeDelta::minutes(4320) + TimeDelta::seconds(1));
        p.get(&path, &p.admin()).await.err(401);
        p.shutdown().await;
    }
}

fn admin_routes(node_id: &str) -> Vec<(Method, String)> {
    let n = format!("/nodes/{node_id}");
    vec![
        (Method::POST, "/nodes".into()),
        (Method::GET, "/nodes".into()),
        (Method::GET, n.clone()),
        (Method::PUT, n.clone()),
        (Method::DELETE, n.clone()),
        (Method::POST, format!("{n}/credentials")),
        (Method::POST, format!("{n}/test-connection")),
        (Method::GET, "/sync-logs".into()),
        (Method::POST, "/feeds".into()),
        (Method::GET, "/feeds/MP_WXS_1".into()),
        (Method::PUT, "/feeds/MP_WXS_1".into()),
        (Method::DELETE, "/feeds/MP_WXS_1".into()),
        (Method::POST, "/feeds/MP_WXS_1/check".into()),
        (Method::GET, "/allocations/x".into()),
        (Method::POST, "/allocations/retry".into()),
        (Method::POST, "/allocations/cancel".into()),
        (Method::POST, "/message-tasks".into()),
        (Method::GET, "/message-tasks/x".into()),
        (Method::PUT, "/message-tasks/x".into()),
        (Method::DELETE, "/message-tasks/x".into()),
        (Method::GET, "/plan".into()),
        (Method::GET, "/stats".into()),
        (Method::GET, "/scheduler".into()),
        (Method::GET, "/audit".into()),
    ]
}

on_both! {
    #[tokio::test]
    async fn node_credentials_on_every_admin_route_get_403(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        for (method, path) in admin_routes(&node.id) {
            for full in [cascade(&path), cascade_doc(&path)] {
                let r = p
                    .send(method.clone(), &full, &node.auth(), Some(json!({})))
                    .await;
                assert_eq!(r.err(403), "forbidden", "{method} {full}");
                assert_eq!(r.body["message"], "admin credentials required");
            }
        }
        // Nothing was changed by the refused calls.
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["name"], "child");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn admin_jwt_on_node_routes_gets_403(backend) {
        let p = TestParent::on(backend.clone()).await;
        for path in ["/heartbeat", "/report-result"] {
            let r = p
                .post(
                    &cascade(path),
                    &p.admin(),
                    json!({"task_id": "t", "results": []}),
                )
                .await;
            assert_eq!(r.err(403), "forbidden", "{path}");
            assert_eq!(r.body["message"], "node credentials (AK-SK) required");
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn deactivated_node_and_rotated_credentials_get_401(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
            .await
            .ok();

        let rotated = p
            .post(
                &cascade(&format!("/nodes/{}/credentials", node.id)),
                &p.admin(),
                json!({}),
            )
            .await;
        let new_secret = rotated.ok()["api_secret"]
            .as_str()
            .expect("secret")
            .to_string();
        let new_key = rotated.ok()["api_key"].as_str().expect("key").to_string();
        assert_eq!(
            p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
                .await
                .err(401),
            "unauthorized"
        );
        let fresh = Auth::AkSk(new_key.clone(), new_secret.clone());
        p.post(&cascade("/heartbeat"), &fresh, json!({})).await.ok();
        // Right key, wrong secret.
        p.post(
            &cascade("/heartbeat"),
            &Auth::AkSk(new_key, node.secret.clone()),
            json!({}),
        )
        .await
        .err(401);

        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"is_active": false}),
        )
        .await
        .ok();
        p.post(&cascade("/heartbeat"), &fresh, json!({}))
            .await
            .err(401);
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["status"], 2);
        assert_eq!(n.ok()["online"], false);
        let stored = p.store.get_node(&node.id).await.expect("node stored");
        assert!(!stored.is_active);
        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"is_active": true}),
        )
        .await
        .ok();
        p.post(&cascade("/heartbeat"), &fresh, json!({})).await.ok();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn both_roles_may_read_feeds_and_tasks(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        p.get(&cascade("/feeds"), &node.auth()).await.ok();
        p.get(&cascade("/feeds"), &p.admin()).await.ok();
        p.get(&cascade("/message-tasks"), &node.auth()).await.ok();
        p.get(&cascade_doc("/message-tasks"), &p.admin()).await.ok();
        p.get(&cascade("/feeds"), &Auth::None).await.err(401);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn login_checks_grant_type_and_field_sizes(backend) {
        let p = TestParent::on(backend.clone()).await;
        let send = |form: Vec<(&'static str, String)>| {
            p.client
                .post(p.url("/api/v1/auth/token"))
                .form(&form)
                .send()
        };
        let r = TestParent::reply(
            send(vec![
                ("username", ADMIN.into()),
                ("password", PASSWORD.into()),
                ("grant_type", "client_credentials".into()),
            ])
            .await
            .expect("sent"),
        )
        .await;
        r.err(400);
        assert_eq!(r.body["data"]["field"], "grant_type");
        let r = TestParent::reply(
            send(vec![
                ("username", "u".repeat(300)),
                ("password", "x".into()),
            ])
            .await
            .expect("sent"),
        )
        .await;
        assert_eq!(r.body["data"]["field"], "username");
        let r = TestParent::reply(
            send(vec![
                ("username", "u".into()),
                ("password", "x".repeat(2 * 1024 * 1024)),
            ])
            .await
            .expect("sent"),
        )
        .await;
        assert_eq!(r.err(413), "too_large");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn unknown_users_fail_like_wrong_passwords(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p.login("nobody", "x").await;
        assert_eq!(r.err(401), "login_failed");
        assert_eq!(r.body["message"], "用户名或密码错误，您还有4次机会");
        p.shutdown().await;
    }
}

/// Logs in as `user` through the test parent, claiming `forwarded_for` in `X-Forwarded-For`.
async fn login_from(
    p: &TestParent,
    forwarded_for: Option<&str>,
    user: &str,
    password: &str,
) -> crate::helpers::Reply {
    let mut req = p
        .client
        .post(p.url("/api/v1/wx/auth/login"))
        .form(&[("username", user), ("password", password)]);
    if let Some(addr) = forwarded_for {
        req = req.header("X-Forwarded-For", addr);
    }
    TestParent::reply(req.send().await.expect("login sent")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_guesses_never_exceed_the_budget() {
    let p = TestParent::spawn().await;
    let guesses = (0..24).map(|i| {
        let p = &p;
        async move { login_from(p, None, ADMIN, &format!("guess {i}")).await }
    });
    let answers = futures::future::join_all(guesses).await;
    let failed = answers.iter().filter(|r| r.status == 401).count();
    let locked = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(failed + locked, 24, "only 401 or 429");
    assert!(
        failed < MAX_FAILURES as usize,
        "{failed} passwords were checked past a budget of {MAX_FAILURES}"
    );
    for r in &answers {
        if r.status == 429 {
            assert_eq!(r.err(429), "locked");
            assert!(r.headers.contains_key("retry-after"));
        }
    }
    let after = p.login(ADMIN, PASSWORD).await;
    assert_eq!(after.err(429), "locked", "the budget was spent: locked");
    p.shutdown().await;
}

#[tokio::test]
async fn a_lock_from_one_address_does_not_lock_the_admin_out_from_another() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(&dir);
    config.cascade.trusted_proxies = vec!["127.0.0.1".into()];
    let p = TestParent::spawn_with(config, dir).await;
    let attacker = Some("203.0.113.5");
    for _ in 0..MAX_FAILURES - 1 {
        login_from(&p, attacker, ADMIN, "wrong").await.err(401);
    }
    assert_eq!(
        login_from(&p, attacker, ADMIN, "wrong").await.err(429),
        "locked"
    );
    assert_eq!(
        login_from(&p, attacker, ADMIN, PASSWORD).await.err(429),
        "locked",
        "the attacker's address stays locked"
    );
    login_from(&p, Some("198.51.100.7"), ADMIN, PASSWORD)
        .await
        .ok();
    // A forged left-most hop does not move the attacker elsewhere: the proxy's hop counts.
    let forged = login_from(&p, Some("198.51.100.7, 203.0.113.5"), ADMIN, PASSWORD).await;
    assert_eq!(forged.err(429), "locked");
    // The proxy's own requests (no header) are a third client.
    p.login(ADMIN, PASSWORD).await.ok();
    p.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let p = TestParent::spawn().await;
    for _ in 0..MAX_FAILURES - 1 {
        login_from(&p, Some("203.0.113.5"), ADMIN, "wrong")
            .await
            .err(401);
    }
    login_from(&p, Some("203.0.113.5"), ADMIN, "wrong")
        .await
        .err(429);
    let r = login_from(&p, Some("198.51.100.7"), ADMIN, PASSWORD).await;
    assert_eq!(
        r.err(429),
        "locked",
        "a header from an untrusted peer does not make it another client"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_hostile_username_cannot_forge_log_lines() {
    // A real parent process: what reaches its log is what an operator reads.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = crate::helpers::process::cascade_cmd(dir.path());
    cmd.args(["parent", "--port", "0"]);
    let p = crate::helpers::process::ParentProcess::start(cmd).await;
    let hostile = "x\n2026-11-22T14:42:27.700112Z  INFO forged: admin logged in\x1b[31m";
    let r =
        crate::helpers::process::login(&reqwest::Client::new(), &p.base, hostile, "wrong").await;
    assert_eq!(r.status(), 401);
    let (_, log) = p.terminate_with_log().await;
    let text = log.join("\n");
    let failed: Vec<&String> = log.iter().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert!(
        failed[0].contains(r"x\n2026-11-22T14:42:27.700112Z"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains(r"\u{1b}[31m"), "{}", failed[0]);
    assert!(!text.contains('\x1b'), "raw ESC in the log: {text:?}");
    assert!(
        !log.iter()
            .any(|l| l.starts_with("2026-11-22T14:42:27.700112Z")),
        "a forged line: {text}"
    );
}
