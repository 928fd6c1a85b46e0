//! OAuth clients: the stored record, the registration rules, and the Redis operations on client records.
//!
//! Client records are read from Redis on each token request (they are not part of the key bundle), so a client
//! registered by `keymesh client create` is usable at once by every running sidecar.
//!
//! A client is confidential (it has a secret) or public (a native or browser app that cannot keep one; it
//! identifies itself by `client_id` alone and must use PKCE). Each may use only the grant types it was registered
//! for; the authorization code grant needs at least one registered redirect URI.

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::oauth::redirect_uri::{self, RedirectUriError};
use crate::store::names::KeyNames;
use crate::support::dedup;
use crate::support::secret::{self, SecretError};
use crate::support::syntax;

/// An OAuth grant type a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4: the client acts on its own behalf.
    ClientCredentials,
    /// RFC 6749 §4.1: a user logs in and consents at the authorization page.
    AuthorizationCode,
    /// RFC 6749 §6: new access tokens from a refresh token, without the user.
    RefreshToken,
}

impl GrantType {
    /// Every grant type, in the order metadata lists them.
    pub const ALL: [Self; 3] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|grant| grant.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown grant type {value:?}: use authorization_code, refresh_token or client_credentials"
                )
            })
    }
}

/// Records written before grant types existed were client-credentials clients.
fn legacy_grant_types() -> Vec<GrantType> {
    vec![GrantType::ClientCredentials]
}

/// A client as stored in Redis under `{prefix}client:{client_id}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client identifier.
    pub client_id: String,
    /// A name to show users on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The hashed secret (see [`crate::support::secret`]); the plaintext is never stored. Empty for public clients.
    #[serde(default)]
    pub secret_hash: String,
    /// A public client has no secret: it identifies itself by `client_id` and must use PKCE.
    #[serde(default)]
    pub public: bool,
    /// Resource indicators (RFC 8707) the client may request tokens for; they become the token's `aud`.
    pub resources: Vec<String>,
    /// Scopes the client may request.
    pub scopes: Vec<String>,
    /// Redirect URIs of the authorization code grant, compared as exact strings.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The grant types the client may use.
    #[serde(default = "legacy_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// When the client was registered (seconds since the Unix epoch).
    pub created_at: u64,
    /// Set when the client registered itself (RFC 7591) rather than being created by an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<crate::oauth::registration_record::Registration>,
    /// The operator-set rate tier, carried in the client's access tokens as the `keymesh_tier` claim and
    /// forwarded upstream by the filters as `x-keymesh-tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

impl ClientRecord {
    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The name to show users: the registered name, else the client id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.client_id)
    }
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs and debug output.
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("public", &self.public)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("created_at", &self.created_at)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// A registration request, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// The client identifier.
    pub client_id: String,
    /// A name to show users on the consent page (1 to 200 printable characters).
    pub name: Option<String>,
    /// An operator-chosen secret; `None` generates a random one (confidential clients).
    pub secret: Option<String>,
    /// A public client: no secret, PKCE required, no client credentials grant.
    pub public: bool,
    /// Allowed resource indicators (at least one).
    pub resources: Vec<String>,
    /// Allowed scopes (may be empty).
    pub scopes: Vec<String>,
    /// Redirect URIs for the authorization code grant.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types; empty means the default: `authorization_code` and `refresh_token` when redirect URIs
    /// are given, plus `client_credentials` for confidential clients.
    pub grant_types: Vec<GrantType>,
    /// Replace an existing client with the same id instead of failing.
    pub force: bool,
    /// The rate tier ([`keymesh_core::tier::is_tier`]); `None` has none.
    pub tier: Option<String>,
}

