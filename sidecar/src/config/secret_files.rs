//! Secrets read from files, the way Kubernetes mounts a Secret's keys: `redis_url_file` /
//! `KEYMESH_REDIS_URL_FILE` and `admin_token_file` / `KEYMESH_ADMIN_TOKEN_FILE`.
//!
//! A file's content is the value, without a trailing line break. At one level (the config file, or the environment)
//! a secret is given either inline or as a file, never both; the environment overrides the config file as for
//! every other setting.

use std::path::{Path, PathBuf};

use super::{ConfigError, Origin};

/// One secret setting and the names it goes by.
pub(super) struct SecretSetting {
    /// The configuration field, for errors (`redis_url`).
    pub(super) field: &'static str,
    /// The environment variable holding the value (`KEYMESH_REDIS_URL`).
    pub(super) env: &'static str,
    /// The environment variable naming a file holding it (`KEYMESH_REDIS_URL_FILE`).
    pub(super) env_file: &'static str,
}

/// The Redis URL.
pub(super) const REDIS_URL: SecretSetting = SecretSetting {
    field: "redis_url",
    env: "KEYMESH_REDIS_URL",
    env_file: "KEYMESH_REDIS_URL_FILE",
};

/// The admin API's bearer token.
pub(super) const ADMIN_TOKEN: SecretSetting = SecretSetting {
    field: "admin_token",
    env: super::ADMIN_TOKEN_ENV,
    env_file: "KEYMESH_ADMIN_TOKEN_FILE",
};

impl SecretSetting {
    /// The value the config file gives: inline or from `*_file` (relative to the config file's directory).
    pub(super) fn in_config_file(
        &self,
        inline: Option<String>,
        file: Option<PathBuf>,
        file_dir: Option<&Path>,
    ) -> Result<Option<String>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                field: self.field,
                origin: Origin::File,
                reason: format!("set only one of `{0}` and `{0}_file`", self.field),
            }),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => {
                let path = match file_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path,
                };
                self.read(&path, Origin::File).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// The value the environment gives: inline or from the file named by `*_FILE`.
    pub(super) fn in_env(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, Origin)>, ConfigError> {
        match (env(self.env), env(self.env_file)) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                field: self.field,
                origin: Origin::Env(self.env),
                reason: format!("set only one of {} and {}", self.env, self.env_file),
            }),
            (Some(value), None) => Ok(Some((value, Origin::Env(self.env)))),
            (None, Some(path)) => {
                let origin = Origin::Env(self.env_file);
                Ok(Some((self.read(Path::new(&path), origin.clone())?, origin)))
            }
            (None, None) => Ok(None),
        }
    }

    /// Reads a secret file. Errors name the file, never its content.
    fn read(&self, path: &Path, origin: Origin) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            field: self.field,
            origin: origin.clone(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                field: self.field,
                origin,
                reason: format!("{} is empty", path.display()),
            });
        }
        Ok(value.to_owned())
    }
}

#[cfg(test)]
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
        let toml_path = dir.path().join("keymesh.toml");
        let config = Config::from_sources(
            Some((&toml_path, "redis_url_file = \"redis-url\"\n")),
            env(&[]),
        )
        .unwrap();
        assert_eq!(config.redis_url, "redis://10.0.0.9:6379/");
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
        let url = secret_file("redis://:hunter2@h:6379/");
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
                Some("redis_url = \"redis://h/\"\nredis_url_file = \"/x\"\n"),
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
        // A URL that fails validation is reported by field and origin, and masked.
        let bad = secret_file("http://:hunter2@h:6379/");
        let error = Config::from_sources(
            None,
            env(&[("KEYMESH_REDIS_URL_FILE", bad.path().to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("KEYMESH_REDIS_URL_FILE"), "{error}");
        drop(url);
    }
}
