#!/usr/bin/env python3
"""Record one measured run of bench/run.sh as a line of results.jsonl.

Usage: record.py --results FILE --name NAME --conc N --hz HZ
                 --before SNAP.json --after SNAP.json
                 --instance LABEL,PID,WRK_OUT,WRK_TIME,HWM_KB,RSS_KB,RSS_BEFORE_KB,ALIVE,LOG_ERRORS,LOG_WARNS
                 [--instance …]

One --instance per keyport process (and its wrk process): with two
instances the two wrk runs ran at the same time, each with half the
connections. The line holds the sum of requests/s, the worse p50/p99/max of
the instances, the merged response counts, and one entry per instance in
"instances" with its own numbers (latency, counts, peak RSS, server CPU).

CPU accounting over the run (from two cpusnap.py snapshots), in % of one
core: how busy each core was, each server's CPU, wrk's (user+sys from
`time`), PostgreSQL's (every `postgres` process, when measured), the
kernel's irq/softirq time (loopback TCP; charged to no process), and the
rest ("foreign": other processes on this machine competing with the run).
"""

import argparse
import json
import re
import sys


def bench_json(path):
    with open(path, errors="replace") as f:
        text = f.read()
    m = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if not m:
        sys.stderr.write(text[-3000:])
        sys.exit("record.py: wrk printed no result in %s" % path)
    return json.loads(m.group(1))


def wrk_cpu_s(path):
    try:
        last = [l for l in open(path).read().splitlines() if l.strip()][-1]
        return sum(float(x) for x in last.split())
    except (OSError, IndexError, ValueError):
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--conc", type=int, required=True)
    ap.add_argument("--hz", type=int, required=True)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--instance", action="append", required=True)
    a = ap.parse_args()

    b = json.load(open(a.before))
    e = json.load(open(a.after))
    # ticks of one core == wall-clock ticks
    wall = max(e["cores"]["cpu0"][1] - b["cores"]["cpu0"][1], 1) / a.hz
    pct = lambda secs: round(100 * secs / wall, 1)
    core_busy = {c: (e["cores"][c][0] - b["cores"][c][0]) / a.hz for c in e["cores"] if c in b["cores"]}
    irq_s = sum((e["cores"][c][2] - b["cores"][c][2]) / a.hz
                for c in e["cores"] if c in b["cores"] and len(e["cores"][c]) > 2)

    insts, wrk_total, server_total = [], 0.0, 0.0
    for spec in a.instance:
        label, pid, out, tfile, hwm, rss, rss0, alive, logerr, logwarn = spec.split(",")
        r = bench_json(out)
        t0, t1 = b["pids"].get(pid), e["pids"].get(pid)
        server_s = (t1 - t0) / a.hz if t0 is not None and t1 is not None else 0.0
        w = wrk_cpu_s(tfile)
        wrk_total += w
        server_total += server_s
        r.update(instance=label, connections=None, peak_rss_kb=int(hwm), rss_after_kb=int(rss),
                 rss_before_kb=int(rss0), server_alive=alive == "true",
                 server_error_log_lines=int(logerr), server_warn_log_lines=int(logwarn),
                 server_cpu_pct=pct(server_s),
                 wrk_cpu_pct=pct(w))
        insts.append(r)
    for r in insts:
        r["connections"] = a.conc // len(insts)

    row = {"scenario": a.name, "concurrency": a.conc, "n_instances": len(insts)}
    if len(insts) == 1:
        row.update({k: v for k, v in insts[0].items() if k not in ("instance", "connections")})
    else:
        row["requests"] = sum(r["requests"] for r in insts)
        row["duration_s"] = max(r["duration_s"] for r in insts)
        row["rps"] = round(sum(r["rps"] for r in insts), 1)
        for k in ("p50_us", "p90_us", "p99_us", "max_us"):
            row[k] = max(r[k] for r in insts)  # the worse instance
        for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"):
            row[k] = sum(r.get(k, 0) for r in insts)
        counts = {}
        for r in insts:
            for k, v in r["counts"].items():
                counts[k] = counts.get(k, 0) + v
        row["counts"] = counts
        row["peak_rss_kb"] = max(r["peak_rss_kb"] for r in insts)
        row["server_alive"] = all(r["server_alive"] for r in insts)
        row["server_error_log_lines"] = sum(r["server_error_log_lines"] for r in insts)
        row["server_warn_log_lines"] = sum(r["server_warn_log_lines"] for r in insts)
        row["server_cpu_pct"] = pct(server_total)
        row["wrk_cpu_pct"] = pct(wrk_total)
    row["instances"] = insts
    for c in sorted(core_busy):
        row["%s_busy_pct" % c] = pct(core_busy[c])
    pg_s = None
    if "pg" in e:
        if "pg_total" in e and "pg_total" in b:
            pg_s = (e["pg_total"] - b["pg_total"]) / a.hz
        else:
            pg_s = sum(t - b.get("pg", {}).get(p, 0) for p, t in e["pg"].items()) / a.hz
        row["pg_cpu_pct"] = pct(pg_s)
    row["irq_cpu_pct"] = pct(irq_s)
    foreign = sum(core_busy.values()) - server_total - wrk_total - (pg_s or 0.0) - irq_s
    row["foreign_cpu_pct"] = pct(max(foreign, 0.0))
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")

    for r in insts:
        tag = "%s c=%d" % (a.name, a.conc) + ("" if len(insts) == 1 else " [%s c%d]" % (r["instance"], r["connections"]))
        print("  %-24s %9.0f req/s  p50 %.2f ms  p99 %.2f ms  counts %s  peak RSS %.1f MiB  server CPU %.0f%%%s"
              % (tag, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                 json.dumps(r["counts"], sort_keys=True), r["peak_rss_kb"] / 1024, r["server_cpu_pct"],
                 "".join("  %d %s log lines" % (r[k], w) for k, w in
                         (("server_error_log_lines", "ERROR"), ("server_warn_log_lines", "WARN")) if r[k])),
              file=sys.stderr)
    print("  %-24s total %.0f req/s; cpu: cores %s busy, servers %.0f%%, wrk %.0f%%%s, irq/softirq %.0f%%, other processes %.0f%%"
          % ("", row["rps"], "/".join("%.0f%%" % row["%s_busy_pct" % c] for c in sorted(core_busy)),
             row["server_cpu_pct"], row["wrk_cpu_pct"],
             ", postgres %.0f%%" % row["pg_cpu_pct"] if "pg_cpu_pct" in row else "",
             row["irq_cpu_pct"], row["foreign_cpu_pct"]), file=sys.stderr)


if __name__ == "__main__":
    main()
