//! The fake's WeChat-account data (SOURCES.md §2–§4, §7): the list `/web/mp/articles`
//! (groups newest first, 20 a page, group `offset`, nested or flat), the newest article
//! `/api/mp/cover` (errors as HTTP 499 + `data.errcode`), the article page
//! `/web/mp/content` (HTML with `#js_content`, 404 unknown), the shelf
//! (`POST /mp/shelf/addToShelf`, idempotent, `-2001` when full; `GET /web/shelf/bookIds`),
//! with switchable gates (list always `-2041`, the list only with `x-wr-ticket`, the list
//! only for books on the session's shelf, a per-session captcha state answering everything
//! `-2041` until cleared, a per-session budget answering `-2014`, a cover error) and a
//! request log per session.

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
    /// `list`, `cover`, `content`, `shelf_add` or `shelf_ids`.
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
    /// The list answers `-2041` without a non-empty `x-wr-ticket` header.
    require_ticket: bool,
    /// The list answers `-2041` for a book not on the session's shelf.
    shelved_only: bool,
    /// Sessions (vids) in the captcha state: every data call answers `-2041`.
    captcha: std::collections::HashSet<String>,
    /// Books on each session's shelf.
    shelves: HashMap<String, Vec<String>>,
    /// Books a shelf holds at most (`-2001` beyond).
    shelf_capacity: Option<usize>,
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
            require_ticket: false,
            shelved_only: false,
            captcha: std::collections::HashSet::new(),
            shelves: HashMap::new(),
            shelf_capacity: None,
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
        .route("/mp/shelf/addToShelf", post(add_to_shelf))
        .route("/web/shelf/bookIds", get(shelf_book_ids))
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

    /// Whether the list answers `-2041` to a request without a non-empty `x-wr-ticket`.
    pub fn require_ticket(&self, on: bool) {
        self.shared.lock().mp.require_ticket = on;
    }

    /// Whether the list answers `-2041` for a book not on the session's shelf.
    pub fn shelved_only(&self, on: bool) {
        self.shared.lock().mp.shelved_only = on;
    }

    /// Puts session `vid` in the captcha state (every data call answers `-2041`) or clears it.
    pub fn captcha(&self, vid: &str, on: bool) {
        let mut inner = self.shared.lock();
        if on {
            inner.mp.captcha.insert(vid.to_string());
        } else {
            inner.mp.captcha.remove(vid);
        }
    }

    /// Books a shelf holds at most (`None`: no limit); more answer `-2001`.
    pub fn set_shelf_capacity(&self, n: Option<usize>) {
        self.shared.lock().mp.shelf_capacity = n;
    }

    /// The books on session `vid`'s shelf, in the order added.
    pub fn shelf_of(&self, vid: &str) -> Vec<String> {
        self.shared
            .lock()
            .mp
            .shelves
            .get(vid)
            .cloned()
            .unwrap_or_default()
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
    if inner.mp.captcha.contains(&vid) {
        return (vid, Some((-2041, "请完成安全验证")));
    }
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
    let ticket = headers
        .get("x-wr-ticket")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    let refused = refused.or_else(|| {
        let inner = shared.lock();
        let shelved = inner
            .mp
            .shelves
            .get(&vid)
            .is_some_and(|s| s.contains(&book));
        if inner.mp.list_closed
            || (inner.mp.require_ticket && !ticket)
            || (inner.mp.shelved_only && !shelved)
        {
            Some((-2041, "请求失败"))
        } else {
            None
        }
    });
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

#[derive(Deserialize)]
struct ShelfAdd {
    #[serde(rename = "bookIds", default)]
    book_ids: Vec<String>,
}

/// `POST /mp/shelf/addToShelf` `{"bookIds":[…]}`: idempotent; `-2001` when the shelf is full.
async fn add_to_shelf(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Option<Json<ShelfAdd>>,
) -> Response {
    let books = body.map(|Json(b)| b.book_ids).unwrap_or_default();
    let first = books.first().cloned().unwrap_or_default();
    let (vid, refused) = admit(&shared, &headers);
    if let Some((code, msg)) = refused {
        log(&shared, vid, "shelf_add", &first, 0, code.to_string());
        return error(code, msg);
    }
    let full = {
        let mut inner = shared.lock();
        let cap = inner.mp.shelf_capacity;
        let shelf = inner.mp.shelves.entry(vid.clone()).or_default();
        let mut full = false;
        for b in &books {
            if shelf.contains(b) {
                continue;
            }
            if cap.is_some_and(|c| shelf.len() >= c) {
                full = true;
                break;
            }
            shelf.push(b.clone());
        }
        full
    };
    if full {
        log(&shared, vid, "shelf_add", &first, 0, "-2001".into());
        return error(-2001, "书架已满");
    }
    log(&shared, vid, "shelf_add", &first, 0, "ok".into());
    Json(json!({"status": 200, "succ": 1, "errCode": 0})).into_response()
}

#[derive(Deserialize)]
struct ShelfQuery {
    #[serde(rename = "bookIds")]
    book_ids: Option<String>,
}

/// `GET /web/shelf/bookIds?bookIds=a,b`: `{"data":[{"bookId","onShelf"}]}`.
async fn shelf_book_ids(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ShelfQuery>,
) -> Response {
    let asked: Vec<String> = q
        .book_ids
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    let (vid, refused) = admit(&shared, &headers);
    let first = asked.first().cloned().unwrap_or_default();
    if let Some((code, msg)) = refused {
        log(&shared, vid, "shelf_ids", &first, 0, code.to_string());
        return error(code, msg);
    }
    let data: Vec<Value> = {
        let inner = shared.lock();
        let shelf = inner.mp.shelves.get(&vid);
        asked
            .iter()
            .map(|b| json!({"bookId": b, "onShelf": shelf.is_some_and(|s| s.contains(b))}))
            .collect()
    };
    log(&shared, vid, "shelf_ids", &first, 0, "ok".into());
    Json(json!({"data": data})).into_response()
}
