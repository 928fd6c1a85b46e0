//! The API key types: the stored record, what listings show, a creation request and a freshly issued key.

use std::fmt;

use keymesh_core::bundle::ApiKeyDto;
use serde::{Deserialize, Serialize};

/// An API key as stored in Redis: everything but the key itself.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier (`ak_…`).
    pub id: String,
    /// The subject the key acts for.
    pub owner: String,
    /// A human-readable label.
    pub label: String,
    /// [`keymesh_core::apikey::hash_key`] of the key.
    pub hash: String,
    /// [`keymesh_core::apikey::public_prefix`] of the key, to recognise it in listings.
    pub prefix: String,
    /// Resource URIs (audiences) the key is valid for.
    pub resources: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When the key was created (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the key stops working (seconds since the Unix epoch); `None` never.
    pub expires_at: Option<u64>,
    /// The operator-set rate tier, forwarded upstream as `x-keymesh-tier`; `None` forwards none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// A disabled key is kept and listed but not delivered to the filters, so every proxy refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The secret the key had before its last regeneration, still accepted until its grace period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

/// A replaced secret in its grace period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// [`keymesh_core::apikey::hash_key`] of the old key.
    pub hash: String,
    /// Its public prefix, to tell which secret a client still uses.
    pub prefix: String,
    /// When it stops working (seconds since the Unix epoch), at the latest when the key itself expires.
    pub until: u64,
}

/// What a key is now, as listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyState {
    /// Accepted at every proxy.
    Active,
    /// Kept, but refused everywhere until enabled.
    Disabled,
    /// Past its expiry: refused everywhere.
    Expired,
}

impl ApiKeyState {
    /// The lower-case name listings print.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
        }
    }
}

impl ApiKeyRecord {
    /// The state at `now`.
    pub fn state(&self, now: u64) -> ApiKeyState {
        if self.disabled {
            ApiKeyState::Disabled
        } else if self.expires_at.is_some_and(|at| now >= at) {
            ApiKeyState::Expired
        } else {
            ApiKeyState::Active
        }
    }

    /// The old secret if it is still in its grace period at `now`.
    pub fn previous_in_grace(&self, now: u64) -> Option<&PreviousSecret> {
        self.previous
            .as_ref()
            .filter(|previous| previous.until > now)
    }

    /// Every hash the filters may hold an entry for: the current secret's and the old one's, if any (for
    /// deleting them all).
    pub fn hashes(&self) -> Vec<String> {
        std::iter::once(self.hash.clone())
            .chain(self.previous.as_ref().map(|previous| previous.hash.clone()))
            .collect()
    }

    /// The entries the filters receive for this key at `now`: none while disabled; else the current secret's,
    /// and the old secret's while in grace (same id and rights, `expires_at` = the end of the grace period, so
    /// every proxy refuses it from then on without a further change).
    pub fn bundle_entries(&self, now: u64) -> Vec<ApiKeyDto> {
        if self.disabled {
            return vec![];
        }
        let current = self.to_dto();
        let previous = self.previous_in_grace(now).map(|previous| ApiKeyDto {
            hash: previous.hash.clone(),
            expires_at: Some(i64::try_from(previous.until).unwrap_or(i64::MAX)),
            ..current.clone()
        });
        std::iter::once(current).chain(previous).collect()
    }

    /// The entry of the current secret, as the filters receive it in the bundle.
    pub fn to_dto(&self) -> ApiKeyDto {
        ApiKeyDto {
            hash: self.hash.clone(),
            id: self.id.clone(),
            owner: self.owner.clone(),
            resources: self.resources.clone(),
            scopes: self.scopes.clone(),
            expires_at: self
                .expires_at
                .map(|at| i64::try_from(at).unwrap_or(i64::MAX)),
            tier: self.tier.clone(),
        }
    }
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs and debug output, as client secret hashes do.
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("label", &self.label)
            .field("prefix", &self.prefix)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// An API key as listings show it: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// Public identifier.
    pub id: String,
    /// The subject the key acts for.
    pub owner: String,
    /// The label.
    pub label: String,
    /// The key's public prefix.
    pub prefix: String,
    /// Resource URIs the key is valid for.
    pub resources: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When the key was created.
    pub created_at: u64,
    /// When the key stops working; `None` never.
    pub expires_at: Option<u64>,
    /// The rate tier; `None` has none.
    pub tier: Option<String>,
    /// `active`, `disabled` or `expired`.
    pub state: ApiKeyState,
    /// When the key was last used, to the minute (seconds since the Unix epoch); `None` if never seen.
    pub last_used_at: Option<u64>,
    /// While the secret replaced by the last regeneration still works: its public prefix and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecretInfo>,
}

/// A replaced secret still in its grace period, as listings show it (never its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousSecretInfo {
    /// The old key's public prefix.
    pub prefix: String,
    /// When it stops working.
    pub until: u64,
}

impl ApiKeyInfo {
    /// What a listing shows of `record` at `now`, last used at `last_used_at`.
    pub fn new(record: ApiKeyRecord, now: u64, last_used_at: Option<u64>) -> Self {
        let state = record.state(now);
        let previous_secret = record
            .previous_in_grace(now)
            .filter(|_| state == ApiKeyState::Active)
            .map(|previous| PreviousSecretInfo {
                prefix: previous.prefix.clone(),
                until: previous.until,
            });
        Self {
            state,
            last_used_at,
            previous_secret,
            ..Self::from(record)
        }
    }
}

