//! A user's own API keys: what the account page and its JSON API do, under the operator's [`KeyPolicy`].
//!
//! Every operation takes the logged-in user and acts only on keys that user owns: a key of someone else answers
//! exactly as a key that does not exist ([`UserKeyError::NotFound`]), so ids cannot be probed. Creation and
//! regeneration are checked against the policy that applies to the user.

use redis::aio::ConnectionLike;

use super::policy::{KeyPolicy, PolicyDenied, PolicyError, PolicySource, PolicyStore};
use super::{ApiKeyError, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, Grace, IssuedApiKey, NewApiKey};
use crate::store::names::KeyNames;

/// A key a user asks for.
#[derive(Debug, Clone, Default)]
pub struct UserKeyRequest {
    /// The label.
    pub label: String,
    /// Resource URIs the key is to be valid for.
    pub resources: Vec<String>,
    /// Scopes the key is to grant.
    pub scopes: Vec<String>,
    /// Lifetime in seconds; `None` asks for the longest the policy allows.
    pub expires_in_secs: Option<u64>,
}

/// Why an operation on a user's own key failed.
#[derive(Debug, thiserror::Error)]
pub enum UserKeyError {
    /// The policy refuses it; the message is for the user.
    #[error("{0}")]
    Denied(#[from] PolicyDenied),
    /// The user has no key with this id (it does not exist, or it is someone else's).
    #[error("no such api key")]
    NotFound,
    /// The key store refused or failed.
    #[error(transparent)]
    Key(ApiKeyError),
    /// The policy could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl From<ApiKeyError> for UserKeyError {
    fn from(error: ApiKeyError) -> Self {
        match error {
            ApiKeyError::LimitReached(max) => Self::Denied(PolicyDenied::TooManyKeys { max }),
            other => Self::Key(other),
        }
    }
}

impl UserKeyError {
    /// Whether the user can fix the request (a bad label, a resource outside the policy…), as opposed to a
    /// failure of the server.
    pub fn is_invalid_request(&self) -> bool {
        match self {
            Self::Key(error) => error.is_invalid_request(),
            _ => false,
        }
    }
}

/// The self-service operations on API keys.
#[derive(Debug, Clone)]
pub struct UserKeys {
    keys: ApiKeyStore,
    policies: PolicyStore,
}

impl UserKeys {
    /// Operations on the keys and policies under `names`.
    pub fn new(names: KeyNames) -> Self {
        Self {
            keys: ApiKeyStore::new(names.clone()),
            policies: PolicyStore::new(names),
        }
    }

    /// The policy that applies to `user`.
    pub async fn policy<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
    ) -> Result<(KeyPolicy, PolicySource), UserKeyError> {
        Ok(self.policies.effective(conn, user).await?)
    }

    /// The user's keys as listings show them at `now` (state, last use, a secret in grace), oldest first.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        now: u64,
    ) -> Result<Vec<ApiKeyInfo>, UserKeyError> {
        Ok(self.keys.list_info(conn, user, now).await?)
    }

    /// The user's key with this id as listings show it at `now`.
    pub async fn info<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
        now: u64,
    ) -> Result<ApiKeyInfo, UserKeyError> {
        let record = self.get(conn, user, id).await?;
        let last_used = self.keys.last_used(conn, &[id]).await?.remove(id);
        Ok(ApiKeyInfo::new(record, now, last_used))
    }

    /// Creates a key for `user` within the policy; returns it with the secret (the only time it is available).
    pub async fn create<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        request: UserKeyRequest,
        now: u64,
    ) -> Result<IssuedApiKey, UserKeyError> {
        let (policy, _) = self.policies.effective(conn, user).await?;
        let new = policy.admit(NewApiKey {
            owner: user.to_owned(),
            label: request.label,
            resources: request.resources,
            scopes: request.scopes,
            expires_in_secs: request.expires_in_secs,
            tier: None,
        })?;
        Ok(self
            .keys
            .create_capped(conn, new, now, Some(policy.max_keys))
            .await?)
    }

    /// The user's key with this id.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
    ) -> Result<ApiKeyRecord, UserKeyError> {
        self.keys
            .get(conn, id)
            .await?
            .filter(|record| record.owner == user)
            .ok_or(UserKeyError::NotFound)
    }

    /// Revokes the user's key: it stops working everywhere and is deleted.
    pub async fn revoke<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
    ) -> Result<(), UserKeyError> {
        // The owner of a record never changes, so checking it before the revocation is enough.
        self.get(conn, user, id).await?;
        if !self.keys.revoke(conn, id).await? {
            return Err(UserKeyError::NotFound);
        }
        Ok(())
    }

    /// Disables the user's key: every proxy refuses it until it is enabled again.
    pub async fn disable<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
    ) -> Result<ApiKeyRecord, UserKeyError> {
        self.get(conn, user, id).await?;
        self.keys
            .disable(conn, id)
            .await?
            .ok_or(UserKeyError::NotFound)
    }

    /// Enables the user's disabled key. Enabling restores rights the operator granted before, so it is allowed
    /// whatever the policy says now; the key keeps its expiry.
    pub async fn enable<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
        now: u64,
    ) -> Result<ApiKeyRecord, UserKeyError> {
        self.get(conn, user, id).await?;
        self.keys
            .enable(conn, id, now)
            .await?
            .ok_or(UserKeyError::NotFound)
    }

    /// Gives the user's key a new secret, if the policy still allows the key as it is; the old secret keeps working
    /// for `grace_secs` (0 to [`super::MAX_GRACE_SECS`]).
    pub async fn regenerate<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        id: &str,
        grace_secs: u64,
        now: u64,
    ) -> Result<IssuedApiKey, UserKeyError> {
        let grace = Grace::from_secs(grace_secs)?;
        let record = self.get(conn, user, id).await?;
        let (policy, _) = self.policies.effective(conn, user).await?;
        policy.admit_existing(&record, now)?;
        self.keys
            .regenerate(conn, id, grace, now)
            .await?
            .ok_or(UserKeyError::NotFound)
    }
}
