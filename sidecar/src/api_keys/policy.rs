//! The operator's policy for the API keys users create themselves (on the account page or its JSON API): which
//! resources and scopes a key may carry, how many keys a user may hold and how long a key may live.
//!
//! A policy is stored per user (`{prefix}keypolicy:user:{username}`) or as the default (`{prefix}keypolicy:default`);
//! a user's own policy replaces the default whole, so what a user may do is read in one place. With neither, the
//! built-in policy allows nothing: a user creates no key until the operator names the APIs they may have keys for.
//! Keys the operator creates (CLI, admin API) are not subject to it.

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use super::{ApiKeyRecord, NewApiKey};
use crate::store::names::KeyNames;
use crate::support::{dedup, syntax};

/// The number of keys a policy allows when the operator does not say.
pub const DEFAULT_MAX_KEYS: u32 = 10;

/// What the keys of a user may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// Resource URIs a key may be valid for. Empty: the user may create no key.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Scopes a key may grant.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Most keys the user may hold at once (expired keys count until they are revoked).
    #[serde(default)]
    pub max_keys: u32,
    /// Longest lifetime of a key, in seconds; `None` allows keys that never expire.
    #[serde(default)]
    pub max_lifetime_secs: Option<u64>,
    /// The rate tier every key of the user carries (the user cannot choose it); `None`: no tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

impl KeyPolicy {
    /// The policy of a user when the operator has set none: no key at all.
    pub fn closed() -> Self {
        Self {
            resources: Vec::new(),
            scopes: Vec::new(),
            max_keys: 0,
            max_lifetime_secs: None,
            tier: None,
        }
    }

    /// Whether the policy lets the user create any key.
    pub fn allows_keys(&self) -> bool {
        !self.resources.is_empty() && self.max_keys > 0
    }

    /// Checks a creation request against the policy; a request without an expiry gets the longest lifetime the
    /// policy allows, and every key gets the policy's tier. The number of keys is checked by the store, atomically
    /// with the write.
    pub fn admit(&self, mut new: NewApiKey) -> Result<NewApiKey, PolicyDenied> {
        if !self.allows_keys() {
            return Err(PolicyDenied::NoKeysAllowed);
        }
        self.check_rights(&new.resources, &new.scopes)?;
        new.expires_in_secs = match (new.expires_in_secs, self.max_lifetime_secs) {
            (requested, None) => requested,
            (None, Some(max)) => Some(max),
            (Some(requested), Some(max)) if requested <= max => Some(requested),
            (Some(_), Some(max)) => return Err(PolicyDenied::LifetimeTooLong { max_secs: max }),
        };
        new.tier = self.tier.clone();
        Ok(new)
    }

    /// Checks that an existing key may be given a new secret: its rights and its remaining lifetime are still
    /// within the policy (which may have been tightened since the key was created).
    pub fn admit_existing(&self, record: &ApiKeyRecord, now: u64) -> Result<(), PolicyDenied> {
        if !self.allows_keys() {
            return Err(PolicyDenied::NoKeysAllowed);
        }
        self.check_rights(&record.resources, &record.scopes)?;
        if let Some(max) = self.max_lifetime_secs {
            let remaining = record.expires_at.map(|at| at.saturating_sub(now));
            if remaining.is_none_or(|remaining| remaining > max) {
                return Err(PolicyDenied::LifetimeTooLong { max_secs: max });
            }
        }
        Ok(())
    }

    fn check_rights(&self, resources: &[String], scopes: &[String]) -> Result<(), PolicyDenied> {
        if let Some(bad) = resources.iter().find(|r| !self.resources.contains(r)) {
            return Err(PolicyDenied::ResourceNotAllowed(bad.clone()));
        }
        if let Some(bad) = scopes.iter().find(|s| !self.scopes.contains(s)) {
            return Err(PolicyDenied::ScopeNotAllowed(bad.clone()));
        }
        Ok(())
    }

    /// Validates a policy the operator wrote: resources are absolute URIs, scopes are scope tokens, a lifetime is
    /// at least a second and at most [`super::MAX_EXPIRES_IN_SECS`]. Repeated values are dropped.
    pub fn validated(self) -> Result<Self, PolicyError> {
        let resources = dedup(self.resources);
        if let Some(bad) = resources
            .iter()
            .find(|r| !syntax::is_absolute_uri_without_fragment(r))
        {
            return Err(PolicyError::InvalidResource(bad.clone()));
        }
        let scopes = dedup(self.scopes);
        if let Some(bad) = scopes.iter().find(|s| !syntax::is_scope_token(s)) {
            return Err(PolicyError::InvalidScope(bad.clone()));
        }
        if self
            .max_lifetime_secs
            .is_some_and(|secs| !(1..=super::MAX_EXPIRES_IN_SECS).contains(&secs))
        {
            return Err(PolicyError::InvalidLifetime);
        }
        if let Some(bad) = self
            .tier
            .as_ref()
            .filter(|tier| !keymesh_core::tier::is_tier(tier))
        {
            return Err(PolicyError::InvalidTier(bad.clone()));
        }
        Ok(Self {
            resources,
            scopes,
            ..self
        })
    }
}

