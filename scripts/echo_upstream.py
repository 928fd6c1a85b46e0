#!/usr/bin/env python3
"""Demo upstream API: answers every request with JSON showing what arrived through Envoy.

Usage: echo_upstream.py PORT NAME
The body names the API, the path, the keymesh identity headers it received, and whether an Authorization header
reached it (keymesh strips the token upstream unless `forward_token` is set). `GET /__echo/requests` answers how many
requests it has answered so far per `x-keymesh-tier` (`""` for none), without counting itself: tests use it to
prove what never reached the upstream.
"""
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT_PATH = "/__echo/requests"


def make_handler(name):
    answered = Counter()
    lock = threading.Lock()

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self):
            if self.path == COUNT_PATH:
                with lock:
                    body = json.dumps(dict(answered)).encode() + b"\n"
                self._write(body)
                return
            with lock:
                answered[self.headers.get("x-keymesh-tier", "")] += 1
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            identity = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-keymesh-")}
            body = json.dumps({
                "api": name,
                "method": self.command,
                "path": self.path,
                "identity": identity,
                "authorization_forwarded": "authorization" in {k.lower() for k in self.headers.keys()},
            }, indent=2).encode() + b"\n"
            self._write(body)

        def _write(self, body):
            # One write for head and body: two small segments would let Nagle's algorithm hold the second until the
            # client's delayed ACK, adding ~40 ms to responses proxied through Envoy.
            head = (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            self.wfile.write(head + body)
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, fmt, *args):
            pass

    return Echo


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(name))
    print(f"{name} upstream listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
