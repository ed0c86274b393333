#!/usr/bin/python3
"""HTTP/2 test client for test_h2.sh (Debian python3-h2; run with /usr/bin/python3).

Usage: h2_client.py PORT CASE [AUTHORITY]
Prints one line per outcome, e.g. "RST 1" (RST_STREAM PROTOCOL_ERROR), "GOAWAY 11",
"STATUS 421". Every wait is bounded (30 s overall); nothing is timed.
Cases:
  malformed:NAME   one request built to break one RFC 9113 section 8 rule (see MALFORMED)
  misdirected      GET for an authority the connection's certificate does not name
  misdirected_mix  on one connection, one stream after the other: GET for localhost, for
                   AUTHORITY (not named by the certificate), for localhost again
  biglist          a header list over limits.h2_max_header_list_size
  rapid_reset      1000 HEADERS + RST_STREAM pairs in one write
  continuation     HEADERS without END_HEADERS, then 50 empty CONTINUATION frames
  ping_flood       1000 PING frames in one write
  get              one GET /bytes/100, then waits for GOAWAY (reload test) and prints it
  trailers         GET /trailers (TLS server name: the AUTHORITY's host): prints the status,
                   "TRAILERS name=value ..." for a trailing HEADERS frame and END
  reqtrailers:PATH POST PATH (TLS server name: the AUTHORITY's host), body "hello" in DATA
                   without content-length, then a trailing HEADERS x-sum: 42, grpc-meta: a b
                   and host/authorization (which must not pass): prints the status, the
                   response body and END
  reqtrailers_cl:PATH  the same with content-length: 5
  reqtrailers_pseudo   a trailing HEADERS with a pseudo-header field (malformed)
  hints            GET /hints/2: prints "INFO 103" per interim response, then the status
  expect           POST /upload with expect: 100-continue and content-length 5, the body sent
                   only after an interim 100 came: prints what came, the body and END
  slow_reader      GET /bytes/4000000 with a stream window of 0 that never opens: waits for
                   the stream's reset
"""
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.settings
import h2.connection
import h2.events
import h2.exceptions
import hpack

PORT = int(sys.argv[1])
CASE = sys.argv[2]
AUTH = sys.argv[3] if len(sys.argv) > 3 else "localhost:%d" % PORT
DEADLINE = time.time() + 30
BODY = []  # DATA received (reqtrailers)


def base(path="/echo", method="GET"):
    return [(":method", method), (":scheme", "https"), (":authority", AUTH), (":path", path)]


# name -> (header list, body or None, send END_STREAM on HEADERS)
MALFORMED = {
    "connection": (base() + [("connection", "keep-alive")], None),
    "transfer_encoding": (base("/upload", "POST") + [("transfer-encoding", "chunked")], b"0\r\n\r\n"),
    "upgrade": (base() + [("upgrade", "h2c")], None),
    "keep_alive": (base() + [("keep-alive", "timeout=5")], None),
    "proxy_connection": (base() + [("proxy-connection", "close")], None),
    "te_gzip": (base() + [("te", "gzip")], None),
    "uppercase": (base() + [("X-Upper", "1")], None),
    "value_cr": (base() + [("x-a", "1\rx-b: 2")], None),
    "value_lf": (base() + [("x-a", "1\nGET /smuggled HTTP/1.1")], None),
    "value_nul": (base() + [("x-a", "1\x002")], None),
    "value_space": (base() + [("x-a", " padded")], None),
    "no_path": ([(":method", "GET"), (":scheme", "https"), (":authority", AUTH)], None),
    "no_method": ([(":scheme", "https"), (":authority", AUTH), (":path", "/echo")], None),
    "dup_path": (base() + [(":path", "/other")], None),
    "pseudo_after": ([(":method", "GET"), (":scheme", "https"), ("x-a", "1"),
                      (":authority", AUTH), (":path", "/echo")], None),
    "unknown_pseudo": (base() + [(":foo", "bar")], None),
    "status_in_request": (base() + [(":status", "200")], None),
    "relative_path": (base("echo"), None),
    "path_space": (base("/echo HTTP/1.1\r\nx:"), None),
    "scheme_http": ([(":method", "GET"), (":scheme", "http"), (":authority", AUTH),
                     (":path", "/echo")], None),
    "host_differs": (base() + [("host", "other.example.test")], None),
    "cl_short": (base("/upload", "POST") + [("content-length", "10")], b"12345"),
    "cl_long": (base("/upload", "POST") + [("content-length", "2")], b"12345"),
    "cl_two": (base("/upload", "POST") + [("content-length", "5"), ("content-length", "6")],
               b"12345"),
}


