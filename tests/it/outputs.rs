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

        // RSS names the account in dc:creator (its <author> wants an e-mail address), and the
        // channel links to the account's own page, not to the parent.
        let rss = p.fetch(&format!("/feed/{}.rss", feeds[0]), &[]).await.text().await.expect("text");
        assert!(rss.contains(r#"xmlns:dc="http://purl.org/dc/elements/1.1/""#), "{rss}");
        assert!(rss.contains(&format!("<dc:creator>feed {}</dc:creator>", feeds[0])), "{rss}");
        assert!(!rss.contains("<author>"), "{rss}");
        let biz = werss_cascade::protocol::ids::faker_id_from_feed_id(&feeds[0]).expect("faker id");
        let page = reqwest::Url::parse_with_params("https://mp.weixin.qq.com/mp/profile_ext",
            &[("action", "home"), ("__biz", biz.as_str())]).expect("url");
        let link = format!("<link>{}</link>", page.as_str().replace('&', "&amp;"));
        assert!(rss.contains(&link), "{link} in {rss}");

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
        let huge = q.client.post(q.url(&cascade("/feeds/import-opml"))).bearer_auth(&q.token).body(vec![b' '; 33 * 1024 * 1024]).send().await.expect("sent");
        TestParent::reply(huge).await.err(413);
        let node = q.add_node("n").await;
        let denied = q.client.post(q.url(&cascade("/feeds/import-opml")))
            .header("Authorization", format!("AK-SK {}:{}", node.key, node.secret)).body("<opml/>").send().await.expect("sent");
        TestParent::reply(denied).await.err(403);
        p.shutdown().await;
        q.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_large_opml_import_counts_new_and_existing_feeds_across_statements(backend) {
        // 1200 distinct feeds (more than one insert statement holds), one named twice in one
        // statement and one again in a later statement, two present before the import.
        let p = TestParent::on(backend.clone()).await;
        let url = |i: usize| format!("https://news{i}.example/feed.xml");
        for i in [600, 1100] {
            p.post(&cascade("/feeds"), &p.admin(), json!({"mp_name": format!("kept {i}"), "source": "rss", "url": url(i)}))
                .await
                .ok();
        }
        let mut outlines: Vec<String> = (0..1200)
            .map(|i| format!("<outline text=\"news {i}\" type=\"rss\" xmlUrl=\"{}\"/>", url(i)))
            .collect();
        outlines.insert(2, outlines[1].clone());
        outlines.push(outlines[0].clone());
        let doc = format!("<?xml version=\"1.0\"?><opml version=\"2.0\"><body>{}</body></opml>", outlines.concat());
        let imported = p.client.post(p.url(&cascade("/feeds/import-opml"))).bearer_auth(&p.token).body(doc).send().await.expect("sent");
        let imported = TestParent::reply(imported).await;
        assert_eq!(imported.ok(), &json!({"received": 1202, "created": 1198, "existing": 4, "skipped": 0}));

        let listed = p.get(&cascade("/feeds"), &p.admin()).await;
        let feeds = listed.ok().as_array().expect("list").clone();
        assert_eq!(feeds.len(), 1200);
        let by_url = |i: usize| feeds.iter().find(|f| f["url"] == url(i).as_str()).unwrap_or_else(|| panic!("feed {i} listed"));
        for i in [0, 1, 499, 500, 999, 1000, 1199] {
            assert_eq!(by_url(i)["mp_name"], format!("news {i}"));
            assert_eq!(by_url(i)["source"], "rss");
        }
        assert_eq!(by_url(600)["mp_name"], "kept 600", "an existing feed is kept unchanged");
        assert_eq!(by_url(1100)["mp_name"], "kept 1100");
        p.shutdown().await;
    }
}

/// An OPML document whose only feed sits `depth` outlines deep (folders in folders).
fn nested_opml(depth: usize) -> String {
    format!(
        "<?xml version=\"1.0\"?><opml version=\"2.0\"><body><!-- <outline> --><![CDATA[<outline>]]>{}\
         <outline text=\"deep &gt; folders\" type=\"rss\" xmlUrl=\"https://deep.example/feed.xml\"/>{}</body></opml>",
        "<outline text=\"a > b\">".repeat(depth - 1),
        "</outline>".repeat(depth - 1)
    )
}

async fn import_opml(p: &TestParent, doc: String) -> crate::helpers::Reply {
    let r = p
        .client
        .post(p.url(&cascade("/feeds/import-opml")))
        .bearer_auth(&p.token)
        .header("content-type", "text/x-opml")
        .body(doc)
        .send()
        .await
        .expect("sent");
    TestParent::reply(r).await
}

on_both! {
    #[tokio::test]
    async fn deeply_nested_opml_is_refused_and_the_parent_keeps_serving(backend) {
        let p = TestParent::on(backend.clone()).await;
        let hostile = nested_opml(2_000);
        assert!(hostile.len() > 50_000, "the reported 56 KB document");
        let r = import_opml(&p, hostile).await;
        r.err(400);
        assert!(r.body["message"].as_str().is_some_and(|m| m.contains("deeper than 64")), "{}", r.text);
        assert_eq!(p.get("/healthz", &crate::helpers::Auth::None).await.status, 200, "still serving");
        import_opml(&p, nested_opml(65)).await.err(400);
        assert_eq!(
            import_opml(&p, nested_opml(64)).await.ok(),
            &json!({"received": 1, "created": 1, "existing": 0, "skipped": 0}),
            "64 levels of folders import"
        );
        p.shutdown().await;
    }
}

/// Parses `body` with a strict XML 1.0 parser and returns the text of every `<title>`.
pub(crate) fn strict_titles(what: &str, body: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(body)
        .unwrap_or_else(|e| panic!("{what} is not well-formed XML: {e}\n{body}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("title") || n.has_tag_name("outline"))
        .map(|n| {
            n.attribute("title")
                .or(n.text())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Runs `sql` on the parent's database behind its back, as an older program would have.
async fn raw_sql(p: &TestParent, backend: &crate::helpers::db::Backend, sql: String) {
    use sqlx::{Connection, Executor};
    match backend {
        crate::helpers::db::Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(p.dir.path().join("cascade.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite");
            c.execute(sqlx::AssertSqlSafe(sql)).await.expect("sql runs");
        }
        crate::helpers::db::Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&p.state.config.db)
                .await
                .expect("pg");
            c.execute(sqlx::AssertSqlSafe(sql)).await.expect("sql runs");
        }
    }
}

on_both! {
    #[tokio::test]
    async fn stored_text_with_control_characters_still_renders_well_formed_xml(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(7_400_000, 1).await;
        let node = p.online_node("crawler", json!({})).await;
        let task = p.crawl(&node, &feeds, 1).await;
        // Rows written before text was checked (an adopted database).
        raw_sql(&p, &backend, format!(
            "UPDATE we_articles SET title = 'bad\u{1}title\u{1b}[1m', url = 'https://e.org/\u{1}x',
                 description = 'sum\u{8}mary', content_html = '<p>\u{1f}body</p>';
             UPDATE we_feeds SET mp_name = 'feed\u{1b}name', mp_intro = 'in\u{2}tro' WHERE id = '{}';
             UPDATE we_message_tasks SET name = 'task\u{7}name'", feeds[0])).await;
        let id = &feeds[0];
        for path in [
            format!("/rss/{id}"), format!("/feed/{id}.rss"), format!("/feed/{id}.atom"),
            "/feed/all.rss".into(), "/feed/all.atom".into(),
            format!("/feed/task/{task}.rss"), format!("/feed/task/{task}.atom"),
        ] {
            let body = p.fetch(&path, &[]).await.text().await.expect("body");
            let titles = strict_titles(&path, &body);
            assert!(titles.contains(&"badtitle[1m".to_string()), "{path}: {titles:?}");
            assert!(!body.contains('\u{1}') && !body.contains('\u{1b}'), "{path}");
        }
        for (path, auth) in [("/opml".to_string(), crate::helpers::Auth::None), (cascade("/feeds/export-opml"), p.admin())] {
            let body = p.get(&path, &auth).await.text;
            assert_eq!(strict_titles(&path, &body), ["werss-cascade feeds", "feedname"], "{path}");
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn control_characters_are_dropped_where_text_enters(backend) {
        let p = TestParent::on(backend.clone()).await;
        let created = p.post(&cascade("/feeds"), &p.admin(), json!({
            "mp_name": "wx\u{1}name", "mp_intro": "\u{1b}[31mred", "faker_id": "MzA3NTQxNjA4MA==", "mp_cover": "https://c.example/\u{0}x.png"})).await;
        let id = created.ok()["id"].as_str().expect("id").to_string();
        let feed = p.get(&cascade(&format!("/feeds/{id}")), &p.admin()).await;
        assert_eq!((feed.ok()["mp_name"].as_str(), feed.ok()["mp_intro"].as_str()), (Some("wxname"), Some("[31mred")));
        assert_eq!(feed.ok()["mp_cover"], "https://c.example/x.png");
        p.put(&cascade(&format!("/feeds/{id}")), &p.admin(), json!({"mp_name": "re\u{7}named", "mp_intro": "\u{ffff}"})).await.ok();
        let feed = p.get(&cascade(&format!("/feeds/{id}")), &p.admin()).await;
        assert_eq!((feed.ok()["mp_name"].as_str(), feed.ok()["mp_intro"].as_str()), (Some("renamed"), Some("")));
        p.put(&cascade(&format!("/feeds/{id}")), &p.admin(), json!({"mp_name": "\u{1}\u{2}"})).await.err(400);
        let rss = p.post(&cascade("/feeds"), &p.admin(), json!({"mp_name": "blog", "source": "rss", "url": "https://b.example/\u{1b}feed.xml"})).await;
        assert_eq!(rss.ok()["url"], "https://b.example/feed.xml");

        let task = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "morning\u{1}", "message_template": "{{ article.title }}", "mps_id": [id], "status": 1})).await;
        assert_eq!(task.ok()["name"], "morning");
        let task = task.ok()["id"].as_str().expect("task").to_string();
        let node = p.online_node("crawler", json!({})).await;
        p.dispatch(&task).await;
        let pkg = p.claim_one(&node).await;
        let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"], "articles": [
            {"id": "a\u{1}1", "mp_id": id, "title": "T\u{1b}[0m", "url": "https://mp.example/s/\u{1}1", "description": "d\u{c}", "content_html": "<p>\u{1f}</p>", "publish_time": 1_795_000_000}]});
        p.post(&cascade("/upload-articles"), &node.auth(), body).await.ok();
        let doc: Value = serde_json::from_str(&p.fetch(&format!("/feed/{id}.json"), &[]).await.text().await.expect("body")).expect("json");
        let item = &doc["items"][0];
        assert_eq!(item["id"], format!("{}-a1", id.trim_start_matches("MP_WXS_")));
        assert_eq!((item["title"].as_str(), item["url"].as_str()), (Some("T[0m"), Some("https://mp.example/s/1")));
        assert_eq!((item["summary"].as_str(), item["content_html"].as_str()), (Some("d"), Some("<p></p>")));
        p.shutdown().await;
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
