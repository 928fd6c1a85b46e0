//! The egress filter's configuration: the sidecar's token endpoint, the workload's client credentials, and per
//! destination (`:authority`) the audience, scopes and mode. Parsed in two stages like the authn filter's: a
//! serde DTO refusing unknown fields, validated into [`EgressConfig`]; errors name the field.

use crate::error::FilterConfigError;
use serde::Deserialize;

/// How a destination's token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// RFC 8693: exchange the bearer token the application sent, for the destination, on behalf of its user.
    Exchange,
    /// The workload's own token (client credentials), for calls not made for a user.
    ClientCredentials,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    sidecar: SidecarDto,
    client_id: String,
    client_secret: String,
    destinations: Vec<DestinationDto>,
    #[serde(default = "default_margin")]
    expiry_margin_secs: u64,
    #[serde(default = "default_renew")]
    renew_before_secs: u64,
    #[serde(default = "default_lease")]
    lease_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarDto {
    cluster: String,
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default = "default_token_path")]
    token_path: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationDto {
    authority: String,
    audience: String,
    #[serde(default)]
    scopes: Vec<String>,
    mode: Mode,
}

fn default_margin() -> u64 {
    10
}
fn default_renew() -> u64 {
    60
}
fn default_lease() -> u64 {
    5_000
}
fn default_authority() -> String {
    "keymesh".to_owned()
}
fn default_token_path() -> String {
    "/oauth/token".to_owned()
}
fn default_timeout() -> u64 {
    2_000
}

/// Where and how to reach the sidecar's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEndpoint {
    /// The Envoy cluster of the sidecar.
    pub cluster: String,
    /// `:authority` of token requests.
    pub authority: String,
    /// Path of the token endpoint.
    pub path: String,
    /// Timeout of one token request.
    pub timeout_ms: u64,
}

/// One destination: the API behind an `:authority`, and the token it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `:authority` of requests to it, compared case-insensitively, without the port when the request has one
    /// and this does not.
    pub authority: String,
    /// The resource (audience) its tokens are for.
    pub audience: String,
    /// The scopes to ask for; empty asks for everything the policy allows.
    pub scopes: Vec<String>,
    /// How its token is obtained.
    pub mode: Mode,
}

/// The validated configuration. No `Debug`: it holds the client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// The sidecar's token endpoint.
    pub sidecar: TokenEndpoint,
    /// The workload's client id: the actor of exchanged tokens.
    pub client_id: String,
    /// The workload's client secret.
    pub client_secret: String,
    /// The destinations, in configuration order.
    pub destinations: Vec<Destination>,
    /// A cached token is used until this long before its `exp`.
    pub expiry_margin_ms: u64,
    /// From this long before `exp`, a request that uses the cached token also starts its renewal.
    pub renew_before_ms: u64,
    /// How long one Envoy worker may hold the right to fetch a token before another may try.
    pub lease_ms: u64,
}

impl std::fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressConfig")
            .field("sidecar", &self.sidecar)
            .field("client_id", &self.client_id)
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

impl EgressConfig {
    /// Parses and validates the plugin configuration (JSON).
    pub fn parse(bytes: &[u8]) -> Result<Self, FilterConfigError> {
        let dto: ConfigDto =
            serde_json::from_slice(bytes).map_err(|e| FilterConfigError::Syntax(e.to_string()))?;
        Self::try_from(dto)
    }

    /// The destination of a request with this `:authority`, if configured.
    pub fn destination(&self, authority: &str) -> Option<&Destination> {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    host
                } else {
                    authority
                }
            });
        self.destinations.iter().find(|d| {
            d.authority.eq_ignore_ascii_case(authority) || d.authority.eq_ignore_ascii_case(host)
        })
    }
}

fn field(name: impl Into<String>, reason: &str) -> FilterConfigError {
    FilterConfigError::Field {
        field: name.into(),
        reason: reason.to_owned(),
    }
}

