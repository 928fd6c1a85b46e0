#!/usr/bin/env bash
# The keymesh demo stack on one machine: Redis, the sidecar, two demo APIs (orders, payments) each behind its own
# Envoy listener with the keymesh filter. Prints what to try; Ctrl-C stops everything it started.
#   Redis 127.0.0.1:6380 · sidecar 127.0.0.1:8080 · orders 127.0.0.1:10001 · payments 127.0.0.1:10002
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STATE="$ROOT/.demo"
log() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }

scripts/setup.sh
log "building the filter (wasm, release) and the sidecar (release)"
scripts/build.sh --release
KEYMESH="$ROOT/target/release/keymesh"

for port in 6380 8080 9001 9002 9901 10001 10002; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop whatever holds it (an earlier demo?) and try again" >&2
    exit 1
  fi
done

mkdir -p "$STATE/redis"
# The key-encryption key that seals the sidecar's private signing keys in Redis (demo only: a real deployment keeps
# it in a secret store). Created once, reused by every later run and by `keymesh key rotate`.
if [ ! -s "$STATE/kek" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 >"$STATE/kek")
fi
export KEYMESH_KEK_FILE="$STATE/kek"
pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_for() { # wait_for WHAT URL
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$2" && return 0
    sleep 0.1
  done
  echo "$1 did not come up; logs are in $STATE/" >&2
  exit 1
}

redis-server --port 6380 --bind 127.0.0.1 --dir "$STATE/redis" --save '' --appendonly no >"$STATE/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p 6380 ping >/dev/null 2>&1 && break; sleep 0.1; done

"$KEYMESH" serve >"$STATE/sidecar.log" 2>&1 &
pids+=($!)
wait_for "the sidecar" http://127.0.0.1:8080/healthz

python3 scripts/echo_upstream.py 9001 orders >"$STATE/orders.log" 2>&1 &
pids+=($!)
python3 scripts/echo_upstream.py 9002 payments >"$STATE/payments.log" 2>&1 &
pids+=($!)

# Envoy runs in its own session so a Ctrl-C meant for this script reaches it only through cleanup.
setsid .venv/bin/envoy -c envoy/demo.yaml --concurrency 2 --log-path "$STATE/envoy.log" >/dev/null 2>&1 &
pids+=($!)
wait_for "Envoy" http://127.0.0.1:9901/ready

"$KEYMESH" client create --id demo --secret demo-secret --force \
  --resource https://orders.local --resource https://payments.local \
  --scope orders:read --scope payments:read >/dev/null
log "client 'demo' (secret 'demo-secret') may ask for https://orders.local and https://payments.local"

cat <<'TRY'

keymesh demo is up. Try:

  # one token for both APIs
  TOKEN=$(curl -s -u demo:demo-secret http://127.0.0.1:8080/oauth/token \
      -d grant_type=client_credentials \
      -d resource=https://orders.local -d resource=https://payments.local | jq -r .access_token)
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:10001/orders/42     # 200, orders sees who you are
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:10002/payments/7    # 200, same token

  # a token for orders only is refused by payments
  ORDERS=$(curl -s -u demo:demo-secret http://127.0.0.1:8080/oauth/token \
      -d grant_type=client_credentials -d resource=https://orders.local | jq -r .access_token)
  curl -si -H "Authorization: Bearer $ORDERS" http://127.0.0.1:10002/payments/7  # 401 invalid_token (audience)

  # no token
  curl -si http://127.0.0.1:10001/orders/42                                      # 401 with a Bearer challenge

  # a second client, created while everything runs
  target/release/keymesh client create --id reports --resource https://orders.local --scope orders:read

  curl -s http://127.0.0.1:8080/.well-known/jwks.json
  curl -s http://127.0.0.1:8080/.well-known/oauth-authorization-server

(no jq? use: python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
Logs: .demo/*.log · Ctrl-C stops everything.
TRY
wait -n "${pids[@]}" || true
log "a component exited; see .demo/*.log"
