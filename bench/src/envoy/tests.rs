use super::*;

fn inputs() -> ProxyInputs<'static> {
    ProxyInputs {
        jwks: r#"{"keys":[]}"#,
        wasm: Path::new("/x/keymesh_authn.wasm"),
        empty_sdk: Path::new("/x/empty_sdk.wasm"),
        empty_min: Path::new("/x/empty_min.wasm"),
        keymesh_base: Path::new("/x/keymesh_base.wasm"),
        restrict_keymesh: true,
        restrict_base: false,
        jwt_cache_size: 100,
        upstream: UpstreamPorts {
            app: 2001,
            bundle: 2002,
            admin: 2003,
        },
    }
}

fn filter_names(bootstrap: &Value) -> Vec<String> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
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
        (Variant::KeymeshBase, "keymesh.authn"),
        (Variant::EmptySdk, "bench.empty_sdk"),
        (Variant::EmptyMin, "bench.empty_min"),
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
        let claims: Vec<&str> = provider["claim_to_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["claim_name"].as_str().unwrap())
            .collect();
        assert_eq!(claims, ["sub", "client_id", "scope"]);
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

#[test]
fn native_config_lists_every_key_with_a_client() {
    let keys = crate::prepare::generate_keys(2, 1);
    let filter = api_key_auth_filter(crate::prepare::native_credentials(&keys));
    let config = &filter["typed_config"];
    assert_eq!(
        config["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth"
    );
    assert_eq!(config["credentials"][1]["key"], keys[1].as_str());
    assert_eq!(config["credentials"][1]["client"], "bench-client-1");
    assert_eq!(config["key_sources"][0]["header"], "x-api-key");
    assert_eq!(config["forwarding"]["header"], "x-keymesh-client-id");
}

#[test]
fn key_proxies_differ_only_in_the_filter_and_keymesh_uses_its_bundle_path() {
    let ports = ProxyPorts {
        listen: 1,
        admin: 2,
    };
    let up = UpstreamPorts {
        app: 3,
        bundle: 4,
        admin: 5,
    };
    let creds = crate::prepare::native_credentials(&crate::prepare::generate_keys(1, 1));
    let names = |v| {
        filter_names(&key_proxy_bootstrap(
            v,
            ports,
            up,
            Path::new("/m.wasm"),
            &creds,
        ))
    };
    assert_eq!(names(KeyVariant::None), ["envoy.filters.http.router"]);
    assert_eq!(
        names(KeyVariant::ApiKeyAuth),
        [
            "envoy.filters.http.api_key_auth",
            "envoy.filters.http.router"
        ]
    );
    for (v, path) in [
        (KeyVariant::Keymesh, FULL_BUNDLE_PATH),
        (KeyVariant::KeymeshEmpty, EMPTY_BUNDLE_PATH),
    ] {
        let b = key_proxy_bootstrap(v, ports, up, Path::new("/m.wasm"), &creds);
        let text = b.to_string();
        assert!(text.contains("keymesh_sidecar"));
        let cfg = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]["value"];
        let cfg: Value = serde_json::from_str(cfg.as_str().unwrap()).unwrap();
        assert_eq!(cfg["sidecar"]["path"], path);
        assert_eq!(cfg["routes"][0]["credential"], "api_key");
    }
}

#[test]
fn key_upstream_serves_both_bundles_from_files_with_a_large_enough_limit() {
    let b = key_upstream_bootstrap(
        UpstreamPorts {
            app: 1,
            bundle: 2,
            admin: 3,
        },
        Path::new("/d/bundle.json"),
        Path::new("/d/bundle-empty.json"),
        &[(0, "/d/p/0.json".into()), (1500, "/d/p/1500.json".into())],
        20_000_000,
    );
    let text = b.to_string();
    assert!(text.contains("/d/bundle.json") && text.contains("/d/bundle-empty.json"));
    assert!(text.contains("/d/p/0.json") && text.contains("/d/p/1500.json"));
    let rc = &b["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"];
    assert_eq!(rc["max_direct_response_body_size_bytes"], 20_000_000);
    // The empty bundle's route comes first: `/v1/bundle` is an exact path, but keep the specific one first.
    assert_eq!(
        rc["virtual_hosts"][0]["routes"].as_array().unwrap().len(),
        6
    );
    let page = &rc["virtual_hosts"][0]["routes"][4];
    assert_eq!(
        page["match"]["query_parameters"][0]["string_match"]["exact"],
        "1500"
    );
}
