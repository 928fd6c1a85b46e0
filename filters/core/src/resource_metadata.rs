//! RFC 9728 OAuth 2.0 protected-resource metadata: the document the filter serves at
//! `/.well-known/oauth-protected-resource[/<path>]` for each API (route audience) it protects, and the URL of that
//! document, which every bearer challenge names in `resource_metadata` (RFC 9728 §5.1).
//!
//! The metadata URL is derived from configuration only, never from the request: by §3.1 it is the resource
//! identifier (the route's `audience`) with the well-known segment inserted between its origin and its path, and
//! `base_url` replaces that origin when the proxy is reached at another address than the audience names. A
//! request's `Host` is never reflected, so a forged `Host` cannot point a client at someone else's metadata.

use crate::config::{header_safe, is_scope_token, Route};
use crate::error::FilterConfigError;
use serde::Deserialize;

/// The well-known path segment of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Wire form of the `resource_metadata` block of the filter configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceMetadataDto {
    authorization_servers: Vec<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    resource_documentation: Option<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
    #[serde(default = "default_max_age")]
    max_age_secs: u64,
}

fn default_max_age() -> u64 {
    3600
}

/// One protected resource: where its metadata is served and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The resource identifier (a route `audience`).
    pub resource: String,
    /// Request path the document is served at (`/.well-known/oauth-protected-resource` plus the resource's path).
    pub path: String,
    /// Absolute URL of the document, as challenges name it.
    pub url: String,
    /// The JSON document.
    pub body: String,
}

/// The validated `resource_metadata` configuration: one document per distinct route audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResources {
    /// One entry per distinct audience, in route order.
    pub resources: Vec<ProtectedResource>,
    /// `Cache-Control` of the documents.
    pub cache_control: String,
}

/// A local reply the filter sends instead of passing the request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: String,
}

impl ProtectedResources {
    /// Validates the block against the routes and renders every document. `query_tokens` says whether tokens are
    /// also accepted in a query parameter (`bearer_methods_supported` then lists `query`).
    pub(crate) fn build(
        dto: ResourceMetadataDto,
        routes: &[Route],
        query_tokens: bool,
    ) -> Result<Self, FilterConfigError> {
        let field = |name: &str| format!("resource_metadata.{name}");
        if dto.authorization_servers.is_empty() {
            return Err(FilterConfigError::field(
                field("authorization_servers"),
                "must list at least one issuer",
            ));
        }
        for (i, server) in dto.authorization_servers.iter().enumerate() {
            if split_url(server).is_none() {
                return Err(FilterConfigError::field(
                    format!("resource_metadata.authorization_servers[{i}]"),
                    "must be an http(s) URL without query or fragment",
                ));
            }
        }
        let base = match &dto.base_url {
            Some(url) => match split_url(url) {
                Some((origin, path)) if path.is_empty() || path == "/" => Some(origin.to_owned()),
                _ => {
                    return Err(FilterConfigError::field(
                        field("base_url"),
                        "must be scheme://host[:port] with no path, query or fragment",
                    ))
                }
            },
            None => None,
        };
        for (name, value) in [
            ("resource_name", &dto.resource_name),
            ("resource_documentation", &dto.resource_documentation),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.is_empty() || !header_safe(v))
            {
                return Err(FilterConfigError::field(
                    field(name),
                    "must be non-empty printable ASCII",
                ));
            }
        }
        if dto
            .resource_documentation
            .as_deref()
            .is_some_and(|d| split_url(d).is_none())
        {
            return Err(FilterConfigError::field(
                field("resource_documentation"),
                "must be an http(s) URL",
            ));
        }
        if let Some(scopes) = &dto.scopes_supported {
            for (i, scope) in scopes.iter().enumerate() {
                if !is_scope_token(scope) {
                    return Err(FilterConfigError::field(
                        format!("resource_metadata.scopes_supported[{i}]"),
                        "is not an RFC 6749 scope token",
                    ));
                }
            }
        }
        if dto.max_age_secs > 86_400 {
            return Err(FilterConfigError::field(
                field("max_age_secs"),
                "must be at most 86400",
            ));
        }
        let mut bearer_methods = vec!["header"];
        if query_tokens {
            bearer_methods.push("query");
        }
        let mut resources: Vec<ProtectedResource> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            if resources.iter().any(|r| r.resource == route.audience) {
                continue;
            }
            let Some((origin, path)) = split_url(&route.audience) else {
                return Err(FilterConfigError::field(
                    format!("routes[{i}].audience"),
                    "must be an http(s) URL without query or fragment to have protected-resource metadata",
                ));
            };
            let path = path.trim_end_matches('/');
            let served_at = format!("{WELL_KNOWN}{path}");
            if resources.iter().any(|r| r.path == served_at) {
                return Err(FilterConfigError::field(
                    format!("routes[{i}].audience"),
                    "has the same metadata path as another audience",
                ));
            }
            let origin = base.as_deref().unwrap_or(origin);
            let scopes = dto.scopes_supported.clone().unwrap_or_else(|| {
                let mut union: Vec<String> = Vec::new();
                for r in routes.iter().filter(|r| r.audience == route.audience) {
                    for s in &r.scopes {
                        if !union.contains(s) {
                            union.push(s.clone());
                        }
                    }
                }
                union
            });
            let mut doc = serde_json::Map::new();
            doc.insert("resource".into(), route.audience.clone().into());
            doc.insert(
                "authorization_servers".into(),
                dto.authorization_servers.clone().into(),
            );
            if !scopes.is_empty() {
                doc.insert("scopes_supported".into(), scopes.into());
            }
            doc.insert(
                "bearer_methods_supported".into(),
                bearer_methods.clone().into(),
            );
            if let Some(name) = &dto.resource_name {
                doc.insert("resource_name".into(), name.clone().into());
            }
            if let Some(docs) = &dto.resource_documentation {
                doc.insert("resource_documentation".into(), docs.clone().into());
            }
            resources.push(ProtectedResource {
                resource: route.audience.clone(),
                url: format!("{origin}{served_at}"),
                path: served_at,
                body: serde_json::Value::Object(doc).to_string(),
            });
        }
        Ok(Self {
            resources,
            cache_control: format!("public, max-age={}", dto.max_age_secs),
        })
    }

    /// The metadata URL of the resource `audience`, for `resource_metadata` in challenges.
    pub fn url_for(&self, audience: &str) -> Option<&str> {
        self.resources
            .iter()
            .find(|r| r.resource == audience)
            .map(|r| r.url.as_str())
    }

    /// The reply to a request for a metadata document, or `None` when `path` is not one (the request goes on to
    /// authorization). `GET` and `HEAD` get the document; other methods get 405. Never reaches the upstream.
    pub fn serve(&self, method: &str, path: &str) -> Option<LocalReply> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let resource = self.resources.iter().find(|r| r.path == path)?;
        if method != "GET" && method != "HEAD" {
            return Some(LocalReply {
                status: 405,
                headers: vec![
                    ("allow", "GET, HEAD".to_owned()),
                    ("cache-control", "no-store".to_owned()),
                ],
                body: String::new(),
            });
        }
        Some(LocalReply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", self.cache_control.clone()),
                // Public metadata: browser-based clients must be able to read it (MCP clients in a browser do).
                ("access-control-allow-origin", "*".to_owned()),
            ],
            body: if method == "HEAD" {
                String::new()
            } else {
                resource.body.clone()
            },
        })
    }
}

