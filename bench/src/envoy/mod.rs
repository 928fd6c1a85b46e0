//! Envoy bootstraps, rendered as JSON (Envoy reads `.json` bootstraps; no YAML quoting to get wrong).
//!
//! The proxy bootstraps differ only in the HTTP filter in front of the router: same listener, same connection
//! manager settings (the ones keymesh relies on, for every variant), same upstream cluster. The upstream is a
//! second Envoy, shared by all variants, answering `direct_response` 200 "ok" on one listener and serving the
//! prepared bundle on another (304 to `If-None-Match` of its version, as the sidecar does).
//!
//! The API-key proxies ([`key_proxy_bootstrap`]) are the same listener with keymesh on an API-key route or
//! Envoy's `api_key_auth`; their upstream ([`key_upstream_bootstrap`]) serves the large bundles from files.

use crate::capabilities::keymesh_capability_restriction;
use crate::matrix::{KeyVariant, Variant};
use crate::prepare::BENCH_AUDIENCE;
use keymesh_testkit::ISSUER;
use serde_json::{json, Value};
use std::path::Path;

/// Ports of one proxy Envoy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyPorts {
    pub(crate) listen: u16,
    pub(crate) admin: u16,
}

/// Ports of the shared upstream Envoy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamPorts {
    pub(crate) app: u16,
    pub(crate) bundle: u16,
    pub(crate) admin: u16,
}

/// What the proxy bootstraps are made of.
#[derive(Debug, Clone)]
pub(crate) struct ProxyInputs<'a> {
    /// The JWKS for `jwt_authn`'s `local_jwks`.
    pub(crate) jwks: &'a str,
    /// The keymesh module.
    pub(crate) wasm: &'a Path,
    /// The floor modules (`empty_sdk`, `empty_min`).
    pub(crate) empty_sdk: &'a Path,
    pub(crate) empty_min: &'a Path,
    /// The previous keymesh build (`keymesh_base`).
    pub(crate) keymesh_base: &'a Path,
    /// Whether `keymesh` and `keymesh_base` run with [`crate::capabilities::KEYMESH_CAPABILITIES`]
    /// (`capability_restriction_config`).
    pub(crate) restrict_keymesh: bool,
    pub(crate) restrict_base: bool,
    /// `jwt_cache_config.jwt_cache_size` of the caching variant.
    pub(crate) jwt_cache_size: u32,
    pub(crate) upstream: UpstreamPorts,
}

/// Where the floor module `name` (`empty_sdk`, `empty_min`) is built: next to the keymesh module.
pub(crate) fn floor_module(keymesh_wasm: &Path, name: &str) -> std::path::PathBuf {
    keymesh_wasm.with_file_name(format!("{name}.wasm"))
}

pub(crate) const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

pub(crate) fn admin(port: u16) -> Value {
    json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}})
}

pub(crate) fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

pub(crate) fn listener(
    name: &str,
    port: u16,
    route_config: Value,
    http_filters: Vec<Value>,
) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "normalize_path": true,
                "merge_slashes": true,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                "route_config": route_config,
                "http_filters": http_filters,
            }
        }]}]
    })
}

pub(crate) fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// Envoy's native `jwt_authn`: one provider for the bench issuer with the JWKS inline, required on every path,
/// doing the work keymesh does: the token forwarded (keymesh's `forward_token`) and the identity written upstream
/// (`claim_to_headers` for `sub`, `client_id` and `scope`, under keymesh's header names).
fn jwt_authn(jwks: &str, cache_size: Option<u32>) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": [BENCH_AUDIENCE],
        "forward": true,
        "local_jwks": {"inline_string": jwks},
        "claim_to_headers": [
            {"header_name": "x-keymesh-subject", "claim_name": "sub"},
            {"header_name": "x-keymesh-client-id", "claim_name": "client_id"},
            {"header_name": "x-keymesh-scope", "claim_name": "scope"},
        ],
    });
    if let (Some(size), Some(map)) = (cache_size, provider.as_object_mut()) {
        map.insert("jwt_cache_config".into(), json!({"jwt_cache_size": size}));
    }
    json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
    }})
}

/// The identity headers keymesh writes in the token run: the three native `jwt_authn` writes (`claim_to_headers`
/// for `sub`, `client_id`, `scope`), so both do the same work.
pub(crate) const TOKEN_IDENTITY_HEADERS: &[&str] = &["subject", "client_id", "scope"];
/// The identity header keymesh writes in the API-key run: the client id, as `api_key_auth`'s `forwarding` does.
pub(crate) const KEY_IDENTITY_HEADERS: &[&str] = &["client_id"];

/// The keymesh filter configuration: one route requiring the bench audience, bundle from the upstream Envoy, and
/// `identity_headers` when given (a build older than that setting refuses it, so `keymesh_base` runs without:
/// every identity header).
pub(crate) fn keymesh_filter_config(
    forward_token: bool,
    identity_headers: Option<&[&str]>,
) -> String {
    let mut config = json!({
        "sidecar": {"cluster": "keymesh_sidecar", "refresh_interval_ms": 1000, "timeout_ms": 2000},
        "routes": [{"prefix": "/", "audience": BENCH_AUDIENCE}],
        "forward_token": forward_token,
    });
    if let Some(headers) = identity_headers {
        config["identity_headers"] = json!(headers);
    }
    config.to_string()
}

