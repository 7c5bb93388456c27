//! The HTTP server itself: stalled and idle connections are closed, open connections are
//! capped, requests have a deadline (the long-poll claim its own), over-limit bodies get a
//! readable 413 naming the limit, uploads are bounded, and every rejection is an envelope.

use crate::helpers::{TestParent, cascade, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A generous upper bound for something the server must do "soon".
const SOON: Duration = Duration::from_secs(30);

async fn parent_with(change: impl FnOnce(&mut werss_cascade::config::Config)) -> TestParent {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    change(&mut config);
    TestParent::spawn_with(config, dir).await
}

async fn connect(p: &TestParent) -> TcpStream {
    TcpStream::connect(p.addr).await.expect("connected")
}

/// Whether the server closes `stream` (EOF or reset) within `bound`, discarding what it sends.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let drain = async {
        let mut buf = [0_u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    timeout(bound, drain).await.is_ok()
}

/// One HTTP/1.1 response: status, lower-cased head, body (by `Content-Length`).
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.expect("response read");
        assert!(n > 0, "connection closed before a response head");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = got[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.expect("body read");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    (status, head, body)
}

fn envelope(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).expect("a JSON body");
    assert!(
        v["code"].as_i64().is_some_and(|c| c != 0) && v["message"].is_string(),
        "envelope: {v}"
    );
    v
}

#[tokio::test]
async fn stalled_and_idle_connections_are_closed_while_healthz_answers() {
    let p = parent_with(|c| {
        c.cascade.header_read_timeout = 1;
        c.cascade.idle_timeout = 1;
    })
    .await;
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut s = connect(&p).await;
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .await
                .expect("partial head sent");
        }
        stalled.push(s);
    }
    let mut idle = connect(&p).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("sent");
    assert_eq!(read_response(&mut idle).await.0, 200);

    assert_eq!(
        p.get("/healthz", &crate::helpers::Auth::None).await.ok()["status"],
        "up"
    );
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            closed_within(s, SOON).await,
            "stalled connection {i} still open"
        );
    }
    assert!(
        closed_within(&mut idle, SOON).await,
        "idle keep-alive still open"
    );
    // A new connection (the test client's pooled one was closed as idle, too).
    let mut fresh = connect(&p).await;
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("sent");
    assert_eq!(read_response(&mut fresh).await.0, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let mut p = parent_with(|c| {
        c.cascade.max_connections = 2;
        c.cascade.idle_timeout = 60;
        c.cascade.header_read_timeout = 60;
    })
    .await;
    // The login's pooled connection would hold a slot.
    p.client = crate::helpers::http_client();
    let request = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut first = connect(&p).await;
    let mut second = connect(&p).await;
    for s in [&mut first, &mut second] {
        s.write_all(request).await.expect("sent");
        let served = timeout(SOON, read_response(s)).await.expect("served");
        assert_eq!(served.0, 200);
    }
    let mut third = connect(&p).await;
    third.write_all(request).await.expect("sent");
    let early = timeout(Duration::from_millis(500), read_response(&mut third)).await;
    assert!(early.is_err(), "a third connection was served over the cap");
    drop(first);
    let served = timeout(SOON, read_response(&mut third))
        .await
        .expect("served once a slot is free");
    assert_eq!(served.0, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn requests_have_a_deadline_except_the_long_poll_claim() {
    let p = parent_with(|c| {
        c.cascade.request_timeout = 1;
        c.cascade.header_read_timeout = 30;
    })
    .await;
    // Headers complete, the body never finishes.
    let mut s = connect(&p).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"node_type\":",
        cascade("/nodes"),
        p.token
    );
    s.write_all(head.as_bytes()).await.expect("sent");
    let (status, _, body) = timeout(SOON, read_response(&mut s))
        .await
        .expect("answered");
    assert_eq!(status, 503);
    let v = envelope(&body);
    assert_eq!(v["data"]["error"], "timeout");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("1 s")),
        "{v}"
    );

    // The long poll may outlast request_timeout: it is bounded by its wait.
    let node = p.online_node("n", json!({})).await;
    let r = p
        .post(&cascade("/claim-task?wait=2"), &node.auth(), json!({}))
        .await;
    assert!(r.ok().is_null(), "{}", r.text);
    p.shutdown().await;
}

