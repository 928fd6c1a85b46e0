#!/usr/bin/env bash
# keymesh benchmark: keymesh authn vs Envoy's native jwt_authn (with and without jwt_cache_config), no filter and
# two do-nothing wasm modules (the floor: empty_min, empty_sdk),
# on the same Envoy binary, the same upstream and the same tokens, measured with wrk, in one interleaved run.
#   scripts/bench.sh                 full run (about 11 min): 20000-token pools, 5 s cells after 1 s warm-up, 3 reps
#   scripts/bench.sh --quick         smoke run (about 2 min): 2000-token pools, 1 s cells, no per-cell warm-up, 2 reps
#   scripts/bench.sh [--quick] ARGS  ARGS go to `keymesh-bench run`, e.g. --pin, --reps 5, --concurrency 2
#   scripts/bench.sh --api-keys [--quick] [ARGS]  API keys instead: keymesh vs Envoy's api_key_auth holding the same
#                                    keys ($KEYMESH_BENCH_KEYS, default 100000): delivery time, memory at
#                                    --concurrency 2, throughput; ARGS go to `keymesh-bench run-api-keys`
#   scripts/bench.sh --token-endpoint [SECONDS] [CONNECTIONS...]  client_credentials tokens/s and latency at the
#                                    release sidecar with real Redis (default 10 s at 16 and 64 connections)
#   scripts/bench.sh --exchange [SECONDS]  RFC 8693 token exchanges/s and latency at the release sidecar (16 and 64
#                                    connections), then the egress filter's added latency with a cached token
#                                    against the same route without it, in one interleaved run (1 and 16
#                                    connections, 3 rounds); SECONDS per cell, default 5
#   scripts/bench.sh --sidecar [KEYS...]  the release sidecar holding KEYS API keys (default 100000 1000000; a row
#                                    with none comes first): its RSS, the time to load them from Redis and to build
#                                    a full bundle; results in bench/results/sidecar-latest.md and .json
# Results: bench/results/latest.md (also printed) and bench/results/latest.json; configs and logs in
# $CARGO_TARGET_DIR/bench-data/run. Every process started here is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

command_line="scripts/bench.sh${*:+ $*}"
quick=0
api_keys=0
token_endpoint=0
exchange=0
sidecar=0
run_args=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --api-keys) api_keys=1 ;;
    --token-endpoint) token_endpoint=1 ;;
    --exchange) exchange=1 ;;
    --sidecar) sidecar=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) run_args+=("$arg") ;;
  esac
done

if [ "$api_keys" = 1 ]; then
  keys="${KEYMESH_BENCH_KEYS:-100000}"
  if [ "$quick" = 1 ]; then
    run_args=(--duration 1 --cell-warmup 0 --warmup 2 --reps 2 "${run_args[@]}")
  fi
elif [ "$quick" = 1 ]; then
  pool=2000
  run_args=(--duration 1 --cell-warmup 0 --warmup 3 --reps 2 "${run_args[@]}")
else
  pool="${KEYMESH_BENCH_POOL:-20000}"
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
data="$target/bench-data"
work="$data/run"
bin="$target/release/keymesh-bench"
pidfile="$work/pids"

bench_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  # keymesh-bench lists each child it has running (each in its own process group): stop what it left behind.
  if [ -s "$pidfile" ]; then
    while read -r pid name; do
      if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name ($pid)"
        kill -TERM -- "-$pid" 2>/dev/null || true
      fi
    done <"$pidfile"
    sleep 1
    while read -r pid _; do kill -KILL -- "-$pid" 2>/dev/null || true; done <"$pidfile"
    : >"$pidfile"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  log "installing Debian's wrk"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk >/dev/null
fi

if [ "$token_endpoint" = 1 ]; then
  log "token endpoint: cargo run --release -p keymesh-e2e --example token_endpoint -- ${run_args[*]}"
  cargo run -q --release -p keymesh-e2e --example token_endpoint -- "${run_args[@]}"
  exit 0
fi

if [ "$exchange" = 1 ]; then
  secs="${run_args[0]:-5}"
  log "token exchange: cargo run --release -p keymesh-e2e --example token_exchange -- $secs 16 64"
  cargo run -q --release -p keymesh-e2e --example token_exchange -- "$secs" 16 64
  log "egress filter: cargo run --release -p keymesh-e2e --example egress_latency -- $secs 3 1 16"
  KEYMESH_ENVOY="${KEYMESH_ENVOY:-$PWD/.venv/bin/envoy}" \
    cargo run -q --release -p keymesh-e2e --example egress_latency -- "$secs" 3 1 16
  exit 0
fi

if [ "$sidecar" = 1 ]; then
  log "building the sidecar and keymesh-bench (release)"
  cargo build -q --release -p keymesh
  cargo build -q --release -p keymesh-bench
  mkdir -p "$work"
  keys="${run_args[*]:-100000 1000000}"
  log "running: keymesh-bench sidecar-memory --keys ${keys// /,}"
  "$bin" sidecar-memory --keys "${keys// /,}" --work "$work" --out bench/results \
    --sidecar "$target/release/keymesh" --command "$command_line" &
  bench_pid=$!
  wait "$bench_pid"
  bench_pid=""
  exit 0
fi

log "building the filter and the floor modules (wasm32-wasip1, release) and keymesh-bench (release)"
cargo build -q --release --target wasm32-wasip1 -p keymesh-authn -p keymesh-bench-empty-sdk -p keymesh-bench-empty-min
cargo build -q --release -p keymesh-bench

if [ "$api_keys" = 1 ]; then
  keydata="$data/api-keys"
  if [ ! -f "$keydata/manifest.json" ] || ! grep -q "\"keys\": $keys," "$keydata/manifest.json" \
     || [ "$bin" -nt "$keydata/manifest.json" ]; then
    log "preparing $keys API keys"
    "$bin" prepare-api-keys --out "$keydata" --keys "$keys"
  fi
  mkdir -p "$work"
  log "running: keymesh-bench run-api-keys ${run_args[*]}"
  "$bin" run-api-keys --data "$keydata" --work "$work" --out bench/results \
    --envoy "$PWD/.venv/bin/envoy" --wasm "$target/wasm32-wasip1/release/keymesh_authn.wasm" \
    --command "$command_line" "${run_args[@]}" &
  bench_pid=$!
  wait "$bench_pid"
  bench_pid=""
  exit 0
fi

# Token pools are slow to sign (RS256): reuse them unless the size changed, the binary is newer, or they are a
# week old (they are valid for 30 days).
manifest="$data/manifest.json"
if [ ! -f "$manifest" ] || ! grep -q "\"pool\": $pool," "$manifest" || [ "$bin" -nt "$manifest" ] \
   || [ -n "$(find "$manifest" -mtime +7)" ]; then
  log "preparing token pools ($pool per algorithm)"
  "$bin" prepare --out "$data" --pool "$pool"
fi

mkdir -p "$work"
log "running: keymesh-bench run ${run_args[*]}"
"$bin" run --data "$data" --work "$work" --out bench/results \
  --envoy "$PWD/.venv/bin/envoy" --wasm "$target/wasm32-wasip1/release/keymesh_authn.wasm" \
  --command "$command_line" "${run_args[@]}" &
bench_pid=$!
wait "$bench_pid"
bench_pid=""
