#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing, builds, and runs every test
# (core units + Wycheproof, sidecar against real Redis, the compiled filter in the wasmtime host, and the
# end-to-end tests against real Envoy, Redis and the sidecar, and the Node.js package under `node --test`), then a
# bounded run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export KEYMESH_ENVOY="$PWD/.venv/bin/envoy"
cargo build --release --target wasm32-wasip1 -p keymesh-authn -p keymesh-egress
scripts/build-node.sh
(cd filters/node && node --test test/*.test.mjs)
cargo test --workspace --no-fail-fast "$@"
# Every fuzz target for a bounded time (KEYMESH_FUZZ_SECS each, 15 by default: nine targets, about 5 min with the
# nightly build).
scripts/fuzz.sh --secs "${KEYMESH_FUZZ_SECS:-15}"
