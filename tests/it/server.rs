//! The HTTP server itself: stalled and idle connections are closed, open connections are
//! capped, requests have a deadline (the long-poll claim its own).

use crate::helpers::{TestParent, cascade, test_config};
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
    assert_eq!(
        p.get("/healthz", &crate::helpers::Auth::None).await.ok()["status"],
        "up"
    );
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
