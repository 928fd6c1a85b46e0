//! Users who log in at the authorization page: the stored record, the password rules, and the Redis operations.
//!
//! A user is stored under `{prefix}user:{username}` with an Argon2id hash of the password (see
//! [`crate::support::secret::hash_chosen`]); the plaintext is never stored or logged. Users are created with
//! `keymesh user create`.

use std::fmt;
use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::store::names::KeyNames;
use crate::support::argon2_slots::{Argon2Slots, VerifyError};
use crate::support::secret::{self, SecretError};
use crate::support::syntax;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, so a login form cannot make Argon2 hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A user as stored in Redis.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The login name; also the `sub` of the tokens issued for the user.
    pub username: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// When the user was created (seconds since the Unix epoch).
    pub created_at: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs and debug output.
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A request to create a user, before validation.
#[derive(Clone, Default)]
pub struct NewUser {
    /// The login name: 1 to 128 visible ASCII characters, like a client id.
    pub username: String,
    /// The password (at least [`MIN_PASSWORD_CHARS`] characters).
    pub password: String,
    /// Replace an existing user with the same name instead of failing.
    pub force: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The username is empty, too long or contains characters outside visible ASCII.
    #[error("invalid username {0:?}: use 1 to {max} visible ASCII characters", max = syntax::MAX_CLIENT_ID_LEN)]
    InvalidUsername(String),
    /// The password is too short or too long.
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes")]
    BadPassword,
    /// A user with this name exists and `force` was not set.
    #[error("user {0:?} already exists (use --force to replace it)")]
    AlreadyExists(String),
    /// Hashing the password failed.
    #[error("cannot hash password: {0}")]
    Hash(#[from] SecretError),
    /// The stored record is not valid JSON of the expected shape.
    #[error("stored record of user {username:?} is corrupt: {source}")]
    Corrupt {
        /// The user.
        username: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The record could not be serialised.
    #[error("cannot encode user record: {0}")]
    Encode(serde_json::Error),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The background hashing task failed.
    #[error("hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No Argon2 slot came free in time: the caller answers "try again later".
    #[error("{0}")]
    Verify(#[from] VerifyError),
}

/// A hash no password matches, verified for unknown users so that a login takes as long whether or not the user
/// exists. `None` if hashing failed (then unknown users answer faster; logged once).
static DECOY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    secret::hash_chosen(&crate::oauth::random_token(32))
        .map_err(|error| tracing::warn!(%error, "cannot prepare the decoy password hash"))
        .ok()
});

/// User records in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct UserStore {
    names: KeyNames,
}

impl UserStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Validates and stores a new user.
    pub async fn create<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        new: NewUser,
        now: u64,
    ) -> Result<UserRecord, UserError> {
        if !syntax::is_client_id(&new.username) {
            return Err(UserError::InvalidUsername(new.username));
        }
        if new.password.chars().count() < MIN_PASSWORD_CHARS
            || new.password.len() > MAX_PASSWORD_BYTES
        {
            return Err(UserError::BadPassword);
        }
        let password = new.password;
        let password_hash =
            tokio::task::spawn_blocking(move || secret::hash_chosen(&password)).await??;
        let record = UserRecord {
            username: new.username,
            password_hash,
            created_at: now,
        };
        let json = serde_json::to_string(&record).map_err(UserError::Encode)?;
        let mut set = redis::cmd("SET");
        set.arg(self.names.user(&record.username)).arg(json);
        if !new.force {
            set.arg("NX");
        }
        let stored: Option<String> = set.query_async(conn).await?;
        if stored.is_none() {
            return Err(UserError::AlreadyExists(record.username));
        }
        Ok(record)
    }

    /// The user with this name, if any.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: &str,
    ) -> Result<Option<UserRecord>, UserError> {
        if !syntax::is_client_id(username) {
            return Ok(None);
        }
        let json: Option<String> = redis::cmd("GET")
            .arg(self.names.user(username))
            .query_async(conn)
            .await?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|source| UserError::Corrupt {
                username: username.to_owned(),
                source,
            })
        })
        .transpose()
    }

    /// The user if `password` is theirs. Unknown users cost the same Argon2 work as known ones.
    pub async fn check_password<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: &str,
        password: &str,
        slots: &Argon2Slots,
    ) -> Result<Option<UserRecord>, UserError> {
        let user = if password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.get(conn, username).await?
        };
        let stored = user.as_ref().map(|user| user.password_hash.clone());
        let password = password.to_owned();
        // Every check is Argon2 (the decoy too), so every check takes a slot; the task keeps it until the hash is
        // done, even if the request is dropped meanwhile.
        let permit = slots.acquire().await?;
        let matches = tokio::task::spawn_blocking(move || {
            // The decoy is hashed on first use, off the async workers like every Argon2 call.
            let matches = match stored.or_else(|| DECOY_HASH.clone()) {
                Some(stored) => secret::verify(&password, &stored),
                None => false,
            };
            drop(permit);
            matches
        })
        .await?;
        Ok(user.filter(|_| matches))
    }

    /// Every user, sorted by name. Corrupt records are logged and left out.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<UserRecord>, UserError> {
        let keys = crate::store::scan::scan_keys(conn, &self.names.user_pattern()).await?;
        let mut users = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(username) = self.names.username_of(&key) else {
                continue;
            };
            match self.get(conn, username).await {
                Ok(Some(user)) => users.push(user),
                Ok(None) => {}
                Err(UserError::Corrupt { username, source }) => {
                    tracing::warn!(%username, error = %source, "skipping corrupt user record");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(users)
    }

    /// Deletes a user; returns whether they existed. Tokens already issued for the user stay valid until they
    /// expire or are revoked.
    pub async fn delete<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        username: &str,
    ) -> Result<bool, UserError> {
        let removed: u64 = redis::cmd("DEL")
            .arg(self.names.user(username))
            .query_async(conn)
            .await?;
        Ok(removed > 0)
    }
}
