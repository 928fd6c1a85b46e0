#!/usr/bin/env bash
# Builds the filters (authn and egress, wasm32-wasip1, release: opt-level 3 + LTO), the sidecar and the demo's echo upstream.
#   scripts/build.sh            debug sidecar and echo upstream
#   scripts/build.sh --release  release sidecar and echo upstream
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 -p keymesh-authn -p keymesh-egress
if [ "${1:-}" = "--release" ]; then
  cargo build --release -p keymesh -p keymesh-echo
else
  cargo build -p keymesh -p keymesh-echo
fi
