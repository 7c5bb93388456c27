#!/usr/bin/env bash
# Peak memory of a parent under 4 concurrent uploads of MB megabytes each (the body is read
# and parsed; the allocation does not exist, so nothing is stored). Prints VmHWM/VmRSS.
# usage: scripts/measure-upload-memory.sh <cascade binary> <port> <MB per upload> [max_upload_bytes]
set -euo pipefail
BIN=$(realpath "$1"); PORT=$2; MB=$3; MAX=${4:-}
D=$(mktemp -d)
cd $D
DB=sqlite://$D/c.db
$BIN --db $DB init --admin-password 'pw-pw-pw-1' >/dev/null 2>&1
CRED=$($BIN --db $DB --json node add n 2>/dev/null)
KEY=$(echo "$CRED" | python3 -c 'import sys,json; d=json.load(sys.stdin); d=d.get("data",d); print(d["api_key"])')
SEC=$(echo "$CRED" | python3 -c 'import sys,json; d=json.load(sys.stdin); d=d.get("data",d); print(d["api_secret"])')
if [ -n "$MAX" ]; then printf 'cascade:\n  max_upload_bytes: %s\n' "$MAX" > config.yaml; fi
$BIN --db $DB --port $PORT parent >parent.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -s localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done
grep -E 'VmHWM|VmRSS' /proc/$PID/status | tr '\n' ' '; echo "(idle)"
python3 - "$PORT" "$KEY" "$SEC" "$MB" <<'PY'
import sys, json, socket, threading
port, key, sec, mb = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
n = int(mb * 10)  # articles of ~100 KB
body = json.dumps({"allocation_id": "x", "articles": [{"id": str(i), "title": "t", "content": "x" * 100_000} for i in range(n)]}).encode()
res = []
def go():
    s = socket.create_connection(("127.0.0.1", port))
    head = f"POST /api/v1/wx/cascade/upload-articles HTTP/1.1\r\nHost: a\r\nAuthorization: AK-SK {key}:{sec}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    try:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            c = s.recv(65536)
            if not c: break
            data += c
        res.append(data.split(b"\r\n")[0].decode())
    except Exception as e:
        res.append(repr(e))
ts = [threading.Thread(target=go) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"{len(body)/1e6:.1f} MB x4:", res)
PY
grep -E 'VmHWM|VmRSS' /proc/$PID/status | tr '\n' ' '; echo "(after)"
kill $PID; wait $PID 2>/dev/null || true
