#!/usr/bin/env python3
"""Observer cost with many services: gost-rs runs N forwarding services
(default 1,000) with enableStats and observer.period 1s; a client touches
every service once a second so every service has new stats each period,
and an HTTP observer sink (GOST's observer plugin protocol) answers
{"ok":true}. The same load runs once without the observer; the difference
in gost's CPU time is the observer's cost.

    bench/observer_cost.py [--services N] [--seconds S] [--gost PATH]
"""

import argparse
import http.server
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Sink(http.server.BaseHTTPRequestHandler):
    posts = 0
    events = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.posts += 1
        Sink.events += body.count(b'"kind"')
        reply = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class ThreadedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def echo_server():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)

    def run():
        while True:
            c, _ = srv.accept()
            c.close()

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


def run(gost, n, seconds, observe, sink_port, target_port):
    ports = free_ports(n)
    lines = []
    for i, p in enumerate(ports):
        lines.append(f"- name: s{i}\n  addr: 127.0.0.1:{p}\n  handler: {{type: tcp}}\n"
                     f"  forwarder: {{nodes: [{{name: t, addr: 127.0.0.1:{target_port}}}]}}\n"
                     f"  metadata: {{enableStats: true, observer.period: 1s}}\n"
                     + ("  observer: sink\n" if observe else ""))
    cfg = "log: {level: error}\nservices:\n" + "".join(lines)
    if observe:
        cfg += f"observers:\n- name: sink\n  plugin: {{type: http, addr: 127.0.0.1:{sink_port}/}}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
    proc = subprocess.Popen([gost, "-C", f.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[-1]), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("gost did not start")
                time.sleep(0.1)
        time.sleep(2)
        Sink.posts = Sink.events = 0
        start_cpu, start = cpu_seconds(proc.pid), time.time()
        while time.time() - start < seconds:
            tick = time.time()
            for p in ports:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                except OSError:
                    pass
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        elapsed = time.time() - start
        cpu = cpu_seconds(proc.pid) - start_cpu
        return cpu / elapsed, Sink.posts / elapsed
    finally:
        proc.terminate()
        proc.wait()
        os.unlink(f.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--gost", default=os.path.join(ROOT, "target", "release", "gost"))
    a = ap.parse_args()
    sink = ThreadedServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    target = echo_server()
    base_cpu, _ = run(a.gost, a.services, a.seconds, False, sink.server_address[1], target)
    obs_cpu, posts = run(a.gost, a.services, a.seconds, True, sink.server_address[1], target)
    print(f"services: {a.services}, period 1s, every service changed each period, {a.seconds} s")
    print(f"gost CPU without observer: {base_cpu * 100:.1f}% of a core")
    print(f"gost CPU with HTTP observer: {obs_cpu * 100:.1f}% of a core ({posts:.0f} reports/s)")
    if posts > 0:
        print(f"observer cost: {(obs_cpu - base_cpu) * 100:.1f}% of a core, "
              f"{(obs_cpu - base_cpu) / posts * 1e6:.0f} us of CPU per report")


if __name__ == "__main__":
    main()
