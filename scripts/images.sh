#!/usr/bin/env bash
# Builds keymesh's two container images with podman (or docker: KEYMESH_CONTAINER_ENGINE=docker). Nothing is pulled:
# both start FROM scratch.
#   localhost/keymesh/sidecar:TAG       the sidecar: a static x86_64-unknown-linux-musl binary, CA certificates,
#                                       user 65532, ENTRYPOINT /keymesh, CMD serve
#   localhost/keymesh/authn-filter:TAG  the authn filter in Istio's Wasm image format, "compat" variant: one layer
#                                       holding /plugin.wasm
# and the filter as an OCI artifact (Istio's other Wasm image variant: one layer of media type
# application/vnd.module.wasm.content.layer.v1+wasm) in the OCI image layout target/images/authn-filter-oci/, which
# `skopeo copy oci:target/images/authn-filter-oci docker://REGISTRY/keymesh/authn-filter:TAG` or
# `oras cp --from-oci-layout` pushes.
#
#   scripts/images.sh              TAG = the workspace version
#   KEYMESH_IMAGE_TAG=dev scripts/images.sh
#
# Needs Debian's musl-tools (musl-gcc: `ring` compiles C) and the rustup target x86_64-unknown-linux-musl
# (scripts/setup.sh installs both). Prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${KEYMESH_CONTAINER_ENGINE:-podman}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
tag="${KEYMESH_IMAGE_TAG:-$version}"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
source_url="${KEYMESH_IMAGE_SOURCE:-https://example.invalid/keymesh}"
out=target/images
log() { printf '\033[1m[images]\033[0m %s\n' "$*"; }

log "building the static sidecar (x86_64-unknown-linux-musl, release)"
CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}" \
  cargo build --release --locked --target x86_64-unknown-linux-musl -p keymesh
log "building the filter (wasm32-wasip1, release)"
cargo build --release --locked --target wasm32-wasip1 -p keymesh-authn

rm -rf "$out/sidecar" "$out/filter" "$out/authn-filter-oci"
mkdir -p "$out/sidecar" "$out/filter"
cp target/x86_64-unknown-linux-musl/release/keymesh "$out/sidecar/keymesh"
cp /etc/ssl/certs/ca-certificates.crt "$out/sidecar/ca-certificates.crt"
cp target/wasm32-wasip1/release/keymesh_authn.wasm "$out/filter/plugin.wasm"

build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url")
log "building localhost/keymesh/sidecar:$tag"
"$engine" build -q -f deploy/images/sidecar.Containerfile "${build_args[@]}" \
  -t "localhost/keymesh/sidecar:$tag" "$out/sidecar" >/dev/null
log "building localhost/keymesh/authn-filter:$tag (Istio Wasm image, compat variant)"
"$engine" build -q -f deploy/images/filter.Containerfile "${build_args[@]}" \
  -t "localhost/keymesh/authn-filter:$tag" "$out/filter" >/dev/null

# The OCI artifact variant, written by hand: a manifest whose config and single layer carry Istio's Wasm media types.
oci="$out/authn-filter-oci"
mkdir -p "$oci/blobs/sha256"
blob() { # FILE -> prints "DIGEST SIZE" and stores the file as a blob
  local digest size
  digest="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  cp "$1" "$oci/blobs/sha256/$digest"
  echo "$digest $size"
}
created="$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%dT%H:%M:%SZ)"
printf '{"created":"%s","architecture":"wasm","os":"wasip1"}' "$created" >"$out/filter/config.json"
read -r wasm_digest wasm_size < <(blob "$out/filter/plugin.wasm")
read -r config_digest config_size < <(blob "$out/filter/config.json")
cat >"$out/filter/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.module.wasm.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.module.wasm.content.layer.v1+wasm","digest":"sha256:$wasm_digest","size":$wasm_size,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}],"annotations":{"org.opencontainers.image.version":"$version","org.opencontainers.image.revision":"$revision","org.opencontainers.image.source":"$source_url","org.opencontainers.image.licenses":"Apache-2.0"}}
JSON
read -r manifest_digest manifest_size < <(blob "$out/filter/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
cat >"$oci/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"annotations":{"org.opencontainers.image.ref.name":"$tag"}}]}
JSON
rm "$out/filter/config.json" "$out/filter/manifest.json"

size() { "$engine" image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB (%d bytes)", $1/1e6, $1}'; }
log "localhost/keymesh/sidecar:$tag: $(size "localhost/keymesh/sidecar:$tag") (binary $(stat -c %s "$out/sidecar/keymesh") bytes)"
log "localhost/keymesh/authn-filter:$tag: $(size "localhost/keymesh/authn-filter:$tag") (plugin.wasm $wasm_size bytes)"
log "OCI artifact variant: $oci (manifest sha256:$manifest_digest)"
