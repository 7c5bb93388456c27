// Allocations: page and filter them (status, node, task, feed, reason), open one in a drawer
// (its feeds by name, every attempt with its error, lease, next attempt), retry or cancel it,
// or retry or cancel everything a filter matches. Failed work is the dead-letter view.

import {
  $, actions, api, cell, confirmAction, el, feedNames, fill, fleet, nodeName, nodeOptions,
  Pager, post, report, when,
} from "./core.js";

let pager = null;
let refreshAll = () => {};
let open = null;
let names = [];

export function init(refresh) {
  refreshAll = refresh;
  pager = new Pager("alloc-pages", 50, refresh);
  const changed = () => { pager.reset(); $("#bulk-result").textContent = ""; refresh(); };
  $("#alloc-filter").addEventListener("change", changed);
  $("#alloc-filter").addEventListener("submit", (e) => { e.preventDefault(); changed(); });
  $("#dead-letters").addEventListener("click", () => {
    clear();
    $("#alloc-status").value = "failed";
    changed();
  });
  $("#alloc-clear").addEventListener("click", () => { clear(); changed(); });
  $("#bulk-retry").addEventListener("click", () => bulk("retry"));
  $("#bulk-cancel").addEventListener("click", () => bulk("cancel"));
  $("#drawer-close").addEventListener("click", () => { open = null; $("#drawer").hidden = true; });
}

function clear() {
  ["#alloc-status", "#alloc-node", "#alloc-task", "#alloc-reason"].forEach((s) => { $(s).value = ""; });
  $("#alloc-feed").value = "";
}

// Opens this view filtered on one feed (a feed's "History").
export function filterByFeed(id, name) {
  clear();
  $("#alloc-feed").value = name || id;
  $("#alloc-feed").dataset.id = id;
  $("#alloc-feed").dataset.name = name || id;
  pager.reset();
  location.hash = "#allocations";
}

// The feed the filter names: an id, or a name from the picker.
function feedFilter() {
  const text = $("#alloc-feed").value.trim();
  if (!text) return "";
  const known = names.find((f) => f.name === text || f.id === text);
  if (known) return known.id;
  const picked = $("#alloc-feed").dataset;
  return picked.id && picked.name === text ? picked.id : text;
}

function filter() {
  const f = {};
  const put = (key, value) => { if (value) f[key] = value; };
  put("status", $("#alloc-status").value);
  put("node_id", $("#alloc-node").value);
  put("task_id", $("#alloc-task").value);
  put("feed_id", feedFilter());
  put("reason", $("#alloc-reason").value);
  return f;
}

function describe(f) {
  const parts = [];
  if (f.status) parts.push(`status ${f.status}`);
  if (f.node_id) parts.push(`node ${nodeName(f.node_id)}`);
  if (f.task_id) parts.push(`task ${(fleet.tasks.find((t) => t.id === f.task_id) || {}).name || f.task_id}`);
  if (f.feed_id) parts.push(`feed ${$("#alloc-feed").value}`);
  if (f.reason) parts.push(`reason ${f.reason}`);
  return parts.length ? parts.join(", ") : "no filter";
}

async function bulk(what) {
  const f = filter();
  const status = f.status || (what === "retry" ? "failed" : "pending");
  const question = what === "retry"
    ? `Retry every ${status} allocation matching ${describe(f)}? Each goes back to pending with its attempts reset.`
    : `Cancel every ${status} allocation matching ${describe(f)}? A node working on one loses it.`;
  if (!await confirmAction(question, what === "retry" ? "Retry all" : "Cancel all")) return;
  const verb = what === "retry" ? "retried" : "cancelled";
  const why = what === "retry" ? "their feeds have other open work" : "they changed meanwhile";
  const total = { matched: 0, changed: 0, skipped: 0 };
  try {
    // 1,000 a call; each call goes on after the last one's `next`, at most 100 calls.
    let after = null;
    let left = false;
    for (let call = 0; call < 100; call += 1) {
      const r = await post(`/allocations/${what}`, { filter: after ? { ...f, after } : f });
      total.matched += r.matched;
      total.changed += r.changed;
      total.skipped += r.skipped;
      const skipped = total.skipped ? `, ${total.skipped} skipped (${why})` : "";
      $("#bulk-result").textContent = `${total.changed} of ${total.matched} ${verb}${skipped}${r.more ? "…" : ""}`;
      left = Boolean(r.more && r.next);
      if (!left) break;
      after = r.next;
    }
    if (left) $("#bulk-result").textContent += "; more match: press again";
    await refreshAll();
  } catch (e) {
    $("#bulk-result").textContent = `${what} failed: ${e.message}`;
  }
}

