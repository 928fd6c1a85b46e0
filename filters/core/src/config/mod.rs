//! Filter configuration: a serde DTO with explicit defaults, converted into a validated [`FilterConfig`].
//!
//! `parse` is pure, so every rule here is table-tested natively; the wasm adapter only logs the error and
//! refuses the configuration.

use crate::denials::DenialTable;
use crate::error::FilterConfigError;
use crate::identity::IdentityHeaders;
use crate::resource_metadata::{ProtectedResources, ResourceMetadataDto};
use serde::Deserialize;

/// Wire form of the plugin configuration (Envoy `configuration` of the wasm filter).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    sidecar: SidecarDto,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default)]
    token_query_param: Option<String>,
    #[serde(default)]
    trusted_issuers: Option<Vec<String>>,
    #[serde(default)]
    forward_token: bool,
    #[serde(default = "default_api_key_header")]
    api_key_header: Option<String>,
    #[serde(default = "default_token_cache_size")]
    token_cache_size: usize,
    #[serde(default)]
    resource_metadata: Option<ResourceMetadataDto>,
    /// Parsed in `TryFrom` ([`IdentityHeaders::parse`]); every header when absent.
    #[serde(default)]
    identity_headers: Option<Vec<String>>,
    routes: Vec<RouteDto>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarDto {
    cluster: String,
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default = "default_bundle_path")]
    path: String,
    #[serde(default = "default_refresh_ms")]
    refresh_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_long_poll_secs")]
    long_poll_secs: u64,
    #[serde(default = "default_max_age_secs")]
    max_age_secs: u64,
    #[serde(default = "default_refetch_path")]
    refetch_path: String,
    #[serde(default = "default_usage_path")]
    usage_path: String,
    #[serde(default = "default_usage_report_ms")]
    usage_report_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDto {
    prefix: String,
    audience: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// Parsed once, in `TryFrom`, so an unknown value is reported with the field's path.
    #[serde(default)]
    credential: Option<String>,
    /// Parsed in `TryFrom`, like `credential`.
    #[serde(default)]
    when_stale: Option<String>,
    /// Overrides the filter's `identity_headers` on this route.
    #[serde(default)]
    identity_headers: Option<Vec<String>>,
}

/// Which credentials a route accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialMode {
    /// OAuth2 JWT access tokens only (`Authorization: Bearer`).
    #[default]
    Jwt,
    /// keymesh API keys only (`Authorization: apikey KEY` or the API-key header).
    ApiKey,
    /// Either kind.
    Either,
}

impl CredentialMode {
    fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("jwt") => Some(Self::Jwt),
            Some("api_key") => Some(Self::ApiKey),
            Some("either") => Some(Self::Either),
            Some(_) => None,
        }
    }
    /// Whether a bearer token is acceptable.
    pub fn accepts_jwt(self) -> bool {
        matches!(self, Self::Jwt | Self::Either)
    }
    /// Whether an API key is acceptable.
    pub fn accepts_api_key(self) -> bool {
        matches!(self, Self::ApiKey | Self::Either)
    }
}

fn default_api_key_header() -> Option<String> {
    Some("x-api-key".into())
}
fn default_token_cache_size() -> usize {
    4096
}
fn default_max_age_secs() -> u64 {
    600
}
fn default_long_poll_secs() -> u64 {
    25
}
fn default_realm() -> String {
    "keymesh".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_authority() -> String {
    "keymesh-sidecar".into()
}
fn default_bundle_path() -> String {
    "/v1/bundle".into()
}
fn default_refetch_path() -> String {
    "/v1/issuers/refetch".into()
}
fn default_usage_path() -> String {
    "/v1/usage".into()
}
fn default_usage_report_ms() -> u64 {
    10_000
}
fn default_refresh_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    2000
}

/// Where and how often the filter fetches the key bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// Envoy cluster name of the sidecar.
    pub cluster: String,
    /// `:authority` sent to the sidecar.
    pub authority: String,
    /// Path of the bundle endpoint.
    pub path: String,
    /// How often the bundle is re-checked.
    pub refresh_interval_ms: u64,
    /// Timeout of one bundle fetch (a long poll gets `long_poll_secs` on top).
    pub timeout_ms: u64,
    /// How long the sidecar may hold a bundle request open waiting for a change (0: plain polling).
    pub long_poll_secs: u64,
    /// After this long without a successful answer from the sidecar, key material is stale.
    pub max_age_secs: u64,
    /// Path the filter posts a `kid` to when a token names one no external issuer's keys have
    /// (`POST` form `kid=…`; the sidecar refetches, throttled).
    pub refetch_path: String,
    /// Path each worker posts its API key use counts to ([`crate::usage`]).
    pub usage_path: String,
    /// How often each worker reports API key use (0: never, and nothing is counted).
    pub usage_report_ms: u64,
}

