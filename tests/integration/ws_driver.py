"""ws_driver.py - WebSocket backend and client cases for test_websocket.sh (Debian
python3-websockets 10.x, legacy asyncio API; run with /usr/bin/python3).

  ws_driver.py backend PORT RAWPORT          echo server on 127.0.0.1:PORT, and on RAWPORT a
                                             raw one answering 101 + a message + a close frame
                                             in one write, then closing (until killed)
  ws_driver.py CASE HTTPS_PORT [ARG]         one client case through torii; prints what it
                                             saw, exits 0 when it saw what it should

Backend paths: /echo (echo every message), /close (echo one message, then close 4001 "bye"),
/gone (after one message, drop the TCP connection without a close frame), /plain (answer
200 with the request head as JSON instead of switching), /count (200 {"n": requests seen}).
Every wait is bounded (WAIT seconds, far beyond what a healthy run needs); no case asserts how
fast something happened.
"""
import asyncio
import base64
import hashlib
import http
import json
import os
import socket
import ssl
import sys
import time

import websockets
from websockets.datastructures import Headers

WAIT = 60.0
SEEN = []
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---- backend ----


async def backend_request(path, headers):
    if path == "/count":
        body = json.dumps({"n": len(SEEN)}).encode()
    else:
        SEEN.append(path)
        if not path.startswith("/plain"):
            return None
        body = json.dumps({"path": path, "headers": [[k, v] for k, v in headers.raw_items()]})
        body = body.encode()
    hdrs = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return (http.HTTPStatus.OK, hdrs, body)


async def backend_handler(ws):
    if ws.path == "/close":
        await ws.send(await ws.recv())
        await ws.close(4001, "bye")
        return
    if ws.path == "/gone":
        await ws.recv()
        ws.transport.abort()
        return
    async for m in ws:
        await ws.send(m)