function holder(a) {
  if (a.node_id) return a.node_name || nodeName(a.node_id);
  return a.assigned_node_id ? `→ ${nodeName(a.assigned_node_id)}` : "";
}

export async function refresh() {
  nodeOptions($("#alloc-node"), "all");
  const tasks = $("#alloc-task");
  const chosen = tasks.value;
  tasks.replaceChildren(new Option("all", ""), ...fleet.tasks.map((t) => new Option(t.name, t.id)));
  tasks.value = chosen;
  names = await feedNames();
  const list = $("#feed-names");
  if (list.children.length !== names.length) {
    list.replaceChildren(...names.map((f) => el("option", { value: f.name, label: f.id })));
  }
  const q = new URLSearchParams(filter());
  const page = await api(`/allocations?${pager.query(q)}`);
  fill("allocations", page.list, (a, tr) => {
    tr.className = "clickable";
    tr.dataset.id = a.id;
    tr.addEventListener("click", () => show(a.id));
    return [
      cell(a.task_name || a.task_id), cell(holder(a)), cell(a.status, a.status), cell(a.feed_count),
      cell(`${a.attempt}/${a.max_attempts}`), cell(when(a.dispatched_at)), cell(a.reason), cell(a.error_message, "error"),
    ];
  });
  pager.show(page.list.length, page.total);
  if (open) await show(open, true);
}

// The drawer: one allocation in full.
async function show(id, quiet = false) {
  let a;
  try {
    a = await api(`/allocations/${encodeURIComponent(id)}`);
  } catch (e) {
    if (!quiet) report(e.message, true);
    return;
  }
  open = id;
  $("#drawer").hidden = false;
  $("#drawer-title").textContent = `${a.task_name || a.task_id}: ${a.status}`;
  const held = a.status === "claimed" || a.status === "executing";
  const facts = [
    ["Allocation", a.id], ["Status", a.status], ["Attempt", `${a.attempt} of ${a.max_attempts}`],
    ["Node", holder(a) || "-"], ["Reason", a.reason || "-"], ["Error", a.error_message || "-"],
    ["Dispatched", when(a.dispatched_at)], ["Claimed", when(a.claimed_at)], ["Started", when(a.started_at)],
    ["Finished", when(a.completed_at)],
    ["Lease until", held && a.lease_expires_at ? when(a.lease_expires_at) : "-"],
    ["Next attempt", a.status === "pending" ? when(a.available_at) : "-"],
    ["Articles", `${a.article_count ?? 0} (${a.new_article_count ?? 0} new)`],
    ["Run", a.schedule_run_id || "-"],
  ];
  $("#drawer-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const retryable = a.status === "failed" || a.status === "timeout";
  const cancellable = ["pending", "claimed", "executing"].includes(a.status);
  const buttons = actions(
    retryable && ["Retry", "retry", () => single("retry", a)],
    cancellable && ["Cancel", "cancel danger", () => single("cancel", a)],
  );
  $("#drawer-actions").replaceChildren(...buttons.childNodes);
  fill("drawer-feeds", a.feeds, (f) => [
    cell(f.name || `${f.id} (deleted)`), cell(f.source), cell(f.status === 1 ? "enabled" : f.status === 0 ? "paused" : "-"),
  ]);
  fill("drawer-attempts", a.attempts, (t) => [
    cell(t.attempt), cell(t.node_name || nodeName(t.node_id)), cell(t.outcome, t.outcome), cell(t.reason),
    cell(t.error_message, "error"), cell(when(t.at)),
  ]);
}

async function single(what, a) {
  if (what === "cancel" && !await confirmAction(`Cancel this ${a.status} allocation of ${a.task_name || a.task_id}?`, "Cancel it")) return;
  const r = await post(`/allocations/${what}`, { ids: [a.id] });
  report(r.changed ? `allocation ${what === "retry" ? "retried" : "cancelled"}` : `nothing to ${what}: it changed meanwhile`, !r.changed);
  await refreshAll();
}