impl From<ApiKeyRecord> for ApiKeyInfo {
    /// The listing entry without a clock: `state` says only whether it is disabled, and no use is known.
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            state: if record.disabled {
                ApiKeyState::Disabled
            } else {
                ApiKeyState::Active
            },
            last_used_at: None,
            previous_secret: None,
            id: record.id,
            owner: record.owner,
            label: record.label,
            prefix: record.prefix,
            resources: record.resources,
            scopes: record.scopes,
            created_at: record.created_at,
            expires_at: record.expires_at,
            tier: record.tier,
        }
    }
}

/// A request for a new API key, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// The subject the key acts for (the same rules as a client id).
    pub owner: String,
    /// A label of 1 to [`MAX_LABEL_CHARS`](crate::support::syntax::MAX_LABEL_CHARS) printable characters.
    pub label: String,
    /// Resource URIs the key is valid for (at least one).
    pub resources: Vec<String>,
    /// Scopes granted (may be empty).
    pub scopes: Vec<String>,
    /// Lifetime in seconds (1 to [`MAX_EXPIRES_IN_SECS`](super::MAX_EXPIRES_IN_SECS)); `None` never expires.
    pub expires_in_secs: Option<u64>,
    /// The rate tier ([`keymesh_core::tier::is_tier`]); `None` has none.
    pub tier: Option<String>,
}

/// A key just created or regenerated, with the key itself: the only time it is available.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct IssuedApiKey {
    /// Public identifier.
    pub id: String,
    /// The API key (`km_…`).
    pub key: String,
    /// The subject the key acts for.
    pub owner: String,
    /// The label.
    pub label: String,
    /// The key's public prefix.
    pub prefix: String,
    /// Resource URIs the key is valid for.
    pub resources: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When the key was created.
    pub created_at: u64,
    /// When the key stops working; `None` never.
    pub expires_at: Option<u64>,
    /// The rate tier; `None` has none.
    pub tier: Option<String>,
    /// After a regeneration with a grace period: when the replaced secret stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<u64>,
}

impl IssuedApiKey {
    pub(super) fn new(key: String, record: ApiKeyRecord) -> Self {
        Self {
            id: record.id,
            key,
            owner: record.owner,
            label: record.label,
            prefix: record.prefix,
            resources: record.resources,
            scopes: record.scopes,
            created_at: record.created_at,
            expires_at: record.expires_at,
            tier: record.tier,
            previous_secret_until: record.previous.map(|previous| previous.until),
        }
    }
}

impl fmt::Debug for IssuedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedApiKey")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_entry_carries_no_label_or_prefix() {
        let record = ApiKeyRecord {
            id: "ak_x".into(),
            owner: "alice".into(),
            label: "laptop".into(),
            hash: "h".into(),
            prefix: "km_abcd".into(),
            resources: vec!["urn:a".into()],
            scopes: vec!["read".into()],
            created_at: 1,
            expires_at: Some(u64::MAX),
            tier: Some("pro".into()),
            ..ApiKeyRecord::default()
        };
        let dto = record.to_dto();
        assert_eq!(
            (dto.hash.as_str(), dto.id.as_str(), dto.owner.as_str()),
            ("h", "ak_x", "alice")
        );
        assert_eq!(
            dto.expires_at,
            Some(i64::MAX),
            "saturates instead of wrapping"
        );
        assert_eq!(dto.tier.as_deref(), Some("pro"));
        let json = serde_json::to_string(&dto).unwrap();
        assert!(
            !json.contains("laptop") && !json.contains("km_abcd"),
            "{json}"
        );
        assert!(
            !format!("{record:?}").contains("\"h\""),
            "hash kept out of Debug"
        );
    }

    #[test]
    fn bundle_entries_follow_the_state_and_the_grace_period() {
        let record = ApiKeyRecord {
            id: "ak_x".into(),
            hash: "new".into(),
            expires_at: Some(5_000),
            previous: Some(PreviousSecret {
                hash: "old".into(),
                prefix: "km_old".into(),
                until: 2_000,
            }),
            ..ApiKeyRecord::default()
        };
        let entries = record.bundle_entries(1_000);
        let hashes: Vec<(&str, Option<i64>)> = entries
            .iter()
            .map(|e| (e.hash.as_str(), e.expires_at))
            .collect();
        assert_eq!(hashes, [("new", Some(5_000)), ("old", Some(2_000))]);
        assert!(entries.iter().all(|e| e.id == "ak_x"));
        assert_eq!(record.bundle_entries(2_000).len(), 1, "grace over");
        assert_eq!(record.hashes(), ["new", "old"]);
        let disabled = ApiKeyRecord {
            disabled: true,
            ..record.clone()
        };
        assert!(disabled.bundle_entries(1_000).is_empty());
        assert_eq!(disabled.state(1_000), ApiKeyState::Disabled);
        assert_eq!(record.state(5_000), ApiKeyState::Expired);
        let info = ApiKeyInfo::new(record, 1_000, Some(960));
        assert_eq!(info.last_used_at, Some(960));
        assert_eq!(info.previous_secret.map(|p| p.until), Some(2_000));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let issued = IssuedApiKey {
            id: "ak_x".into(),
            key: "km_secret".into(),
            owner: "o".into(),
            label: "l".into(),
            prefix: "km_secr".into(),
            resources: vec![],
            scopes: vec![],
            created_at: 0,
            expires_at: None,
            tier: None,
            previous_secret_until: None,
        };
        assert!(!format!("{issued:?}").contains("km_secret"));
    }
}
