//! Registration policy: who may register what, and which redirect URIs count as loopback.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::support::admin_token::AdminToken;

fn policy(anonymous: bool, token: Option<&str>) -> RegistrationSettings {
    RegistrationSettings {
        initial_access_token: token.map(|t| AdminToken::new(t).unwrap()),
        anonymous,
        resources: vec!["https://mcp.example/mcp".into()],
        scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
        ..RegistrationSettings::default()
    }
}

fn metadata(uris: &[&str], method: Option<&str>) -> ClientMetadata {
    ClientMetadata {
        redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
        token_endpoint_auth_method: method.map(str::to_owned),
        ..ClientMetadata::default()
    }
}

#[test]
fn admission_follows_the_policy() {
    let names = KeyNames::new("t:");
    let off = RegistrationSettings::default();
    let r = Registrar::new(&off, &names, String::new());
    assert!(matches!(r.admit(None), Err(RegistrationError::Disabled)));
    let token_only = policy(false, Some("initial-token"));
    let r = Registrar::new(&token_only, &names, String::new());
    assert!(matches!(
        r.admit(None),
        Err(RegistrationError::InvalidToken)
    ));
    assert!(matches!(
        r.admit(Some("guess")),
        Err(RegistrationError::InvalidToken)
    ));
    assert_eq!(
        r.admit(Some("initial-token")).unwrap(),
        RegisteredVia::InitialAccessToken
    );
    let open = policy(true, None);
    let r = Registrar::new(&open, &names, String::new());
    assert_eq!(r.admit(None).unwrap(), RegisteredVia::Anonymous);
    assert!(matches!(
        r.admit(Some("x")),
        Err(RegistrationError::InvalidToken)
    ));
}

#[test]
fn anonymous_clients_are_public_with_web_or_loopback_redirects_within_bounds() {
    let names = KeyNames::new("t:");
    let open = policy(true, Some("tok"));
    let r = Registrar::new(&open, &names, String::new());
    let anon = RegisteredVia::Anonymous;
    let ok = r
        .check(metadata(&["http://127.0.0.1:3030/cb"], Some("none")), anon)
        .unwrap();
    assert!(ok.new.public);
    assert_eq!(ok.new.resources, ["https://mcp.example/mcp"]);
    assert_eq!(ok.new.scopes, ["mcp:tools", "mcp:admin"]);
    assert_eq!(ok.new.grant_types, [GrantType::AuthorizationCode]);
    assert!(ok.new.client_id.starts_with("dyn-"));
    assert!(r
        .check(metadata(&["https://app.example/cb"], Some("none")), anon)
        .is_ok());
    let refused: Vec<(ClientMetadata, &str)> = vec![
        (
            metadata(&["https://app.example/cb"], None),
            "invalid_client_metadata",
        ),
        (
            metadata(&["https://app.example/cb"], Some("client_secret_post")),
            "invalid_client_metadata",
        ),
        (
            metadata(&["com.example.app:/cb"], Some("none")),
            "invalid_redirect_uri",
        ),
        (
            metadata(&["http://app.example/cb"], Some("none")),
            "invalid_redirect_uri",
        ),
        (
            metadata(&["http://localhost.evil.example/cb"], Some("none")),
            "invalid_redirect_uri",
        ),
        (metadata(&[], Some("none")), "invalid_redirect_uri"),
        (
            metadata(&["https://app.example/cb#frag"], Some("none")),
            "invalid_redirect_uri",
        ),
        (
            ClientMetadata {
                scope: Some("mcp:tools root".into()),
                ..metadata(&["https://a.example/cb"], Some("none"))
            },
            "invalid_client_metadata",
        ),
        (
            ClientMetadata {
                grant_types: Some(vec!["client_credentials".into()]),
                ..metadata(&["https://a.example/cb"], Some("none"))
            },
            "invalid_client_metadata",
        ),
        (
            ClientMetadata {
                response_types: Some(vec!["token".into()]),
                ..metadata(&["https://a.example/cb"], Some("none"))
            },
            "invalid_client_metadata",
        ),
    ];
    for (m, code) in refused {
        let err = r.check(m.clone(), anon).err().unwrap().to_string();
        assert!(err.starts_with(code), "{m:?}: {err}");
    }
    // With the initial access token, a confidential client with a private-use scheme is fine.
    let c = r
        .check(
            metadata(&["com.example.app:/cb"], Some("client_secret_basic")),
            RegisteredVia::InitialAccessToken,
        )
        .unwrap();
    assert!(!c.new.public);
    let narrowed = r
        .check(
            ClientMetadata {
                scope: Some("mcp:tools".into()),
                ..metadata(&["https://a.example/cb"], Some("none"))
            },
            anon,
        )
        .unwrap();
    assert_eq!(narrowed.new.scopes, ["mcp:tools"]);
}

#[test]
fn loopback_detection() {
    assert!(is_web_or_loopback("http://127.0.0.1:8000/cb"));
    assert!(is_web_or_loopback("http://localhost/cb"));
    assert!(is_web_or_loopback("http://[::1]:9/cb"));
    assert!(!is_web_or_loopback("http://localhost.evil.example/cb"));
    assert!(!is_web_or_loopback("http://127.0.0.1.evil.example/cb"));
}