async def raw_switch(reader, writer):
    """101, a text frame "early" and a close frame (1000), then FIN: all before the client
    could send anything."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
           if ln.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                 b"\x81\x05early\x88\x02\x03\xe8")
    await writer.drain()
    writer.close()


async def backend(port, raw_port):
    async with websockets.serve(backend_handler, "127.0.0.1", port, ping_interval=None,
                                max_size=None, process_request=backend_request):
        async with await asyncio.start_server(raw_switch, "127.0.0.1", raw_port):
            await asyncio.Future()


# ---- client cases ----


def url(port, path):
    return "wss://localhost:%d%s" % (port, path)


async def connect(port, path):
    return await asyncio.wait_for(
        websockets.connect(url(port, path), ssl=tls_ctx(), ping_interval=None, max_size=None,
                           compression=None, close_timeout=WAIT), WAIT)


async def case_echo(port, _arg):
    ws = await connect(port, "/echo")
    await ws.send("hello, torii")
    text = await asyncio.wait_for(ws.recv(), WAIT)
    blob = bytes(range(256)) * 4
    await ws.send(blob)
    back = await asyncio.wait_for(ws.recv(), WAIT)
    pong = await ws.ping(b"p1")
    await asyncio.wait_for(pong, WAIT)
    await asyncio.wait_for(ws.close(1000, "done"), WAIT)
    print("text", text == "hello, torii", "binary", back == blob, "pong", True,
          "close", ws.close_code)
    return text == "hello, torii" and back == blob and ws.close_code == 1000


async def case_large(port, arg):
    n = int(arg) * 1024 * 1024
    blob = os.urandom(n)  # incompressible, and no permessage-deflate (compression=None)
    ws = await connect(port, "/echo")
    for _ in range(2):
        await ws.send(blob)
        back = await asyncio.wait_for(ws.recv(), WAIT)
        if back != blob:
            print("large message corrupted: %d bytes back" % len(back))
            return False
    await asyncio.wait_for(ws.close(), WAIT)
    print("2 x %d bytes echoed intact" % len(blob))
    return True


async def expect_closed(ws):
    try:
        m = await asyncio.wait_for(ws.recv(), WAIT)
        print("unexpected message", m[:40])
        return False
    except websockets.ConnectionClosed:
        return True


async def case_server_close(port, _arg):
    ws = await connect(port, "/close")
    await ws.send("one")
    first = await asyncio.wait_for(ws.recv(), WAIT)
    closed = await expect_closed(ws)
    print("echo", first, "closed", closed, "code", ws.close_code, "reason", ws.close_reason)
    return first == "one" and closed and ws.close_code == 4001 and ws.close_reason == "bye"


async def case_gone(port, _arg):
    ws = await connect(port, "/gone")
    await ws.send("x")
    closed = await expect_closed(ws)
    print("closed", closed, "code", ws.close_code)
    return closed and ws.close_code == 1006


async def case_early(port, _arg):
    ws = await asyncio.wait_for(
        websockets.connect("wss://early.test:%d/" % port, ssl=tls_ctx(), ping_interval=None,
                           compression=None, close_timeout=WAIT,
                           sock=socket.create_connection(("127.0.0.1", port)),
                           server_hostname="localhost"), WAIT)
    first = await asyncio.wait_for(ws.recv(), WAIT)
    closed = await expect_closed(ws)
    print("message", first, "closed", closed, "code", ws.close_code)
    return first == "early" and closed and ws.close_code == 1000


async def case_idle(port, _arg):
    ws = await connect(port, "/echo")
    await ws.send("before idle")
    first = await asyncio.wait_for(ws.recv(), WAIT)
    closed = await expect_closed(ws)  # nothing sent: the tunnel's idle timeout ends it
    print("echo", first, "closed", closed, "code", ws.close_code)
    return first == "before idle" and closed and ws.close_code == 1006


async def case_drain(port, flag):
    """Echo every 0.3 s (so no idle timeout ends it); FLAG.ready is written once the tunnel
    is up, FLAG appears when the daemon was told to stop. Succeeds when echoes still came
    after the stop and the tunnel was then closed."""
    ws = await connect(port, "/echo")
    open(flag + ".ready", "w").close()
    n_after = 0
    try:
        for _ in range(1000):
            stopped = os.path.exists(flag)
            await ws.send("m")
            await asyncio.wait_for(ws.recv(), WAIT)
            n_after += stopped
            await asyncio.sleep(0.3)
    except websockets.ConnectionClosed:
        pass
    print("echoes after the stop:", n_after, "closed:", ws.closed)
    return n_after > 0 and ws.closed


# ---- raw HTTP/1.1 over TLS (keep-alive checks) ----


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            return None, {}, buf
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    return status, hdrs, rest[:n]


def raw(port, requests):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s = tls_ctx().wrap_socket(s, server_hostname="localhost")
    out = []
    for r in requests:
        s.sendall(r.encode())
        out.append(read_response(s))
    s.close()
    return out


def upgrade_req(host, path, extra="", proto="websocket", key="dGhlIHNhbXBsZSBub25jZQ=="):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (path, host, proto, key, extra))


def count(port):
    r = raw(port, ["GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n"])
    return json.loads(r[0][2])["n"]


async def case_refused(port, _arg):
    before = count(port)
    (st, _h, body), = raw(port, [upgrade_req("noup.test", "/echo")])
    after = count(port)
    print("status", st, "body", body.decode(), "backend requests", after - before)
    return st == 400 and b"'websocket' is not allowed" in body and after == before


async def case_bad_handshake(port, _arg):
    before = count(port)
    res = raw(port, [upgrade_req("localhost", "/echo", key="short")])
    res += raw(port, [upgrade_req("localhost", "/echo").replace("GET", "POST", 1)])
    after = count(port)
    print("statuses", [r[0] for r in res], [r[2].decode() for r in res],
          "backend requests", after - before)
    return ([r[0] for r in res] == [400, 400] and b"Sec-WebSocket-Key" in res[0][2]
            and b"POST" in res[1][2] and after == before)


async def case_h2c(port, _arg):
    req = ("GET /plain/h2c HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    (st, hdrs, body), = raw(port, [req])
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    print("status", st, "upgrade to client", hdrs.get("upgrade"), "backend saw",
          {k: seen.get(k) for k in ("upgrade", "connection", "http2-settings")})
    return (st == 200 and "upgrade" not in hdrs and "upgrade" not in seen
            and "http2-settings" not in seen and "connection" not in seen)


async def case_not_switched(port, _arg):
    res = raw(port, [upgrade_req("localhost", "/plain/a"), "GET /plain/b HTTP/1.1\r\n"
                     "Host: localhost\r\n\r\n"])
    first = {k.lower(): v for k, v in json.loads(res[0][2])["headers"]}
    print("statuses", [r[0] for r in res], "backend saw upgrade", first.get("upgrade"),
          first.get("connection"), "second path", json.loads(res[1][2])["path"])
    return ([r[0] for r in res] == [200, 200] and first.get("upgrade") == "websocket"
            and first.get("connection", "").lower() == "upgrade"
            and json.loads(res[1][2])["path"] == "/plain/b"
            and "close" not in res[0][1].get("connection", ""))


CASES = {
    "echo": case_echo,
    "large": case_large,
    "server-close": case_server_close,
    "gone": case_gone,
    "idle": case_idle,
    "early": case_early,
    "drain": case_drain,
    "refused": case_refused,
    "bad-handshake": case_bad_handshake,
    "h2c": case_h2c,
    "not-switched": case_not_switched,
}


def main():
    if sys.argv[1] == "backend":
        asyncio.run(backend(int(sys.argv[2]), int(sys.argv[3])))
        return 0
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        ok = asyncio.run(CASES[sys.argv[1]](int(sys.argv[2]), arg))
    except Exception as e:  # a failure of the case, reported as such
        print("error: %s: %s" % (type(e).__name__, e))
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
