-- wrk script: POST the echo input and print the figures as one JSON line.
-- BENCH_API_KEY set and not empty: every request carries `Authorization: Bearer <key>`.
wrk.method = "POST"
wrk.body = '{"input":{"text":"hello"}}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
        '"p999_ms":%.3f,"errors":%d,"non2xx":%d}\n',
        summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
