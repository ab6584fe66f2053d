#!/usr/bin/env python3
"""API churn: what live changes cost, and what they do to traffic.

Starts gost with the web API and one forward service to a local echo
server, measures a relayed connection's round trip while idle, then
creates N services one POST at a time (and deletes them again) while the
same connection keeps pinging, and reports:

  - total time of the creates (and of each quarter) and of the deletes,
  - the round trip's p50 / p99 / max, idle and during the creates,
  - gost's RSS before and after the creates, per created service.

Several binaries (GOST_BIN=path, or --bin LABEL=PATH repeated) are run
in interleaved rounds, so their figures come from the same conditions.

  bench/api_churn.py                       # 2,000 services, 1 round, $CARGO_TARGET_DIR/release/gost
  bench/api_churn.py -n 500 --rounds 2 --bin old=/tmp/gost-old --bin new=target/release/gost

Everything runs on loopback; ports are picked by the kernel.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server(port, ready):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(128)
    ready.set()
    import threading

    def serve(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def pinger(port, phase, out, stop):
    """One connection through the forward service; a 64-byte round trip
    every 5 ms, each tagged with the phase it ran in."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * 64
    samples = []
    while not stop.is_set():
        t = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < len(msg):
            d = s.recv(len(msg) - got)
            if not d:
                raise SystemExit("relayed connection closed")
            got += len(d)
        samples.append((phase.value, (time.perf_counter() - t) * 1000))
        time.sleep(0.005)
    out.put(samples)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def api(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")


def run_one(label, binary, n, echo_port, idle_s):
    api_port, fwd_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="api-churn-")
    cfg = os.path.join(tmp, "gost.yaml")
    with open(cfg, "w") as f:
        f.write(
            f"""services:
- name: relay
  addr: 127.0.0.1:{fwd_port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: 127.0.0.1:{echo_port}}}]}}
api:
  addr: 127.0.0.1:{api_port}
log:
  level: warn
"""
        )
    log = open(os.path.join(tmp, "gost.log"), "w")
    proc = subprocess.Popen([binary, "-C", cfg], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", api_port)).close()
                socket.create_connection(("127.0.0.1", fwd_port)).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{label}: gost did not start, see {tmp}/gost.log")
        phase = mp.Value("i", 0)
        out, stop = mp.Queue(), mp.Event()
        p = mp.Process(target=pinger, args=(fwd_port, phase, out, stop))
        p.start()
        time.sleep(idle_s)
        rss0 = rss_kib(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=120)
        quarters = []
        phase.value = 1
        t0 = tq = time.perf_counter()
        for i in range(n):
            api(conn, "POST", "/config/services", {
                "name": f"svc-{i}",
                "addr": "127.0.0.1:0",
                "handler": {"type": "tcp"},
                "listener": {"type": "tcp"},
                "forwarder": {"nodes": [{"name": "echo", "addr": f"127.0.0.1:{echo_port}"}]},
            })
            if (i + 1) % max(1, n // 4) == 0:
                now = time.perf_counter()
                quarters.append(now - tq)
                tq = now
        create_s = time.perf_counter() - t0
        phase.value = 2
        time.sleep(0.5)
        rss1 = rss_kib(proc.pid)
        t1 = time.perf_counter()
        for i in range(n):
            api(conn, "DELETE", f"/config/services/svc-{i}")
        delete_s = time.perf_counter() - t1
        stop.set()
        samples = out.get(timeout=30)
        p.join()
        idle = [ms for ph, ms in samples if ph == 0]
        busy = [ms for ph, ms in samples if ph == 1]
        return {
            "label": label,
            "n": n,
            "create_s": create_s,
            "quarters_s": quarters,
            "delete_s": delete_s,
            "idle_p50": pct(idle, 0.5),
            "idle_p99": pct(idle, 0.99),
            "idle_max": max(idle, default=float("nan")),
            "busy_p50": pct(busy, 0.5),
            "busy_p99": pct(busy, 0.99),
            "busy_max": max(busy, default=float("nan")),
            "pings_busy": len(busy),
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "kib_per_service": (rss1 - rss0) / n,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="services created (default 2000)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle pings first")
    ap.add_argument("--bin", action="append", default=[], help="LABEL=PATH, repeatable")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bin]
    if not bins:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
        bins = [["gost", os.environ.get("GOST_BIN", os.path.join(target, "release", "gost"))]]
    echo_port = free_port()
    ready = mp.Event()
    echo = mp.Process(target=echo_server, args=(echo_port, ready), daemon=True)
    echo.start()
    ready.wait(10)
    results = []
    for r in range(a.rounds):
        order = bins[r % len(bins):] + bins[: r % len(bins)]
        for label, path in order:
            res = run_one(label, path, a.n, echo_port, a.idle)
            res["round"] = r
            print(json.dumps(res), file=sys.stderr)
            results.append(res)
    print(f"| binary | round | {a.n} creates (s) | per quarter (s) | deletes (s) | RTT idle p50/p99/max (ms) | RTT during creates p50/p99/max (ms) | RSS KiB per service |")
    print("|---|---:|---:|---|---:|---|---|---:|")
    for x in results:
        q = " / ".join(f"{s:.2f}" for s in x["quarters_s"])
        print(
            f"| {x['label']} | {x['round']} | {x['create_s']:.2f} | {q} | {x['delete_s']:.2f} "
            f"| {x['idle_p50']:.2f} / {x['idle_p99']:.2f} / {x['idle_max']:.2f} "
            f"| {x['busy_p50']:.2f} / {x['busy_p99']:.2f} / {x['busy_max']:.2f} "
            f"| {x['kib_per_service']:.1f} |"
        )


if __name__ == "__main__":
    main()
