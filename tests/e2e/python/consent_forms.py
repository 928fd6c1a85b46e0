"""The sidecar's login and consent forms, filled in the way a user's browser would (shared by the e2e clients)."""

import os
import re

import requests

ENV = os.environ
BASE = ENV["KEYMESH_URL"].rstrip("/")


def hidden(html, name):
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in page: {html[:500]}"
    return match.group(1)


def login_and_approve(authorization_url):
    """What a user does in a browser: open the page, log in, approve. Returns the redirect's Location."""
    browser = requests.Session()
    page = browser.get(authorization_url, timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:500]
    consent = browser.post(
        f"{BASE}/oauth/authorize",
        data={
            "csrf": hidden(page.text, "csrf"),
            "request": hidden(page.text, "request"),
            "action": "login",
            "username": ENV["USERNAME"],
            "password": ENV["PASSWORD"],
        },
        timeout=10,
    )
    assert consent.status_code == 200 and "Approve" in consent.text, consent.text[:500]
    answer = browser.post(
        f"{BASE}/oauth/authorize",
        data={"csrf": hidden(consent.text, "csrf"), "request": hidden(consent.text, "request"), "action": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303, (answer.status_code, answer.text[:500])
    return answer.headers["Location"]
