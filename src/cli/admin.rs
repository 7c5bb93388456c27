//! Operator commands (`cascade node|feed|task|dispatch|allocations`). Each speaks the admin
//! API: of a running parent (`--url`, logging in with `--user`/`--password`), or of the local
//! database, served for the command's duration by an in-process parent on a loopback port
//! (so both paths run the same validation and state machine). Lists print aligned tables, or
//! the API's JSON with `--json`.

pub use super::admin_args::{FeedCmd, NodeCmd, Target, TaskCmd};
use super::out::{out, outln};
use super::table::{Table, credentials, login_table, node_table, print, text};
use crate::clock::Clock;
use crate::config::Config;
use crate::parent::{self, AppState};
use crate::store::{Store, redact_url};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An admin API session.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    local: Option<CancellationToken>,
    /// The local database URL, when serving it in-process.
    local_db: Option<String>,
    /// The parent's address as children should use it.
    public: String,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = &self.local {
            stop.cancel();
        }
    }
}

impl Api {
    /// Connects to `--url`, or serves the local database in-process.
    ///
    /// # Errors
    /// Login refused, parent unreachable, database unusable.
    pub async fn connect(target: &Target, config: Config) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        if let Some(url) = &target.url {
            let base = url.trim_end_matches('/').to_string();
            let password = target
                .password
                .clone()
                .context("--password (or CASCADE_PASSWORD) is needed with --url")?;
            let reply: Value = http
                .post(format!("{base}/api/v1/wx/auth/login"))
                .form(&[("username", target.user.as_str()), ("password", &password)])
                .send()
                .await
                .with_context(|| format!("while reaching {base}"))?
                .json()
                .await
                .context("the parent's login answer is not JSON")?;
            let token = reply["data"]["access_token"]
                .as_str()
                .with_context(|| format!("login refused: {}", reply["message"]))?;
            return Ok(Self {
                http,
                public: base.clone(),
                base,
                token: token.to_string(),
                local: None,
                local_db: None,
            });
        }
        let db = config.db.clone();
        let public = format!("http://{}:{}", config.bind, config.port);
        let store = match Store::connect(&db).await {
            Ok(store) => store,
            Err(e) => {
                let e = anyhow::Error::new(e);
                return Err(match busy_hint(&e, &db, &public) {
                    Some(hint) => anyhow::anyhow!(hint),
                    None => e.context(format!("while opening the database {}", redact_url(&db))),
                });
            }
        };
        let clock = Clock::system();
        match store.find_user(&target.user).await? {
            Some(u) if u.is_active => {}
            _ => bail!(
                "no active admin '{}' in {}: run `cascade init` first",
                target.user,
                redact_url(&db)
            ),
        }
        let stop = CancellationToken::new();
        // Nobody logs in to this in-process parent: its timing-equaliser hash may be cheap.
        let config = Config {
            bcrypt_cost: 4,
            ..config
        };
        let state = match AppState::new(config, store, clock.clone(), stop.clone()).await {
            Ok(state) => state,
            Err(e) => {
                return Err(match busy_hint(&e, &db, &public) {
                    Some(hint) => anyhow::anyhow!(hint),
                    None => e,
                });
            }
        };
        let token = state
            .jwt
            .issue(&target.user, clock.now())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(parent::serve_routes(listener, state));
        Ok(Self {
            http,
            base,
            token,
            local: Some(stop),
            local_db: Some(db),
            public,
        })
    }

    /// Sends an admin request and returns `data`, or the envelope's message as the error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/wx/cascade{path}", self.base);
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        if let Some(db) = &self.local_db
            && resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if body["data"]["reason"] == crate::store::Unavailable::Busy.as_str() {
                bail!(busy_message(db, &self.public));
            }
            bail!(
                "503: {}",
                body["message"].as_str().unwrap_or("service unavailable")
            );
        }
        envelope(resp).await
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// The advice for a local database another process keeps busy (`public`: the parent's
/// address from the configuration).
fn busy_message(db: &str, public: &str) -> String {
    format!(
        "the database {} stayed busy: another process (a running parent?) is writing to it. \
         Run the command through that parent instead: --url {public} (with --user and \
         --password or CASCADE_PASSWORD)",
        redact_url(db)
    )
}

