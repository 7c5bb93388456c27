// Nodes: add one and show its credentials once, rotate them, disable or enable, remove, test
// the connection, see why a node cools and for how long. Logins: what each node reports, and
// the QR login flow.

import {
  $, actions, api, cell, confirmAction, copy, fill, fleet, nodeOptions, nodeState,
  parseTime, post, report, when,
} from "./core.js";

let refreshAll = () => {};

export function init(refresh) {
  refreshAll = refresh;
  $("#node-add").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if ($("#node-id").value) await saveNode();
      else await addNode();
    } catch (e) {
      report(e.message, true);
    }
  });
  $("#node-new").addEventListener("click", () => edit(null));
  document.querySelectorAll("#credentials button.copy").forEach((b) => {
    b.addEventListener("click", () => copy($(`#${b.dataset.copy}`).value, $(`#${b.dataset.copy}`)));
  });
  $("#cred-done").addEventListener("click", hideCredentials);
}

async function addNode() {
  const name = $("#node-name").value.trim();
  if (!name) throw new Error("a node needs a name");
  const capacity = Number($("#node-capacity").value) || undefined;
  const body = { node_type: 1, name, description: $("#node-description").value };
  if (capacity) body.sync_config = { max_capacity: capacity };
  const node = await post("/nodes", body);
  const creds = await post(`/nodes/${encodeURIComponent(node.node_id)}/credentials`);
  showCredentials(name, creds, capacity);
  $("#node-add").reset();
  report(`node ${name} added`);
  await refreshAll();
}

// Fills the form with a node to edit (name, capacity, description), or empties it.
function edit(n) {
  $("#node-id").value = n ? n.id : "";
  $("#node-name").value = n ? n.name : "";
  $("#node-capacity").value = n ? (n.sync_config && n.sync_config.max_capacity) || n.capacity : 4;
  $("#node-description").value = n ? n.description || "" : "";
  $("#node-form-title").textContent = n ? `Edit ${n.name}` : "Add a node";
  $("#node-create").textContent = n ? "Save node" : "Add node";
  $("#node-new").hidden = !n;
}

async function saveNode() {
  const id = $("#node-id").value;
  const name = $("#node-name").value.trim();
  if (!name) throw new Error("a node needs a name");
  const body = { name, description: $("#node-description").value };
  const capacity = Number($("#node-capacity").value);
  if (capacity) {
    const current = fleet.nodes.find((n) => n.id === id);
    body.sync_config = Object.assign({}, current ? current.sync_config : {}, { max_capacity: capacity });
  }
  await api(`/nodes/${encodeURIComponent(id)}`, { method: "PUT", json: body });
  report(`node ${name} saved`);
  edit(null);
  await refreshAll();
}

function showCredentials(name, creds, capacity) {
  $("#cred-title").textContent = `${name}:`;
  $("#cred-key").value = creds.api_key;
  $("#cred-secret").value = creds.api_secret;
  $("#cred-snippet").value = [
    "cascade:",
    "  enabled: true",
    "  node_type: child",
    `  parent_api_url: ${location.origin}`,
    `  api_key: ${creds.api_key}`,
    `  api_secret: ${creds.api_secret}`,
    `  capacity: ${capacity || 4}`,
    "  data_dir: ./data",
  ].join("\n");
  $("#credentials").hidden = false;
}

// The secret leaves the page once the operator says it is copied.
function hideCredentials() {
  $("#cred-key").value = "";
  $("#cred-secret").value = "";
  $("#cred-snippet").value = "";
  $("#credentials").hidden = true;
}

// "cooling, 4:32 left" from the node's cooldown end.
function coolingCell(n) {
  const until = parseTime(n.cooldown_until);
  if (!until || until <= new Date()) return cell("");
  const s = Math.round((until - new Date()) / 1000);
  const left = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  return cell(`WeChat rate limit (200013): ${left} left, until ${when(n.cooldown_until)}`, "cooling");
}

function sessionText(n) {
  if (n.session_state === "expired") return "expired (200003): scan a new login";
  return n.session_state;
}

