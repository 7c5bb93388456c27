// Message tasks: create, edit, enable or disable, delete, dispatch one or all.

import { $, actions, api, cell, confirmAction, feedNames, fill, fleet, post, report, when } from "./core.js";

let refreshAll = () => {};

export function init(refresh) {
  refreshAll = refresh;
  $("#task-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await save();
    } catch (e) {
      report(e.message, true);
    }
  });
  $("#task-new").addEventListener("click", () => edit(null));
  $("#task-all").addEventListener("change", () => { $("#task-feeds").disabled = $("#task-all").checked; });
  $("#scheduler-toggle").addEventListener("click", async () => {
    const toggle = $("#scheduler-toggle");
    const running = Boolean(toggle.dataset.running);
    if (running && !await confirmAction("Hold cron firings? No task fires on its cron until they are let go; dispatching by hand still works.", "Hold")) return;
    toggle.disabled = true;
    try {
      showScheduler(await post(running ? "/stop-scheduler" : "/start-scheduler"));
      report(running ? "cron firings held" : "cron firings dispatch again");
    } catch (e) {
      report(e.message, true);
    } finally {
      toggle.disabled = false;
    }
  });
  $("#dispatch-all").addEventListener("click", async () => {
    try {
      const d = await post("/dispatch-task");
      $("#dispatch-result").textContent = `dispatched: ${d.allocations_created} allocation(s) created`;
      await refreshAll();
    } catch (e) {
      $("#dispatch-result").textContent = `dispatch failed: ${e.message}`;
    }
  });
}

function feedIds(t) {
  try {
    return JSON.parse(t.mps_id || "[]").map((x) => (typeof x === "object" ? String(x.id) : String(x)));
  } catch (_) {
    return [];
  }
}

// Cron firings: dispatching, or held by an operator (every parent of the database obeys).
function showScheduler(s) {
  $("#scheduler-state").textContent = s.running
    ? `Cron firings dispatch (${s.jobs} task(s) with a cron).`
    : `Cron firings are held: no task fires until they are let go (${s.jobs} task(s) with a cron).`;
  $("#scheduler-state").className = s.running ? "online" : "cooling";
  const toggle = $("#scheduler-toggle");
  toggle.hidden = false;
  toggle.textContent = s.running ? "Hold cron firings" : "Let cron fire";
  toggle.dataset.running = s.running ? "1" : "";
}

export async function refresh() {
  const [list, scheduler] = await Promise.all([feedNames(), api("/scheduler")]);
  showScheduler(scheduler);
  const select = $("#task-feeds");
  if (select.options.length !== list.length) {
    const chosen = new Set([...select.selectedOptions].map((o) => o.value));
    const sorted = [...list].sort((a, b) => a.name.localeCompare(b.name));
    select.replaceChildren(...sorted.map((f) => {
      const o = new Option(f.name, f.id);
      o.selected = chosen.has(f.id);
      return o;
    }));
  }
  const zone = fleet.tasks.find((t) => t.cron_timezone);
  $("#cron-zone").textContent = zone ? `read in ${zone.cron_timezone}` : "";
  fill("tasks", fleet.tasks, (t) => {
    const enabled = t.status === 1;
    return [
      cell(t.name), cell(enabled ? "enabled" : "disabled", enabled ? "online" : "disabled"), cell(t.cron_timezone ? `${t.cron_exp} (${t.cron_timezone})` : t.cron_exp),
      cell(when(t.next_run_at)), cell(t.all_feeds ? "every feed" : feedIds(t).length), cell(t.priority ?? 0),
      actions(
        ["Dispatch", "dispatch", () => dispatch(t), !enabled],
        ["Edit", "edit", () => edit(t)],
        [enabled ? "Disable" : "Enable", "toggle", () => setEnabled(t, !enabled)],
        ["Delete", "remove danger", () => remove(t)],
      ),
    ];
  });
}

// Fills the form with a task to edit, or empties it for a new one.
function edit(t) {
  $("#task-id").value = t ? t.id : "";
  $("#task-name").value = t ? t.name : "";
  $("#task-cron").value = t ? t.cron_exp : "0 */2 * * *";
  $("#task-priority").value = t ? t.priority ?? 0 : 0;
  $("#task-all").checked = Boolean(t && t.all_feeds);
  $("#task-enabled").checked = !t || t.status === 1;
  $("#task-feeds").disabled = $("#task-all").checked;
  const ids = new Set(t ? feedIds(t) : []);
  [...$("#task-feeds").options].forEach((o) => { o.selected = ids.has(o.value); });
  $("#task-form-title").textContent = t ? `Edit ${t.name}` : "New message task";
  $("#task-save").textContent = t ? "Save task" : "Create task";
  $("#task-new").hidden = !t;
  if (t) $("#task-name").focus();
}

async function save() {
  const id = $("#task-id").value;
  const all = $("#task-all").checked;
  const body = {
    name: $("#task-name").value.trim(),
    cron_exp: $("#task-cron").value.trim(),
    priority: Number($("#task-priority").value) || 0,
    status: $("#task-enabled").checked ? 1 : 0,
    all_feeds: all,
  };
  if (!all) body.mps_id = [...$("#task-feeds").selectedOptions].map((o) => ({ id: o.value, mp_name: o.textContent }));
  if (id) {
    await api(`/message-tasks/${encodeURIComponent(id)}`, { method: "PUT", json: body });
    report(`task ${body.name} saved`);
  } else {
    body.message_template = "";
    await post("/message-tasks", body);
    report(`task ${body.name} created`);
  }
  edit(null);
  await refreshAll();
}

async function setEnabled(t, enabled) {
  await api(`/message-tasks/${encodeURIComponent(t.id)}`, { method: "PUT", json: { status: enabled ? 1 : 0 } });
  report(`${t.name} ${enabled ? "enabled" : "disabled"}`);
  await refreshAll();
}

async function remove(t) {
  if (!await confirmAction(`Delete the task ${t.name}? Its pending work fails.`, "Delete")) return;
  await api(`/message-tasks/${encodeURIComponent(t.id)}`, { method: "DELETE" });
  report(`${t.name} deleted`);
  await refreshAll();
}

async function dispatch(t) {
  const d = await post(`/dispatch-task?task_id=${encodeURIComponent(t.id)}`);
  $("#dispatch-result").textContent = `dispatched: ${d.allocations_created} allocation(s) created`;
  await refreshAll();
}