/// A registered client with its plaintext secret: the only time the secret is available.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredClient {
    /// The client identifier.
    pub client_id: String,
    /// The plaintext secret; empty (and left out of JSON) for public clients.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// Whether the client is public.
    pub public: bool,
    /// Allowed resource indicators.
    pub resources: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<GrantType>,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("public", &self.public)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .finish_non_exhaustive()
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client id is empty, too long or contains characters outside visible ASCII.
    #[error("invalid client id {0:?}: use 1 to {max} visible ASCII characters", max = syntax::MAX_CLIENT_ID_LEN)]
    InvalidClientId(String),
    /// A resource is not an absolute URI without fragment.
    #[error("invalid resource {0:?}: must be an absolute URI without fragment")]
    InvalidResource(String),
    /// No resource was given: tokens must always have an audience.
    #[error("at least one resource is required")]
    NoResources,
    /// A scope is not a valid RFC 6749 scope token.
    #[error("invalid scope {0:?}: scope tokens are printable ASCII without space, '\"' or '\\'")]
    InvalidScope(String),
    /// The operator-chosen secret is empty.
    #[error("client secret must not be empty")]
    EmptySecret,
    /// The display name is empty, too long or has control characters.
    #[error("invalid client name: use 1 to {max} printable characters", max = syntax::MAX_LABEL_CHARS)]
    InvalidName,
    /// A redirect URI cannot be registered.
    #[error("invalid redirect URI {uri:?}: {reason}")]
    InvalidRedirectUri {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        reason: RedirectUriError,
    },
    /// A public client was given a secret.
    #[error("a public client has no secret")]
    PublicWithSecret,
    /// A public client was allowed the client credentials grant, which needs a secret.
    #[error("a public client cannot use client_credentials")]
    PublicClientCredentials,
    /// The authorization code grant was allowed without any redirect URI.
    #[error("authorization_code needs at least one --redirect-uri")]
    NoRedirectUris,
    /// Refresh tokens were allowed without the authorization code grant that issues them.
    #[error("refresh_token needs authorization_code")]
    RefreshWithoutCode,
    /// The tier is not a tier name ([`keymesh_core::tier::is_tier`]).
    #[error("invalid tier {0:?}: use 1 to {max} ASCII letters, digits, '-', '_' or '.'", max = keymesh_core::tier::MAX_TIER_LEN)]
    InvalidTier(String),
    /// A client with this id exists and `force` was not set.
    #[error("client {0:?} already exists (use --force to replace it)")]
    AlreadyExists(String),
    /// Hashing the secret failed.
    #[error("cannot hash client secret: {0}")]
    Hash(#[from] SecretError),
    /// The stored record is not valid JSON of the expected shape.
    #[error("stored record of client {client_id:?} is corrupt: {source}")]
    Corrupt {
        /// The client.
        client_id: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The record could not be serialised.
    #[error("cannot encode client record: {0}")]
    Encode(serde_json::Error),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The background hashing task failed.
    #[error("hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Client records in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct ClientStore {
    names: KeyNames,
}

impl ClientStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Validates and stores a new client; returns it with its plaintext secret.
    pub async fn register<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        new: NewClient,
        now: u64,
    ) -> Result<RegisteredClient, ClientError> {
        if !syntax::is_client_id(&new.client_id) {
            return Err(ClientError::InvalidClientId(new.client_id));
        }
        let resources = dedup(new.resources);
        if resources.is_empty() {
            return Err(ClientError::NoResources);
        }
        if let Some(bad) = resources
            .iter()
            .find(|r| !syntax::is_absolute_uri_without_fragment(r))
        {
            return Err(ClientError::InvalidResource(bad.clone()));
        }
        let scopes = dedup(new.scopes);
        if let Some(bad) = scopes.iter().find(|s| !syntax::is_scope_token(s)) {
            return Err(ClientError::InvalidScope(bad.clone()));
        }
        if new
            .name
            .as_deref()
            .is_some_and(|name| !syntax::is_label(name))
        {
            return Err(ClientError::InvalidName);
        }
        if let Some(bad) = new
            .tier
            .as_ref()
            .filter(|tier| !keymesh_core::tier::is_tier(tier))
        {
            return Err(ClientError::InvalidTier(bad.clone()));
        }
        let redirect_uris = dedup(new.redirect_uris);
        for uri in &redirect_uris {
            redirect_uri::validate(uri).map_err(|reason| ClientError::InvalidRedirectUri {
                uri: uri.clone(),
                reason,
            })?;
        }
        let grant_types = grant_types(new.public, &redirect_uris, new.grant_types)?;
        let (client_secret, secret_hash) = match new.secret {
            Some(_) if new.public => return Err(ClientError::PublicWithSecret),
            None if new.public => (String::new(), String::new()),
            Some(chosen) if chosen.is_empty() => return Err(ClientError::EmptySecret),
            Some(chosen) => {
                let hash = tokio::task::spawn_blocking({
                    let chosen = chosen.clone();
                    move || secret::hash_chosen(&chosen)
                })
                .await??;
                (chosen, hash)
            }
            None => {
                let generated = secret::generate();
                let hash = secret::hash_generated(&generated);
                (generated, hash)
            }
        };
        let record = ClientRecord {
            client_id: new.client_id,
            name: new.name,
            secret_hash,
            public: new.public,
            resources,
            scopes,
            redirect_uris,
            grant_types,
            created_at: now,
            registration: None,
            tier: new.tier,
        };
        let json = serde_json::to_string(&record).map_err(ClientError::Encode)?;
        let mut set = redis::cmd("SET");
        set.arg(self.names.client(&record.client_id)).arg(json);
        if !new.force {
            set.arg("NX");
        }
        let stored: Option<String> = set.query_async(conn).await?;
        if stored.is_none() {
            return Err(ClientError::AlreadyExists(record.client_id));
        }
        Ok(RegisteredClient {
            client_id: record.client_id,
            client_secret,
            public: record.public,
            resources: record.resources,
            scopes: record.scopes,
            redirect_uris: record.redirect_uris,
            grant_types: record.grant_types,
        })
    }

    /// The client with this id, if registered.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, ClientError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.names.client(client_id))
            .query_async(conn)
            .await?;
        json.map(|json| decode(client_id, &json)).transpose()
    }

    /// Every registered client, sorted by id. Corrupt records are logged and left out.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<ClientRecord>, ClientError> {
        let keys = crate::store::scan::scan_keys(conn, &self.names.client_pattern()).await?;
        let mut clients = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(client_id) = self.names.client_id_of(&key) else {
                continue;
            };
            // A client deleted between SCAN and GET is simply not listed.
            match self.get(conn, client_id).await {
                Ok(Some(record)) => clients.push(record),
                Ok(None) => {}
                Err(ClientError::Corrupt { client_id, source }) => {
                    tracing::warn!(%client_id, error = %source, "skipping corrupt client record");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(clients)
    }

    /// Deletes a client; returns whether it existed.
    pub async fn delete<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client_id: &str,
    ) -> Result<bool, ClientError> {
        let removed: u64 = redis::cmd("DEL")
            .arg(self.names.client(client_id))
            .query_async(conn)
            .await?;
        Ok(removed > 0)
    }
}