/// The keymesh wasm filter running `wasm` on V8 with the filter configuration `config`, with
/// [`crate::capabilities::KEYMESH_CAPABILITIES`] when `restricted`.
fn keymesh_filter(wasm: &Path, config: String, restricted: bool) -> Value {
    let mut filter = keymesh_filter_unrestricted(wasm, config);
    if restricted {
        // The VM-level field: Envoy 1.40 deprecates the plugin-level one.
        filter["typed_config"]["config"]["vm_config"]["capability_restriction_config"] =
            keymesh_capability_restriction();
    }
    filter
}

fn keymesh_filter_unrestricted(wasm: &Path, config: String) -> Value {
    json!({"name": "keymesh.authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "keymesh_authn_bench",
            "root_id": "keymesh_authn",
            "vm_config": {
                "vm_id": "keymesh",
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config,
            },
        },
    }})
}

/// A do-nothing floor module on V8, in its own VM, with no configuration.
fn floor_filter(name: &str, wasm: &Path) -> Value {
    json!({"name": format!("bench.{name}"), "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name,
            "vm_config": {
                "vm_id": name,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}},
            },
        },
    }})
}

/// The HTTP filters of `variant`, router last.
pub(crate) fn http_filters(variant: Variant, inputs: &ProxyInputs<'_>) -> Vec<Value> {
    let mut filters = match variant {
        Variant::None => vec![],
        Variant::JwtAuthn => vec![jwt_authn(inputs.jwks, None)],
        Variant::JwtAuthnCache => vec![jwt_authn(inputs.jwks, Some(inputs.jwt_cache_size))],
        Variant::Keymesh => vec![keymesh_filter(
            inputs.wasm,
            keymesh_filter_config(true, Some(TOKEN_IDENTITY_HEADERS)),
            inputs.restrict_keymesh,
        )],
        Variant::KeymeshBase => vec![keymesh_filter(
            inputs.keymesh_base,
            keymesh_filter_config(true, None),
            inputs.restrict_base,
        )],
        Variant::EmptySdk => vec![floor_filter("empty_sdk", inputs.empty_sdk)],
        Variant::EmptyMin => vec![floor_filter("empty_min", inputs.empty_min)],
    };
    filters.push(router());
    filters
}