/// [`busy_message`] when `e` comes from a busy database.
pub(super) fn busy_hint(e: &anyhow::Error, db: &str, public: &str) -> Option<String> {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<crate::store::Error>())
        .any(|e| e.unavailable() == Some(crate::store::Unavailable::Busy))
        .then(|| busy_message(db, public))
}

async fn envelope(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() && body["code"] == 0 {
        return Ok(body["data"].clone());
    }
    let field = body["data"]["field"]
        .as_str()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    bail!(
        "{}: {}{field}",
        status.as_u16(),
        body["message"].as_str().unwrap_or("request failed")
    )
}

/// `cascade node …`
pub async fn node(api: &Api, json: bool, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Add {
            name,
            capacity,
            description,
        } => {
            let mut body = json!({"node_type": 1, "name": name, "description": description});
            if let Some(c) = capacity {
                body["sync_config"] = json!({"max_capacity": c});
            }
            let created = api.post("/nodes", body).await?;
            let id = text(&created["node_id"]);
            let cred = api
                .post(&format!("/nodes/{id}/credentials"), json!({}))
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&cred)?)?;
            } else {
                credentials(&cred, &api.public)?;
            }
        }
        NodeCmd::List => print(json, &api.get("/nodes?node_type=1").await?, node_table)?,
        NodeCmd::Logins { id } => {
            let path = match id {
                Some(id) => format!(
                    "/logins?{}",
                    serde_urlencoded::to_string([("node_id", id.as_str())])?
                ),
                None => "/logins".to_string(),
            };
            print(json, &api.get(&path).await?, login_table)?;
        }
        NodeCmd::Show { id } => {
            let n = api.get(&format!("/nodes/{id}")).await?;
            print(json, &n, |n| Table::pairs(&Table::node_in_words(n)))?;
        }
        NodeCmd::Credentials { id } => {
            let cred = api
                .post(&format!("/nodes/{id}/credentials"), json!({}))
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&cred)?)?;
            } else {
                credentials(&cred, &api.public)?;
            }
        }
        NodeCmd::Disable { id } => set_active(api, &id, false).await?,
        NodeCmd::Enable { id } => set_active(api, &id, true).await?,
        NodeCmd::Remove { id } => {
            api.call(Method::DELETE, &format!("/nodes/{id}"), None)
                .await?;
            outln!("node {id} removed; its work returns to pending")?;
        }
    }
    Ok(())
}

async fn set_active(api: &Api, id: &str, active: bool) -> anyhow::Result<()> {
    let mut body = json!({"is_active": active});
    if active {
        body["reset_state"] = json!(true);
    }
    api.call(Method::PUT, &format!("/nodes/{id}"), Some(body))
        .await?;
    outln!("node {id} {}", if active { "enabled" } else { "disabled" })
}

