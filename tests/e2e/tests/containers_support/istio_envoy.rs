//! Envoy configured the way Istio configures a sidecar proxy for WasmPlugins (istio/istio
//! `pilot/pkg/model/extensions.go` and `pilot/pkg/networking/core/extension/wasmplugin.go`):
//! - each WasmPlugin becomes an HTTP filter named `<namespace>.<name>` whose configuration comes from extension
//!   config discovery (istiod serves it over ADS; here a file), with no initial fetch timeout (the listener waits
//!   for it) and the type URLs of the Wasm filter and of RBAC (the agent puts a deny-all RBAC filter there when a
//!   fail-closed module cannot be fetched);
//! - the discovered Wasm config: name `<namespace>.<name>`, `root_id` = `pluginName`, `configuration` = the
//!   `pluginConfig` as JSON in a `StringValue`, no `vm_id`, the V8 runtime, the module as a local file (the agent
//!   pulls the OCI image and rewrites the remote source to the `plugin.wasm` it extracted), the environment
//!   variables istiod adds (pull policy, resource version), and `failure_policy: FAIL_CLOSED` for `FAIL_CLOSE`;
//! - phase AUTHN puts the filter first in the inbound HTTP chain: before Istio's authentication filters, AUTHZ
//!   plugins, RBAC and stats, which do not exist here; the router follows;
//! - the sidecar is reached through the outbound cluster named in `pluginConfig.sidecar.cluster`,
//!   `outbound|8080||keymesh.keymesh-system.svc.cluster.local` (in Istio an EDS cluster with mTLS; here static
//!   endpoints, plain HTTP, at the replicas' ports), and each API's upstream through `inbound|PORT||`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// One API behind this Envoy: its WasmPlugin (as rendered by kustomize), where Envoy listens for it and where
/// the API itself listens.
pub(crate) struct Api<'a> {
    pub(crate) plugin: &'a Value,
    pub(crate) listen: u16,
    pub(crate) upstream: u16,
}

/// The sidecar cluster a WasmPlugin's filter fetches from, as its pluginConfig names it.
pub(crate) fn sidecar_cluster(plugin: &Value) -> &str {
    plugin["spec"]["pluginConfig"]["sidecar"]["cluster"]
        .as_str()
        .unwrap()
}

/// The Envoy bootstrap (and one ECDS file per plugin) in `dir`; returns the bootstrap's path.
pub(crate) fn write_config(
    dir: &Path,
    name: &str,
    admin: u16,
    apis: &[Api<'_>],
    wasm: &Path,
    sidecar_ports: &[u16],
) -> PathBuf {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut sidecar_clusters: Vec<&str> = Vec::new();
    for api in apis {
        let plugin = api.plugin;
        let spec = &plugin["spec"];
        assert_eq!(spec["phase"], "AUTHN", "{plugin}");
        let resource = format!(
            "{}.{}",
            plugin["metadata"]["namespace"].as_str().unwrap(),
            plugin["metadata"]["name"].as_str().unwrap()
        );
        let ecds = dir.join(format!("{name}-{resource}.ecds.json"));
        let failure_policy = match spec["failStrategy"].as_str() {
            Some("FAIL_OPEN") => "FAIL_OPEN",
            Some("FAIL_RELOAD") => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        };
        let discovered = json!({
            "version_info": "1",
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": resource,
                "typed_config": {
                    "@type": WASM_TYPE,
                    "config": {
                        "name": resource,
                        "root_id": spec["pluginName"].as_str().unwrap_or_default(),
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": serde_json::to_string(&spec["pluginConfig"]).unwrap(),
                        },
                        "vm_config": {
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": { "local": { "filename": wasm.display().to_string() } },
                            "environment_variables": { "key_values": {
                                "ISTIO_META_WASM_IMAGE_PULL_POLICY":
                                    spec["imagePullPolicy"].as_str().unwrap_or("IfNotPresent"),
                                "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1",
                            }},
                        },
                        "failure_policy": failure_policy,
                    },
                },
            }],
        });
        std::fs::write(&ecds, serde_json::to_vec_pretty(&discovered).unwrap()).unwrap();
        let inbound = format!("inbound|{}||", api.upstream);
        listeners.push(json!({
            "name": format!("0.0.0.0_{}", api.listen),
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": api.listen } },
            "filter_chains": [{ "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": format!("inbound_0.0.0.0_{}", api.listen),
                    "normalize_path": true,
                    "merge_slashes": true,
                    "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                    "route_config": {
                        "name": inbound,
                        "virtual_hosts": [{
                            "name": format!("inbound|http|{}", api.upstream),
                            "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": inbound } }],
                        }],
                    },
                    "http_filters": [
                        {
                            "name": resource,
                            "config_discovery": {
                                "config_source": {
                                    "path_config_source": { "path": ecds.display().to_string() },
                                    "resource_api_version": "V3",
                                    "initial_fetch_timeout": "0s",
                                },
                                "type_urls": [WASM_TYPE, RBAC_TYPE],
                            },
                        },
                        {
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                        },
                    ],
                },
            }]}],
        }));
        clusters.push(static_cluster(&inbound, &[api.upstream]));
        let sidecar = sidecar_cluster(plugin);
        if !sidecar_clusters.contains(&sidecar) {
            sidecar_clusters.push(sidecar);
        }
    }
    for sidecar in sidecar_clusters {
        clusters.push(static_cluster(sidecar, sidecar_ports));
    }
    let bootstrap = json!({
        "node": { "id": format!("sidecar~127.0.0.1~{name}.e2e~e2e.svc.cluster.local"), "cluster": format!("{name}.e2e") },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "static_resources": { "listeners": listeners, "clusters": clusters },
    });
    let path = dir.join(format!("{name}.envoy.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    path
}

fn static_cluster(name: &str, ports: &[u16]) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|port| json!({ "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } } }))
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": endpoints }] },
    })
}
