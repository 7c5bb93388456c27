//! Feed outputs and OPML (DESIGN §8): what a reader fetches, parsed back with feed-rs.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl TestParent {
    /// Crawls `feed_ids` once through the node API as `node`, storing `per_feed` articles for
    /// each.
    async fn crawl(&self, node: &TestNode, feed_ids: &[String], per_feed: usize) -> String {
        let task = self.task(feed_ids).await;
        self.dispatch(&task).await;
        for _ in feed_ids {
            let pkg = self.claim_one(node).await;
            let feed = pkg["feeds"][0]["id"].as_str().expect("feed").to_string();
            let articles: Vec<Value> = (0..per_feed)
                .map(|i| {
                    json!({"id": format!("{feed}-{i}"), "mp_id": feed, "title": format!("{feed} article {i}"),
                           "url": format!("https://mp.weixin.qq.com/s/{feed}-{i}"), "description": "summary",
                           "content_html": format!("<p>body {i}</p>"), "publish_time": 1_795_000_000 + i as i64 * 60})
                })
                .collect();
            let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"], "articles": articles});
            self.post(&cascade("/upload-articles"), &node.auth(), body)
                .await
                .ok();
            self.complete(node, &pkg).await.ok();
        }
        task
    }

    async fn fetch(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }
}

fn parse(body: &[u8]) -> feed_rs::model::Feed {
    feed_rs::parser::parse(body).expect("a feed feed-rs can read")
}

