// Activity: the operator actions the parent recorded (who did what, when) and the sync logs.

import { $, api, cell, fill, nodeName, Pager, when } from "./core.js";

const SYNC_STATUS = { 0: "running", 1: "ok", 2: "failed" };
let pager = null;

export function init(refresh) {
  pager = new Pager("audit-pages", 50, refresh);
}

export async function refresh() {
  const [audit, logs] = await Promise.all([
    api(`/audit?${pager.query(new URLSearchParams())}`),
    api("/sync-logs?limit=50"),
  ]);
  fill("audit", audit.list, (a) => [
    cell(when(a.at)), cell(a.actor), cell(a.action), cell(nodeName(a.target) || a.target), cell(a.detail),
  ]);
  pager.show(audit.list.length, audit.total);
  fill("logs", logs.list, (l) => [
    cell(when(l.started_at)), cell(nodeName(l.node_id)), cell(l.operation),
    cell(SYNC_STATUS[l.status] || String(l.status), SYNC_STATUS[l.status] === "failed" ? "failed" : ""),
    cell(l.data_count), cell(l.error_message),
  ]);
}
