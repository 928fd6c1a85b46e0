//! The filter scenario table: one request each, with the status and RFC 6750 error code keymesh must answer.
//! Runs natively against `keymesh_core::authorize` and against the compiled filter in the wasmtime host.

use crate::{
    b64, claims, fixture, tamper_signature, with, Alg, KEY_EXPIRED, KEY_NO_SCOPE, KEY_ORDERS,
    KEY_PAYMENTS, KEY_UNKNOWN, NOW, OTHER_ISSUER, REVOKED_JTI,
};
use serde_json::{json, Value};

/// Filter configuration the scenarios are written for, all for the orders API: `/orders` takes JWTs with
/// `orders:read`, `/admin` JWTs with `orders:admin`, `/reports` API keys with `orders:read`, `/mixed` either with
/// `orders:read`; nothing else is covered.
pub const SCENARIO_CONFIG: &str = r#"{
  "sidecar": {"cluster": "keymesh_sidecar"},
  "leeway_secs": 30,
  "max_token_bytes": 4096,
  "routes": [
    {"prefix": "/orders", "audience": "https://orders.local", "scopes": ["orders:read"]},
    {"prefix": "/admin", "audience": "https://orders.local", "scopes": ["orders:admin"]},
    {"prefix": "/reports", "audience": "https://orders.local", "scopes": ["orders:read"], "credential": "api_key"},
    {"prefix": "/mixed", "audience": "https://orders.local", "scopes": ["orders:read"], "credential": "either"}
  ]
}"#;

/// One request and the answer keymesh must give.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub path: &'static str,
    /// `Authorization` header values, in order (none, one, or several).
    pub authorization: Vec<String>,
    /// An `x-api-key` header value, if any.
    pub x_api_key: Option<String>,
    /// 200 means "allowed through".
    pub status: u16,
    /// The `error=` code of the `WWW-Authenticate` challenge, if one is expected; `None` with a 401 means a bare
    /// challenge.
    pub error: Option<&'static str>,
    /// For allowed requests: the `x-keymesh-subject` upstream must see.
    pub subject: Option<&'static str>,
    /// For 401s: the scheme the challenge must start with.
    pub scheme: &'static str,
}

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";

fn bearer(token: &str) -> Vec<String> {
    vec![format!("Bearer {token}")]
}

fn allow(name: &'static str, path: &'static str, token: String) -> Scenario {
    Scenario {
        subject: Some("client-a"),
        ..refuse(name, path, bearer(&token), 200, None)
    }
}

fn refuse(
    name: &'static str,
    path: &'static str,
    authorization: Vec<String>,
    status: u16,
    error: Option<&'static str>,
) -> Scenario {
    Scenario {
        name,
        path,
        authorization,
        x_api_key: None,
        status,
        error,
        subject: None,
        scheme: "Bearer",
    }
}

fn invalid(name: &'static str, token: String) -> Scenario {
    refuse(
        name,
        "/orders/1",
        bearer(&token),
        401,
        Some("invalid_token"),
    )
}

fn apikey(key: &str) -> Vec<String> {
    vec![format!("apikey {key}")]
}

