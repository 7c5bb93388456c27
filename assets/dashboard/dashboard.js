// werss-cascade dashboard: the operator's console over the admin API. Plain JavaScript
// modules from this parent, nothing from elsewhere. One view at a time (the tabs); every
// few seconds the counters, the fleet and the open view are read again.

import { $, $$, api, fleet, report, session, setSession, zoneName } from "./core.js";
import * as overview from "./overview.js";
import * as nodes from "./nodes.js";
import * as feeds from "./feeds.js";
import * as tasks from "./tasks.js";
import * as allocations from "./allocations.js";
import * as activity from "./activity.js";

const REFRESH_MS = 3000;
const VIEWS = {
  overview, nodes, logins: nodes.logins, feeds, tasks, allocations, activity,
};
let timer = null;
let running = null;

function current() {
  const name = location.hash.replace(/^#/, "").split("?")[0];
  return VIEWS[name] ? name : "overview";
}

function showView() {
  const name = current();
  $$(".view").forEach((v) => { v.hidden = v.dataset.view !== name; });
  $$("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
}

// One pass: counters and the fleet for every view, then the open view. Passes never
// overlap: one asked for while another runs is folded into it.
export async function refresh() {
  if (running) return running;
  running = (async () => {
    try {
      const [counters, nodeList, taskList] = await Promise.all([
        api("/pending-allocations"), api("/nodes?node_type=1"), api("/message-tasks"),
      ]);
      fleet.nodes = nodeList;
      fleet.tasks = taskList;
      overview.counters(counters);
      await VIEWS[current()].refresh();
      $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
      $("#error").textContent = "";
    } catch (e) {
      $("#error").textContent = e.message;
    } finally {
      running = null;
    }
  })();
  return running;
}

function show(loggedIn) {
  $("#login-view").hidden = loggedIn;
  $("#app").hidden = !loggedIn;
  $("#tabs").hidden = !loggedIn;
  $("#logout").hidden = !loggedIn;
  clearInterval(timer);
  if (loggedIn) {
    showView();
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  }
}

function logout() {
  setSession(null);
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
  setSession(body.data.access_token, logout);
  sessionStorage.setItem("cascade.user", $("#username").value);
  $("#who").textContent = $("#username").value;
  show(true);
});

$("#logout").addEventListener("click", logout);
window.addEventListener("hashchange", () => {
  showView();
  report("");
  refresh();
});

for (const view of Object.values(VIEWS)) view.init(refresh);
$("#zone").textContent = zoneName();
setSession(session(), logout);
$("#who").textContent = session() ? sessionStorage.getItem("cascade.user") || "" : "";
show(Boolean(session()));
