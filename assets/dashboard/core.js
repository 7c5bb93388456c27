// What every view shares: the admin API, table cells, times in the viewer's zone, node
// names, paging, confirmation and the status line. No external resources.

export const API = "/api/v1/wx/cascade";
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

let token = sessionStorage.getItem("cascade.token");
let onExpired = () => {};

export function session() {
  return token;
}

export function setSession(value, expired) {
  token = value;
  if (value) sessionStorage.setItem("cascade.token", value);
  else sessionStorage.removeItem("cascade.token");
  if (expired) onExpired = expired;
}

// One admin API call: the envelope's data, or an Error with the envelope's message.
export async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const resp = await fetch(API + path, { method: options.method || "GET", headers, body });
  const answer = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    onExpired();
    throw new Error("session expired: log in again");
  }
  if (!resp.ok || answer.code !== 0) {
    throw new Error(answer.message || `HTTP ${resp.status}`);
  }
  return answer.data;
}

export const post = (path, json) => api(path, { method: "POST", json });

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

export function cell(text, cls) {
  const empty = text === null || text === undefined || text === "";
  return el("td", { class: cls, text: empty ? "-" : String(text) });
}

// A cell of buttons: [label, class, handler, disabled?] each; a handler may be async, the
// button is disabled while it runs and its error goes to the status line.
export function actions(...buttons) {
  return el("td", { class: "actions" }, ...buttons.filter(Boolean).map(([label, cls, run, off]) => {
    const b = button(label, cls, run);
    b.disabled = Boolean(off);
    return b;
  }));
}

export function button(label, cls, run) {
  const b = el("button", { type: "button", class: cls, text: label });
  b.addEventListener("click", async (event) => {
    event.stopPropagation();
    b.disabled = true;
    try {
      await run(b);
    } catch (e) {
      report(e.message, true);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

export function fill(table, rows, render) {
  const body = $(`#${table} tbody`);
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    render(row, tr).forEach((td) => tr.appendChild(td));
    return tr;
  }));
  if (rows.length === 0) {
    const cols = $$(`#${table} thead th`).length || 1;
    body.appendChild(el("tr", { class: "empty" }, el("td", { colspan: String(cols), text: "nothing here" })));
  }
}

// The parent writes UTC without a zone; shown in the viewer's own zone, with how long ago
// (or how soon).
export function parseTime(t) {
  if (!t) return null;
  const d = new Date(/([zZ]|[+-]\d\d:?\d\d)$/.test(t) ? t : `${t}Z`);
  return Number.isNaN(d.getTime()) ? null : d;
}

const pad = (n) => String(n).padStart(2, "0");

export function localTime(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function when(t) {
  const d = parseTime(t);
  if (!d) return t || "-";
  return `${localTime(d)} (${relative(d)})`;
}

export function relative(d) {
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const a = Math.abs(s);
  const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min`
    : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

// A number of seconds as people read it.
export function span(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

// The viewer's zone, shown once in the header so every time's frame is plain.
export function zoneName() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const offset = `UTC${sign}${pad(Math.floor(Math.abs(minutes) / 60))}:${pad(Math.abs(minutes) % 60)}`;
  return `${zone} (${offset})`;
}

// Nodes by id, refreshed with every pass: every view shows names, never ids.
export const fleet = { nodes: [], tasks: [] };

export function nodeName(id) {
  if (!id) return "";
  const n = fleet.nodes.find((x) => x.id === id);
  return n ? n.name : id;
}

export function nodeState(n) {
  if (!n.is_active) return "disabled";
  if (!n.online) return "offline";
  const cool = parseTime(n.cooldown_until);
  if (cool && cool > new Date()) return "cooling";
  if (n.session_state === "expired") return "session expired";
  return "online";
}

// Keeps a <select> of nodes current without losing the choice.
export function nodeOptions(select, first, only = () => true) {
  const chosen = select.value;
  const options = (first ? [new Option(first, "")] : [])
    .concat(fleet.nodes.filter(only).map((n) => new Option(n.name, n.id)));
  select.replaceChildren(...options);
  if (chosen && options.some((o) => o.value === chosen)) select.value = chosen;
}

// The status line: what the last action did, or what went wrong.
export function report(text, bad = false) {
  const line = $("#notice");
  line.textContent = text;
  line.className = bad ? "error" : "ok";
}

// A modal confirmation: resolves true when the operator presses the confirm button.
export function confirmAction(question, confirmLabel = "Confirm") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = question;
  $("#confirm-yes").textContent = confirmLabel;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

// Paging for a list: `limit`/`offset` and a line "1–50 of 312" with previous/next.
export class Pager {
  constructor(id, limit, onChange) {
    this.offset = 0;
    this.limit = limit;
    this.total = 0;
    this.root = $(`#${id}`);
    this.label = el("span", { class: "page-label" });
    this.prev = el("button", { type: "button", class: "prev", text: "‹ Previous" });
    this.next = el("button", { type: "button", class: "next", text: "Next ›" });
    this.prev.addEventListener("click", () => { this.offset = Math.max(0, this.offset - this.limit); onChange(); });
    this.next.addEventListener("click", () => { this.offset += this.limit; onChange(); });
    this.root.replaceChildren(this.prev, this.label, this.next);
  }

  reset() {
    this.offset = 0;
  }

  query(q) {
    q.set("limit", String(this.limit));
    q.set("offset", String(this.offset));
    return q;
  }

  show(shown, total) {
    this.total = total;
    if (shown === 0 && this.offset > 0 && this.offset >= total) {
      this.offset = Math.max(0, total - this.limit);
    }
    const from = shown ? this.offset + 1 : 0;
    this.label.textContent = `${from}–${this.offset + shown} of ${total}`;
    this.prev.disabled = this.offset === 0;
    this.next.disabled = this.offset + shown >= total;
  }
}

// Copies text to the clipboard, falling back to selecting it where the clipboard is denied.
export async function copy(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    report("copied");
  } catch (_) {
    if (field) {
      field.select();
      document.execCommand("copy");
      report("copied");
    }
  }
}

// Feed names for pickers (the task form, the allocation filter): the first 1,000 feeds the
// parent lists (stalest first), read again at most once a minute.
const NAMES_MS = 60000;
let names = { at: 0, list: [] };

export async function feedNames() {
  if (Date.now() - names.at < NAMES_MS) return names.list;
  const list = [];
  for (let offset = 0; offset < 1000; offset += 200) {
    const page = await api(`/feed-status?limit=200&offset=${offset}`);
    list.push(...page.list.map((f) => ({ id: f.id, name: f.mp_name || f.id })));
    if (list.length >= page.total) break;
  }
  names = { at: Date.now(), list };
  return list;
}
