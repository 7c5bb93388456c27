//! Operator commands `cascade node|feed|task`, each speaking the admin API through an
//! [`Api`] session (a running parent or the local database). Lists print aligned tables, or
//! the API's JSON with `--json`.

pub use super::admin_args::{FeedCmd, FeedListArgs, NodeCmd, Target, TaskCmd};
use super::api::{Api, Payload, envelope};
use super::colour;
use super::out::{out, outln};
use super::table::{Table, credentials, login_table, node_table, print, text};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

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
                credentials(&cred, api.public())?;
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
            print(json, &n, |n| {
                let mut n = Table::node_in_words(n);
                n["status"] = colour::state(&text(&n["status"])).into();
                Table::pairs(&n)
            })?;
        }
        NodeCmd::Credentials { id } => {
            let cred = api
                .post(&format!("/nodes/{id}/credentials"), json!({}))
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&cred)?)?;
            } else {
                credentials(&cred, api.public())?;
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
        FeedCmd::List(args) => feed_list(api, json, args).await?,
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
            let body = api
                .send(Method::GET, "/feeds/export-opml", &Payload::Empty)
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

/// `cascade feed list`: a page of `GET {P}/feed-status`, filtered by name, source and state,
/// ending with how many of how many it shows.
async fn feed_list(api: &Api, json: bool, args: FeedListArgs) -> anyhow::Result<()> {
    let skip = match args.page {
        Some(page) => page.saturating_sub(1).saturating_mul(args.limit),
        None => args.offset,
    };
    let (limit, offset) = (args.limit.to_string(), skip.to_string());
    let mut pairs = vec![("limit", limit.as_str()), ("offset", offset.as_str())];
    for (k, v) in [
        ("q", args.q.as_deref()),
        ("source", args.source.as_deref()),
        ("state", args.state.map(|s| s.as_str())),
    ] {
        if let Some(v) = v {
            pairs.push((k, v));
        }
    }
    let data = api.get(&format!("/feed-status?{}", query(&pairs))).await?;
    print(json, &data, |d| {
        let mut t = Table::new(&[
            "ID",
            "NAME",
            "SOURCE",
            "STATE",
            "ARTICLES",
            "UPDATED",
            "NEXT CHECK (UTC)",
            "LAST ERROR",
        ]);
        let list = d["list"].as_array().cloned().unwrap_or_default();
        for f in &list {
            let state = if f["status"] == 1 {
                "enabled"
            } else {
                "paused"
            };
            t.row(vec![
                text(&f["id"]),
                text(&f["mp_name"]),
                text(&f["source"]),
                colour::state(state),
                text(&f["article_count"]),
                colour::state(&text(&f["update_status"])),
                text(&f["next_check_at"]),
                text(&f["last_error"]),
            ]);
        }
        let total = d["total"].as_u64().unwrap_or(0);
        let next = u64::from(skip) + u64::try_from(list.len()).unwrap_or(u64::MAX);
        let mut footer = format!("{} of {total} feeds", list.len());
        if next < total && !list.is_empty() {
            footer.push_str(&format!(" (more: --offset {next})"));
        }
        t.footer(footer);
        t
    })
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
    if api.is_local() {
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
        let data = envelope(
            api.send(Method::POST, "/feeds/import-opml", &Payload::Opml(xml))
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
            print(json, &t, |t| Table::pairs(&with_cron_zone(api, t)))?;
        }
        TaskCmd::List => {
            let list = api.get("/message-tasks").await?;
            print(json, &list, |list| {
                let mut t = Table::new(&[
                    "ID",
                    "NAME",
                    "STATUS",
                    "CRON",
                    "FEEDS",
                    "WEBHOOK",
                    "NEXT RUN (UTC)",
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
                        colour::state(on),
                        cron_cell(api, task),
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
            print(json, &t, |t| Table::pairs(&with_cron_zone(api, t)))?;
        }
        TaskCmd::Remove { id } => {
            api.call(Method::DELETE, &format!("/message-tasks/{id}"), None)
                .await?;
            outln!("task {id} removed")?;
        }
    }
    Ok(())
}

/// A task's cron expression and the zone it is read in: "0 */2 * * * (UTC)"; `-` without one.
fn cron_cell(api: &Api, task: &Value) -> String {
    let cron = text(&task["cron_exp"]);
    if cron == "-" {
        return cron;
    }
    // A parent that reports its zone is believed; else our configuration's, when local.
    let zone = match (task["cron_timezone"].as_str(), api.cron_zone()) {
        (Some(zone), _) | (None, Some(zone)) => zone_label(zone),
        (None, None) => "the parent's `timezone`".to_string(),
    };
    format!("{cron} ({zone})")
}

/// `task` with its `cron_exp` as [`cron_cell`] shows it, for `task show`.
fn with_cron_zone(api: &Api, task: &Value) -> Value {
    let mut t = task.clone();
    t["cron_exp"] = cron_cell(api, task).into();
    t
}

/// A `timezone` setting in words: the zone it names, or, empty, the local zone the parent
/// then reads crons in (with its offset now).
fn zone_label(zone: &str) -> String {
    match zone.trim() {
        "" => format!("local time, UTC{}", chrono::Local::now().format("%:z")),
        named => named.to_string(),
    }
}
