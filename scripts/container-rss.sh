#!/usr/bin/env bash
# Measures the sidecar container's memory: RSS idle (first snapshot loaded, nothing asked), then the peak RSS
# (VmHWM) under load: N_KEYS API keys in the bundle, 200 long polls held open, and client_credentials token requests
# from wrk (64 connections, 20 s). Prints the figures BENCHMARKS.md records.
# With CHOSEN_SECRET=1 the client gets an operator-chosen secret, stored as Argon2id, so that every token request
# costs an Argon2id verification (about 19 MiB each; the sidecar runs at most argon2_concurrency of them at once).
#   scripts/container-rss.sh        (after scripts/images.sh; needs redis-server, wrk, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
image="localhost/keymesh/sidecar:${KEYMESH_IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}"
keys="${N_KEYS:-10000}"
work="$(mktemp -d)"
conf="$work/containers.conf"
nofile="$(ulimit -Sn)"; [ "$nofile" -gt 16384 ] && nofile=16384
printf '[containers]\nnetns = "host"\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' "$nofile" "$nofile" >"$conf"
export CONTAINERS_CONF="$conf"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port="$(free_port)"; port="$(free_port)"; name="keymesh-rss-$port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile "$work/redis.pid" --dir "$work" >/dev/null
cleanup() { podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; kill "$(cat "$work/redis.pid")" 2>/dev/null || true; jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
admin=rss-admin-token-0123456789abcdefghij
podman run -d --name "$name" --read-only -e KEYMESH_LISTEN="127.0.0.1:$port" \
  -e KEYMESH_REDIS_URL="redis://127.0.0.1:$redis_port/" -e KEYMESH_ADMIN_TOKEN="$admin" \
  -e KEYMESH_KEK="$(head -c 32 /dev/urandom | base64)" -e RUST_LOG=warn "$image" >/dev/null
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.2; done
pid="$(podman inspect --format '{{.State.Pid}}' "$name")"
mem() { awk -v f="$1" '$1==f":" {printf "%.1f MiB", $2/1024}' "/proc/$pid/status"; }
sleep 2
echo "idle: RSS $(mem VmRSS)"

# By default a generated secret (stored as SHA-256).
chosen=()
[ "${CHOSEN_SECRET:-0}" = 1 ] && chosen=(--secret "rss-chosen-secret-$port")
secret="$(podman run --rm -e KEYMESH_REDIS_URL="redis://127.0.0.1:$redis_port/" "$image" client create --id rss \
  --resource https://orders.example.com --scope orders:read "${chosen[@]}" --json \
  | sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p')"
basic="$(printf 'rss:%s' "$secret" | base64 -w0)"
for i in $(seq 1 "$keys"); do
  printf '{"owner":"o%d","label":"k","resources":["https://orders.example.com"]}\n' "$((i % 100))"
done | xargs -d '\n' -P 16 -I{} curl -sf -o /dev/null -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{}' "http://127.0.0.1:$port/v1/admin/apikeys"
echo "after $keys API keys: RSS $(mem VmRSS)"
etag="$(curl -sf -D - -o /dev/null "http://127.0.0.1:$port/v1/bundle" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')"
for i in $(seq 1 200); do
  curl -s -o /dev/null -H "if-none-match: $etag" -H "x-keymesh-proxy: rss-$i" "http://127.0.0.1:$port/v1/bundle?wait=60" &
done
cat >"$work/token.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&resource=https%3A%2F%2Forders.example.com"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $basic"
LUA
wrk -t 2 -c 64 -d 20s -s "$work/token.lua" "http://127.0.0.1:$port/oauth/token" | grep -E 'Requests/sec|Non-2xx' || true
echo "under load ($keys API keys, 200 held long polls, 64 token connections): RSS $(mem VmRSS), peak $(mem VmHWM)"
