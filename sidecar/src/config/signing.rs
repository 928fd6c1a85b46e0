//! The signing-key settings of the configuration: the key-encryption key and the rotation schedule.
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `kek_file` | `KEYMESH_KEK_FILE` (or the KEK itself in `KEYMESH_KEK`) | none: required to sign or create keys |
//! | `key_algorithm` | `KEYMESH_KEY_ALGORITHM` | `EdDSA` (or `ES256`, `RS256`) |
//! | `key_publish_delay_secs` | `KEYMESH_KEY_PUBLISH_DELAY_SECS` | `10` |
//! | `key_rotation_interval_secs` | `KEYMESH_KEY_ROTATION_INTERVAL_SECS` | `0` (no automatic rotation) |
//! | `key_retire_leeway_secs` | `KEYMESH_KEY_RETIRE_LEEWAY_SECS` | `300` |

use std::path::{Path, PathBuf};

use super::setting::{parse_secs, setting, Env, Origin};
use super::ConfigLoadError;
use crate::support::alg::Alg;
use crate::support::kek::{Kek, KekSource, KEK_ENV, KEK_FILE_ENV};

/// Longest publish delay accepted: a day.
const MAX_PUBLISH_DELAY_SECS: u64 = 86_400;
/// Shortest automatic rotation interval accepted.
const MIN_ROTATION_INTERVAL_SECS: u64 = 60;
/// Longest automatic rotation interval accepted: a year.
const MAX_ROTATION_INTERVAL_SECS: u64 = 366 * 86_400;
/// Longest retirement leeway accepted: a day.
const MAX_RETIRE_LEEWAY_SECS: u64 = 86_400;

/// How signing keys are protected and rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// Where the key-encryption key comes from (`KEYMESH_KEK`, `KEYMESH_KEK_FILE`, `kek_file`); `None` means no
    /// key can be signed with or created.
    pub kek: Option<KekSource>,
    /// Algorithm of the first key and of automatic rotations (`KEYMESH_KEY_ALGORITHM`).
    pub algorithm: Alg,
    /// How long a new key is published before it signs anything, so every proxy holds it first
    /// (`KEYMESH_KEY_PUBLISH_DELAY_SECS`). Make it a few times the filters' refresh interval.
    pub publish_delay_secs: u64,
    /// Automatic rotation: a new key every this many seconds; 0 turns it off (`KEYMESH_KEY_ROTATION_INTERVAL_SECS`).
    pub rotation_interval_secs: u64,
    /// How long a replaced key stays published after the last token it signed expires: at least the filters'
    /// `leeway_secs` plus clock skew (`KEYMESH_KEY_RETIRE_LEEWAY_SECS`).
    pub retire_leeway_secs: u64,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            kek: None,
            algorithm: Alg::EdDsa,
            publish_delay_secs: 10,
            rotation_interval_secs: 0,
            retire_leeway_secs: 300,
        }
    }
}

/// The signing settings as the configuration file has them.
#[derive(Default)]
pub(super) struct SigningFile {
    pub(super) kek_file: Option<PathBuf>,
    pub(super) key_algorithm: Option<String>,
    pub(super) key_publish_delay_secs: Option<u64>,
    pub(super) key_rotation_interval_secs: Option<u64>,
    pub(super) key_retire_leeway_secs: Option<u64>,
}

/// Builds the signing settings from the file's values (a relative `kek_file` is relative to the file's directory)
/// and the environment, which wins.
pub(super) fn from_sources(
    file: SigningFile,
    file_dir: Option<&Path>,
    env: Env<'_>,
) -> Result<SigningConfig, ConfigLoadError> {
    let defaults = SigningConfig::default();
    let publish_delay_secs = setting(
        "key_publish_delay_secs",
        "KEYMESH_KEY_PUBLISH_DELAY_SECS",
        file.key_publish_delay_secs,
        defaults.publish_delay_secs,
        env,
        |v| parse_secs(v, 1, MAX_PUBLISH_DELAY_SECS),
    )?;
    let rotation_interval_secs = setting(
        "key_rotation_interval_secs",
        "KEYMESH_KEY_ROTATION_INTERVAL_SECS",
        file.key_rotation_interval_secs,
        defaults.rotation_interval_secs,
        env,
        |v| {
            let secs = parse_secs(v, 0, MAX_ROTATION_INTERVAL_SECS)?;
            if secs != 0 && (secs < MIN_ROTATION_INTERVAL_SECS || secs <= publish_delay_secs) {
                return Err(format!(
                    "must be 0 (off), or at least {MIN_ROTATION_INTERVAL_SECS} seconds and longer than \
                     key_publish_delay_secs ({publish_delay_secs})"
                ));
            }
            Ok(secs)
        },
    )?;
    Ok(SigningConfig {
        kek: kek_source(file.kek_file, file_dir, env)?,
        algorithm: setting(
            "key_algorithm",
            "KEYMESH_KEY_ALGORITHM",
            file.key_algorithm,
            defaults.algorithm,
            env,
            |v| v.parse::<Alg>(),
        )?,
        publish_delay_secs,
        rotation_interval_secs,
        retire_leeway_secs: setting(
            "key_retire_leeway_secs",
            "KEYMESH_KEY_RETIRE_LEEWAY_SECS",
            file.key_retire_leeway_secs,
            defaults.retire_leeway_secs,
            env,
            |v| parse_secs(v, 0, MAX_RETIRE_LEEWAY_SECS),
        )?,
    })
}

