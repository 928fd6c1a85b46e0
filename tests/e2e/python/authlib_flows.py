"""A third-party OAuth2 client (Authlib) against the running keymesh sidecar.

    authlib_flows.py obtain          run every flow; print the tokens obtained as JSON on stdout
    authlib_flows.py revoke TOKEN    revoke an access token as the confidential client

Environment: KEYMESH_URL (the issuer), WEB_CLIENT_ID, WEB_CLIENT_SECRET, WEB_REDIRECT_URI, NATIVE_CLIENT_ID,
NATIVE_REDIRECT_URI (a loopback URI with the app's port), USERNAME, PASSWORD, ORDERS, PAYMENTS.

Authlib does the OAuth parts (authorization URL with PKCE, token requests, refresh, revocation, introspection);
`requests` stands in for the user's browser on the login and consent pages. Every step asserts what it gets, so a
non-zero exit status means a flow failed; the traceback says which.
"""

import json
import os
import sys
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from consent_forms import login_and_approve

ENV = os.environ
BASE = ENV["KEYMESH_URL"].rstrip("/")
ORDERS, PAYMENTS = ENV["ORDERS"], ENV["PAYMENTS"]


def log(message):
    print(f"[authlib] {message}", file=sys.stderr, flush=True)


def metadata():
    doc = requests.get(f"{BASE}/.well-known/oauth-authorization-server", timeout=10).json()
    assert doc["issuer"] == BASE, doc
    assert "S256" in doc["code_challenge_methods_supported"], doc
    assert doc["response_types_supported"] == ["code"], doc
    return doc


def resources_body(*resources):
    return urlencode([("resource", r) for r in resources])


class Session(OAuth2Session):
    """Authlib's session, except that a token request's form goes out as encoded.

    Authlib 1.x posts the token request as `data=dict(url_decode(body))` (`OAuth2Client._fetch_token`), which
    keeps only the last of repeated parameters; RFC 8707 repeats `resource` to ask for several APIs. Everything
    else (client authentication, PKCE, parsing, errors) is Authlib's own.
    """

    def _fetch_token(self, url, body="", headers=None, auth=None, method="POST", **kwargs):
        assert method.upper() == "POST"
        response = self.session.post(url, data=body, headers=headers, auth=auth, **kwargs)
        for hook in self.compliance_hook["access_token_response"]:
            response = hook(response)
        return self.parse_response_token(response)


def code_flow(session, meta, redirect_uri, **authorize_params):
    verifier = generate_token(64)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, **authorize_params
    )
    location = login_and_approve(url)
    assert location.startswith(redirect_uri + "?"), location
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [state] and query["iss"] == [BASE], query
    return session.fetch_token(
        meta["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
    )


def obtain():
    meta = metadata()
    web_id, web_secret = ENV["WEB_CLIENT_ID"], ENV["WEB_CLIENT_SECRET"]
    out = {}

    log("client_credentials for two resources (client_secret_basic)")
    machine = Session(web_id, web_secret, token_endpoint_auth_method="client_secret_basic")
    cc = machine.fetch_token(
        meta["token_endpoint"],
        grant_type="client_credentials",
        scope="orders:read payments:read",
        body=resources_body(ORDERS, PAYMENTS),
    )
    assert cc["token_type"].lower() == "bearer" and "refresh_token" not in cc, cc
    cc_info = machine.introspect_token(meta["introspection_endpoint"], token=cc["access_token"]).json()
    assert cc_info["active"] is True and sorted(cc_info["aud"]) == sorted([ORDERS, PAYMENTS]), cc_info
    out["client_credentials"] = cc["access_token"]

    log("authorization code + PKCE, confidential client (client_secret_post)")
    web = Session(
        web_id,
        web_secret,
        redirect_uri=ENV["WEB_REDIRECT_URI"],
        scope="orders:read payments:read",
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",
    )
    token = code_flow(web, meta, ENV["WEB_REDIRECT_URI"], resource=[ORDERS, PAYMENTS])
    assert token["scope"] == "orders:read payments:read" and token.get("refresh_token"), token
    out["authorization_code"] = token["access_token"]

    log("introspection of the code flow's tokens")
    info = web.introspect_token(meta["introspection_endpoint"], token=token["access_token"]).json()
    assert info["active"] is True and info["sub"] == ENV["USERNAME"] and info["client_id"] == web_id, info
    assert sorted(info["aud"]) == sorted([ORDERS, PAYMENTS]), info
    info = web.introspect_token(
        meta["introspection_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token"
    ).json()
    assert info["active"] is True, info

    log("refresh: rotated, narrowed to orders")
    first_refresh = token["refresh_token"]
    refreshed = web.refresh_token(
        meta["token_endpoint"], refresh_token=first_refresh, scope="orders:read", body=resources_body(ORDERS)
    )
    assert refreshed["refresh_token"] != first_refresh, refreshed
    assert refreshed["scope"] == "orders:read", refreshed
    out["refreshed_orders_only"] = refreshed["access_token"]
    gone = web.introspect_token(meta["introspection_endpoint"], token=first_refresh).json()
    assert gone == {"active": False}, gone

    log("authorization code + PKCE, public native client (loopback redirect, any port)")
    native = Session(
        ENV["NATIVE_CLIENT_ID"],
        None,
        redirect_uri=ENV["NATIVE_REDIRECT_URI"],
        scope="orders:read",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    native_token = code_flow(native, meta, ENV["NATIVE_REDIRECT_URI"], resource=[ORDERS])
    out["native"] = native_token["access_token"]

    log("revocation of the native app's refresh token: its family and access tokens go")
    revoked = native.revoke_token(
        meta["revocation_endpoint"], token=native_token["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200, revoked.text
    after = web.introspect_token(meta["introspection_endpoint"], token=native_token["access_token"]).json()
    assert after == {"active": False}, after
    try:
        native.refresh_token(meta["token_endpoint"], refresh_token=native_token["refresh_token"])
    except Exception as error:  # authlib raises OAuthError for the 400
        assert "invalid_grant" in str(error), error
    else:
        raise AssertionError("a revoked refresh token still works")

    log("foreign and unknown tokens")
    unknown = web.revoke_token(meta["revocation_endpoint"], token="no-such-token")
    assert unknown.status_code == 200, unknown.text
    foreign = machine.introspect_token(meta["introspection_endpoint"], token="garbage").json()
    assert foreign == {"active": False}, foreign

    print(json.dumps(out))


def revoke(token):
    meta = metadata()
    client = Session(ENV["WEB_CLIENT_ID"], ENV["WEB_CLIENT_SECRET"])
    response = client.revoke_token(meta["revocation_endpoint"], token=token, token_type_hint="access_token")
    assert response.status_code == 200, response.text


if __name__ == "__main__":
    if sys.argv[1:] == ["obtain"]:
        obtain()
    elif len(sys.argv) == 3 and sys.argv[1] == "revoke":
        revoke(sys.argv[2])
    else:
        sys.exit(__doc__)
