-- wrk script: POST the echo input to the URL given on the command line.
wrk.method = "POST"
wrk.body = '{"input":{"text":"hello"}}'
wrk.headers["Content-Type"] = "application/json"
