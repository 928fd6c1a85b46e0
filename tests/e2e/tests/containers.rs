//! keymesh deployed the way platform teams run it, on one machine: both container images built by
//! `scripts/images.sh`; the sidecar image run with podman; the Kubernetes manifests rendered by kustomize and played
//! with `podman kube play` (two replicas on one Redis); and Envoy in front of the two demo APIs configured the way
//! Istio configures a proxy for the WasmPlugins of `deploy/kubernetes/mesh`, with the filter taken out of the filter
//! image. Skips, loudly, only where podman is not installed (scripts/setup.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod containers_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use containers_support::istio_envoy::{self, Api};
use containers_support::*;
use keymesh_e2e::{
    basic, envoy_bin, form_urlencode, free_port, request, wait_for, workspace, Process, Stack,
};
use serde_json::Value;

const ORDERS: &str = "https://orders.example.com";
const PAYMENTS: &str = "https://payments.example.com";

#[test]
fn the_filter_image_holds_the_built_module_byte_for_byte() {
    if podman_missing() {
        return;
    }
    build_images();
    let built = std::fs::read(built_wasm()).unwrap();

    // Istio's "compat" variant: one layer, holding plugin.wasm and nothing else.
    let image = SavedImage::save(FILTER_IMAGE);
    let layers = image.manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{}", image.manifest);
    let layer = image.layer(0);
    assert_eq!(tar_entries(&layer), ["plugin.wasm"]);
    assert!(
        tar_file(&layer, "plugin.wasm") == built,
        "plugin.wasm in the image differs from {}",
        built_wasm().display()
    );
    let labels = &image.config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(labels["org.opencontainers.image.version"], "0.1.0");

    // The OCI artifact variant: Istio's Wasm media types, the layer blob is the module itself.
    let layout = workspace().join("target/images/authn-filter-oci");
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob_path(&layout, &index["manifests"][0]["digest"]));
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    let blob = blob_path(&layout, &layers[0]["digest"]);
    assert!(std::fs::read(&blob).unwrap() == built);
    assert_eq!(
        layers[0]["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&built_wasm()))
    );
    assert_eq!(layers[0]["size"].as_u64().unwrap(), built.len() as u64);
}

#[test]
fn the_sidecar_image_issues_tokens_envoy_accepts_and_runs_the_cli() {
    if podman_missing() {
        return;
    }
    build_images();
    let image = &serde_json::from_str::<Value>(&podman_ok(&["image", "inspect", SIDECAR_IMAGE]))
        .unwrap()[0];
    let config = &image["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/keymesh"]));
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    for label in ["source", "version", "licenses", "revision"] {
        assert!(
            config["Labels"][format!("org.opencontainers.image.{label}")].is_string(),
            "label {label} missing: {config}"
        );
    }
    let size = image["Size"].as_u64().unwrap();
    eprintln!("sidecar image: {size} bytes");
    assert!(size <= 25_000_000, "the sidecar image is {size} bytes");
    // No shell to run anything else with.
    assert!(!podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        SIDECAR_IMAGE,
        "-c",
        "true"
    ])
    .status
    .success());

    let mut stack = Stack::new();
    stack.start_redis();
    let redis_url = format!("redis://127.0.0.1:{}/", stack.ports.redis);
    let port = free_port();
    let mut containers = Containers::default();
    let name = format!("keymesh-e2e-alone-{port}");
    containers.container(&name);
    let listen = format!("KEYMESH_LISTEN=127.0.0.1:{port}");
    let issuer = format!("KEYMESH_ISSUER=http://127.0.0.1:{port}");
    let redis = format!("KEYMESH_REDIS_URL={redis_url}");
    let kek = format!("KEYMESH_KEK={TEST_KEK}");
    podman_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "-e",
        &listen,
        "-e",
        &issuer,
        "-e",
        &redis,
        "-e",
        &kek,
        SIDECAR_IMAGE,
    ]);
    wait_for("the container's /healthz", Duration::from_secs(30), || {
        (request("GET", port, "/healthz", &[], None).ok()?.status == 200).then_some(())
    });
    // Its own health check, the way a container engine's HEALTHCHECK or an exec probe runs it.
    let health = podman_ok(&["exec", &name, "/keymesh", "health", "--ready"]);
    assert_eq!(health.trim(), format!("ok http://127.0.0.1:{port}/healthz"));

    // The CLI inside the image registers a client in the same Redis.
    let created = podman_ok(&[
        "run",
        "--rm",
        "-e",
        &redis,
        SIDECAR_IMAGE,
        "client",
        "create",
        "--id",
        "alone",
        "--secret",
        "alone-secret-0123456789",
        "--resource",
        ORDERS,
        "--resource",
        PAYMENTS,
        "--scope",
        "orders:read",
        "--scope",
        "payments:read",
        "--json",
    ]);
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["client_id"], "alone");

    let mesh = Mesh::start(stack.dir.path(), "alone", &[port]);
    let token = token(
        port,
        "alone",
        "alone-secret-0123456789",
        &[ORDERS, PAYMENTS],
        "",
    );
    mesh.eventually(mesh.orders, &token, 200);
    mesh.eventually(mesh.payments, &token, 200);
    assert_eq!(mesh.status(mesh.orders, ""), 401);
}

