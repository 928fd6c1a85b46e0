//! Throttling of repeated failed authentications, per client (token, revocation and introspection endpoints) and
//! per user (the login page).
//!
//! Failures are counted in Redis, so every replica shares the count: `INCR` on each failure, with the window
//! starting at the first (`EXPIRE … NX`). Once [`MAX_FAILURES`] are counted, every attempt, right or wrong, is
//! refused until the window ends. An attacker can therefore lock a client out for a minute at a time, but cannot
//! guess its secret or a user's password at more than ten tries a minute.

use redis::aio::ConnectionLike;

/// Failures allowed per window.
pub const MAX_FAILURES: u64 = 10;
/// Length of the window, from the first failure, in seconds.
pub const WINDOW_SECS: u64 = 60;

/// Whether attempts under `key` are refused now; `Some(seconds until the window ends)` if so.
pub async fn blocked<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> redis::RedisResult<Option<u64>> {
    let (count, ttl): (Option<u64>, i64) =
        redis::pipe().get(key).ttl(key).query_async(conn).await?;
    if count.unwrap_or(0) < MAX_FAILURES {
        return Ok(None);
    }
    // A counter without expiry cannot come from `record_failure`; treat it as a full window.
    Ok(Some(
        u64::try_from(ttl)
            .ok()
            .filter(|ttl| *ttl > 0)
            .unwrap_or(WINDOW_SECS),
    ))
}

/// Counts one failure under `key`.
pub async fn record_failure<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> redis::RedisResult<()> {
    redis::pipe()
        .atomic()
        .incr(key, 1)
        .ignore()
        .cmd("EXPIRE")
        .arg(key)
        .arg(WINDOW_SECS)
        .arg("NX")
        .ignore()
        .query_async(conn)
        .await
}
