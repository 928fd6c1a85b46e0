//! Secrets that may be read from files, the way Kubernetes mounts a Secret's keys: `redis_url_file` /
//! `KEYMESH_REDIS_URL_FILE` and `admin_token_file` / `KEYMESH_ADMIN_TOKEN_FILE`.
//!
//! A file's content is the value, without a trailing line break. At one level (the config file, or the environment)
//! a secret is given either inline or as a file, never both; the environment overrides the config file as for
//! every other setting (see [`super::setting`]).

use std::path::{Path, PathBuf};

use super::setting::{Env, Raw};
use super::{ConfigLoadError, Origin, ADMIN_TOKEN_ENV};

/// One secret setting, declared once: its field (the TOML key; `{field}_file` names a file), the environment
/// variable holding it and the one naming a file holding it.
pub(super) struct SecretSetting {
    field: &'static str,
    env: &'static str,
    env_file: &'static str,
}

/// The Redis URL (it may carry a password).
pub(super) const REDIS_URL: SecretSetting = SecretSetting {
    field: "redis_url",
    env: "KEYMESH_REDIS_URL",
    env_file: "KEYMESH_REDIS_URL_FILE",
};

/// The admin API's bearer token.
pub(super) const ADMIN_TOKEN: SecretSetting = SecretSetting {
    field: "admin_token",
    env: ADMIN_TOKEN_ENV,
    env_file: "KEYMESH_ADMIN_TOKEN_FILE",
};

impl SecretSetting {
    /// The raw value and its origin, or `None` when neither level sets it. `inline` and `file` are the config
    /// file's `{field}` and `{field}_file`; a relative `file` is taken from `file_dir`, the config file's directory.
    pub(super) fn raw(
        &self,
        inline: Option<String>,
        file: Option<PathBuf>,
        file_dir: Option<&Path>,
        env: Env<'_>,
    ) -> Result<Option<Raw<String>>, ConfigLoadError> {
        match (env(self.env), env(self.env_file)) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    Origin::Env(self.env),
                    format!("set only one of {} and {}", self.env, self.env_file),
                ))
            }
            (Some(value), None) => {
                return Ok(Some(Raw {
                    value,
                    origin: Origin::Env(self.env),
                }))
            }
            (None, Some(path)) => {
                let origin = Origin::Env(self.env_file);
                let value = self.read(Path::new(&path), origin.clone())?;
                return Ok(Some(Raw { value, origin }));
            }
            (None, None) => {}
        }
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.invalid(
                Origin::File,
                format!("set only one of `{0}` and `{0}_file`", self.field),
            )),
            (Some(value), None) => Ok(Some(Raw {
                value,
                origin: Origin::File,
            })),
            (None, Some(path)) => {
                let path = match file_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path,
                };
                let value = self.read(&path, Origin::File)?;
                Ok(Some(Raw {
                    value,
                    origin: Origin::File,
                }))
            }
            (None, None) => Ok(None),
        }
    }

    /// Reads a secret file. Errors name the file, never its content.
    fn read(&self, path: &Path, origin: Origin) -> Result<String, ConfigLoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.invalid(
                origin.clone(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(self.invalid(origin, format!("{} is empty", path.display())));
        }
        Ok(value.to_owned())
    }

    fn invalid(&self, origin: Origin, reason: String) -> ConfigLoadError {
        ConfigLoadError::Invalid {
            field: self.field,
            origin,
            reason,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::super::test_support::env;
    use super::super::Config;
    use super::*;

    /// A config file, an environment, and what the error must say.
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

    fn secret_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn environment_files_give_the_redis_url_and_admin_token() {
        let url = secret_file("redis://:s3cret@redis.example:6379/\n");
        let token = secret_file("an-admin-token-of-at-least-32-characters\n");
        let config = Config::from_sources(
            None,
            env(&[
                ("KEYMESH_REDIS_URL_FILE", url.path().to_str().unwrap()),
                ("KEYMESH_ADMIN_TOKEN_FILE", token.path().to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(config.redis_url, "redis://:s3cret@redis.example:6379/");
        assert!(config
            .admin_token
            .unwrap()
            .verify("an-admin-token-of-at-least-32-characters"));
    }

    #[test]
    fn config_file_paths_are_relative_to_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis-url"), "redis://10.0.0.9:6379/").unwrap();
        std::fs::write(
            dir.path().join("admin-token"),
            "file-token-0123456789abcdef0123456789\n",
        )
        .unwrap();
        let toml_path = dir.path().join("keymesh.toml");
        let config = Config::from_sources(
            Some((
                &toml_path,
                "redis_url_file = \"redis-url\"\nadmin_token_file = \"admin-token\"\n",
            )),
            env(&[]),
        )
        .unwrap();
        assert_eq!(config.redis_url, "redis://10.0.0.9:6379/");
        assert!(config
            .admin_token
            .unwrap()
            .verify("file-token-0123456789abcdef0123456789"));
    }

    #[test]
    fn environment_file_overrides_the_config_file() {
        let url = secret_file("redis://from-env-file:6379/");
        let config = Config::from_sources(
            Some((
                Path::new("k.toml"),
                "redis_url = \"redis://from-toml:6379/\"\n",
            )),
            env(&[("KEYMESH_REDIS_URL_FILE", url.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(config.redis_url, "redis://from-env-file:6379/");
    }

    #[test]
    fn both_forms_at_one_level_missing_and_empty_files_are_errors_without_the_secret() {
        let empty = secret_file("\n");
        let cases: [Case<'_>; 4] = [
            (
                None,
                vec![
                    ("KEYMESH_ADMIN_TOKEN", "x"),
                    ("KEYMESH_ADMIN_TOKEN_FILE", "/nowhere"),
                ],
                "set only one of KEYMESH_ADMIN_TOKEN and KEYMESH_ADMIN_TOKEN_FILE",
            ),
            (
                Some("redis_url = \"redis://:hunter2@h/\"\nredis_url_file = \"/x\"\n"),
                vec![],
                "set only one of `redis_url` and `redis_url_file`",
            ),
            (
                None,
                vec![("KEYMESH_REDIS_URL_FILE", "/nowhere/redis-url")],
                "cannot read /nowhere/redis-url",
            ),
            (
                None,
                vec![("KEYMESH_ADMIN_TOKEN_FILE", empty.path().to_str().unwrap())],
                "is empty",
            ),
        ];
        for (toml, pairs, expected) in cases {
            let file = toml.map(|text| (Path::new("k.toml"), text));
            let error = Config::from_sources(file, env(&pairs))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        // A URL that fails validation is reported by field and origin, without its password.
        let bad = secret_file("http://:hunter2@h:6379/");
        let error = Config::from_sources(
            None,
            env(&[("KEYMESH_REDIS_URL_FILE", bad.path().to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("KEYMESH_REDIS_URL_FILE"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
