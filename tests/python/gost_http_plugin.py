"""A GOST HTTP plugin server for the tests, written from GOST's
definitions (go-gost/x */plugin/http.go, go-gost/plugin */example/http):
each decision is a POST of a JSON body, answered 200 with a JSON body.

Usage: gost_http_plugin.py REQUEST_LOG
Prints the port it listens on (127.0.0.1), then serves until killed. Every
request is appended to REQUEST_LOG as one JSON line {"path", "auth", "body"}.

Paths (the test names the behaviour in the plugin addr):
  /auth       users alice:secret (id "id-alice") and bob:pw (id "id-bob")
  /admit      ok when the client address is on 127.0.0.1
  /deny       ok false
  /bypass     ok (bypassed) when the target host starts with "bypassed."
  /hosts      "echo.test" -> 127.0.0.1, others ok false
  /recorder   ok (the record is in the request log)
  /resolver   "echo.test" -> 127.0.0.1, others ok false
  GET /ingress?host=H&service=S   "example.local" -> the tunnel id in
              INGRESS_ENDPOINT below, others an empty endpoint
  PUT /ingress  (SetRule) ok
  /sd         GOST's sd plugin: POST registers the service in the body,
              PUT renews it, DELETE deregisters it (by id, name and node),
              GET ?name=N answers {"services": [...]} registered under N
  /slow/...   sleeps 3 s, then answers as the rest of the path
  /garbage/.. answers 200 with a body that is not JSON
  /huge/...   answers 200 with a 1 MiB JSON body
  /status/..  answers 500
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOG_LOCK = threading.Lock()
SD_LOCK = threading.Lock()
# (name, id, node) -> service, as registered
SD_SERVICES = {}
INGRESS_ENDPOINT = "6be39003-f4fa-49e4-a6ef-1997684d160e"


def decide(path, body):
    if path == "/auth":
        users = {"alice": "secret", "bob": "pw"}
        user = body.get("username", "")
        ok = user in users and users[user] == body.get("password")
        return {"ok": ok, "id": "id-" + user if ok else ""}
    if path == "/admit":
        return {"ok": body.get("addr", "").startswith("127.0.0.1:")}
    if path == "/deny":
        return {"ok": False}
    if path == "/bypass":
        return {"ok": body.get("addr", "").startswith("bypassed.")}
    if path == "/recorder":
        return {"ok": True}
    if path in ("/hosts", "/resolver"):
        if body.get("host") == "echo.test":
            return {"ok": True, "ips": ["127.0.0.1"]}
        return {"ok": False}
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, data):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, body):
        with LOG_LOCK, open(sys.argv[1], "a") as f:
            f.write(json.dumps({
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization", ""),
                "body": body,
            }) + "\n")

    def read_json(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def sd_change(self):
        body = self.read_json()
        self.record(body)
        if self.path != "/sd" or not isinstance(body, dict):
            return self.answer(404, b"{}")
        key = (body.get("name", ""), body.get("id", ""), body.get("node", ""))
        with SD_LOCK:
            if self.command == "POST":
                SD_SERVICES[key] = body
            elif self.command == "DELETE":
                SD_SERVICES.pop(key, None)
            elif key not in SD_SERVICES:
                return self.answer(404, b"{}")
        self.answer(200, b"{}")

    do_PUT = sd_change
    do_DELETE = sd_change

    def do_GET(self):
        self.record(None)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/sd":
            name = query.get("name", [""])[0]
            with SD_LOCK:
                found = [s for (n, _, _), s in SD_SERVICES.items() if n == name]
            return self.answer(200, json.dumps({"services": found}).encode())
        if url.path != "/ingress":
            return self.answer(404, b"{}")
        host = query.get("host", [""])[0].split(":")[0]
        endpoint = INGRESS_ENDPOINT if host == "example.local" else ""
        self.answer(200, json.dumps({"endpoint": endpoint}).encode())

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(n))
        except ValueError:
            body = None
        self.record(body)
        if self.path != "/ingress":
            return self.answer(404, b"{}")
        self.answer(200, b'{"ok": true}')

    def do_POST(self):
        if self.path == "/sd":
            return self.sd_change()
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.record(body)
        path = self.path
        if path.startswith("/slow/"):
            time.sleep(3)
            path = path[len("/slow"):]
        if path.startswith("/garbage/"):
            return self.answer(200, b"<html>not json</html>")
        if path.startswith("/huge/"):
            filler = "x" * (1 << 20)
            return self.answer(200, json.dumps({"ok": True, "pad": filler}).encode())
        if path.startswith("/status/"):
            return self.answer(500, b'{"ok": true}')
        result = decide(path, body or {})
        if result is None:
            return self.answer(404, b"{}")
        self.answer(200, json.dumps(result).encode())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
