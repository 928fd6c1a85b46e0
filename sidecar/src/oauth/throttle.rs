//! Throttling of repeated failed authentications, per source: a client's secret at the token, revocation and
//! introspection endpoints, and a user's password at the login page.
//!
//! Failures are counted in Redis, so every replica shares the count: `INCR` on each failure, with the window
//! starting at the first (`EXPIRE … NX`), under two counters:
//!
//! - **per principal and source** (client or user, and the source address: see
//!   [`crate::support::source_address`]): after [`PER_SOURCE`] failures, every attempt from that source, right or
//!   wrong, is refused until the window ends. An attacker locks out only their own address; the client or user
//!   asking from elsewhere is not affected.
//! - **per principal, all sources** (the ceiling): once [`CEILING`] failures are counted from all sources, a
//!   source that has failed at least once in its window is refused as well. That bounds guessing from many
//!   addresses to one try per address per window, while a source that has not failed, the legitimate client's,
//!   keeps working: the ceiling is not a lock-out tool either.

use redis::aio::ConnectionLike;

/// A number of failures allowed in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures counted before attempts are refused.
    pub max_failures: u64,
    /// Length of the window, from the first failure, in seconds.
    pub window_secs: u64,
}

/// Failures allowed per principal and source.
pub const PER_SOURCE: Limit = Limit {
    max_failures: 10,
    window_secs: 60,
};

/// Failures per principal from all sources above which a source that has failed is refused.
pub const CEILING: Limit = Limit {
    max_failures: 200,
    window_secs: 60,
};

/// The two counters one attempt is throttled under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Failures of this principal from this source.
    pub per_source: String,
    /// Failures of this principal from all sources.
    pub all_sources: String,
}

/// Whether attempts counted under `counters` are refused now; `Some(seconds until the window ends)` if so.
pub async fn blocked<C: ConnectionLike + Send>(
    conn: &mut C,
    counters: &Counters,
) -> redis::RedisResult<Option<u64>> {
    let (mine, mine_ttl, all, all_ttl): (Option<u64>, i64, Option<u64>, i64) = redis::pipe()
        .get(&counters.per_source)
        .ttl(&counters.per_source)
        .get(&counters.all_sources)
        .ttl(&counters.all_sources)
        .query_async(conn)
        .await?;
    let mine = mine.unwrap_or(0);
    if mine >= PER_SOURCE.max_failures {
        return Ok(Some(remaining(mine_ttl, PER_SOURCE)));
    }
    if mine > 0 && all.unwrap_or(0) >= CEILING.max_failures {
        return Ok(Some(
            remaining(mine_ttl, PER_SOURCE).min(remaining(all_ttl, CEILING)),
        ));
    }
    Ok(None)
}

/// A counter without expiry cannot come from [`record_failure`]; it counts as a full window.
fn remaining(ttl: i64, limit: Limit) -> u64 {
    u64::try_from(ttl)
        .ok()
        .filter(|ttl| *ttl > 0)
        .unwrap_or(limit.window_secs)
}

/// Counts one failure under both counters.
pub async fn record_failure<C: ConnectionLike + Send>(
    conn: &mut C,
    counters: &Counters,
) -> redis::RedisResult<()> {
    redis::pipe()
        .atomic()
        .incr(&counters.per_source, 1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&counters.per_source)
        .arg(PER_SOURCE.window_secs)
        .arg("NX")
        .ignore()
        .incr(&counters.all_sources, 1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&counters.all_sources)
        .arg(CEILING.window_secs)
        .arg("NX")
        .ignore()
        .query_async(conn)
        .await
}
