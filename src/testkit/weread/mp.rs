//! The fake's WeChat-account data (SOURCES.md §2–§4, §7): the list `/web/mp/articles`
//! (groups newest first, 20 a page, group `offset`, nested or flat), the newest article
//! `/api/mp/cover` (errors as HTTP 499 + `data.errcode`), the article page
//! `/web/mp/content` (HTML with `#js_content`, 404 unknown), with switchable gates (list
//! always `-2041`, a per-session budget answering `-2014`, a cover error) and a request log
//! per session.

use super::renewal::{Auth, authenticate};
use super::*;
use crate::testkit::wechat::{FakeAccount, FakePublish};

/// One article as WeRead lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct WereadArticle {
    /// `mpInfo.originalId`, the `/s/<token>` token (may contain `~`).
    pub token: String,
    /// Title.
    pub title: String,
    /// `mpInfo.content`, the digest.
    pub digest: String,
    /// `mpInfo.time`, the publish time, when given (else readers use `createTime`).
    pub time: Option<i64>,
    /// `mpInfo.doc_url`, the long link, when given.
    pub doc_url: Option<String>,
    /// `mpInfo.readNum` as sent (a number or a string like `"1.2万"`).
    pub read_num: Option<Value>,
}

/// One push: a top-level group of the list, 1–8 articles.
#[derive(Debug, Clone, PartialEq)]
pub struct WereadGroup {
    /// The group's (and its reviews') `createTime`.
    pub create_time: i64,
    /// Articles in push order.
    pub articles: Vec<WereadArticle>,
}

impl WereadGroup {
    /// The fake WeChat's push `publish` of `account` as WeRead lists it: the same tokens
    /// (`originalId`), the long link as `doc_url`, the publish time as `mpInfo.time`, created
    /// a minute later.
    pub fn from_publish(account: &FakeAccount, publish: &FakePublish) -> Self {
        let articles: Vec<WereadArticle> = publish
            .articles
            .iter()
            .map(|a| WereadArticle {
                token: account.article_token(publish.appmsgid, a.itemidx),
                title: a.title.clone(),
                digest: a.digest.clone(),
                time: Some(a.update_time),
                doc_url: Some(account.article_link(publish.appmsgid, a.itemidx)),
                read_num: None,
            })
            .collect();
        let newest = publish
            .articles
            .iter()
            .map(|a| a.update_time)
            .max()
            .unwrap_or(0);
        Self {
            create_time: newest + 60,
            articles,
        }
    }
}

/// The `bookId` of an account: `MP_WXS_<number>`.
pub fn book_id(account: &FakeAccount) -> String {
    format!("MP_WXS_{}", account.number)
}

/// One data request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WereadLogEntry {
    /// When it arrived.
    pub at: Instant,
    /// `wr_vid` sent (empty without cookies).
    pub vid: String,
    /// `list`, `cover` or `content`.
    pub endpoint: &'static str,
    /// `bookId` (or `reviewId` for content).
    pub book_id: String,
    /// List `offset`.
    pub offset: usize,
    /// `ok`, `404` or the error code answered (`-2041`, `-2014`, …).
    pub outcome: String,
}

/// The MP data of the fake: books, gates, budgets and the log.
pub(super) struct MpData {
    /// Groups per `bookId`, newest first.
    books: HashMap<String, Vec<WereadGroup>>,
    /// Groups per list page.
    page_size: usize,
    /// The list answers `-2041` to everyone.
    list_closed: bool,
    /// The list answers flat groups (`review` without `subReviews`), one per article.
    flat: bool,
    /// Requests a session may make per window; more answer `-2014`.
    budget: Option<(usize, Duration)>,
    hits: HashMap<String, VecDeque<Instant>>,
    /// The cover answers HTTP 499 with this `data.errcode`.
    cover_error: Option<i64>,
    /// `/web/mp/content` answers only the `#js_content` element.
    content_fragment: bool,
    /// Sessions (`wr_vid`) whose `/web/mp/content` answers the human-check page.
    content_check: std::collections::HashSet<String>,
    log: Vec<WereadLogEntry>,
}