/// Visible ASCII without the characters that would break a form body or a header.
fn is_plain(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

impl TryFrom<ConfigDto> for EgressConfig {
    type Error = FilterConfigError;

    fn try_from(dto: ConfigDto) -> Result<Self, Self::Error> {
        if dto.sidecar.cluster.is_empty() {
            return Err(field("sidecar.cluster", "must not be empty"));
        }
        if !dto.sidecar.token_path.starts_with('/') {
            return Err(field("sidecar.token_path", "must start with /"));
        }
        if !(100..=60_000).contains(&dto.sidecar.timeout_ms) {
            return Err(field("sidecar.timeout_ms", "must be 100 to 60000"));
        }
        if !is_plain(&dto.client_id) {
            return Err(field("client_id", "must be visible ASCII, not empty"));
        }
        if dto.client_secret.is_empty() {
            return Err(field("client_secret", "must not be empty"));
        }
        if dto.destinations.is_empty() {
            return Err(field(
                "destinations",
                "at least one destination is required",
            ));
        }
        if dto.expiry_margin_secs > 3_600 {
            return Err(field("expiry_margin_secs", "must be at most 3600"));
        }
        if dto.renew_before_secs < dto.expiry_margin_secs || dto.renew_before_secs > 3_600 {
            return Err(field(
                "renew_before_secs",
                "must be at least expiry_margin_secs and at most 3600",
            ));
        }
        if !(100..=60_000).contains(&dto.lease_ms) {
            return Err(field("lease_ms", "must be 100 to 60000"));
        }
        let mut destinations: Vec<Destination> = Vec::with_capacity(dto.destinations.len());
        for (i, d) in dto.destinations.into_iter().enumerate() {
            if !is_plain(&d.authority) {
                return Err(field(
                    format!("destinations[{i}].authority"),
                    "must be a host name",
                ));
            }
            if destinations
                .iter()
                .any(|known| known.authority.eq_ignore_ascii_case(&d.authority))
            {
                return Err(field(
                    format!("destinations[{i}].authority"),
                    "is listed twice",
                ));
            }
            if !is_plain(&d.audience) || !d.audience.contains(':') {
                return Err(field(
                    format!("destinations[{i}].audience"),
                    "must be an absolute URI",
                ));
            }
            for (j, scope) in d.scopes.iter().enumerate() {
                if !crate::config::is_scope_token(scope) {
                    return Err(field(
                        format!("destinations[{i}].scopes[{j}]"),
                        "is not a scope token",
                    ));
                }
            }
            destinations.push(Destination {
                authority: d.authority,
                audience: d.audience,
                scopes: d.scopes,
                mode: d.mode,
            });
        }
        Ok(Self {
            sidecar: TokenEndpoint {
                cluster: dto.sidecar.cluster,
                authority: dto.sidecar.authority,
                path: dto.sidecar.token_path,
                timeout_ms: dto.sidecar.timeout_ms,
            },
            client_id: dto.client_id,
            client_secret: dto.client_secret,
            destinations,
            expiry_margin_ms: dto.expiry_margin_secs.saturating_mul(1_000),
            renew_before_ms: dto.renew_before_secs.saturating_mul(1_000),
            lease_ms: dto.lease_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"sidecar":{"cluster":"keymesh"},"client_id":"orders","client_secret":"s",
        "destinations":[{"authority":"payments.local","audience":"https://payments.example",
        "scopes":["payments:read"],"mode":"exchange"},
        {"authority":"ledger.local","audience":"urn:ledger","mode":"client_credentials"}]}"#;

    #[test]
    fn a_good_configuration_parses_with_defaults() {
        let config = EgressConfig::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(config.sidecar.path, "/oauth/token");
        assert_eq!(config.expiry_margin_ms, 10_000);
        assert_eq!(config.renew_before_ms, 60_000);
        assert_eq!(
            config.destination("payments.local:8080").unwrap().mode,
            Mode::Exchange
        );
        assert_eq!(
            config.destination("LEDGER.local").unwrap().mode,
            Mode::ClientCredentials
        );
        assert!(config.destination("evil.local").is_none());
        assert!(!format!("{config:?}").contains("\"s\""));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#""cluster":"keymesh""#,
                r#""cluster":"""#,
                "sidecar.cluster",
            ),
            (
                r#""client_id":"orders""#,
                r#""client_id":"a b""#,
                "client_id",
            ),
            (
                r#""client_secret":"s""#,
                r#""client_secret":"""#,
                "client_secret",
            ),
            (
                r#""scopes":["payments:read"]"#,
                r#""scopes":["a\"b"]"#,
                "destinations[0].scopes[0]",
            ),
            (
                r#""audience":"urn:ledger""#,
                r#""audience":"ledger""#,
                "destinations[1].audience",
            ),
            (
                r#""authority":"ledger.local""#,
                r#""authority":"payments.local""#,
                "destinations[1].authority",
            ),
            (
                r#""mode":"exchange""#,
                r#""mode":"forward""#,
                "unknown variant",
            ),
            (
                r#""client_id""#,
                r#""extra":1,"client_id""#,
                "unknown field `extra`",
            ),
        ];
        for (from, to, named) in cases {
            let config = GOOD.replacen(from, to, 1);
            let error = EgressConfig::parse(config.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(error.contains(named), "{named}: {error}");
        }
        let no_destinations =
            r#"{"sidecar":{"cluster":"k"},"client_id":"o","client_secret":"s","destinations":[]}"#;
        assert!(EgressConfig::parse(no_destinations.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("`destinations`"));
        let renew = GOOD.replacen(r#""client_id""#, r#""renew_before_secs":5,"client_id""#, 1);
        assert!(EgressConfig::parse(renew.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("renew_before_secs"));
    }
}
