#!/usr/bin/python3
"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) test client for test_h2_websocket.sh
(Debian python3-h2; run with /usr/bin/python3). The WebSocket frames are encoded here.

Usage: h2_ws_client.py PORT CASE [AUTHORITY]
Cases:
  echo        SETTINGS_ENABLE_CONNECT_PROTOCOL seen, extended CONNECT /echo -> 200; a text
              frame, a 300 KB binary frame (past both flow-control windows) and a ping echoed;
              close handshake (1000), then the backend's EOF as END_STREAM and our END_STREAM
  halfclose   extended CONNECT /close: one message echoed, the backend's close (4001) and
              END_STREAM after it; our END_STREAM sent first on another stream /echo: the
              backend sees the half-close and ends the stream
  refused     route without websocket in upgrades: prints the status
  protocol    :protocol other than websocket: prints the status
  connect     plain CONNECT (no :protocol): prints the status
  plain       extended CONNECT /plain (the backend answers 200 with the request head as
              JSON): a normal response; prints the handshake fields the backend saw
  drain       (third argument FLAG instead of AUTHORITY) extended CONNECT /echo, FLAG.ready
              written once it is up; echoes go on (one every 0.3 s, so no idle timeout ends
              it) until the connection ends; FLAG appears when the daemon was told to stop.
              Succeeds when echoes still came after the stop and the connection then ended
Prints what it saw; exits 0 when it saw what it should. Every wait is bounded (30 s); nothing
is timed.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PORT = int(sys.argv[1])
CASE = sys.argv[2]
ARG3 = sys.argv[3] if len(sys.argv) > 3 else None
AUTH = ARG3 if ARG3 is not None and CASE != "drain" else "localhost:%d" % PORT
DEADLINE = time.time() + 30


