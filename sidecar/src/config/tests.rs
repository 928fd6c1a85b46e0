//! Loading the configuration: defaults, the file, the environment, and errors naming field and origin.
#![allow(clippy::unwrap_used)]

use super::test_support::{env, file};
use super::*;

#[test]
fn defaults_are_the_demo_stack() {
    let config = Config::from_sources(None, env(&[])).unwrap();
    assert_eq!(config.redis_url, "redis://127.0.0.1:6380/");
    assert_eq!(
        config.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.issuer, "http://127.0.0.1:8080");
    assert_eq!(config.token_ttl_secs, 300);
    assert_eq!(config.refresh_token_ttl_secs, 30 * 86_400);
    assert_eq!(config.key_prefix, "keymesh:");
    assert_eq!(config.shutdown_drain_secs, 5);
    assert_eq!(config.argon2_concurrency, 2);
    assert_eq!(config, Config::default());
}

#[test]
fn file_overrides_defaults() {
    let text = r#"
        redis_url = "redis://10.0.0.1:6379/2"
        listen = "0.0.0.0:9000"
        issuer = "https://auth.example.com"
        token_ttl_secs = 60
        refresh_token_ttl_secs = 3600
        key_prefix = "staging:"
        shutdown_drain_secs = 0
        argon2_concurrency = 4
    "#;
    let config = Config::from_sources(file(text), env(&[])).unwrap();
    assert_eq!(config.redis_url, "redis://10.0.0.1:6379/2");
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.issuer, "https://auth.example.com");
    assert_eq!(config.token_ttl_secs, 60);
    assert_eq!(config.refresh_token_ttl_secs, 3600);
    assert_eq!(config.key_prefix, "staging:");
    assert_eq!(config.shutdown_drain_secs, 0);
    assert_eq!(config.argon2_concurrency, 4);
}

#[test]
fn partial_file_keeps_other_defaults() {
    let config = Config::from_sources(file("token_ttl_secs = 42"), env(&[])).unwrap();
    assert_eq!(config.token_ttl_secs, 42);
    assert_eq!(config.issuer, "http://127.0.0.1:8080");
}

#[test]
fn env_overrides_file() {
    let text = "token_ttl_secs = 60\nkey_prefix = \"file:\"\nlisten = \"127.0.0.1:9000\"";
    let config = Config::from_sources(
        file(text),
        env(&[
            ("KEYMESH_TOKEN_TTL_SECS", "120"),
            ("KEYMESH_KEY_PREFIX", "env:"),
            ("KEYMESH_REDIS_URL", "redis://127.0.0.1:7000/"),
            ("KEYMESH_ISSUER", "https://issuer.example"),
        ]),
    )
    .unwrap();
    assert_eq!(config.token_ttl_secs, 120);
    assert_eq!(config.key_prefix, "env:");
    assert_eq!(config.redis_url, "redis://127.0.0.1:7000/");
    assert_eq!(config.issuer, "https://issuer.example");
    // Not set in the environment: the file still wins over the default.
    assert_eq!(config.listen.port(), 9000);
}

#[test]
fn bad_values_name_the_field_and_origin() {
    // (file text, environment, field named, origin named)
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (
            None,
            &[("KEYMESH_TOKEN_TTL_SECS", "soon")],
            "token_ttl_secs",
            "KEYMESH_TOKEN_TTL_SECS",
        ),
        (
            None,
            &[("KEYMESH_TOKEN_TTL_SECS", "0")],
            "token_ttl_secs",
            "KEYMESH_TOKEN_TTL_SECS",
        ),
        (
            None,
            &[("KEYMESH_REFRESH_TOKEN_TTL_SECS", "59")],
            "refresh_token_ttl_secs",
            "KEYMESH_REFRESH_TOKEN_TTL_SECS",
        ),
        (
            Some("refresh_token_ttl_secs = 40000000"),
            &[],
            "refresh_token_ttl_secs",
            "config file",
        ),
        (
            None,
            &[("KEYMESH_LISTEN", "localhost")],
            "listen",
            "KEYMESH_LISTEN",
        ),
        (
            None,
            &[("KEYMESH_REDIS_URL", "http://x")],
            "redis_url",
            "KEYMESH_REDIS_URL",
        ),
        (
            None,
            &[("KEYMESH_ISSUER", "auth.example.com")],
            "issuer",
            "KEYMESH_ISSUER",
        ),
        (
            None,
            &[("KEYMESH_ISSUER", "https://a.example/#x")],
            "issuer",
            "KEYMESH_ISSUER",
        ),
        (
            None,
            &[("KEYMESH_KEY_PREFIX", "")],
            "key_prefix",
            "KEYMESH_KEY_PREFIX",
        ),
        (
            None,
            &[("KEYMESH_KEY_PREFIX", "a*")],
            "key_prefix",
            "KEYMESH_KEY_PREFIX",
        ),
        (Some("listen = \"nowhere\""), &[], "listen", "config file"),
        (
            None,
            &[("KEYMESH_SHUTDOWN_DRAIN_SECS", "121")],
            "shutdown_drain_secs",
            "KEYMESH_SHUTDOWN_DRAIN_SECS",
        ),
        (
            None,
            &[("KEYMESH_ARGON2_CONCURRENCY", "0")],
            "argon2_concurrency",
            "KEYMESH_ARGON2_CONCURRENCY",
        ),
        (
            Some("argon2_concurrency = 65"),
            &[],
            "argon2_concurrency",
            "config file",
        ),
    ];
    for (text, vars, field, origin) in cases {
        let err = Config::from_sources(text.and_then(file), env(vars)).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, ConfigLoadError::Invalid { field: f, .. } if f == field),
            "{vars:?}: {message}"
        );
        assert!(
            message.contains(field) && message.contains(origin),
            "{message}"
        );
    }
}

