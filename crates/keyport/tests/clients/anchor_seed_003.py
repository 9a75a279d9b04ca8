"""Seed 003 (Anchor)'s documented requests, as its desktop and mobile clients
send them, against Keyport with the `anchor` client: the password grant,
`missing_totp`, the two-step code, tokens with a `guid`, a refresh with that
`guid`, and RFC 7009 revocation with `token_type_hint`.

Run by the integration test `two_step::seed_003_requests_from_python`, which
starts the server, turns on the account's authenticator and passes the code
the app would show (the server's clock is the test's). Exits non-zero with a
message on the first difference from the document.
"""

import argparse
import json
import re
import sys

import requests

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def expect(condition, what, response=None):
    if not condition:
        body = "" if response is None else f"\n{response.status_code} {response.text}"
        sys.exit(f"seed 003: {what}{body}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--auth-code", required=True)
    args = parser.parse_args()
    token_url = f"{args.issuer}/oauth/token"
    revoke_url = f"{args.issuer}/oauth/revoke"
    device = {"dns_name": "build-mac.local", "os_type": "osx", "os_version": "4.2.2"}

    # "Request an access token": the account has two-step verification on.
    first = requests.post(token_url, data={
        "grant_type": "password", "client_id": "anchor",
        "username": args.username, "password": args.password,
        "guid": "", **device,
    })
    expect(first.status_code == 401, "expected 401 missing_totp", first)
    expect(first.json().get("error") == "missing_totp", "expected missing_totp", first)
    expect(first.json().get("two_step_mode") == "authenticator", "expected two_step_mode", first)

    # "the request should be repeated with the code appended"
    tokens = requests.post(token_url, data={
        "grant_type": "password", "client_id": "anchor",
        "username": args.username, "password": args.password,
        "auth_code": args.auth_code, "guid": "", **device,
    })
    expect(tokens.status_code == 200, "the code was refused", tokens)
    body = tokens.json()
    for field in ("access_token", "expires_in", "guid", "token_type", "refresh_token", "scope"):
        expect(field in body, f"the token response lacks {field}", tokens)
    expect(body["token_type"] == "Bearer", "token_type is not Bearer", tokens)
    expect(isinstance(body["expires_in"], int), "expires_in is not seconds", tokens)
    expect(UUID.match(body["guid"]), "guid is not a UUID", tokens)
    expect(tokens.headers.get("Cache-Control") == "no-store", "no Cache-Control: no-store", tokens)

    # The same code again: each code works once.
    again = requests.post(token_url, data={
        "grant_type": "password", "client_id": "anchor",
        "username": args.username, "password": args.password,
        "auth_code": args.auth_code, "guid": body["guid"],
    })
    expect(again.status_code == 401 and again.json().get("error") == "invalid_totp",
           "a used code was accepted again", again)

    # "Refresh an access token", passing the guid the server assigned.
    refreshed = requests.post(token_url, data={
        "grant_type": "refresh_token", "client_id": "anchor",
        "refresh_token": body["refresh_token"], "guid": body["guid"],
        "dns_name": "build-mac.local", "os_type": "osx", "os_version": "5.1.0",
    })
    expect(refreshed.status_code == 200, "refresh failed", refreshed)
    fresh = refreshed.json()
    expect(fresh.get("guid") == body["guid"], "refresh changed the guid", refreshed)
    expect(fresh["refresh_token"] != body["refresh_token"], "the refresh token did not rotate", refreshed)

    # "Revoke access": always 200 for valid requests.
    revoked = requests.post(revoke_url, data={
        "client_id": "anchor", "token": fresh["access_token"], "token_type_hint": "access_token",
    })
    expect(revoked.status_code == 200, "revoking the access token failed", revoked)
    revoked = requests.post(revoke_url, data={
        "client_id": "anchor", "token": fresh["refresh_token"], "token_type_hint": "refresh_token",
    })
    expect(revoked.status_code == 200, "revoking the refresh token failed", revoked)
    dead = requests.post(token_url, data={
        "grant_type": "refresh_token", "client_id": "anchor",
        "refresh_token": fresh["refresh_token"],
    })
    expect(dead.status_code == 400 and dead.json().get("error") == "invalid_grant",
           "a revoked refresh token still works", dead)
    userinfo = requests.get(f"{args.issuer}/oauth/userinfo",
                            headers={"Authorization": f"Bearer {fresh['access_token']}"})
    expect(userinfo.status_code == 401, "a revoked access token still works", userinfo)

    print(json.dumps({"guid": body["guid"], "access_token_revoked": True}))


if __name__ == "__main__":
    main()
