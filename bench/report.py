#!/usr/bin/env python3
"""Turn a bench/run.sh results folder into a Markdown report on stdout.

Reads results.jsonl (one line per wrk run), start.json, ready.json and
meta.json from the folder given as the only argument.
"""

import json
import os
import sys

TARGETS = {
    # scenario: (label, min req/s, max p99 ms or None, p99 only at this concurrency)
    "device_start": ("device-authorization starts", 10_000, None, None),
    "poll_pending": ("pending polls", 15_000, 2.0, 16),
    "refresh": ("refresh grants (rotation)", 5_000, None, None),
    "userinfo": ("userinfo (Bearer JWT)", 10_000, None, None),
}
EXPECTED = {
    # statuses/errors that are the normal answer for each scenario
    "device_start": {"s200"},
    "poll_pending": {"s400", "e:authorization_pending", "e:slow_down"},
    "refresh": {"s200"},
    "userinfo": {"s200"},
}


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def ms(us):
    return "%.2f" % (us / 1000)


def mib(kb):
    return "%.1f" % (kb / 1024)


def main():
    d = sys.argv[1]
    rows = []
    with open(os.path.join(d, "results.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    meta = load(os.path.join(d, "meta.json"), {})
    start = load(os.path.join(d, "start.json"), {})
    ready = load(os.path.join(d, "ready.json"), {})

    out = []
    w = out.append
    w("## Results")
    w("")
    w("%s UTC, commit %s%s, %s × %s, kernel %s, %s, %s s per run, database: %s."
      % (meta.get("date_utc", "?"), meta.get("git_commit", "?"),
         " (+%d uncommitted files)" % meta["git_dirty_files"] if meta.get("git_dirty_files") else "",
         meta.get("cpus", "?"), meta.get("cpu", "?"), meta.get("kernel", "?"),
         meta.get("wrk", "wrk"), meta.get("duration_s", "?"), meta.get("database", "?")))
    w("Server pinned to CPU 0, wrk (1 thread) pinned to CPU 1, loopback.")
    w("")
    w("| scenario | conc | req/s | p50 ms | p99 ms | max ms | responses | unexpected | socket errors | RSS before → peak MiB | server CPU (µs/req) | wrk CPU | other procs CPU0/CPU1 | target | met? |")
    w("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        name = r["scenario"]
        label, min_rps, max_p99, p99_at = TARGETS.get(name, (name, None, None, None))
        counts = r.get("counts", {})
        expected = EXPECTED.get(name, set())
        unexpected = sum(v for k, v in counts.items()
                         if k.startswith("s") and k not in expected)
        if name == "poll_pending":
            total = counts.get("s400", 0) or 1
            pend = counts.get("e:authorization_pending", 0)
            slow = counts.get("e:slow_down", 0)
            other = sum(v for k, v in counts.items() if k.startswith("e:")
                        and k not in ("e:authorization_pending", "e:slow_down"))
            unexpected += other
            resp = "400: %.1f%% pending, %.1f%% slow_down" % (100 * pend / total, 100 * slow / total)
        else:
            resp = ", ".join("%s×%d" % (k[1:] if k.startswith("s") else k, v)
                             for k, v in sorted(counts.items()) if k.startswith(("s", "e:")))
        extra = [k for k in ("starved", "lost") if counts.get(k)]
        if extra:
            resp += " (" + ", ".join("%s %d" % (k, counts[k]) for k in extra) + ")"
        sock = sum(r.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
        tgt, ok = [], True
        if min_rps:
            tgt.append("≥ %s/s" % format(min_rps, ","))
            ok = ok and r["rps"] >= min_rps
        if max_p99 and (p99_at is None or r["concurrency"] == p99_at):
            tgt.append("p99 ≤ %g ms" % max_p99)
            ok = ok and r["p99_us"] / 1000 <= max_p99
        ok = ok and unexpected == 0 and sock == 0 and r.get("server_alive", True)
        pct = lambda k: "%.0f%%" % r[k] if k in r else "?"
        w("| %s | %d | %s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s / %s | %s | %s |"
          % (label, r["concurrency"], format(round(r["rps"]), ","), ms(r["p50_us"]),
             ms(r["p99_us"]), ms(r["max_us"]), resp, unexpected, sock,
             ("%s → %s" % (mib(r["rss_before_kb"]), mib(r["peak_rss_kb"]))
              if "rss_before_kb" in r else mib(r["peak_rss_kb"])),
             "%s (%.0f)" % (pct("server_cpu_pct"), r.get("server_cpu_pct", 0) * 1e4 / max(r["rps"], 1)),
             pct("wrk_cpu_pct"),
             pct("foreign_cpu0_pct"), pct("foreign_cpu1_pct"),
             " ".join(tgt), "yes" if ok else "**no**"))
    w("")
    w("| measurement | value | target | met? |")
    w("|---|---:|---|---|")
    if start:
        w("| idle RSS, fresh database after `--demo` seeding | %s MiB | ≤ 15 MiB | %s |"
          % (mib(start["idle_rss_fresh_kb"]),
             "yes" if start["idle_rss_fresh_kb"] <= 15 * 1024 else "**no**"))
        w("| first start to /readyz 200 (migrations + demo seeding, Argon2) | %d ms | — | — |"
          % start["first_start_ready_ms"])
    if ready:
        w("| idle RSS after restart on the loaded database (median) | %s MiB | ≤ 15 MiB | %s |"
          % (mib(ready["idle_rss_kb_median"]),
             "yes" if ready["idle_rss_kb_median"] <= 15 * 1024 else "**no**"))
        w("| restart to /readyz 200 on the existing database (median of %d; min %.1f, max %.1f) | %.1f ms | ≤ 50 ms | %s |"
          % (len(ready["runs"]), ready["ready_ms_min"], ready["ready_ms_max"],
             ready["ready_ms_median"], "yes" if ready["ready_ms_median"] <= 50 else "**no**"))
        stops = [r["stop_ms"] for r in ready["runs"]]
        w("| SIGTERM to exit (idle, max of runs) | %.0f ms | — | — |" % max(stops))
    signin = load(os.path.join(d, "signin_rss.json"))
    if signin:
        each = signin["rss_after_each_kb"]
        w("| RSS after %d sequential browser sign-ins (Argon2id), after all load runs | %s → %s MiB (%s) | — | — |"
          % (len(each), mib(signin["rss_before_kb"]), mib(signin["rss_2s_later_kb"]),
             " ".join("%.0f" % (k / 1024) for k in each)))
    try:
        kb = int(open(os.path.join(d, "data_dir_kb.txt")).read().strip())
        w("| data dir size after all runs | %s MiB | — | — |" % mib(kb))
    except (OSError, ValueError):
        pass
    problems = [r for r in rows if r.get("server_error_log_lines") or not r.get("server_alive", True)]
    w("")
    if problems:
        for r in problems:
            w("- %s c%d: %d ERROR/panic lines in the server log%s"
              % (r["scenario"], r["concurrency"], r.get("server_error_log_lines", 0),
                 "" if r.get("server_alive", True) else ", server died"))
    else:
        w("No ERROR-level or panic lines in the server log during the runs; the server stayed up.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