#[test]
fn the_kubernetes_manifests_run_two_replicas_behind_envoy_configured_like_istio() {
    if podman_missing() {
        return;
    }
    build_images();
    let mut stack = Stack::new();
    stack.start_redis();
    let redis_url = format!("redis://127.0.0.1:{}/", stack.ports.redis);
    let mut containers = Containers::default();
    let (first, second) = (free_port(), free_port());
    let one = Replica::play(&mut containers, "r1", first, &redis_url);
    let two = Replica::play(&mut containers, "r2", second, &redis_url);

    // The CLI inside a played replica: configuration from the ConfigMap, secrets from the mounted Secret files.
    podman_ok(&[
        "exec",
        &one.container,
        "/keymesh",
        "client",
        "create",
        "--id",
        "spine",
        "--secret",
        "spine-secret-0123456789",
        "--resource",
        ORDERS,
        "--resource",
        PAYMENTS,
        "--scope",
        "orders:read",
        "--scope",
        "payments:read",
    ]);

    // Envoy's filters fetch from the second replica only; tokens come from the first.
    let mesh = Mesh::start(stack.dir.path(), "istio", &[second]);
    let both = token(
        first,
        "spine",
        "spine-secret-0123456789",
        &[ORDERS, PAYMENTS],
        "",
    );
    mesh.eventually(mesh.orders, &both, 200);
    mesh.eventually(mesh.payments, &both, 200);
    let orders_only = token(first, "spine", "spine-secret-0123456789", &[ORDERS], "");
    assert_eq!(mesh.status(mesh.orders, &orders_only), 200);
    assert_eq!(mesh.status(mesh.payments, &orders_only), 401);

    // A revocation written through the first replica reaches the Envoy fed by the second.
    let revoked = request(
        "POST",
        first,
        "/oauth/revoke",
        &[
            ("authorization", &basic("spine", "spine-secret-0123456789")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&format!("token={}", form_urlencode(&both))),
    )
    .unwrap();
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    mesh.eventually(mesh.orders, &both, 401);
    mesh.eventually(mesh.payments, &both, 401);

    graceful_shutdown_during_a_long_poll(&mesh, &two, second, &orders_only);
    drop(one);
}

/// SIGTERM to the replica Envoy long-polls: the poll is answered at once (304), readiness fails, requests keep
/// passing, no fetch failure is counted during the drain, and the container exits once the drain is over.
fn graceful_shutdown_during_a_long_poll(mesh: &Mesh, replica: &Replica, port: u16, token: &str) {
    // The filter holds a long poll open once it has a bundle: wait until one is outstanding.
    let not_modified =
        || sidecar_counter(port, "keymesh_bundle_requests_total{kind=\"not_modified\"}");
    let failures_before = mesh.filter_counter("bundle_fetch_failures");
    // Held polls end only when something changes or after long_poll_secs (25 s): a quiet 1.5 s means one is held.
    let answered_before = wait_for("a long poll held open", Duration::from_secs(10), || {
        let before = not_modified();
        std::thread::sleep(Duration::from_millis(1500));
        (not_modified() == before).then_some(before)
    });

    // SIGTERM as the kubelet sends it (`podman stop` would also mark the container as stopping, which refuses
    // `podman exec`). The pod restarts the container once it has exited (restartPolicy Always, as a Deployment's
    // pods have), so the exit is seen by its process going away.
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &replica.container]);
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    podman_ok(&["kill", "--signal", "TERM", &replica.container]);
    let signalled = Instant::now();
    let stop = std::thread::spawn(move || {
        while proc_dir.exists() && signalled.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        (signalled.elapsed(), !proc_dir.exists())
    });
    wait_for(
        "the held long poll to be answered",
        Duration::from_secs(3),
        || (not_modified() > answered_before).then_some(()),
    );
    let answered_after = signalled.elapsed();
    wait_for("readiness to fail", Duration::from_secs(3), || {
        (request("GET", port, "/healthz", &[], None).ok()?.status == 503).then_some(())
    });
    let probe = podman(&["exec", &replica.container, "/keymesh", "health", "--ready"]);
    let said = String::from_utf8_lossy(&probe.stderr);
    assert!(
        !probe.status.success() && said.contains("answered 503"),
        "the readiness probe while draining: {said}"
    );
    assert!(podman(&["exec", &replica.container, "/keymesh", "health"])
        .status
        .success());
    assert_eq!(mesh.status(mesh.orders, token), 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        mesh.filter_counter("bundle_fetch_failures"),
        failures_before,
        "fetch failures counted while the replica drained"
    );
    let (stopped_after, stopped) = stop.join().unwrap();
    assert!(stopped);
    let logs = Containers::logs(&replica.container);
    eprintln!(
        "graceful shutdown: held long poll answered {answered_after:?} after SIGTERM, container exited \
         {stopped_after:?} after it"
    );
    assert!(
        logs.contains("SIGTERM received") && logs.contains("shut down"),
        "{logs}"
    );
    assert!(
        stopped_after >= Duration::from_secs(4) && stopped_after < Duration::from_secs(15),
        "exit {stopped_after:?} after SIGTERM with a 5 s drain:\n{logs}"
    );
    // The proxies keep the last bundle: tokens still pass with the replica gone.
    assert_eq!(mesh.status(mesh.orders, token), 200);
}

