-- wrk script: each wrk thread is one simulated child node running the claim cycle of
-- src/bench/mod.rs `child()`:
--   1. POST /api/v1/wx/cascade/claim-task            (AK-SK; data = package or null)
--   2. PUT  /api/v1/wx/cascade/task-status           {"allocation_id","status":"executing","lease_token"}
--   3. POST /api/v1/wx/cascade/report-completion     {"allocation_id","task_id","results":[],"article_count":0,"lease_token"}
-- A cycle counts when the completion answers code 0. A claim answering data null ("empty
-- claim") is followed by another claim.
--
-- Run with one connection per thread (wrk -t K -c K), so each thread has at most one request
-- in flight and the "step just sent" is the one the next response answers.
--
-- Credentials: env WRK_AUTH_FILE names a file with one `AK-SK key:secret` line per child;
-- thread i gets line i (scripts/wrk-bench.sh writes it).

local PREFIX = "/api/v1/wx/cascade/"

-- ---------------------------------------------------------------- main state (setup/done)

local threads = {}
local auths = nil

local function read_auths()
  local path = os.getenv("WRK_AUTH_FILE")
  if not path or path == "" then
    error("cycle.lua: set WRK_AUTH_FILE to a file of `AK-SK key:secret` lines")
  end
  local f = assert(io.open(path, "r"))
  local list = {}
  for line in f:lines() do
    if line:match("%S") then list[#list + 1] = line end
  end
  f:close()
  if #list == 0 then error("cycle.lua: no credentials in " .. path) end
  return list
end

function setup(thread)
  auths = auths or read_auths()
  local i = #threads + 1
  if i > #auths then
    io.stderr:write(string.format(
      "cycle.lua: warning: thread %d has no credentials line of its own (%d lines); sharing one\n",
      i, #auths))
  end
  thread:set("thread_no", i)
  thread:set("auth", auths[(i - 1) % #auths + 1])
  threads[i] = thread
end

-- ---------------------------------------------------------------- per-thread state

-- step: what request() sends next and what the next response answers.
local step = "claim"
local alloc, token, task = nil, nil, nil
local headers = nil

-- counters read by done() through thread:get
cycles = 0          -- completions answered code 0
empty_claims = 0    -- claims answered data null
claims, statuses, completions = 0, 0, 0   -- responses received per kind
non2xx = 0          -- responses with an HTTP status outside 200-299
errors = 0          -- 2xx answers with code != 0, unparsable claims, failed transitions
errors_claim, errors_status, errors_complete = 0, 0, 0

function init(args)
  headers = {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
  }
end

function request()
  if step == "claim" then
    return wrk.format("POST", PREFIX .. "claim-task", headers, "{}")
  elseif step == "status" then
    return wrk.format("PUT", PREFIX .. "task-status", headers, string.format(
      '{"allocation_id":"%s","status":"executing","lease_token":"%s"}', alloc, token))
  else
    return wrk.format("POST", PREFIX .. "report-completion", headers, string.format(
      '{"allocation_id":"%s","task_id":"%s","results":[],"article_count":0,"lease_token":"%s"}',
      alloc, task, token))
  end
end

-- The envelope's code (the first "code" key: the envelope's own comes first).
local function code_of(body)
  return tonumber(body and body:match('"code"%s*:%s*(%-?%d+)') or "")
end

function response(status, hdrs, body)
  local ok_http = status >= 200 and status < 300
  if not ok_http then non2xx = non2xx + 1 end
  local code = code_of(body)

  if step == "claim" then
    claims = claims + 1
    if not ok_http or code ~= 0 then
      errors = errors + 1; errors_claim = errors_claim + 1
      return -- claim again
    end
    if body:match('"data"%s*:%s*null') then
      empty_claims = empty_claims + 1
      return -- claim again
    end
    alloc = body:match('"allocation_id"%s*:%s*"([^"]+)"')
    token = body:match('"lease_token"%s*:%s*"([^"]+)"')
    task = body:match('"task_id"%s*:%s*"([^"]+)"')
    if alloc and token and task then
      step = "status"
    else
      errors = errors + 1; errors_claim = errors_claim + 1
    end
  elseif step == "status" then
    statuses = statuses + 1
    if not ok_http or code ~= 0 then
      errors = errors + 1; errors_status = errors_status + 1
    end
    -- like the bench's child: report the completion whatever the status update answered
    step = "complete"
  else
    completions = completions + 1
    if ok_http and code == 0 then
      cycles = cycles + 1
    else
      errors = errors + 1; errors_complete = errors_complete + 1
    end
    step = "claim"
  end
end

-- ---------------------------------------------------------------- report (main state)

function done(summary, latency, requests)
  local t = {
    cycles = 0, empty_claims = 0, claims = 0, statuses = 0, completions = 0,
    non2xx = 0, errors = 0, errors_claim = 0, errors_status = 0, errors_complete = 0,
  }
  for _, thread in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + (tonumber(thread:get(k)) or 0) end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local p50 = latency:percentile(50) / 1000
  local p99 = latency:percentile(99) / 1000
  io.write("\n-- cycle.lua --------------------------------------------------------------\n")
  io.write(string.format("children (threads)      %d\n", #threads))
  io.write(string.format("duration                %.2f s\n", secs))
  io.write(string.format("requests                %d  (claims %d, status %d, completions %d)\n",
    summary.requests, t.claims, t.statuses, t.completions))
  io.write(string.format("cycles completed        %d\n", t.cycles))
  io.write(string.format("cycles/s                %.1f\n", t.cycles / secs))
  io.write(string.format("empty claims            %d\n", t.empty_claims))
  io.write(string.format("latency p50 / p99       %.2f / %.2f ms  (all three request kinds together)\n",
    p50, p99))
  io.write(string.format("non-2xx responses       %d\n", t.non2xx))
  io.write(string.format("envelope errors         %d  (claim %d, status %d, completion %d)\n",
    t.errors, t.errors_claim, t.errors_status, t.errors_complete))
  io.write(string.format("socket errors           connect %d, read %d, write %d, timeout %d\n",
    e.connect, e.read, e.write, e.timeout))
  -- one machine-readable line for scripts/wrk-bench.sh
  io.write(string.format(
    "WRK_CYCLE children=%d seconds=%.3f requests=%d cycles=%d cycles_per_s=%.1f p50_ms=%.2f p99_ms=%.2f "
      .. "non2xx=%d errors=%d empty_claims=%d socket_errors=%d\n",
    #threads, secs, summary.requests, t.cycles, t.cycles / secs, p50, p99,
    t.non2xx, t.errors, t.empty_claims, e.connect + e.read + e.write + e.timeout))
end