on_both! {
    #[tokio::test]
    async fn every_feed_format_parses_back_with_its_articles(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(7_000_000, 2).await;
        let node = p.online_node("crawler", json!({})).await;
        let task = p.crawl(&node, &feeds, 3).await;

        let paths = [
            (format!("/rss/{}", feeds[0]), "application/rss+xml"),
            (format!("/feed/{}.rss", feeds[0]), "application/rss+xml"),
            (format!("/feed/{}.xml", feeds[0]), "application/rss+xml"),
            (format!("/feed/{}.atom", feeds[0]), "application/atom+xml"),
            (format!("/feed/{}.json", feeds[0]), "application/feed+json"),
        ];
        for (path, content_type) in &paths {
            let r = p.fetch(path, &[]).await;
            assert_eq!(r.status(), 200, "{path}");
            let ct = r.headers()["content-type"].to_str().expect("ascii").to_string();
            assert!(ct.starts_with(content_type), "{path}: {ct}");
            let feed = parse(&r.bytes().await.expect("body"));
            assert_eq!(feed.title.expect("title").content, format!("feed {}", feeds[0]), "{path}");
            let titles: Vec<String> = feed.entries.iter().map(|e| e.title.clone().expect("title").content).collect();
            assert_eq!(titles, (0..3).rev().map(|i| format!("{} article {i}", feeds[0])).collect::<Vec<_>>(), "{path}: newest first");
            let first = &feed.entries[0];
            assert_eq!(first.links[0].href, format!("https://mp.weixin.qq.com/s/{}-2", feeds[0]), "{path}");
            assert_eq!(first.published.expect("published").timestamp(), 1_795_000_120, "{path}");
        }

        for scope in ["/feed/all", &format!("/feed/task/{task}")] {
            for ext in ["rss", "atom", "json"] {
                let r = p.fetch(&format!("{scope}.{ext}"), &[]).await;
                assert_eq!(r.status(), 200, "{scope}.{ext}");
                let feed = parse(&r.bytes().await.expect("body"));
                assert_eq!(feed.entries.len(), 6, "{scope}.{ext}: both feeds");
            }
        }

        // Paging: limit and offset walk the same order.
        let page = parse(&p.fetch("/feed/all.json?limit=4&offset=2", &[]).await.bytes().await.expect("body"));
        let all = parse(&p.fetch("/feed/all.json", &[]).await.bytes().await.expect("body"));
        let ids = |f: &feed_rs::model::Feed| f.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&page), ids(&all)[2..6].to_vec());
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn conditional_gets_answer_304_until_an_article_changes(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(7_100_000, 1).await;
        let node = p.online_node("crawler", json!({})).await;
        p.crawl(&node, &feeds, 2).await;
        let path = format!("/feed/{}.atom", feeds[0]);
        let first = p.fetch(&path, &[]).await;
        let etag = first.headers()["etag"].to_str().expect("etag").to_string();
        let modified = first.headers()["last-modified"].to_str().expect("last-modified").to_string();

        let again = p.fetch(&path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.bytes().await.expect("body").is_empty());
        let since = p.fetch(&path, &[("if-modified-since", &modified)]).await;
        assert_eq!(since.status(), StatusCode::NOT_MODIFIED);
        // Another format of the same feed has its own validator.
        let rss = p.fetch(&format!("/feed/{}.rss", feeds[0]), &[("if-none-match", &etag)]).await;
        assert_eq!(rss.status(), 200);

        // A new crawl adds an article: the validator moves.
        p.clock.advance(chrono::TimeDelta::seconds(5));
        p.crawl(&node, &feeds, 3).await;
        let changed = p.fetch(&path, &[("if-none-match", &etag)]).await;
        assert_eq!(changed.status(), 200);
        assert_ne!(changed.headers()["etag"].to_str().expect("etag"), etag);
        assert_eq!(parse(&changed.bytes().await.expect("body")).entries.len(), 3);
        p.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_feeds_formats_and_bad_paging_get_the_envelope() {
    let p = TestParent::spawn().await;
    let feeds = p.feeds(7_200_000, 1).await;
    for (path, status) in [
        ("/feed/MP_WXS_1.rss".to_string(), 404),
        ("/rss/nope".into(), 404),
        (format!("/feed/{}.pdf", feeds[0]), 404),
        ("/feed/task/nope.json".into(), 404),
        (format!("/feed/{}.rss?limit=0", feeds[0]), 400),
        (format!("/feed/{}.rss?offset=-1", feeds[0]), 400),
        (format!("/feed/{}.rss?limit=x", feeds[0]), 400),
    ] {
        let r = p.get(&path, &crate::helpers::Auth::None).await;
        r.err(status);
    }
    // An empty feed is still a valid document.
    let empty = p.fetch(&format!("/feed/{}.rss", feeds[0]), &[]).await;
    assert_eq!(parse(&empty.bytes().await.expect("body")).entries.len(), 0);
    p.shutdown().await;
}

on_both! {
    #[tokio::test]
    async fn opml_exports_the_feeds_and_imports_wechat_and_rss_entries(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(7_300_000, 2).await;
        let rss = p.post(&cascade("/feeds"), &p.admin(), json!({"mp_name": "Blog", "source": "rss", "url": "https://blog.example/feed.xml"})).await;
        let rss_id = rss.ok()["id"].as_str().expect("id").to_string();

        let exported = p.fetch("/opml", &[]).await;
        assert!(exported.headers()["content-type"].to_str().expect("ct").starts_with("text/x-opml"));
        let text = exported.text().await.expect("body");
        let doc = opml::OPML::from_str(&text).expect("OPML parses");
        assert_eq!(doc.version, "2.0");
        let urls: Vec<String> = doc.body.outlines.iter().filter_map(|o| o.xml_url.clone()).collect();
        assert_eq!(urls.len(), 3);
        assert!(urls.contains(&p.url(&format!("/feed/{}.rss", feeds[0]))));
        let blog = doc.body.outlines.iter().find(|o| o.text == "Blog").expect("rss outline");
        assert_eq!(blog.html_url, None, "the public export hides upstream URLs (they may carry keys)");
        // The admin export names them, so it re-imports elsewhere.
        let text = p.get(&cascade("/feeds/export-opml"), &p.admin()).await.text;
        let doc = opml::OPML::from_str(&text).expect("OPML parses");
        let blog = doc.body.outlines.iter().find(|o| o.text == "Blog").expect("rss outline");
        assert_eq!(blog.html_url.as_deref(), Some("https://blog.example/feed.xml"));
        p.get(&cascade("/feeds/export-opml"), &crate::helpers::Auth::None).await.err(401);

        // Into a second parent: the same feeds come back, WeChat and RSS alike.
        let q = TestParent::on(backend.clone()).await;
        let folder = text.replace("<body>", "<body><outline text=\"folder\"><outline text=\"Nested\" type=\"rss\" xmlUrl=\"https://news.example/atom.xml\"/></outline><outline text=\"no url\"/>");
        let imported = q
            .client
            .post(q.url(&cascade("/feeds/import-opml")))
            .bearer_auth(&q.token)
            .body(folder.clone())
            .send()
            .await
            .expect("sent");
        let imported = TestParent::reply(imported).await;
        assert_eq!(imported.ok(), &json!({"received": 4, "created": 4, "existing": 0, "skipped": 1}));
        let listed = q.get(&cascade("/feeds"), &q.admin()).await;
        let ids: Vec<&str> = listed.ok().as_array().expect("list").iter().filter_map(|f| f["id"].as_str()).collect();
        assert!(ids.contains(&feeds[0].as_str()) && ids.contains(&feeds[1].as_str()) && ids.contains(&rss_id.as_str()));
        let blog = q.get(&cascade(&format!("/feeds/{rss_id}")), &q.admin()).await;
        assert_eq!(blog.ok()["url"], "https://blog.example/feed.xml");
        assert_eq!(blog.ok()["source"], "rss");

        // Importing again adds nothing; non-OPML is a 400; nodes may not import.
        let again = q.client.post(q.url(&cascade("/feeds/import-opml"))).bearer_auth(&q.token).body(folder).send().await.expect("sent");
        assert_eq!(TestParent::reply(again).await.ok()["existing"], 4);
        let bad = q.client.post(q.url(&cascade("/feeds/import-opml"))).bearer_auth(&q.token).body("{not xml").send().await.expect("sent");
        TestParent::reply(bad).await.err(400);
        let binary = q.client.post(q.url(&cascade("/feeds/import-opml"))).bearer_auth(&q.token).body(vec![0xff_u8, 0xfe, 0x00]).send().await.expect("sent");
        TestParent::reply(binary).await.err(400);
        let huge = q.client.post(q.url(&cascade("/feeds/import-opml"))).bearer_auth(&q.token).body(vec![b' '; 17 * 1024 * 1024]).send().await.expect("sent");
        TestParent::reply(huge).await.err(413);
        let node = q.add_node("n").await;
        let denied = q.client.post(q.url(&cascade("/feeds/import-opml")))
            .header("Authorization", format!("AK-SK {}:{}", node.key, node.secret)).body("<opml/>").send().await.expect("sent");
        TestParent::reply(denied).await.err(403);
        p.shutdown().await;
        q.shutdown().await;
    }
}

/// A parent on SQLite with `change` applied to its test config.
async fn parent_with(change: impl FnOnce(&mut werss_cascade::config::Config)) -> TestParent {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = crate::helpers::test_config(&dir);
    change(&mut config);
    TestParent::spawn_with(config, dir).await
}

const HOSTILE: [(&str, &str); 3] = [
    ("Host", "evil.example"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
];

#[tokio::test]
async fn self_links_use_public_url_whatever_the_request_says() {
    let p = parent_with(|c| c.cascade.public_url = "https://feeds.example.org/werss/".into()).await;
    let r = p.fetch("/feed/all.atom", &HOSTILE).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let body = r.text().await.expect("body");
    assert!(
        body.contains("https://feeds.example.org/werss/feed/all.atom"),
        "{body}"
    );
    assert!(!body.contains("evil.example"), "{body}");
    let feeds = p.feeds(7_100_000, 1).await;
    let opml = p.fetch("/opml", &HOSTILE).await.text().await.expect("opml");
    assert!(
        opml.contains(&format!(
            "https://feeds.example.org/werss/feed/{}.rss",
            feeds[0]
        )),
        "{opml}"
    );
    assert!(!opml.contains("evil.example"), "{opml}");
    p.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_count_only_from_a_trusted_proxy() {
    let p = parent_with(|_| {}).await;
    let r = p
        .fetch(
            "/feed/all.atom",
            &[
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await;
    assert_eq!(
        r.headers()["cache-control"],
        "private, max-age=60",
        "links taken from the request are not for shared caches"
    );
    let body = r.text().await.expect("body");
    assert!(!body.contains("evil.example"), "{body}");
    assert!(
        body.contains(&format!("http://{}/feed/all.atom", p.addr)),
        "{body}"
    );
    // A Host that is not a bare host[:port] is not used at all.
    let odd = p
        .fetch("/feed/all.atom", &[("Host", "evil.example/x?y")])
        .await
        .text()
        .await
        .expect("body");
    assert!(!odd.contains("evil.example"), "{odd}");
    p.shutdown().await;

    let p = parent_with(|c| c.cascade.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let body = p
        .fetch(
            "/feed/all.atom",
            &[
                ("X-Forwarded-Host", "forged.example, feeds.example.org"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("https://feeds.example.org/feed/all.atom"),
        "{body}"
    );
    assert!(!body.contains("forged.example"), "{body}");
    p.shutdown().await;
}
