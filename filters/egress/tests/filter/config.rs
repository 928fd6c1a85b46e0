//! Bad plugin configuration: `on_configure` refuses it and the log names the offending field.

use crate::*;
use keymesh_wasm_host::{HostError, LogLevel, SharedStore};

#[test]
fn bad_configurations_are_refused_with_the_field_named() -> Result<(), HostError> {
    let cases = [
        (
            r#""cluster": "keymesh_sidecar""#,
            r#""cluster": """#,
            "sidecar.cluster",
        ),
        (
            r#""timeout_ms": 2000"#,
            r#""timeout_ms": 1"#,
            "sidecar.timeout_ms",
        ),
        (
            r#""client_secret": "orders-secret""#,
            r#""client_secret": """#,
            "client_secret",
        ),
        (
            r#""client_id": "orders""#,
            r#""client_id": "or ders""#,
            "client_id",
        ),
        (
            r#""renew_before_secs": 60"#,
            r#""renew_before_secs": 1"#,
            "renew_before_secs",
        ),
        (r#""lease_ms": 3000"#, r#""lease_ms": 5"#, "lease_ms"),
        (
            r#""audience": "urn:ledger""#,
            r#""audience": "ledger""#,
            "destinations[1].audience",
        ),
        (
            r#""scopes": ["payments:read"]"#,
            r#""scopes": ["a\\b"]"#,
            "destinations[0].scopes[0]",
        ),
        (
            r#""authority": "ledger.local""#,
            r#""authority": "payments.local""#,
            "destinations[1].authority",
        ),
        (
            r#""mode": "exchange""#,
            r#""mode": "forward""#,
            "unknown variant `forward`",
        ),
        (
            r#""client_id""#,
            r#""client_secret_file": "/x", "client_id""#,
            "unknown field `client_secret_file`",
        ),
    ];
    for (from, to, field) in cases {
        let config = CONFIG.replacen(from, to, 1);
        assert_ne!(config, CONFIG, "{from} not in the configuration");
        let mut vm = egress()?
            .vm()
            .root_id("keymesh_egress")
            .plugin_configuration(config.as_str())
            .build()?;
        assert!(vm.on_vm_start()?, "vm start failed");
        assert!(!vm.on_configure()?, "accepted {config}");
        let line = vm.find_log(LogLevel::Error, "refusing configuration");
        assert!(
            line.is_some_and(|l| l.message.contains(field)),
            "{field}: {:?}",
            vm.logs()
        );
        vm.finish()?;
    }
    let mut empty = egress()?.vm().root_id("keymesh_egress").build()?;
    assert!(empty.on_vm_start()?);
    assert!(!empty.on_configure()?);
    assert!(empty.find_log(LogLevel::Error, "empty").is_some());
    empty.finish()
}

#[test]
fn a_good_configuration_logs_nothing() -> Result<(), HostError> {
    let vm = worker(CONFIG, &SharedStore::new())?;
    assert!(vm.logs().is_empty(), "{:?}", vm.logs());
    vm.finish()
}
