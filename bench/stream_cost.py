#!/usr/bin/env python3
"""The web API's live stream with many live connections: gost's CPU time
and memory with no subscriber, with one that reads, and with one that
never reads (a stalled browser), each over the same window.

    bench/stream_cost.py GOST_BINARY [--conns 10000] [--secs 20]

gost runs an `http` proxy service that 10,000 clients connect to and
send nothing (its readTimeout raised to an hour), so every connection is
live in the registry and costs one descriptor. Then the same three
cases with churn: a thread closes and reopens connections (--churn per
second), and gost logs at debug level (-D), so each subscriber is sent
opened and closed connections and a flood of log lines, and one that
never reads must be held to the stream's bounds. Figures are CPU seconds
(from /proc), resident memory, and the bytes and events the subscriber
got: robust on a shared machine, unlike latencies.
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(api, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{api}{path}", timeout=10) as r:
        return json.load(r)


class Reader(threading.Thread):
    """A subscriber that reads everything and counts it."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", api))
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.bytes = 0
        self.events = 0
        self.stop = False

    def run(self):
        while not self.stop:
            b = self.sock.recv(1 << 16)
            if not b:
                return
            self.bytes += len(b)
            self.events += b.count(b"\nevent: ") + b.startswith(b"event: ")


def churn(conns, port, rate, stop):
    """Replaces `rate` connections a second, round the list."""
    i = 0
    while not stop.is_set():
        t = time.monotonic()
        for _ in range(rate):
            conns[i].close()
            conns[i] = socket.create_connection(("127.0.0.1", port))
            i = (i + 1) % len(conns)
        time.sleep(max(0.0, 1 - (time.monotonic() - t)))


def window(pid, secs):
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(secs)
    return (cpu_s(pid) - c0) / (time.monotonic() - t0), rss_kib(pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gost")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--churn", type=int, default=500)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    svc, api = free_port(), free_port()
    g = subprocess.Popen(
        [a.gost, "-D", "-L", f"http://127.0.0.1:{svc}?readTimeout=1h", "-api", f"127.0.0.1:{api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                get(api, "/process")
                break
            except OSError:
                time.sleep(0.1)
        base_rss = rss_kib(g.pid)
        conns = [socket.create_connection(("127.0.0.1", svc)) for _ in range(a.conns)]
        while get(api, "/process")["data"]["connections"] < a.conns:
            time.sleep(0.2)
        time.sleep(1)
        rows = []
        rss_at = {}
        for churning in (False, True):
            stop = threading.Event()
            if churning:
                threading.Thread(target=churn, args=(conns, svc, a.churn, stop), daemon=True).start()
                time.sleep(2)
            tag = " (churn)" if churning else ""
            # As long as the stalled case, to tell what the subscriber adds
            # from what churn alone does to the heap.
            at = [rss_kib(g.pid)]
            cpus = []
            for _ in range(3):
                cpu, rss = window(g.pid, a.secs)
                cpus.append(cpu)
                at.append(rss)
            rss_at["no subscriber" + tag] = at
            rows.append(("no subscriber" + tag, sum(cpus) / len(cpus), at[-1], "", ""))
            r = Reader(api)
            r.start()
            time.sleep(2)  # the first tick sends every tracked connection
            b0, e0 = r.bytes, r.events
            cpu, rss = window(g.pid, a.secs)
            rows.append(("one subscriber reading" + tag, cpu, rss,
                         f"{(r.bytes - b0) / a.secs / 1024:.1f}", f"{(r.events - e0) / a.secs:.0f}"))
            r.stop = True
            r.sock.close()
            time.sleep(2)
            slow = socket.create_connection(("127.0.0.1", api))
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            at = [rss_kib(g.pid)]
            cpus = []
            for _ in range(3):
                cpu, rss = window(g.pid, a.secs)
                cpus.append(cpu)
                at.append(rss)
            rss_at["stalled subscriber" + tag] = at
            rows.append(("one subscriber never reading" + tag, sum(cpus) / len(cpus), at[-1], "0", "0"))
            slow.close()
            stop.set()
            time.sleep(1)
        print(f"gost pid {g.pid}, {a.conns} live connections, windows of {a.secs:.0f} s, "
              f"churn {a.churn} connections/s; RSS before the connections {base_rss / 1024:.1f} MiB")
        print("| Case | gost CPU (s per s) | gost RSS (MiB) | KiB/s to the subscriber | events/s |")
        print("|---|---:|---:|---:|---:|")
        for name, cpu, rss, kb, ev in rows:
            print(f"| {name} | {cpu:.3f} | {rss / 1024:.1f} | {kb} | {ev} |")
        for tag, at in rss_at.items():
            print(f"RSS, {tag}, at 0, 1, 2, 3 windows (MiB): "
                  + ", ".join(f"{x / 1024:.1f}" for x in at))
        for c in conns:
            c.close()
    finally:
        g.terminate()
        g.wait()


if __name__ == "__main__":
    main()
