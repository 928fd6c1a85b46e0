//! Support for the container tests: the images (built once per test binary by `scripts/images.sh`), podman with
//! the settings this machine needs, the Kubernetes manifests rendered by kustomize, and Envoy configured the way
//! Istio's agent configures it for a WasmPlugin.
#![allow(dead_code)]

pub(crate) mod istio_envoy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use keymesh_e2e::workspace;

/// The tag scripts/images.sh gives the images these tests build.
pub(crate) const TAG: &str = "e2e";
pub(crate) const SIDECAR_IMAGE: &str = "localhost/keymesh/sidecar:e2e";
pub(crate) const FILTER_IMAGE: &str = "localhost/keymesh/authn-filter:e2e";
/// The test key-encryption key (32 bytes, base64), for throwaway Redis instances only.
pub(crate) const TEST_KEK: &str = "ZTJlIHN0YWNrIGtleS1lbmNyeXB0aW9uIGtleSAzMmI=";
pub(crate) const ADMIN_TOKEN: &str = "containers-e2e-admin-token-0123456789";

/// True (after saying so loudly) when podman is not installed: scripts/setup.sh installs it, so CI never skips.
pub(crate) fn podman_missing() -> bool {
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED: podman is not installed: the container tests did not run. \
             scripts/setup.sh installs it. !!!!!!!!\n\n"
        );
    }
    !found
}

/// podman's settings for this machine (and CI's): runc, cgroupfs, host networking, explicit ulimits (runc
/// refuses to raise a limit past what it is allowed, so they stay within this process's own). Written once per test
/// binary and passed through `CONTAINERS_CONF`.
pub(crate) fn containers_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let dir = workspace().join("target/e2e-podman");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("containers.conf");
        let nofile = soft_limit("Max open files").clamp(1024, 16_384);
        std::fs::write(
            &path,
            format!(
                "[containers]\nnetns = \"host\"\n\
                 default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=4096:4096\"]\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
            ),
        )
        .unwrap();
        path
    })
}

/// This process's soft limit named `name` in /proc/self/limits (1024 if it cannot be read).
fn soft_limit(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(1024)
}

/// A podman command with this machine's settings.
pub(crate) fn podman_command(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", containers_conf()).args(args);
    command
}

/// Runs podman; returns its output whatever the exit status.
pub(crate) fn podman(args: &[&str]) -> Output {
    podman_command(args).output().unwrap()
}

/// Runs podman, failing the test if it fails; returns stdout.
pub(crate) fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds both images with scripts/images.sh (tag `e2e`), once per test binary: the static release build is the
/// expensive part, and cargo makes a second run of the script cheap anyway.
pub(crate) fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(workspace().join("scripts/images.sh"))
            .env("KEYMESH_IMAGE_TAG", TAG)
            .env("CONTAINERS_CONF", containers_conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/images.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    });
}

/// The release filter module scripts/images.sh packaged.
pub(crate) fn built_wasm() -> PathBuf {
    workspace().join("target/wasm32-wasip1/release/keymesh_authn.wasm")
}

/// Containers and pods removed (with their logs printed if the test is failing) when dropped.
#[derive(Default)]
pub(crate) struct Containers {
    containers: Vec<String>,
    pods: Vec<String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
}

impl Containers {
    pub(crate) fn container(&mut self, name: &str) {
        // A leftover from an interrupted run would make the name clash.
        let _ = podman(&["rm", "-f", "-t", "0", name]);
        self.containers.push(name.to_owned());
    }

    pub(crate) fn pod(&mut self, name: &str) {
        let _ = podman(&["pod", "rm", "-f", "-t", "0", name]);
        self.pods.push(name.to_owned());
    }

    /// A volume `podman kube play` creates for a ConfigMap or Secret.
    pub(crate) fn volume(&mut self, name: &str) {
        let _ = podman(&["volume", "rm", "-f", name]);
        self.volumes.push(name.to_owned());
    }

    pub(crate) fn secret(&mut self, name: &str) {
        let _ = podman(&["secret", "rm", name]);
        self.secrets.push(name.to_owned());
    }

    /// The container's log (stdout and stderr).
    pub(crate) fn logs(name: &str) -> String {
        let out = podman(&["logs", name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in &self.containers {
                eprintln!("===== container {name} =====\n{}", Self::logs(name));
            }
        }
        for name in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", name]);
        }
        for name in &self.pods {
            let _ = podman(&["pod", "rm", "-f", "-t", "0", name]);
        }
        for name in &self.volumes {
            let _ = podman(&["volume", "rm", "-f", name]);
        }
        for name in &self.secrets {
            let _ = podman(&["secret", "rm", name]);
        }
    }
}

/// `kubectl kustomize DIR`.
pub(crate) fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed for the manifest tests: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The project's Python (scripts/setup.sh installs PyYAML and kubernetes-validate into it).
pub(crate) fn venv_python() -> PathBuf {
    workspace().join(".venv/bin/python")
}

/// Every document of a YAML stream, as JSON.
pub(crate) fn yaml_documents(yaml: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "cannot parse YAML:\n{yaml}");
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// Runs `scripts/validate-manifests.py` on `yaml`; returns (success, output).
pub(crate) fn validate_manifests(yaml: &str) -> (bool, String) {
    let mut child = Command::new(venv_python())
        .arg(workspace().join("scripts/validate-manifests.py"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The files of an image's layers: `podman save` in the OCI layout, then each layer (a tar) listed and read.
pub(crate) struct SavedImage {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) manifest: serde_json::Value,
    pub(crate) config: serde_json::Value,
}

impl SavedImage {
    pub(crate) fn save(image: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("oci");
        podman_ok(&[
            "save",
            "--format",
            "oci-dir",
            "-o",
            out.to_str().unwrap(),
            image,
        ]);
        let index = read_json(&out.join("index.json"));
        let manifest = read_json(&blob_path(&out, &index["manifests"][0]["digest"]));
        let config = read_json(&blob_path(&out, &manifest["config"]["digest"]));
        Self {
            dir,
            manifest,
            config,
        }
    }

    /// The tar of layer `n`.
    pub(crate) fn layer(&self, n: usize) -> PathBuf {
        blob_path(
            &self.dir.path().join("oci"),
            &self.manifest["layers"][n]["digest"],
        )
    }
}

/// The blob named by an OCI descriptor's `digest`, in the layout at `dir`.
pub(crate) fn blob_path(dir: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest.as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    dir.join("blobs/sha256").join(hex)
}

pub(crate) fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The entries of a (possibly gzip-compressed) tar file, as `tar -t` lists them.
pub(crate) fn tar_entries(tar: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// One file's bytes from a tar.
pub(crate) fn tar_file(tar: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "no {name} in {}", tar.display());
    out.stdout
}

/// The SHA-256 of a file, in hex.
pub(crate) fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
