#!/usr/bin/env python3
"""One CPU-time snapshot for bench/run.sh, as JSON on stdout.

Usage: cpusnap.py [--pg] PID…

  cores  busy, total and irq+softirq clock ticks of every CPU (/proc/stat)
  pids   user+system ticks of each given process (the keyport servers)
  pg     user+system ticks of every process named `postgres` (with --pg):
         the PostgreSQL server and its backends, which are not pinned;
         the postmaster's entry includes its exited children (cutime+cstime)
  pg_total  their sum

record.py subtracts the two pg_total values: a backend that starts during a
run counts from zero (all its CPU was during the run), one that exits during
the run (an autovacuum worker) moves into the postmaster's cutime/cstime.
"""

import json
import os
import sys


def ticks(pid, children=False):
    try:
        with open("/proc/%s/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # fields after "(comm)": state=0 ppid=1 … utime=11 stime=12 cutime=13 cstime=14
        t = int(rest[11]) + int(rest[12])
        if children:
            t += int(rest[13]) + int(rest[14])
        return t
    except (OSError, IndexError, ValueError):
        return None


def ppid(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return None


def comm(pid):
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    args = sys.argv[1:]
    pg = "--pg" in args
    pids = [a for a in args if a != "--pg"]
    cores = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0].startswith("cpu") and parts[0] != "cpu":
                v = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
                total = sum(v)
                # busy, total, and the part of busy spent in irq/softirq (loopback
                # TCP is processed there; not charged to any process)
                cores[parts[0]] = [total - v[3] - v[4], total, v[5] + v[6]]
    snap = {"cores": cores, "pids": {p: ticks(p) for p in pids}}
    if pg:
        # The postmaster (a `postgres` process whose parent is not one) also
        # counts the CPU of its children that have exited (cutime, cstime):
        # backends and autovacuum workers that end during a run still count.
        procs = [p for p in os.listdir("/proc") if p.isdigit() and comm(p) == "postgres"]
        parents = {p: ppid(p) for p in procs}
        snap["pg"] = {}
        for p in procs:
            t = ticks(p, children=parents[p] not in parents)
            if t is not None:
                snap["pg"][p] = t
        snap["pg_total"] = sum(snap["pg"].values())
    json.dump(snap, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
