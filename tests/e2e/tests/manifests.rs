//! Every shipped Kubernetes manifest renders with `kubectl kustomize` and validates offline against its schema
//! (Kubernetes kinds with kubernetes-validate, Istio kinds against Istio's CRDs checked in under
//! deploy/kubernetes/schemas/istio), the objects say what the deployment promises, and broken manifests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod containers_support;

use containers_support::{kustomize, validate_manifests, yaml_documents};
use keymesh_e2e::workspace;
use serde_json::Value;

const KUSTOMIZATIONS: [&str; 4] = ["base", "mesh", "overlays/istio", "overlays/redis-cluster"];

fn render(dir: &str) -> String {
    kustomize(&workspace().join("deploy/kubernetes").join(dir))
}

#[test]
fn every_kustomization_renders_and_every_object_validates() {
    for dir in KUSTOMIZATIONS {
        let (valid, report) = validate_manifests(&render(dir));
        assert!(valid, "{dir}:\n{report}");
        assert!(!report.contains("INVALID"), "{dir}:\n{report}");
    }
    let kinds: Vec<String> = yaml_documents(&render("overlays/istio"))
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "WasmPlugin",
        "DestinationRule",
        "PeerAuthentication",
        "AuthorizationPolicy",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap()
}

#[test]
fn the_deployment_is_hardened_probed_and_reads_its_secrets_from_files() {
    let objects = yaml_documents(&render("overlays/istio"));
    let deployment = find(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    for field in ["requests", "limits"] {
        assert!(
            container["resources"][field]["memory"].is_string(),
            "{container}"
        );
    }
    // The drain fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let config = find(&objects, "ConfigMap");
    let toml = config["data"]["keymesh.toml"].as_str().unwrap();
    let drain: u64 = toml
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_drain_secs = "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(drain + 10 <= grace, "drain {drain} s, grace {grace} s");
    // Secrets are files of the mounted Secret, named in the TOML.
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_object())
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "keymesh-secrets");
    for key in ["kek", "admin-token", "redis-url"] {
        assert!(
            toml.contains(&format!("\"/run/secrets/keymesh/{key}\"")),
            "{toml}"
        );
    }
    assert!(
        !toml.contains("redis_url ="),
        "a Redis URL in the ConfigMap"
    );
    // The PDB and the Service select the Deployment's pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        find(&objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app"],
        labels["app"]
    );
    assert_eq!(
        find(&objects, "Service")["spec"]["selector"]["app"],
        labels["app"]
    );
}

#[test]
fn each_api_gets_a_wasmplugin_in_phase_authn_fetching_from_the_istio_cluster_name() {
    let objects = yaml_documents(&render("overlays/istio"));
    let plugins: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "WasmPlugin")
        .collect();
    let namespaces: Vec<&str> = plugins
        .iter()
        .map(|p| p["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["orders", "payments"]);
    for plugin in plugins {
        let spec = &plugin["spec"];
        assert_eq!(spec["phase"], "AUTHN");
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
        assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
        assert!(spec["imagePullPolicy"].is_string());
        let sidecar = &spec["pluginConfig"]["sidecar"];
        assert_eq!(
            sidecar["cluster"],
            "outbound|8080||keymesh.keymesh-system.svc.cluster.local"
        );
    }
    let service = find(&objects, "Service");
    assert_eq!(service["metadata"]["name"], "keymesh");
    assert_eq!(service["metadata"]["namespace"], "keymesh-system");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn broken_manifests_fail_validation_naming_the_object_and_field() {
    let good = render("overlays/istio");
    let cases = [
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            "Deployment keymesh-system/keymesh: spec.template.spec.containers.0.securityContext",
        ),
        (
            "replicas: 2",
            "replicas: two",
            "Deployment keymesh-system/keymesh: spec.replicas",
        ),
        (
            "phase: AUTHN",
            "phase: AUTHENTICATION",
            "WasmPlugin orders/keymesh-authn: spec.phase",
        ),
        (
            "pluginConfig:",
            "pluginConfg:",
            "WasmPlugin orders/keymesh-authn: spec",
        ),
        (
            "mode: STRICT",
            "mode: STRICTEST",
            "PeerAuthentication keymesh-system/keymesh: spec.mtls.mode",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication",
            "apiVersion: security.istio.io/v9\nkind: PeerAuthentication",
            "PeerAuthentication keymesh-system/keymesh: no schema",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(
            good.contains(from),
            "the rendered manifests have no `{from}`"
        );
        let (valid, report) = validate_manifests(&good.replacen(from, to, 1));
        assert!(!valid, "`{to}` passed validation:\n{report}");
        assert!(
            report.contains(&format!("INVALID {expected}")),
            "`{to}`: expected INVALID {expected}\n{report}"
        );
    }
}
