#!/usr/bin/env python3
"""Turn a bench/run.sh results folder into a Markdown report on stdout.

Reads results.jsonl (one line per wrk run), start.json, ready.json and
meta.json from the folder given as the only argument.
"""

import json
import os
import re
import sys

TARGETS = {
    # scenario: (label, min req/s, max p99 ms or None, p99 only at this concurrency)
    "device_start": ("device-authorization starts", 10_000, None, None),
    "poll_pending": ("pending polls", 15_000, 2.0, 16),
    "refresh": ("refresh grants (rotation)", 5_000, None, None),
    "userinfo": ("userinfo (Bearer JWT)", 10_000, None, None),
    "userinfo_api_key": ("userinfo (Bearer kp_pat_ API key)", None, None, None),
    # no targets set for these yet
    "cc_jwt": ("client credentials (JWT)", None, None, None),
    "cc_opaque": ("client credentials (opaque)", None, None, None),
    "code_jwt": ("code exchange + PKCE (JWT)", None, None, None),
    "code_opaque": ("code exchange + PKCE (opaque)", None, None, None),
    "password_grant": ("password grants (Argon2id each)", None, None, None),
    "password_spray": ("password spray, unknown users (dummy Argon2id each)", None, None, None),
    "poll_pending_password_flood": ("pending polls during a password-grant flood", None, 2.0, 16),
}
EXPECTED = {
    # statuses/errors that are the normal answer for each scenario
    "device_start": {"s200"},
    "poll_pending": {"s400", "e:authorization_pending", "e:slow_down"},
    "refresh": {"s200"},
    "userinfo": {"s200"},
    "userinfo_api_key": {"s200"},
    "cc_jwt": {"s200"},
    "cc_opaque": {"s200"},
    "code_jwt": {"s200"},
    "code_opaque": {"s200"},
    "password_grant": {"s200"},
    "password_spray": {"s400"},
    "poll_pending_password_flood": {"s400", "e:authorization_pending", "e:slow_down"},
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


def log_messages(d):
    """(log file, level, message) -> count of WARN/ERROR lines in server*.log[.gz]."""
    import gzip
    out = {}
    for name in sorted(os.listdir(d)):
        if not re.fullmatch(r"server(-b)?\.log(\.gz)?", name):
            continue
        path = os.path.join(d, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", errors="replace") as f:
            for line in f:
                if '"level":"WARN"' not in line and '"level":"ERROR"' not in line:
                    continue
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                msg = j.get("fields", {}).get("message", "?")
                if msg.startswith("slow statement"):
                    msg += ": " + j["fields"].get("summary", "")
                key = (name.split(".")[0], j.get("level"), msg)
                out[key] = out.get(key, 0) + 1
    return out


def main():
    d = sys.argv[1]
    rows = []
    with open(os.path.join(d, "results.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    meta = load(os.path.join(d, "meta.json"), {})
    start = load(os.path.join(d, "start.json"), {})
    ready = load(os.path.join(d, "ready.json"), {})

    n_inst = meta.get("instances", 1)
    pg = any("pg_cpu_pct" in r for r in rows)
    out = []
    w = out.append
    w("## Results")
    w("")
    w("%s UTC, commit %s%s, %s × %s, kernel %s, %s, %s s per run, database: %s%s, %d keyport instance%s."
      % (meta.get("date_utc", "?"), meta.get("git_commit", "?"),
         " (+%d uncommitted files)" % meta["git_dirty_files"] if meta.get("git_dirty_files") else "",
         meta.get("cpus", "?"), meta.get("cpu", "?"), meta.get("kernel", "?"),
         meta.get("wrk", "wrk"), meta.get("duration_s", "?"), meta.get("database", "?"),
         " (%s)" % meta["postgres"] if meta.get("postgres") else "",
         n_inst, "" if n_inst == 1 else "s"))
    w("Pinning: %s; loopback." % meta.get("pinning", "server on CPU 0, wrk (1 thread) on CPU 1"))
    if meta.get("bin"):
        w("Binary: `%s` (%s, built %s UTC, sha256 %s…)."
          % (meta["bin"], meta.get("bin_version", "?"), meta.get("bin_mtime_utc", "?"),
             meta.get("bin_sha256", "")[:12]))
    if any(r["scenario"].startswith("code_") for r in rows):
        w("Code exchanges run %s s each (a code lives 60 s; fresh codes are minted right before each run)."
          % meta.get("code_duration_s", "?"))
    if n_inst > 1:
        w("Each wrk process drives one instance with half the connections, both at the same time; "
          "req/s is the sum, p50/p99 are shown per instance (A / B) and the target check uses the worse.")
    w("CPU columns are in % of one core over the run; µs/req = CPU time per request (all instances together).")
    w("")
    pgh = " postgres CPU (µs/req) |" if pg else ""
    pgs = "---:|" if pg else ""
    if n_inst == 1:
        w("| scenario | conc | req/s | p50 ms | p99 ms | max ms | responses | unexpected | socket errors | RSS before → peak MiB | server CPU (µs/req) | core 0 / 1 busy | wrk CPU |%s irq/softirq | other procs | target | met? |" % pgh)
        w("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|%s---:|---:|---|---|" % pgs)
    else:
        w("| scenario | conc | req/s A + B = total | p50 ms A / B | p99 ms A / B | max ms | responses | unexpected | socket errors | peak RSS MiB A / B | server CPU A / B (µs/req) | core 0 / 1 busy | wrk CPU |%s irq/softirq | other procs | target | met? |" % pgh)
        w("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|%s---:|---:|---|---|" % pgs)
    for r in rows:
        name = r["scenario"]
        label, min_rps, max_p99, p99_at = TARGETS.get(name, (name, None, None, None))
        counts = r.get("counts", {})
        expected = EXPECTED.get(name, set())
        # "s<code>" = HTTP status, "e:<code>" = OAuth error code; other keys
        # ("starved", "lost") are the refresh script's own counters
        status = lambda k: re.fullmatch(r"s\d{3}", k) is not None
        unexpected = sum(v for k, v in counts.items()
                         if status(k) and k not in expected)
        if name.startswith("poll_pending"):
            total = counts.get("s400", 0) or 1
            pend = counts.get("e:authorization_pending", 0)
            slow = counts.get("e:slow_down", 0)
            other = sum(v for k, v in counts.items() if k.startswith("e:")
                        and k not in ("e:authorization_pending", "e:slow_down"))
            unexpected += other
            resp = "400: %.1f%% pending, %.1f%% slow_down" % (100 * pend / total, 100 * slow / total)
            rest = ", ".join("%s×%d" % (k[1:] if status(k) else k, v)
                             for k, v in sorted(counts.items())
                             if (status(k) and k != "s400") or
                             (k.startswith("e:") and k not in ("e:authorization_pending", "e:slow_down")))
            if rest:
                resp += "; " + rest
        else:
            resp = ", ".join("%s×%d" % (k[1:] if status(k) else k, v)
                             for k, v in sorted(counts.items()) if status(k) or k.startswith("e:"))
            # the kind of access token in the 200s (client credentials, code exchange)
            kinds = ["%s %d" % (k[3:], v) for k, v in sorted(counts.items()) if k.startswith("at:")]
            if kinds:
                resp += " (" + ", ".join(kinds) + ")"
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
        pct = lambda k, d=r: "%.0f%%" % d[k] if k in d else "?"
        per_req = lambda k: "%.0f" % (r.get(k, 0) * 1e4 / max(r["rps"], 1))
        insts = r.get("instances") or [r]
        cores = "%s / %s" % (pct("cpu0_busy_pct"), pct("cpu1_busy_pct"))
        pgc = " %s (%s) |" % (pct("pg_cpu_pct"), per_req("pg_cpu_pct")) if pg else ""
        if n_inst == 1:
            cols = (format(round(r["rps"]), ","), ms(r["p50_us"]), ms(r["p99_us"]),
                    "%s → %s" % (mib(r["rss_before_kb"]), mib(r["peak_rss_kb"])),
                    "%s (%s)" % (pct("server_cpu_pct"), per_req("server_cpu_pct")))
        else:
            cols = (" + ".join(format(round(i["rps"]), ",") for i in insts) + " = **%s**" % format(round(r["rps"]), ","),
                    " / ".join(ms(i["p50_us"]) for i in insts),
                    " / ".join(ms(i["p99_us"]) for i in insts),
                    " / ".join(mib(i["peak_rss_kb"]) for i in insts),
                    "%s (%s)" % (" / ".join(pct("server_cpu_pct", i) for i in insts), per_req("server_cpu_pct")))
        w("| %s | %d | %s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s |%s %s | %s | %s | %s |"
          % (label, r["concurrency"], cols[0], cols[1], cols[2], ms(r["max_us"]), resp, unexpected, sock,
             cols[3], cols[4], cores, pct("wrk_cpu_pct"), pgc, pct("irq_cpu_pct"),
             pct("foreign_cpu_pct") if "foreign_cpu_pct" in r else "%s / %s" % (pct("foreign_cpu0_pct"), pct("foreign_cpu1_pct")),
             " ".join(tgt) or "—", ("yes" if tgt else "n/a") if ok else "**no**"))
    w("")
    w("| measurement | value | target | met? |")
    w("|---|---:|---|---|")
    if start:
        w("| idle RSS, fresh database after `--demo` seeding | %s MiB | ≤ 15 MiB | %s |"
          % (mib(start["idle_rss_fresh_kb"]),
             "yes" if start["idle_rss_fresh_kb"] <= 15 * 1024 else "**no**"))
        w("| first start to /readyz 200 (migrations + demo seeding, Argon2) | %d ms | — | — |"
          % start["first_start_ready_ms"])
        if start.get("b_start_ready_ms") is not None:
            w("| instance B: idle RSS after its start (database already seeded by A) | %s MiB | ≤ 15 MiB | %s |"
              % (mib(start["b_idle_rss_fresh_kb"]),
                 "yes" if start["b_idle_rss_fresh_kb"] <= 15 * 1024 else "**no**"))
            w("| instance B: start to /readyz 200 (existing, empty-ish database) | %d ms | — | — |"
              % start["b_start_ready_ms"])
    if ready:
        w("| idle RSS after restart on the loaded database (median) | %s MiB | ≤ 15 MiB | %s |"
          % (mib(ready["idle_rss_kb_median"]),
             "yes" if ready["idle_rss_kb_median"] <= 15 * 1024 else "**no**"))
        w("| restart of A to /readyz 200 on the existing database (median of %d; min %.1f, max %.1f) | %.1f ms | ≤ 50 ms | %s |"
          % (len(ready["runs"]), ready["ready_ms_min"], ready["ready_ms_max"],
             ready["ready_ms_median"], "yes" if ready["ready_ms_median"] <= 50 else "**no**"))
        stops = [r["stop_ms"] for r in ready["runs"]]
        w("| SIGTERM to exit (idle, max of runs) | %.0f ms | — | — |" % max(stops))
    signin = load(os.path.join(d, "signin_rss.json"))
    if signin:
        each = signin["rss_after_each_kb"]
        w("| RSS of A after %d sequential browser sign-ins (Argon2id), after all load runs | %s → %s MiB (%s) | — | — |"
          % (len(each), mib(signin["rss_before_kb"]), mib(signin["rss_2s_later_kb"]),
             " ".join("%.0f" % (k / 1024) for k in each)))
    try:
        kb = int(open(os.path.join(d, "data_dir_kb.txt")).read().strip())
        w("| data dir size after all runs | %s MiB | — | — |" % mib(kb))
    except (OSError, ValueError):
        pass
    try:
        kb = int(open(os.path.join(d, "db_size_kb.txt")).read().strip())
        w("| PostgreSQL database size after all runs | %s MiB | — | — |" % mib(kb))
    except (OSError, ValueError):
        pass
    audit = load(os.path.join(d, "audit.json"))
    if audit:
        w("")
        w("Audit trail of workspace demo with %d added events (seeded in %.1f s); median of runs, fresh connection each:"
          % (audit["rows"], audit["seed_s"]))
        w("")
        w("| request | time to first byte | total | size | peak RSS of A |")
        w("|---|---:|---:|---:|---:|")
        for name, c in audit["cases"].items():
            w("| %s `%s` | %.1f ms | %.1f ms | %s KiB | %s |"
              % (name.replace("_", " "), c["path"], c["ttfb_ms_median"], c["total_ms_median"],
                 "%.0f" % (c["bytes"] / 1024),
                 "%s MiB (%s before)" % (mib(c["peak_rss_kb"]), mib(c["rss_before_kb"]))
                 if c["peak_rss_kb"] else "—"))
    problems = [r for r in rows if r.get("server_error_log_lines") or not r.get("server_alive", True)]
    w("")
    warned = [r for r in rows if r.get("server_warn_log_lines")]
    if warned:
        w("WARN lines in the server log(s) during the runs: " + ", ".join(
            "%s c%d: %s" % (r["scenario"], r["concurrency"],
                            " / ".join("%s %d" % (i.get("instance", "a").upper(), i.get("server_warn_log_lines", 0))
                                       for i in (r.get("instances") or [r])) if n_inst > 1
                            else str(r["server_warn_log_lines"]))
            for r in warned) + ".")
        w("")
    msgs = {k: v for k, v in log_messages(d).items() if "rate limits are off" not in k[2]}
    if msgs:
        w("| log | level | message (whole run, incl. unmeasured seeding, sign-ins and shutdown) | lines |")
        w("|---|---|---|---:|")
        for (log, level, msg), n in sorted(msgs.items()):
            w("| %s | %s | %s | %d |" % (log, level, msg.replace("|", "\\|"), n))
        w("")
    if problems:
        for r in problems:
            for i in (r.get("instances") or [r]):
                if i.get("server_error_log_lines") or not i.get("server_alive", True):
                    w("- %s c%d%s: %d ERROR/panic lines in the server log%s"
                      % (r["scenario"], r["concurrency"],
                         " instance %s" % i["instance"] if n_inst > 1 else "",
                         i.get("server_error_log_lines", 0),
                         "" if i.get("server_alive", True) else ", server died"))
    else:
        w("No ERROR-level or panic lines in the server log during the runs; the server stayed up.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
