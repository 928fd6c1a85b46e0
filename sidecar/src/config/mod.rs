//! Sidecar configuration: built-in defaults, overridden by an optional TOML file, overridden by environment
//! variables.
//!
//! One [`Config`] serves `keymesh serve` and every CLI subcommand, so an operator's `keymesh client create` in
//! another terminal talks to the same Redis, under the same key prefix, as the running sidecar. The defaults are
//! the demo stack.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::support::admin_token::AdminToken;
use crate::support::syntax;

mod issuers;
mod redis_settings;
mod registration;
mod setting;
mod signing;

/// Helpers shared by the configuration tests.
#[cfg(test)]
mod test_support {
    use std::collections::HashMap;
    use std::path::Path;

    /// An environment lookup holding exactly `pairs`.
    pub(super) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// A configuration file named `keymesh.toml` holding `text`.
    pub(super) fn file(text: &str) -> Option<(&Path, &str)> {
        Some((Path::new("keymesh.toml"), text))
    }
}

pub use issuers::IssuerSettings;
pub use registration::{RegistrationSettings, INITIAL_ACCESS_TOKEN_ENV};
pub use setting::Origin;
use setting::{parse_secs, raw, setting, validate, Env};
pub use signing::SigningConfig;

/// Environment variable naming the configuration file (the `--config` flag takes precedence).
pub const CONFIG_PATH_ENV: &str = "KEYMESH_CONFIG";

/// Environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "KEYMESH_ADMIN_TOKEN";

/// Longest token lifetime accepted: a day. Revoked access tokens are listed in every bundle until they expire.
const MAX_TOKEN_TTL_SECS: u64 = 86_400;
/// Longest refresh token (grant) lifetime accepted: a year.
const MAX_REFRESH_TOKEN_TTL_SECS: u64 = 365 * 86_400;

/// Validated runtime configuration. `Debug` masks the Redis password.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Redis connection URL (`KEYMESH_REDIS_URL`); in cluster mode, the comma-separated URLs of seed nodes.
    pub redis_url: String,
    /// Whether Redis is a Redis Cluster (`KEYMESH_REDIS_CLUSTER`). The key prefix then carries a hash tag, so that
    /// every key is in one slot.
    pub redis_cluster: bool,
    /// Address the HTTP server binds (`KEYMESH_LISTEN`).
    pub listen: SocketAddr,
    /// The `iss` of issued tokens and the base URL of the published endpoints (`KEYMESH_ISSUER`).
    pub issuer: String,
    /// Lifetime of issued access tokens in seconds (`KEYMESH_TOKEN_TTL_SECS`).
    pub token_ttl_secs: u64,
    /// Lifetime of a grant's refresh tokens in seconds, counted from the user's consent; rotation does not extend
    /// it (`KEYMESH_REFRESH_TOKEN_TTL_SECS`).
    pub refresh_token_ttl_secs: u64,
    /// Prefix of every Redis key and channel the sidecar uses (`KEYMESH_KEY_PREFIX`).
    pub key_prefix: String,
    /// Bearer token of the admin API (`KEYMESH_ADMIN_TOKEN`), kept only as a digest; `None` disables the API.
    pub admin_token: Option<AdminToken>,
    /// Signing keys: the key-encryption key and the rotation schedule.
    pub signing: SigningConfig,
    /// How external identity providers' keys are fetched (`KEYMESH_ISSUER_REFRESH_SECS`,
    /// `KEYMESH_ISSUER_REFETCH_MIN_SECS`, `KEYMESH_ISSUER_FETCH_TIMEOUT_MS`).
    pub external_issuers: IssuerSettings,
    /// Dynamic client registration policy (RFC 7591; the `registration_*` settings).
    pub registration: RegistrationSettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "redis_url",
                &crate::support::redact::redact_url(&self.redis_url),
            )
            .field("redis_cluster", &self.redis_cluster)
            .field("listen", &self.listen)
            .field("issuer", &self.issuer)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("key_prefix", &self.key_prefix)
            .field("admin_token", &self.admin_token)
            .field("signing", &self.signing)
            .field("external_issuers", &self.external_issuers)
            .field("registration", &self.registration)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6380/".to_owned(),
            redis_cluster: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: "http://127.0.0.1:8080".to_owned(),
            token_ttl_secs: 300,
            refresh_token_ttl_secs: 30 * 86_400,
            key_prefix: "keymesh:".to_owned(),
            admin_token: None,
            signing: SigningConfig::default(),
            external_issuers: IssuerSettings::default(),
            registration: RegistrationSettings::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, has an unknown field or a value of the wrong type.
    #[error("invalid config file {}: {source}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's error, which points at the offending key.
        source: toml::de::Error,
    },
    /// A value was present but is not acceptable.
    #[error("invalid value for `{field}` (from {origin}): {reason}")]
    Invalid {
        /// The configuration field.
        field: &'static str,
        /// Where the value came from: the environment variable or the file.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
}

