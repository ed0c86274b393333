#!/usr/bin/python3
"""gRPC end to end for test_grpc.sh, on python3-grpcio (Debian), without generated code
(generic handlers, raw bytes messages).

  grpc_driver.py serve PORT
      an h2c gRPC server on 127.0.0.1:PORT, service torii.test.Echo:
        Unary         the request back
        ServerStream  the request repeated N times (N = first byte)
        ClientStream  the requests joined
        Bidi          each request back as it comes
        Slow          waits until the call is cancelled (at most 30 s), then "late"
  grpc_driver.py call TARGET NAME [--ca FILE] [--dead NAME]
      the calls through TARGET (host:port) with TLS, trusting --ca, with the TLS name NAME;
      --dead NAME: a second name whose backend is down (expects UNAVAILABLE). Prints one
      "ok - ..." / "FAIL - ..." line per check, exits 1 when any failed.
"""
import sys
import threading
import time
from concurrent import futures

import grpc

SVC = "torii.test.Echo"


def serve(port):
    def unary(req, ctx):
        return req

    def server_stream(req, ctx):
        n = req[0] if req else 0
        for i in range(n):
            yield req + bytes([i])

    def client_stream(it, ctx):
        return b"".join(it)

    def bidi(it, ctx):
        for m in it:
            yield m

    def slow(req, ctx):
        done = threading.Event()
        ctx.add_callback(done.set)
        done.wait(30)
        return b"late"

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SVC, handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    server.wait_for_termination(timeout=900)


FAILS = 0


def check(desc, cond):
    global FAILS
    print(("ok   - " if cond else "FAIL - ") + desc, flush=True)
    if not cond:
        FAILS += 1


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def channel(target, name, ca):
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    opts = [("grpc.ssl_target_name_override", name), ("grpc.default_authority", name),
            ("grpc.max_receive_message_length", 8 << 20)]
    return grpc.secure_channel(target, creds, options=opts)


def call(target, name, ca, dead):
    ch = channel(target, name, ca)
    unary = ch.unary_unary("/%s/Unary" % SVC)
    sstream = ch.unary_stream("/%s/ServerStream" % SVC)
    cstream = ch.stream_unary("/%s/ClientStream" % SVC)
    bidi = ch.stream_stream("/%s/Bidi" % SVC)
    slow = ch.unary_unary("/%s/Slow" % SVC)

    check("unary call answered", unary(b"hello", timeout=20) == b"hello")
    big = bytes(range(256)) * 4096  # 1 MiB
    check("unary call with a 1 MiB message", unary(big, timeout=30) == big)
    got = list(sstream(bytes([10]) + b"x", timeout=20))
    check("server streaming: 10 messages in order",
          got == [bytes([10]) + b"x" + bytes([i]) for i in range(10)])
    check("client streaming: 20 messages joined",
          cstream(iter([b"%02d" % i for i in range(20)]), timeout=20)
          == b"".join(b"%02d" % i for i in range(20)))
    msgs = [b"m%d" % i for i in range(25)]
    check("bidirectional streaming: 25 messages echoed", list(bidi(iter(msgs), timeout=20)) == msgs)
    t0 = time.time()
    code = code_of(lambda: slow(b"", timeout=0.5))
    check("deadline: DEADLINE_EXCEEDED (got %s after %.1f s)" % (code, time.time() - t0),
          code == grpc.StatusCode.DEADLINE_EXCEEDED)
    # An error the backend answers in one HEADERS frame (Trailers-Only) must reach the client
    # in that form: split into HEADERS + an empty DATA, grpc-core reads UNKNOWN instead.
    code = code_of(lambda: ch.unary_unary("/%s/Nope" % SVC)(b"x", timeout=20))
    check("unknown method: UNIMPLEMENTED (got %s)" % code, code == grpc.StatusCode.UNIMPLEMENTED)
    if dead:
        dch = channel(target, dead, ca)
        code = code_of(lambda: dch.unary_unary("/%s/Unary" % SVC)(b"x", timeout=20))
        check("backend down: UNAVAILABLE (got %s)" % code, code == grpc.StatusCode.UNAVAILABLE)
        dch.close()
    ch.close()
    return 1 if FAILS else 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return 0
    if len(sys.argv) >= 4 and sys.argv[1] == "call":
        args = sys.argv[4:]
        ca = args[args.index("--ca") + 1] if "--ca" in args else None
        dead = args[args.index("--dead") + 1] if "--dead" in args else None
        return call(sys.argv[2], sys.argv[3], ca, dead)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
