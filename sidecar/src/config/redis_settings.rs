//! The Redis settings of the configuration: one server, or the seed nodes of a Redis Cluster.
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `redis_url` | `KEYMESH_REDIS_URL` | `redis://127.0.0.1:6380/`; in cluster mode, comma-separated seed node URLs |
//! | `redis_cluster` | `KEYMESH_REDIS_CLUSTER` | `false` |
//!
//! In cluster mode the key prefix must carry a hash tag (`{keymesh}:`): changes are Lua scripts over several keys,
//! and a script's keys must share one hash slot.

use redis::IntoConnectionInfo;

use super::{Config, ConfigLoadError, Origin};
use crate::support::redact::url_list;

pub(super) fn parse_redis_url(value: &str, cluster: bool) -> Result<String, String> {
    let urls = url_list(value);
    if !cluster {
        if urls.len() > 1 {
            return Err(
                "is a list of URLs: for a Redis Cluster also set redis_cluster = true (KEYMESH_REDIS_CLUSTER)"
                    .to_owned(),
            );
        }
        value.into_connection_info().map_err(|e| e.to_string())?;
        return Ok(value.to_owned());
    }
    for (n, url) in urls.iter().enumerate() {
        let info = url
            .into_connection_info()
            .map_err(|e| format!("seed node {}: {e}", n + 1))?;
        if info.redis.db != 0 {
            return Err(format!(
                "seed node {}: a Redis Cluster has only database 0",
                n + 1
            ));
        }
    }
    // Refuses seeds with different credentials or TLS modes, and Unix sockets; connects to nothing.
    redis::cluster::ClusterClient::new(urls).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// In cluster mode, refuses a key prefix without a hash tag.
pub(super) fn check_key_prefix(config: &Config, origin: Origin) -> Result<(), ConfigLoadError> {
    if !config.redis_cluster || crate::support::syntax::hash_tag(&config.key_prefix).is_some() {
        return Ok(());
    }
    Err(ConfigLoadError::Invalid {
        field: "key_prefix",
        origin,
        reason: format!(
            "{:?} has no hash tag: with redis_cluster = true the prefix must contain one, such as \"{{keymesh}}:\", \
             so that every keymesh key is in one hash slot (changes are atomic scripts over several keys)",
            config.key_prefix
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;

    use super::super::test_support::{env, file};

    #[test]
    fn cluster_mode_takes_seed_nodes_and_needs_a_hash_tag() {
        let seeds = "redis://:pw@10.0.0.1:7000, redis://:pw@10.0.0.2:7000/";
        let config = Config::from_sources(
            None,
            env(&[
                ("KEYMESH_REDIS_CLUSTER", "true"),
                ("KEYMESH_REDIS_URL", seeds),
                ("KEYMESH_KEY_PREFIX", "{keymesh}:"),
            ]),
        )
        .unwrap();
        assert!(config.redis_cluster);
        assert_eq!(
            config.redis_urls(),
            ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000/"]
        );
        assert!(!format!("{config:?}").contains(":pw@"), "{config:?}");

        let from_file = Config::from_sources(
            file(
                "redis_cluster = true\nkey_prefix = \"prod:{km}:\"\nredis_url = \"redis://h:7000\"",
            ),
            env(&[]),
        )
        .unwrap();
        assert!(from_file.redis_cluster);
        assert_eq!(from_file.redis_urls(), ["redis://h:7000"]);
        let single = Config::from_sources(None, env(&[])).unwrap();
        assert_eq!(single.redis_urls(), ["redis://127.0.0.1:6380/"]);

        // (environment, field named, what the message says)
        type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let refused: &[Refusal<'_>] = &[
            (
                &[("KEYMESH_REDIS_CLUSTER", "true")],
                "key_prefix",
                "hash tag",
            ),
            (
                &[
                    ("KEYMESH_REDIS_CLUSTER", "1"),
                    ("KEYMESH_KEY_PREFIX", "{}:"),
                ],
                "key_prefix",
                "hash tag",
            ),
            (
                &[("KEYMESH_REDIS_CLUSTER", "maybe")],
                "redis_cluster",
                "true or false",
            ),
            (
                &[("KEYMESH_REDIS_URL", "redis://a:1/,redis://b:2/")],
                "redis_url",
                "redis_cluster",
            ),
            (
                &[
                    ("KEYMESH_REDIS_CLUSTER", "true"),
                    ("KEYMESH_KEY_PREFIX", "{k}:"),
                    ("KEYMESH_REDIS_URL", "redis://a:1/2"),
                ],
                "redis_url",
                "database 0",
            ),
            (
                &[
                    ("KEYMESH_REDIS_CLUSTER", "true"),
                    ("KEYMESH_KEY_PREFIX", "{k}:"),
                    ("KEYMESH_REDIS_URL", "redis://:one@a:1/,redis://:two@b:2/"),
                ],
                "redis_url",
                "password",
            ),
        ];
        for (vars, field, says) in refused {
            let err = Config::from_sources(None, env(vars)).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigLoadError::Invalid { field: f, .. } if f == field),
                "{vars:?}: {message}"
            );
            assert!(message.contains(says), "{vars:?}: {message}");
            assert!(
                !message.contains("one@") && !message.contains("two@"),
                "{message}"
            );
        }
    }

    #[test]
    fn lists_are_lists_of_urls() {
        assert_eq!(
            url_list("redis://a:1, redis://b:2/"),
            ["redis://a:1", "redis://b:2/"]
        );
        assert_eq!(url_list("redis://a:1/,"), ["redis://a:1/"]);
        assert_eq!(url_list("redis://:pa,ss@h/"), ["redis://:pa,ss@h/"]);
    }
}
