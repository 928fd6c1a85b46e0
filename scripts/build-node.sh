#!/usr/bin/env bash
# Builds the @keymesh/verify npm package in filters/node/pkg: keymesh-node for wasm32-unknown-unknown (release:
# opt-level 3 + LTO), then wasm-bindgen (the CLI of the exact crate version pinned in Cargo.toml) into
# filters/node/pkg/wasm/. The package's JavaScript, declarations and README are committed next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
want="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' Cargo.toml)"
have="$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2 || true)"
if [ "$have" != "$want" ]; then
  echo "wasm-bindgen CLI ${have:-missing}, need $want: run scripts/setup.sh" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q --release --target wasm32-unknown-unknown -p keymesh-node
rm -rf filters/node/pkg/wasm
wasm-bindgen --target nodejs --out-dir filters/node/pkg/wasm "$target/wasm32-unknown-unknown/release/keymesh_node.wasm"
echo "built filters/node/pkg ($(du -sh filters/node/pkg/wasm/keymesh_node_bg.wasm | cut -f1) wasm)"
