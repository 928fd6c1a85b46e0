//! OAuth clients: the stored record, the registration rules, and the Redis operations on client records.
//!
//! Client records are read from Redis on each token request (they are not part of the key bundle), so a client
//! registered by `keymesh client create` is usable at once by every running sidecar.

use std::fmt;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::names::KeyNames;
use crate::secret::{self, SecretError};
use crate::syntax;

/// A client as stored in Redis under `{prefix}client:{client_id}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client identifier.
    pub client_id: String,
    /// The hashed secret (see [`crate::secret`]); the plaintext is never stored.
    pub secret_hash: String,
    /// Resource indicators (RFC 8707) the client may request tokens for; they become the token's `aud`.
    pub resources: Vec<String>,
    /// Scopes the client may request.
    pub scopes: Vec<String>,
    /// When the client was registered (seconds since the Unix epoch).
    pub created_at: u64,
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs and debug output.
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A registration request, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// The client identifier.
    pub client_id: String,
    /// An operator-chosen secret; `None` generates a random one.
    pub secret: Option<String>,
    /// Allowed resource indicators (at least one).
    pub resources: Vec<String>,
    /// Allowed scopes (may be empty).
    pub scopes: Vec<String>,
    /// Replace an existing client with the same id instead of failing.
    pub force: bool,
}

/// A registered client with its plaintext secret: the only time the secret is available.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredClient {
    /// The client identifier.
    pub client_id: String,
    /// The plaintext secret.
    pub client_secret: String,
    /// Allowed resource indicators.
    pub resources: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
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
        let (client_secret, secret_hash) = match new.secret {
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
            secret_hash,
            resources,
            scopes,
            created_at: now,
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
            resources: record.resources,
            scopes: record.scopes,
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
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.names.client_pattern())
                .arg("COUNT")
                .arg(200)
                .query_async(conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
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

fn decode(client_id: &str, json: &str) -> Result<ClientRecord, ClientError> {
    serde_json::from_str(json).map_err(|source| ClientError::Corrupt {
        client_id: client_id.to_owned(),
        source,
    })
}

/// Removes repeated values, keeping the first occurrence's position.
pub(crate) fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}