/// Writes a whole request (head and body) before reading anything, as simple clients do,
/// then reads the answer.
async fn post_all_then_read(p: &TestParent, path: &str, auth: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = connect(p).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head sent");
    s.write_all(body)
        .await
        .unwrap_or_else(|e| panic!("{} bytes to {path}: body not written: {e}", body.len()));
    let (status, _, body) = timeout(SOON, read_response(&mut s))
        .await
        .expect("answered");
    (status, body)
}

#[tokio::test]
async fn over_limit_bodies_from_a_plain_client_read_the_413() {
    let p = parent_with(|c| c.cascade.max_upload_bytes = 8 * 1024 * 1024).await;
    let node = p.online_node("n", json!({})).await;
    let admin = format!("Bearer {}", p.token);
    let aksk = format!("AK-SK {}:{}", node.key, node.secret);
    for i in 0..20_usize {
        let (path, auth, limit, mib) = if i % 2 == 0 {
            (cascade("/nodes"), &admin, 1024 * 1024, 2 + i)
        } else {
            (cascade("/upload-articles"), &aksk, 8 * 1024 * 1024, 9 + i)
        };
        let (status, body) =
            post_all_then_read(&p, &path, auth, &vec![b' '; mib * 1024 * 1024]).await;
        assert_eq!(status, 413, "upload {i} ({mib} MiB)");
        let v = envelope(&body);
        assert_eq!(v["data"]["error"], "too_large");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(&limit.to_string()), "{message}");
    }
    // Refused before the body is read (no credentials): the answer is still readable.
    let (status, body) = post_all_then_read(
        &p,
        &cascade("/upload-articles"),
        "none",
        &vec![b' '; 12 * 1024 * 1024],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(envelope(&body)["data"]["error"], "unauthorized");
    // Login reads a bounded form, checked against Content-Length first.
    let resp = p
        .client
        .post(p.url("/api/v1/wx/auth/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "username=admin&password={}",
            "x".repeat(3 * 1024 * 1024)
        ))
        .send()
        .await
        .expect("an answer");
    let r = TestParent::reply(resp).await;
    assert_eq!(r.err(413), "too_large");
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536")),
        "{}",
        r.text
    );
    p.shutdown().await;
}

#[tokio::test]
async fn uploads_are_bounded_and_the_413_names_the_limit() {
    let p = parent_with(|c| {
        c.cascade.max_upload_bytes = 64 * 1024;
        c.cascade.request_timeout = 2;
    })
    .await;
    let node = p.online_node("n", json!({})).await;
    let upload = |body: Vec<u8>| {
        p.client
            .post(p.url(&cascade("/upload-articles")))
            .header(
                "Authorization",
                format!("AK-SK {}:{}", node.key, node.secret),
            )
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // Over max_upload_bytes.
    let big =
        json!({"allocation_id": "a", "articles": [{"id": "1", "content": "x".repeat(70 * 1024)}]});
    let r = TestParent::reply(upload(big.to_string().into_bytes()).await.expect("sent")).await;
    assert_eq!(r.err(413), "too_large");
    assert!(r.text.contains("65536"), "{}", r.text);

    // The same without Content-Length (chunked).
    let mut s = connect(&p).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: a\r\nAuthorization: AK-SK {}:{}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        cascade("/upload-articles"),
        node.key,
        node.secret
    );
    s.write_all(head.as_bytes()).await.expect("sent");
    for _ in 0..10 {
        let chunk = vec![b' '; 10 * 1024];
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("sent");
        s.write_all(&chunk).await.expect("sent");
        s.write_all(b"\r\n").await.expect("sent");
    }
    s.write_all(b"0\r\n\r\n").await.expect("sent");
    let (status, _, body) = timeout(SOON, read_response(&mut s))
        .await
        .expect("answered");
    assert_eq!(status, 413);
    let v = envelope(&body);
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("65536")),
        "{v}"
    );

    // Too many articles in one upload, however small.
    let many: Vec<Value> = (0..1001).map(|i| json!({"id": i.to_string()})).collect();
    let r = TestParent::reply(
        upload(
            json!({"allocation_id": "a", "articles": many})
                .to_string()
                .into_bytes(),
        )
        .await
        .expect("sent"),
    )
    .await;
    assert_eq!(r.err(413), "too_large");
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000") && m.contains("1001")),
        "{}",
        r.text
    );

    // While other uploads hold the upload budget, the next waits, then answers 503.
    let budget = p.state.upload_budget.clone();
    let all = u32::try_from(budget.available_permits()).expect("permits fit");
    let held = budget.acquire_many_owned(all).await.expect("budget held");
    let small = json!({"allocation_id": "a", "articles": [{"id": "1"}]});
    let r = TestParent::reply(upload(small.to_string().into_bytes()).await.expect("sent")).await;
    assert_eq!(r.err(503), "busy");
    assert!(r.headers.get("retry-after").is_some());
    drop(held);
    let r = TestParent::reply(upload(small.to_string().into_bytes()).await.expect("sent")).await;
    assert_eq!(r.err(404), "not_found", "read once the budget is free");
    p.shutdown().await;
}