fn kek_source(
    file_value: Option<PathBuf>,
    file_dir: Option<&Path>,
    env: Env<'_>,
) -> Result<Option<KekSource>, ConfigLoadError> {
    let invalid = |origin: Origin, reason: String| ConfigLoadError::Invalid {
        field: "kek",
        origin,
        reason,
    };
    match (env(KEK_ENV), env(KEK_FILE_ENV)) {
        (Some(_), Some(_)) => Err(invalid(
            Origin::Env(KEK_ENV),
            format!("set only one of {KEK_ENV} and {KEK_FILE_ENV}"),
        )),
        (Some(inline), None) => Kek::from_base64(&inline)
            .map(|kek| Some(KekSource::Inline(kek)))
            .map_err(|reason| invalid(Origin::Env(KEK_ENV), reason)),
        (None, Some(path)) if path.trim().is_empty() => Err(invalid(
            Origin::Env(KEK_FILE_ENV),
            "must name a file".to_owned(),
        )),
        (None, Some(path)) => Ok(Some(KekSource::File(PathBuf::from(path)))),
        (None, None) => match file_value {
            Some(path) if path.as_os_str().is_empty() => {
                Err(invalid(Origin::File, "must name a file".to_owned()))
            }
            Some(path) => Ok(Some(KekSource::File(match file_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            }))),
            None => Ok(None),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;
    use crate::config::Config;

    use super::super::test_support::env;

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigLoadError> {
        Config::from_sources(
            file.map(|text| (Path::new("/etc/keymesh/keymesh.toml"), text)),
            env(vars),
        )
    }

    #[test]
    fn defaults_have_no_kek_and_no_automatic_rotation() {
        let signing = load(None, &[]).unwrap().signing;
        assert_eq!(signing, SigningConfig::default());
        assert_eq!(signing.kek, None);
        assert_eq!(
            (
                signing.algorithm,
                signing.publish_delay_secs,
                signing.rotation_interval_secs
            ),
            (Alg::EdDsa, 10, 0)
        );
    }

    #[test]
    fn file_then_environment() {
        let text = "kek_file = \"kek\"\nkey_algorithm = \"ES256\"\nkey_publish_delay_secs = 20\n\
                    key_rotation_interval_secs = 86400\nkey_retire_leeway_secs = 60\n";
        let signing = load(Some(text), &[]).unwrap().signing;
        assert_eq!(
            signing.kek,
            Some(KekSource::File(PathBuf::from("/etc/keymesh/kek"))),
            "relative to the file"
        );
        assert_eq!(
            (
                signing.algorithm,
                signing.publish_delay_secs,
                signing.rotation_interval_secs,
                signing.retire_leeway_secs
            ),
            (Alg::Es256, 20, 86_400, 60)
        );

        let kek = Kek::generate();
        let signing = load(
            Some(text),
            &[
                (KEK_ENV, &kek.to_base64()),
                ("KEYMESH_KEY_ALGORITHM", "RS256"),
                ("KEYMESH_KEY_ROTATION_INTERVAL_SECS", "0"),
            ],
        )
        .unwrap()
        .signing;
        assert_eq!(signing.kek, Some(KekSource::Inline(kek)));
        assert_eq!(
            (signing.algorithm, signing.rotation_interval_secs),
            (Alg::Rs256, 0)
        );
        let signing = load(Some(text), &[(KEK_FILE_ENV, "/run/secrets/kek")])
            .unwrap()
            .signing;
        assert_eq!(
            signing.kek,
            Some(KekSource::File(PathBuf::from("/run/secrets/kek")))
        );
    }

    #[test]
    fn bad_values_name_the_field_and_never_echo_the_kek() {
        // (file text, environment, field named, origin named)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (None, &[(KEK_ENV, "dG9vIHNob3J0")], "kek", KEK_ENV),
            (
                None,
                &[(KEK_ENV, "x"), (KEK_FILE_ENV, "/k")],
                "kek",
                KEK_ENV,
            ),
            (None, &[(KEK_FILE_ENV, " ")], "kek", KEK_FILE_ENV),
            (
                None,
                &[("KEYMESH_KEY_ALGORITHM", "HS256")],
                "key_algorithm",
                "KEYMESH_KEY_ALGORITHM",
            ),
            (
                Some("key_publish_delay_secs = 0"),
                &[],
                "key_publish_delay_secs",
                "config file",
            ),
            (
                None,
                &[("KEYMESH_KEY_ROTATION_INTERVAL_SECS", "30")],
                "key_rotation_interval_secs",
                "KEYMESH_KEY_ROTATION_INTERVAL_SECS",
            ),
            (
                Some("key_publish_delay_secs = 600\nkey_rotation_interval_secs = 600"),
                &[],
                "key_rotation_interval_secs",
                "config file",
            ),
            (
                None,
                &[("KEYMESH_KEY_RETIRE_LEEWAY_SECS", "-1")],
                "key_retire_leeway_secs",
                "KEYMESH_KEY_RETIRE_LEEWAY_SECS",
            ),
        ];
        for (text, vars, field, origin) in cases {
            let err = load(*text, vars).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigLoadError::Invalid { field: f, .. } if f == field),
                "{vars:?}: {message}"
            );
            assert!(message.contains(origin), "{message}");
            assert!(
                !message.contains("dG9vIHNob3J0"),
                "the KEK is not echoed: {message}"
            );
        }
    }
}
