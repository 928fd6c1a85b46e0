//! Bad plugin configuration: `on_configure` refuses it and the log names the offending field.

use crate::{authn, vm};
use keymesh_wasm_host::{HostError, LogLevel, SharedStore};

#[test]
fn bad_configurations_are_refused_with_the_field_named() -> Result<(), HostError> {
    let cases = [
        (r#"{"routes":[{"prefix":"/","audience":"a"}]}"#, "sidecar"),
        (
            r#"{"sidecar":{"cluster":""},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.cluster",
        ),
        (r#"{"sidecar":{"cluster":"k"},"routes":[]}"#, "routes"),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"orders","audience":"a"}]}"#,
            "routes[0].prefix",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","scopes":["a b"]}]}"#,
            "routes[0].scopes[0]",
        ),
        (
            r#"{"sidecar":{"cluster":"k","timeout_ms":1},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.timeout_ms",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a"}],"extra":1}"#,
            "extra",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","identity_headers":["subject","sub"]}]}"#,
            "routes[0].identity_headers[1]",
        ),
        ("[1,2", "invalid configuration"),
        ("", "empty"),
    ];
    for (config, field) in cases {
        let mut vm = authn()?
            .vm()
            .root_id("keymesh_authn")
            .plugin_configuration(config)
            .build()?;
        assert!(vm.on_vm_start()?, "vm start failed");
        assert!(!vm.on_configure()?, "accepted {config}");
        let line = vm.find_log(LogLevel::Error, "refusing configuration");
        assert!(
            line.is_some_and(|l| l.message.contains(field)),
            "{config}: no error naming `{field}`: {:?}",
            vm.logs()
        );
        assert!(vm.pending_http_calls().is_empty());
        vm.finish()?;
    }
    Ok(())
}

#[test]
fn a_good_configuration_logs_no_error() -> Result<(), HostError> {
    let vm = vm(keymesh_testkit::SCENARIO_CONFIG, &SharedStore::new())?;
    assert!(
        vm.logs().iter().all(|l| l.level < LogLevel::Warn),
        "{:?}",
        vm.logs()
    );
    vm.finish()
}
