//! Every Envoy config keymesh ships passes `envoy --mode validate` (which also loads the wasm module and runs
//! its `on_configure`), and a broken filter configuration is refused with a log line naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{authn_wasm, egress_wasm, envoy_bin, workspace};
use std::process::Command;

fn validate(config: &std::path::Path) -> std::process::Output {
    Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(workspace())
        .output()
        .unwrap()
}

#[test]
fn shipped_envoy_configs_validate() {
    authn_wasm();
    egress_wasm();
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && !path.to_string_lossy().contains("istio")
        {
            let out = validate(&path);
            assert!(
                out.status.success(),
                "{} does not validate:\n{}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Envoy configs found");
}

#[test]
fn bad_filter_configuration_is_refused_with_the_field_named() {
    let yaml = std::fs::read_to_string(workspace().join("envoy/demo.yaml"))
        .unwrap()
        .replace(
            "target/wasm32-wasip1/release/keymesh_authn.wasm",
            &authn_wasm().display().to_string(),
        )
        .replace(
            "target/wasm32-wasip1/release/keymesh_egress.wasm",
            &egress_wasm().display().to_string(),
        )
        .replacen(r#""prefix": "/""#, r#""prefix": "no-slash""#, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = validate(&path);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a bad filter config validated:\n{log}"
    );
    assert!(
        log.contains("routes[0].prefix"),
        "the refusal does not name the field:\n{log}"
    );
}
