"""The login and consent pages in headless Chromium (Debian's chromium and chromium-driver, through Selenium).

Environment: KEYMESH_URL (the issuer), CLIENT_ID (a public client registered with http://127.0.0.1/callback),
CLIENT_NAME, USERNAME, PASSWORD, RESOURCES (space separated), SCOPE, SCREENSHOT (where to save the consent page).

Runs a tiny HTTP server as the app's loopback redirect target, then:
  1. approve: opens the authorization URL, logs in, checks the consent page names the app, its APIs and scopes,
     saves a screenshot, approves, and lands on the redirect URI with a code and the original state;
  2. deny: opens a second request (already logged in: straight to consent), denies, and lands on the redirect URI
     with error=access_denied and that request's state.
Prints {"code", "code_verifier", "redirect_uri", "denied_url", "callbacks"} as JSON. Exit status non-zero on any
failed check.
"""

import base64
import hashlib
import http.server
import json
import os
import secrets
import threading
from urllib.parse import parse_qs, urlencode, urlparse

from browser import chromium, log
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ENV = os.environ
BASE = ENV["KEYMESH_URL"].rstrip("/")

class Callback(http.server.BaseHTTPRequestHandler):
    """The app's redirect target: records each request path and answers with a small page."""

    seen = []

    def do_GET(self):
        Callback.seen.append(self.path)
        body = b"<!doctype html><title>app</title><p>Back in the app.</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def authorization_url(redirect_uri, state, challenge):
    params = [
        ("response_type", "code"),
        ("client_id", ENV["CLIENT_ID"]),
        ("redirect_uri", redirect_uri),
        ("scope", ENV["SCOPE"]),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ] + [("resource", r) for r in ENV["RESOURCES"].split()]
    return f"{BASE}/oauth/authorize?{urlencode(params)}"


def landed(driver, redirect_uri):
    WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(redirect_uri + "?"))
    return driver.current_url


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"

    driver = chromium(900, 900)
    try:
        wait = WebDriverWait(driver, 10)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

        log("approve: log in")
        state = secrets.token_urlsafe(16)
        driver.get(authorization_url(redirect_uri, state, challenge))
        wait.until(EC.presence_of_element_located((By.ID, "username"))).send_keys(ENV["USERNAME"])
        driver.find_element(By.ID, "password").send_keys(ENV["PASSWORD"])
        driver.find_element(By.CSS_SELECTOR, "button[value=login]").click()

        log("approve: consent page")
        approve = wait.until(EC.element_to_be_clickable((By.ID, "approve")))
        assert driver.find_element(By.ID, "client-name").text == ENV["CLIENT_NAME"], driver.page_source
        assert driver.find_element(By.ID, "client-id").text == ENV["CLIENT_ID"], driver.page_source
        assert driver.find_element(By.ID, "user").text == ENV["USERNAME"], driver.page_source
        apis = driver.find_element(By.ID, "resources").text
        scopes = driver.find_element(By.ID, "scopes").text
        for resource in ENV["RESOURCES"].split():
            assert resource in apis, apis
        for scope in ENV["SCOPE"].split():
            assert scope in scopes, scopes
        os.makedirs(os.path.dirname(ENV["SCREENSHOT"]), exist_ok=True)
        assert driver.save_screenshot(ENV["SCREENSHOT"]), "screenshot failed"
        approve.click()

        url = landed(driver, redirect_uri)
        query = parse_qs(urlparse(url).query)
        assert query["state"] == [state], (url, state)
        assert query["iss"] == [BASE], url
        assert "Back in the app." in driver.page_source, driver.page_source
        code = query["code"][0]

        log("deny")
        denied_state = secrets.token_urlsafe(16)
        driver.get(authorization_url(redirect_uri, denied_state, challenge))
        wait.until(EC.element_to_be_clickable((By.ID, "deny"))).click()
        denied_url = landed(driver, redirect_uri)
        query = parse_qs(urlparse(denied_url).query)
        assert query["error"] == ["access_denied"], denied_url
        assert query["state"] == [denied_state], denied_url
        assert "code" not in query, denied_url
    finally:
        driver.quit()
        server.shutdown()

    print(
        json.dumps(
            {
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
                "denied_url": denied_url,
                "callbacks": Callback.seen,
            }
        )
    )


if __name__ == "__main__":
    main()
