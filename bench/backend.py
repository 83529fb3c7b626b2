#!/usr/bin/env python3
"""A tiny HTTP health backend for bench/failover.sh: GET /health -> 200 "ok", anything
else -> 404. Listens on 127.0.0.1 only.

  backend.py --port 18080
"""
import argparse
import http.server
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path.split("?")[0] == "/health" else b"not found\n"
        self.send_response(200 if body == b"ok\n" else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"backend listening on 127.0.0.1:{a.port} at {time.time():.3f}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