/// The bootstrap of the proxy Envoy of one variant.
pub(crate) fn proxy_bootstrap(
    variant: Variant,
    ports: ProxyPorts,
    inputs: &ProxyInputs<'_>,
) -> Value {
    let routes = json!({"virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    ]}]});
    let mut clusters = vec![static_cluster("upstream", inputs.upstream.app)];
    if variant.is_keymesh() {
        clusters.push(static_cluster("keymesh_sidecar", inputs.upstream.bundle));
    }
    json!({
        "admin": admin(ports.admin),
        "static_resources": {
            "listeners": [listener("bench", ports.listen, routes, http_filters(variant, inputs))],
            "clusters": clusters,
        },
    })
}

/// The bootstrap of the upstream Envoy: the app answer and the bundle, both `direct_response`.
pub(crate) fn upstream_bootstrap(ports: UpstreamPorts, bundle: &str, bundle_version: u64) -> Value {
    let app_routes = json!({"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    ]}]});
    let etag = format!("\"{bundle_version}\"");
    let bundle_routes = json!({
        "max_direct_response_body_size_bytes": 1_048_576,
        "virtual_hosts": [{"name": "bundle", "domains": ["*"], "routes": [
            {"match": {"path": "/v1/bundle", "headers": [
                {"name": "if-none-match", "string_match": {"exact": etag}}]},
             "direct_response": {"status": 304}},
            {"match": {"path": "/v1/bundle"},
             "direct_response": {"status": 200, "body": {"inline_string": bundle}},
             "response_headers_to_add": [
                {"header": {"key": "etag", "value": etag}},
                {"header": {"key": "content-type", "value": "application/json"}}]}
        ]}]
    });
    json!({
        "admin": admin(ports.admin),
        "static_resources": {"listeners": [
            listener("app", ports.app, app_routes, vec![router()]),
            listener("bundle", ports.bundle, bundle_routes, vec![router()]),
        ]},
    })
}

// ---------------------------------------------------------------------------------------------------------------
// API keys

/// The header both API-key filters read the key from.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";
/// Bundle paths on the API-key upstream: the full set, and an empty bundle (keymesh with 0 keys).
pub(crate) const FULL_BUNDLE_PATH: &str = "/v1/bundle";
pub(crate) const EMPTY_BUNDLE_PATH: &str = "/v1/bundle-empty";

/// The keymesh filter configuration of the API-key run: one route taking API keys only, for the bench audience.
/// `usage_report_ms` 0 turns last-used counting off (the default, 10 s, counts every request).
pub(crate) fn keymesh_api_key_filter_config(bundle_path: &str, usage_report_ms: u64) -> String {
    json!({
        "sidecar": {"cluster": "keymesh_sidecar", "path": bundle_path, "refresh_interval_ms": 1000,
                    "timeout_ms": 30000, "usage_report_ms": usage_report_ms},
        "routes": [{"prefix": "/", "audience": BENCH_AUDIENCE, "credential": "api_key"}],
        "forward_token": true,
        "identity_headers": KEY_IDENTITY_HEADERS,
    })
    .to_string()
}

/// Envoy's native `api_key_auth` with `credentials` inline, the key read from `x-api-key`, and the client id
/// forwarded upstream (`forwarding`, under keymesh's header name), as keymesh forwards the identity.
pub(crate) fn api_key_auth_filter(credentials: Value) -> Value {
    json!({"name": "envoy.filters.http.api_key_auth", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
        "credentials": credentials,
        "key_sources": [{"header": API_KEY_HEADER}],
        "forwarding": {"header": "x-keymesh-client-id"},
    }})
}

/// The proxy bootstrap of an API-key `variant`: the token proxies' listener and cluster settings, another filter.
pub(crate) fn key_proxy_bootstrap(
    variant: KeyVariant,
    ports: ProxyPorts,
    upstream: UpstreamPorts,
    wasm: &Path,
    credentials: &Value,
) -> Value {
    let mut filters = match variant {
        KeyVariant::None => vec![],
        KeyVariant::EmptyMin => vec![floor_filter("empty_min", &floor_module(wasm, "empty_min"))],
        KeyVariant::ApiKeyAuth => vec![api_key_auth_filter(credentials.clone())],
        KeyVariant::Keymesh => vec![keymesh_filter(
            wasm,
            keymesh_api_key_filter_config(FULL_BUNDLE_PATH, 10_000),
            true,
        )],
        KeyVariant::KeymeshNoUsage => vec![keymesh_filter(
            wasm,
            keymesh_api_key_filter_config(FULL_BUNDLE_PATH, 0),
            true,
        )],
        KeyVariant::KeymeshEmpty => vec![keymesh_filter(
            wasm,
            keymesh_api_key_filter_config(EMPTY_BUNDLE_PATH, 10_000),
            true,
        )],
    };
    filters.push(router());
    let routes = json!({"virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    ]}]});
    let mut clusters = vec![static_cluster("upstream", upstream.app)];
    if matches!(
        variant,
        KeyVariant::Keymesh | KeyVariant::KeymeshEmpty | KeyVariant::KeymeshNoUsage
    ) {
        clusters.push(static_cluster("keymesh_sidecar", upstream.bundle));
    }
    json!({
        "admin": admin(ports.admin),
        "static_resources": {
            "listeners": [listener("bench", ports.listen, routes, filters)],
            "clusters": clusters,
        },
    })
}

/// The API-key upstream: app answers, and the full and empty bundles read from files (`direct_response`
/// `filename`, so the large bundle is not escaped into the bootstrap), each with its `ETag` and 304 to
/// `If-None-Match` of it.
/// The full bundle is also served in pages (`pages`: where each starts, and its file), for a filter asking with
/// `page=…` as it does from the sidecar.
pub(crate) fn key_upstream_bootstrap(
    ports: UpstreamPorts,
    full: &Path,
    empty: &Path,
    pages: &[(u64, std::path::PathBuf)],
    max_body: u64,
) -> Value {
    let app_routes = json!({"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    ]}]});
    let etag = format!("\"{}\"", crate::prepare::BUNDLE_VERSION);
    let mut routes = Vec::new();
    for (path, file) in [(EMPTY_BUNDLE_PATH, empty), (FULL_BUNDLE_PATH, full)] {
        routes.push(json!({"match": {"path": path, "headers": [
            {"name": "if-none-match", "string_match": {"exact": etag}}]},
            "direct_response": {"status": 304}}));
        if path == FULL_BUNDLE_PATH {
            for (from, file) in pages {
                routes.push(json!({"match": {"path": path, "query_parameters": [
                        {"name": "page", "string_match": {"exact": from.to_string()}}]},
                    "direct_response": {"status": 200, "body": {"filename": file.display().to_string()}},
                    "response_headers_to_add": [
                        {"header": {"key": "etag", "value": etag}},
                        {"header": {"key": "content-type", "value": "application/json"}}]}));
            }
        }
        routes.push(json!({"match": {"path": path},
            "direct_response": {"status": 200, "body": {"filename": file.display().to_string()}},
            "response_headers_to_add": [
                {"header": {"key": "etag", "value": etag}},
                {"header": {"key": "content-type", "value": "application/json"}}]}));
    }
    let bundle_routes = json!({
        "max_direct_response_body_size_bytes": max_body.max(1_048_576),
        "virtual_hosts": [{"name": "bundle", "domains": ["*"], "routes": routes}],
    });
    json!({
        "admin": admin(ports.admin),
        "static_resources": {"listeners": [
            listener("app", ports.app, app_routes, vec![router()]),
            listener("bundle", ports.bundle, bundle_routes, vec![router()]),
        ]},
    })
}

#[cfg(test)]
mod tests;