def connect():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    sni = AUTH.rsplit(":", 1)[0] if CASE.startswith(("trailers", "reqtrailers")) else "localhost"
    s = ctx.wrap_socket(s, server_hostname=sni)
    if s.selected_alpn_protocol() != "h2":
        print("NO-H2 %s" % s.selected_alpn_protocol())
        sys.exit(1)
    return s


def h2conn(sock):
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    normalize_outbound_headers=False,
                                    validate_inbound_headers=False)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    return c


def pump(sock, conn, stop):
    """Read events until stop(events) is true, the peer closes, or the deadline."""
    seen = []
    while time.time() < DEADLINE:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, ConnectionResetError):
            seen.append("CLOSED")
            break
        if not data:
            seen.append("CLOSED")
            break
        try:
            evs = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            seen.append("CLIENT-ERROR %s" % e)
            break
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass
        for ev in evs:
            if isinstance(ev, h2.events.StreamReset):
                seen.append("RST %d" % ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                seen.append("GOAWAY %d" % ev.error_code)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                seen.append("INFO %s" % dict(ev.headers).get(b":status", b"?").decode())
                if CASE == "hints":
                    seen.append(dict(ev.headers).get(b"link", b"-").decode())
            elif isinstance(ev, h2.events.ResponseReceived):
                seen.append("STATUS %s" % dict(ev.headers).get(b":status", b"?").decode())
            elif isinstance(ev, h2.events.TrailersReceived):
                seen.append("TRAILERS " + " ".join("%s=%s" % (k.decode(), v.decode())
                                                   for k, v in ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                BODY.append(ev.data)
            elif isinstance(ev, h2.events.StreamEnded):
                seen.append("END")
        if stop(seen):
            break
    return seen


def final(seen):
    return any(x.startswith(("RST", "GOAWAY", "CLOSED", "CLIENT")) or x == "END" for x in seen)


def send_request(sock, conn, headers, body, sid=1):
    conn.send_headers(sid, headers, end_stream=body is None)
    if body is not None:
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def raw_goaway(sock):
    """Read raw frames until GOAWAY (printed with its error code) or close."""
    buf = b""
    while time.time() < DEADLINE:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, ConnectionResetError):
            break
        if not d:
            break
        buf += d
        while len(buf) >= 9:
            ln = struct.unpack(">I", b"\0" + buf[:3])[0]
            if len(buf) < 9 + ln:
                break
            if buf[3] == 7:
                print("GOAWAY %d" % struct.unpack(">I", buf[13:17])[0])
                return
            buf = buf[9 + ln:]
    print("NO-GOAWAY")


def main():
    sock = connect()
    if CASE.startswith("malformed:"):
        headers, body = MALFORMED[CASE.split(":", 1)[1]]
        conn = h2conn(sock)
        send_request(sock, conn, headers, body)
        print(" ".join(pump(sock, conn, final)))
    elif CASE in ("misdirected", "biglist"):
        conn = h2conn(sock)
        hdrs = base()
        if CASE == "biglist":
            hdrs += [("x-big-%d" % i, "v" * 1000) for i in range(100)]
        send_request(sock, conn, hdrs, None)
        print(" ".join(pump(sock, conn, final)))
    elif CASE == "misdirected_mix":
        conn = h2conn(sock)
        seen = []
        for i, auth in enumerate(("localhost:%d" % PORT, AUTH, "localhost:%d" % PORT)):
            hdrs = [(k, auth if k == ":authority" else v) for k, v in base()]
            send_request(sock, conn, hdrs, None, sid=1 + 2 * i)
            seen += pump(sock, conn, final)
        print(" ".join(seen))
    elif CASE == "rapid_reset":
        conn = h2conn(sock)
        for i in range(1000):
            sid = 1 + 2 * i
            conn.send_headers(sid, base("/sleep/2000"), end_stream=True)
            conn.reset_stream(sid, error_code=8)
        sock.sendall(conn.data_to_send())
        print(" ".join(x for x in pump(sock, conn, lambda s: any(x.startswith("GOAWAY") or x == "CLOSED" for x in s)) if not x.startswith("RST")))
    elif CASE == "continuation":
        enc = hpack.Encoder()
        block = enc.encode(base())
        data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
        data += frame(1, 0x1, 1, block)  # HEADERS, END_STREAM, no END_HEADERS
        data += b"".join(frame(9, 0, 1, b"") for _ in range(50))
        sock.sendall(data)
        raw_goaway(sock)
    elif CASE == "ping_flood":
        data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
        data += b"".join(frame(6, 0, 0, struct.pack(">Q", i)) for i in range(1000))
        sock.sendall(data)
        raw_goaway(sock)
    elif CASE == "slow_reader":
        conn = h2conn(sock)
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        send_request(sock, conn, base("/bytes/4000000"), None)
        print(" ".join(pump(sock, conn, final)))
    elif CASE == "trailers":
        conn = h2conn(sock)
        send_request(sock, conn, base("/trailers") + [("te", "trailers")], None)
        print(" ".join(pump(sock, conn, final)))
    elif CASE.startswith("reqtrailers"):
        conn = h2conn(sock)
        kind, _, path = CASE.partition(":")
        hdrs = base(path or "/upload", "POST")
        if kind == "reqtrailers_cl":
            hdrs.append(("content-length", "5"))
        conn.send_headers(1, hdrs, end_stream=False)
        conn.send_data(1, b"hello", end_stream=False)
        trl = [("x-sum", "42"), ("grpc-meta", "a b"), ("host", "evil.test"),
               ("authorization", "Bearer x")]
        if kind == "reqtrailers_pseudo":
            trl = [(":path", "/smuggled")] + trl
        conn.send_headers(1, trl, end_stream=True)
        sock.sendall(conn.data_to_send())
        seen = pump(sock, conn, final)
        print(" ".join(seen[:-1] + [b"".join(BODY).decode(errors="replace")] + seen[-1:]))
    elif CASE == "hints":
        conn = h2conn(sock)
        send_request(sock, conn, base("/hints/2"), None)
        print(" ".join(pump(sock, conn, final)))
    elif CASE == "expect":
        conn = h2conn(sock)
        conn.send_headers(1, base("/upload", "POST") + [("expect", "100-continue"),
                                                       ("content-length", "5")])
        sock.sendall(conn.data_to_send())
        seen = pump(sock, conn, lambda s: final(s) or "INFO 100" in s)
        if "INFO 100" in seen:
            conn.send_data(1, b"hello", end_stream=True)
            sock.sendall(conn.data_to_send())
            seen += pump(sock, conn, final)
        print(" ".join(seen[:-1] + [b"".join(BODY).decode(errors="replace")] + seen[-1:]))
    elif CASE == "get":
        conn = h2conn(sock)
        send_request(sock, conn, base("/bytes/100"), None)
        print(" ".join(pump(sock, conn, lambda s: "END" in s)))
        sys.stdout.flush()
        print(" ".join(pump(sock, conn, lambda s: any(x.startswith("GOAWAY") for x in s))))
    else:
        print("unknown case %s" % CASE)
        sys.exit(2)


main()