def ws_frame(opcode, payload):
    """A client frame: FIN, masked (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buf):
    """One server frame (unmasked) from buf: (opcode, payload, rest) or None."""
    if len(buf) < 2:
        return None
    op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if buf[1] & 0x80:
        raise ValueError("masked frame from the server")
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    return op, buf[off:off + n], buf[off + n:]


def keep_streams_after_goaway():
    """python-h2 closes the whole connection on GOAWAY; RFC 9113 section 6.8 keeps the
    streams up to its last stream id going: stay open after it (the drain case)."""
    sm = h2.connection.H2ConnectionStateMachine
    key = (h2.connection.ConnectionState.CLIENT_OPEN, h2.connection.ConnectionInputs.RECV_GOAWAY)
    sm._transitions[key] = (None, h2.connection.ConnectionState.CLIENT_OPEN)


class Client:
    def __init__(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        self.sock = ctx.wrap_socket(s, server_hostname="localhost")
        if self.sock.selected_alpn_protocol() != "h2":
            print("NO-H2")
            sys.exit(1)
        cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.initiate_connection()
        self.flush()
        self.connect_protocol = None
        self.status = {}
        self.headers = {}
        self.data = {}
        self.ended = set()
        self.reset = {}
        self.closed = False
        self.goaway = None

    def flush(self):
        out = self.c.data_to_send()
        if out:
            self.sock.sendall(out)

    def read_once(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except (ssl.SSLError, ConnectionResetError):
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.c.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                v = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if v is not None:
                    self.connect_protocol = v.new_value
            elif isinstance(ev, h2.events.ResponseReceived):
                h = dict((k.decode(), v.decode()) for k, v in ev.headers)
                self.status[ev.stream_id] = h.get(":status")
                self.headers[ev.stream_id] = h
            elif isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.reset[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code
        self.flush()

    def wait(self, cond):
        while not cond():
            if time.time() > DEADLINE or self.closed:
                return False
            self.read_once()
        return True

    def connect(self, sid, path, protocol="websocket", extra=()):
        hdrs = [(":method", "CONNECT"), (":scheme", "https"), (":authority", AUTH),
                (":path", path)]
        if protocol is not None:
            hdrs.insert(1, (":protocol", protocol))
        else:  # plain CONNECT (RFC 9113 section 8.5): :authority only
            hdrs = [(":method", "CONNECT"), (":authority", AUTH)]
        hdrs += [("sec-websocket-version", "13")] + list(extra)
        self.c.send_headers(sid, hdrs, end_stream=False)
        self.flush()
        return self.wait(lambda: sid in self.status or sid in self.reset)

    def send(self, sid, data, end=False):
        """DATA as the flow-control windows allow."""
        while data:
            room = self.c.local_flow_control_window(sid)
            if room == 0:
                if not self.wait(lambda: self.c.local_flow_control_window(sid) > 0):
                    raise RuntimeError("window never opened")
                continue
            n = min(room, self.c.max_outbound_frame_size, len(data))
            self.c.send_data(sid, data[:n])
            data = data[n:]
            self.flush()
        if end:
            self.c.end_stream(sid)
            self.flush()

    def frame(self, sid):
        """The next WebSocket frame of stream sid: (opcode, payload), or None."""
        got = []

        def have():
            f = ws_parse(self.data.get(sid, b""))
            if f is not None:
                got.append(f[:2])
                self.data[sid] = f[2]
                return True
            return sid in self.ended or sid in self.reset

        self.wait(have)
        return got[0] if got else None


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def case_echo(cl):
    if not cl.connect(1, "/echo", extra=[("sec-websocket-protocol", "chat")]):
        fail("no answer to the CONNECT")
    if cl.connect_protocol != 1:
        fail("SETTINGS_ENABLE_CONNECT_PROTOCOL is %r" % cl.connect_protocol)
    h = cl.headers.get(1, {})
    if cl.status.get(1) != "200" or "sec-websocket-accept" in h or "upgrade" in h:
        fail("answer %r" % h)
    cl.send(1, ws_frame(1, b"hello over h2"))
    f1 = cl.frame(1)
    blob = os.urandom(300 * 1024)
    cl.send(1, ws_frame(2, blob))
    f2 = cl.frame(1)
    cl.send(1, ws_frame(9, b"pi"))
    f3 = cl.frame(1)
    cl.send(1, ws_frame(8, struct.pack(">H", 1000)))
    f4 = cl.frame(1)
    ended = cl.wait(lambda: 1 in cl.ended)
    cl.send(1, b"", end=True)
    ok = (f1 == (1, b"hello over h2") and f2 == (2, blob) and f3 == (10, b"pi")
          and f4 is not None and f4[0] == 8 and f4[1][:2] == struct.pack(">H", 1000) and ended)
    print("settings=1 status=200 text=%s binary=%s pong=%s close=%s end_stream=%s"
          % (f1 is not None and f1[1] == b"hello over h2", f2 == (2, blob),
             f3 == (10, b"pi"), f4 and f4[0] == 8, ended))
    return ok


def case_halfclose(cl):
    if not cl.connect(1, "/close") or cl.status.get(1) != "200":
        fail("CONNECT /close: %r" % cl.status)
    cl.send(1, ws_frame(1, b"one"))
    f1 = cl.frame(1)
    f2 = cl.frame(1)
    ended = cl.wait(lambda: 1 in cl.ended)
    ok1 = f1 == (1, b"one") and f2 is not None and f2[0] == 8 and f2[1][:2] == struct.pack(">H", 4001)
    # our END_STREAM first: the backend reads EOF, drops the connection, the stream ends
    if not cl.connect(3, "/echo") or cl.status.get(3) != "200":
        fail("CONNECT /echo: %r" % cl.status)
    cl.send(3, ws_frame(1, b"last"), end=True)
    f3 = cl.frame(3)
    ended3 = cl.wait(lambda: 3 in cl.ended or 3 in cl.reset)
    print("backend close: echo=%s close4001=%s end_stream=%s; client END_STREAM: echo=%s "
          "stream ended=%s reset=%s" % (f1 == (1, b"one"), ok1, ended, f3 == (1, b"last"),
                                        3 in cl.ended, cl.reset.get(3)))
    return ok1 and ended and f3 == (1, b"last") and ended3


def case_status(cl, path, protocol):
    cl.connect(1, path, protocol)
    cl.wait(lambda: 1 in cl.ended or 1 in cl.reset)
    print("STATUS %s%s" % (cl.status.get(1), " END" if 1 in cl.ended else ""))
    return True


def case_plain(cl):
    cl.connect(1, "/plain", extra=[("sec-websocket-protocol", "chat"),
                                   ("sec-websocket-extensions", "permessage-deflate")])
    cl.wait(lambda: 1 in cl.ended or 1 in cl.reset)
    if cl.status.get(1) != "200" or 1 not in cl.ended:
        fail("status %r ended %s" % (cl.status.get(1), 1 in cl.ended))
    seen = json.loads(cl.data.get(1, b"{}"))
    h = dict((k.lower(), v) for k, v in seen["headers"])
    key = h.get("sec-websocket-key", "")
    ok = (seen["path"] == "/plain" and h.get("upgrade", "").lower() == "websocket"
          and "upgrade" in h.get("connection", "").lower() and len(base64.b64decode(key)) == 16
          and h.get("sec-websocket-version") == "13" and h.get("sec-websocket-protocol") == "chat"
          and h.get("sec-websocket-extensions") == "permessage-deflate")
    print("GET %s upgrade=%s connection=%s key=%s version=%s protocol=%s extensions=%s END"
          % (seen["path"], h.get("upgrade"), h.get("connection"), key,
             h.get("sec-websocket-version"), h.get("sec-websocket-protocol"),
             h.get("sec-websocket-extensions")))
    return ok


def case_drain(cl, flag):
    keep_streams_after_goaway()
    if not cl.connect(1, "/echo") or cl.status.get(1) != "200":
        fail("CONNECT /echo: %r" % cl.status)
    open(flag + ".ready", "w").close()
    n_after = 0
    for _ in range(1000):
        stopped = os.path.exists(flag)
        try:
            cl.send(1, ws_frame(1, b"m"))
        except (OSError, h2.exceptions.ProtocolError):
            break
        f = cl.frame(1)
        if f != (1, b"m"):
            break
        n_after += stopped
        time.sleep(0.3)  # pacing only (an echo every 0.3 s keeps the tunnel busy)
    gone = cl.wait(lambda: False) is False and (cl.closed or 1 in cl.ended or 1 in cl.reset)
    print("echoes after the stop: %d GOAWAY: %s ended: %s" % (n_after, cl.goaway, gone))
    return n_after > 0 and cl.goaway == 0 and gone


def main():
    cl = Client()
    if CASE == "echo":
        ok = case_echo(cl)
    elif CASE == "halfclose":
        ok = case_halfclose(cl)
    elif CASE == "refused":
        ok = case_status(cl, "/echo", "websocket")
    elif CASE == "protocol":
        ok = case_status(cl, "/echo", "connect-udp")
    elif CASE == "connect":
        ok = case_status(cl, "/echo", None)
    elif CASE == "plain":
        ok = case_plain(cl)
    elif CASE == "drain":
        ok = case_drain(cl, ARG3)
    else:
        print("unknown case %s" % CASE)
        sys.exit(2)
    sys.exit(0 if ok else 1)


main()