fn key_refused(
    name: &'static str,
    path: &'static str,
    key: &str,
    status: u16,
    error: &'static str,
) -> Scenario {
    Scenario {
        scheme: "apikey",
        ..refuse(name, path, apikey(key), status, Some(error))
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
        refuse("no token", "/orders/1", vec![], 401, None),
        refuse(
            "basic credentials only",
            "/orders/1",
            vec!["Basic YTpi".into()],
            401,
            None,
        ),
        refuse(
            "two bearer tokens",
            "/orders/1",
            vec![format!("Bearer {}", ed(&ok)), format!("Bearer {}", ed(&ok))],
            400,
            Some("invalid_request"),
        ),
        refuse("path with no rule", "/other", bearer(&ed(&ok)), 403, None),
        refuse(
            "missing scope",
            "/admin/x",
            bearer(&ed(&ok)),
            403,
            Some("insufficient_scope"),
        ),
        // API keys.
        Scenario {
            subject: Some("alice"),
            scheme: "apikey",
            ..refuse(
                "api key in authorization",
                "/reports/1",
                apikey(KEY_ORDERS),
                200,
                None,
            )
        },
        Scenario {
            subject: Some("alice"),
            x_api_key: Some(KEY_ORDERS.into()),
            ..refuse("api key in x-api-key", "/reports/1", vec![], 200, None)
        },
        Scenario {
            subject: Some("alice"),
            ..refuse(
                "api key on an either route",
                "/mixed/1",
                apikey(KEY_ORDERS),
                200,
                None,
            )
        },
        allow("jwt on an either route", "/mixed/1", ed(&ok)),
        refuse(
            "api key where only jwt is accepted",
            "/orders/1",
            apikey(KEY_ORDERS),
            401,
            None,
        ),
        Scenario {
            scheme: "apikey",
            ..refuse(
                "jwt where only api keys are accepted",
                "/reports/1",
                bearer(&ed(&ok)),
                401,
                None,
            )
        },
        Scenario {
            scheme: "apikey",
            ..refuse("no api key", "/reports/1", vec![], 401, None)
        },
        key_refused(
            "unknown or revoked api key",
            "/reports/1",
            KEY_UNKNOWN,
            401,
            "invalid_key",
        ),
        key_refused(
            "expired api key",
            "/reports/1",
            KEY_EXPIRED,
            401,
            "invalid_key",
        ),
        key_refused(
            "malformed api key",
            "/reports/1",
            "km_tooshort",
            401,
            "invalid_key",
        ),
        key_refused(
            "api key for another api",
            "/reports/1",
            KEY_PAYMENTS,
            403,
            "insufficient_scope",
        ),
        key_refused(
            "api key without the scope",
            "/reports/1",
            KEY_NO_SCOPE,
            403,
            "insufficient_scope",
        ),
        Scenario {
            x_api_key: Some(KEY_ORDERS.into()),
            ..refuse(
                "api key and bearer together",
                "/mixed/1",
                bearer(&ed(&ok)),
                400,
                Some("invalid_request"),
            )
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
        invalid(
            "revoked token",
            ed(&with(ok.clone(), "jti", json!(REVOKED_JTI))),
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
        // RFC 9068 §4: `typ` must be `at+jwt` (a media type: any case, `application/` optional), unless the
        // issuer's entry accepts more; the second issuer accepts `JWT`.
        allow(
            "typ application/at+jwt accepted",
            "/orders/1",
            fx.typed_token(Alg::EdDsa, Some("application/at+jwt"), &ok),
        ),
        allow(
            "typ in upper case accepted",
            "/orders/1",
            fx.typed_token(Alg::Es256, Some("AT+JWT"), &ok),
        ),
        invalid(
            "typ JWT refused",
            fx.typed_token(Alg::EdDsa, Some("JWT"), &ok),
        ),
        invalid("no typ refused", fx.typed_token(Alg::Rs256, None, &ok)),
        invalid(
            "typ with parameters refused",
            fx.typed_token(Alg::EdDsa, Some("at+jwt; charset=utf-8"), &ok),
        ),
        invalid(
            "id token typ refused",
            fx.typed_token(Alg::EdDsa, Some("id_token+jwt"), &ok),
        ),
        allow(
            "typ JWT accepted where the issuer allows it",
            "/orders/1",
            fx.other_issuer_typed_token(Some("JWT"), &with(ok.clone(), "iss", json!(OTHER_ISSUER))),
        ),
        allow(
            "typ application/jwt accepted where the issuer allows JWT",
            "/orders/1",
            fx.other_issuer_typed_token(
                Some("application/jwt"),
                &with(ok.clone(), "iss", json!(OTHER_ISSUER)),
            ),
        ),
        invalid(
            "no typ refused where the issuer allows only JWT",
            fx.other_issuer_typed_token(None, &with(ok.clone(), "iss", json!(OTHER_ISSUER))),
        ),
        invalid(
            "typ JOSE refused where the issuer allows only JWT",
            fx.other_issuer_typed_token(
                Some("JOSE"),
                &with(ok.clone(), "iss", json!(OTHER_ISSUER)),
            ),
        ),
        invalid("short eddsa signature", {
            let t = ed(&ok);
            let (rest, _) = t.rsplit_once('.').unwrap();
            format!("{rest}.{}", b64(&[1u8; 32]))
        }),
    ]
}
