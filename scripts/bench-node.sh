#!/usr/bin/env bash
# Benchmarks the @keymesh/verify Node package (see BENCHMARKS.md): verifications/s against jose, the memory of a
# process holding 100 000 API keys, and the package's size.
#   scripts/bench-node.sh [--rounds N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-node.sh
cd filters/node
node bench/verify.mjs "$@"
node --expose-gc bench/verify.mjs --memory --keys 100000
(cd pkg && npm pack --dry-run --json 2>/dev/null) |
  node -e 'const [p] = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(`package: ${p.filename}: ${(p.size / 1024).toFixed(0)} KiB packed, ${(p.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${p.entryCount} files`)'
