//! State of the authorization page: login sessions and authorization requests waiting for the user.
//!
//! A login session is identified by an opaque cookie (256 random bits); Redis keeps it as
//! `{prefix}session:{sha256(cookie)}` with the session's CSRF token and, once the user has logged in, who they
//! are. A validated authorization request is parked as `{prefix}authreq:{id}` while the user logs in and
//! consents; the forms carry only its id, bound to the session that created it, so nothing the user's browser
//! sends back can change what the client asked for.

use std::fmt;

use redis::aio::ConnectionLike;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{digest, random_token, SECRET_BYTES};
use crate::store::names::KeyNames;

/// How long a login session lasts after it starts (or after the user logs in).
pub const SESSION_TTL_SECS: u64 = 3_600;
/// How long a user has to log in and consent.
pub const PENDING_TTL_SECS: u64 = 600;

/// A login session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSession {
    /// The token every form of this session must carry.
    pub csrf: String,
    /// The logged-in user, if any.
    pub subject: Option<String>,
}

impl fmt::Debug for LoginSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSession")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A validated authorization request waiting for the user's login and consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The client.
    pub client_id: String,
    /// Where the answer goes: a registered redirect URI.
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (the token request must then repeat it).
    pub redirect_uri_given: bool,
    /// The client's `state`, returned untouched.
    pub state: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The resources (APIs) asked for.
    pub resources: Vec<String>,
    /// The PKCE `S256` challenge, if any.
    pub code_challenge: Option<String>,
    /// The digest of the session the request belongs to.
    pub session: String,
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A record could not be serialised.
    #[error("cannot encode session state: {0}")]
    Encode(serde_json::Error),
    /// A stored record is not valid JSON of the expected shape.
    #[error("stored session state is corrupt: {0}")]
    Corrupt(serde_json::Error),
}

/// Login sessions and pending authorization requests in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct SessionStore {
    names: KeyNames,
}

impl SessionStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Starts a session, logged in as `subject` if given; returns the cookie value and the session.
    pub async fn start<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        subject: Option<&str>,
    ) -> Result<(String, LoginSession), SessionError> {
        let id = random_token(SECRET_BYTES);
        let session = LoginSession {
            csrf: random_token(SECRET_BYTES),
            subject: subject.map(str::to_owned),
        };
        self.put(
            conn,
            &self.names.login_session(&digest(&id)),
            &session,
            SESSION_TTL_SECS,
        )
        .await?;
        Ok((id, session))
    }

    /// The session with this cookie value, if it exists.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<LoginSession>, SessionError> {
        self.read(conn, "GET", &self.names.login_session(&digest(id)))
            .await
    }

    /// Ends a session.
    pub async fn end<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<(), SessionError> {
        redis::cmd("DEL")
            .arg(self.names.login_session(&digest(id)))
            .query_async::<()>(conn)
            .await?;
        Ok(())
    }

    /// Parks a request; returns its id.
    pub async fn park<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        request: &PendingAuthorization,
    ) -> Result<String, SessionError> {
        let id = random_token(SECRET_BYTES);
        self.put(
            conn,
            &self.names.pending_authorization(&id),
            request,
            PENDING_TTL_SECS,
        )
        .await?;
        Ok(id)
    }

    /// The parked request with this id, if it has not expired or been answered.
    pub async fn pending<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<PendingAuthorization>, SessionError> {
        self.read(conn, "GET", &self.names.pending_authorization(id))
            .await
    }

    /// Moves a parked request to another session (after login, which starts a new one).
    pub async fn rebind<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
        request: &PendingAuthorization,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(request).map_err(SessionError::Encode)?;
        redis::cmd("SET")
            .arg(self.names.pending_authorization(id))
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async::<()>(conn)
            .await?;
        Ok(())
    }

    /// Removes and returns a parked request: each is answered once.
    pub async fn take<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<PendingAuthorization>, SessionError> {
        self.read(conn, "GETDEL", &self.names.pending_authorization(id))
            .await
    }

    async fn put<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        key: &str,
        value: &impl Serialize,
        ttl: u64,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(value).map_err(SessionError::Encode)?;
        redis::cmd("SET")
            .arg(key)
            .arg(json)
            .arg("EX")
            .arg(ttl)
            .query_async::<()>(conn)
            .await?;
        Ok(())
    }

    async fn read<C: ConnectionLike + Send, T: DeserializeOwned>(
        &self,
        conn: &mut C,
        command: &str,
        key: &str,
    ) -> Result<Option<T>, SessionError> {
        let json: Option<String> = redis::cmd(command).arg(key).query_async(conn).await?;
        json.map(|json| serde_json::from_str(&json).map_err(SessionError::Corrupt))
            .transpose()
    }
}

/// The digest a [`PendingAuthorization`] records for the session with this cookie value.
pub fn session_digest(id: &str) -> String {
    digest(id)
}
