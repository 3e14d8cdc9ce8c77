-- wrk script for bench/export.py: POST the echo input at a fixed rate per
-- connection (delay in ms from BENCH_DELAY_MS), rotating through API keys so
-- several customers are billed; prints the figures as one JSON line.
wrk.method = "POST"
wrk.body = '{"input":{"text":"hello"}}'
wrk.headers["Content-Type"] = "application/json"
local keys = {}
for k in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
    keys[#keys + 1] = k
end
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local n = 0

request = function()
    n = n + 1
    wrk.headers["X-API-Key"] = keys[(n % #keys) + 1]
    return wrk.format()
end

delay = function()
    return pace
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d}\n',
        summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status))
end
