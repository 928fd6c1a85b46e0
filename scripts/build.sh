#!/usr/bin/env bash
# Builds the filters (wasm32-wasip1, release: opt-level 3 + LTO) and the sidecar.
#   scripts/build.sh            debug sidecar
#   scripts/build.sh --release  release sidecar
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 -p keymesh-authn
if [ "${1:-}" = "--release" ]; then cargo build --release -p keymesh; else cargo build -p keymesh; fi
