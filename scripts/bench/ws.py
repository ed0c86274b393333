"""scripts/bench/ws.py - WebSocket echo backend and bounded load client for scripts/bench.sh.
Run with /usr/bin/python3 (Debian python3-websockets). Loopback only, bounded in time.
  ws.py server PORT           echo every message back (exits after 3600 s at the latest)
  ws.py client PORT SECS CONNS PID
                              CONNS connections through the proxy on PORT (TLS, SNI and Host
                              h0.bench.test, path /ws), each sending a 100-byte message and
                              waiting for its echo, for SECS seconds once all are open; prints
                              the echoes done and the CPU ns the proxy PID (threads and
                              children) used meanwhile (set-up and close excluded)
  ws.py probe PORT            one upgrade + one echo through the proxy: prints ok or fail
"""
import asyncio
import glob
import ssl
import sys
import time

import websockets

MSG = b"x" * 100
HOST = "h0.bench.test"


async def server(port):
    async def echo(ws, _path=None):
        async for m in ws:
            await ws.send(m)

    async with websockets.serve(echo, "127.0.0.1", port, max_size=1 << 20):
        await asyncio.sleep(3600)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(port):
    # the URI names the bench host (Host header, SNI); host= sends the bytes to loopback
    return await websockets.connect(
        f"wss://{HOST}:{port}/ws", host="127.0.0.1", port=port, ssl=client_ctx(),
        server_hostname=HOST, open_timeout=10, close_timeout=2, compression=None)


def cpu_ns(pid):
    """CPU ns used so far by every thread of pid and of its children (nginx workers)."""
    pids, total = [str(pid)], 0
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            pids += open(f).read().split()
        except OSError:
            pass
    for p in pids:
        for f in glob.glob(f"/proc/{p}/task/*/schedstat"):
            try:
                total += int(open(f).read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


async def open_one(port):
    try:
        return await connect(port)
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(f"ws.py: connect: {e!r}", file=sys.stderr)
        return None


async def echo_loop(ws, deadline, pid):
    """-> (echoes done, the proxy's CPU ns when this loop ended, before its close)"""
    done, c1 = 0, 0
    try:
        while time.monotonic() < deadline:
            await ws.send(MSG)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != MSG:
                print("ws.py: the echo differs from the message", file=sys.stderr)
                break
            done += 1
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(f"ws.py: echo: {e!r}", file=sys.stderr)
    c1 = cpu_ns(pid)
    await ws.close()
    return done, c1


async def client(port, secs, conns, pid):
    # every connection is open before the clock starts: SECS of echoes, whatever the set-up took
    socks = [ws for ws in await asyncio.gather(*[open_one(port) for _ in range(conns)]) if ws]
    deadline = time.monotonic() + secs
    c0 = cpu_ns(pid)
    counts = await asyncio.gather(*[echo_loop(ws, deadline, pid) for ws in socks])
    print(sum(c for c, _ in counts), max([c1 for _, c1 in counts], default=c0) - c0)


async def probe(port):
    try:
        ws = await connect(port)
        await ws.send(MSG)
        ok = await asyncio.wait_for(ws.recv(), 5) == MSG
        await ws.close()
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
        ok = False
    print("ok" if ok else "fail")


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        asyncio.run(server(port))
    elif mode == "client":
        asyncio.run(client(port, float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
    elif mode == "probe":
        asyncio.run(probe(port))
    else:
        sys.exit(f"ws.py: unknown mode {mode}")


if __name__ == "__main__":
    main()
