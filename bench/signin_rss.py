#!/usr/bin/env python3
"""RSS of the server after each of N sequential browser sign-ins.

Each sign-in verifies the password with Argon2id (about 19 MiB of working
memory). Prints JSON {"rss_before_kb":…, "rss_after_each_kb":[…]} to --out.
"""

import argparse
import json
import re
import sys
import time

import requests


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    before = rss_kb(a.pid)
    after = []
    for _ in range(a.count):
        s = requests.Session()
        r = s.get(a.base + "/device", timeout=10)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
        r = s.post(a.base + "/device/sign-in", allow_redirects=False, timeout=30,
                   data={"csrf_token": csrf, "email": a.email, "password": a.password})
        if r.status_code not in (302, 303):
            sys.exit("signin_rss.py: sign-in failed: HTTP %d" % r.status_code)
        after.append(rss_kb(a.pid))
    time.sleep(2)
    settled = rss_kb(a.pid)
    with open(a.out, "w") as f:
        json.dump({"rss_before_kb": before, "rss_after_each_kb": after,
                   "rss_2s_later_kb": settled}, f)
    print("signin_rss.py: RSS %.1f MiB before, after each sign-in: %s MiB"
          % (before / 1024, " ".join("%.0f" % (k / 1024) for k in after)), file=sys.stderr)


if __name__ == "__main__":
    main()
