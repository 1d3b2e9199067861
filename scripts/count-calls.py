"""A counting proxy in front of an AWS endpoint (moto): forwards every
request unchanged and counts them by `X-Amz-Target` (the operation of
DynamoDB, Glue, SQS), and the rest (S3) by method, `GET:metadata` for a
read of an Iceberg metadata file.
`GET /counts` answers the counts so far as JSON; `POST /counts/reset`
zeroes them. Used by scripts/dynamodb-bench.sh to measure DynamoDB calls
per lease operation, the figure that sets sluice's cost on AWS.

usage: python3 count-calls.py LISTEN_PORT UPSTREAM_URL
"""

import http.client
import json
import sys
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = urllib.parse.urlsplit(sys.argv[2])
COUNTS: Counter[str] = Counter()
LOCK = threading.Lock()
LOCAL = threading.local()


def upstream() -> http.client.HTTPConnection:
    # One keep-alive connection to moto per proxy thread.
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        LOCAL.conn = conn
    return conn


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/counts":
            with LOCK:
                self.answer(200, json.dumps(dict(COUNTS)).encode())
            return
        self.forward()

    def do_POST(self) -> None:
        if self.path == "/counts/reset":
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with LOCK:
                COUNTS.clear()
            self.answer(200, b"{}")
            return
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target:
            key = target.split(".")[-1]
        elif self.path.split("?")[0].endswith(".metadata.json"):
            key = f"{self.command}:metadata"
        else:
            key = self.command
        with LOCK:
            COUNTS[key] += 1
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        for attempt in (1, 2):
            try:
                conn = upstream()
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                break
            except (http.client.HTTPException, OSError):
                LOCAL.conn = None
                if attempt == 2:
                    raise
        self.send_response(reply.status)
        for k, v in reply.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Proxy).serve_forever()
