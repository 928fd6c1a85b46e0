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
}

impl ApiKeyRecord {
    /// The entry the filters receive in the bundle.
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
}

impl From<ApiKeyRecord> for ApiKeyInfo {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
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
        };
        assert!(!format!("{issued:?}").contains("km_secret"));
    }
}
