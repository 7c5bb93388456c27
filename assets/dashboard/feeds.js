// Feeds: search and page through them, see each one's newest article, last result and error,
// next check; pause, resume, check now, open its history; add by article link, by account
// name, as RSS, or from OPML.

import { $, actions, api, cell, el, fill, Pager, post, report, when } from "./core.js";
import { filterByFeed } from "./allocations.js";

let pager = null;
let refreshAll = () => {};

export function init(refresh) {
  refreshAll = refresh;
  pager = new Pager("feed-pages", 50, refresh);
  let typing = null;
  $("#feed-q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { pager.reset(); refresh(); }, 300);
  });
  $("#feed-filter").addEventListener("change", () => { pager.reset(); refresh(); });
  $("#feed-filter").addEventListener("submit", (e) => e.preventDefault());
  submit("#feed-resolve", async () => {
    const url = $("#resolve-url").value.trim();
    const f = await post(`/feeds/resolve?${new URLSearchParams({ url })}`);
    $("#resolve-url").value = "";
    report(`subscribed to ${f.mp_name || f.id}`);
  });
  submit("#feed-search", search);
  submit("#feed-rss", async () => {
    const f = await post("/feeds", { mp_name: $("#rss-name").value.trim(), source: "rss", url: $("#rss-url").value.trim() });
    $("#feed-rss").reset();
    report(`RSS feed ${f.mp_name || f.id} added`);
  });
  submit("#feed-opml", async () => {
    const file = $("#opml-file").files[0];
    if (!file) throw new Error("choose an OPML file first");
    const r = await api("/feeds/import-opml", { method: "POST", headers: { "Content-Type": "text/x-opml" }, body: await file.text() });
    $("#feed-opml").reset();
    report(`OPML: ${r.created} created, ${r.existing} already there, ${r.skipped} skipped`);
  });
}

// A form whose submit runs `run`, reports its error, then refreshes.
function submit(form, run) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $(`${form} button[type=submit]`);
    button.disabled = true;
    try {
      await run();
      await refreshAll();
    } catch (e) {
      report(e.message, true);
    } finally {
      button.disabled = false;
    }
  });
}

async function search() {
  const q = $("#search-q").value.trim();
  if (!q) throw new Error("type an account name");
  report(`searching for ${q} through a node…`);
  const found = await post(`/feeds/search?${new URLSearchParams({ q })}`);
  $("#candidates").hidden = false;
  fill("candidates", found, (c) => [
    cell(`${c.nickname}${c.alias ? ` (${c.alias})` : ""}`), cell(c.signature),
    c.already_subscribed ? cell("already a feed") : actions(["Subscribe", "subscribe", async () => {
      await post("/feeds", { faker_id: c.fakeid, mp_name: c.nickname, mp_cover: c.avatar, mp_intro: c.signature });
      report(`subscribed to ${c.nickname}`);
      c.already_subscribed = true;
      $("#candidates").hidden = true;
      await refreshAll();
    }]),
  ]);
  report(`${found.length} account(s) match ${q}`);
}

export async function refresh() {
  const q = new URLSearchParams();
  const text = $("#feed-q").value.trim();
  if (text) q.set("q", text);
  if ($("#feed-source").value) q.set("source", $("#feed-source").value);
  if ($("#feed-state").value) q.set("state", $("#feed-state").value);
  const page = await api(`/feed-status?${pager.query(q)}`);
  fill("feeds", page.list, (f) => {
    const last = f.last_task || {};
    const paused = f.status !== 1;
    return [
      cell(f.mp_name || f.id), cell(f.source), cell(paused ? "paused" : "enabled", paused ? "disabled" : "online"),
      cell(f.article_count), cell(when(f.latest_article_time)), cell(f.update_status, f.update_status),
      cell(last.status ? `${last.status}${last.node_name ? ` on ${last.node_name}` : ""}` : "", last.status),
      cell(f.last_error ? `${f.last_error}${f.check_errors ? ` (${f.check_errors} in a row)` : ""}` : "", "error"),
      cell(when(f.next_check_at)),
      actions(
        ["Check now", "check", () => checkNow(f)],
        [paused ? "Resume" : "Pause", "pause", () => setPaused(f, !paused)],
        ["History", "history", () => filterByFeed(f.id, f.mp_name)],
      ),
    ];
  });
  // Each row links to its feed's RSS.
  document.querySelectorAll("#feeds tbody tr").forEach((tr, i) => {
    const f = page.list[i];
    if (!f) return;
    const name = tr.firstChild;
    name.replaceChildren(el("a", { href: `/feed/${encodeURIComponent(f.id)}.rss`, text: f.mp_name || f.id, title: "the feed as RSS" }));
  });
  pager.show(page.list.length, page.total);
}

// "Check now": the feed's waiting allocation goes to the head of the claims, or one is
// dispatched at the top priority.
async function checkNow(f) {
  const name = f.mp_name || f.id;
  try {
    const d = await post(`/feeds/${encodeURIComponent(f.id)}/check`);
    $("#check-result").textContent = d.created
      ? `${name}: dispatched at the top priority`
      : `${name}: its ${d.status} allocation goes first`;
    await refreshAll();
  } catch (e) {
    $("#check-result").textContent = `${name}: ${e.message}`;
  }
}

async function setPaused(f, paused) {
  await api(`/feeds/${encodeURIComponent(f.id)}`, { method: "PUT", json: { status: paused ? 0 : 1 } });
  report(`${f.mp_name || f.id} ${paused ? "paused: no task dispatches it" : "resumed"}`);
  await refreshAll();
}
