//! One article per feed whichever source read it (issue 13 §4): uploads as the MP list, the
//! WeRead list and the WeRead cover send them, matched by link or by title and time, shown
//! once with the id and publish time first stored, and no webhook for a duplicate.

use crate::helpers::db::on_both;
use crate::helpers::{Auth, TestNode, TestParent, cascade};
use crate::webhooks::{next, receiver};
use serde_json::{Value, json};

const T: i64 = 1_795_000_000;

/// The long link the MP list gives (with tracking keys another source may not send).
fn long(mid: u64, idx: u64, sn: &str) -> String {
    format!(
        "http://mp.weixin.qq.com/s?__biz=MzA5NTAwMDAwMA==&mid={mid}&idx={idx}&sn={sn}&chksm=c{idx}#rd"
    )
}

fn short(token: &str) -> String {
    format!("https://mp.weixin.qq.com/s/{token}")
}

impl TestParent {
    /// Uploads `articles` to the allocation of `pkg` and returns the reply's `data`.
    async fn upload(&self, node: &TestNode, pkg: &Value, articles: Value) -> Value {
        let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"], "articles": articles});
        self.post(&cascade("/upload-articles"), &node.auth(), body)
            .await
            .ok()
            .clone()
    }

    /// The JSON Feed items of `feed`.
    async fn json_items(&self, feed: &str) -> Vec<Value> {
        let r = self.get(&format!("/feed/{feed}.json"), &Auth::None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["items"].as_array().expect("items").clone()
    }
}

/// The article titles a webhook named, sorted.
fn titles_of(hook: &Value) -> Vec<String> {
    let text = hook["text"].as_str().expect("text");
    let mut titles: Vec<String> = text.split_terminator(';').map(String::from).collect();
    titles.sort();
    titles
}

fn counts(data: &Value) -> (u64, u64, u64) {
    let n = |k: &str| data[k].as_u64().unwrap_or(u64::MAX);
    (n("new_count"), n("updated_count"), n("duplicate_count"))
}

on_both! {
    #[tokio::test]
    async fn a_feed_read_by_mp_list_then_weread_shows_each_article_once(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (hook, mut rx) = receiver(0).await;
        let node = p.online_node("n", json!({})).await;
        let feed = p.feeds(9_500_000, 1).await.remove(0);
        let template = r#"{"text": "{% for a in articles %}{{ a.title }};{% endfor %}"}"#;
        let t = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "hook", "message_type": 1,
            "message_template": template, "web_hook_url": hook, "mps_id": [feed], "status": 1})).await;
        p.dispatch(t.ok()["id"].as_str().expect("task id")).await;
        let pkg = p.claim_one(&node).await;

        // As the MP list: `<mid>_<idx>` ids, long links, publish times.
        let mp = p.upload(&node, &pkg, json!([
            {"id": "2247483701_1", "mp_id": feed, "title": "Alpha", "url": long(2_247_483_701, 1, "aa"), "publish_time": T},
            {"id": "2247483701_2", "mp_id": feed, "title": "Beta", "url": long(2_247_483_701, 2, "bb"), "publish_time": T,
             "description": "digest from the MP list"},
        ])).await;
        assert_eq!(counts(&mp), (2, 0, 0), "{mp}");
        let (alpha, beta) = (mp["ids"][0].clone(), mp["ids"][1].clone());
        let (_, first) = next(&mut rx).await;
        assert_eq!(titles_of(&first), ["Alpha", "Beta"]);

        // As the WeRead list: token ids, short links. Alpha carries its long link as
        // `doc_url` (without `sn` here); Beta has none, and a publish time two minutes off:
        // the title and time match it.
        let list = p.upload(&node, &pkg, json!([
            {"id": "tokAlpha", "mp_id": feed, "title": "Alpha", "url": short("tokAlpha"),
             "doc_url": "https://mp.weixin.qq.com/s?__biz=MzA5NTAwMDAwMA%3D%3D&mid=2247483701&idx=1",
             "publish_time": T + 30, "description": "digest from WeRead", "pic_url": "https://mmbiz.qpic.cn/alpha.jpg"},
            {"id": "tokBeta", "mp_id": feed, "title": "Beta", "url": short("tokBeta"), "publish_time": T + 120,
             "description": "another digest"},
        ])).await;
        assert_eq!(counts(&list), (0, 2, 2), "{list}");
        assert_eq!(list["ids"], json!([alpha, beta]), "the stored ids answer");

        // As the cover: the token, dated at reading. Beta is known by its short link now.
        let now = p.clock.now().and_utc().timestamp();
        let cover = p.upload(&node, &pkg, json!([
            {"id": "tokBeta", "mp_id": feed, "title": "Beta", "url": short("tokBeta"), "publish_time": now},
        ])).await;
        assert_eq!(counts(&cover), (0, 1, 1), "{cover}");
        assert_eq!(cover["ids"], json!([beta]));

        // A new article, and one with Alpha's title five hours later: both new, and the next
        // webhook names only them (none was queued for the duplicates).
        let fresh = p.upload(&node, &pkg, json!([
            {"id": "tokGamma", "mp_id": feed, "title": "Gamma", "url": short("tokGamma"), "publish_time": T + 3600},
            {"id": "tokAlpha2", "mp_id": feed, "title": "Alpha", "url": short("tokAlpha2"), "publish_time": T + 5 * 3600},
        ])).await;
        assert_eq!(counts(&fresh), (2, 0, 0), "{fresh}");
        let (_, second) = next(&mut rx).await;
        assert_eq!(titles_of(&second), ["Alpha", "Gamma"]);

        let items = p.json_items(&feed).await;
        let ids: Vec<&Value> = items.iter().map(|i| &i["id"]).collect();
        assert_eq!(ids.len(), 4, "{items:?}");
        assert_eq!(ids[2..], [&beta, &alpha], "oldest last, each once: {items:?}");
        let by_id = |id: &Value| items.iter().find(|i| &i["id"] == id).expect("item").clone();
        let (a, b) = (by_id(&alpha), by_id(&beta));
        let published = chrono::DateTime::from_timestamp(T, 0).expect("time").fixed_offset().to_rfc3339();
        assert_eq!(a["date_published"], published.as_str(), "the first publish time stays");
        assert_eq!(b["date_published"], published.as_str(), "the cover did not re-date it");
        assert_eq!(a["url"], long(2_247_483_701, 1, "aa"), "the first link stays");
        assert_eq!(a["summary"], "digest from WeRead", "what the row lacked is filled");
        assert_eq!(a["image"], "https://mmbiz.qpic.cn/alpha.jpg");
        assert_eq!(b["summary"], "digest from the MP list", "what it had is kept");

        let rss = p.get(&format!("/feed/{feed}.rss"), &Auth::None).await;
        let parsed = feed_rs::parser::parse(rss.text.as_bytes()).expect("rss");
        let titles: Vec<String> = parsed.entries.iter().map(|e| e.title.clone().expect("title").content).collect();
        assert_eq!(titles, ["Alpha", "Gamma", "Beta", "Alpha"], "each once, newest first");        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_cover_article_keeps_its_first_seen_time(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(9_600_000).await;
        let feed = pkg["feeds"][0]["id"].as_str().expect("feed").to_string();
        let cover = |now: i64| json!([{"id": "tokNewest", "mp_id": feed, "title": "Newest", "url": short("tokNewest"), "publish_time": now}]);
        let seen = p.clock.now().and_utc().timestamp();
        let first = p.upload(&node, &pkg, cover(seen)).await;
        assert_eq!(counts(&first), (1, 0, 0), "{first}");
        p.complete(&node, &pkg).await.ok();

        // The next crawl reads the cover an hour later: the same article, not re-dated.
        p.clock.advance(chrono::TimeDelta::hours(1));
        let again = p.upload(&node, &pkg, cover(p.clock.now().and_utc().timestamp())).await;
        assert_eq!(counts(&again), (0, 1, 0), "{again}");
        // The WeRead list then gives its MP id and publish time: matched by the short link,
        // the first-seen time stays.
        let list = p.upload(&node, &pkg, json!([{"id": "2247483800_1", "mp_id": feed, "title": "Newest",
            "url": short("tokNewest"), "doc_url": long(2_247_483_800, 1, "nn"), "publish_time": seen - 600}])).await;
        assert_eq!(counts(&list), (0, 1, 1), "{list}");
        assert_eq!(list["ids"], first["ids"]);

        let items = p.json_items(&feed).await;
        assert_eq!(items.len(), 1, "{items:?}");
        let published = chrono::DateTime::from_timestamp(seen, 0).expect("time").fixed_offset().to_rfc3339();
        assert_eq!(items[0]["date_published"], published.as_str());
        assert_eq!(items[0]["id"], first["ids"][0]);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn articles_of_other_kinds_or_told_apart_by_links_stay_separate(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(9_700_000).await;
        let feed = pkg["feeds"][0]["id"].as_str().expect("feed").to_string();
        // Two pushes of one title a minute apart with their own tokens: two articles.
        let two = p.upload(&node, &pkg, json!([
            {"id": "tokOne", "mp_id": feed, "title": "Morning news", "url": short("tokOne"), "publish_time": T},
            {"id": "tokTwo", "mp_id": feed, "title": "Morning news", "url": short("tokTwo"), "publish_time": T + 60},
        ])).await;
        assert_eq!(counts(&two), (2, 0, 0), "{two}");
        // The same link uploaded again under a new id is the first one.
        let again = p.upload(&node, &pkg, json!([
            {"id": "2247483900_1", "mp_id": feed, "title": "Morning news (edited)", "url": short("tokOne"), "publish_time": T + 7200},
        ])).await;
        assert_eq!(counts(&again), (0, 1, 1), "{again}");
        assert_eq!(again["ids"][0], two["ids"][0]);
        assert_eq!(p.json_items(&feed).await.len(), 2);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn articles_stored_before_the_link_table_are_matched_by_their_links(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(9_800_000).await;
        let feed = pkg["feeds"][0]["id"].as_str().expect("feed").to_string();
        let old = p.upload(&node, &pkg, json!([{"id": "2247484000_1", "mp_id": feed, "title": "Old title",
            "url": long(2_247_484_000, 1, "oo"), "publish_time": T}])).await;
        // The database as schema 6 left it: no link table.
        crate::helpers::db::execute(&p.state.config.db, "DROP TABLE cascade_article_links;
            UPDATE cascade_settings SET value = '6' WHERE key = 'schema_version'").await;
        let upgraded = TestParent::join(&p).await;

        // Another title and a day later: only the link (learned from `url` by the migration)
        // can tell it is the same article.
        let list = upgraded.upload(&node, &pkg, json!([{"id": "tokOld", "mp_id": feed, "title": "New title",
            "url": short("tokOld"), "doc_url": long(2_247_484_000, 1, "oo"), "publish_time": T + 86_400}])).await;
        assert_eq!(counts(&list), (0, 1, 1), "{list}");
        assert_eq!(list["ids"], old["ids"]);
        let items = upgraded.json_items(&feed).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["title"], "Old title", "what the row had is kept");
        upgraded.shutdown().await;
        p.shutdown().await;
    }
}
