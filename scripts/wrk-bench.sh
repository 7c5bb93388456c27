#!/usr/bin/env bash
# Claim-cycle throughput measured with wrk, independently of `cascade bench` (issue 14).
#
#   scripts/wrk-bench.sh [--children 32] [--seconds 10] [--feeds 200000] [--capacity 1000]
#                        [--db sqlite|postgresql://…]
#
# Starts a fresh parent from the release binary (CASCADE_BIN, default ./target/release/cascade)
# on a temporary directory and a free loopback port (--port 0; the bound address is read from
# its log), waits for /readyz, logs in as the admin, creates K child nodes (max_capacity
# --capacity) with AK/SK credentials and one heartbeat each, imports --feeds WeChat feeds as one
# OPML document, creates one task over all feeds and dispatches it, then runs
#
#   wrk -t K -c K -d S --latency -s scripts/wrk/cycle.lua http://127.0.0.1:PORT
#
# (one thread = one child = one connection) and prints the figures as a Markdown table row,
# followed by a cross-check against the parent's own count of completed allocations. The
# parent is stopped on exit.
#
# --db sqlite (default) uses a new SQLite file in the temp dir. A postgresql:// URL must name
# an empty scratch database (the admin account is created on the parent's first start there).
#
# Only bash, curl, jq, wrk and the cascade binary are used.
set -euo pipefail

children=32
seconds=10
feeds=200000
capacity=1000
db=sqlite

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --children) children=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --feeds) feeds=$2; shift 2 ;;
    --capacity) capacity=$2; shift 2 ;;
    --db) db=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done
for n in "$children" "$seconds" "$feeds" "$capacity"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done

here=$(cd "$(dirname "$0")" && pwd)
lua="$here/wrk/cycle.lua"
bin=${CASCADE_BIN:-./target/release/cascade}
[ -x "$bin" ] || { echo "no cascade binary at $bin (set CASCADE_BIN)" >&2; exit 1; }
for tool in curl jq wrk; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