/// Why the policy refuses a key. The messages are shown to the user as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyDenied {
    /// The operator allows this user no key (no resources, or a maximum of zero keys).
    #[error("you may not create API keys: ask your operator to allow you an API")]
    NoKeysAllowed,
    /// A resource the policy does not list.
    #[error("keys for {0:?} are not allowed for you")]
    ResourceNotAllowed(String),
    /// A scope the policy does not list.
    #[error("the scope {0:?} is not allowed for you")]
    ScopeNotAllowed(String),
    /// The user holds as many keys as the policy allows.
    #[error("you already have the most keys allowed ({max}): revoke one first")]
    TooManyKeys {
        /// The maximum.
        max: u32,
    },
    /// The requested lifetime (or, on regeneration, the key's remaining one) is longer than the policy allows.
    #[error("keys may live at most {max_secs} seconds")]
    LifetimeTooLong {
        /// The maximum, in seconds.
        max_secs: u64,
    },
}

/// Which policy applies to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The user's own.
    User,
    /// The default.
    Default,
    /// Neither is set: the closed built-in policy.
    BuiltIn,
}

/// Why a policy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A resource is not an absolute URI without fragment.
    #[error("invalid resource {0:?}: must be an absolute URI without fragment")]
    InvalidResource(String),
    /// A scope is not a valid scope token.
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    /// The maximum lifetime is zero or longer than ten years.
    #[error(
        "invalid maximum lifetime: must be between 1 second and {} seconds",
        super::MAX_EXPIRES_IN_SECS
    )]
    InvalidLifetime,
    /// The tier is not a tier name.
    #[error("invalid tier {0:?}: use 1 to {max} ASCII letters, digits, '-', '_' or '.'", max = keymesh_core::tier::MAX_TIER_LEN)]
    InvalidTier(String),
    /// The username is not a valid username.
    #[error("invalid username {0:?}")]
    InvalidUsername(String),
    /// The stored policy is not valid JSON of the expected shape.
    #[error("stored key policy is corrupt: {0}")]
    Corrupt(serde_json::Error),
    /// The policy could not be serialised.
    #[error("cannot encode key policy: {0}")]
    Encode(serde_json::Error),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Key policies in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    names: KeyNames,
}

impl PolicyStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// The policy that applies to `username`, and where it comes from.
    pub async fn effective<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: &str,
    ) -> Result<(KeyPolicy, PolicySource), PolicyError> {
        if !syntax::is_client_id(username) {
            return Err(PolicyError::InvalidUsername(username.to_owned()));
        }
        let (own, default): (Option<String>, Option<String>) = redis::pipe()
            .get(self.names.key_policy_of_user(username))
            .get(self.names.default_key_policy())
            .query_async(conn)
            .await?;
        Ok(match (own, default) {
            (Some(json), _) => (decode(&json)?, PolicySource::User),
            (None, Some(json)) => (decode(&json)?, PolicySource::Default),
            (None, None) => (KeyPolicy::closed(), PolicySource::BuiltIn),
        })
    }

    /// The policy stored for `username` (`Some`) or the default (`None`), if set.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: Option<&str>,
    ) -> Result<Option<KeyPolicy>, PolicyError> {
        let key = self.key(username)?;
        let json: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
        json.as_deref().map(decode).transpose()
    }

    /// Validates and stores the policy of `username` (`Some`) or the default (`None`); returns what was stored.
    pub async fn set<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: Option<&str>,
        policy: KeyPolicy,
    ) -> Result<KeyPolicy, PolicyError> {
        let key = self.key(username)?;
        let policy = policy.validated()?;
        let json = serde_json::to_string(&policy).map_err(PolicyError::Encode)?;
        redis::cmd("SET")
            .arg(key)
            .arg(json)
            .query_async::<()>(conn)
            .await?;
        Ok(policy)
    }

    /// Removes the policy of `username` (who then falls back to the default) or the default (`None`); returns
    /// whether there was one. Keys already created stay as they are.
    pub async fn clear<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: Option<&str>,
    ) -> Result<bool, PolicyError> {
        let key = self.key(username)?;
        let removed: u64 = redis::cmd("DEL").arg(key).query_async(conn).await?;
        Ok(removed > 0)
    }

    fn key(&self, username: Option<&str>) -> Result<String, PolicyError> {
        match username {
            Some(name) if !syntax::is_client_id(name) => {
                Err(PolicyError::InvalidUsername(name.to_owned()))
            }
            Some(name) => Ok(self.names.key_policy_of_user(name)),
            None => Ok(self.names.default_key_policy()),
        }
    }
}