/// `cascade feed …`
pub async fn feed(api: &Api, json: bool, cmd: FeedCmd) -> anyhow::Result<()> {
    match cmd {
        FeedCmd::Add {
            search: Some(query),
            pick,
            ..
        } => search_and_add(api, json, &query, pick).await?,
        FeedCmd::Add {
            link: Some(link),
            name,
            ..
        } => {
            let mut path = format!("/feeds/resolve?{}", query(&[("url", &link)]));
            if let Some(name) = name {
                path.push_str(&format!("&{}", query(&[("name", &name)])));
            }
            let f = api.call(Method::POST, &path, None).await?;
            print(json, &f, Table::pairs)?;
        }
        FeedCmd::Add {
            wechat,
            faker_id,
            rss,
            name,
            ..
        } => {
            let name = name.context("--name is needed with --wechat, --faker-id and --rss")?;
            let body = match (rss, wechat, faker_id) {
                (Some(url), _, _) => json!({"source": "rss", "url": url, "mp_name": name}),
                (None, None, None) => bail!("give --wechat MP_WXS_…, --faker-id or --rss URL"),
                (None, id, faker) => json!({"id": id, "faker_id": faker, "mp_name": name}),
            };
            let f = api.post("/feeds", body).await?;
            print(json, &f, Table::pairs)?;
        }
        FeedCmd::List => {
            let list = api.get("/feeds").await?;
            print(json, &list, |list| {
                let mut t = Table::new(&["ID", "NAME", "SOURCE", "STATUS", "URL"]);
                for f in list.as_array().into_iter().flatten() {
                    let on = if f["status"] == 1 { "on" } else { "off" };
                    t.row(vec![
                        text(&f["id"]),
                        text(&f["mp_name"]),
                        text(&f["source"]),
                        on.into(),
                        text(&f["url"]),
                    ]);
                }
                t
            })?;
        }
        FeedCmd::Check { id } => {
            let r = api.post(&format!("/feeds/{id}/check"), json!({})).await?;
            print(json, &r, Table::pairs)?;
        }
        FeedCmd::Priority { id, priority } => {
            let body = json!({"priority": priority});
            let f = api
                .call(Method::PUT, &format!("/feeds/{id}"), Some(body))
                .await?;
            print(json, &f, Table::pairs)?;
        }
        FeedCmd::ImportOpml { file } => import_opml(api, json, &file).await?,
        FeedCmd::ExportOpml { file } => {
            let url = format!("{}/api/v1/wx/cascade/feeds/export-opml", api.base);
            let body = api
                .http
                .get(url)
                .bearer_auth(&api.token)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            match file {
                Some(path) => {
                    std::fs::write(&path, &body)
                        .with_context(|| format!("while writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => out!("{body}")?,
            }
        }
    }
    Ok(())
}

/// `a=b&c=d`, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("a constant URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

/// `cascade feed add --search NAME [--pick N]`: lists the candidates a node found, or adds
/// the Nth.
async fn search_and_add(
    api: &Api,
    json: bool,
    name: &str,
    pick: Option<usize>,
) -> anyhow::Result<()> {
    if api.local.is_some() {
        bail!(
            "searching asks a child node through the running parent: give its address with \
             --url (and --user, --password or CASCADE_PASSWORD)"
        );
    }
    let path = format!("/feeds/search?{}", query(&[("q", name)]));
    let found = api.call(Method::POST, &path, None).await?;
    let list = found.as_array().cloned().unwrap_or_default();
    let Some(n) = pick else {
        return print(json, &found, |_| {
            let mut t = Table::new(&["#", "NAME", "ALIAS", "FEED ID", "SUBSCRIBED", "ABOUT"]);
            for (i, c) in list.iter().enumerate() {
                let subscribed = if c["already_subscribed"] == true {
                    "yes"
                } else {
                    "no"
                };
                t.row(vec![
                    (i + 1).to_string(),
                    text(&c["nickname"]),
                    text(&c["alias"]),
                    text(&c["feed_id"]),
                    subscribed.into(),
                    text(&c["signature"]).chars().take(40).collect(),
                ]);
            }
            if list.is_empty() {
                t.footer(format!("no account matches '{name}'"));
            } else {
                t.footer(format!(
                    "add one with: cascade feed add --search '{name}' --pick N"
                ));
            }
            t
        });
    };
    let Some(c) = n.checked_sub(1).and_then(|i| list.get(i)) else {
        bail!("--pick {n}: the search found {} candidates", list.len());
    };
    if c["already_subscribed"] == true {
        bail!(
            "{} ({}) is already a feed",
            text(&c["nickname"]),
            text(&c["feed_id"])
        );
    }
    let body = json!({"faker_id": c["fakeid"], "mp_name": c["nickname"],
                      "mp_cover": c["avatar"], "mp_intro": c["signature"]});
    let f = api.post("/feeds", body).await?;
    print(json, &f, Table::pairs)
}

/// Imports in slices of 500 outlines, with a progress bar: thousands of feeds stay responsive.
async fn import_opml(api: &Api, json: bool, file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("while reading {}", file.display()))?;
    let doc = crate::parent::outputs::parse_opml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let outlines = doc.body.outlines.clone();
    let bar = ProgressBar::new(u64::try_from(outlines.len()).unwrap_or(0)).with_style(
        ProgressStyle::with_template("importing {bar:30} {pos}/{len} outlines")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut total = json!({"received": 0, "created": 0, "existing": 0, "skipped": 0});
    for slice in outlines.chunks(500) {
        let mut part = doc.clone();
        part.body.outlines = slice.to_vec();
        let xml = part.to_string().map_err(|e| anyhow::anyhow!("{e}"))?;
        let url = format!("{}/api/v1/wx/cascade/feeds/import-opml", api.base);
        let data = envelope(
            api.http
                .post(url)
                .bearer_auth(&api.token)
                .header("content-type", "text/x-opml")
                .body(xml)
                .send()
                .await?,
        )
        .await?;
        for key in ["received", "created", "existing", "skipped"] {
            total[key] = json!(total[key].as_u64().unwrap_or(0) + data[key].as_u64().unwrap_or(0));
        }
        bar.inc(u64::try_from(slice.len()).unwrap_or(0));
    }
    bar.finish_and_clear();
    print(json, &total, Table::pairs)
}

/// `cascade task …`
pub async fn task(api: &Api, json: bool, cmd: TaskCmd) -> anyhow::Result<()> {
    match cmd {
        TaskCmd::Add {
            name,
            feeds,
            all_feeds,
            cron,
            webhook,
            template,
            message_type,
            disabled,
            priority,
        } => {
            // `--all-feeds` asks the parent to read every feed at each dispatch, so feeds
            // added later are included.
            let body = json!({"name": name, "mps_id": feeds, "all_feeds": all_feeds, "cron_exp": cron,
                              "web_hook_url": webhook, "message_template": template,
                              "message_type": message_type, "status": i64::from(!disabled),
                              "priority": priority});
            let t = api.post("/message-tasks", body).await?;
            print(json, &t, Table::pairs)?;
        }
        TaskCmd::List => {
            let list = api.get("/message-tasks").await?;
            print(json, &list, |list| {
                let mut t = Table::new(&[
                    "ID", "NAME", "STATUS", "CRON", "FEEDS", "WEBHOOK", "NEXT RUN",
                ]);
                for task in list.as_array().into_iter().flatten() {
                    let feeds =
                        serde_json::from_str::<Value>(task["mps_id"].as_str().unwrap_or("[]"))
                            .ok()
                            .and_then(|v| v.as_array().map(Vec::len))
                            .unwrap_or(0);
                    let on = if task["status"] == 1 {
                        "enabled"
                    } else {
                        "disabled"
                    };
                    t.row(vec![
                        text(&task["id"]),
                        text(&task["name"]),
                        on.into(),
                        text(&task["cron_exp"]),
                        feeds.to_string(),
                        text(&task["web_hook_url"]),
                        text(&task["next_run_at"]),
                    ]);
                }
                t
            })?;
        }
        TaskCmd::Show { id } => {
            let t = api.get(&format!("/message-tasks/{id}")).await?;
            print(json, &t, Table::pairs)?;
        }
        TaskCmd::Remove { id } => {
            api.call(Method::DELETE, &format!("/message-tasks/{id}"), None)
                .await?;
            outln!("task {id} removed")?;
        }
    }
    Ok(())
}