impl Default for MpData {
    fn default() -> Self {
        Self {
            books: HashMap::new(),
            page_size: 20,
            list_closed: false,
            flat: false,
            budget: None,
            hits: HashMap::new(),
            cover_error: None,
            content_fragment: false,
            content_check: std::collections::HashSet::new(),
            log: Vec::new(),
        }
    }
}

/// Adds the MP data routes to the fake's router.
pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/web/mp/articles", get(articles))
        .route("/api/mp/cover", get(cover))
        .route("/web/mp/content", get(content))
}

impl FakeWeread {
    /// Serves `account` (its pushes as WeRead groups with the fake WeChat's tokens), replacing
    /// what its book had.
    pub fn serve_account(&self, account: &FakeAccount) {
        let groups = account
            .publishes
            .iter()
            .map(|p| WereadGroup::from_publish(account, p))
            .collect();
        self.shared.lock().mp.books.insert(book_id(account), groups);
    }

    /// Adds a group at the top (newest) of a book.
    pub fn publish(&self, book: &str, group: WereadGroup) {
        self.shared
            .lock()
            .mp
            .books
            .entry(book.to_string())
            .or_default()
            .insert(0, group);
    }

    /// Groups per list page (default 20).
    pub fn set_page_size(&self, n: usize) {
        self.shared.lock().mp.page_size = n.max(1);
    }

    /// Whether the list answers `-2041` to everyone (the cover keeps working).
    pub fn close_list(&self, closed: bool) {
        self.shared.lock().mp.list_closed = closed;
    }

    /// Whether the list answers flat groups (`review`, no `subReviews`), one per article.
    pub fn flat(&self, on: bool) {
        self.shared.lock().mp.flat = on;
    }

    /// Requests (list, cover, content) each session may make per `window`; more answer
    /// `-2014`. `None` = unlimited.
    pub fn set_budget(&self, budget: Option<(usize, Duration)>) {
        let mut inner = self.shared.lock();
        inner.mp.budget = budget;
        inner.mp.hits.clear();
    }

    /// The cover answers HTTP 499 with `{"data":{"errcode":code}}` (`None`: answers again).
    pub fn cover_error(&self, code: Option<i64>) {
        self.shared.lock().mp.cover_error = code;
    }

    /// `/web/mp/content` answers only the `<div id="js_content">` element (no page around it).
    pub fn content_fragment(&self, on: bool) {
        self.shared.lock().mp.content_fragment = on;
    }

    /// `/web/mp/content` answers the human-check page (`当前环境异常…`) to the session `vid`.
    pub fn content_human_check(&self, vid: &str, on: bool) {
        let mut inner = self.shared.lock();
        if on {
            inner.mp.content_check.insert(vid.to_string());
        } else {
            inner.mp.content_check.remove(vid);
        }
    }

    /// A logged-in session made without the QR flow: its jar (`wr_vid`, `wr_skey`,
    /// `wr_rt`, `wr_ql=0`).
    pub fn new_session(&self, name: &str) -> crate::logins::weread::WereadJar {
        use crate::protocol::credentials::Secret;
        let mut inner = self.shared.lock();
        let vid = inner.next_vid;
        inner.next_vid += 1;
        let skey = random_skey();
        let rt = format!("rt{vid}{}", random_skey());
        inner.sessions.insert(
            vid.to_string(),
            Session {
                name: name.to_string(),
                skey: skey.clone(),
                skey_stale: false,
                old_skeys: Vec::new(),
                rt: rt.clone(),
                rt_expired: false,
            },
        );
        crate::logins::weread::WereadJar::from_pairs([
            ("wr_vid".to_string(), Secret::new(vid.to_string())),
            ("wr_skey".to_string(), Secret::new(skey)),
            ("wr_rt".to_string(), Secret::new(rt)),
            ("wr_ql".to_string(), Secret::new("0")),
        ])
    }

