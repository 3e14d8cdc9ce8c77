#!/usr/bin/python3
"""A worker that breaks the rules of events on purpose, for tests/unit/test_events.c.

Started by the supervisor in place of par-worker (it ignores its arguments) and
speaks the worker protocol on fd 3. Each INVOKE's input is a command:

  {"do":"raw","header":H,"body":B}  sends EVENT with header H (a string, or
                                    null for none) and body B, then waits for
                                    the CANCEL and answers it
  {"do":"hold"}                     answers only when a "release" comes
  {"do":"release"}                  answers every held call, then itself
  {"do":"stray"}                    an EVENT for a request it was never sent,
                                    then its answer
  {"do":"stream","agent":A}         CALL A with "stream":true; answers with
                                    the CALL_EVENTs and the CALL_RESULT it got
"""
import json
import os
import socket
import struct

HELLO, INVOKE, RESULT, ERROR, CALL, CALL_RESULT = 1, 2, 3, 4, 5, 6
CANCEL, EVENT, EVENT_ACK, CALL_EVENT = 10, 12, 13, 14
HEADER = struct.Struct("<BBHIIIQ")

sock = socket.socket(fileno=3)
buf = bytearray()


def send(ftype, fid, header=b"", body=b""):
    if isinstance(header, (dict, list)):
        header = json.dumps(header).encode()
    sock.sendall(HEADER.pack(ftype, 1, 0, len(header), len(body), 0, fid) + header + body)


def recv():
    global buf
    while True:
        if len(buf) >= HEADER.size:
            ftype, _v, _f, hlen, blen, _r, fid = HEADER.unpack_from(buf)
            total = HEADER.size + hlen + blen
            if len(buf) >= total:
                raw = bytes(buf[HEADER.size:total])
                del buf[:total]
                return ftype, fid, raw[:hlen], raw[hlen:]
        chunk = sock.recv(65536)
        if not chunk:
            os._exit(0)
        buf += chunk


def result(fid, value):
    send(RESULT, fid, b"", json.dumps(value).encode())


send(HELLO, 0, {"protocol": 1, "runtime": "fake", "pid": os.getpid(), "exports": [""]})
held = []
streams = {}  # call id -> [invoke id, events]
next_call = 0
while True:
    ftype, fid, h, body = recv()
    if ftype == CANCEL:
        send(ERROR, fid, {"error": "cancelled", "message": "cancelled"})
    elif ftype == CALL_EVENT:
        streams[fid][1].append([json.loads(h)["event"], json.loads(body)])
    elif ftype == CALL_RESULT:
        inv, events = streams.pop(fid)
        result(inv, {"events": events, "status": json.loads(h).get("status"),
                     "result": json.loads(body)})
    elif ftype == INVOKE:
        cmd = json.loads(body)
        do = cmd.get("do")
        if do == "raw":
            hdr = cmd.get("header")
            send(EVENT, fid, hdr.encode() if hdr is not None else b"", cmd["body"].encode())
        elif do == "hold":
            held.append(fid)
        elif do == "release":
            for i in held:
                result(i, {"released": True})
            held = []
            result(fid, {"released": "all"})
        elif do == "stray":
            send(EVENT, 987654321, {"event": "data"}, b"1")
            result(fid, {"stray": True})
        elif do == "stream":
            next_call += 1
            streams[next_call] = [fid, []]
            send(CALL, next_call, {"agent": cmd["agent"], "parent": fid, "stream": True}, b"null")
