#!/usr/bin/env python3
"""Demo upstream API: answers every request with JSON showing what arrived through Envoy.

Usage: echo_upstream.py PORT NAME [--relay EGRESS_PORT]
The body names the API, the path, the keymesh identity headers it received, and whether an Authorization header
reached it (keymesh strips the token upstream unless `forward_token` is set). `GET /__echo/requests` answers how many
requests it has answered so far per `x-keymesh-tier` (`""` for none), without counting itself: tests use it to
prove what never reached the upstream.

With --relay it is also the orders service of the demo's second hop, like `keymesh-echo --relay`:
GET /orders/{id}/payment calls http://payments.local/payments/{id} through the egress listener on EGRESS_PORT with
the Authorization header it received, and answers with what payments saw (200, or 502 if payments refused).
"""
import http.client
import json
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT_PATH = "/__echo/requests"


PAYMENT_PATH = re.compile(r"^/orders/([^/]+)/payment$")


def relay(egress_port, payment_id, authorization):
    """What payments answered through the egress listener: (status for our caller, JSON of payments' answer)."""
    headers = {"Host": "payments.local"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        conn = http.client.HTTPConnection("127.0.0.1", egress_port, timeout=10)
        conn.request("GET", f"/payments/{payment_id}", headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        conn.close()
    except OSError as e:
        return 502, {"error": str(e)}
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return (200 if 200 <= answer.status < 300 else 502), {"status": answer.status, "body": body}


def make_handler(name, egress_port=None):
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
            answer = {
                "api": name,
                "method": self.command,
                "path": self.path,
                "identity": identity,
                "authorization_forwarded": "authorization" in {k.lower() for k in self.headers.keys()},
            }
            status = 200
            payment = PAYMENT_PATH.match(self.path)
            if egress_port is not None and payment:
                status, answer["payment"] = relay(egress_port, payment.group(1), self.headers.get("authorization"))
            body = json.dumps(answer, indent=2).encode() + b"\n"
            reason = "OK" if status == 200 else "Bad Gateway"
            self._write(body, status, reason)

        def _write(self, body, status=200, reason="OK"):
            # One write for head and body: two small segments would let Nagle's algorithm hold the second until the
            # client's delayed ACK, adding ~40 ms to responses proxied through Envoy.
            head = (
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
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
    egress_port = None
    if len(sys.argv) == 5 and sys.argv[3] == "--relay":
        egress_port = int(sys.argv[4])
    elif len(sys.argv) != 3:
        sys.exit("usage: echo_upstream.py PORT NAME [--relay EGRESS_PORT]")
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(name, egress_port))
    print(f"{name} upstream listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
