//! A user's login with a password, as the authorization page and the account page do it: throttled per user and
//! source ([`super::throttle`]), verified with Argon2 under the server's cap on concurrent verifications.

use redis::aio::ConnectionLike;

use super::throttle;
use super::users::{UserError, UserRecord, UserStore};
use crate::store::names::KeyNames;
use crate::support::argon2_slots::Argon2Slots;
use crate::support::syntax;

/// What a login attempt came to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The password is the user's.
    LoggedIn(UserRecord),
    /// Unknown user or wrong password (counted as a failure).
    Refused,
    /// Too many recent failures from this source: refused without checking, for this many seconds.
    Throttled(u64),
}

/// Checks `username`'s `password` for a request from `source` (see [`crate::support::source_address`]).
pub async fn log_in<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    slots: &Argon2Slots,
    username: &str,
    password: &str,
    source: &str,
) -> Result<LoginOutcome, UserError> {
    let failures = throttle::Counters {
        per_source: names.login_failures_from(username, source),
        all_sources: names.login_failures(username),
    };
    if let Some(secs) = throttle::blocked(conn, &failures).await? {
        tracing::warn!(%username, %source, "login throttled");
        return Ok(LoginOutcome::Throttled(secs));
    }
    let user = UserStore::new(names.clone())
        .check_password(conn, username, password, slots)
        .await?;
    match user {
        Some(user) => Ok(LoginOutcome::LoggedIn(user)),
        None => {
            // Names that cannot be users are not counted: they would only fill Redis with counters.
            if syntax::is_client_id(username) {
                throttle::record_failure(conn, &failures).await?;
            }
            Ok(LoginOutcome::Refused)
        }
    }
}
