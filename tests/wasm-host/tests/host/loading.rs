//! Loading: imports linked, a missing import or export named at load.

use crate::fixture;
use keymesh_wasm_host::{FilterModule, HostError};

/// A wasm section: id, LEB128 size (all sizes here are < 128), content.
fn section(id: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![id, u8::try_from(content.len()).unwrap_or(0)];
    out.extend_from_slice(content);
    out
}

fn name(text: &str) -> Vec<u8> {
    let mut out = vec![u8::try_from(text.len()).unwrap_or(0)];
    out.extend_from_slice(text.as_bytes());
    out
}

const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

#[test]
fn fixture_imports_are_all_provided() -> Result<(), HostError> {
    let module = fixture()?;
    for import in [
        "env.proxy_log",
        "env.proxy_http_call",
        "env.proxy_get_header_map_pairs",
        "wasi_snapshot_preview1.fd_write",
    ] {
        assert!(
            module.imports().iter().any(|i| i == import),
            "{import} missing from {:?}",
            module.imports()
        );
    }
    Ok(())
}

#[test]
fn missing_import_is_named_at_load() {
    // (module (type (func)) (import "env" "proxy_bogus" (func (type 0))))
    let mut bytes = HEADER.to_vec();
    bytes.extend(section(1, &[0x01, 0x60, 0x00, 0x00]));
    let mut import = vec![0x01];
    import.extend(name("env"));
    import.extend(name("proxy_bogus"));
    import.extend([0x00, 0x00]);
    bytes.extend(section(2, &import));

    let error = FilterModule::from_bytes("bogus.wasm", &bytes)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("filter module imports functions the host does not provide: env.proxy_bogus")
    );
}

#[test]
fn module_without_abi_version_export_is_rejected() {
    // (module (memory 1) (export "memory" (memory 0)))
    let mut bytes = HEADER.to_vec();
    bytes.extend(section(5, &[0x01, 0x00, 0x01]));
    let mut export = vec![0x01];
    export.extend(name("memory"));
    export.extend([0x02, 0x00]);
    bytes.extend(section(7, &export));

    let result = FilterModule::from_bytes("no-abi.wasm", &bytes);
    assert!(
        matches!(
            &result,
            Err(HostError::MissingExport {
                name: "proxy_abi_version_0_2_1",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let error = FilterModule::load("/nonexistent/filter.wasm")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.starts_with("reading filter module /nonexistent/filter.wasm"),
        "{error}"
    );
}

#[test]
fn proc_exit_during_initialize_is_a_trap() {
    // (module
    //   (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
    //   (memory 1)
    //   (func $init (call 0 (i32.const 3)))   ;; _initialize
    //   (func) (func (param i32 i32)) (func (param i32) (result i32) (i32.const 0))
    //   (export ...))
    let mut bytes = HEADER.to_vec();
    let types = [
        0x04, 0x60, 0x00, 0x00, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x01,
        0x7f, 0x01, 0x7f,
    ];
    bytes.extend(section(1, &types));
    let mut import = vec![0x01];
    import.extend(name("wasi_snapshot_preview1"));
    import.extend(name("proc_exit"));
    import.extend([0x00, 0x01]);
    bytes.extend(section(2, &import));
    bytes.extend(section(3, &[0x04, 0x00, 0x00, 0x02, 0x03]));
    bytes.extend(section(5, &[0x01, 0x00, 0x01]));
    let mut exports = vec![0x05];
    for (export, kind, index) in [
        ("memory", 0x02, 0x00),
        ("_initialize", 0x00, 0x01),
        ("proxy_abi_version_0_2_1", 0x00, 0x02),
        ("proxy_on_context_create", 0x00, 0x03),
        ("proxy_on_memory_allocate", 0x00, 0x04),
    ] {
        exports.extend(name(export));
        exports.extend([kind, index]);
    }
    bytes.extend(section(7, &exports));
    let code = [
        0x04, // four bodies
        0x06, 0x00, 0x41, 0x03, 0x10, 0x00, 0x0b, // i32.const 3; call 0
        0x02, 0x00, 0x0b, 0x02, 0x00, 0x0b, // empty bodies
        0x04, 0x00, 0x41, 0x00, 0x0b, // i32.const 0
    ];
    bytes.extend(section(10, &code));

    let module = FilterModule::from_bytes("exit.wasm", &bytes);
    let error = module.and_then(|m| m.vm().build()).err();
    assert!(
        matches!(&error, Some(HostError::Trap { callback: "_initialize", message, .. }) if message == "filter called proc_exit(3)"),
        "{error:?}"
    );
}