#[test]
fn admin_token_from_file_or_environment_is_kept_as_a_digest() {
    let token = "file-token-0123456789abcdef0123456789";
    let from_file =
        Config::from_sources(file(&format!("admin_token = \"{token}\"")), env(&[])).unwrap();
    let kept = from_file.admin_token.clone().unwrap();
    assert!(kept.verify(token) && !kept.verify("other"));
    assert!(
        !format!("{from_file:?}").contains(token),
        "token in Debug output"
    );

    let env_token = "env-token-0123456789abcdef0123456789ab";
    let from_env = Config::from_sources(
        file(&format!("admin_token = \"{token}\"")),
        env(&[(ADMIN_TOKEN_ENV, env_token)]),
    )
    .unwrap();
    let kept = from_env.admin_token.unwrap();
    assert!(
        kept.verify(env_token) && !kept.verify(token),
        "environment wins"
    );

    assert_eq!(
        Config::from_sources(None, env(&[])).unwrap().admin_token,
        None
    );
    let spaced = "token with spaces";
    let err = Config::from_sources(None, env(&[(ADMIN_TOKEN_ENV, spaced)])).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("admin_token") && message.contains(ADMIN_TOKEN_ENV),
        "{message}"
    );
    assert!(
        !message.contains(spaced),
        "the token is not echoed: {message}"
    );
    let err = Config::from_sources(file("admin_token = \"\""), env(&[])).unwrap_err();
    assert!(err.to_string().contains("config file"), "{err}");
}

#[test]
fn file_errors_point_at_the_key() {
    let err = Config::from_sources(file("listne = \"127.0.0.1:1\""), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigLoadError::Syntax { .. }));
    assert!(err.to_string().contains("listne"), "{err}");

    let err = Config::from_sources(file("token_ttl_secs = \"five\""), env(&[])).unwrap_err();
    assert!(err.to_string().contains("token_ttl_secs"), "{err}");
}

#[test]
fn missing_file_is_a_read_error() {
    let err = Config::load(Some(Path::new("/nonexistent/keymesh.toml"))).unwrap_err();
    assert!(matches!(err, ConfigLoadError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/keymesh.toml"));
}

#[test]
fn trusted_proxies_come_from_a_file_list_or_the_environment() {
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let from_file = Config::from_sources(
        file(r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#),
        env(&[]),
    )
    .unwrap();
    assert!(from_file.trusted_proxies.contains(ip("10.9.8.7")));
    let from_env = Config::from_sources(
        None,
        env(&[("KEYMESH_TRUSTED_PROXIES", "::1, 192.168.0.0/16")]),
    )
    .unwrap();
    assert!(from_env.trusted_proxies.contains(ip("192.168.4.4")));
    assert!(!from_env.trusted_proxies.contains(ip("10.9.8.7")));
    let bad =
        Config::from_sources(None, env(&[("KEYMESH_TRUSTED_PROXIES", "10.0.0.0/40")])).unwrap_err();
    assert!(bad.to_string().contains("trusted_proxies"), "{bad}");
    assert!(bad.to_string().contains("KEYMESH_TRUSTED_PROXIES"), "{bad}");
}