export async function refresh() {
  fill("nodes", fleet.nodes, (n) => {
    const state = nodeState(n);
    const rate = n.feeds_per_minute === null || n.feeds_per_minute === undefined ? "" : `${n.feeds_per_minute}/min`;
    return [
      cell(n.name), cell(state, state.replace(" ", "-")), cell(`${n.held_feeds}/${n.capacity}`), cell(rate),
      cell(sessionText(n), n.session_state), coolingCell(n), cell(when(n.last_heartbeat_at)), cell(n.version),
      actions(
        ["Edit", "edit", () => edit(n)],
        [n.is_active ? "Disable" : "Enable", "toggle", () => toggle(n)],
        ["Rotate credentials", "rotate", () => rotate(n)],
        ["Test connection", "test", () => testConnection(n)],
        ["Scan login", "scan", () => { location.hash = "#logins"; $("#login-node").value = n.id; }],
        ["Remove", "remove danger", () => remove(n)],
      ),
    ];
  });
}

// Disabling returns the node's work to pending; enabling also clears its cooldown and session.
async function toggle(n) {
  if (n.is_active) {
    const held = n.held_feeds ? ` Its ${n.held_feeds} held feed(s) go back to pending.` : "";
    if (!await confirmAction(`Disable ${n.name}? It claims nothing until enabled.${held}`, "Disable")) return;
  }
  const body = n.is_active ? { is_active: false } : { is_active: true, reset_state: true };
  await api(`/nodes/${encodeURIComponent(n.id)}`, { method: "PUT", json: body });
  report(`${n.name} ${n.is_active ? "disabled" : "enabled"}`);
  await refreshAll();
}

async function rotate(n) {
  if (!await confirmAction(`Issue new credentials for ${n.name}? The old secret stops working at once: the child needs the new one.`, "Rotate")) return;
  const creds = await post(`/nodes/${encodeURIComponent(n.id)}/credentials`);
  const capacity = n.sync_config && n.sync_config.max_capacity;
  showCredentials(n.name, creds, capacity);
  report(`new credentials for ${n.name}`);
}

async function remove(n) {
  if (!await confirmAction(`Remove ${n.name}? Its work returns to pending and its credentials stop working.`, "Remove")) return;
  await api(`/nodes/${encodeURIComponent(n.id)}`, { method: "DELETE" });
  report(`${n.name} removed`);
  await refreshAll();
}

async function testConnection(n) {
  const r = await post(`/nodes/${encodeURIComponent(n.id)}/test-connection`);
  const beat = r.last_heartbeat_at ? `, last heartbeat ${when(r.last_heartbeat_at)}` : "";
  $("#test-result").textContent = r.connected
    ? `${n.name}: its callback answered the ping${beat}`
    : `${n.name}: ${r.error}${r.online ? " (it is online: it polls the parent, so it needs no callback)" : ""}${beat}`;
}

// Logins: every login the nodes report, and the QR flow being watched (the one asked for
// here, else the newest open one, such as an automatic re-login).
let watchedFlow = null;

const FLOW_HINTS = {
  requested: "waiting for the node to start the login (at its next heartbeat)",
  pending_scan: "scan this code with WeChat, then confirm on the phone",
  scanned: "scanned: confirm the login on the phone",
  need_otp: "type the code the phone shows",
  confirmed: "logged in",
  failed: "the login failed",
  cancelled: "cancelled",
};

export const logins = {
  init() {
    $("#login-start").addEventListener("submit", async (event) => {
      event.preventDefault();
      const node = $("#login-node").value;
      if (!node) return;
      try {
        const flow = await post(`/nodes/${encodeURIComponent(node)}/logins`, { kind: $("#login-kind").value });
        watchedFlow = flow.id;
        renderFlow(flow);
      } catch (e) {
        report(e.message, true);
      }
    });
    $("#otp-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const flow = await post(`/login-flows/${encodeURIComponent(watchedFlow)}/otp`, { code: $("#otp").value });
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
  },

  async refresh() {
    const [list, flows] = await Promise.all([api("/logins"), api("/login-flows")]);
    fill("login-list", list, (l) => [
      cell(l.node_name || l.node_id), cell(l.kind), cell(l.name), cell(l.state, l.state),
      cell(when(l.expires_at)), cell(when(l.cooldown_until)), cell(when(l.last_ok_at)), cell(l.last_error),
    ]);
    nodeOptions($("#login-node"), null, (n) => n.is_active);
    let flow = watchedFlow && flows.find((f) => f.id === watchedFlow);
    if (!flow) flow = flows.find((f) => f.open);
    if (flow) {
      watchedFlow = flow.id;
      renderFlow(flow);
    }
  },
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

