#!/usr/bin/env python3
"""Fixtures and measurements for the dashboard scenarios of bench/run.sh.

  dashboard.py api-key --base URL --email E --password P --out FILE
      Signs in through the hosted page, creates an API key on
      /dashboard/api-keys for workspace `demo` with every scope offered
      (the form a person would fill in), and writes the key shown once to
      FILE (the first line, as userinfo.lua reads it).

  dashboard.py audit --base URL --email E --password P --pid PID
                     (--sqlite FILE | --database-url URL) --rows N --out FILE
      Adds N audit events to workspace `demo` straight into the database
      (spread over the last 30 days, ten event kinds, five actors, ids in
      the server's time-ordered form), then measures, signed in as the
      owner: the first audit page, a filtered page, a filter nothing
      matches, the tenth page by cursor, and the CSV and JSON exports of every row. For each: time to
      first byte, total time, bytes, and the server's peak RSS during the
      request (VmHWM, reset before each through /proc/PID/clear_refs).
      Writes JSON to FILE.
"""

import argparse
import html
import json
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

import requests

EVENTS = [
    "device.approve", "token.refresh", "session.revoke", "api_key.create",
    "api_key.revoke", "member.role", "member.remove", "invitation.create",
    "client.add", "signin",
]
DAY_MS = 86_400_000


def hidden(page, name):
    m = re.search(r'<input[^>]*name="%s"[^>]*value="([^"]*)"' % re.escape(name), page)
    return html.unescape(m.group(1)) if m else None


def sign_in(base, email, password):
    s = requests.Session()
    r = s.get(base + "/device", timeout=10)
    r.raise_for_status()
    r = s.post(base + "/device/sign-in", allow_redirects=False, timeout=30,
               data={"csrf_token": hidden(r.text, "csrf_token"), "email": email,
                     "password": password})
    if r.status_code not in (302, 303):
        sys.exit("dashboard.py: sign-in failed: HTTP %d %s" % (r.status_code, r.text[:300]))
    return s


def api_key(a):
    s = sign_in(a.base, a.email, a.password)
    r = s.get(a.base + "/dashboard/api-keys", timeout=10)
    r.raise_for_status()
    form = {"csrf_token": hidden(r.text, "csrf_token"), "name": "bench",
            "workspace": "demo", "expires": ""}
    for scope in re.findall(r'name="(scope\.[^"]+)"', r.text):
        form[html.unescape(scope)] = "1"
    r = s.post(a.base + "/dashboard/api-keys", data=form, timeout=10)
    m = re.search(r'id="api-key">([^<]+)<', r.text)
    if r.status_code != 200 or not m:
        sys.exit("dashboard.py: no API key shown: HTTP %d %s" % (r.status_code, r.text[:500]))
    key = html.unescape(m.group(1)).strip()
    with open(a.out, "w") as f:
        f.write(key + "\n")
    print("dashboard.py: API key %s… with %d scopes" % (key[:12], len(form) - 4), file=sys.stderr)


