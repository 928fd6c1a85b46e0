"""The account page (/account/api-keys) in headless Chromium (Debian's chromium and chromium-driver, through Selenium).

Environment: KEYMESH_URL (the issuer), USERNAME, PASSWORD, RESOURCE and SCOPE (allowed by the operator's policy),
ARTIFACTS (the directory for screenshots), PHASE and, for PHASE=act, COOKIE, KEY_ID and ACTION.

PHASE=create: signs in, checks the accessibility basics of the login page and the keys page, creates a key with
the form, reads it from the page (saving a screenshot), opens the page again and checks that the key is listed by
its prefix and never shown again. Prints {"key", "id", "prefix", "cookie"} as JSON.

PHASE=act: opens the page with the session cookie of the first phase and presses the key's ACTION button (disable,
enable or revoke) in its row; checks the row's new state (or, for revoke, that the row is gone; for disable, also
that the key's last use is shown). Prints
{"action", "id"}.

Accessibility basics, checked on each page: every visible input and select has a label; Tab visits every focusable
element in the visual order (top to bottom, left to right within a line); text has a contrast of at least 4.5:1
with its background (from computed styles; backgrounds are taken from the nearest opaque ancestor). Exit status
non-zero on any failed check.
"""

import json
import os

from browser import chromium, log
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ENV = os.environ
BASE = ENV["KEYMESH_URL"].rstrip("/")
PAGE = f"{BASE}/account/api-keys"
ARTIFACTS = ENV["ARTIFACTS"]
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea"

UNLABELLED = """
return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML);
"""

CONTRAST = """
function rgba(text) {
  const m = text.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return [0, 0, 0, 0];
  const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function background(el) {
  for (; el; el = el.parentElement) {
    const c = rgba(getComputedStyle(el).backgroundColor);
    if (c[3] >= 1) return c;
  }
  return [255, 255, 255, 1];
}
function luminance(c) {
  const [r, g, b] = c.slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
const failures = [];
let checked = 0;
for (const el of document.body.querySelectorAll('*')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const rect = el.getBoundingClientRect();
  if (!own || rect.width === 0 || rect.height === 0) continue;
  const bg = background(el);
  let fg = rgba(getComputedStyle(el).color);
  fg = [0, 1, 2].map(i => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  checked++;
  if (ratio < 4.5) failures.push(`${ratio.toFixed(2)}: ${el.outerHTML.slice(0, 120)}`);
}
return {checked, failures};
"""


def check_accessibility(driver, what):
    unlabelled = driver.execute_script(UNLABELLED)
    assert not unlabelled, f"{what}: inputs without a label: {unlabelled}"

    contrast = driver.execute_script(CONTRAST)
    assert contrast["checked"] > 3, f"{what}: no text checked: {contrast}"
    assert not contrast["failures"], f"{what}: contrast below 4.5:1: {contrast['failures']}"

    focusable = driver.execute_script(
        f"return [...document.querySelectorAll('{FOCUSABLE}')].filter(e => !e.disabled && e.getClientRects().length)"
    )
    # Start Tab navigation from the top: a click on the first, non-interactive, element of the page moves the
    # sequential focus starting point there.
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, "main > :first-child")).click().perform()
    visited = []
    for _ in focusable:
        ActionChains(driver).send_keys(Keys.TAB).perform()
        visited.append(driver.switch_to.active_element)
    assert [e.id or e.get_attribute("outerHTML") for e in visited] == [
        e.id or e.get_attribute("outerHTML") for e in focusable
    ], f"{what}: Tab does not visit every control in document order"
    positions = [
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.top + window.scrollY, r.left, r.bottom + window.scrollY]",
            e,
        )
        for e in visited
    ]
    for (before, after, element) in zip(positions, positions[1:], visited[1:]):
        top, left, bottom = after
        next_line = top >= before[2] - 2
        same_line_to_the_right = abs(top - before[0]) <= 4 and left >= before[1]
        assert next_line or same_line_to_the_right, (
            f"{what}: focus moves against the visual order to {element.get_attribute('outerHTML')[:120]} "
            f"({before} -> {after})"
        )
    log(f"{what}: {len(visited)} controls in order, {contrast['checked']} texts with enough contrast, all labelled")