/// One per-route rule: requests whose path starts with `prefix` need a token for `audience` with `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Path prefix, matched in order, first match wins (as Envoy's `prefix` route match).
    pub prefix: String,
    /// The resource URI of this API, required in the token's `aud`.
    pub audience: String,
    /// Scopes the credential must all carry.
    pub scopes: Vec<String>,
    /// Which credentials the route accepts.
    pub credential: CredentialMode,
    /// What happens while key material is stale.
    pub when_stale: WhenStale,
    /// The identity headers set upstream on an allowed request (the route's `identity_headers`, else the
    /// filter's, else all).
    pub identity_headers: IdentityHeaders,
}

/// A route's behaviour once key material is older than `sidecar.max_age_secs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenStale {
    /// Fail closed: 503 until the sidecar answers again.
    #[default]
    Deny,
    /// Keep verifying with the last keys held (revocations made meanwhile are not seen).
    LastKnownKeys,
}

impl WhenStale {
    fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("deny") => Some(Self::Deny),
            Some("last_known_keys") => Some(Self::LastKnownKeys),
            Some(_) => None,
        }
    }
}

/// A validated filter configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Bundle delivery settings.
    pub sidecar: SidecarConfig,
    /// `realm` of `WWW-Authenticate` challenges.
    pub realm: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_secs: i64,
    /// Longest token accepted, bytes; longer ones are refused before decoding.
    pub max_token_bytes: usize,
    /// Query parameter carrying a token, when enabled (RFC 6750 §2.3 discourages it, so off by default).
    pub token_query_param: Option<String>,
    /// Issuers this API accepts; `None` accepts every issuer in the bundle.
    pub trusted_issuers: Option<Vec<String>>,
    /// Keep the `Authorization` header on the upstream request (Envoy jwt_authn's `forward`; off by default).
    pub forward_token: bool,
    /// Header that may carry an API key besides `Authorization: apikey`; `None` disables it.
    pub api_key_header: Option<String>,
    /// How many verified tokens each worker remembers (0: verify every request).
    pub token_cache_size: usize,
    /// Route rules, in order.
    pub routes: Vec<Route>,
    /// RFC 9728 protected-resource metadata served for each route audience, when configured.
    pub resource_metadata: Option<ProtectedResources>,
    /// Every denial of this configuration, rendered.
    pub(crate) denials: DenialTable,
}

impl FilterConfig {
    /// Parses and validates a plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Self, FilterConfigError> {
        let dto: ConfigDto =
            serde_json::from_slice(bytes).map_err(|e| FilterConfigError::Syntax(e.to_string()))?;
        Self::try_from(dto)
    }

    /// The first route whose prefix matches `path` (query string ignored).
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.route_index_for(path)
            .and_then(|index| self.routes.get(index))
    }

    /// The index in [`FilterConfig::routes`] of [`FilterConfig::route_for`]'s route.
    pub fn route_index_for(&self, path: &str) -> Option<usize> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.routes.iter().position(|r| path.starts_with(&r.prefix))
    }
}

impl TryFrom<ConfigDto> for FilterConfig {
    type Error = FilterConfigError;

