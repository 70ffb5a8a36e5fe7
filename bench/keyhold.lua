-- wrk script for the keyhold benchmark (bench/run drives it; see docs/benchmarks.md).
--
-- Every request carries one of N distinct valid bearer tokens, picked uniformly at random,
-- so the verified-token cache and the database see N users, not one hot row. The same
-- requests go to nginx (which ignores them) so that both servers parse the same bytes.
--
-- Environment:
--   BENCH_TOKENS  file of "guid<TAB>token<TAB>key" lines (bench/bench.py writes it)
--   BENCH_MODE    get | put | mixed | seed | prime
--                 seed: PUT every user once, in order, then exit (run with -t1)
--                 prime: GET every user once, in order, then exit (fills the token cache)
--   BENCH_WRITE_PCT  share of PUTs in mixed mode, in percent (default 5)
--   BENCH_RATE    if set: requests/s per wrk thread, paced on a fixed schedule (open loop,
--                 like wrk2) instead of as fast as possible
--   BENCH_STATS   where done() writes the run's summary as JSON
--   BENCH_PREFIX  path prefix (default "", i.e. /user-keys of the default tenant)

local mode = os.getenv("BENCH_MODE") or "get"
local write_pct = tonumber(os.getenv("BENCH_WRITE_PCT") or "5")
local rate = tonumber(os.getenv("BENCH_RATE") or "")
local path = (os.getenv("BENCH_PREFIX") or "") .. "/user-keys"

local gets, puts = {}, {}
local n = 0
local seq = 0
local seed_done = 0

local function load()
        local file = assert(os.getenv("BENCH_TOKENS"), "BENCH_TOKENS is not set")
        for line in io.lines(file) do
                local guid, token, key = line:match("^(%S+)\t(%S+)\t(%S+)$")
                if guid then
                        n = n + 1
                        local auth = "Bearer " .. token
                        gets[n] = wrk.format("GET", path, {
                                ["Authorization"] = auth,
                                ["Accept"] = "application/json",
                        })
                        puts[n] = wrk.format("PUT", path, {
                                ["Authorization"] = auth,
                                ["Content-Type"] = "application/json",
                        }, '{"key":"' .. key .. '"}')
                end
        end
        assert(n > 0, "no tokens in " .. file)
end

local thread_counter = 0
function setup(thread)
        thread_counter = thread_counter + 1
        thread:set("thread_no", thread_counter)
end

function init(args)
        load()
        -- a different random sequence per thread and per run
        math.randomseed(os.time() * 1000 + (thread_no or 1))
end

function request()
        if mode == "seed" or mode == "prime" then
                seq = seq + 1
                local i = ((seq - 1) % n) + 1
                return mode == "seed" and puts[i] or gets[i]
        end
        local i = math.random(n)
        if mode == "put" then
                return puts[i]
        elseif mode == "mixed" and math.random(100) <= write_pct then
                return puts[i]
        end
        return gets[i]
end

if mode == "seed" or mode == "prime" then
        -- wrk's main thread sleeps for the whole -d whatever the threads do, so the seed
        -- ends the process itself once every user is stored (run it with -t1). PUT is
        -- idempotent: the few requests still in flight past the n-th do no harm.
        function response(status, headers, body)
                if status ~= 200 then
                        io.stderr:write(mode .. ": status " .. status .. ": " .. body .. "\n")
                        io.stderr:flush()
                        os.exit(3)
                end
                seed_done = seed_done + 1
                if seed_done >= n then
                        io.stdout:write(mode .. ": " .. seed_done .. " users done\n")
                        io.stdout:flush()
                        os.exit(0)
                end
        end
end

if rate and rate > 0 then
        -- Fixed schedule: request k is due at start + k / rate, whoever sends it; delay()
        -- returns how long the connection that is about to send must wait for the next
        -- slot. wrk's timers have 1 ms resolution, so requests leave in per-millisecond
        -- batches (rate / 1000 at a time), the same granularity wrk2 has.
        local ffi = require("ffi")
        ffi.cdef [[
                typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
                int clock_gettime(int clk, bench_timespec *ts);
        ]]
        local ts = ffi.new("bench_timespec")
        local function now_us()
                ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
                return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
        end
        local interval = 1e6 / rate
        local next_due = nil

        function delay()
                local now = now_us()
                if not next_due then
                        next_due = now
                end
                next_due = next_due + interval
                local wait = next_due - now
                if wait <= 0 then
                        return 0
                end
                return math.floor(wait / 1000 + 0.5)
        end
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
