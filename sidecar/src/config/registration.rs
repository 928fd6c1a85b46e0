//! Dynamic client registration policy (RFC 7591): off unless an initial access token is set or anonymous
//! registration is turned on, and always bounded by a maximum set of resources and scopes.

use super::setting::{parse_secs, setting, Env, Origin};
use super::{redis_settings, ConfigLoadError};
use crate::support::admin_token::AdminToken;
use crate::support::syntax;

/// Environment variable holding the initial access token of registration.
pub const INITIAL_ACCESS_TOKEN_ENV: &str = "KEYMESH_REGISTRATION_INITIAL_ACCESS_TOKEN";

/// How clients may register themselves at `POST /oauth/register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// A registration presenting this bearer token (kept as a digest) may register any kind of client
    /// (`registration_initial_access_token`).
    pub initial_access_token: Option<AdminToken>,
    /// Registration without a token, limited to public clients with loopback or https redirect URIs
    /// (`registration_anonymous`).
    pub anonymous: bool,
    /// The most a registered client may be allowed: every registered client gets these resources
    /// (`registration_resources`).
    pub resources: Vec<String>,
    /// The scopes a registered client may ask for; it gets all of them when it names none
    /// (`registration_scopes`).
    pub scopes: Vec<String>,
    /// Registrations allowed per source address per minute (`registration_rate_per_minute`).
    pub rate_per_minute: u64,
    /// A registered client that has not obtained a token this long after registering is deleted
    /// (`registration_unused_ttl_secs`).
    pub unused_ttl_secs: u64,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            initial_access_token: None,
            anonymous: false,
            resources: Vec::new(),
            scopes: Vec::new(),
            rate_per_minute: 10,
            unused_ttl_secs: 86_400,
        }
    }
}

impl RegistrationSettings {
    /// Whether `POST /oauth/register` is open at all.
    pub fn enabled(&self) -> bool {
        self.anonymous || self.initial_access_token.is_some()
    }
}

/// The registration keys of the configuration file.
#[derive(Default)]
pub(super) struct RegistrationFile {
    pub(super) initial_access_token: Option<String>,
    pub(super) anonymous: Option<bool>,
    pub(super) resources: Option<Vec<String>>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) rate_per_minute: Option<u64>,
    pub(super) unused_ttl_secs: Option<u64>,
}

/// A list from the environment (separated by spaces or commas) or the file; empty by default.
fn list(
    field: &'static str,
    env_name: &'static str,
    file: Option<Vec<String>>,
    env: Env<'_>,
    valid: impl Fn(&str) -> bool,
) -> Result<(Vec<String>, Origin), ConfigLoadError> {
    let (values, origin) = match (env(env_name), file) {
        (Some(value), _) => (
            value
                .split([' ', ','])
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
            Origin::Env(env_name),
        ),
        (None, Some(values)) => (values, Origin::File),
        (None, None) => (Vec::new(), Origin::Default),
    };
    if let Some(bad) = values.iter().find(|v| !valid(v)) {
        return Err(ConfigLoadError::Invalid {
            field,
            origin,
            reason: format!("{bad:?} is not valid here"),
        });
    }
    Ok((values, origin))
}

pub(super) fn from_sources(
    file: RegistrationFile,
    env: Env<'_>,
) -> Result<RegistrationSettings, ConfigLoadError> {
    let defaults = RegistrationSettings::default();
    let initial_access_token = match (env(INITIAL_ACCESS_TOKEN_ENV), file.initial_access_token) {
        (Some(token), _) => Some((token, Origin::Env(INITIAL_ACCESS_TOKEN_ENV))),
        (None, Some(token)) => Some((token, Origin::File)),
        (None, None) => None,
    }
    .map(|(token, origin)| {
        AdminToken::new(&token).map_err(|reason| ConfigLoadError::Invalid {
            field: "registration_initial_access_token",
            origin,
            reason,
        })
    })
    .transpose()?;
    let (resources, resources_origin) = list(
        "registration_resources",
        "KEYMESH_REGISTRATION_RESOURCES",
        file.resources,
        env,
        syntax::is_absolute_uri_without_fragment,
    )?;
    let (scopes, _) = list(
        "registration_scopes",
        "KEYMESH_REGISTRATION_SCOPES",
        file.scopes,
        env,
        syntax::is_scope_token,
    )?;
    let settings = RegistrationSettings {
        initial_access_token,
        anonymous: setting(
            "registration_anonymous",
            "KEYMESH_REGISTRATION_ANONYMOUS",
            file.anonymous,
            defaults.anonymous,
            env,
            redis_settings::parse_bool,
        )?,
        resources,
        scopes,
        rate_per_minute: setting(
            "registration_rate_per_minute",
            "KEYMESH_REGISTRATION_RATE_PER_MINUTE",
            file.rate_per_minute,
            defaults.rate_per_minute,
            env,
            |v| parse_secs(v, 1, 10_000).map_err(|_| "must be between 1 and 10000".to_owned()),
        )?,
        unused_ttl_secs: setting(
            "registration_unused_ttl_secs",
            "KEYMESH_REGISTRATION_UNUSED_TTL_SECS",
            file.unused_ttl_secs,
            defaults.unused_ttl_secs,
            env,
            |v| parse_secs(v, 60, 90 * 86_400),
        )?,
    };
    if settings.enabled() && settings.resources.is_empty() {
        return Err(ConfigLoadError::Invalid {
            field: "registration_resources",
            origin: resources_origin,
            reason:
                "registration is on, so the resources registered clients may use must be listed"
                    .into(),
        });
    }
    Ok(settings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{env, file};
    use crate::config::Config;

    #[test]
    fn off_by_default() {
        let config = Config::from_sources(None, env(&[])).unwrap();
        assert!(!config.registration.enabled());
        assert_eq!(config.registration.rate_per_minute, 10);
    }

    #[test]
    fn file_and_environment() {
        let text = r#"
            registration_anonymous = true
            registration_resources = ["https://mcp.example/mcp"]
            registration_scopes = ["mcp:tools"]
            registration_unused_ttl_secs = 600
        "#;
        let config = Config::from_sources(
            file(text),
            env(&[
                ("KEYMESH_REGISTRATION_SCOPES", "a, b"),
                (
                    super::INITIAL_ACCESS_TOKEN_ENV,
                    "an-initial-access-token-of-32-chars!",
                ),
            ]),
        )
        .unwrap();
        let r = config.registration;
        assert!(r.anonymous && r.enabled());
        assert_eq!(r.resources, ["https://mcp.example/mcp"]);
        assert_eq!(r.scopes, ["a", "b"]);
        assert_eq!(r.unused_ttl_secs, 600);
        assert!(r
            .initial_access_token
            .unwrap()
            .verify("an-initial-access-token-of-32-chars!"));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("registration_anonymous = true", "registration_resources"),
            (
                "registration_anonymous = true\nregistration_resources = [\"not a uri\"]",
                "registration_resources",
            ),
            ("registration_scopes = [\"a b\"]", "registration_scopes"),
            (
                "registration_rate_per_minute = 0",
                "registration_rate_per_minute",
            ),
            (
                "registration_unused_ttl_secs = 1",
                "registration_unused_ttl_secs",
            ),
            (
                "registration_initial_access_token = \"has space\"",
                "registration_initial_access_token",
            ),
        ];
        for (text, field) in cases {
            let err = Config::from_sources(file(text), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