/// `(origin, path)` of an absolute http(s) URL with no query, fragment or userinfo, e.g.
/// `("https://api.example.com", "/mcp")`; `None` for anything else.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    if !header_safe(url) || url.contains(['?', '#', ' ', '"', '\\']) {
        return None;
    }
    let host_end = rest.find('/').unwrap_or(rest.len());
    let host = rest.get(..host_end)?;
    if host.is_empty() || host.contains('@') {
        return None;
    }
    let origin_len = url.len().checked_sub(rest.len())?.checked_add(host_end)?;
    Some((url.get(..origin_len)?, url.get(origin_len..)?))
}

#[cfg(test)]
mod tests {
    use crate::config::FilterConfig;

    fn config(block: &str, routes: &str) -> Result<FilterConfig, String> {
        FilterConfig::parse(
            format!(
                r#"{{"sidecar":{{"cluster":"k"}},"resource_metadata":{block},"routes":{routes}}}"#
            )
            .as_bytes(),
        )
        .map_err(|e| e.to_string())
    }

    const ROUTES: &str = r#"[
        {"prefix":"/mcp/admin","audience":"https://api.example.com/mcp","scopes":["mcp:admin"]},
        {"prefix":"/mcp","audience":"https://api.example.com/mcp","scopes":["mcp:tools"]},
        {"prefix":"/","audience":"https://orders.example.com","scopes":["orders:read"]}]"#;

    #[test]
    fn one_document_per_audience_at_its_rfc9728_path() {
        let c = config(
            r#"{"authorization_servers":["https://auth.example.com"],"resource_name":"Orders"}"#,
            ROUTES,
        )
        .unwrap();
        let m = c.resource_metadata.as_ref().unwrap();
        assert_eq!(m.resources.len(), 2);
        assert_eq!(
            m.resources[0].path,
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            m.resources[0].url,
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(m.resources[1].path, "/.well-known/oauth-protected-resource");
        let doc: serde_json::Value = serde_json::from_str(&m.resources[0].body).unwrap();
        assert_eq!(doc["resource"], "https://api.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://auth.example.com");
        // The union of the scopes of every route of that audience.
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["mcp:admin", "mcp:tools"])
        );
        assert_eq!(
            doc["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
        assert_eq!(doc["resource_name"], "Orders");
        assert!(doc.get("resource_documentation").is_none());
    }

    #[test]
    fn base_url_replaces_the_audience_origin() {
        let c = config(
            r#"{"authorization_servers":["https://auth.example.com"],"base_url":"http://127.0.0.1:10001","scopes_supported":["a"]}"#,
            ROUTES,
        )
        .unwrap();
        let m = c.resource_metadata.unwrap();
        assert_eq!(
            m.url_for("https://api.example.com/mcp"),
            Some("http://127.0.0.1:10001/.well-known/oauth-protected-resource/mcp")
        );
        let doc: serde_json::Value = serde_json::from_str(&m.resources[1].body).unwrap();
        assert_eq!(doc["resource"], "https://orders.example.com");
        assert_eq!(doc["scopes_supported"], serde_json::json!(["a"]));
    }

    #[test]
    fn query_tokens_are_advertised() {
        let c = FilterConfig::parse(
            br#"{"sidecar":{"cluster":"k"},"token_query_param":"access_token",
                 "resource_metadata":{"authorization_servers":["https://a.example"]},
                 "routes":[{"prefix":"/","audience":"https://o.example"}]}"#,
        )
        .unwrap();
        let body = &c.resource_metadata.unwrap().resources[0].body;
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            doc["bearer_methods_supported"],
            serde_json::json!(["header", "query"])
        );
        assert!(doc.get("scopes_supported").is_none());
    }

    #[test]
    fn serves_get_and_head_refuses_other_methods_and_ignores_other_paths() {
        let c = config(r#"{"authorization_servers":["https://a.example"]}"#, ROUTES).unwrap();
        let m = c.resource_metadata.unwrap();
        let get = m
            .serve("GET", "/.well-known/oauth-protected-resource/mcp?x=1")
            .unwrap();
        assert_eq!(get.status, 200);
        assert!(get
            .headers
            .contains(&("cache-control", "public, max-age=3600".to_owned())));
        assert!(get
            .body
            .contains("\"resource\":\"https://api.example.com/mcp\""));
        let head = m
            .serve("HEAD", "/.well-known/oauth-protected-resource")
            .unwrap();
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        assert_eq!(
            m.serve("POST", "/.well-known/oauth-protected-resource")
                .unwrap()
                .status,
            405
        );
        assert!(m
            .serve("GET", "/.well-known/oauth-protected-resource/other")
            .is_none());
        assert!(m
            .serve("GET", "/.well-known/oauth-protected-resource/mcp/x")
            .is_none());
        assert!(m.serve("GET", "/mcp").is_none());
    }

    #[test]
    fn bad_blocks_name_the_field() {
        let one = r#"[{"prefix":"/","audience":"https://o.example"}]"#;
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"authorization_servers":[]}"#,
                one,
                "resource_metadata.authorization_servers",
            ),
            (
                r#"{"authorization_servers":["ftp://a"]}"#,
                one,
                "authorization_servers[0]",
            ),
            (
                r#"{"authorization_servers":["https://a"],"base_url":"https://p.example/api"}"#,
                one,
                "resource_metadata.base_url",
            ),
            (
                r#"{"authorization_servers":["https://a"],"base_url":"https://evil@p.example"}"#,
                one,
                "resource_metadata.base_url",
            ),
            (
                r#"{"authorization_servers":["https://a"],"resource_name":""}"#,
                one,
                "resource_metadata.resource_name",
            ),
            (
                r#"{"authorization_servers":["https://a"],"resource_documentation":"docs"}"#,
                one,
                "resource_metadata.resource_documentation",
            ),
            (
                r#"{"authorization_servers":["https://a"],"scopes_supported":["a b"]}"#,
                one,
                "scopes_supported[0]",
            ),
            (
                r#"{"authorization_servers":["https://a"],"max_age_secs":999999}"#,
                one,
                "resource_metadata.max_age_secs",
            ),
            (
                r#"{"authorization_servers":["https://a"],"colour":1}"#,
                one,
                "colour",
            ),
            (
                r#"{"authorization_servers":["https://a"]}"#,
                r#"[{"prefix":"/","audience":"urn:orders"}]"#,
                "routes[0].audience",
            ),
            (
                r#"{"authorization_servers":["https://a"]}"#,
                r#"[{"prefix":"/a","audience":"https://a.example/x"},{"prefix":"/","audience":"https://b.example/x"}]"#,
                "routes[1].audience",
            ),
        ];
        for (block, routes, field) in cases {
            let err = config(block, routes).unwrap_err();
            assert!(
                err.contains(field),
                "{block}: `{err}` does not name `{field}`"
            );
        }
    }
}
