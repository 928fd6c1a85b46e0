#!/usr/bin/env bash
# The keymesh demo stack on one machine: Redis, the sidecar, two demo APIs (orders, payments) each behind its own
# Envoy listener with the keymesh filter, an unfiltered listener in front of orders as a baseline for load tests, and
# orders' egress listener, through which orders calls payments on its caller's behalf (RFC 8693 token exchange).
# Prints what to try (every printed line runs as printed); Ctrl-C stops everything it started.
#   Redis 127.0.0.1:6380 · sidecar 127.0.0.1:8080 · orders 127.0.0.1:10001 · payments 127.0.0.1:10002
#   orders without the filter 127.0.0.1:10003 · orders' egress 127.0.0.1:10004 · Envoy admin 127.0.0.1:9901
#   echo upstreams 127.0.0.1:9001 (orders, relaying /orders/{id}/payment to payments through 10004), 9002
#
# Settings (environment; the defaults are what a user wants, the others let tests run the demo beside a real one):
#   KEYMESH_DEMO_SETUP=0          skip scripts/setup.sh (what it installs is already there)
#   KEYMESH_DEMO_PROFILE=debug    build and run debug binaries instead of release ones (quicker to build)
#   KEYMESH_DEMO_PORT_OFFSET=N    add N to every port above
#   KEYMESH_DEMO_STATE=DIR        keep state and logs in DIR instead of .demo/
#   KEYMESH_ENVOY=PATH            the Envoy binary (default: .venv/bin/envoy, installed by scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STATE="${KEYMESH_DEMO_STATE:-$ROOT/.demo}"
PROFILE="${KEYMESH_DEMO_PROFILE:-release}"
OFFSET="${KEYMESH_DEMO_PORT_OFFSET:-0}"
log() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }

case "$PROFILE" in release | debug) ;; *) echo "KEYMESH_DEMO_PROFILE must be release or debug" >&2; exit 2 ;; esac
if ! [[ "$OFFSET" =~ ^[0-9]+$ ]] || [ "$OFFSET" -gt 50000 ]; then
  echo "KEYMESH_DEMO_PORT_OFFSET must be a number from 0 to 50000" >&2
  exit 2
fi
REDIS_PORT=$((6380 + OFFSET)) SIDECAR_PORT=$((8080 + OFFSET)) ADMIN_PORT=$((9901 + OFFSET))
ORDERS_UP=$((9001 + OFFSET)) PAYMENTS_UP=$((9002 + OFFSET))
ORDERS=$((10001 + OFFSET)) PAYMENTS=$((10002 + OFFSET)) UNFILTERED=$((10003 + OFFSET)) EGRESS=$((10004 + OFFSET))
SIDECAR="http://127.0.0.1:$SIDECAR_PORT"

if [ "${KEYMESH_DEMO_SETUP:-1}" != 0 ]; then scripts/setup.sh; fi
log "building the filter (wasm, release) and the sidecar and echo upstream ($PROFILE)"
if [ "$PROFILE" = release ]; then scripts/build.sh --release; else scripts/build.sh; fi
BIN="target/$PROFILE"
[ -z "${CARGO_TARGET_DIR:-}" ] || BIN="$CARGO_TARGET_DIR/$PROFILE"
KEYMESH="$BIN/keymesh"

for port in $REDIS_PORT $SIDECAR_PORT $ORDERS_UP $PAYMENTS_UP $ADMIN_PORT $ORDERS $PAYMENTS $UNFILTERED $EGRESS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop whatever holds it (an earlier demo?) and try again" >&2
    exit 1
  fi
done

mkdir -p "$STATE/redis"
# The key-encryption key that seals the sidecar's private signing keys in Redis (demo only: a real deployment keeps
# it in a secret store). Created once, reused by every later run.
if [ ! -s "$STATE/kek" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 >"$STATE/kek")
fi
# One configuration for the sidecar and for every `keymesh` command in another terminal (KEYMESH_CONFIG): the same
# Redis, the same issuer, the same KEK (a relative kek_file is relative to this file).
cat >"$STATE/keymesh.toml" <<TOML
# Written by scripts/demo.sh: the demo sidecar's configuration. \`export KEYMESH_CONFIG=$STATE/keymesh.toml\`
# and every keymesh command acts on the running demo.
redis_url = "redis://127.0.0.1:$REDIS_PORT/"
listen = "127.0.0.1:$SIDECAR_PORT"
issuer = "$SIDECAR"
kek_file = "kek"
TOML
export KEYMESH_CONFIG="$STATE/keymesh.toml"
# Settings in the environment would override the file, for the demo's sidecar but not for the user's other terminal.
unset KEYMESH_KEK KEYMESH_KEK_FILE KEYMESH_REDIS_URL KEYMESH_LISTEN KEYMESH_ISSUER KEYMESH_KEY_PREFIX

ENVOY_CONFIG=envoy/demo.yaml
if [ "$OFFSET" != 0 ]; then
  ENVOY_CONFIG="$STATE/envoy.yaml"
  cp envoy/demo.yaml "$ENVOY_CONFIG"
  # Highest first, so that no port is moved twice.
  for port in 10004 10003 10002 10001 9901 9002 9001 8080; do
    sed -i "s/port_value: $port /port_value: $((port + OFFSET)) /" "$ENVOY_CONFIG"
  done
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

