#!/usr/bin/env python3
"""Time from process start to the first 200 from /readyz, on an existing
database, and the idle RSS that follows.

Usage: ready.py --port P --runs N --out FILE -- <command to start the server…>

Each run spawns the command, polls GET /readyz on 127.0.0.1:P every 0.5 ms
over fresh TCP connections until it answers 200, records the elapsed time,
waits --idle seconds, reads VmRSS/VmHWM of the server process, then stops it
with SIGTERM and waits for it to exit.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def ready_once(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    return out


def server_pid(p):
    """The keyport process: the child of taskset after its exec, i.e. p itself."""
    return p.pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("--out", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd

    results = []
    for i in range(a.runs):
        if ready_once(a.port):
            sys.exit("ready.py: something already answers on port %d" % a.port)
        log = open(a.log, "ab")
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=log)
        ready_ms = None
        while time.perf_counter() - t0 < a.timeout:
            if ready_once(a.port):
                ready_ms = (time.perf_counter() - t0) * 1000
                break
            if p.poll() is not None:
                break
            time.sleep(0.0005)
        if ready_ms is None:
            p.kill()
            sys.exit("ready.py: server did not become ready (exit %s)" % p.poll())
        time.sleep(a.idle)
        st = proc_status(server_pid(p))
        t1 = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            code = "killed after 15 s"
        stop_ms = (time.perf_counter() - t1) * 1000
        log.close()
        results.append({"ready_ms": round(ready_ms, 1), "idle_rss_kb": st.get("VmRSS"),
                        "idle_hwm_kb": st.get("VmHWM"), "stop_ms": round(stop_ms, 1),
                        "exit": code})
        print("ready.py: run %d: ready in %.1f ms, idle RSS %.1f MiB, SIGTERM exit %s in %.0f ms"
              % (i + 1, ready_ms, st.get("VmRSS", 0) / 1024, code, stop_ms), file=sys.stderr)
        time.sleep(0.3)
    summary = {
        "runs": results,
        "ready_ms_median": statistics.median(r["ready_ms"] for r in results),
        "ready_ms_min": min(r["ready_ms"] for r in results),
        "ready_ms_max": max(r["ready_ms"] for r in results),
        "idle_rss_kb_median": statistics.median(r["idle_rss_kb"] for r in results),
    }
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
