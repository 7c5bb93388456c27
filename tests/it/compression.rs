//! gzip both ways: answers compressed when asked, gzip request bodies read through their
//! decompression (limits count what they unpack to), and our child compressing its uploads
//! to a parent that advertises `gzip`.

use crate::helpers::{Auth, TestParent, cascade, http_client, test_config};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("compressed");
    gz.finish().expect("compressed")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
        .expect("valid gzip");
    out
}

async fn parent_with(change: impl FnOnce(&mut werss_cascade::config::Config)) -> TestParent {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    change(&mut config);
    TestParent::spawn_with(config, dir).await
}

/// A client that leaves compression to the test.
fn raw_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
}

fn aksk(auth: &Auth) -> String {
    match auth {
        Auth::AkSk(k, s) => format!("AK-SK {k}:{s}"),
        _ => unreachable!("a node's credentials"),
    }
}

/// `GET /feeds?limit=N` as the admin, asking for gzip or not.
async fn feeds(
    client: &reqwest::Client,
    p: &TestParent,
    limit: usize,
    gzip: bool,
) -> reqwest::Response {
    let mut req = client
        .get(p.url(&cascade(&format!("/feeds?limit={limit}"))))
        .header("Authorization", format!("Bearer {}", p.token));
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    req.send().await.expect("sent")
}

#[tokio::test]
async fn answers_are_gzip_when_asked_and_plain_otherwise() {
    let p = TestParent::spawn().await;
    p.feeds(41_000_000, 50).await;
    let client = raw_client();
    let asked = feeds(&client, &p, 50, true).await;
    assert_eq!(asked.status(), 200);
    assert_eq!(asked.headers()["content-encoding"], "gzip");
    let body: Value =
        serde_json::from_slice(&gunzip(&asked.bytes().await.expect("read"))).expect("JSON inside");
    assert_eq!(body["code"], 0);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(50), "{body}");

    let plain = feeds(&client, &p, 50, false).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let body: Value = plain.json().await.expect("plain JSON");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(50));

    // A short answer is sent as it is, asked or not: gzip would cost more than it saves.
    let short = feeds(&client, &p, 1, true).await;
    assert!(short.headers().get("content-encoding").is_none());
    let body: Value = short.json().await.expect("plain JSON");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    p.shutdown().await;
}

#[tokio::test]
async fn a_gzip_heartbeat_is_read_and_a_gzip_bomb_meets_the_limit() {
    let p = TestParent::spawn().await;
    let node = p.add_node("n").await;
    let client = raw_client();
    let beat = json!({"version": "gz-1.0", "features": ["wait"], "padding": "x".repeat(8000)});
    let sent = client
        .post(p.url(&cascade("/heartbeat")))
        .header("Authorization", aksk(&node.auth()))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gzip(&serde_json::to_vec(&beat).expect("json")))
        .send()
        .await
        .expect("sent");
    let r = TestParent::reply(sent).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.ok()["features"]
            .as_array()
            .expect("features")
            .contains(&json!("gzip")),
        "the parent advertises gzip: {}",
        r.text
    );
    let shown = p
        .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
        .await;
    assert_eq!(shown.ok()["version"], "gz-1.0", "{}", shown.text);

    // 4 MiB of spaces pack into a few KiB: the 1 MiB limit counts the unpacked bytes.
    let mut bomb = b"{\"version\": \"x\", \"pad\": \"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    bomb.extend(b"\"}");
    let packed = gzip(&bomb);
    assert!(packed.len() < 64 * 1024);
    let sent = client
        .post(p.url(&cascade("/heartbeat")))
        .header("Authorization", aksk(&node.auth()))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(packed)
        .send()
        .await
        .expect("sent");
    assert_eq!(TestParent::reply(sent).await.err(413), "too_large");

    // A coding the parent does not read is refused in the envelope, not guessed at.
    let sent = client
        .post(p.url(&cascade("/heartbeat")))
        .header("Authorization", aksk(&node.auth()))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "br")
        .body("{}")
        .send()
        .await
        .expect("sent");
    let r = TestParent::reply(sent).await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.body["code"], 415, "{}", r.text);
    // The node's stored state is what the good heartbeat left.
    let shown = p
        .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
        .await;
    assert_eq!(shown.ok()["version"], "gz-1.0");
    p.shutdown().await;
}