/// One replica of the sidecar Deployment, played by podman from the rendered manifests.
struct Replica {
    container: String,
}

impl Replica {
    /// Renders `deploy/kubernetes/base` through an overlay that gives this replica its port (host networking, as
    /// podman needs here), the test's Redis and secrets, and the image just built; plays its Deployment and
    /// ConfigMap with its Secret; waits for readiness.
    ///
    /// Where podman 4.3 differs from Kubernetes, the overlay or the test adapts, and says so: one replica per play
    /// (with host networking every replica would want the same port), no `ports` (podman refuses port mappings with
    /// host networking) so the probes name the port by number, and the Secret is handed to podman as a podman
    /// secret holding the rendered object with its `data` values decoded (4.3 reads a Secret only from its secret
    /// store, ignores `stringData`, and writes `data` values to the files without base64-decoding them).
    fn play(containers: &mut Containers, prefix: &str, port: u16, redis_url: &str) -> Self {
        let overlay = workspace().join(format!("target/e2e-podman/overlay-{prefix}-{port}"));
        std::fs::create_dir_all(&overlay).unwrap();
        std::fs::write(overlay.join("redis-url"), redis_url).unwrap();
        std::fs::write(overlay.join("kek"), TEST_KEK).unwrap();
        std::fs::write(overlay.join("admin-token"), ADMIN_TOKEN).unwrap();
        let container_path = "/spec/template/spec/containers/0";
        let patches = [
            "{op: replace, path: /spec/replicas, value: 1}".to_owned(),
            "{op: add, path: /spec/template/spec/hostNetwork, value: true}".to_owned(),
            format!("{{op: remove, path: {container_path}/ports}}"),
            format!("{{op: replace, path: {container_path}/readinessProbe/httpGet/port, value: {port}}}"),
            format!("{{op: replace, path: {container_path}/livenessProbe/httpGet/port, value: {port}}}"),
            format!(
                "{{op: add, path: {container_path}/env/-, value: {{name: KEYMESH_LISTEN, value: \"127.0.0.1:{port}\"}}}}"
            ),
        ];
        let patches: String = patches.iter().map(|p| format!("      - {p}\n")).collect();
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n  - ../../../deploy/kubernetes/base\n\
                 namePrefix: {prefix}-\n\
                 images:\n  - name: registry.example.com/keymesh/sidecar\n    newName: localhost/keymesh/sidecar\n    newTag: {TAG}\n\
                 secretGenerator:\n  - name: keymesh-secrets\n    namespace: keymesh-system\n    files: [kek, admin-token, redis-url]\n\
                 patches:\n  - target: {{kind: Deployment, name: keymesh}}\n    patch: |-\n{patches}"
            ),
        )
        .unwrap();
        let rendered = yaml_documents(&kustomize(&overlay));
        let of_kind = |kind: &str| rendered.iter().find(|o| o["kind"] == kind).unwrap().clone();
        let (deployment, config_map, mut secret) = (
            of_kind("Deployment"),
            of_kind("ConfigMap"),
            of_kind("Secret"),
        );
        let secret_name = secret["metadata"]["name"].as_str().unwrap().to_owned();
        // podman takes a Secret's values in clear: those of the files the generator was given.
        let mut plain = serde_json::Map::new();
        for key in secret["data"].as_object().unwrap().keys() {
            let value = std::fs::read_to_string(overlay.join(key)).unwrap();
            plain.insert(key.clone(), Value::String(value));
        }
        secret["data"] = Value::Object(plain);
        let secret_file = overlay.join("secret.json");
        std::fs::write(&secret_file, serde_json::to_vec(&secret).unwrap()).unwrap();
        containers.secret(&secret_name);
        podman_ok(&[
            "secret",
            "create",
            &secret_name,
            secret_file.to_str().unwrap(),
        ]);

        // A JSON document per line is a YAML stream too.
        let file = overlay.join("play.yaml");
        std::fs::write(
            &file,
            format!(
                "---\n{}\n---\n{}\n",
                serde_json::to_string(&config_map).unwrap(),
                serde_json::to_string(&deployment).unwrap()
            ),
        )
        .unwrap();
        let pod = format!("{prefix}-keymesh-pod-0");
        let container = format!("{pod}-keymesh");
        containers.pod(&pod);
        containers.container(&container);
        for volume in [&config_map, &secret] {
            containers.volume(volume["metadata"]["name"].as_str().unwrap());
        }
        podman_ok(&["kube", "play", file.to_str().unwrap()]);
        wait_for(&format!("{pod} /healthz"), Duration::from_secs(30), || {
            (request("GET", port, "/healthz", &[], None).ok()?.status == 200).then_some(())
        });
        Self { container }
    }
}

