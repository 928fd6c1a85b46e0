#!/usr/bin/env bash
# Fuzzes keymesh-core with cargo-fuzz (libFuzzer): the request decision (`authorize`), JWKs and key sets
# (`key_set`), bundle and delta parse + apply (`bundle_apply`), and the filter configuration (`filter_config`).
#
#   scripts/fuzz.sh                 every target for 20 s (what scripts/test.sh runs)
#   scripts/fuzz.sh --long          every target for 10 min
#   scripts/fuzz.sh --secs N [T…]   N seconds each, only targets T…
#
# Seeds come from the scenario table, the Wycheproof vectors and the fixture bundle (tests/testkit/examples/
# fuzz_seeds.rs); the corpora grow in fuzz/corpus/ (not committed). A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run: turn it into a regression test next to the code it broke.
# Needs the pinned nightly and cargo-fuzz (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${KEYMESH_FUZZ_TOOLCHAIN:-nightly-2026-10-30}"
ALL_TARGETS=(authorize key_set bundle_apply filter_config)
secs=20
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) secs=600 ;;
    --secs) secs="$2"; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

cargo run -q -p keymesh-testkit --example fuzz_seeds -- fuzz/corpus
cd fuzz
cargo "+${TOOLCHAIN}" fuzz build -O
for target in "${targets[@]}"; do
  mkdir -p "artifacts/${target}"
  log="target/fuzz-${target}.log"
  echo "fuzzing ${target} for ${secs} s"
  # -rss_limit_mb: a single input must not need more than 2 GiB; -max_len: tokens and bundles of real size.
  if ! cargo "+${TOOLCHAIN}" fuzz run -O "${target}" "corpus/${target}" -- \
      -max_total_time="${secs}" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 >"${log}" 2>&1; then
    tail -40 "${log}"
    echo "fuzz target ${target} failed; the input is in fuzz/artifacts/${target}/" >&2
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "${log}" | tail -1 | grep -o '[0-9]*' || echo '?')
  echo "  ${target}: ${execs} execs, ${cov} coverage points (edges), corpus $(ls "corpus/${target}" | wc -l) inputs"
done
