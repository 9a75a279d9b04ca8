#!/usr/bin/env python3
"""The table of bench/compare.sh: each scenario's figures for Keyport, the
peer (node oidc-provider) and the ceiling, the ratios Keyport/peer and
Keyport/ceiling, and whether each meets its target.

Usage: compare.py OUT   (OUT holds keyport/, peer/ and ceiling/ results)
"""

import json
import os
import sys

# scenario, label, Keyport/peer target, Keyport/ceiling target, Keyport's p99 limit (ms)
SCENARIOS = [
    ("device_start", "device-authorization start", 3.0, 0.6, None),
    ("poll_pending", "pending poll (p99 ≤ 2 ms)", 4.0, 0.6, 2.0),
    ("cc_jwt", "client_credentials, JWT EdDSA", 4.0, 0.8, None),
    ("refresh", "refresh rotation", 3.0, 0.5, None),
    ("userinfo", "userinfo", 3.0, 0.8, None),
]


def results(out, name):
    path = os.path.join(out, name, "results.jsonl")
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            row = json.loads(line)
            rows[row["scenario"]] = row
    return rows


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}


def main():
    out = sys.argv[1]
    kp, peer, ceil = (results(out, n) for n in ("keyport", "peer", "ceiling"))
    meta = load(os.path.join(out, "keyport", "meta.json"))
    print("Machine: %s, %s CPUs; server on CPU 0, wrk (1 thread) on CPU 1; %s s per run, c%s."
          % (meta.get("cpu", "?"), meta.get("cpus", "?"), meta.get("duration_s", "?"),
             meta.get("concurrency", "?")))
    print("Keyport %s (%s), database: %s.\n" % (meta.get("git_commit", "?"), meta.get("bin_version", "?"),
                                               meta.get("database", "?")))
    print("| scenario | Keyport req/s (p99) | oidc-provider | ceiling | Keyport/peer (target) | Keyport/ceiling (target) |")
    print("|---|---:|---:|---:|---:|---:|")
    fmt = lambda r: "%s (%.2f ms)" % (format(round(r["rps"]), ","), r["p99_us"] / 1000) if r else "–"
    for key, label, t_peer, t_ceil, p99_limit in SCENARIOS:
        k, p, c = kp.get(key), peer.get(key), ceil.get(key)
        own = fmt(k)
        if k and p99_limit is not None:
            over = k["p99_us"] / 1000 > p99_limit
            own += " p99 ≤ %g ms %s" % (p99_limit, "**missed**" if over else "met")
        def ratio(other, target):
            if not (k and other and other["rps"]):
                return "–"
            r = k["rps"] / other["rps"]
            return "%.2f× (≥ %g) %s" % (r, target, "met" if r >= target else "**missed**")
        print("| %s | %s | %s | %s | %s | %s |" % (label, own, fmt(p), fmt(c), ratio(p, t_peer), ratio(c, t_ceil)))
    ready = load(os.path.join(out, "keyport", "ready.json"))
    pr, cr = (load(os.path.join(out, n, "ready.json")) for n in ("peer", "ceiling"))
    print("\n| after a restart, 3 runs, median | Keyport | oidc-provider | ceiling |")
    print("|---|---:|---:|---:|")
    mib = lambda r: "%.1f MiB" % (r["idle_rss_kb_median"] / 1024) if r.get("idle_rss_kb_median") else "–"
    ms = lambda r: "%.1f ms" % r["ready_ms_median"] if r.get("ready_ms_median") is not None else "–"
    print("| idle RSS (target ≤ 15 MiB) | %s | %s | %s |" % (mib(ready), mib(pr), mib(cr)))
    print("| start to ready (target ≤ 50 ms) | %s | %s | %s |" % (ms(ready), ms(pr), ms(cr)))
    print("\nResponses counted per scenario (Keyport / peer / ceiling):")
    for key, label, *_ in SCENARIOS:
        counts = [json.dumps(r.get(key, {}).get("counts", {}), sort_keys=True) for r in (kp, peer, ceil)]
        print("- %s: %s" % (label, " / ".join(counts)))


if __name__ == "__main__":
    main()