    /// A new session as a child's `weread` login with id `id`.
    pub fn new_login(&self, id: &str) -> crate::logins::Login {
        use crate::logins::{Login, LoginKind, LoginSecrets};
        let jar = self.new_session(&format!("reader {id}"));
        let secrets = LoginSecrets {
            token: None,
            cookies: jar.pairs().to_vec(),
        };
        Login::new(id, LoginKind::Weread, &format!("fake {id}"), secrets)
    }

    /// Data requests of the session `vid` (empty: those without cookies), in order.
    pub fn log_for(&self, vid: &str) -> Vec<WereadLogEntry> {
        self.shared
            .lock()
            .mp
            .log
            .iter()
            .filter(|e| e.vid == vid)
            .cloned()
            .collect()
    }

    /// Every data request, in order.
    pub fn requests(&self) -> Vec<WereadLogEntry> {
        self.shared.lock().mp.log.clone()
    }
}

/// A gate's refusal: code and message.
type Refusal = (i64, &'static str);

/// Authentication and budget, logged: the session's vid, or the refusal.
fn admit(shared: &Shared, headers: &HeaderMap) -> (String, Option<Refusal>) {
    let vid = cookies(headers).get("wr_vid").cloned().unwrap_or_default();
    match authenticate(shared, headers) {
        Auth::NoLogin => return (vid, Some((-2010, "用户不存在"))),
        Auth::Stale => return (vid, Some((-2012, "登录超时"))),
        Auth::Ok(_) => {}
    }
    let mut inner = shared.lock();
    if let Some((limit, window)) = inner.mp.budget {
        let now = Instant::now();
        let hits = inner.mp.hits.entry(vid.clone()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            hits.pop_front();
        }
        if hits.len() >= limit {
            return (vid, Some((-2014, "操作太频繁")));
        }
        hits.push_back(now);
    }
    (vid, None)
}

fn log(
    shared: &Shared,
    vid: String,
    endpoint: &'static str,
    book_id: &str,
    offset: usize,
    outcome: String,
) {
    shared.lock().mp.log.push(WereadLogEntry {
        at: Instant::now(),
        vid,
        endpoint,
        book_id: book_id.to_string(),
        offset,
        outcome,
    });
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "bookId")]
    book_id: Option<String>,
    offset: Option<usize>,
}

fn review(book: &str, create_time: i64, a: &WereadArticle) -> Value {
    let id = format!("{book}_{}", a.token);
    let mut info = json!({"title": a.title, "originalId": a.token, "content": a.digest,
        "pic_url": format!("https://mmbiz.qpic.cn/fake/{}/0", a.token), "mp_name": book});
    if let Some(t) = a.time {
        info["time"] = json!(t);
    }
    if let Some(d) = &a.doc_url {
        info["doc_url"] = json!(d);
    }
    if let Some(n) = &a.read_num {
        info["readNum"] = n.clone();
    }
    json!({"reviewId": id, "type": 16, "createTime": create_time, "belongBookId": book, "mpInfo": info})
}

async fn articles(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let book = q.book_id.unwrap_or_default();
    let offset = q.offset.unwrap_or(0);
    let (vid, refused) = admit(&shared, &headers);
    let refused = refused.or_else(|| shared.lock().mp.list_closed.then_some((-2041, "请求失败")));
    if let Some((code, msg)) = refused {
        log(&shared, vid, "list", &book, offset, code.to_string());
        return error(code, msg);
    }
    let page = {
        let inner = shared.lock();
        let groups = inner.mp.books.get(&book).cloned().unwrap_or_default();
        let entries: Vec<Value> = if inner.mp.flat {
            groups
                .iter()
                .flat_map(|g| {
                    g.articles.iter().map(|a| {
                        json!({"createTime": g.create_time, "review": review(&book, g.create_time, a)})
                    })
                })
                .collect()
        } else {
            groups
                .iter()
                .map(|g| {
                    let subs: Vec<Value> = g
                        .articles
                        .iter()
                        .map(|a| {
                            let r = review(&book, g.create_time, a);
                            json!({"reviewId": r["reviewId"], "review": r})
                        })
                        .collect();
                    json!({"createTime": g.create_time, "subCount": subs.len(), "subReviews": subs})
                })
                .collect()
        };
        let synckey = groups.first().map_or(0, |g| g.create_time);
        let page: Vec<Value> = entries
            .into_iter()
            .skip(offset)
            .take(inner.mp.page_size)
            .collect();
        json!({"reviews": page, "clearAll": 0, "synckey": synckey})
    };
    log(&shared, vid, "list", &book, offset, "ok".into());
    Json(page).into_response()
}

