//! The demo stack on free ports: Redis, the sidecar, two echo upstreams and Envoy running `envoy/demo.yaml`
//! (ports and the wasm path rewritten). Dropping it stops everything; if the test is failing, every log is
//! printed first.

use crate::redis_cluster::{ClusterNode, RedisCluster};
use crate::{authn_wasm, egress_wasm, envoy_bin, request, sidecar_bin, workspace, Response};
use keymesh_test_support::{free_port, wait_for, Process, RedisOptions, RedisServer};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// The admin API credential every test stack's sidecar is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// How long Envoy may take to answer `/ready`. It compiles the wasm filter for each of its workers at start, which
/// takes seconds on an idle machine and far longer on two cores shared with parallel builds and tests; the wait
/// only lasts this long when something is wrong, and a process that exits fails it at once.
const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the sidecar may take to answer `/healthz` (it connects to Redis and loads the bundle first).
const SIDECAR_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each part listens.
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    pub redis: u16,
    pub sidecar: u16,
    pub orders: u16,
    pub payments: u16,
    pub orders_upstream: u16,
    pub payments_upstream: u16,
    pub admin: u16,
    /// orders' outbound listener (the egress filter), which the orders upstream relays payments calls to.
    pub orders_egress: u16,
}

/// The listeners of one Envoy of the mesh.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub orders: u16,
    pub payments: u16,
    pub admin: u16,
    pub orders_egress: u16,
}

