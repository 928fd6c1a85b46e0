//! External providers: fetch URLs, registration checks, and records as bundle entries.
#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn fetch_urls_must_be_https_except_on_loopback() {
    assert!(check_fetch_url("https://idp.example.com/jwks").is_ok());
    assert!(check_fetch_url("http://127.0.0.1:9000/jwks").is_ok());
    assert!(check_fetch_url("http://localhost/jwks").is_ok());
    assert!(check_fetch_url("http://[::1]:80/jwks").is_ok());
    assert!(check_fetch_url("http://idp.example.com/jwks").is_err());
    assert!(check_fetch_url("http://127.0.0.1.example.com/jwks").is_err());
    assert!(check_fetch_url("ftp://idp.example.com/jwks").is_err());
    assert!(check_fetch_url("/jwks").is_err());
    let with_password = check_fetch_url("https://user:hunter2@idp.example.com/jwks").unwrap_err();
    assert!(!with_password.contains("hunter2"), "{with_password}");
}

#[test]
fn registrations_are_validated() {
    let jwks = KeySource::JwksUri("https://idp.example.com/jwks".into());
    let ok = NewIssuer::new(
        "https://idp.example.com".into(),
        jwks.clone(),
        vec!["urn:a".into(), "urn:a".into(), "https://b.example".into()],
        "https://own.example",
    )
    .unwrap();
    assert_eq!(ok.audiences, ["urn:a", "https://b.example"]);
    let err = |issuer: &str, source: KeySource, audiences: &[&str]| {
        NewIssuer::new(
            issuer.into(),
            source,
            audiences.iter().map(|a| (*a).to_owned()).collect(),
            "https://own.example",
        )
        .unwrap_err()
    };
    assert!(matches!(
        err("https://own.example", jwks.clone(), &["urn:a"]),
        IssuerError::OwnIssuer(_)
    ));
    assert!(matches!(
        err("https://idp.example.com?x=1", jwks.clone(), &["urn:a"]),
        IssuerError::InvalidIssuer(_)
    ));
    assert!(matches!(
        err("http://idp.example.com", jwks.clone(), &["urn:a"]),
        IssuerError::InvalidIssuer(_)
    ));
    assert!(matches!(
        err("https://idp.example.com", jwks.clone(), &[]),
        IssuerError::NoAudiences
    ));
    assert!(matches!(
        err("https://idp.example.com", jwks, &["not a uri"]),
        IssuerError::InvalidAudience(_)
    ));
    assert!(matches!(
        err(
            "https://idp.example.com",
            KeySource::Discovery("http://idp.example.com/.well-known/openid-configuration".into()),
            &["urn:a"]
        ),
        IssuerError::InvalidUrl(_)
    ));
    let typed = ok
        .accepting_types(
            vec!["JWT".into(), "application/jwt".into(), "AT+JWT".into()],
            true,
        )
        .unwrap();
    assert_eq!(
        typed.accept_typ,
        ["JWT"],
        "duplicates and at+jwt itself are dropped"
    );
    assert!(typed.accept_missing_typ);
    let bad_typ = NewIssuer::new(
        "https://idp.example.com".into(),
        KeySource::JwksUri("https://idp.example.com/jwks".into()),
        vec!["urn:a".into()],
        "x",
    )
    .unwrap()
    .accepting_types(vec!["JWT; x=1".into()], false)
    .unwrap_err();
    assert!(matches!(bad_typ, IssuerError::InvalidTokenType(_)));
    assert_eq!(
        NewIssuer::discovery_url("https://idp.example.com/realms/x/"),
        "https://idp.example.com/realms/x/.well-known/openid-configuration"
    );
}

#[test]
fn records_become_bundle_entries_bound_to_their_audiences() {
    let record = ExternalIssuer {
        issuer: "https://idp.example.com".into(),
        source: KeySource::JwksUri("https://idp.example.com/jwks".into()),
        audiences: vec!["urn:a".into()],
        jwks: None,
        keys_changed_at: 0,
        accept_typ: vec!["JWT".into()],
        accept_missing_typ: false,
        refused_keys: Vec::new(),
    };
    assert!(record.bundle_entry().is_none(), "no keys yet, no entry");
    let key = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"});
    let with_keys = ExternalIssuer {
        jwks: Some(JwksDto {
            keys: vec![key.as_object().unwrap().clone()],
        }),
        ..record
    };
    let entry = with_keys.bundle_entry().unwrap();
    assert_eq!(entry.audiences.as_deref(), Some(&["urn:a".to_owned()][..]));
    assert!(entry.external);
    assert_eq!(
        entry.accept_typ,
        ["JWT"],
        "the opt-out travels in the bundle"
    );
    assert!(!entry.accept_missing_typ);
    assert_eq!(with_keys.kids(), ["k1"]);

    let json = serde_json::to_string(&with_keys).unwrap();
    assert!(
        json.contains(r#""source":{"jwks_uri":"https://idp.example.com/jwks"}"#),
        "{json}"
    );
    let mut stored = HashMap::new();
    stored.insert(with_keys.issuer.clone(), json);
    stored.insert("https://elsewhere.example".into(), "{not json".into());
    assert_eq!(parse_records(&stored), [with_keys]);
}
