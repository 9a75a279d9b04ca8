#!/usr/bin/env python3
"""Authlib, an OpenID Connect client nobody on the Keyport team wrote, runs
the authorization code flow with PKCE against a Keyport issuer.

Run by crates/keyport/tests/it/oidc_clients.rs, which plays the browser:

1. this script discovers the provider from the issuer and prints one JSON
   line, {"authorization_url": ...}: the URL Authlib built (PKCE S256, state,
   nonce);
2. it reads one line on stdin: the URL the browser was redirected to, with
   `code`, `state` and `iss`;
3. it checks `iss` (RFC 9207), redeems the code with the PKCE verifier,
   validates the ID token against the JWKS (signature, iss, aud, exp, nonce,
   at_hash), calls userinfo, and prints one JSON line summing up what it saw.

Any refusal: a message on stderr and exit status 1, before any later step.

    authlib_code_flow.py --issuer URL --client-id ID --redirect-uri URI
        [--client-secret SECRET --auth-method client_secret_basic|client_secret_post]
"""

import argparse
import json
import os
import sys
import urllib.parse

import requests

TIMEOUT = 10


class Refused(Exception):
    """The client refuses what the server sent."""


def is_loopback_http(url):
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def get_json(url):
    response = requests.get(url, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def discover(issuer):
    """OpenID Connect Discovery, validated by Authlib's metadata models."""
    from authlib.oidc.discovery import OpenIDProviderMetadata

    metadata = get_json(issuer + "/.well-known/openid-configuration")
    # OpenID Connect Discovery 1.0 §4.3: exactly the issuer asked for.
    if metadata.get("issuer") != issuer:
        raise Refused(f"discovery: issuer {metadata.get('issuer')!r} is not {issuer!r}")
    classes = []
    try:
        from authlib.oauth2 import rfc9207

        classes.append(rfc9207.AuthorizationServerMetadata)
    except ImportError:  # Authlib before RFC 9207 metadata support
        pass
    OpenIDProviderMetadata(metadata).validate(metadata_classes=classes)
    return metadata


def check_authorization_response(callback, metadata):
    """RFC 9207 §2.4: Authlib's client does not look at `iss`, so do it here.

    A server that advertises `authorization_response_iss_parameter_supported`
    must send `iss`, and it must be the issuer the request was sent to; else
    the response is rejected and the code never redeemed.
    """
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    if "error" in params:
        raise Refused(f"authorization response is an error: {params}")
    iss = params.get("iss")
    if iss is None:
        if metadata.get("authorization_response_iss_parameter_supported"):
            raise Refused("RFC 9207: iss missing from the authorization response")
    elif iss != metadata["issuer"]:
        raise Refused(
            f"RFC 9207: iss {iss!r} in the authorization response is not "
            f"the discovered issuer {metadata['issuer']!r}"
        )
    return iss


def decode_jwt(value, jwks, algorithms):
    """Verifies a JWS against the JWKS the way Authlib's own OpenID client
    does (joserfc since Authlib 1.6; authlib.jose before)."""
    try:
        from joserfc import jwt
        from joserfc.jwk import KeySet
        from joserfc.jws import JWSRegistry
    except ImportError:
        from authlib.jose import JsonWebKey, JsonWebToken

        data = JsonWebToken(algorithms).decode(value, JsonWebKey.import_key_set(jwks))
        return dict(data.header), dict(data)
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    token = jwt.decode(value, KeySet.import_key_set(jwks), registry=registry)
    return dict(token.header), dict(token.claims)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--client-secret")
    parser.add_argument(
        "--auth-method",
        choices=["client_secret_basic", "client_secret_post"],
        default="client_secret_basic",
    )
    args = parser.parse_args()

    # Authlib's metadata models insist on https issuers unless this is set;
    # the test servers are plain http on loopback.
    if is_loopback_http(args.issuer):
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

    import authlib
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oidc.core import CodeIDToken

    metadata = discover(args.issuer)
    auth_method = args.auth_method if args.client_secret else "none"
    if auth_method not in metadata.get("token_endpoint_auth_methods_supported", []):
        raise Refused(f"discovery: {auth_method} is not a supported token endpoint auth method")
    session = OAuth2Session(
        client_id=args.client_id,
        client_secret=args.client_secret,
        scope="openid email profile",
        redirect_uri=args.redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    verifier = generate_token(48)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    print(json.dumps({"authorization_url": url}), flush=True)

    callback = sys.stdin.readline().strip()
    if not callback:
        raise Refused("no redirect URL on stdin")
    iss = check_authorization_response(callback, metadata)

    # Authlib checks `state` against the session's and sends the verifier.
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        timeout=TIMEOUT,
    )
    if "id_token" not in token:
        raise Refused(f"no ID token in the token response: {sorted(token)}")

    jwks = get_json(metadata["jwks_uri"])
    algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    header, payload = decode_jwt(token["id_token"], jwks, algorithms)
    claims = CodeIDToken(
        payload,
        header,
        options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": args.client_id},
        },
        params={
            "nonce": nonce,
            "client_id": args.client_id,
            "access_token": token["access_token"],
        },
    )
    # exp, iat, iss, aud, azp, nonce and, when present, at_hash.
    claims.validate(leeway=60)
    if "nonce" not in claims:
        raise Refused("the ID token carries no nonce")
    # CodeIDToken checks at_hash only when there is one; Keyport sends it.
    if "at_hash" not in claims:
        raise Refused("the ID token carries no at_hash")

    response = session.get(metadata["userinfo_endpoint"], timeout=TIMEOUT)
    response.raise_for_status()
    userinfo = response.json()
    if userinfo.get("sub") != claims["sub"]:
        raise Refused(f"userinfo sub {userinfo.get('sub')!r} is not the ID token's")

    summary = {
        "authlib": authlib.__version__,
        "issuer": metadata["issuer"],
        "authorization_response": {"iss": iss, "state": state},
        "token_endpoint_auth_method": auth_method,
        "token": {
            "token_type": token.get("token_type"),
            "scope": token.get("scope"),
            "expires_in": token.get("expires_in"),
            "refresh_token": "refresh_token" in token,
        },
        "id_token": {
            "header": header,
            "claims": dict(claims),
            "nonce_matched": claims["nonce"] == nonce,
            "at_hash_verified": True,
        },
        "userinfo": userinfo,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Refused as refused:
        print(f"authlib_code_flow: refused: {refused}", file=sys.stderr)
        sys.exit(1)
