//! The second hop end to end, on real Envoy, the real sidecar and Redis (`envoy/demo.yaml` as the demo runs it):
//! a caller's token for orders only reaches payments through orders' egress listener, whose filter exchanges it
//! (RFC 8693) for a payments token naming the caller as subject and the orders workload as actor. Revoking the
//! caller's token revokes the exchanged one too, at every proxy; a client without exchange rights is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{basic, bearer, form_urlencode, request, wait_for, Response, Stack};
use serde_json::Value;
use std::time::Duration;

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The stack with the caller's client `demo` and the orders workload's client, as `envoy/demo.yaml`'s egress
/// filter names it (id `orders`, secret `orders-secret`).
fn start() -> Stack {
    let stack = Stack::start();
    stack.create_client(
        "demo",
        "demo-secret",
        &[ORDERS, PAYMENTS],
        &["orders:read", "payments:read"],
    );
    stack.keymesh(&[
        "client",
        "create",
        "--id",
        "orders",
        "--secret",
        "orders-secret",
        "--resource",
        ORDERS,
        "--scope",
        "payments:read",
        "--exchange-resource",
        PAYMENTS,
    ]);
    stack
}

/// The caller's token: for orders only, holding `payments:read` for orders to exchange.
fn caller_token(stack: &Stack) -> String {
    let token = stack.token(
        "demo",
        "demo-secret",
        &[ORDERS],
        "orders:read payments:read",
    );
    let auth = bearer(&token);
    wait_for(
        "Envoy to receive its first key bundle",
        Duration::from_secs(15),
        || {
            (stack
                .get(stack.ports.orders, "/orders/1", &[("authorization", &auth)])
                .status
                != 503)
                .then_some(())
        },
    );
    token
}

/// What payments saw when orders called it for the caller (orders' answer must be 200).
fn second_hop(stack: &Stack, token: &str) -> Value {
    let resp = stack.responds_with(
        200,
        stack.ports.orders,
        "/orders/42/payment",
        &[("authorization", &bearer(token))],
    );
    let body = resp.json();
    assert_eq!(body["api"], "orders", "{body}");
    assert_eq!(body["payment"]["status"], 200, "{body}");
    body["payment"]["body"].clone()
}

/// GET /payments/42 on orders' egress listener, as the orders application calls payments.
fn through_egress(stack: &Stack, token: &str) -> Response {
    request(
        "GET",
        stack.ports.orders_egress,
        "/payments/42",
        &[
            ("host", "payments.local"),
            ("authorization", &bearer(token)),
        ],
        None,
    )
    .unwrap()
}

#[test]
fn payments_sees_the_caller_as_subject_and_orders_as_actor() {
    let stack = start();
    let token = caller_token(&stack);
    let payments = second_hop(&stack, &token);
    assert_eq!(payments["api"], "payments", "{payments}");
    assert_eq!(payments["path"], "/payments/42", "{payments}");
    let identity = &payments["identity"];
    assert_eq!(identity["x-keymesh-subject"], "demo", "{payments}");
    assert_eq!(identity["x-keymesh-actor"], "orders", "{payments}");
    assert_eq!(identity["x-keymesh-client-id"], "orders", "{payments}");
    assert_eq!(identity["x-keymesh-scope"], "payments:read", "{payments}");
    assert_eq!(payments["authorization_forwarded"], false, "{payments}");

    // The same token straight to payments is refused: it was issued for orders only.
    let refused = stack.responds_with(
        401,
        stack.ports.payments,
        "/payments/42",
        &[("authorization", &bearer(&token))],
    );
    assert!(!refused.body.contains("\"api\""), "{}", refused.body);

    // A destination the egress filter does not know gets no token: Envoy has no route for it, and the caller's
    // token is not sent anywhere.
    let unknown = request(
        "GET",
        stack.ports.orders_egress,
        "/anything",
        &[("host", "ledger.local"), ("authorization", &bearer(&token))],
        None,
    )
    .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[test]
fn revoking_the_callers_token_makes_the_next_hop_fail_too() {
    let stack = start();
    let token = caller_token(&stack);
    second_hop(&stack, &token);
    // The exchanged token is now cached by the egress filter: the application's next call uses it.
    let cached = through_egress(&stack, &token);
    assert_eq!(cached.status, 200, "{}", cached.body);
    assert_eq!(cached.json()["identity"]["x-keymesh-actor"], "orders");

    let revoked = request(
        "POST",
        stack.ports.sidecar,
        "/oauth/revoke",
        &[
            ("authorization", &basic("demo", "demo-secret")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&format!("token={token}")),
    )
    .unwrap();
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    // The first hop refuses the caller's token...
    wait_for(
        "orders to refuse the revoked token",
        Duration::from_secs(10),
        || {
            let status = stack
                .get(
                    stack.ports.orders,
                    "/orders/42/payment",
                    &[("authorization", &bearer(&token))],
                )
                .status;
            (status == 401).then_some(())
        },
    );
    // ... and payments refuses the exchanged token the egress filter still holds: its revocation went with the
    // caller's, and reached payments' proxy like any other.
    wait_for(
        "payments to refuse the exchanged token",
        Duration::from_secs(10),
        || {
            let resp = through_egress(&stack, &token);
            (resp.status == 401).then_some(resp)
        },
    );
    let refused = through_egress(&stack, &token);
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("token revoked"),
        "refused, but not by payments for revocation: {challenge} {}",
        refused.body
    );
}

#[test]
fn a_client_without_exchange_rights_is_unauthorized_client() {
    let stack = start();
    let token = caller_token(&stack);
    stack.create_client("reports", "reports-secret", &[ORDERS], &["orders:read"]);
    let form = format!(
        "grant_type={}&subject_token={}&subject_token_type={}&resource={}",
        form_urlencode(EXCHANGE),
        form_urlencode(&token),
        form_urlencode(ACCESS_TOKEN),
        form_urlencode(PAYMENTS)
    );
    let refused = stack.token_response("reports", "reports-secret", &form);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        refused.json()["error"],
        "unauthorized_client",
        "{}",
        refused.body
    );
    // The workload with the right exchanges the same token.
    let granted = stack.token_response("orders", "orders-secret", &form);
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.json()["issued_token_type"], ACCESS_TOKEN);
}