#[tokio::test]
async fn every_rejection_answers_in_the_envelope() {
    let p = TestParent::spawn().await;
    let doc: Value = p
        .client
        .get(p.url("/api/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let mut tried = 0;
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let has_param = path.contains('{');
            let target = if has_param {
                path.split('/')
                    .map(|s| if s.starts_with('{') { "%FF" } else { s })
                    .collect::<Vec<_>>()
                    .join("/")
            } else {
                format!("{}/%FF", path.trim_end_matches('/'))
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            let r = p.send(method.clone(), &target, &p.admin(), body).await;
            let json_type = r
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            assert!(json_type, "{method} {target}: {} {}", r.status, r.text);
            if has_param {
                assert_eq!(r.err(400), "bad_request", "{method} {target}");
            } else {
                assert!(
                    [400, 404, 405].contains(&r.status.as_u16()),
                    "{method} {target}: {}",
                    r.text
                );
                r.err(r.status.as_u16());
            }
            tried += 1;
        }
    }
    assert!(tried > 40, "{tried} operations");
    assert_eq!(
        p.get(&cascade("/%FF"), &p.admin()).await.err(404),
        "not_found"
    );
    // Query, content type and method rejections.
    let r = p.get(&cascade("/feeds?limit=abc"), &p.admin()).await;
    assert_eq!(r.err(400), "bad_request");
    let resp = p
        .client
        .post(p.url("/api/v1/wx/auth/login"))
        .body("username=admin&password=x")
        .send()
        .await
        .expect("sent");
    assert_eq!(TestParent::reply(resp).await.err(400), "bad_request");
    let r = p
        .send(Method::PATCH, &cascade("/nodes"), &p.admin(), None)
        .await;
    assert_eq!(r.err(405), "method_not_allowed");
    p.shutdown().await;
}

#[tokio::test]
async fn our_child_splits_uploads_to_fit_the_parents_limits() {
    use werss_cascade::child::client::ParentClient;
    use werss_cascade::fetch::Article;
    use werss_cascade::protocol::credentials::Secret;
    use werss_cascade::protocol::wire::TaskPackage;

    let p = parent_with(|c| c.cascade.max_upload_bytes = 64 * 1024).await;
    let node = p.online_node("n", json!({})).await;
    let feeds = p.feeds(31_000_000, 1).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    let package: TaskPackage = serde_json::from_value(p.claim_one(&node).await).expect("a package");
    let articles: Vec<Article> = (0..300)
        .map(|i| Article {
            id: format!("a{i}"),
            mp_id: feeds[0].clone(),
            title: format!("article {i}"),
            url: format!("https://example.com/{i}"),
            pic_url: None,
            description: None,
            content: "x".repeat(1024),
            publish_time: 1_700_000_000 + i,
            status: 1,
            doc_url: None,
            read_num: None,
            like_num: None,
            time_estimated: false,
            review_id: None,
        })
        .collect();
    let client = ParentClient::new(
        crate::helpers::http_client(),
        &p.url(""),
        &node.key,
        &Secret::new(&node.secret),
    );
    let out = client.upload(&package, &articles).await.expect("uploaded");
    assert_eq!(out["received"], 300, "{out}");
    assert_eq!(out["new_count"], 300, "{out}");
    assert_eq!(out["rejected"], json!([]));
    p.shutdown().await;
}
