// The overview: counters, charts drawn from `GET /stats` (SVG made here, no library), the
// sources and what the planner says the logins buy.

import { $, api, cell, el, fill, localTime, parseTime, span, when } from "./core.js";

const SVG = "http://www.w3.org/2000/svg";
// The plan reads every feed's articles of four weeks: asked once a minute, not every pass.
const PLAN_MS = 60000;
let planAt = 0;
let lastPlan = null;

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  e.append(...children);
  return e;
}

function tip(text) {
  const t = document.createElementNS(SVG, "title");
  t.textContent = text;
  return t;
}

export function init(refresh) {
  $("#stats-minutes").addEventListener("change", refresh);
}

export function counters(c) {
  const cards = [
    ["Pending", c.pending_tasks], ["Running", c.executing_tasks], ["Completed today", c.completed_today],
    ["Failed today", c.failed_today], ["Nodes online", c.online_nodes], ["Held / capacity", `${c.held_feeds ?? 0}/${c.capacity_total ?? 0}`],
    ["Cooling", c.cooling_nodes], ["Sessions expired", c.session_expired_nodes],
  ];
  $("#counters").replaceChildren(...cards.map(([label, value]) => el("div", { class: "card" }, el("b", { text: String(value ?? 0) }), label)));
}

// The charts read every article's newest time: asked every 15 s, or when the window changes.
const STATS_MS = 15000;
let statsAt = 0;
let statsWindow = null;

export async function refresh() {
  const minutes = $("#stats-minutes").value;
  const due = Date.now() - statsAt >= STATS_MS || statsWindow !== minutes;
  const [stats, sources, plan] = await Promise.all([
    due ? api(`/stats?minutes=${minutes}`) : Promise.resolve(null),
    api("/sources"),
    Date.now() - planAt >= PLAN_MS ? api("/plan") : Promise.resolve(null),
  ]);
  if (stats) {
    statsAt = Date.now();
    statsWindow = minutes;
    throughput(stats);
    feedAge(stats);
    health(stats);
  }
  fill("source-list", sources, (s) => [
    cell(s.source), cell(s.state, s.state), cell(when(s.since)), cell(when(s.last_ok_at)),
    cell(s.last_error), cell(`${s.logins_usable} ${s.login_kind}`), cell(s.feeds_served),
  ]);
  if (plan) {
    planAt = Date.now();
    lastPlan = plan;
  }
  if (lastPlan) $("#plan").textContent = planLine(lastPlan);
}

// The minutes of the window, oldest first, as epoch milliseconds.
function minutesOf(stats) {
  const since = parseTime(stats.since);
  const until = parseTime(stats.until);
  const out = [];
  if (!since || !until) return out;
  for (let t = Math.floor(since.getTime() / 60000) * 60000; t <= until.getTime(); t += 60000) out.push(t);
  return out;
}

const minuteKey = (t) => Math.floor(parseTime(t).getTime() / 60000) * 60000;

