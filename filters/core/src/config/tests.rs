use super::*;

const MINIMAL: &str = r#"{"sidecar":{"cluster":"keymesh"},"routes":[{"prefix":"/","audience":"https://orders.local"}]}"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = FilterConfig::parse(MINIMAL.as_bytes()).unwrap();
    assert_eq!(c.sidecar.path, "/v1/bundle");
    assert_eq!(c.sidecar.refresh_interval_ms, 1000);
    assert_eq!(c.realm, "keymesh");
    assert_eq!(c.leeway_secs, 30);
    assert_eq!(c.token_query_param, None);
    assert!(!c.forward_token);
}

#[test]
fn bad_configs_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"routes":[]}"#, "sidecar"),
        (
            r#"{"sidecar":{"cluster":""},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.cluster",
        ),
        (
            r#"{"sidecar":{"cluster":"k","path":"v1"},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.path",
        ),
        (
            r#"{"sidecar":{"cluster":"k","refresh_interval_ms":5},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.refresh_interval_ms",
        ),
        (r#"{"sidecar":{"cluster":"k"},"routes":[]}"#, "routes"),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"x","audience":"a"}]}"#,
            "routes[0].prefix",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a"},{"prefix":"/","audience":""}]}"#,
            "routes[1].audience",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","scopes":["ok","bad scope"]}]}"#,
            "routes[0].scopes[1]",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"leeway_secs":9999,"routes":[{"prefix":"/","audience":"a"}]}"#,
            "leeway_secs",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"identity_headers":["subject","tenant"],"routes":[{"prefix":"/","audience":"a"}]}"#,
            "identity_headers[1]",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","identity_headers":["scope","scope"]}]}"#,
            "routes[0].identity_headers[1]",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"max_token_bytes":10,"routes":[{"prefix":"/","audience":"a"}]}"#,
            "max_token_bytes",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"token_query_param":"a b","routes":[{"prefix":"/","audience":"a"}]}"#,
            "token_query_param",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"trusted_issuers":[],"routes":[{"prefix":"/","audience":"a"}]}"#,
            "trusted_issuers",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"realm":"a\"b","routes":[{"prefix":"/","audience":"a"}]}"#,
            "realm",
        ),
        (r#"{"sidecar":{"cluster":"k"},"rotues":[]}"#, "rotues"),
        (r#"not json"#, "expected"),
        (
            r#"{"sidecar":{"cluster":"k","long_poll_secs":61},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.long_poll_secs",
        ),
        (
            r#"{"sidecar":{"cluster":"k","usage_report_ms":10},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.usage_report_ms",
        ),
        (
            r#"{"sidecar":{"cluster":"k","usage_path":"v1/usage"},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.usage_path",
        ),
        (
            r#"{"sidecar":{"cluster":"k","max_age_secs":20},"routes":[{"prefix":"/","audience":"a"}]}"#,
            "sidecar.max_age_secs",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","when_stale":"open"}]}"#,
            "routes[0].when_stale",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"api_key_header":"X Key","routes":[{"prefix":"/","audience":"a"}]}"#,
            "api_key_header",
        ),
        (
            r#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"a","credential":"password"}]}"#,
            "credential",
        ),
    ];
    for (json, field) in cases {
        let err = FilterConfig::parse(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(field),
            "{json}: error `{err}` does not name `{field}`"
        );
    }
}

#[test]
fn routes_match_first_prefix_and_ignore_query() {
    let c = FilterConfig::parse(
        br#"{"sidecar":{"cluster":"k"},"routes":[
            {"prefix":"/admin","audience":"a","scopes":["admin"]},
            {"prefix":"/","audience":"a"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.route_for("/admin/users?x=1").unwrap().scopes,
        vec!["admin"]
    );
    assert!(c.route_for("/orders?admin").unwrap().scopes.is_empty());
}

#[test]
fn scope_token_charset() {
    assert!(is_scope_token("orders:read"));
    assert!(!is_scope_token(""));
    assert!(!is_scope_token("a b"));
    assert!(!is_scope_token("a\"b"));
    assert!(!is_scope_token("a\\b"));
    assert!(!is_scope_token("é"));
}
