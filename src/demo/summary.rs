//! The demo's summary, read from the store and the fake WeChat once the dispatch is done: what
//! each child read, the full text fetched, what the fleet learnt of the sources, the nodes
//! still cooling and every login of the fleet.

use super::qr::local_time;
use crate::clock::Clock;
use crate::parent;
use crate::store::{AllocationFilter, Page, Store};
use crate::testkit::wechat::{FakeAccount, FakeWechat};
use std::time::Duration;

/// A child of the demo: its node's name and id, and its `mp` token when it has one.
pub(super) struct Member {
    pub name: String,
    pub id: String,
    pub token: Option<String>,
}

/// What the summary reads.
pub(super) struct Summary<'a> {
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub task_id: &'a str,
    pub members: &'a [Member],
    pub fake: &'a FakeWechat,
    pub accounts: &'a [FakeAccount],
}

impl Summary<'_> {
    /// Prints the summary of a run that took `elapsed`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn print(&self, elapsed: Duration) -> anyhow::Result<()> {
        println!("\n\nsummary after {:.1} s:", elapsed.as_secs_f64());
        self.per_child().await?;
        self.full_text().await?;
        self.sources().await?;
        self.cooling().await?;
        // What the children reported in their heartbeats (each sent one before it started).
        println!("logins:");
        for m in self.members {
            for login in self.store.list_node_logins(Some(m.id.clone())).await? {
                let expires = login.expires_at.map_or_else(
                    || "no known expiry".to_string(),
                    |t| format!("expires {}", local_time(t)),
                );
                println!(
                    "  {}: {} {}, {}, {expires}",
                    login.node_name, login.kind, login.name, login.state
                );
            }
        }
        Ok(())
    }

    /// Feeds and articles each child completed, and the MP refusals its login met.
    async fn per_child(&self) -> anyhow::Result<()> {
        let mut articles_total = 0;
        for m in self.members {
            let mine = AllocationFilter {
                task_id: Some(self.task_id.to_string()),
                node_id: Some(m.id.clone()),
                status: Some("completed".into()),
                ..AllocationFilter::default()
            };
            let (mut articles, mut offset) = (0, 0);
            let feeds = loop {
                let page = Page { limit: 200, offset };
                let (rows, total) = self.store.list_allocations(mine.clone(), page).await?;
                articles += rows.iter().map(|a| a.article_count).sum::<i64>();
                offset += 200;
                if offset >= total {
                    break total;
                }
            };
            articles_total += articles;
            let reads = match &m.token {
                Some(token) => {
                    let refused = self
                        .fake
                        .log_for(token)
                        .iter()
                        .filter(|e| e.outcome == "200013")
                        .count();
                    format!("mp login, {refused} MP refusals")
                }
                None => "weread login".to_string(),
            };
            println!("  {}: {feeds} feeds, {articles} articles ({reads})", m.name);
        }
        println!("total: {articles_total} articles");
        Ok(())
    }

    /// Bodies the children fetched (WeRead content for what `weread_list` read).
    async fn full_text(&self) -> anyhow::Result<()> {
        let wechat_ids: Vec<String> = self
            .accounts
            .iter()
            .map(|a| format!("MP_WXS_{}", a.number))
            .collect();
        let (mut wechat_articles, mut with_body, mut offset) = (0, 0, 0);
        loop {
            let page = Page {
                limit: 1000,
                offset,
            };
            let rows = self
                .store
                .list_articles(Some(wechat_ids.clone()), page)
                .await?;
            wechat_articles += rows.len();
            with_body += rows
                .iter()
                .filter(|a| a.content_html.as_deref().is_some_and(|c| !c.is_empty()))
                .count();
            if rows.len() < 1000 {
                break;
            }
            offset += 1000;
        }
        println!("full text: {with_body} of {wechat_articles} WeChat articles");
        Ok(())
    }

    /// What the fleet learnt of the sources (GET {P}/sources).
    async fn sources(&self) -> anyhow::Result<()> {
        println!("sources:");
        let rows = self.store.source_rows().await?;
        let served = self.store.feeds_by_source().await?;
        for source in parent::ops::sources::SOURCES {
            let row = rows.iter().find(|r| r.source == *source);
            let served = served
                .iter()
                .find(|(s, _)| s == source)
                .map_or(0, |(_, n)| *n);
            match row.filter(|r| r.state == "closed") {
                Some(r) => println!(
                    "  {source}: closed{}, found by the fleet and alerted once ({})",
                    r.since
                        .map(|t| format!(" since {}", local_time(t)))
                        .unwrap_or_default(),
                    r.last_error.as_deref().unwrap_or("refused")
                ),
                None => println!("  {source}: open, {served} feeds read through it"),
            }
        }
        Ok(())
    }

    /// The nodes still cooling.
    async fn cooling(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let cooling: Vec<String> = self
            .store
            .list_nodes(None)
            .await?
            .into_iter()
            .filter(|n| n.cooldown_until.is_some_and(|t| t > now))
            .map(|n| n.name)
            .collect();
        if cooling.is_empty() {
            println!("nodes cooling: none");
        } else {
            println!("nodes cooling: {}", cooling.join(", "));
        }
        Ok(())
    }
}
