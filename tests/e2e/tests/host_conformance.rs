//! Fidelity of the wasmtime test host: the conformance probe (`tests/wasm-host/probe-filter`) runs in real Envoy
//! and its report must equal `tests/wasm-host/conformance/envoy.txt`, the recording the host's own test
//! (`cargo test -p keymesh-wasm-host --test host conformance`) also compares against. Rerun it against another
//! Envoy with `KEYMESH_ENVOY=/path/to/envoy cargo test -p keymesh-e2e --test host_conformance`; set
//! `KEYMESH_CONFORMANCE_WRITE=1` to rewrite the recording from that Envoy instead of comparing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{envoy_bin, free_port, request, wait_for, workspace, Process};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The upstream of the probe scenario: `/call` answers `pong`, `/reset` cuts off mid-body, `/hang` never answers,
/// anything else gets a chunked `world` with a trailer once the (chunked) request body and its trailers arrived.
fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

fn serve(mut stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            let chunked = head.contains("transfer-encoding: chunked");
            let body = &text[end + 4..];
            let complete = !chunked || (body.contains("0\r\n") && body.ends_with("\r\n\r\n"));
            if complete && path == "/hang" {
                // Never answers: the caller's timeout fires first.
                std::thread::sleep(Duration::from_secs(5));
                return;
            }
            if complete {
                let reply: &[u8] = match path.as_str() {
                    "/call" => b"HTTP/1.1 200 OK\r\nx-up: 1\r\ncontent-length: 4\r\n\r\npong",
                    "/reset" => b"HTTP/1.1 200 OK\r\nx-up: 1\r\ncontent-length: 100\r\n\r\npart",
                    _ => b"HTTP/1.1 200 OK\r\nx-up: 1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\nx-response-trailer: r\r\n\r\n",
                };
                let _ = stream.write_all(reply);
                if path == "/reset" {
                    return;
                }
                buffer.clear();
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(wasm: &std::path::Path, listen: u16, admin: u16, upstream: u16, refused: u16) -> String {
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: probe
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe
          http_protocol_options: {{ enable_trailers: true }}
          route_config:
            virtual_hosts:
            - name: probe
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: probe_upstream }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: probe
                root_id: probe
                configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: probe-config }}
                vm_config:
                  vm_id: probe
                  runtime: envoy.wasm.runtime.v8
                  configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: probe-vm-config }}
                  code: {{ local: {{ filename: {wasm} }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: probe_upstream
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http_protocol_options: {{ enable_trailers: true }}
    load_assignment:
      cluster_name: probe_upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
  - name: probe_empty
    type: STATIC
    connect_timeout: 1s
    load_assignment: {{ cluster_name: probe_empty }}
  - name: probe_refused
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: probe_refused
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {refused} }} }} }}
"#,
        wasm = wasm.display()
    )
}

/// The scenario's main request: duplicate `x-first` (for the replace check), a chunked body and trailers.
fn main_request(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request =
        "POST /probe HTTP/1.1\r\nhost: probe\r\nx-probe: main\r\nx-first: a\r\nx-second: b\r\n\
                   x-first: c\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
                   5\r\nhello\r\n0\r\nx-request-trailer: t\r\n\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn probe_report_from_envoy_matches_the_recording() {
    let wasm = keymesh_wasm_host::build_filter("keymesh-host-probe").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `refused`: a free port nothing listens on.
    let (listen, admin, upstream, refused) =
        (free_port(), free_port(), start_upstream(), free_port());
    let config_path = dir.path().join("probe.yaml");
    std::fs::write(
        &config_path,
        config(&wasm, listen, admin, upstream, refused),
    )
    .unwrap();
    let mut envoy = Command::new(envoy_bin());
    envoy.arg("-c").arg(&config_path).args([
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "-l",
        "info",
    ]);
    let envoy = Process::start("envoy", dir.path(), envoy).expect("start envoy");
    wait_for("envoy /ready", Duration::from_secs(30), || {
        (request("GET", admin, "/ready", &[], None).ok()?.status == 200).then_some(())
    });

    let response = main_request(listen);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "main request: {response}\n{}",
        envoy.log_tail(40)
    );
    let report = wait_for(
        "the probe report with every phase",
        Duration::from_secs(10),
        || {
            let report = request("GET", listen, "/report", &[("x-probe", "report")], None).ok()?;
            (!report.body.contains("not recorded")).then_some(report.body)
        },
    );
    let recording = workspace().join("tests/wasm-host/conformance/envoy.txt");
    if std::env::var_os("KEYMESH_CONFORMANCE_WRITE").is_some() {
        std::fs::write(&recording, &report).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&recording).unwrap();
    if report != expected {
        let actual = dir.path().join("envoy-report.txt");
        std::fs::write(&actual, &report).unwrap();
        let diff = Command::new("diff")
            .arg(&recording)
            .arg(&actual)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "Envoy's probe report differs from {} (KEYMESH_CONFORMANCE_WRITE=1 rewrites it):\n{diff}\n{}",
            recording.display(),
            envoy.log_tail(40)
        );
    }
}