/// The grant types to register: the requested ones, checked against the client's kind, or the default.
fn grant_types(
    public: bool,
    redirect_uris: &[String],
    requested: Vec<GrantType>,
) -> Result<Vec<GrantType>, ClientError> {
    let mut grants: Vec<GrantType> = Vec::new();
    for grant in requested {
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    if grants.is_empty() {
        if !redirect_uris.is_empty() || public {
            grants.extend([GrantType::AuthorizationCode, GrantType::RefreshToken]);
        }
        if !public {
            grants.push(GrantType::ClientCredentials);
        }
    }
    if public && grants.contains(&GrantType::ClientCredentials) {
        return Err(ClientError::PublicClientCredentials);
    }
    if grants.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(ClientError::NoRedirectUris);
    }
    if grants.contains(&GrantType::RefreshToken) && !grants.contains(&GrantType::AuthorizationCode)
    {
        return Err(ClientError::RefreshWithoutCode);
    }
    Ok(grants)
}

fn decode(client_id: &str, json: &str) -> Result<ClientRecord, ClientError> {
    serde_json::from_str(json).map_err(|source| ClientError::Corrupt {
        client_id: client_id.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn uris(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn default_grant_types_follow_the_kind_of_client() {
        use GrantType::*;
        assert_eq!(
            grant_types(false, &[], vec![]).unwrap(),
            [ClientCredentials]
        );
        let web = uris(&["https://app.example/cb"]);
        assert_eq!(
            grant_types(false, &web, vec![]).unwrap(),
            [AuthorizationCode, RefreshToken, ClientCredentials]
        );
        assert_eq!(
            grant_types(true, &web, vec![]).unwrap(),
            [AuthorizationCode, RefreshToken]
        );
        assert_eq!(
            grant_types(false, &web, vec![AuthorizationCode, AuthorizationCode]).unwrap(),
            [AuthorizationCode]
        );
    }

    #[test]
    fn inconsistent_grant_types_are_refused() {
        use GrantType::*;
        let web = uris(&["https://app.example/cb"]);
        assert!(matches!(
            grant_types(true, &web, vec![ClientCredentials]),
            Err(ClientError::PublicClientCredentials)
        ));
        assert!(matches!(
            grant_types(true, &[], vec![]),
            Err(ClientError::NoRedirectUris)
        ));
        assert!(matches!(
            grant_types(false, &[], vec![AuthorizationCode]),
            Err(ClientError::NoRedirectUris)
        ));
        assert!(matches!(
            grant_types(false, &web, vec![RefreshToken]),
            Err(ClientError::RefreshWithoutCode)
        ));
    }

    #[test]
    fn records_from_before_grant_types_are_client_credentials_clients() {
        let legacy = r#"{"client_id":"svc","secret_hash":"sha256$x","resources":["urn:a"],"scopes":[],"created_at":1}"#;
        let record: ClientRecord = serde_json::from_str(legacy).unwrap();
        assert_eq!(record.grant_types, [GrantType::ClientCredentials]);
        assert!(!record.public && record.redirect_uris.is_empty());
        assert_eq!(record.display_name(), "svc");
        assert_eq!(
            "refresh_token".parse::<GrantType>(),
            Ok(GrantType::RefreshToken)
        );
        assert!("password".parse::<GrantType>().is_err());
    }
}
