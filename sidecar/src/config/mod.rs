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
use crate::support::source_address::TrustedProxies;
use crate::support::syntax;

mod issuers;
mod redis_settings;
mod registration;
mod secret_files;
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
use setting::{parse_secs, raw, setting, validate, Env, Raw};
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
    /// Redis connection URL (`KEYMESH_REDIS_URL`, or a file named by `KEYMESH_REDIS_URL_FILE`); in cluster mode,
    /// the comma-separated URLs of seed nodes.
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
    /// Bearer token of the admin API (`KEYMESH_ADMIN_TOKEN`, or a file named by `KEYMESH_ADMIN_TOKEN_FILE`), kept
    /// only as a digest; `None` disables the API.
    pub admin_token: Option<AdminToken>,
    /// Signing keys: the key-encryption key and the rotation schedule.
    pub signing: SigningConfig,
    /// How external identity providers' keys are fetched (`KEYMESH_ISSUER_REFRESH_SECS`,
    /// `KEYMESH_ISSUER_REFETCH_MIN_SECS`, `KEYMESH_ISSUER_FETCH_TIMEOUT_MS`).
    pub external_issuers: IssuerSettings,
    /// Seconds `serve` keeps answering after SIGTERM, with readiness failing and long polls answered at once,
    /// while the orchestrator withdraws the endpoint (`KEYMESH_SHUTDOWN_DRAIN_SECS`).
    pub shutdown_drain_secs: u64,
    /// Argon2id verifications (operator-chosen client secrets, user passwords) running at once; each holds about
    /// 19 MiB, so more requests wait briefly and are then answered 503 (`KEYMESH_ARGON2_CONCURRENCY`).
    pub argon2_concurrency: usize,
    /// Peers whose `x-forwarded-for` names the client's address, for throttling per source
    /// (`KEYMESH_TRUSTED_PROXIES`: addresses and CIDR networks); none by default.
    pub trusted_proxies: TrustedProxies,
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
            .field("shutdown_drain_secs", &self.shutdown_drain_secs)
            .field("argon2_concurrency", &self.argon2_concurrency)
            .field("trusted_proxies", &self.trusted_proxies)
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
            shutdown_drain_secs: 5,
            argon2_concurrency: 2,
            trusted_proxies: TrustedProxies::default(),
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
    redis_url_file: Option<PathBuf>,
    redis_cluster: Option<bool>,
    listen: Option<String>,
    issuer: Option<String>,
    token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    key_prefix: Option<String>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    kek_file: Option<PathBuf>,
    key_algorithm: Option<String>,
    key_publish_delay_secs: Option<u64>,
    key_rotation_interval_secs: Option<u64>,
    key_retire_leeway_secs: Option<u64>,
    issuer_refresh_secs: Option<u64>,
    issuer_refetch_min_secs: Option<u64>,
    issuer_fetch_timeout_ms: Option<u64>,
    shutdown_drain_secs: Option<u64>,
    argon2_concurrency: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
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
        let file_dir = file.and_then(|(path, _)| path.parent());
        let signing = signing::from_sources(
            signing::SigningFile {
                kek_file: parsed.kek_file,
                key_algorithm: parsed.key_algorithm,
                key_publish_delay_secs: parsed.key_publish_delay_secs,
                key_rotation_interval_secs: parsed.key_rotation_interval_secs,
                key_retire_leeway_secs: parsed.key_retire_leeway_secs,
            },
            file_dir,
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
        let redis_url = secret_files::REDIS_URL
            .raw(parsed.redis_url, parsed.redis_url_file, file_dir, env)?
            .unwrap_or(Raw {
                value: defaults.redis_url,
                origin: Origin::Default,
            });
        let admin_token = secret_files::ADMIN_TOKEN.raw(
            parsed.admin_token,
            parsed.admin_token_file,
            file_dir,
            env,
        )?;
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
        let config = Self {
            redis_url: validate("redis_url", redis_url, |v| {
                redis_settings::parse_redis_url(v, redis_cluster)
            })?,
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
                Some(Raw { value, origin }) => {
                    Some(
                        AdminToken::new(&value).map_err(|reason| ConfigLoadError::Invalid {
                            field: "admin_token",
                            origin,
                            reason,
                        })?,
                    )
                }
            },
            signing,
            trusted_proxies: setting(
                "trusted_proxies",
                "KEYMESH_TRUSTED_PROXIES",
                parsed.trusted_proxies.map(|list| list.join(",")),
                "",
                env,
                TrustedProxies::parse,
            )?,
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
            shutdown_drain_secs: setting(
                "shutdown_drain_secs",
                "KEYMESH_SHUTDOWN_DRAIN_SECS",
                parsed.shutdown_drain_secs,
                defaults.shutdown_drain_secs,
                env,
                |v| parse_secs(v, 0, 120),
            )?,
            argon2_concurrency: setting(
                "argon2_concurrency",
                "KEYMESH_ARGON2_CONCURRENCY",
                parsed.argon2_concurrency,
                defaults.argon2_concurrency,
                env,
                parse_argon2_concurrency,
            )?,
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

fn parse_argon2_concurrency(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err("must be a whole number from 1 to 64".to_owned()),
    }
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
mod tests;
