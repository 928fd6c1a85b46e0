//! The demo stack on free ports: Redis, the sidecar, two echo upstreams and Envoy running `envoy/demo.yaml`
//! (ports and the wasm path rewritten). Dropping it stops everything; if the test is failing, every log is
//! printed first.

use crate::{
    authn_wasm, envoy_bin, free_port, request, sidecar_bin, wait_for, workspace, Process, Response,
};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// The admin API credential every test stack's sidecar is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

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
}

/// The listeners of one Envoy of the mesh.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub orders: u16,
    pub payments: u16,
    pub admin: u16,
}

/// A running stack.
pub struct Stack {
    pub ports: StackPorts,
    pub dir: tempfile::TempDir,
    processes: Vec<Process>,
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
        };
        Self {
            ports,
            dir: tempfile::tempdir().unwrap(),
            processes: Vec::new(),
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
        let port = self.ports.redis;
        let mut redis = Command::new("redis-server");
        redis
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(extra);
        redis.arg("--dir").arg(self.dir.path());
        self.spawn("redis", redis);
        wait_for("redis", Duration::from_secs(10), || {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("PONG")
                .then_some(())
        });
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
        wait_for("the sidecar's /healthz", Duration::from_secs(20), || {
            (request("GET", port, "/healthz", &[], None).ok()?.status == 200).then_some(())
        });
    }

    /// Starts both echo upstreams and Envoy, and waits for Envoy's `/ready` (not for key material).
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
            self.spawn(&format!("{name}-upstream"), cmd);
        }
        let ports = EnvoyPorts {
            orders: p.orders,
            payments: p.payments,
            admin: p.admin,
        };
        self.start_envoy("envoy", ports, edits);
    }

    /// Starts one more Envoy (another proxy of the same mesh: same sidecar, same upstreams) on fresh ports.
    pub fn start_extra_envoy(&mut self, name: &str, edits: &[(&str, &str)]) -> EnvoyPorts {
        let ports = EnvoyPorts {
            orders: free_port(),
            payments: free_port(),
            admin: free_port(),
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
        wait_for(&format!("{name} /ready"), Duration::from_secs(30), || {
            (request("GET", ports.admin, "/ready", &[], None)
                .ok()?
                .status
                == 200)
                .then_some(())
        });
    }

    fn spawn(&mut self, name: &str, cmd: Command) {
        let process = Process::start(name, self.dir.path(), cmd);
        self.processes.push(process);
    }

    /// The environment every `keymesh` invocation of this stack gets.
    pub fn sidecar_env(&self) -> Vec<(&'static str, String)> {
        vec![
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
        ]
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
        ] {
            let needle = format!("port_value: {from} ");
            assert!(
                yaml.contains(&needle),
                "envoy/demo.yaml no longer has `{needle}`"
            );
            yaml = yaml.replace(&needle, &format!("port_value: {to} "));
        }
        yaml = yaml.replace(
            "target/wasm32-wasip1/release/keymesh_authn.wasm",
            &authn_wasm().display().to_string(),
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

    /// Runs the `keymesh` CLI against this stack; fails the test if it fails.
    pub fn keymesh(&self, args: &[&str]) -> Output {
        let out = Command::new(sidecar_bin())
            .args(args)
            .envs(self.sidecar_env())
            .output()
            .unwrap();
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
        let out = Command::new(sidecar_bin())
            .args(args)
            .envs(self.sidecar_env())
            .output()
            .unwrap();
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
        let basic = basic_auth(id, secret);
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
            form.push_str(&format!("&resource={}", form_encode(r)));
        }
        if !scope.is_empty() {
            form.push_str(&format!("&scope={}", form_encode(scope)));
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
        // The latest one: a restarted process is started again under the same name.
        self.processes
            .iter_mut()
            .rev()
            .find(|p| p.name == name)
            .unwrap()
    }

    /// Pids of every process started, for leak checks.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Process::pid).collect()
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
            for p in &self.processes {
                eprintln!(
                    "===== {} ({}) =====\n{}",
                    p.name,
                    p.log.display(),
                    p.log_tail(60)
                );
            }
        }
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(3));
        }
    }
}

pub fn basic_auth(id: &str, secret: &str) -> String {
    use base64ct::{Base64, Encoding};
    // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
    let pair = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", Base64::encode_string(pair.as_bytes()))
}

/// application/x-www-form-urlencoded encoding of one value.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