work=$(mktemp -d -t cascade-wrk.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "${WRK_KEEP:-}" ]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[wrk-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-3}"; }  # milliseconds (bash 5)
since() { local ms=$(( $(now) - $1 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

case "$db" in
  sqlite) db_url="sqlite:///$work/cascade.db"; backend=sqlite ;;  # sqlite:////abs/path
  postgres://*|postgresql://*) db_url=$db; backend=postgres ;;
  *) echo "--db: sqlite or a postgresql:// URL" >&2; exit 2 ;;
esac

password="wrk-$RANDOM$RANDOM$RANDOM"
run="wrk$(date +%s)"

# ---------------------------------------------------------------- the parent
log "starting $bin parent ($backend)"
CASCADE_ADMIN_PASSWORD=$password \
RUST_LOG=${WRK_PARENT_LOG:-info,sqlx=warn,hyper=warn,tower_http=warn} \
  "$bin" parent --db "$db_url" --bind 127.0.0.1 --port 0 >"$work/parent.out" 2>"$work/parent.log" &
pid=$!

addr=
for ((i = 0; i < 300; i++)); do  # up to ~30 s for the bound address to be logged
  addr=$(grep -o 'parent listening address=[0-9.:]*' "$work/parent.log" 2>/dev/null | head -1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/parent.log" >&2; echo "the parent exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { tail -20 "$work/parent.log" >&2; echo "the parent logged no address" >&2; exit 1; }
base="http://$addr"
api="$base/api/v1/wx/cascade"
ready=
for ((i = 0; i < 100; i++)); do
  if curl -fsS -o /dev/null --max-time 2 "$base/readyz"; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "$base/readyz never answered 200" >&2; exit 1; }
log "parent ready at $base"

# ok BODY WHAT: exits with BODY on stderr unless its envelope code is 0
ok() {
  local body=$1 what=$2
  if ! jq -e '.code == 0' >/dev/null 2>&1 <<<"$body"; then
    echo "$what failed: $body" | head -c 2000 >&2; echo >&2
    exit 1
  fi
}

resp=$(curl -sS -X POST "$base/api/v1/wx/auth/login" \
  --data-urlencode username=admin --data-urlencode "password=$password")
ok "$resp" "login"
token=$(jq -r .data.access_token <<<"$resp")
admin=(-H "Authorization: Bearer $token")

# ---------------------------------------------------------------- set-up
t0=$(now)
auth_file="$work/auths.txt"
: >"$auth_file"
for ((i = 1; i <= children; i++)); do
  resp=$(curl -sS -X POST "$api/nodes" "${admin[@]}" -H 'Content-Type: application/json' \
    -d "{\"node_type\":1,\"name\":\"$run-$i\",\"sync_config\":{\"max_capacity\":$capacity}}")
  ok "$resp" "node $i"
  node=$(jq -r .data.node_id <<<"$resp")
  resp=$(curl -sS -X POST "$api/nodes/$node/credentials" "${admin[@]}")
  ok "$resp" "credentials of node $i"
  auth="AK-SK $(jq -r '.data.api_key + ":" + .data.api_secret' <<<"$resp")"
  printf '%s\n' "$auth" >>"$auth_file"
  # one heartbeat puts the node online, as the bench's children do
  resp=$(curl -sS -X POST "$api/heartbeat" -H "Authorization: $auth" \
    -H 'Content-Type: application/json' -d '{}')
  ok "$resp" "heartbeat of node $i"
done
log "$children nodes with credentials in $(since "$t0") s"

t1=$(now)
opml="$work/feeds.opml"
jq -rn --argjson n "$feeds" --arg run "$run" '
  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<opml version=\"2.0\"><head><title>\($run)</title></head><body>",
  (range(0; $n) | "<outline text=\"\($run)-\(.)\" xmlUrl=\"http://wrk.invalid/feed/MP_WXS_\(3000000000 + .).rss\"/>"),
  "</body></opml>"' >"$opml"
resp=$(curl -sS -X POST "$api/feeds/import-opml" "${admin[@]}" \
  -H 'Content-Type: text/x-opml' --data-binary @"$opml")
ok "$resp" "OPML import"
log "imported $(jq -c .data <<<"$resp") in $(since "$t1") s"

resp=$(curl -sS -X POST "$api/message-tasks" "${admin[@]}" -H 'Content-Type: application/json' \
  -d "{\"name\":\"$run\",\"message_template\":\"{{ article.title }}\",\"all_feeds\":true,\"status\":1}")
ok "$resp" "task"
task=$(jq -r .data.id <<<"$resp")

t2=$(now)
resp=$(curl -sS -X POST "$api/dispatch-task?task_id=$task" "${admin[@]}" --max-time 600)
ok "$resp" "dispatch"
allocated=$(jq -r .data.allocations_created <<<"$resp")
log "dispatched $allocated allocations in $(since "$t2") s (set-up $(since "$t0") s in all)"
if [ "$allocated" -lt "$feeds" ]; then
  log "warning: fewer allocations than feeds (an old database?): $(jq -c .data <<<"$resp")"
fi

count() {  # count STATUS: allocations of the task in that status, per the admin API
  curl -sS "$api/allocations?task_id=$task&status=$1&limit=1" "${admin[@]}" | jq -r .data.total
}

# ---------------------------------------------------------------- the run
log "wrk -t $children -c $children -d ${seconds}s --latency -s $lua $base"
WRK_AUTH_FILE=$auth_file wrk -t "$children" -c "$children" -d "${seconds}s" --timeout 10s \
  --latency -s "$lua" "$base" | tee "$work/wrk.out" >&2

line=$(grep '^WRK_CYCLE ' "$work/wrk.out" || true)
[ -n "$line" ] || { echo "wrk printed no WRK_CYCLE line" >&2; exit 1; }
declare -A r
for kv in ${line#WRK_CYCLE }; do r[${kv%%=*}]=${kv#*=}; done

# wrk has stopped; let the parent finish what it was answering when wrk closed its sockets
completed=$(count completed)
for ((i = 0; i < 20; i++)); do
  sleep 0.1
  again=$(count completed)
  [ "$again" = "$completed" ] && break
  completed=$again
done
claimed=$(count claimed)
executing=$(count executing)
pending=$(count pending)
failed=$(count failed)
diff=$((completed - ${r[cycles]}))

cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
echo
echo "| tool | backend | cores | children | seconds | cycles/s | cycles | requests | p50 ms (all kinds) | p99 ms (all kinds) | non-2xx | errors | empty claims |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "| wrk | $backend | $cpus | ${r[children]} | ${r[seconds]} | ${r[cycles_per_s]} | ${r[cycles]} | ${r[requests]} | ${r[p50_ms]} | ${r[p99_ms]} | ${r[non2xx]} | $((${r[errors]} + ${r[socket_errors]})) | ${r[empty_claims]} |"
echo
echo "cross-check (admin API): completed $completed vs wrk cycles ${r[cycles]} (difference $diff;" \
  "completions in flight at the end may add up to $children); claimed $claimed, executing $executing," \
  "pending $pending, failed $failed"
if [ "$diff" -lt 0 ] || [ "$diff" -gt "$children" ]; then
  echo "WARNING: the parent's completed count is outside wrk cycles .. wrk cycles + $children" >&2
fi
if [ "$((claimed + executing))" -gt "$children" ]; then
  echo "WARNING: more open allocations ($((claimed + executing))) than children ($children)" >&2
fi
if [ -n "${WRK_KEEP:-}" ]; then
  echo "database: $db_url" >&2
fi
