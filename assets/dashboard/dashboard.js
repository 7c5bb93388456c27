// werss-cascade dashboard: plain JavaScript over the admin API, no external resources.
"use strict";

const API = "/api/v1/wx/cascade";
const REFRESH_MS = 3000;
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("cascade.token");
let timer = null;
// The plan reads every feed's articles of four weeks: asked once a minute, not every refresh.
const PLAN_MS = 60000;
let planAt = 0;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined || text === "" ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    render(row).forEach((td) => tr.appendChild(td));
    return tr;
  }));
}

// The parent writes UTC without a zone; shown in the viewer's own zone, with how long ago
// (or how soon).
function when(t) {
  if (!t) return "-";
  const d = new Date(/([zZ]|[+-]\d\d:?\d\d)$/.test(t) ? t : `${t}Z`);
  if (Number.isNaN(d.getTime())) return t;
  const pad = (n) => String(n).padStart(2, "0");
  const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return `${local} (${relative(d)})`;
}

function relative(d) {
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const a = Math.abs(s);
  const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min`
    : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

const SYNC_STATUS = { 0: "running", 1: "ok", 2: "failed" };

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  const resp = await fetch(API + path, Object.assign({}, options, { headers }));
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    logout();
    throw new Error("session expired: log in again");
  }
  if (!resp.ok || body.code !== 0) {
    throw new Error(body.message || `HTTP ${resp.status}`);
  }
  return body.data;
}

function nodeState(n) {
  if (!n.is_active) return "disabled";
  if (!n.online) return "offline";
  if (n.cooldown_until && new Date(n.cooldown_until + "Z") > new Date()) return "cooling";
  return "online";
}

async function refresh() {
  try {
    const status = $("#alloc-status").value;
    const node = $("#alloc-node").value;
    const query = new URLSearchParams({ limit: "50" });
    if (status) query.set("status", status);
    if (node) query.set("node_id", node);
    const [counters, nodes, tasks, allocs, feeds, logs, logins, flows, sources, plan] = await Promise.all([
      api("/pending-allocations"),
      api("/nodes?node_type=1"),
      api("/message-tasks"),
      api(`/allocations?${query}`),
      api("/feed-status?limit=50"),
      api("/sync-logs?limit=20"),
      api("/logins"),
      api("/login-flows"),
      api("/sources"),
      Date.now() - planAt >= PLAN_MS ? api("/plan") : Promise.resolve(null),
    ]);
    renderCounters(counters);
    renderNodes(nodes);
    renderLogins(logins, nodes, flows);
    fill("source-list", sources, (s) => [
      cell(s.source), cell(s.state, s.state), cell(when(s.since)), cell(when(s.last_ok_at)),
      cell(s.last_error), cell(`${s.logins_usable} ${s.login_kind}`), cell(s.feeds_served),
    ]);
    renderTasks(tasks);
    fill("allocations", allocs.list, (a) => [
      cell(a.task_name || a.task_id), cell(holder(a, nodes)),
      cell(a.status, a.status), cell(a.feed_count), cell(`${a.attempt}/${a.max_attempts}`),
      cell(when(a.dispatched_at)), cell(a.reason),
    ]);
    $("#alloc-total").textContent = `${allocs.list.length} of ${allocs.total} shown`;
    fill("feeds", feeds.list, (f) => {
      const last = f.last_task || {};
      return [
        cell(f.mp_name || f.id), cell(f.source), cell(f.article_count),
        cell(f.update_status, f.update_status), cell(last.status, last.status), cell(last.node_name),
        cell(when(f.next_check_at)),
        linkCell(`/feed/${encodeURIComponent(f.id)}.rss`, "RSS"),
        checkCell(f),
      ];
    });
    if (plan) {
      renderPlan(plan);
      planAt = Date.now();
    }
    const nodeName = (id) => (nodes.find((n) => n.id === id) || {}).name || id;
    fill("logs", logs.list, (l) => [
      cell(when(l.started_at)), cell(nodeName(l.node_id)), cell(l.operation),
      cell(SYNC_STATUS[l.status] || String(l.status)),
      cell(l.data_count), cell(l.error_message),
    ]);
    $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#error").textContent = "";
  } catch (e) {
    $("#error").textContent = e.message;
  }
}

// The holder's name, or "→ name" for the node a pending allocation is assigned to.
function holder(a, nodes) {
  const name = (id) => (nodes.find((n) => n.id === id) || {}).name || id;
  if (a.node_id) return a.node_name || name(a.node_id);
  return a.assigned_node_id ? `→ ${name(a.assigned_node_id)}` : "";
}

function linkCell(href, text) {
  const td = document.createElement("td");
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  td.appendChild(a);
  return td;
}

// A number of seconds as people read it.
function span(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

// What the planner (GET /plan) says the usable WeRead logins buy.
function renderPlan(p) {
  const head = `${p.feeds.wechat} WeChat feeds, ${p.articles_per_day.toFixed(1)} articles a day`;
  const logins = p.logins.weread;
  const body = logins
    ? `${logins} usable WeRead login(s) allow ${p.now.checks_per_day} checks a day: ` +
      `articles are read at p50 ${span(p.now.p50_seconds)}, p95 ${span(p.now.p95_seconds)} after publishing`
    : "no usable WeRead login, so WeChat feeds are not read";
  const starved = p.now.starved ? `; ${p.now.starved} feed(s) starved` : "";
  $("#plan").textContent = `${head}; ${body}${starved}. cascade plan --target 1h says how many logins a target needs.`;
}

function renderCounters(c) {
  const cards = [
    ["Pending", c.pending_tasks], ["Running", c.executing_tasks], ["Completed today", c.completed_today],
    ["Failed today", c.failed_today], ["Nodes online", c.online_nodes], ["Held / capacity", `${c.held_feeds ?? 0}/${c.capacity_total ?? 0}`],
    ["Cooling", c.cooling_nodes], ["Sessions expired", c.session_expired_nodes],
  ];
  $("#counters").replaceChildren(...cards.map(([label, value]) => {
    const div = document.createElement("div");
    div.className = "card";
    const b = document.createElement("b");
    b.textContent = value ?? 0;
    div.append(b, label);
    return div;
  }));
}

function renderNodes(nodes) {
  fill("nodes", nodes, (n) => {
    const state = nodeState(n);
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = n.is_active ? "Disable" : "Enable";
    button.className = "toggle";
    button.dataset.node = n.id;
    button.addEventListener("click", () => toggle(n, button));
    td.appendChild(button);
    return [
      cell(n.name), cell(state, state), cell(`${n.held_feeds}/${n.capacity}`),
      cell(n.session_state), cell(when(n.cooldown_until)), cell(when(n.last_heartbeat_at)), cell(n.version), td,
    ];
  });
  const select = $("#alloc-node");
  const chosen = select.value;
  const options = [new Option("all", "")].concat(nodes.map((n) => new Option(n.name, n.id)));
  select.replaceChildren(...options);
  select.value = chosen;
}

// Logins: every login the nodes report, and the QR flow being watched (the one asked for
// here, else the newest open one, such as an automatic re-login).
let watchedFlow = null;

function renderLogins(logins, nodes, flows) {
  fill("login-list", logins, (l) => [
    cell(l.node_name || l.node_id), cell(l.kind), cell(l.name), cell(l.state, l.state),
    cell(when(l.expires_at)), cell(when(l.cooldown_until)), cell(when(l.last_ok_at)), cell(l.last_error),
  ]);
  const select = $("#login-node");
  const chosen = select.value;
  select.replaceChildren(...nodes.filter((n) => n.is_active).map((n) => new Option(n.name, n.id)));
  if (chosen) select.value = chosen;
  let flow = watchedFlow && flows.find((f) => f.id === watchedFlow);
  if (!flow) flow = flows.find((f) => f.open);
  if (flow) {
    watchedFlow = flow.id;
    renderFlow(flow);
  }
}

const FLOW_HINTS = {
  requested: "waiting for the node to start the login (at its next heartbeat)",
  pending_scan: "scan this code with WeChat, then confirm on the phone",
  scanned: "scanned: confirm the login on the phone",
  need_otp: "type the code the phone shows",
  confirmed: "logged in",
  failed: "the login failed",
  cancelled: "cancelled",
};

function renderFlow(flow) {
  $("#flow").hidden = false;
  const who = flow.node_name || flow.node_id;
  const account = flow.account_name ? ` as ${flow.account_name}` : "";
  $("#flow-title").textContent = `${flow.kind} login on ${who}${account}`;
  $("#flow-state").textContent = flow.state;
  $("#flow-state").className = flow.state;
  $("#flow-error").textContent = flow.error || "";
  $("#flow-hint").textContent = FLOW_HINTS[flow.state] || "";
  $("#otp-form").hidden = flow.state !== "need_otp";
  $("#flow-cancel").hidden = !flow.open;
  paintQr(flow.open && flow.qr ? flow.qr.modules : null);
}

// Paints a QR matrix (rows of "0"/"1") with a quiet zone; clears it when there is none.
function paintQr(modules) {
  const canvas = $("#qr");
  if (!modules || modules.length === 0) {
    canvas.width = 0;
    canvas.height = 0;
    return;
  }
  const scale = 6;
  const quiet = 4;
  const size = (modules.length + 2 * quiet) * scale;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = "#000";
  modules.forEach((row, y) => {
    [...row].forEach((bit, x) => {
      if (bit === "1") ctx.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
    });
  });
}

$("#login-start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const node = $("#login-node").value;
  if (!node) return;
  try {
    const flow = await api(`/nodes/${encodeURIComponent(node)}/logins`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind: $("#login-kind").value }),
    });
    watchedFlow = flow.id;
    renderFlow(flow);
  } catch (e) {
    $("#error").textContent = e.message;
  }
});

$("#otp-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const flow = await api(`/login-flows/${encodeURIComponent(watchedFlow)}/otp`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: $("#otp").value }),
    });
    $("#otp").value = "";
    renderFlow(flow);
  } catch (e) {
    $("#flow-error").textContent = e.message;
  }
});

$("#flow-cancel").addEventListener("click", async () => {
  try {
    renderFlow(await api(`/login-flows/${encodeURIComponent(watchedFlow)}`, { method: "DELETE" }));
  } catch (e) {
    $("#flow-error").textContent = e.message;
  }
});

function renderTasks(tasks) {
  fill("tasks", tasks, (t) => {
    let feeds = 0;
    try { feeds = JSON.parse(t.mps_id || "[]").length; } catch (_) { feeds = 0; }
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "Dispatch";
    button.className = "dispatch";
    button.dataset.task = t.id;
    button.disabled = t.status !== 1;
    button.addEventListener("click", () => dispatch(t.id, button));
    td.appendChild(button);
    return [cell(t.name), cell(t.status === 1 ? "enabled" : "disabled"), cell(t.cron_exp),
            cell(when(t.next_run_at)), cell(feeds), td];
  });
}

// "Check now": the feed's waiting allocation goes to the head of the claims, or one is
// dispatched at the top priority.
function checkCell(f) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.textContent = "Check now";
  button.className = "check";
  button.dataset.feed = f.id;
  button.addEventListener("click", () => checkNow(f, button));
  td.appendChild(button);
  return td;
}

async function checkNow(f, button) {
  button.disabled = true;
  const name = f.mp_name || f.id;
  try {
    const d = await api(`/feeds/${encodeURIComponent(f.id)}/check`, { method: "POST" });
    $("#check-result").textContent = d.created
      ? `${name}: dispatched at the top priority`
      : `${name}: its ${d.status} allocation goes first`;
    await refresh();
  } catch (e) {
    $("#check-result").textContent = `${name}: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// Disabling returns the node's work to pending; enabling also clears its cooldown and session.
async function toggle(node, button) {
  button.disabled = true;
  const body = node.is_active ? { is_active: false } : { is_active: true, reset_state: true };
  try {
    await api(`/nodes/${encodeURIComponent(node.id)}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    await refresh();
  } catch (e) {
    $("#error").textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

async function dispatch(taskId, button) {
  button.disabled = true;
  try {
    const d = await api(`/dispatch-task?task_id=${encodeURIComponent(taskId)}`, { method: "POST" });
    $("#dispatch-result").textContent = `dispatched: ${d.allocations_created} allocation(s) created`;
    await refresh();
  } catch (e) {
    $("#dispatch-result").textContent = `dispatch failed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function show(loggedIn) {
  $("#login-view").hidden = loggedIn;
  $("#app").hidden = !loggedIn;
  $("#logout").hidden = !loggedIn;
  clearInterval(timer);
  if (loggedIn) {
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  }
}

function logout() {
  token = null;
  sessionStorage.removeItem("cascade.token");
  $("#who").textContent = "";
  show(false);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  const form = new URLSearchParams({ username: $("#username").value, password: $("#password").value });
  const resp = await fetch("/api/v1/wx/auth/login", { method: "POST", body: form });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || body.code !== 0) {
    $("#login-error").textContent = body.message || `HTTP ${resp.status}`;
    return;
  }
  token = body.data.access_token;
  sessionStorage.setItem("cascade.token", token);
  $("#who").textContent = $("#username").value;
  show(true);
});
$("#logout").addEventListener("click", logout);
$("#alloc-filter").addEventListener("change", refresh);
show(Boolean(token));
