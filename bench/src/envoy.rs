//! Envoy bootstraps, rendered as JSON (Envoy reads `.json` bootstraps; no YAML quoting to get wrong).
//!
//! The proxy bootstraps differ only in the HTTP filter in front of the router: same listener, same connection
//! manager settings (the ones keymesh relies on, for every variant), same upstream cluster. The upstream is a
//! second Envoy, shared by all variants, answering `direct_response` 200 "ok" on one listener and serving the
//! prepared bundle on another (304 to `If-None-Match` of its version, as the sidecar does).

use crate::matrix::Variant;
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
    /// `jwt_cache_config.jwt_cache_size` of the caching variant.
    pub(crate) jwt_cache_size: u32,
    pub(crate) upstream: UpstreamPorts,
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

/// Envoy's native `jwt_authn`: one provider for the bench issuer with the JWKS inline, token forwarded (so the
/// request upstream is the same as keymesh's with `forward_token`), required on every path.
fn jwt_authn(jwks: &str, cache_size: Option<u32>) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": [BENCH_AUDIENCE],
        "forward": true,
        "local_jwks": {"inline_string": jwks},
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

/// The keymesh filter configuration: one route requiring the bench audience, bundle from the upstream Envoy.
pub(crate) fn keymesh_filter_config(forward_token: bool) -> String {
    json!({
        "sidecar": {"cluster": "keymesh_sidecar", "refresh_interval_ms": 1000, "timeout_ms": 2000},
        "routes": [{"prefix": "/", "audience": BENCH_AUDIENCE}],
        "forward_token": forward_token,
    })
    .to_string()
}

fn keymesh(wasm: &Path) -> Value {
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
                "value": keymesh_filter_config(true),
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
        Variant::Keymesh => vec![keymesh(inputs.wasm)],
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
    if variant == Variant::Keymesh {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> ProxyInputs<'static> {
        ProxyInputs {
            jwks: r#"{"keys":[]}"#,
            wasm: Path::new("/x/keymesh_authn.wasm"),
            jwt_cache_size: 100,
            upstream: UpstreamPorts {
                app: 2001,
                bundle: 2002,
                admin: 2003,
            },
        }
    }

    fn filter_names(bootstrap: &Value) -> Vec<String> {
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn render(variant: Variant) -> Value {
        proxy_bootstrap(
            variant,
            ProxyPorts {
                listen: 1001,
                admin: 1002,
            },
            &inputs(),
        )
    }

    #[test]
    fn each_variant_has_its_filter_in_front_of_the_router() {
        assert_eq!(
            filter_names(&render(Variant::None)),
            ["envoy.filters.http.router"]
        );
        for (variant, first) in [
            (Variant::JwtAuthn, "envoy.filters.http.jwt_authn"),
            (Variant::JwtAuthnCache, "envoy.filters.http.jwt_authn"),
            (Variant::Keymesh, "keymesh.authn"),
        ] {
            assert_eq!(
                filter_names(&render(variant)),
                [first, "envoy.filters.http.router"]
            );
        }
    }

    #[test]
    fn jwt_authn_uses_the_inline_jwks_and_only_the_cache_variant_caches() {
        for (variant, cached) in [(Variant::JwtAuthn, false), (Variant::JwtAuthnCache, true)] {
            let text = render(variant).to_string();
            let config = &http_filters(variant, &inputs())[0]["typed_config"];
            let provider = &config["providers"]["bench"];
            assert_eq!(provider["issuer"], ISSUER);
            assert_eq!(provider["audiences"][0], BENCH_AUDIENCE);
            assert_eq!(provider["forward"], true);
            assert_eq!(provider["local_jwks"]["inline_string"], r#"{"keys":[]}"#);
            assert_eq!(config["rules"][0]["requires"]["provider_name"], "bench");
            assert_eq!(text.contains("jwt_cache_config"), cached, "{variant}");
            if cached {
                assert_eq!(provider["jwt_cache_config"]["jwt_cache_size"], 100);
            }
            assert!(!text.contains("keymesh_sidecar"));
        }
    }

    #[test]
    fn keymesh_runs_on_v8_with_the_bench_audience_and_a_bundle_cluster() {
        let bootstrap = render(Variant::Keymesh);
        let config = &http_filters(Variant::Keymesh, &inputs())[0]["typed_config"]["config"];
        assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
        assert_eq!(config["vm_config"]["vm_id"], "keymesh");
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"],
            "/x/keymesh_authn.wasm"
        );
        let filter: Value =
            serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(filter["routes"][0]["audience"], BENCH_AUDIENCE);
        assert_eq!(filter["forward_token"], true);
        let clusters = bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap();
        let sidecar = clusters
            .iter()
            .find(|c| c["name"] == "keymesh_sidecar")
            .unwrap();
        assert_eq!(
            sidecar["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            2002
        );
    }

    #[test]
    fn every_variant_has_the_same_listener_settings_and_upstream() {
        for variant in Variant::ALL {
            let b = render(variant);
            let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"];
            assert_eq!(hcm["normalize_path"], true);
            assert_eq!(hcm["merge_slashes"], true);
            assert_eq!(b["static_resources"]["clusters"][0]["name"], "upstream");
            assert_eq!(
                b["admin"]["address"]["socket_address"]["address"],
                "127.0.0.1"
            );
        }
    }

    #[test]
    fn upstream_serves_the_bundle_with_its_etag() {
        let b = upstream_bootstrap(
            UpstreamPorts {
                app: 1,
                bundle: 2,
                admin: 3,
            },
            r#"{"version":7}"#,
            7,
        );
        let text = b.to_string();
        assert!(text.contains(r#""exact":"\"7\"""#), "{text}");
        assert!(text.contains(r#"{\"version\":7}"#), "{text}");
        assert!(text.contains("max_direct_response_body_size_bytes"));
    }
}
