"""Calls the model at $MODEL_URL (http://host:port) and returns the streamed text.

input: {"prompt": str, "delay_ms": number?, "tokens": int?} (delay_ms and tokens
are passed to the mock model; a real API would ignore them).
"""
import asyncio
import json
import os
from urllib.parse import urlsplit


async def _chunks(reader):
    """The body of a chunked HTTP/1.1 response, chunk by chunk."""
    while True:
        line = await reader.readline()
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def handler(input, context=None):
    url = urlsplit(os.environ.get("MODEL_URL", "http://127.0.0.1:9000"))
    request = {"model": "mock", "stream": True,
               "messages": [{"role": "user", "content": str(input.get("prompt", ""))}]}
    for k in ("delay_ms", "tokens"):
        if k in input:
            request[k] = input[k]
    body = json.dumps(request).encode()
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n"
                     b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (url.netloc.encode(), len(body), body))
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError("model answered " + status.decode("latin-1").strip())
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if not chunked:
            raise RuntimeError("model answer is not a chunked stream")
        text, tokens, buf = [], 0, b""
        async for chunk in _chunks(reader):
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if not ev.startswith(b"data: "):
                    continue
                data = ev[6:]
                if data == b"[DONE]":
                    break
                delta = json.loads(data)["choices"][0]["delta"].get("content", "")
                text.append(delta)
                tokens += 1
    finally:
        writer.close()
    if hasattr(context, "usage"):
        context.usage(tokens=tokens)
    return {"text": "".join(text), "tokens": tokens}