fn http_499(code: i64, msg: &str) -> Response {
    let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"data": {"errcode": code, "errmsg": msg}})),
    )
        .into_response()
}

async fn cover(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let book = q.book_id.unwrap_or_default();
    let (vid, refused) = admit(&shared, &headers);
    let refused = refused.or_else(|| shared.lock().mp.cover_error.map(|c| (c, "cover refused")));
    if let Some((code, msg)) = refused {
        log(&shared, vid, "cover", &book, 0, code.to_string());
        return http_499(code, msg);
    }
    let newest = shared
        .lock()
        .mp
        .books
        .get(&book)
        .and_then(|g| g.first().and_then(|g| g.articles.first().cloned()));
    let Some(a) = newest else {
        log(&shared, vid, "cover", &book, 0, "-2003".into());
        return http_499(-2003, "book not found");
    };
    log(&shared, vid, "cover", &book, 0, "ok".into());
    Json(json!({"name": book, "title": a.title, "pic": format!("https://mmbiz.qpic.cn/fake/{}/0", a.token),
        "reviewId": format!("{book}_{}", a.token), "digest": a.digest, "avatar": "", "template": 0,
        "coverBoxInfo": {}}))
    .into_response()
}

#[derive(Deserialize)]
struct ContentQuery {
    #[serde(rename = "reviewId")]
    review_id: Option<String>,
}

async fn content(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ContentQuery>,
) -> Response {
    let review_id = q.review_id.unwrap_or_default();
    let (vid, refused) = admit(&shared, &headers);
    if let Some((code, msg)) = refused {
        log(&shared, vid, "content", &review_id, 0, code.to_string());
        return error(code, msg);
    }
    let found = shared.lock().mp.books.iter().find_map(|(book, groups)| {
        groups
            .iter()
            .flat_map(|g| g.articles.iter())
            .find(|a| format!("{book}_{}", a.token) == review_id)
            .cloned()
    });
    let Some(a) = found else {
        log(&shared, vid, "content", &review_id, 0, "404".into());
        return (
            StatusCode::NOT_FOUND,
            axum::response::Html("<html><body>not found</body></html>"),
        )
            .into_response();
    };
    let (fragment, checked) = {
        let inner = shared.lock();
        (
            inner.mp.content_fragment,
            inner.mp.content_check.contains(&vid),
        )
    };
    if checked {
        log(&shared, vid, "content", &review_id, 0, "human_check".into());
        return axum::response::Html(
            "<html><body><div class=\"weui-msg\"><h2 class=\"weui-msg__title\">\
             当前环境异常，完成验证后即可继续访问。</h2></div></body></html>",
        )
        .into_response();
    }
    log(&shared, vid, "content", &review_id, 0, "ok".into());
    let element = format!(
        "<div id=\"js_content\" class=\"rich_media_content\" style=\"visibility: hidden;\">\
         <p>{d}</p><p><img data-src=\"https://mmbiz.qpic.cn/fake/{k}/1\"></p></div>",
        d = a.digest,
        k = a.token
    );
    if fragment {
        return axum::response::Html(element).into_response();
    }
    axum::response::Html(format!(
        "<!DOCTYPE html><html><head><title>{t}</title><meta property=\"og:title\" content=\"{t}\"></head>\
         <body><div class=\"rich_media\" id=\"js_article\"><h1 id=\"activity-name\">{t}</h1>{element}</div></body></html>",
        t = a.title,
    ))
    .into_response()
}
