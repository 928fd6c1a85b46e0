//! How one setting is resolved: the environment wins over the configuration file, the file over the default, and
//! the value is parsed once, with its origin named in the error.

use std::fmt;

use super::ConfigLoadError;

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File,
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File => f.write_str("config file"),
            Self::Env(name) => f.write_str(name),
        }
    }
}

/// A raw value and where it came from, before validation.
pub(super) struct Raw<T> {
    pub(super) value: T,
    pub(super) origin: Origin,
}

/// The environment lookup of one load.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One setting, declared in one place: its field (the TOML key, named in errors), its environment variable, its
/// default and its parser. The environment wins over the file, the file over the default.
pub(super) fn setting<T>(
    field: &'static str,
    env_name: &'static str,
    file_value: Option<impl ToString>,
    default: impl ToString,
    env: Env<'_>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigLoadError> {
    validate(field, raw(env_name, file_value, default, env), parse)
}

/// The raw value of a setting (see [`setting`]) with its origin, for checks that span settings.
pub(super) fn raw(
    env_name: &'static str,
    file_value: Option<impl ToString>,
    default: impl ToString,
    env: Env<'_>,
) -> Raw<String> {
    match (env(env_name), file_value) {
        (Some(value), _) => Raw {
            value,
            origin: Origin::Env(env_name),
        },
        (None, Some(value)) => Raw {
            value: value.to_string(),
            origin: Origin::File,
        },
        (None, None) => Raw {
            value: default.to_string(),
            origin: Origin::Default,
        },
    }
}

pub(super) fn validate<T>(
    field: &'static str,
    raw: Raw<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigLoadError> {
    parse(&raw.value).map_err(|reason| ConfigLoadError::Invalid {
        field,
        origin: raw.origin,
        reason,
    })
}

/// A whole number of seconds from `min` to `max`.
pub(super) fn parse_secs(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let secs: u64 = value.trim().parse().map_err(|e| format!("{e}"))?;
    if secs < min || secs > max {
        return Err(format!("must be between {min} and {max} seconds"));
    }
    Ok(secs)
}