def seed_sqlite(path, rows, now_ms):
    db = sqlite3.connect(path, timeout=30)
    ws = db.execute("SELECT id FROM workspaces WHERE slug = 'demo'").fetchone()[0]
    db.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
        INSERT INTO audit_events (id, at_ms, event, outcome, actor, client_id, session_id,
                                  ip, detail, workspace_id, target)
        SELECT printf('%013x', t) || lower(hex(randomblob(6))), t,
               json_extract(?4, '$[' || (i % 10) || ']'), 'success',
               'user' || (i % 5) || '@example.com', 'kp', NULL, '127.0.0.1', NULL, ?3,
               'target-' || i
        FROM (SELECT i, ?2 - ((i * 25919) % (30 * 86400000)) AS t FROM n)
        """,
        (rows, now_ms, ws, json.dumps(EVENTS)),
    )
    db.commit()
    db.close()


def seed_postgres(url, rows, now_ms):
    events = "ARRAY[%s]" % ",".join("'%s'" % e for e in EVENTS)
    sql = f"""
        INSERT INTO audit_events (id, at_ms, event, outcome, actor, client_id, session_id,
                                  ip, detail, workspace_id, target)
        SELECT lpad(to_hex(t), 13, '0') || substr(md5(random()::text), 1, 12), t,
               ({events})[(i % 10) + 1], 'success', 'user' || (i % 5) || '@example.com',
               'kp', NULL, '127.0.0.1', NULL,
               (SELECT id FROM workspaces WHERE slug = 'demo'), 'target-' || i
        FROM (SELECT i, {now_ms}::bigint - ((i::bigint * 25919) % (30::bigint * {DAY_MS})) AS t
              FROM generate_series(0, {rows - 1}) AS i) AS s
    """
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True)


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(pid):
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed_get(base, path, cookie_header):
    """One GET over a fresh connection: time to the first byte of the
    response, total time until the last byte, status and body size."""
    u = urlsplit(base)
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nConnection: close\r\n\r\n"
               % (path, u.netloc, cookie_header)).encode()
    with socket.create_connection((u.hostname, u.port), timeout=60) as sock:
        start = time.perf_counter()
        sock.sendall(request)
        first = sock.recv(65536)
        ttfb = time.perf_counter() - start
        size = len(first)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            size += len(chunk)
        total = time.perf_counter() - start
    status = int(first.split(b" ", 2)[1])
    return status, ttfb, total, size


def audit(a):
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    if a.sqlite:
        seed_sqlite(a.sqlite, a.rows, now_ms)
    else:
        seed_postgres(a.database_url, a.rows, now_ms)
    seed_s = time.perf_counter() - started
    print("dashboard.py: %d audit events added in %.1f s" % (a.rows, seed_s), file=sys.stderr)

    s = sign_in(a.base, a.email, a.password)
    cookie = "; ".join("%s=%s" % (c.name, c.value) for c in s.cookies)
    page = "/dashboard/workspaces/demo/audit"
    r = s.get(a.base + page, timeout=30)
    cursor = None
    for _ in range(9):
        m = re.search(r'href="(\?after=[^"]+)"', r.text)
        if not m:
            sys.exit("dashboard.py: the audit page has no link to older events")
        cursor = page + html.unescape(m.group(1))
        r = s.get(a.base + cursor, timeout=30)
    cases = [
        ("page_first", page),
        # one event in 50 matches: a page of 50 found about 2,500 rows in
        ("page_filtered", page + "?event=member.role&actor=user0%40example.com"),
        # nothing matches: the whole trail is read to say so
        ("page_no_match", page + "?event=member.role&actor=user3%40example.com"),
        ("page_tenth", cursor),
        ("export_csv", page + "/export?format=csv"),
        ("export_json", page + "/export?format=json"),
    ]
    results = {"rows": a.rows, "seed_s": round(seed_s, 2), "cases": {}}
    for name, path in cases:
        runs = []
        for _ in range(a.runs):
            rss_before = vm(a.pid, "VmRSS")
            peak_ok = reset_peak(a.pid)
            status, ttfb, total, size = timed_get(a.base, path, cookie)
            if status != 200:
                sys.exit("dashboard.py: %s answered %d" % (path, status))
            runs.append({"ttfb_ms": ttfb * 1000, "total_ms": total * 1000, "bytes": size,
                         "rss_before_kb": rss_before,
                         "peak_rss_kb": vm(a.pid, "VmHWM") if peak_ok else None})
        median = {k: statistics.median(r[k] for r in runs) for k in ("ttfb_ms", "total_ms")}
        peaks = [r["peak_rss_kb"] for r in runs if r["peak_rss_kb"] is not None]
        results["cases"][name] = {
            "path": path.split("?")[0] if name == "page_tenth" else path,
            "ttfb_ms_median": round(median["ttfb_ms"], 2),
            "total_ms_median": round(median["total_ms"], 2),
            "bytes": runs[-1]["bytes"],
            "rss_before_kb": runs[0]["rss_before_kb"],
            "peak_rss_kb": max(peaks) if peaks else None,
        }
        c = results["cases"][name]
        print("dashboard.py: %-13s TTFB %7.2f ms, total %8.2f ms, %9d bytes, peak RSS %s MiB"
              % (name, c["ttfb_ms_median"], c["total_ms_median"], c["bytes"],
                 "%.1f" % (c["peak_rss_kb"] / 1024) if c["peak_rss_kb"] else "?"),
              file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    k = sub.add_parser("api-key")
    au = sub.add_parser("audit")
    for p in (k, au):
        p.add_argument("--base", required=True)
        p.add_argument("--email", required=True)
        p.add_argument("--password", required=True)
        p.add_argument("--out", required=True)
    au.add_argument("--pid", type=int, required=True)
    store = au.add_mutually_exclusive_group(required=True)
    store.add_argument("--sqlite")
    store.add_argument("--database-url")
    au.add_argument("--rows", type=int, default=100_000)
    au.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    a.base = a.base.rstrip("/")
    {"api-key": api_key, "audit": audit}[a.command](a)


if __name__ == "__main__":
    main()
