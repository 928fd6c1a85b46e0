//! VM lifecycle, configuration, properties of the root, logging, virtual clock and ticks.

use crate::fixture_vm;
use keymesh_wasm_host::{HostError, HttpResponse, LogLevel};
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn vm_start_and_configure_report_results_and_read_root_id() -> Result<(), HostError> {
    let mut vm = fixture_vm()?
        .root_id("keymesh")
        .vm_configuration("vm-config")
        .build()?;
    assert!(vm.on_vm_start()?);
    assert!(vm.on_configure()?);
    assert!(
        vm.find_log(LogLevel::Info, "vm started with 9 configuration bytes")
            .is_some(),
        "{:?}",
        vm.logs()
    );
    assert!(
        vm.find_log(LogLevel::Info, "configuring root id keymesh")
            .is_some(),
        "{:?}",
        vm.logs()
    );
    vm.finish()
}

#[test]
fn rejected_configuration_returns_false_and_logs_error() -> Result<(), HostError> {
    let mut vm = fixture_vm()?.plugin_configuration("reject").build()?;
    vm.call_on_vm_start().execute_and_expect(true)?;
    vm.call_on_configure()
        .expect_log(LogLevel::Error, "configuration rejected")
        .execute_and_expect(false)?;
    // A corrected configuration is applied by a second proxy_on_configure, as on an Envoy update.
    vm.set_plugin_configuration("tick_ms=50");
    assert!(vm.on_configure()?);
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(50)));
    vm.finish()
}

#[test]
fn log_level_drops_lower_lines() -> Result<(), HostError> {
    let mut vm = fixture_vm()?
        .log_level(LogLevel::Warn)
        .plugin_configuration("reject")
        .build()?;
    vm.on_vm_start()?;
    assert!(!vm.on_configure()?);
    let lines: Vec<String> = vm.logs().iter().map(ToString::to_string).collect();
    assert_eq!(lines, vec!["[error] configuration rejected"]);
    vm.finish()
}

#[test]
fn virtual_clock_fires_ticks_at_the_filter_period() -> Result<(), HostError> {
    let mut vm = fixture_vm()?.plugin_configuration("tick_ms=1000").build()?;
    vm.start()?;
    let start = vm.now();
    assert_eq!(start, UNIX_EPOCH + Duration::from_secs(1_735_689_600));

    assert_eq!(
        vm.advance_time(Duration::from_millis(999))?,
        0,
        "no tick before one period"
    );
    assert_eq!(
        vm.advance_time(Duration::from_millis(2501))?,
        3,
        "ticks at 1s, 2s and 3s"
    );
    assert_eq!(vm.now(), start + Duration::from_millis(3500));

    // The first tick dispatched the key fetch; the next two saw it in flight.
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].upstream, "keys");
    assert_eq!(
        (calls[0].method(), calls[0].path(), calls[0].authority()),
        ("GET", "/keys", "keys.local")
    );
    assert_eq!(calls[0].timeout, Duration::from_secs(5));
    assert_eq!(
        vm.logs()
            .iter()
            .filter(|l| l.message == "key fetch still in flight")
            .count(),
        2
    );

    vm.respond_to_http_call(calls[0].token, HttpResponse::new(200).body("k1,k2"))?;
    assert_eq!(
        vm.shared().get("fixture.keys").as_deref(),
        Some(&b"k1,k2"[..])
    );
    assert!(vm.find_log(LogLevel::Info, "stored 5 key bytes").is_some());
    vm.finish()
}

#[test]
fn failed_key_fetch_is_delivered_with_no_headers() -> Result<(), HostError> {
    let mut vm = fixture_vm()?.plugin_configuration("tick_ms=100").build()?;
    vm.start()?;
    vm.call_on_tick()
        .expect_http_call("keys")
        .reset()
        .expect_log(LogLevel::Warn, "key fetch 1 failed")
        .execute()?;
    assert_eq!(vm.counter("fixture.fetch_failures"), Some(1));
    assert_eq!(vm.shared().get("fixture.keys"), None);
    vm.finish()
}

#[test]
fn wasi_environment_clock_stdout_and_seeded_randomness() -> Result<(), HostError> {
    let wasi_line = |seed: u64| -> Result<(String, String), HostError> {
        let mut vm = fixture_vm()?
            .env("FIXTURE_MODE", "strict")
            .random_seed(seed)
            .build()?;
        vm.on_vm_start()?;
        let line = vm
            .logs()
            .iter()
            .find(|l| l.message.starts_with("wasi "))
            .map(|l| l.message.clone());
        let stdout = vm.stdout();
        vm.finish()?;
        Ok((line.unwrap_or_default(), stdout))
    };
    let (line, stdout) = wasi_line(1)?;
    assert!(
        line.starts_with("wasi mode=strict now=1735689600 hash="),
        "{line}"
    );
    assert_eq!(stdout, "fixture vm starting\n");
    assert_eq!(wasi_line(1)?.0, line, "same seed, same randomness");
    assert_ne!(wasi_line(2)?.0, line, "another seed, other randomness");
    Ok(())
}
