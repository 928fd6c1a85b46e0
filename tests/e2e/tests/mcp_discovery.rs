//! The MCP Python SDK (pinned in scripts/setup.sh), unchanged, as an MCP client with its own OAuth support, against
//! a minimal MCP server of the same SDK behind real Envoy and keymesh: it meets the 401, follows the filter's
//! RFC 9728 `resource_metadata` to the sidecar, registers itself (RFC 7591, anonymous policy), runs the code flow
//! with PKCE and `resource`, and lists and calls the server's tools. Deleting the client then revokes its tokens
//! at every proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth_support;

use std::process::Command;
use std::time::{Duration, Instant};

use keymesh_e2e::{free_port, wait_for, workspace, Process, Stack};
use oauth_support::*;

const ORDERS_ROUTE: &str = r#"{ "prefix": "/", "audience": "https://orders.local", "scopes": ["orders:read"], "credential": "either" }"#;

/// Polls `port` with `token` until it is refused as revoked; fails after `within`.
fn until_revoked(stack: &Stack, port: u16, token: &str, within: Duration) -> Duration {
    let auth = bearer(token);
    let started = Instant::now();
    loop {
        let response = stack.get(port, "/mcp", &[("authorization", &auth)]);
        if response.status == 401 {
            assert!(response.body.contains("revoked"), "{}", response.body);
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still accepted after {:?}: {}",
            started.elapsed(),
            response.status
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_mcp_sdk_discovers_registers_and_lists_tools_through_envoy() {
    let mut stack = Stack::new();
    let p = stack.ports;
    let mcp_port = free_port();
    let mcp_url = format!("http://127.0.0.1:{}/mcp", p.orders);
    let issuer = format!("http://127.0.0.1:{}", p.sidecar);
    stack.start_redis();
    stack.start_sidecar_with(&[
        ("KEYMESH_REGISTRATION_ANONYMOUS", "true"),
        ("KEYMESH_REGISTRATION_RESOURCES", mcp_url.as_str()),
        ("KEYMESH_REGISTRATION_SCOPES", "mcp:tools"),
    ]);
    create_user(&stack, "alice");

    let mut server = Command::new(python());
    server
        .arg(workspace().join("tests/e2e/python/mcp_server.py"))
        .arg(mcp_port.to_string());
    let _server = Process::start("mcp-server", stack.dir.path(), server).unwrap();
    wait_for("the MCP server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", mcp_port)).ok()
    });
    // The orders listener fronts the MCP server: its route's audience is the server's URL, and the filter
    // serves protected-resource metadata naming the sidecar.
    let closing_from = format!("{ORDERS_ROUTE}\n                      ]");
    let route = format!(
        r#"{{ "prefix": "/", "audience": "{mcp_url}", "scopes": ["mcp:tools"] }}
                      ],
                      "resource_metadata": {{ "authorization_servers": ["{issuer}"], "resource_name": "Orders MCP" }}"#
    );
    let upstream_from = format!("port_value: {} ", p.orders_upstream);
    let upstream_to = format!("port_value: {mcp_port} ");
    let edits = [
        (closing_from.as_str(), route.as_str()),
        (upstream_from.as_str(), upstream_to.as_str()),
    ];
    stack.start_mesh_with(&edits);
    let second = stack.start_extra_envoy("envoy-2", &edits);

    // What the SDK will find: the challenge and the document, served by the filter.
    wait_for("Envoy's first key bundle", Duration::from_secs(15), || {
        (stack.get(p.orders, "/mcp", &[]).status == 401).then_some(())
    });
    let refused = stack.get(p.orders, "/mcp", &[]);
    let challenge = refused
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    let metadata_url = format!(
        "http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp",
        p.orders
    );
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let document = stack
        .responds_with(
            200,
            p.orders,
            "/.well-known/oauth-protected-resource/mcp",
            &[],
        )
        .json();
    assert_eq!(document["resource"], mcp_url.as_str());
    assert_eq!(document["authorization_servers"][0], issuer.as_str());

    let env = vec![
        ("MCP_URL", mcp_url.clone()),
        ("KEYMESH_URL", issuer.clone()),
        ("REDIRECT_URI", "http://127.0.0.1:33418/callback".to_owned()),
        ("USERNAME", "alice".to_owned()),
        ("PASSWORD", PASSWORD.to_owned()),
    ];
    let out = run_python("mcp_client.py", &[], &env, Duration::from_secs(60));
    let result: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(
        result["tools"],
        serde_json::json!(["order_status"]),
        "{result}"
    );
    assert_eq!(
        result["call"],
        serde_json::json!(["order 42: shipped"]),
        "{result}"
    );
    let client_id = result["client_id"].as_str().unwrap().to_owned();
    let token = result["access_token"].as_str().unwrap().to_owned();

    // The client is an ordinary client, listed as self-registered.
    let listed = stack.keymesh(&["client", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let line = listed
        .lines()
        .find(|l| l.starts_with(&client_id))
        .unwrap_or_default();
    assert!(
        line.contains("created_by=registered (anonymous)") && line.contains("public"),
        "{listed}"
    );

    // A second client library, oauth4webapi (JavaScript), parses the challenge, discovers both documents and
    // registers; a confidential client is refused by the anonymous policy with the RFC 7591 error.
    let js = workspace().join("tests/e2e/js");
    let node = Command::new("timeout")
        .args(["30", "node", "discover_and_register.mjs"])
        .current_dir(&js)
        .env("RESOURCE", &mcp_url)
        .env("REDIRECT_URI", "http://127.0.0.1:33419/callback")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&node.stderr);
    assert!(
        node.status.success(),
        "oauth4webapi failed ({}): {stderr}\n(run scripts/setup.sh)",
        node.status
    );
    eprintln!("{stderr}");
    let found: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap();
    assert_eq!(found["metadata_url"], metadata_url.as_str(), "{found}");
    assert_eq!(found["resource"], mcp_url.as_str(), "{found}");
    assert_eq!(
        found["scopes_supported"],
        serde_json::json!(["mcp:tools"]),
        "{found}"
    );
    assert_eq!(found["issuer"], issuer.as_str(), "{found}");
    assert_eq!(found["token_endpoint_auth_method"], "none", "{found}");
    assert_eq!(found["has_registration_access_token"], true, "{found}");
    assert_eq!(
        found["confidential_refused_with"], "invalid_client_metadata",
        "{found}"
    );
    let js_client = found["client_id"].as_str().unwrap();
    let listed = stack.keymesh(&["client", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(js_client));

    // Deleting it revokes its tokens at both proxies.
    let auth = bearer(&token);
    for port in [p.orders, second.orders] {
        assert_ne!(
            stack.get(port, "/mcp", &[("authorization", &auth)]).status,
            401
        );
    }
    stack.keymesh(&["client", "delete", &client_id]);
    for port in [p.orders, second.orders] {
        let took = until_revoked(&stack, port, &token, Duration::from_secs(2));
        eprintln!("deletion reached the proxy on {port} in {took:?}");
    }
}
