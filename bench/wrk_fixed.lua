-- A fixed number of requests with wrk (use -t1): the thread stops after WRK_REQUESTS responses
-- and notes the wall time they took (wrk itself only knows its -d duration); done() prints the
-- figures as one JSON line. LuaJIT's FFI reads the monotonic clock.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clk_id, wrk_timespec *tp);
]]
local ts = ffi.new("wrk_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

local limit = tonumber(os.getenv("WRK_REQUESTS"))
local seen, started = 0, nil
counted, elapsed = 0, 0  -- globals: done() reads them with thread:get

function init(args) started = now() end

function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    counted, elapsed = seen, now() - started
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "elapsed_s": %.6f, "p50_us": %d, "p99_us": %d, "non2xx": %d, ' ..
    '"socket_errors": %d, "all_requests": %d, "duration_us": %d}\n',
    t:get("counted"), t:get("elapsed"), latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, summary.requests, summary.duration))
end
