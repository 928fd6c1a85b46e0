//! Client authentication for the token, revocation and introspection endpoints.
//!
//! Confidential clients present their secret (HTTP Basic or body, never both), checked in constant time; public
//! clients present `client_id` alone. Failed secrets are counted per client and source address in Redis, and a
//! source with too many recent failures for a client is refused with 429 for the rest of the window (see
//! [`crate::oauth::throttle`]); the client asking from elsewhere is not.

use crate::http::oauth::error::OAuthError;
use crate::http::oauth::source::Source;
use crate::http::oauth::token_request::Credentials;
use crate::http::state::AppState;
use crate::oauth::clients::{ClientError, ClientRecord};
use crate::oauth::throttle;
use crate::store::connection::RedisConnection;
use crate::support::argon2_slots::VerifyError;

/// The request path's Redis connection, or 503.
pub(crate) async fn redis(state: &AppState) -> Result<RedisConnection, OAuthError> {
    state.redis().await.map_err(|error| {
        tracing::warn!(%error, "cannot reach redis");
        OAuthError::Unavailable
    })
}

/// Maps a Redis failure on the request path to 503.
pub(crate) fn unavailable(error: impl std::fmt::Display) -> OAuthError {
    tracing::warn!(%error, "redis operation failed");
    OAuthError::Unavailable
}

/// Looks the client up and checks its credentials: a public client by `client_id` alone, a confidential one by
/// its secret. Failures are counted under the client and `source`.
pub(crate) async fn authenticate(
    state: &AppState,
    source: &Source,
    credentials: Credentials,
) -> Result<ClientRecord, OAuthError> {
    let mut conn = redis(state).await?;
    let client = match state.clients().get(&mut conn, &credentials.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            tracing::info!(client_id = %credentials.client_id, method = ?credentials.method, "unknown client");
            return Err(OAuthError::InvalidClient);
        }
        Err(ClientError::Redis(error)) => return Err(unavailable(error)),
        Err(error) => {
            tracing::error!(%error, "cannot use client record");
            return Err(OAuthError::ServerError);
        }
    };
    let presented = match (client.public, credentials.secret) {
        (true, None) => return Ok(client),
        (false, Some(secret)) => secret,
        (public, _) => {
            tracing::info!(client_id = %client.client_id, public, method = ?credentials.method,
                "client used the wrong kind of authentication");
            return Err(OAuthError::InvalidClient);
        }
    };
    let failures = throttle::Counters {
        per_source: state
            .names()
            .client_auth_failures_from(&client.client_id, &source.0),
        all_sources: state.names().client_auth_failures(&client.client_id),
    };
    if let Some(retry_after) = throttle::blocked(&mut conn, &failures)
        .await
        .map_err(unavailable)?
    {
        tracing::warn!(client_id = %client.client_id, source = %source.0, retry_after,
            "client authentication throttled");
        return Err(OAuthError::Throttled(retry_after));
    }
    // Argon2 takes tens of milliseconds of CPU and about 19 MiB: off the async workers, a few at a time.
    let matches = state
        .argon2_slots()
        .verify(presented, client.secret_hash.clone())
        .await
        .map_err(|error| match error {
            VerifyError::Busy => {
                tracing::warn!(client_id = %client.client_id, "client secret not checked: every argon2 slot is busy");
                OAuthError::Unavailable
            }
            VerifyError::Task(error) => {
                tracing::error!(%error, "secret verification task failed");
                OAuthError::ServerError
            }
        })?;
    if !matches {
        tracing::info!(client_id = %client.client_id, source = %source.0, method = ?credentials.method,
            "wrong client secret");
        throttle::record_failure(&mut conn, &failures)
            .await
            .map_err(unavailable)?;
        return Err(OAuthError::InvalidClient);
    }
    Ok(client)
}
