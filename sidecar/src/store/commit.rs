//! The commit protocol: how a change to the bundle is committed in Redis (version bump, change-log append,
//! publish), and the format of a change-log entry. Reading the log back is the mirror's ([`crate::mirror::load`]).
//!
//! Every change that affects the bundle (a signing key added or activated, an API key created, regenerated or
//! revoked, an access token revoked) runs as one Lua script that:
//!
//! 1. `INCR {prefix}version`,
//! 2. applies the data change,
//! 3. `XADD {prefix}changelog MAXLEN ~ 100000 <version>-0 kind <kind> …`,
//! 4. `PUBLISH {prefix}changes <version>`.
//!
//! Stream ids equal versions, so `XRANGE {prefix}changelog <v+1> +` returns exactly the changes after version `v`,
//! and a reader that sees a gap in the ids knows the log does not cover it (trimmed, or written by something that
//! did not log). Entry fields, besides `kind`:
//!
//! | `kind` | fields | meaning |
//! |---|---|---|
//! | `apikey_put` | `data` (an [`ApiKeyDto`] as JSON) | an API key was created |
//! | `apikey_delete` | `hash` | the API key with this hash was revoked |
//! | `apikey_regenerate` | `hash` (the old one), `data` (the new entry) | the old hash stops working as the new one starts |
//! | `apikey_update` | `delete` (JSON array of hashes), `put` (JSON array of [`ApiKeyDto`]) | a key was disabled, enabled, regenerated with a grace period, or revoked while an old secret was in grace |
//! | `keys` | `kid` | the signing key set changed (readers reload it: it is small) |
//! | `token_revoke` | `jti`, `exp` | the access token with this `jti` (valid until `exp`) was revoked |
//! | `issuers` | `issuer` | an external provider was added, removed, or its keys changed (readers reload them) |
//!
//! A script may commit several changes (one version each): revoking a grant revokes each of its live access
//! tokens as its own `token_revoke` entry.

use keymesh_core::bundle::{ApiKeyDto, RevokedTokenDto};

use crate::store::names::KeyNames;

/// How many changes the Redis stream keeps (approximately: trimming is `MAXLEN ~`), and the mirror in memory.
pub const CHANGE_LOG_LEN: usize = 100_000;

/// Lua shared by every script that commits a change.
///
/// Scripts built with [`script`] take `KEYS[1]` = the version counter, `KEYS[2]` = the change log stream,
/// `ARGV[1]` = the change channel and `ARGV[2]` = the stream's length limit; their own keys and arguments follow.
/// A script checks its preconditions first (Lua scripts are not rolled back when a later command fails), then calls
/// `begin_change()`, applies its data change and calls `log_change(version, field, value, …)`.
const PRELUDE: &str = r"
local function begin_change()
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if top and tonumber(string.match(top[1], '^%d+')) > current then
    -- The counter went back (it was reset) while the log was kept: restart the log so that no reader takes
    -- old entries for new versions, and XADD below can use the new version as its id.
    redis.call('DEL', KEYS[2])
  end
  return redis.call('INCR', KEYS[1])
end
local function log_change(version, ...)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], version .. '-0', ...)
  redis.call('PUBLISH', ARGV[1], version)
end
";

/// A change-committing script: [`PRELUDE`] followed by `body`.
pub(crate) fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Starts an invocation of a script built with [`script`], with the keys and arguments the prelude expects.
pub(crate) fn invocation<'a>(
    script: &'a redis::Script,
    names: &KeyNames,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(names.version())
        .key(names.changelog())
        .arg(names.changes())
        .arg(CHANGE_LOG_LEN);
    invocation
}

/// What a change did, from its `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// An API key was created.
    ApiKeyPut,
    /// An API key was revoked.
    ApiKeyDelete,
    /// An API key got a new secret: its old hash was deleted and the new entry put.
    ApiKeyRegenerate,
    /// An API key's entries changed in another way (disabled, enabled, regenerated with a grace period): the
    /// listed hashes were deleted, then the listed entries put.
    ApiKeyUpdate,
    /// The signing key set changed.
    Keys,
    /// An access token was revoked.
    TokenRevoke,
    /// The external identity providers changed.
    Issuers,
}

