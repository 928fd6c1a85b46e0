//! The filter scenario table: one request each, with the status and RFC 6750 error code keymesh must answer.
//! Runs natively against `keymesh_core::authorize` and against the compiled filter in the wasmtime host.

use crate::{b64, claims, fixture, tamper_signature, with, Alg, NOW, OTHER_ISSUER};
use serde_json::{json, Value};

/// Filter configuration the scenarios are written for: `/orders` needs `orders:read` for the orders API,
/// `/admin` needs `orders:admin`; nothing else is covered.
pub const SCENARIO_CONFIG: &str = r#"{
  "sidecar": {"cluster": "keymesh_sidecar"},
  "leeway_secs": 30,
  "max_token_bytes": 4096,
  "routes": [
    {"prefix": "/orders", "audience": "https://orders.local", "scopes": ["orders:read"]},
    {"prefix": "/admin", "audience": "https://orders.local", "scopes": ["orders:admin"]}
  ]
}"#;

/// One request and the answer keymesh must give.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub path: &'static str,
    /// `Authorization` header values, in order (none, one, or several).
    pub authorization: Vec<String>,
    /// 200 means "allowed through".
    pub status: u16,
    /// The `error=` code of the `WWW-Authenticate` challenge, if one is expected; `None` with a 401 means a bare
    /// challenge.
    pub error: Option<&'static str>,
    /// For allowed requests: the `x-keymesh-subject` upstream must see.
    pub subject: Option<&'static str>,
}

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";

fn bearer(token: &str) -> Vec<String> {
    vec![format!("Bearer {token}")]
}

fn allow(name: &'static str, path: &'static str, token: String) -> Scenario {
    Scenario {
        name,
        path,
        authorization: bearer(&token),
        status: 200,
        error: None,
        subject: Some("client-a"),
    }
}

fn invalid(name: &'static str, token: String) -> Scenario {
    Scenario {
        name,
        path: "/orders/1",
        authorization: bearer(&token),
        status: 401,
        error: Some("invalid_token"),
        subject: None,
    }
}

