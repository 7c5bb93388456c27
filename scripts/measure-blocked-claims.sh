#!/usr/bin/env bash
# How many claims a cooling node costs: a parent, one node that reports a WeChat rate limit,
# then a client that asks again as soon as it is answered (`wait=5`) for 10 s. Prints the
# blocked answer, the number of answered claims and the parent's claim transactions.
# usage: scripts/measure-blocked-claims.sh <cascade binary> [port]
set -euo pipefail
BIN=$(realpath "$1"); PORT=${2:-18011}; B=http://127.0.0.1:$PORT
D=$(mktemp -d); cd "$D"
CASCADE_ADMIN_PASSWORD=pw "$BIN" --db "sqlite://$D/m.db" --port "$PORT" parent >parent.log 2>&1 &
PID=$!; trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$B/healthz" >/dev/null && break; sleep 0.1; done
j() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }
T=$(curl -s -X POST "$B/api/v1/wx/auth/login" -d 'username=admin&password=pw' | j '["data"]["access_token"]')
H="Authorization: Bearer $T"; JSON='Content-Type: application/json'
N=$(curl -s -X POST "$B/api/v1/wx/cascade/nodes" -H "$H" -H "$JSON" -d '{"node_type":1,"name":"c"}' | j '["data"]["node_id"]')
CRED=$(curl -s -X POST "$B/api/v1/wx/cascade/nodes/$N/credentials" -H "$H")
A="Authorization: AK-SK $(echo "$CRED" | j '["data"]["api_key"]'):$(echo "$CRED" | j '["data"]["api_secret"]')"
curl -s -X POST "$B/api/v1/wx/cascade/heartbeat" -H "$A" -H "$JSON" -d '{}' >/dev/null
curl -s -X POST "$B/api/v1/wx/cascade/feeds" -H "$H" -H "$JSON" -d '{"mp_name":"x","faker_id":"Mzg5Mjc3MjIyMA=="}' >/dev/null
TASK=$(curl -s -X POST "$B/api/v1/wx/cascade/message-tasks" -H "$H" -H "$JSON" \
  -d '{"name":"t","message_template":"x","mps_id":["MP_WXS_3892772220"],"status":1}' | j '["data"]["id"]')
curl -s -X POST "$B/api/v1/wx/cascade/dispatch-task?task_id=$TASK" -H "$H" >/dev/null
PKG=$(curl -s -X POST "$B/api/v1/wx/cascade/claim-task" -H "$A")
curl -s -X PUT "$B/api/v1/wx/cascade/task-status" -H "$A" -H "$JSON" -d "{\"allocation_id\":\"$(echo "$PKG" | j '["data"]["allocation_id"]')\",\"status\":\"failed\",\"reason\":\"rate_limited\",\"lease_token\":\"$(echo "$PKG" | j '["data"]["lease_token"]')\"}" >/dev/null
echo "blocked answer: $(curl -s -X POST "$B/api/v1/wx/cascade/claim-task" -H "$A")"
n=0; end=$((SECONDS + 10))
while [ $SECONDS -lt $end ]; do curl -s -X POST "$B/api/v1/wx/cascade/claim-task?wait=5" -H "$A" >/dev/null; n=$((n + 1)); done
echo "claims answered in 10 s with wait=5: $n"
curl -s "$B/metrics" | grep '^cascade_claims_total'