    fn try_from(dto: ConfigDto) -> Result<Self, FilterConfigError> {
        let s = dto.sidecar;
        require(
            !s.cluster.is_empty(),
            "sidecar.cluster",
            "must not be empty",
        )?;
        require(
            header_safe(&s.authority) && !s.authority.is_empty(),
            "sidecar.authority",
            "must be a host name",
        )?;
        require(
            s.path.starts_with('/') && header_safe(&s.path),
            "sidecar.path",
            "must start with '/'",
        )?;
        require(
            s.refetch_path.starts_with('/') && header_safe(&s.refetch_path),
            "sidecar.refetch_path",
            "must start with '/'",
        )?;
        require(
            s.usage_path.starts_with('/') && header_safe(&s.usage_path),
            "sidecar.usage_path",
            "must start with '/'",
        )?;
        require(
            s.usage_report_ms == 0 || (1_000..=3_600_000).contains(&s.usage_report_ms),
            "sidecar.usage_report_ms",
            "must be 0 (off) or between 1000 and 3600000",
        )?;
        require(
            (100..=3_600_000).contains(&s.refresh_interval_ms),
            "sidecar.refresh_interval_ms",
            "must be between 100 and 3600000",
        )?;
        require(
            (100..=60_000).contains(&s.timeout_ms),
            "sidecar.timeout_ms",
            "must be between 100 and 60000",
        )?;
        require(
            s.long_poll_secs <= 60,
            "sidecar.long_poll_secs",
            "must be at most 60",
        )?;
        require(
            s.max_age_secs > s.long_poll_secs.saturating_add(s.timeout_ms / 1000)
                && s.max_age_secs <= 30 * 86_400,
            "sidecar.max_age_secs",
            "must exceed long_poll_secs plus the timeout, and be at most 30 days",
        )?;
        if let Some(h) = &dto.api_key_header {
            require(
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "api_key_header",
                "must be a lower-case header name",
            )?;
            require(
                h != "authorization",
                "api_key_header",
                "`authorization` is always read; name another header",
            )?;
        }
        require(
            !dto.realm.is_empty()
                && dto
                    .realm
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'),
            "realm",
            "must be printable ASCII without quotes or backslashes",
        )?;
        require(dto.leeway_secs <= 300, "leeway_secs", "must be at most 300")?;
        require(
            (256..=65_536).contains(&dto.max_token_bytes),
            "max_token_bytes",
            "must be between 256 and 65536",
        )?;
        if let Some(name) = &dto.token_query_param {
            require(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "token_query_param",
                "must be a plain parameter name",
            )?;
        }
        if let Some(issuers) = &dto.trusted_issuers {
            require(
                !issuers.is_empty(),
                "trusted_issuers",
                "must list at least one issuer, or be omitted",
            )?;
            for (i, iss) in issuers.iter().enumerate() {
                require(
                    !iss.is_empty(),
                    format!("trusted_issuers[{i}]"),
                    "must not be empty",
                )?;
            }
        }
        require(
            dto.token_cache_size <= 1_000_000,
            "token_cache_size",
            "must be at most 1000000",
        )?;
        require(
            !dto.routes.is_empty(),
            "routes",
            "must have at least one rule",
        )?;
        let identity_headers = match &dto.identity_headers {
            Some(names) => IdentityHeaders::parse(names, "identity_headers")?,
            None => IdentityHeaders::default(),
        };
        let mut routes = Vec::with_capacity(dto.routes.len());
        for (i, r) in dto.routes.into_iter().enumerate() {
            require(
                r.prefix.starts_with('/'),
                format!("routes[{i}].prefix"),
                "must start with '/'",
            )?;
            require(
                !r.audience.is_empty() && header_safe(&r.audience),
                format!("routes[{i}].audience"),
                "must be a non-empty resource URI",
            )?;
            let credential = CredentialMode::parse(r.credential.as_deref()).ok_or_else(|| {
                FilterConfigError::field(
                    format!("routes[{i}].credential"),
                    "must be `jwt`, `api_key` or `either`",
                )
            })?;
            let when_stale = WhenStale::parse(r.when_stale.as_deref()).ok_or_else(|| {
                FilterConfigError::field(
                    format!("routes[{i}].when_stale"),
                    "must be `deny` or `last_known_keys`",
                )
            })?;
            for (j, scope) in r.scopes.iter().enumerate() {
                require(
                    is_scope_token(scope),
                    format!("routes[{i}].scopes[{j}]"),
                    "is not an RFC 6749 scope token",
                )?;
            }
            let route_headers = match &r.identity_headers {
                Some(names) => {
                    IdentityHeaders::parse(names, &format!("routes[{i}].identity_headers"))?
                }
                None => identity_headers,
            };
            routes.push(Route {
                prefix: r.prefix,
                audience: r.audience,
                scopes: r.scopes,
                credential,
                when_stale,
                identity_headers: route_headers,
            });
        }
        let resource_metadata = dto
            .resource_metadata
            .map(|m| ProtectedResources::build(m, &routes, dto.token_query_param.is_some()))
            .transpose()?;
        Ok(Self {
            sidecar: SidecarConfig {
                cluster: s.cluster,
                authority: s.authority,
                path: s.path,
                refresh_interval_ms: s.refresh_interval_ms,
                timeout_ms: s.timeout_ms,
                long_poll_secs: s.long_poll_secs,
                max_age_secs: s.max_age_secs,
                refetch_path: s.refetch_path,
                usage_path: s.usage_path,
                usage_report_ms: s.usage_report_ms,
            },
            leeway_secs: i64::try_from(dto.leeway_secs).unwrap_or(300),
            max_token_bytes: dto.max_token_bytes,
            token_query_param: dto.token_query_param,
            trusted_issuers: dto.trusted_issuers,
            forward_token: dto.forward_token,
            api_key_header: dto.api_key_header,
            token_cache_size: dto.token_cache_size,
            denials: DenialTable::render(&dto.realm, &routes, resource_metadata.as_ref()),
            realm: dto.realm,
            routes,
            resource_metadata,
        })
    }
}

fn require(ok: bool, field: impl Into<String>, reason: &str) -> Result<(), FilterConfigError> {
    if ok {
        Ok(())
    } else {
        Err(FilterConfigError::field(field, reason))
    }
}

/// Visible ASCII and space only: the value may end up in a header.
pub(crate) fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests;