fn decode(json: &str) -> Result<KeyPolicy, PolicyError> {
    serde_json::from_str(json).map_err(PolicyError::Corrupt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            resources: vec!["https://orders.test".into()],
            scopes: vec!["read".into()],
            max_keys: 3,
            max_lifetime_secs: Some(86_400),
            tier: Some("free".into()),
        }
    }

    fn request(resource: &str, scope: &str, expires: Option<u64>) -> NewApiKey {
        NewApiKey {
            owner: "alice".into(),
            label: "laptop".into(),
            resources: vec![resource.into()],
            scopes: vec![scope.into()],
            expires_in_secs: expires,
            tier: Some("chosen-by-the-user".into()),
        }
    }

    #[test]
    fn creation_requests_stay_within_the_policy() {
        let p = policy();
        let ok = p
            .admit(request("https://orders.test", "read", Some(3_600)))
            .unwrap();
        assert_eq!(ok.expires_in_secs, Some(3_600));
        assert_eq!(ok.tier.as_deref(), Some("free"), "the operator's tier");
        let defaulted = p
            .admit(request("https://orders.test", "read", None))
            .unwrap();
        assert_eq!(defaulted.expires_in_secs, Some(86_400), "the maximum");
        assert_eq!(
            p.admit(request("https://billing.test", "read", None)).err(),
            Some(PolicyDenied::ResourceNotAllowed(
                "https://billing.test".into()
            ))
        );
        assert_eq!(
            p.admit(request("https://orders.test", "write", None)).err(),
            Some(PolicyDenied::ScopeNotAllowed("write".into()))
        );
        assert_eq!(
            p.admit(request("https://orders.test", "read", Some(86_401)))
                .err(),
            Some(PolicyDenied::LifetimeTooLong { max_secs: 86_400 })
        );
        let open = KeyPolicy {
            max_lifetime_secs: None,
            ..policy()
        };
        assert_eq!(
            open.admit(request("https://orders.test", "read", None))
                .unwrap()
                .expires_in_secs,
            None
        );
        for closed in [
            KeyPolicy::closed(),
            KeyPolicy {
                max_keys: 0,
                ..policy()
            },
        ] {
            assert_eq!(
                closed
                    .admit(request("https://orders.test", "read", None))
                    .err(),
                Some(PolicyDenied::NoKeysAllowed)
            );
        }
    }

    #[test]
    fn regeneration_rechecks_rights_and_remaining_lifetime() {
        let record = ApiKeyRecord {
            id: "ak_x".into(),
            owner: "alice".into(),
            label: "l".into(),
            hash: "h".into(),
            prefix: "km_x".into(),
            resources: vec!["https://orders.test".into()],
            scopes: vec!["read".into()],
            created_at: 0,
            expires_at: Some(100_000),
            tier: None,
            disabled: false,
            previous: None,
        };
        let p = policy();
        assert_eq!(p.admit_existing(&record, 20_000), Ok(()));
        assert_eq!(
            p.admit_existing(&record, 10_000),
            Err(PolicyDenied::LifetimeTooLong { max_secs: 86_400 }),
            "the maximum was lowered after the key was created"
        );
        let forever = ApiKeyRecord {
            expires_at: None,
            ..record.clone()
        };
        assert!(p.admit_existing(&forever, 20_000).is_err());
        let narrowed = KeyPolicy {
            scopes: vec![],
            ..policy()
        };
        assert_eq!(
            narrowed.admit_existing(&record, 20_000),
            Err(PolicyDenied::ScopeNotAllowed("read".into()))
        );
    }

    #[test]
    fn operator_input_is_validated() {
        let bad_resource = KeyPolicy {
            resources: vec!["orders".into()],
            ..policy()
        };
        assert!(matches!(
            bad_resource.validated(),
            Err(PolicyError::InvalidResource(_))
        ));
        let bad_scope = KeyPolicy {
            scopes: vec!["a b".into()],
            ..policy()
        };
        assert!(matches!(
            bad_scope.validated(),
            Err(PolicyError::InvalidScope(_))
        ));
        let zero = KeyPolicy {
            max_lifetime_secs: Some(0),
            ..policy()
        };
        assert!(matches!(
            zero.validated(),
            Err(PolicyError::InvalidLifetime)
        ));
        let bad_tier = KeyPolicy {
            tier: Some("pro tier".into()),
            ..policy()
        };
        assert!(matches!(
            bad_tier.validated(),
            Err(PolicyError::InvalidTier(_))
        ));
        let repeated = KeyPolicy {
            scopes: vec!["read".into(), "read".into()],
            ..policy()
        };
        assert_eq!(repeated.validated().unwrap().scopes, vec!["read"]);
    }
}
