#!/usr/bin/env python3
"""A stand-in for a model API, for bench/longcall.py only: standard library, loopback only.

POST /v1/chat/completions with a JSON body answers, after `delay_ms` (from the
body, else --delay-ms), an OpenAI-style server-sent-event stream of `tokens`
(body, else --tokens) chunks, `data: {"choices":[{"delta":{"content":"..."}}]}`,
then `data: [DONE]`, as HTTP/1.1 chunked transfer encoding (one chunk per event;
--token-ms apart; 0 = back to back, in one write). Connections are kept alive unless the
request says `Connection: close`. Anything else answers 404.

    python3 mock_model.py --port 9000 [--delay-ms 1000] [--tokens 32] [--token-ms 0]
"""
import argparse
import asyncio
import json
import resource


def event(obj):
    data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def token(i):
    return event(b'{"choices":[{"index":0,"delta":{"content":"tok%d "}}]}' % i)


DONE = event(b"[DONE]") + b"0\r\n\r\n"


async def handle(reader, writer, opts):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            close = headers.get("connection", "").lower() == "close"
            if method != "POST" or path != "/v1/chat/completions":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                if close:
                    break
                continue
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                req = {}
            delay = float(req.get("delay_ms", opts.delay_ms)) / 1000.0
            tokens = int(req.get("tokens", opts.tokens))
            await asyncio.sleep(delay)
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" +
                    (b"Connection: close\r\n" if close else b"") + b"\r\n")
            if opts.token_ms:
                writer.write(head)
                for i in range(tokens):
                    writer.write(token(i))
                    await writer.drain()
                    await asyncio.sleep(opts.token_ms / 1000.0)
                writer.write(DONE)
            else:  # back to back: one write, as a socket buffer would carry it anyway
                writer.write(head + b"".join(token(i) for i in range(tokens)) + DONE)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=1000)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--token-ms", type=float, default=0)
    opts = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = await asyncio.start_server(lambda r, w: handle(r, w, opts), "127.0.0.1", opts.port,
                                        backlog=8192, reuse_address=True)
    print("listening", opts.port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
