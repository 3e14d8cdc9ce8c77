-- wrk script of bench/longcall.py: POST $LONGCALL_BODY; with LONGCALL_PACE_MS > 0
-- each connection waits that long between requests (a light, paced load). With
-- LONGCALL_RAMP_MS > 0 the first request of each of a thread's LONGCALL_PER_THREAD
-- connections waits a random time up to it, so the calls do not all start (and end)
-- in one wave. Prints the figures as one JSON line.
wrk.method = "POST"
wrk.body = os.getenv("LONGCALL_BODY") or '{"input":{"text":"hello"}}'
wrk.headers["Content-Type"] = "application/json"
local pace = tonumber(os.getenv("LONGCALL_PACE_MS") or "0") or 0
local ramp = tonumber(os.getenv("LONGCALL_RAMP_MS") or "0") or 0
local first = tonumber(os.getenv("LONGCALL_PER_THREAD") or "0") or 0
if pace > 0 or ramp > 0 then
    delay = function()
        if first > 0 then
            first = first - 1
            return math.random(0, ramp)
        end
        return pace
    end
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
        '"p99_ms":%.3f,"max_ms":%.3f,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
        '"non2xx":%d}\n',
        summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000, e.connect, e.read, e.write,
        e.timeout, e.status))
end