/// What passed through [`recording_proxy`]: each request's path and `Content-Encoding`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A loopback proxy in front of the parent that records what the child sent.
async fn recording_proxy(target: String) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let upstream = raw_client();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (log, upstream, target) = (Arc::clone(&log), upstream.clone(), target.clone());
        async move {
            let (parts, body) = req.into_parts();
            let coding = parts
                .headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            log.lock()
                .expect("log")
                .push((parts.uri.path().to_string(), coding));
            let bytes = axum::body::to_bytes(body, 64 << 20).await.expect("body");
            let mut forward = upstream.request(parts.method, format!("{target}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forward = forward.header(name, value);
                }
            }
            let resp = forward.body(bytes).send().await.expect("forwarded");
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.expect("answer");
            let mut out = axum::response::Response::new(axum::body::Body::from(bytes));
            *out.status_mut() = status;
            for name in ["content-type", "content-encoding"] {
                if let Some(v) = headers.get(name) {
                    out.headers_mut().insert(name, v.clone());
                }
            }
            out
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn our_child_sends_gzip_uploads_once_the_parent_advertises_it() {
    use werss_cascade::child::client::ParentClient;
    use werss_cascade::protocol::credentials::Secret;
    use werss_cascade::protocol::wire::TaskPackage;

    let p = parent_with(|c| c.cascade.max_upload_bytes = 256 * 1024).await;
    let node = p.online_node("n", json!({})).await;
    let feeds = p.feeds(42_000_000, 1).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    let package: TaskPackage = serde_json::from_value(p.claim_one(&node).await).expect("a package");
    let articles: Vec<werss_cascade::fetch::Article> = (0..40)
        .map(|i| werss_cascade::fetch::Article {
            id: format!("gz{i}"),
            mp_id: feeds[0].clone(),
            title: format!("article {i}"),
            url: format!("https://example.com/gz/{i}"),
            pic_url: None,
            description: None,
            content: "compressible ".repeat(300),
            publish_time: 1_700_000_000 + i,
            status: 1,
            doc_url: None,
            read_num: None,
            like_num: None,
            time_estimated: false,
            review_id: None,
        })
        .collect();
    let (proxy, seen) = recording_proxy(p.url("")).await;
    let client = ParentClient::new(http_client(), &proxy, &node.key, &Secret::new(&node.secret));

    // Before a heartbeat the child does not know the parent reads gzip: plain.
    let out = client
        .upload(&package, &articles[..20])
        .await
        .expect("uploaded");
    assert_eq!(out["new_count"], 20, "{out}");
    client.heartbeat(&json!({})).await.expect("beat");
    let out = client
        .upload(&package, &articles[20..])
        .await
        .expect("uploaded");
    assert_eq!(out["new_count"], 20, "{out}");
    let uploads: Vec<Option<String>> = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|(path, _)| path.ends_with("/upload-articles"))
        .map(|(_, coding)| coding.clone())
        .collect();
    assert_eq!(uploads, vec![None, Some("gzip".to_string())]);
    let page = werss_cascade::store::Page {
        limit: 100,
        offset: 0,
    };
    let stored = p
        .store
        .list_articles(Some(feeds.clone()), page)
        .await
        .expect("articles");
    assert_eq!(stored.len(), 40);
    assert!(stored.iter().all(|a| {
        a.content_html
            .as_deref()
            .is_some_and(|c| c.starts_with("compressible"))
    }));
    p.shutdown().await;
}
