#!/usr/bin/env python3
"""Obtain refresh and access tokens by completing real device logins.

For each login: POST /oauth/device_authorization, open the
verification_uri_complete page as a signed-in browser, POST /device/decision
with the page's hidden csrf_token, request_id and workspace and
decision=approve, then poll /oauth/token once for the tokens.

The browser signs in once (one Argon2 verification): GET /device for the
CSRF cookie and token, POST /device/sign-in with email and password; the
resulting session cookie is shared by every worker thread.

Writes one refresh token per line to --refresh-out and the first access
token to --access-out.
"""

import argparse
import html
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def hidden(page, name):
    m = re.search(
        r'<input[^>]*name="%s"[^>]*value="([^"]*)"' % re.escape(name), page
    )
    return html.unescape(m.group(1)) if m else None


def sign_in(base, email, password):
    s = requests.Session()
    r = s.get(base + "/device", timeout=10)
    r.raise_for_status()
    csrf = hidden(r.text, "csrf_token")
    if not csrf:
        sys.exit("approve.py: no csrf_token on the sign-in page")
    r = s.post(
        base + "/device/sign-in",
        data={"csrf_token": csrf, "email": email, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code not in (302, 303) or not any(
        c.name.endswith("kp_session") for c in s.cookies
    ):
        sys.exit(
            "approve.py: sign-in failed: HTTP %d %s" % (r.status_code, r.text[:300])
        )
    return s.cookies


class Worker(threading.local):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--client-id", default="kp")
    ap.add_argument("--scope", default="openid offline_access")
    ap.add_argument("--refresh-out", required=True)
    ap.add_argument("--access-out", required=True)
    a = ap.parse_args()

    base = a.base.rstrip("/")
    cookies = sign_in(base, a.email, a.password)
    local = Worker()
    errors = []

    def session():
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.cookies.update(cookies)
        return local.s

    def one(i):
        s = session()
        r = s.post(
            base + "/oauth/device_authorization",
            data={"client_id": a.client_id, "scope": a.scope, "cli_label": "bench-%d" % i},
            timeout=10,
        )
        if r.status_code != 200:
            raise RuntimeError("device_authorization HTTP %d %s" % (r.status_code, r.text[:200]))
        start = r.json()
        r = s.get(start["verification_uri_complete"], timeout=10)
        if r.status_code != 200:
            raise RuntimeError("GET /device HTTP %d %s" % (r.status_code, r.text[:200]))
        form = {
            "csrf_token": hidden(r.text, "csrf_token"),
            "request_id": hidden(r.text, "request_id"),
            "decision": "approve",
        }
        ws = hidden(r.text, "workspace")
        if ws:
            form["workspace"] = ws
        if not form["request_id"]:
            raise RuntimeError("approval page has no request_id: %s" % r.text[:300])
        r = s.post(base + "/device/decision", data=form, timeout=10)
        if r.status_code != 200 or "approved" not in r.text:
            raise RuntimeError("POST /device/decision HTTP %d %s" % (r.status_code, r.text[:300]))
        r = s.post(
            base + "/oauth/token",
            data={"grant_type": DEVICE_GRANT, "client_id": a.client_id,
                  "device_code": start["device_code"]},
            timeout=10,
        )
        if r.status_code != 200:
            raise RuntimeError("token poll HTTP %d %s" % (r.status_code, r.text[:200]))
        tok = r.json()
        if "refresh_token" not in tok:
            raise RuntimeError("no refresh_token in %s" % list(tok))
        return tok["refresh_token"], tok["access_token"]

    t0 = time.monotonic()
    refresh, access = [], None
    with ThreadPoolExecutor(a.threads) as pool:
        for fut in [pool.submit(one, i) for i in range(a.count)]:
            try:
                rt, at = fut.result()
                refresh.append(rt)
                access = access or at
            except Exception as e:  # noqa: BLE001 - report every failure
                errors.append(str(e))
    took = time.monotonic() - t0
    with open(a.refresh_out, "w") as f:
        f.write("\n".join(refresh) + "\n")
    if access:
        with open(a.access_out, "w") as f:
            f.write(access + "\n")
    print("approve.py: %d device logins approved in %.1f s (%d failed)"
          % (len(refresh), took, len(errors)), file=sys.stderr)
    for e in errors[:5]:
        print("approve.py: error: " + e, file=sys.stderr)
    if not refresh or errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