wait_for() { # wait_for WHAT URL
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$2" && return 0
    sleep 0.1
  done
  echo "$1 did not come up; logs are in $STATE/" >&2
  exit 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" --save '' --appendonly no \
  >"$STATE/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$KEYMESH" serve >"$STATE/sidecar.log" 2>&1 &
pids+=($!)
wait_for "the sidecar" "$SIDECAR/healthz"

"$BIN/keymesh-echo" "$ORDERS_UP" orders --relay "$EGRESS" >"$STATE/orders.log" 2>&1 &
pids+=($!)
"$BIN/keymesh-echo" "$PAYMENTS_UP" payments >"$STATE/payments.log" 2>&1 &
pids+=($!)

# Envoy runs in its own session so a Ctrl-C meant for this script reaches it only through cleanup. No hot restart:
# its shared memory would clash with any other Envoy on the machine.
setsid "${KEYMESH_ENVOY:-.venv/bin/envoy}" -c "$ENVOY_CONFIG" --concurrency 2 --disable-hot-restart \
  --log-path "$STATE/envoy.log" >/dev/null 2>&1 &
pids+=($!)
wait_for "Envoy" "http://127.0.0.1:$ADMIN_PORT/ready"
wait_for "the orders upstream" "http://127.0.0.1:$ORDERS_UP/"
wait_for "the payments upstream" "http://127.0.0.1:$PAYMENTS_UP/"

"$KEYMESH" client create --id demo --secret demo-secret --force \
  --resource https://orders.local --resource https://payments.local \
  --scope orders:read --scope payments:read >/dev/null
log "client 'demo' (secret 'demo-secret') may ask for https://orders.local and https://payments.local"
# The orders workload's own client: its egress filter (envoy/demo.yaml) exchanges callers' tokens for payments.
"$KEYMESH" client create --id orders --secret orders-secret --force \
  --resource https://orders.local --scope payments:read \
  --exchange-resource https://payments.local >/dev/null
log "client 'orders' may exchange its callers' tokens for https://payments.local (scope payments:read)"

# Every command line below is run by tests/e2e/tests/demo.rs exactly as printed, and its trailing comment is
# checked: a status, which API saw which client, or what the output shows. Keep that grammar when adding lines.
cat <<TRY

keymesh demo is up. Run these from $ROOT in another terminal (jq and wrk come with scripts/setup.sh):

  # one token for both APIs
  TOKEN=\$(curl -s -u demo:demo-secret $SIDECAR/oauth/token \\
      -d grant_type=client_credentials \\
      -d resource=https://orders.local -d resource=https://payments.local | jq -r .access_token)
  curl -si -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$ORDERS/orders/42     # 200, orders sees client demo
  curl -si -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$PAYMENTS/payments/7    # 200, payments sees client demo

  # a token for orders only is refused by payments
  ORDERS=\$(curl -s -u demo:demo-secret $SIDECAR/oauth/token \\
      -d grant_type=client_credentials -d resource=https://orders.local | jq -r .access_token)
  curl -si -H "Authorization: Bearer \$ORDERS" http://127.0.0.1:$PAYMENTS/payments/7  # 401 invalid_token (audience)
  # ... but works through orders: orders calls payments through its egress listener, which exchanges the token
  curl -si -H "Authorization: Bearer \$ORDERS" http://127.0.0.1:$ORDERS/orders/42/payment  # 200, payments sees subject demo acting through orders

  # no token
  curl -si http://127.0.0.1:$ORDERS/orders/42                                      # 401 with a Bearer challenge

  # the keymesh CLI acts on the running demo once it finds the demo's configuration (Redis, issuer, KEK)
  export KEYMESH_CONFIG=$STATE/keymesh.toml
  $KEYMESH client create --id reports --secret reports-secret \\
      --resource https://orders.local --scope orders:read    # client_id: reports
  REPORTS=\$(curl -s -u reports:reports-secret $SIDECAR/oauth/token \\
      -d grant_type=client_credentials -d resource=https://orders.local | jq -r .access_token)
  curl -si -H "Authorization: Bearer \$REPORTS" http://127.0.0.1:$ORDERS/orders/42   # 200, orders sees client reports
  $KEYMESH key rotate        # a new signing key, published now, signing once every proxy holds it
  $KEYMESH key list          # the active key and the next one

  # which bundle version each proxy holds (this Envoy's node id is demo-envoy)
  curl -s $SIDECAR/v1/status | jq .                                  # proxies: demo-envoy
  curl -s $SIDECAR/.well-known/jwks.json | jq .                      # the public signing keys
  curl -s $SIDECAR/.well-known/oauth-authorization-server | jq .     # the issuer's metadata

  # keymesh's cost under load: orders through the filter ($ORDERS), then the same upstream without it ($UNFILTERED)
  for port in $ORDERS $UNFILTERED; do wrk -t2 -c64 -d5s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:\$port/orders/42; done  # no Non-2xx responses

Tokens last 5 minutes: fetch a new TOKEN when they stop working. Logs: $STATE/*.log · Ctrl-C stops everything.
TRY
wait -n "${pids[@]}" || true
log "a component exited; see $STATE/*.log"