/// Every scenario, built with the fixed fixture keys at [`crate::NOW`].
pub fn scenarios() -> Vec<Scenario> {
    let fx = fixture();
    let ok = claims(&[ORDERS], "orders:read");
    let ed = |c: &Value| fx.token(Alg::EdDsa, c);
    let header_then = |header: Value, payload: &Value| {
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        )
    };

    vec![
        allow("eddsa token accepted", "/orders/1", ed(&ok)),
        allow(
            "es256 token accepted",
            "/orders/1",
            fx.token(Alg::Es256, &ok),
        ),
        allow(
            "rs256 token accepted",
            "/orders/1",
            fx.token(Alg::Rs256, &ok),
        ),
        allow(
            "one token for two apis",
            "/orders/1",
            ed(&claims(&[PAYMENTS, ORDERS], "orders:read payments:read")),
        ),
        allow(
            "aud as a plain string",
            "/orders/1",
            ed(&with(ok.clone(), "aud", json!(ORDERS))),
        ),
        allow(
            "expired within leeway",
            "/orders/1",
            ed(&with(ok.clone(), "exp", json!(NOW - 10))),
        ),
        allow(
            "admin scope on admin path",
            "/admin/x",
            ed(&claims(&[ORDERS], "orders:read orders:admin")),
        ),
        Scenario {
            authorization: vec![format!("bearer {}", ed(&ok))],
            ..allow("scheme is case-insensitive", "/orders/1", String::new())
        },
        Scenario {
            name: "no token",
            path: "/orders/1",
            authorization: vec![],
            status: 401,
            error: None,
            subject: None,
        },
        Scenario {
            name: "basic credentials only",
            path: "/orders/1",
            authorization: vec!["Basic YTpi".into()],
            status: 401,
            error: None,
            subject: None,
        },
        Scenario {
            name: "two bearer tokens",
            path: "/orders/1",
            authorization: vec![format!("Bearer {}", ed(&ok)), format!("Bearer {}", ed(&ok))],
            status: 400,
            error: Some("invalid_request"),
            subject: None,
        },
        Scenario {
            name: "path with no rule",
            path: "/other",
            authorization: bearer(&ed(&ok)),
            status: 403,
            error: None,
            subject: None,
        },
        Scenario {
            name: "missing scope",
            path: "/admin/x",
            authorization: bearer(&ed(&ok)),
            status: 403,
            error: Some("insufficient_scope"),
            subject: None,
        },
        invalid(
            "alg none, empty signature",
            header_then(json!({"alg":"none","kid":"ed-1"}), &ok),
        ),
        invalid(
            "alg none with a signature",
            format!(
                "{}AAAA",
                header_then(json!({"alg":"none","kid":"ed-1"}), &ok)
            ),
        ),
        invalid(
            "hs256 signed with the public key",
            fx.hs256_with_public_key(&ok),
        ),
        invalid("rs256 header on an eddsa key", {
            let t = ed(&ok);
            let (_, rest) = t.split_once('.').unwrap();
            format!(
                "{}.{rest}",
                b64(json!({"alg":"RS256","kid":"ed-1"}).to_string().as_bytes())
            )
        }),
        invalid(
            "unknown kid",
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA","kid":"nope"}),
                ok.to_string().as_bytes(),
            ),
        ),
        invalid(
            "no kid",
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA"}),
                ok.to_string().as_bytes(),
            ),
        ),
        invalid("embedded attacker jwk", fx.embedded_jwk_token(&ok)),
        invalid(
            "jku header",
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA","kid":"ed-1","jku":"https://evil/jwks"}),
                ok.to_string().as_bytes(),
            ),
        ),
        invalid(
            "crit header",
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA","kid":"ed-1","crit":["exp"]}),
                ok.to_string().as_bytes(),
            ),
        ),
        invalid("expired", ed(&with(ok.clone(), "exp", json!(NOW - 31)))),
        invalid(
            "not yet valid",
            ed(&with(ok.clone(), "nbf", json!(NOW + 60))),
        ),
        invalid(
            "wrong issuer",
            ed(&with(ok.clone(), "iss", json!("https://evil.example"))),
        ),
        invalid(
            "other issuer's iss on our key",
            ed(&with(ok.clone(), "iss", json!(OTHER_ISSUER))),
        ),
        invalid(
            "our iss on the other issuer's key",
            fx.other_issuer_token(&ok),
        ),
        invalid(
            "wrong audience (string)",
            ed(&with(ok.clone(), "aud", json!(PAYMENTS))),
        ),
        invalid(
            "wrong audience (array)",
            ed(&with(
                ok.clone(),
                "aud",
                json!([PAYMENTS, "https://x.local"]),
            )),
        ),
        invalid("absent audience", ed(&with(ok.clone(), "aud", Value::Null))),
        invalid("absent exp", ed(&with(ok.clone(), "exp", Value::Null))),
        invalid("truncated token", {
            let t = ed(&ok);
            t[..t.len() - 10].to_owned()
        }),
        invalid(
            "oversized token",
            format!(
                "{}.{}.{}",
                "a".repeat(2000),
                "b".repeat(2000),
                "c".repeat(200)
            ),
        ),
        invalid("bad base64 in payload", {
            let t = ed(&ok);
            let (h, rest) = t.split_once('.').unwrap();
            format!("{h}.+{rest}")
        }),
        invalid("four segments", format!("{}.x", ed(&ok))),
        invalid("tampered signature", tamper_signature(&ed(&ok))),
        invalid(
            "tampered es256 signature",
            tamper_signature(&fx.token(Alg::Es256, &ok)),
        ),
        invalid(
            "tampered rs256 signature",
            tamper_signature(&fx.token(Alg::Rs256, &ok)),
        ),
        invalid("tampered payload", {
            let t = ed(&ok);
            let parts: Vec<&str> = t.split('.').collect();
            let forged = claims(&[ORDERS], "orders:read orders:admin");
            format!(
                "{}.{}.{}",
                parts[0],
                b64(forged.to_string().as_bytes()),
                parts[2]
            )
        }),
        invalid("duplicate claim names", {
            let payload = format!(
                r#"{{"iss":"{}","sub":"client-a","sub":"admin","aud":"{ORDERS}","exp":{},"scope":"orders:read"}}"#,
                crate::ISSUER,
                NOW + 300
            );
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA","kid":"ed-1"}),
                payload.as_bytes(),
            )
        }),
        invalid(
            "payload is not json",
            fx.sign_raw(
                Alg::EdDsa,
                &json!({"alg":"EdDSA","kid":"ed-1"}),
                b"not json",
            ),
        ),
        invalid(
            "subject with a newline",
            ed(&with(
                ok.clone(),
                "sub",
                json!("a\r\nx-keymesh-scope: admin"),
            )),
        ),
        invalid("short eddsa signature", {
            let t = ed(&ok);
            let (rest, _) = t.rsplit_once('.').unwrap();
            format!("{rest}.{}", b64(&[1u8; 32]))
        }),
    ]
}