/// A running stack.
pub struct Stack {
    pub ports: StackPorts,
    pub dir: tempfile::TempDir,
    /// Redis, once started: a process of the stack like the others, kept apart because it knows its options.
    redis: Option<RedisServer>,
    processes: Vec<Process>,
    /// Environment of every `keymesh` run, over the defaults of [`Stack::sidecar_env`].
    env: Vec<(&'static str, String)>,
}

impl Stack {
    /// Allocates ports and a log directory; starts nothing.
    pub fn new() -> Self {
        let ports = StackPorts {
            redis: free_port(),
            sidecar: free_port(),
            orders: free_port(),
            payments: free_port(),
            orders_upstream: free_port(),
            payments_upstream: free_port(),
            admin: free_port(),
            orders_egress: free_port(),
        };
        Self {
            ports,
            dir: tempfile::tempdir().unwrap(),
            redis: None,
            processes: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts the whole demo stack: Redis, the sidecar, the upstreams and Envoy.
    pub fn start() -> Self {
        let mut stack = Self::new();
        stack.start_redis();
        stack.start_sidecar();
        stack.start_mesh();
        stack
    }

    /// Starts Redis (no persistence) and waits for PING.
    pub fn start_redis(&mut self) {
        self.start_redis_with(&["--save", "", "--appendonly", "no"]);
    }

    /// Starts Redis with extra arguments (e.g. persistence) in this stack's directory, and waits for PING. Calling
    /// it again after stopping Redis restarts it on the same port with the same data directory.
    pub fn start_redis_with(&mut self, extra: &[&str]) {
        // The stopped server (if any) goes first: the new one takes its port and its data directory.
        self.redis = None;
        let redis = RedisServer::launch(RedisOptions {
            port: Some(self.ports.redis),
            dir: Some(self.dir.path().to_owned()),
            password: None,
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
        })
        .unwrap_or_else(|e| panic!("redis: {e}"));
        self.redis = Some(redis);
    }

    /// Starts a Redis Cluster of `masters` masters (no replicas) on free ports, each with `requirepass` and
    /// `masterauth` if a `password` is given, joins them with `redis-cli --cluster create` and waits until every
    /// node reports `cluster_state:ok`. The sidecar is not pointed at it: see [`Stack::set_env`].
    pub fn start_redis_cluster(&mut self, masters: usize, password: Option<&str>) -> RedisCluster {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            password: password.map(str::to_owned),
        };
        for i in 0..masters {
            let (port, bus_port) = (free_port(), free_port());
            let dir = self.dir.path().join(format!("redis-cluster-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = Command::new("redis-server");
            redis
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus_port.to_string(),
                ])
                .args(["--cluster-config-file", "nodes.conf"])
                // Failures are noticed in 2 s, and the slots of a failed master do not stop the others.
                .args([
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                ])
                .args(["--save", "", "--appendonly", "no"]);
            if let Some(password) = password {
                redis.args(["--requirepass", password, "--masterauth", password]);
            }
            redis.arg("--dir").arg(&dir);
            let process = format!("redis-cluster-{i}");
            self.spawn(&process, redis);
            wait_for(&process, Duration::from_secs(10), || {
                cluster
                    .try_cli(port, &["PING"])
                    .is_some_and(|pong| pong == "PONG")
                    .then_some(())
            });
            cluster.nodes.push(ClusterNode {
                port,
                id: cluster.cli(port, &["CLUSTER", "MYID"]),
                process,
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(password) = password {
            create.env("REDISCLI_AUTH", password);
        }
        let out = create.output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(
            "cluster_state:ok on every node",
            Duration::from_secs(20),
            || {
                cluster
                    .nodes
                    .iter()
                    .all(|node| {
                        cluster
                            .try_cli(node.port, &["CLUSTER", "INFO"])
                            .is_some_and(|info| info.contains("cluster_state:ok"))
                    })
                    .then_some(())
            },
        );
        cluster
    }

    /// Sets `name` to `value` in the environment of every `keymesh` run from now on (the sidecar and the CLI),
    /// over the default of [`Stack::sidecar_env`].
    pub fn set_env(&mut self, name: &'static str, value: impl Into<String>) {
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
    }

    /// Starts the sidecar and waits for `/healthz`.
    pub fn start_sidecar(&mut self) {
        self.start_sidecar_with(&[]);
    }

    /// [`Stack::start_sidecar`] with extra environment (settings for this test).
    pub fn start_sidecar_with(&mut self, extra_env: &[(&str, &str)]) {
        let port = self.ports.sidecar;
        let mut sidecar = Command::new(sidecar_bin());
        sidecar
            .arg("serve")
            .envs(self.sidecar_env())
            .envs(extra_env.iter().copied());
        self.spawn("sidecar", sidecar);
        self.wait_until_ready("sidecar", "/healthz", SIDECAR_READY_TIMEOUT, || {
            (request("GET", port, "/healthz", &[], None).ok()?.status == 200).then_some(())
        });
    }

    /// Starts both echo upstreams (orders relaying `/orders/{id}/payment` to payments through the main Envoy's
    /// egress listener) and Envoy, and waits for Envoy's `/ready` (not for key material).
    pub fn start_mesh(&mut self) {
        self.start_mesh_with(&[]);
    }

    /// [`Stack::start_mesh`] with textual edits applied to `envoy/demo.yaml` (e.g. filter settings).
    pub fn start_mesh_with(&mut self, edits: &[(&str, &str)]) {
        let p = self.ports;
        for (name, port) in [
            ("orders", p.orders_upstream),
            ("payments", p.payments_upstream),
        ] {
            let mut cmd = Command::new("python3");
            cmd.arg(workspace().join("scripts/echo_upstream.py"))
                .arg(port.to_string())
                .arg(name);
            if name == "orders" {
                cmd.arg("--relay").arg(p.orders_egress.to_string());
            }
            self.spawn(&format!("{name}-upstream"), cmd);
        }
        let ports = EnvoyPorts {
            orders: p.orders,
            payments: p.payments,
            admin: p.admin,
            orders_egress: p.orders_egress,
        };
        self.start_envoy("envoy", ports, edits);
    }

    /// Starts one more Envoy (another proxy of the same mesh: same sidecar, same upstreams) on fresh ports.
    pub fn start_extra_envoy(&mut self, name: &str, edits: &[(&str, &str)]) -> EnvoyPorts {
        let ports = EnvoyPorts {
            orders: free_port(),
            payments: free_port(),
            admin: free_port(),
            orders_egress: free_port(),
        };
        self.start_envoy(name, ports, edits);
        ports
    }

    fn start_envoy(&mut self, name: &str, ports: EnvoyPorts, edits: &[(&str, &str)]) {
        let config = self.render_demo_config(name, ports, edits);
        let mut envoy = Command::new(envoy_bin());
        envoy
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart"]);
        envoy.args(["--service-node", name, "--service-cluster", "keymesh-e2e"]);
        self.spawn(name, envoy);
        self.wait_until_ready(name, "/ready", ENVOY_READY_TIMEOUT, || {
            (request("GET", ports.admin, "/ready", &[], None)
                .ok()?
                .status
                == 200)
                .then_some(())
        });
    }

    /// Waits up to `timeout` for `ready` of the process just started as `name`, and fails at once, with its log,
    /// if that process exits meanwhile (a generous timeout then costs nothing).
    fn wait_until_ready(
        &mut self,
        name: &str,
        endpoint: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Option<()>,
    ) {
        let process = self.process(name);
        wait_for(&format!("{name} {endpoint}"), timeout, || {
            if !process.is_running() {
                panic!(
                    "{name} exited before answering {endpoint}:\n{}",
                    process.log_tail(40)
                );
            }
            ready()
        });
    }

    fn spawn(&mut self, name: &str, cmd: Command) {
        let process = Process::start(name, self.dir.path(), cmd).unwrap();
        self.processes.push(process);
    }

    /// The environment every `keymesh` invocation of this stack gets.
    pub fn sidecar_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "KEYMESH_REDIS_URL",
                format!("redis://127.0.0.1:{}/", self.ports.redis),
            ),
            (
                "KEYMESH_LISTEN",
                format!("127.0.0.1:{}", self.ports.sidecar),
            ),
            (
                "KEYMESH_ISSUER",
                format!("http://127.0.0.1:{}", self.ports.sidecar),
            ),
            ("KEYMESH_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            // Test-only key-encryption key: seals the stack's signing keys in its throwaway Redis.
            (
                "KEYMESH_KEK",
                "ZTJlIHN0YWNrIGtleS1lbmNyeXB0aW9uIGtleSAzMmI=".into(),
            ),
            ("RUST_LOG", "info,keymesh=debug".into()),
        ];
        env.retain(|(name, _)| !self.env.iter().any(|(set, _)| set == name));
        env.extend(self.env.iter().cloned());
        env
    }

    /// `envoy/demo.yaml` with this stack's ports, the freshly built module and `edits` applied.
    pub fn render_demo_config(
        &self,
        name: &str,
        envoy: EnvoyPorts,
        edits: &[(&str, &str)],
    ) -> PathBuf {
        let p = self.ports;
        let mut yaml = std::fs::read_to_string(workspace().join("envoy/demo.yaml")).unwrap();
        for (from, to) in [
            (10001, envoy.orders),
            (10002, envoy.payments),
            (8080, p.sidecar),
            (9001, p.orders_upstream),
            (9002, p.payments_upstream),
            (9901, envoy.admin),
            (10004, envoy.orders_egress),
            // The demo's unfiltered baseline listener: unused by the tests, but it must not bind a demo port.
            (10003, free_port()),
        ] {
            let needle = format!("port_value: {from} ");
            assert!(
                yaml.contains(&needle),
                "envoy/demo.yaml no longer has `{needle}`"
            );
            yaml = yaml.replace(&needle, &format!("port_value: {to} "));
        }
        yaml = yaml
            .replace(
                "target/wasm32-wasip1/release/keymesh_authn.wasm",
                &authn_wasm().display().to_string(),
            )
            .replace(
                "target/wasm32-wasip1/release/keymesh_egress.wasm",
                &egress_wasm().display().to_string(),
            );
        for (from, to) in edits {
            assert!(
                yaml.contains(from),
                "envoy/demo.yaml has no `{from}` to edit"
            );
            yaml = yaml.replace(from, to);
        }
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn run_keymesh(&self, args: &[&str]) -> Output {
        Command::new(sidecar_bin())
            .args(args)
            .envs(self.sidecar_env())
            .output()
            .unwrap()
    }

    /// Runs the `keymesh` CLI against this stack; fails the test if it fails.
    pub fn keymesh(&self, args: &[&str]) -> Output {
        let out = self.run_keymesh(args);
        assert!(
            out.status.success(),
            "keymesh {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs the `keymesh` CLI expecting it to fail; returns what it printed on stderr.
    pub fn keymesh_fails(&self, args: &[&str]) -> String {
        let out = self.run_keymesh(args);
        assert!(
            !out.status.success(),
            "keymesh {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates a client with a fixed secret.
    pub fn create_client(&self, id: &str, secret: &str, resources: &[&str], scopes: &[&str]) {
        let mut args = vec!["client", "create", "--id", id, "--secret", secret];
        for r in resources {
            args.extend(["--resource", r]);
        }
        for s in scopes {
            args.extend(["--scope", s]);
        }
        self.keymesh(&args);
    }

    /// Asks the sidecar for a client_credentials token; returns the whole response.
    pub fn token_response(&self, id: &str, secret: &str, form: &str) -> Response {
        let basic = keymesh_test_support::basic(id, secret);
        request(
            "POST",
            self.ports.sidecar,
            "/oauth/token",
            &[
                ("authorization", &basic),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(form),
        )
        .unwrap()
    }

    /// A client_credentials access token for `resources` (and `scope`, when not empty).
    pub fn token(&self, id: &str, secret: &str, resources: &[&str], scope: &str) -> String {
        let mut form = String::from("grant_type=client_credentials");
        for r in resources {
            form.push_str(&format!(
                "&resource={}",
                keymesh_test_support::form_urlencode(r)
            ));
        }
        if !scope.is_empty() {
            form.push_str(&format!(
                "&scope={}",
                keymesh_test_support::form_urlencode(scope)
            ));
        }
        let resp = self.token_response(id, secret, &form);
        assert_eq!(resp.status, 200, "token request failed: {}", resp.body);
        resp.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// GET through one of the APIs' Envoy listeners.
    pub fn get(&self, port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
        request("GET", port, path, headers, None).unwrap()
    }

    /// Asserts a status, printing EXPECTED/RECEIVED with the whole response otherwise.
    pub fn responds_with(
        &self,
        status: u16,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let resp = self.get(port, path, headers);
        assert_eq!(
            resp.status, status,
            "GET :{port}{path}\nEXPECTED: {status}\nRECEIVED: {} {:?}\n{}",
            resp.status, resp.headers, resp.body
        );
        resp
    }

    /// The process named `name`.
    pub fn process(&mut self, name: &str) -> &mut Process {
        if name == "redis" {
            return self
                .redis
                .as_mut()
                .and_then(RedisServer::process_mut)
                .unwrap();
        }
        // The latest one: a restarted process is started again under the same name.
        self.processes
            .iter_mut()
            .rev()
            .find(|p| p.name() == name)
            .unwrap()
    }

    /// Every process started (Redis first), running or not.
    fn all_processes(&self) -> impl Iterator<Item = &Process> {
        self.redis
            .as_ref()
            .and_then(RedisServer::process)
            .into_iter()
            .chain(&self.processes)
    }

    /// Pids of every process started, for leak checks.
    pub fn pids(&self) -> Vec<u32> {
        self.all_processes().map(Process::pid).collect()
    }
}

impl Default for Stack {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self.all_processes() {
                eprintln!(
                    "===== {} ({}) =====\n{}",
                    p.name(),
                    p.log_path().display(),
                    p.log_tail(60)
                );
            }
        }
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(3));
        }
        if let Some(p) = self.redis.as_mut().and_then(RedisServer::process_mut) {
            p.stop(Duration::from_secs(3));
        }
    }
}
