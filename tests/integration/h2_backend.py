#!/usr/bin/python3
"""HTTP/2 origin for test_h2_backend.sh, on python3-h2 (Debian): h2c with prior knowledge, or
TLS with ALPN h2 (--cert/--key; --client-ca: mTLS). One thread per connection, each a select loop, so many
streams of one connection are served at once and sends follow the flow-control windows.

Paths:
  /hello            200 "hello h2\n"
  /echo             POST: the body streamed back as it arrives (DATA acknowledged as echoed)
  /big?n=N          N bytes of a pattern
  /trailers         200, body "body\n", trailers x-checksum: 42 and grpc-status: 0
  /headers          the request's fields as JSON
  /reqtrailers      once the request ends: JSON {"len": body bytes, "trailers": [[name, value]...]}
  /hold?ms=N        200 "held\n" after N ms (keeps streams open at the same time)
  /goaway           200 "bye\n", then GOAWAY; the connection closes once its streams end
  /hang             never answers (deadline tests)
  /stall            never answers nor acknowledges request DATA (flow control holds the sender)
  /reset            response head and some data, then RST_STREAM
  /stats            JSON: connections accepted, requests, DATA bytes sent
"""
import argparse
import json
import select
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

STATS = {"connections": 0, "requests": 0, "sent": 0}
LOCK = threading.Lock()


class Conn:
    def __init__(self, sock):
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.out = {}  # stream id -> [bytes pending, end_stream, trailers]
        self.timers = []  # (at, stream id, callable)
        self.echo = set()
        self.stalled = set()
        self.rtrl = {}  # /reqtrailers stream id -> [body bytes, trailer fields]
        self.goaway = False

    def send_headers(self, sid, status, extra=(), end=False):
        hdrs = [(":status", str(status))] + list(extra)
        self.h2.send_headers(sid, hdrs, end_stream=end)

    def queue(self, sid, data, end=True, trailers=None):
        # [bytes pending, offset sent, end_stream, trailers] (an offset: no copy per frame)
        ent = self.out.setdefault(sid, [b"", 0, False, None])
        ent[0] = ent[0][ent[1]:] + data if ent[1] else ent[0] + data
        ent[1] = 0
        ent[2] = ent[2] or end
        ent[3] = trailers

    def pump(self):
        for sid in list(self.out):
            ent = self.out[sid]
            data, end, trailers = ent[0], ent[2], ent[3]
            try:
                win = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            except (h2.exceptions.StreamClosedError, KeyError):
                del self.out[sid]
                continue
            while ent[1] < len(data) and win > 0:
                n = min(win, len(data) - ent[1])
                self.h2.send_data(sid, data[ent[1]:ent[1] + n])
                with LOCK:
                    STATS["sent"] += n
                ent[1] += n
                win = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if ent[1] == len(data) and end:
                if trailers:
                    self.h2.send_headers(sid, trailers, end_stream=True)
                else:
                    self.h2.end_stream(sid)
                del self.out[sid]

    def request(self, sid, headers):
        h = dict(headers)
        path = h.get(":path", "/")
        with LOCK:
            STATS["requests"] += 1
        base, _, query = path.partition("?")
        q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if base == "/hello":
            self.send_headers(sid, 200, [("content-type", "text/plain")])
            self.queue(sid, b"hello h2\n")
        elif base == "/echo":
            self.send_headers(sid, 200, [("content-type", "application/octet-stream")])
            self.echo.add(sid)
        elif base == "/big":
            n = int(q.get("n", "0"))
            self.send_headers(sid, 200, [("content-length", str(n))])
            self.queue(sid, (b"0123456789abcdef" * (n // 16 + 1))[:n])
        elif base == "/reqtrailers":
            self.rtrl[sid] = [0, []]
        elif base == "/trailers":
            self.send_headers(sid, 200, [("content-type", "application/grpc")])
            self.queue(sid, b"body\n", trailers=[("x-checksum", "42"), ("grpc-status", "0")])
        elif base == "/headers":
            body = json.dumps(headers).encode()
            self.send_headers(sid, 200, [("content-type", "application/json")])
            self.queue(sid, body)
        elif base == "/hold":
            at = time.time() + int(q.get("ms", "200")) / 1000.0

            def later(sid=sid):
                self.send_headers(sid, 200)
                self.queue(sid, b"held\n")
            self.timers.append((at, sid, later))
        elif base == "/goaway":
            self.send_headers(sid, 200)
            self.queue(sid, b"bye\n")
            self.goaway = True
        elif base == "/hang":
            pass
        elif base == "/stall":
            self.stalled.add(sid)  # its DATA is never acknowledged: no window for more
        elif base == "/reset":
            self.send_headers(sid, 200, [("content-type", "application/grpc")])
            self.h2.send_data(sid, b"partial")

            def rst(sid=sid):
                self.h2.reset_stream(sid, error_code=2)
            self.timers.append((time.time() + 0.05, sid, rst))
        elif base == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            self.send_headers(sid, 200, [("content-type", "application/json")])
            self.queue(sid, body)
        else:
            self.send_headers(sid, 404)
            self.queue(sid, b"not found\n")

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.request(ev.stream_id, ev.headers)
        elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id in self.rtrl:
            self.rtrl[ev.stream_id][1] += [list(f) for f in ev.headers]
        elif isinstance(ev, h2.events.DataReceived):
            if ev.stream_id in self.rtrl:
                self.rtrl[ev.stream_id][0] += len(ev.data)
            if ev.stream_id in self.echo:
                self.queue(ev.stream_id, ev.data, end=False)
            if ev.flow_controlled_length and ev.stream_id not in self.stalled:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            if ev.stream_id in self.rtrl:
                n, trl = self.rtrl.pop(ev.stream_id)
                self.send_headers(ev.stream_id, 200, [("content-type", "application/json")])
                self.queue(ev.stream_id, json.dumps({"len": n, "trailers": trl}).encode())
            if ev.stream_id in self.echo:
                self.echo.discard(ev.stream_id)
                self.queue(ev.stream_id, b"", end=True)
        elif isinstance(ev, (h2.events.StreamReset,)):
            self.out.pop(ev.stream_id, None)

    def run(self):
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        deadline = time.time() + 600
        while time.time() < deadline:
            now = time.time()
            for t in [t for t in self.timers if t[0] <= now]:
                self.timers.remove(t)
                try:
                    t[2]()
                except h2.exceptions.StreamClosedError:
                    pass
            self.pump()
            if self.goaway and not self.out:
                self.h2.close_connection(last_stream_id=self.h2.highest_inbound_stream_id)
                self.goaway = "sent"
            data = self.h2.data_to_send()
            if data:
                self.sock.sendall(data)
            if self.goaway == "sent" and not self.out and not self.timers:
                return
            r, _, _ = select.select([self.sock], [], [], 0.02)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, OSError):
                return
            if not chunk:
                return
            try:
                events = self.h2.receive_data(chunk)
            except h2.exceptions.ProtocolError:
                self.sock.sendall(self.h2.data_to_send())
                return
            for ev in events:
                self.event(ev)


def serve(sock, ctx):
    try:
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_side=True)
        Conn(sock).run()
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca", help="require a client certificate signed by this CA")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["h2"])
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(128)
    while True:
        s, _ = ls.accept()
        with LOCK:
            STATS["connections"] += 1
        threading.Thread(target=serve, args=(s, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