impl ChangeKind {
    /// The value of the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKeyPut => "apikey_put",
            Self::ApiKeyDelete => "apikey_delete",
            Self::ApiKeyRegenerate => "apikey_regenerate",
            Self::ApiKeyUpdate => "apikey_update",
            Self::Keys => "keys",
            Self::TokenRevoke => "token_revoke",
            Self::Issuers => "issuers",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [
            Self::ApiKeyPut,
            Self::ApiKeyDelete,
            Self::ApiKeyRegenerate,
            Self::ApiKeyUpdate,
            Self::Keys,
            Self::TokenRevoke,
            Self::Issuers,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version this change produced.
    pub version: u64,
    /// What it did.
    pub kind: ChangeKind,
    /// API key entries created or replaced.
    pub put: Vec<ApiKeyDto>,
    /// Hashes of API keys that stopped working.
    pub delete: Vec<String>,
    /// Access tokens revoked.
    pub revoked: Vec<RevokedTokenDto>,
}

/// Why a change log entry could not be used. The mirror answers every one of them with a full reload.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The stream id is not `<version>-0`.
    #[error("change log entry id {0:?} is not <version>-0")]
    BadId(String),
    /// The `kind` field is missing or names a change this sidecar does not know (a newer writer?).
    #[error("change log entry {version} has unknown kind {kind:?}")]
    UnknownKind {
        /// The entry's version.
        version: u64,
        /// The `kind` field, empty if absent.
        kind: String,
    },
    /// A field the kind requires is missing.
    #[error("change log entry {version} lacks its `{field}` field")]
    MissingField {
        /// The entry's version.
        version: u64,
        /// The field.
        field: &'static str,
    },
    /// The `exp` field of a token revocation is not a number of seconds.
    #[error("change log entry {version} has a malformed exp")]
    BadExp {
        /// The entry's version.
        version: u64,
    },
    /// The `data` field is not an API key entry.
    #[error("change log entry {version} has malformed data: {source}")]
    BadData {
        /// The entry's version.
        version: u64,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// Parses one stream entry: its id and its flat field/value list.
pub fn parse_entry(id: &str, fields: &[String]) -> Result<Change, EntryError> {
    let version = id
        .strip_suffix("-0")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| EntryError::BadId(id.to_owned()))?;
    let field = |name: &str| {
        fields
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    };
    let kind_field = field("kind").unwrap_or_default();
    let kind = ChangeKind::parse(kind_field).ok_or_else(|| EntryError::UnknownKind {
        version,
        kind: kind_field.to_owned(),
    })?;
    let required = |name: &'static str| {
        field(name).ok_or(EntryError::MissingField {
            version,
            field: name,
        })
    };
    let entry = |json: &str| {
        serde_json::from_str::<ApiKeyDto>(json)
            .map_err(|source| EntryError::BadData { version, source })
    };
    let mut revoked = Vec::new();
    let (put, delete) = match kind {
        ChangeKind::ApiKeyPut => (vec![entry(required("data")?)?], vec![]),
        ChangeKind::ApiKeyDelete => (vec![], vec![required("hash")?.to_owned()]),
        ChangeKind::ApiKeyRegenerate => (
            vec![entry(required("data")?)?],
            vec![required("hash")?.to_owned()],
        ),
        ChangeKind::ApiKeyUpdate => {
            let put = serde_json::from_str::<Vec<ApiKeyDto>>(required("put")?)
                .map_err(|source| EntryError::BadData { version, source })?;
            let delete = serde_json::from_str::<Vec<String>>(required("delete")?)
                .map_err(|source| EntryError::BadData { version, source })?;
            (put, delete)
        }
        ChangeKind::Keys | ChangeKind::Issuers => (vec![], vec![]),
        ChangeKind::TokenRevoke => {
            let jti = required("jti")?.to_owned();
            let exp = required("exp")?
                .parse::<i64>()
                .map_err(|_| EntryError::BadExp { version })?;
            revoked.push(RevokedTokenDto { jti, exp });
            (vec![], vec![])
        }
    };
    Ok(Change {
        version,
        kind,
        put,
        delete,
        revoked,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    const DTO: &str = r#"{"hash":"h2","id":"ak_x","owner":"o","resources":["urn:a"],"scopes":[]}"#;

    #[test]
    fn entries_of_every_kind_parse() {
        let put = parse_entry("7-0", &fields(&["kind", "apikey_put", "data", DTO])).unwrap();
        assert_eq!(
            (put.version, put.kind, put.put[0].hash.as_str()),
            (7, ChangeKind::ApiKeyPut, "h2")
        );
        assert!(put.delete.is_empty());
        let delete = parse_entry("8-0", &fields(&["kind", "apikey_delete", "hash", "h1"])).unwrap();
        assert_eq!(delete.delete, ["h1"]);
        assert!(delete.put.is_empty());
        let regenerate = parse_entry(
            "9-0",
            &fields(&["kind", "apikey_regenerate", "hash", "h1", "data", DTO]),
        )
        .unwrap();
        assert_eq!(regenerate.delete, ["h1"]);
        assert_eq!(regenerate.put[0].hash, "h2");
        let update = parse_entry(
            "9-0",
            &fields(&[
                "kind",
                "apikey_update",
                "delete",
                r#"["h0","h1"]"#,
                "put",
                &format!("[{DTO}]"),
            ]),
        )
        .unwrap();
        assert_eq!(update.kind, ChangeKind::ApiKeyUpdate);
        assert_eq!(update.delete, ["h0", "h1"]);
        assert_eq!(update.put[0].hash, "h2");
        let keys = parse_entry("10-0", &fields(&["kind", "keys", "kid", "abc"])).unwrap();
        assert_eq!(keys.kind, ChangeKind::Keys);
        let issuers = parse_entry(
            "10-0",
            &fields(&["kind", "issuers", "issuer", "https://idp"]),
        )
        .unwrap();
        assert_eq!(issuers.kind, ChangeKind::Issuers);
        assert!(issuers.put.is_empty() && issuers.delete.is_empty() && issuers.revoked.is_empty());
        let revoke = parse_entry(
            "11-0",
            &fields(&["kind", "token_revoke", "jti", "j1", "exp", "1700000300"]),
        )
        .unwrap();
        assert_eq!(revoke.kind, ChangeKind::TokenRevoke);
        assert_eq!(
            revoke.revoked,
            [RevokedTokenDto {
                jti: "j1".into(),
                exp: 1_700_000_300
            }]
        );
        assert!(revoke.put.is_empty() && revoke.delete.is_empty());
    }

    #[test]
    fn unusable_entries_are_errors() {
        assert!(matches!(
            parse_entry("7-1", &fields(&["kind", "keys"])),
            Err(EntryError::BadId(_))
        ));
        assert!(matches!(
            parse_entry("x-0", &fields(&["kind", "keys"])),
            Err(EntryError::BadId(_))
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["kind", "apikey_rename"])),
            Err(EntryError::UnknownKind { version: 7, .. })
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["data", DTO])),
            Err(EntryError::UnknownKind { .. })
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["kind", "apikey_delete"])),
            Err(EntryError::MissingField { field: "hash", .. })
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["kind", "apikey_put", "data", "{}"])),
            Err(EntryError::BadData { .. })
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["kind", "apikey_update", "delete", "[]"])),
            Err(EntryError::MissingField { field: "put", .. })
        ));
        assert!(matches!(
            parse_entry(
                "7-0",
                &fields(&["kind", "apikey_update", "delete", "h1", "put", "[]"])
            ),
            Err(EntryError::BadData { .. })
        ));
        assert!(matches!(
            parse_entry("7-0", &fields(&["kind", "token_revoke", "exp", "1"])),
            Err(EntryError::MissingField { field: "jti", .. })
        ));
        assert!(matches!(
            parse_entry(
                "7-0",
                &fields(&["kind", "token_revoke", "jti", "j", "exp", "soon"])
            ),
            Err(EntryError::BadExp { version: 7 })
        ));
    }
}
