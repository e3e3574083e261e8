-- wrk script for scripts/soak.sh: posts the captured AdmissionReviews given as
-- arguments, in turn, each to the endpoint its name says (`*-mutating.json` to
-- /mutate, the others to /validate), at a paced rate, and counts answers that are
-- not a 200 AdmissionReview with a uid and a verdict.
--
-- Arguments: DELAY_MS FILE...   (DELAY_MS: pause of each connection between requests)

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local bodies, paths = {}, {}
local n, i, pause = 0, 0, 0
local bad_status, bad_body = 0, 0

local function read(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  pause = tonumber(args[1])
  for k = 2, #args do
    local name = args[k]
    local body = read(name)
    n = n + 1
    bodies[n] = body
    paths[n] = name:match("mutating%.json$") and "/mutate" or "/validate"
  end
  -- Each thread starts at a different review.
  i = math.random(n) - 1
end

function delay()
  return pause
end

function request()
  i = i % n + 1
  return wrk.format("POST", paths[i], { ["Content-Type"] = "application/json" }, bodies[i])
end

local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif not (body:find('"kind":"AdmissionReview"', 1, true) and body:find('"uid":"', 1, true)
      and body:find('"allowed":', 1, true)) then
    bad_body = bad_body + 1
  end
  wrk.thread:set("bad_status", bad_status)
  wrk.thread:set("bad_body", bad_body)
  wrk.thread:set("answered", answered)
end

function done(summary, latency, requests)
  local bs, bb, ans = 0, 0, 0
  for _, t in ipairs(threads) do
    bs = bs + (t:get("bad_status") or 0)
    bb = bb + (t:get("bad_body") or 0)
    ans = ans + (t:get("answered") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d answered=%d bad_status=%d bad_body=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f seconds=%.1f\n",
    summary.requests, ans, bs, bb, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end