/// Echo upstreams for orders and payments and one Envoy in front of them, configured from the rendered
/// WasmPlugins of the Istio overlay with the module taken out of the filter image.
struct Mesh {
    processes: Vec<Process>,
    orders: u16,
    payments: u16,
    admin: u16,
}

impl Mesh {
    fn start(dir: &Path, name: &str, sidecar_ports: &[u16]) -> Self {
        let rendered = yaml_documents(&kustomize(
            &workspace().join("deploy/kubernetes/overlays/istio"),
        ));
        let plugin = |namespace: &str| -> Value {
            rendered
                .iter()
                .find(|o| o["kind"] == "WasmPlugin" && o["metadata"]["namespace"] == namespace)
                .unwrap_or_else(|| panic!("no WasmPlugin in namespace {namespace}"))
                .clone()
        };
        let (orders_plugin, payments_plugin) = (plugin("orders"), plugin("payments"));
        for p in [&orders_plugin, &payments_plugin] {
            assert_eq!(
                istio_envoy::sidecar_cluster(p),
                "outbound|8080||keymesh.keymesh-system.svc.cluster.local"
            );
        }
        let wasm = plugin_wasm_from_image(dir);
        let mut processes = Vec::new();
        let (orders_up, payments_up) = (free_port(), free_port());
        for (api, port) in [("orders", orders_up), ("payments", payments_up)] {
            let mut cmd = Command::new("python3");
            cmd.arg(workspace().join("scripts/echo_upstream.py"))
                .arg(port.to_string())
                .arg(api);
            processes.push(Process::start(&format!("{name}-{api}-upstream"), dir, cmd).unwrap());
        }
        let (orders, payments, admin) = (free_port(), free_port(), free_port());
        let config = istio_envoy::write_config(
            dir,
            name,
            admin,
            &[
                Api {
                    plugin: &orders_plugin,
                    listen: orders,
                    upstream: orders_up,
                },
                Api {
                    plugin: &payments_plugin,
                    listen: payments,
                    upstream: payments_up,
                },
            ],
            &wasm,
            sidecar_ports,
        );
        let validated = Command::new(envoy_bin())
            .args(["--mode", "validate", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            validated.status.success(),
            "envoy --mode validate: {}",
            String::from_utf8_lossy(&validated.stderr)
        );
        let mut envoy = Command::new(envoy_bin());
        envoy
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart"]);
        processes.push(Process::start(&format!("{name}-envoy"), dir, envoy).unwrap());
        let mesh = Self {
            processes,
            orders,
            payments,
            admin,
        };
        wait_for("Envoy /ready", Duration::from_secs(30), || {
            (request("GET", admin, "/ready", &[], None).ok()?.status == 200).then_some(())
        });
        mesh
    }

    fn status(&self, port: u16, token: &str) -> u16 {
        let auth = format!("Bearer {token}");
        let headers: &[(&str, &str)] = if token.is_empty() {
            &[]
        } else {
            &[("authorization", &auth)]
        };
        request("GET", port, "/things/1", headers, None)
            .unwrap()
            .status
    }

    fn eventually(&self, port: u16, token: &str, status: u16) {
        wait_for(
            &format!("{status} from :{port}"),
            Duration::from_secs(15),
            || (self.status(port, token) == status).then_some(()),
        );
    }

    /// `keymesh.authn.<name>` from Envoy's stats, summed over the plugins.
    fn filter_counter(&self, name: &str) -> u64 {
        let stats = request(
            "GET",
            self.admin,
            &format!("/stats?filter=keymesh.authn.{name}$"),
            &[],
            None,
        )
        .unwrap();
        stats
            .body
            .lines()
            .filter_map(|line| line.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.processes {
                eprintln!("===== {} =====\n{}", p.name(), p.log_tail(60));
            }
        }
    }
}

/// `plugin.wasm` out of the filter image, the way Istio's agent gets it: from the image's only layer.
fn plugin_wasm_from_image(dir: &Path) -> PathBuf {
    let image = SavedImage::save(FILTER_IMAGE);
    let path = dir.join("plugin.wasm");
    std::fs::write(&path, tar_file(&image.layer(0), "plugin.wasm")).unwrap();
    path
}

/// A client_credentials token from the sidecar at `port`.
fn token(port: u16, id: &str, secret: &str, resources: &[&str], scope: &str) -> String {
    let mut form = String::from("grant_type=client_credentials");
    for r in resources {
        form.push_str(&format!("&resource={}", form_urlencode(r)));
    }
    if !scope.is_empty() {
        form.push_str(&format!("&scope={}", form_urlencode(scope)));
    }
    let resp = request(
        "POST",
        port,
        "/oauth/token",
        &[
            ("authorization", &basic(id, secret)),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&form),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

/// A sample of the sidecar's Prometheus metrics at `port`, by its full name with labels.
fn sidecar_counter(port: u16, sample: &str) -> u64 {
    let metrics = request("GET", port, "/metrics", &[], None).unwrap();
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