/// The file form: every field optional, unknown fields rejected so that a typo is not silently ignored. No `Debug`:
/// it holds the admin token in clear.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    redis_url: Option<String>,
    redis_cluster: Option<bool>,
    listen: Option<String>,
    issuer: Option<String>,
    token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    key_prefix: Option<String>,
    admin_token: Option<String>,
    kek_file: Option<PathBuf>,
    key_algorithm: Option<String>,
    key_publish_delay_secs: Option<u64>,
    key_rotation_interval_secs: Option<u64>,
    key_retire_leeway_secs: Option<u64>,
    issuer_refresh_secs: Option<u64>,
    issuer_refetch_min_secs: Option<u64>,
    issuer_fetch_timeout_ms: Option<u64>,
    registration_initial_access_token: Option<String>,
    registration_anonymous: Option<bool>,
    registration_resources: Option<Vec<String>>,
    registration_scopes: Option<Vec<String>>,
    registration_rate_per_minute: Option<u64>,
    registration_unused_ttl_secs: Option<u64>,
}

impl Config {
    /// Loads the configuration from `file` (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigLoadError> {
        let text = match file {
            Some(path) => Some((
                path,
                std::fs::read_to_string(path).map_err(|source| ConfigLoadError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_sources(
            text.as_ref().map(|(path, text)| (*path, text.as_str())),
            |name| std::env::var(name).ok(),
        )
    }

    /// Builds the configuration from the file's path and text (if any) and an environment lookup.
    ///
    /// Pure, so tests pass a fixed environment instead of mutating the process's.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigLoadError> {
        let defaults = Self::default();
        let parsed = match file {
            Some((path, text)) => {
                toml::from_str::<ConfigFile>(text).map_err(|source| ConfigLoadError::Syntax {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => ConfigFile::default(),
        };

        let env: Env<'_> = &env;
        let signing = signing::from_sources(
            signing::SigningFile {
                kek_file: parsed.kek_file,
                key_algorithm: parsed.key_algorithm,
                key_publish_delay_secs: parsed.key_publish_delay_secs,
                key_rotation_interval_secs: parsed.key_rotation_interval_secs,
                key_retire_leeway_secs: parsed.key_retire_leeway_secs,
            },
            file.and_then(|(path, _)| path.parent()),
            env,
        )?;
        let redis_cluster = setting(
            "redis_cluster",
            "KEYMESH_REDIS_CLUSTER",
            parsed.redis_cluster,
            defaults.redis_cluster,
            env,
            redis_settings::parse_bool,
        )?;
        let key_prefix = raw(
            "KEYMESH_KEY_PREFIX",
            parsed.key_prefix,
            defaults.key_prefix,
            env,
        );
        let key_prefix_origin = key_prefix.origin.clone();
        let admin_token = match (env(ADMIN_TOKEN_ENV), parsed.admin_token) {
            (Some(token), _) => Some((token, Origin::Env(ADMIN_TOKEN_ENV))),
            (None, Some(token)) => Some((token, Origin::File)),
            (None, None) => None,
        };
        let issuer_defaults = defaults.external_issuers;
        let registration = registration::from_sources(
            registration::RegistrationFile {
                initial_access_token: parsed.registration_initial_access_token,
                anonymous: parsed.registration_anonymous,
                resources: parsed.registration_resources,
                scopes: parsed.registration_scopes,
                rate_per_minute: parsed.registration_rate_per_minute,
                unused_ttl_secs: parsed.registration_unused_ttl_secs,
            },
            env,
        )?;
        let config =
            Self {
                redis_url: setting(
                    "redis_url",
                    "KEYMESH_REDIS_URL",
                    parsed.redis_url,
                    defaults.redis_url,
                    env,
                    |v| redis_settings::parse_redis_url(v, redis_cluster),
                )?,
                redis_cluster,
                listen: setting(
                    "listen",
                    "KEYMESH_LISTEN",
                    parsed.listen,
                    defaults.listen,
                    env,
                    |v| v.trim().parse::<SocketAddr>().map_err(|e| e.to_string()),
                )?,
                issuer: setting(
                    "issuer",
                    "KEYMESH_ISSUER",
                    parsed.issuer,
                    defaults.issuer,
                    env,
                    parse_issuer,
                )?,
                token_ttl_secs: setting(
                    "token_ttl_secs",
                    "KEYMESH_TOKEN_TTL_SECS",
                    parsed.token_ttl_secs,
                    defaults.token_ttl_secs,
                    env,
                    |v| parse_secs(v, 1, MAX_TOKEN_TTL_SECS),
                )?,
                refresh_token_ttl_secs: setting(
                    "refresh_token_ttl_secs",
                    "KEYMESH_REFRESH_TOKEN_TTL_SECS",
                    parsed.refresh_token_ttl_secs,
                    defaults.refresh_token_ttl_secs,
                    env,
                    |v| parse_secs(v, 60, MAX_REFRESH_TOKEN_TTL_SECS),
                )?,
                key_prefix: validate("key_prefix", key_prefix, parse_key_prefix)?,
                admin_token: match admin_token {
                    None => None,
                    Some((token, origin)) => Some(AdminToken::new(&token).map_err(|reason| {
                        ConfigLoadError::Invalid {
                            field: "admin_token",
                            origin,
                            reason,
                        }
                    })?),
                },
                signing,
                external_issuers: IssuerSettings {
                    refresh_secs: setting(
                        "issuer_refresh_secs",
                        "KEYMESH_ISSUER_REFRESH_SECS",
                        parsed.issuer_refresh_secs,
                        issuer_defaults.refresh_secs,
                        env,
                        |v| parse_secs(v, 10, 86_400),
                    )?,
                    refetch_min_secs: setting(
                        "issuer_refetch_min_secs",
                        "KEYMESH_ISSUER_REFETCH_MIN_SECS",
                        parsed.issuer_refetch_min_secs,
                        issuer_defaults.refetch_min_secs,
                        env,
                        |v| parse_secs(v, 1, 3_600),
                    )?,
                    fetch_timeout: setting(
                        "issuer_fetch_timeout_ms",
                        "KEYMESH_ISSUER_FETCH_TIMEOUT_MS",
                        parsed.issuer_fetch_timeout_ms,
                        issuer_defaults.fetch_timeout.as_millis(),
                        env,
                        |v| {
                            let ms: u64 = v.trim().parse().map_err(|e| format!("{e}"))?;
                            if !(100..=60_000).contains(&ms) {
                                return Err("must be between 100 and 60000 milliseconds".to_owned());
                            }
                            Ok(std::time::Duration::from_millis(ms))
                        },
                    )?,
                },
                registration,
            };
        redis_settings::check_key_prefix(&config, key_prefix_origin)?;
        Ok(config)
    }

    /// The Redis URLs: the one server's, or every seed node of a cluster.
    pub fn redis_urls(&self) -> Vec<&str> {
        if self.redis_cluster {
            crate::support::redact::url_list(&self.redis_url)
        } else {
            vec![self.redis_url.as_str()]
        }
    }
}

fn parse_issuer(value: &str) -> Result<String, String> {
    // RFC 8414 §2: an https URL (http is tolerated for the local demo) without query or fragment.
    if !(value.starts_with("https://") || value.starts_with("http://")) {
        return Err("must be an http(s) URL".to_owned());
    }
    if !syntax::is_absolute_uri_without_fragment(value) || value.contains('?') {
        return Err("must be an absolute URL without query or fragment".to_owned());
    }
    Ok(value.to_owned())
}

fn parse_key_prefix(value: &str) -> Result<String, String> {
    // Glob metacharacters would break the `SCAN MATCH {prefix}client:*` used to list clients.
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(c))
    {
        return Err(
            "must not contain whitespace, control characters or any of * ? [ ] \\".to_owned(),
        );
    }
    Ok(value.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        "#;
        let config = Config::from_sources(file(text), env(&[])).unwrap();
        assert_eq!(config.redis_url, "redis://10.0.0.1:6379/2");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.issuer, "https://auth.example.com");
        assert_eq!(config.token_ttl_secs, 60);
        assert_eq!(config.refresh_token_ttl_secs, 3600);
        assert_eq!(config.key_prefix, "staging:");
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
}
