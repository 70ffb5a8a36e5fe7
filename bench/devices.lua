-- wrk script for the trusted-device benchmark (bench/devices.py drives it; see
-- docs/benchmarks.md, "Trusted devices").
--
-- Every request carries one of N members' bearer tokens, picked uniformly at random, as
-- bench/keyhold.lua does for /user-keys. The same requests go to nginx (which ignores them).
--
-- Environment:
--   BENCH_TOKENS  file of "guid<TAB>token<TAB>identifier" lines (bench/devices.py writes it):
--                 the identifier is the member's trusted device
--   BENCH_MODE    retrieve: POST /devices/{identifier}/retrieve-keys (what a trusted device
--                           asks at every unlock), with an empty body
--                 list:     GET /devices (the member's devices)
--   BENCH_STATS   where done() writes the run's summary as JSON
--   BENCH_PREFIX  path prefix (default "", the default tenant)

local mode = os.getenv("BENCH_MODE") or "retrieve"
local prefix = os.getenv("BENCH_PREFIX") or ""

local reqs = {}
local n = 0

local function load()
        local file = assert(os.getenv("BENCH_TOKENS"), "BENCH_TOKENS is not set")
        for line in io.lines(file) do
                local guid, token, ident = line:match("^(%S+)\t(%S+)\t(%S+)$")
                if guid then
                        n = n + 1
                        local auth = "Bearer " .. token
                        if mode == "list" then
                                reqs[n] = wrk.format("GET", prefix .. "/devices", {
                                        ["Authorization"] = auth,
                                        ["Accept"] = "application/json",
                                })
                        else
                                reqs[n] = wrk.format("POST", prefix .. "/devices/" .. ident ..
                                        "/retrieve-keys", {
                                        ["Authorization"] = auth,
                                        ["Accept"] = "application/json",
                                }, "")
                        end
                end
        end
        assert(n > 0, "no members in " .. file)
        assert(mode == "retrieve" or mode == "list", "BENCH_MODE must be retrieve or list")
end

local thread_counter = 0
function setup(thread)
        thread_counter = thread_counter + 1
        thread:set("thread_no", thread_counter)
end

function init(args)
        load()
        math.randomseed(os.time() * 1000 + (thread_no or 1))
end

function request()
        return reqs[math.random(n)]
end

function done(summary, latency, requests)
        local out = os.getenv("BENCH_STATS")
        if not out then
                return
        end
        local e = summary.errors
        local f = assert(io.open(out, "w"))
        f:write(string.format(
                '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
                '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
                '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,' ..
                '"p9999":%d,"max":%d}}\n',
                summary.requests, summary.duration, summary.bytes,
                e.connect, e.read, e.write, e.status, e.timeout,
                latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
                latency:percentile(99), latency:percentile(99.9), latency:percentile(99.99),
                latency.max))
        f:close()
end