// Completed (up, green) and failed (down, red) allocations per minute, one row per node.
function throughput(stats) {
  const minutes = minutesOf(stats);
  const byNode = new Map();
  for (const r of stats.throughput) {
    const key = r.node_id || "";
    if (!byNode.has(key)) byNode.set(key, { name: r.node_name || r.node_id || "(no node)", rows: new Map() });
    byNode.get(key).rows.set(minuteKey(r.minute), r);
  }
  let most = 1;
  for (const n of byNode.values()) for (const r of n.rows.values()) most = Math.max(most, r.completed, r.failed);
  const width = 720;
  const height = 64;
  const bar = width / Math.max(minutes.length, 1);
  let done = 0;
  let failed = 0;
  const rows = [...byNode.values()].map((n) => {
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "bars", role: "img" });
    chart.appendChild(svg("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2, class: "axis" }));
    minutes.forEach((m, i) => {
      const r = n.rows.get(m);
      if (!r) return;
      done += r.completed;
      failed += r.failed;
      const label = `${localTime(new Date(m))}: ${r.completed} completed, ${r.failed} failed`;
      const up = (r.completed / most) * (height / 2 - 2);
      const down = (r.failed / most) * (height / 2 - 2);
      if (r.completed) chart.appendChild(svg("rect", { x: i * bar, y: height / 2 - up, width: Math.max(bar - 1, 1), height: up, class: "completed-bar" }, tip(label)));
      if (r.failed) chart.appendChild(svg("rect", { x: i * bar, y: height / 2, width: Math.max(bar - 1, 1), height: down, class: "failed-bar" }, tip(label)));
    });
    const totals = [...n.rows.values()].reduce((a, r) => [a[0] + r.completed, a[1] + r.failed], [0, 0]);
    return el("div", { class: "chart-row" }, el("span", { class: "chart-name", text: n.name }), chart,
      el("span", { class: "chart-total", text: `${totals[0]} completed, ${totals[1]} failed` }));
  });
  $("#throughput-chart").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted", text: "nothing finished in this window" })]));
  const first = minutes.length ? localTime(new Date(minutes[0])) : "";
  $("#throughput-total").textContent = `${done} completed and ${failed} failed since ${first}, per minute, peak ${most === 1 && done + failed === 0 ? 0 : most} a minute`;
}

// Enabled feeds by the age of their newest article.
function feedAge(stats) {
  $("#age-headline").textContent = `${stats.older_than_24h} feed(s) with nothing newer than 24 h`;
  const most = Math.max(1, ...stats.feed_age.map((b) => b.count));
  const width = 520;
  const row = 22;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${row * stats.feed_age.length}`, width, height: row * stats.feed_age.length, class: "hbars", role: "img" });
  stats.feed_age.forEach((b, i) => {
    const w = (b.count / most) * (width - 170);
    chart.append(
      svg("text", { x: 0, y: i * row + 15, class: "label" }, b.label),
      svg("rect", { x: 90, y: i * row + 4, width: Math.max(w, b.count ? 2 : 0), height: row - 8, class: `age-${i}` }, tip(`${b.label}: ${b.count}`)),
      svg("text", { x: 96 + w, y: i * row + 15, class: "count" }, String(b.count)),
    );
  });
  $("#age-chart").replaceChildren(chart);
}

// Each node's state minute by minute, from the parent's once-a-minute samples.
function health(stats) {
  const minutes = minutesOf(stats);
  const width = 720;
  const cell = width / Math.max(minutes.length, 1);
  const rows = stats.health.map((n) => {
    const samples = new Map(n.samples.map((s) => [minuteKey(s.minute), s]));
    const strip = svg("svg", { viewBox: `0 0 ${width} 14`, width, height: 14, class: "strip", role: "img" });
    minutes.forEach((m, i) => {
      const s = samples.get(m);
      const state = !s ? "none" : !s.online ? "offline" : s.session_expired ? "expired" : s.cooling ? "cooling" : "online";
      strip.appendChild(svg("rect", { x: i * cell, y: 0, width: Math.max(cell, 1), height: 14, class: `h-${state}` },
        tip(`${localTime(new Date(m))}: ${state}${s ? `, ${s.held} held` : ""}`)));
    });
    return el("div", { class: "chart-row" }, el("span", { class: "chart-name", text: n.node_name || n.node_id }), strip);
  });
  $("#health-chart").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted", text: "no node yet" })]));
}

// What the planner (GET /plan) says the usable WeRead logins buy.
export function planLine(p) {
  const head = `${p.feeds.wechat} WeChat feeds, ${p.articles_per_day.toFixed(1)} articles a day`;
  const logins = p.logins.weread;
  const body = logins
    ? `${logins} usable WeRead login(s) allow ${p.now.checks_per_day} checks a day: ` +
      `articles are read at p50 ${span(p.now.p50_seconds)}, p95 ${span(p.now.p95_seconds)} after publishing`
    : "no usable WeRead login, so WeChat feeds are not read";
  const starved = p.now.starved ? `; ${p.now.starved} feed(s) starved` : "";
  return `${head}; ${body}${starved}. cascade plan --target 1h says how many logins a target needs.`;
}
