//! Revoked access tokens: the Redis markers, the Lua that writes them as bundle changes, and the full-load scan.
//!
//! Access tokens are self-contained JWTs checked inside the proxies, so revoking one means telling every proxy its
//! `jti`. A revocation is one change-log entry (`kind token_revoke`, `jti`, `exp`, see [`crate::store::commit`]) written
//! by the same script that sets the marker `{prefix}revoked:{jti}` (holding `exp`), so the mirrors deliver it in
//! the next bundle delta. The marker expires [`REVOCATION_GRACE_SECS`] after the token does: the filters accept a
//! token up to their `leeway_secs` (at most 300) past `exp`, and a proxy that starts later must still learn of
//! the revocation from the full bundle.

use std::sync::LazyLock;

use keymesh_core::bundle::RevokedTokenDto;
use redis::aio::ConnectionLike;

use crate::store::commit;
use crate::store::names::KeyNames;

/// How long after its `exp` a revoked token stays listed: the largest clock-skew leeway a filter may be given.
pub const REVOCATION_GRACE_SECS: u64 = 300;
/// Markers fetched per `MGET` during a full load.
const MGET_BATCH: usize = 500;

/// Lua functions for scripts built with [`commit::script`], which provides `begin_change` and `log_change`.
///
/// `revoke_jti` marks one token revoked and commits it as its own change (nothing if it is already marked or long
/// expired). `revoke_grant` marks a grant revoked (creating the marker if the grant does not exist yet, so a grant
/// created concurrently is refused) and revokes every access token recorded in its sorted set.
pub(crate) const REVOKE_LUA: &str = r"
local function revoke_jti(prefix, jti, exp, now, grace)
  local ttl = tonumber(exp) + tonumber(grace) - tonumber(now)
  if ttl <= 0 then return 0 end
  local key = prefix .. jti
  if redis.call('EXISTS', key) == 1 then return 0 end
  local version = begin_change()
  redis.call('SET', key, exp, 'EX', ttl)
  log_change(version, 'kind', 'token_revoke', 'jti', jti, 'exp', exp)
  return version
end
local function revoke_grant(grant_key, tokens_key, marker_ttl, prefix, now, grace)
  redis.call('HSET', grant_key, 'revoked', '1')
  if redis.call('TTL', grant_key) < 0 then redis.call('EXPIRE', grant_key, marker_ttl) end
  local entries = redis.call('ZRANGE', tokens_key, 0, -1, 'WITHSCORES')
  local revoked = 0
  for i = 1, #entries, 2 do
    if revoke_jti(prefix, entries[i], entries[i + 1], now, grace) > 0 then revoked = revoked + 1 end
  end
  redis.call('DEL', tokens_key)
  return revoked
end
";

/// `ARGV[3]` = marker prefix, `ARGV[4]` = jti, `ARGV[5]` = exp, `ARGV[6]` = now, `ARGV[7]` = grace. Returns the
/// version of the change, or 0 if nothing changed.
const REVOKE_TOKEN: &str = "return revoke_jti(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])";

static REVOKE_TOKEN_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| commit::script(&format!("{REVOKE_LUA}\n{REVOKE_TOKEN}")));

/// Revokes the access token `jti` (valid until `exp`); returns whether this call revoked it (`false` if it was
/// revoked already or expired more than [`REVOCATION_GRACE_SECS`] ago).
pub async fn revoke_access_token<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    jti: &str,
    exp: u64,
    now: u64,
) -> redis::RedisResult<bool> {
    let mut invocation = commit::invocation(&REVOKE_TOKEN_SCRIPT, names);
    invocation
        .arg(names.revoked_token(""))
        .arg(jti)
        .arg(exp)
        .arg(now)
        .arg(REVOCATION_GRACE_SECS);
    let version: u64 = invocation.invoke_async(conn).await?;
    Ok(version != 0)
}

/// Whether the access token `jti` has been revoked (and not yet forgotten).
pub async fn is_revoked<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    jti: &str,
) -> redis::RedisResult<bool> {
    redis::cmd("EXISTS")
        .arg(names.revoked_token(jti))
        .query_async(conn)
        .await
}

/// Every revoked token whose listing has not lapsed at `now` (a full `SCAN`: for the mirror's full load).
/// Markers that are not a number are logged and left out.
pub async fn scan_revoked<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    now: u64,
) -> redis::RedisResult<Vec<RevokedTokenDto>> {
    let cutoff = listing_cutoff(now);
    let mut tokens = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(names.revoked_token_pattern())
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        for keys in batch.chunks(MGET_BATCH) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(keys).query_async(conn).await?;
            for (key, value) in keys.iter().zip(values) {
                let (Some(jti), Some(value)) = (names.revoked_jti_of(key), value) else {
                    continue;
                };
                match value.parse::<i64>() {
                    Ok(exp) if exp > cutoff => tokens.push(RevokedTokenDto {
                        jti: jti.to_owned(),
                        exp,
                    }),
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!(%jti, "skipping revoked-token marker without a numeric exp")
                    }
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(tokens)
}

/// Revocations of tokens whose `exp` is at or before this are no longer listed at `now`.
pub fn listing_cutoff(now: u64) -> i64 {
    i64::try_from(now.saturating_sub(REVOCATION_GRACE_SECS)).unwrap_or(i64::MAX)
}