def screenshot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(path), f"screenshot {path} failed"
    log(f"screenshot {path}")


def sign_in(driver, wait):
    driver.get(PAGE)
    wait.until(EC.presence_of_element_located((By.ID, "username")))
    check_accessibility(driver, "login page")
    screenshot(driver, "account-login.png")
    driver.find_element(By.ID, "username").send_keys(ENV["USERNAME"])
    driver.find_element(By.ID, "password").send_keys(ENV["PASSWORD"])
    driver.find_element(By.CSS_SELECTOR, "button[value=login]").click()
    try:
        wait.until(EC.presence_of_element_located((By.ID, "user")))
    except Exception:
        log(f"not signed in at {driver.current_url}:\n{driver.page_source}")
        raise
    assert driver.find_element(By.ID, "user").text == ENV["USERNAME"], driver.page_source


def create(driver, wait):
    sign_in(driver, wait)
    check_accessibility(driver, "keys page")
    driver.find_element(By.ID, "label").send_keys("browser key")
    driver.find_element(By.CSS_SELECTOR, f"input[name=resource][value='{ENV['RESOURCE']}']").click()
    driver.find_element(By.CSS_SELECTOR, f"input[name=scope][value='{ENV['SCOPE']}']").click()
    driver.find_element(By.ID, "create").click()

    key = wait.until(EC.presence_of_element_located((By.ID, "new-key-value"))).text
    assert key.startswith("km_"), driver.page_source
    check_accessibility(driver, "page with the new key")
    screenshot(driver, "account-new-key.png")
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-key-id]")
    key_id = row.get_attribute("data-key-id")
    prefix = row.find_element(By.CSS_SELECTOR, ".key-prefix").text.rstrip("…")
    assert key.startswith(prefix), (key[:12], prefix)

    # Shown once: opening the page again lists the key by its prefix only.
    driver.get(PAGE)
    wait.until(EC.presence_of_element_located((By.ID, f"key-{key_id}")))
    assert key not in driver.page_source, "the key is shown again"
    assert not driver.find_elements(By.ID, "new-key"), "the new-key panel is shown again"
    row = driver.find_element(By.ID, f"key-{key_id}")
    assert "browser key" in row.text and prefix in row.text, row.text
    assert row.find_element(By.CSS_SELECTOR, ".state").text == "active", row.text
    screenshot(driver, "account-keys.png")
    cookie = next(c for c in driver.get_cookies() if c["name"].endswith("keymesh_account"))
    assert cookie["httpOnly"], cookie
    return {"key": key, "id": key_id, "prefix": prefix, "cookie": cookie["value"]}


def act(driver, wait):
    key_id, action = ENV["KEY_ID"], ENV["ACTION"]
    driver.get(PAGE)
    driver.add_cookie({"name": "keymesh_account", "value": ENV["COOKIE"], "path": "/", "httpOnly": True})
    driver.get(PAGE)
    row = wait.until(EC.presence_of_element_located((By.ID, f"key-{key_id}")))
    row.find_element(By.CSS_SELECTOR, f"button[value={action}]").click()
    # The form posts and the page is replaced: wait for that, or the old page's row may still be found below.
    wait.until(EC.staleness_of(row))
    if action == "revoke":
        wait.until(EC.presence_of_element_located((By.ID, "no-keys")))
        assert not driver.find_elements(By.ID, f"key-{key_id}"), driver.page_source
        screenshot(driver, "account-revoked.png")
    else:
        expected = {"disable": "disabled", "enable": "active"}[action]
        state = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#key-{key_id} .state"))).text
        assert state == expected, (action, state)
        if action == "disable":
            last_used = driver.find_element(By.CSS_SELECTOR, f"#key-{key_id} .last-used").text
            assert last_used.endswith("UTC"), f"last used: {last_used!r}"
            check_accessibility(driver, "page with a disabled key")
            screenshot(driver, "account-disabled.png")
    return {"action": action, "id": key_id}


def main():
    driver = chromium(1400, 1000)
    try:
        wait = WebDriverWait(driver, 10)
        result = create(driver, wait) if ENV["PHASE"] == "create" else act(driver, wait)
    finally:
        driver.quit()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
