//! Grants: what a user approved for a client, and the family of tokens issued from it.
//!
//! Redeeming an authorization code creates the grant `{prefix}grant:{id}`, a hash with the [`GrantRecord`] in
//! `data`, the SHA-256 of the current refresh token in `refresh`, and `revoked` once revoked. Every access token
//! issued from the grant is recorded in the sorted set `{prefix}grant:{id}:tokens` (`jti` scored by `exp`), so
//! revoking the grant revokes them all (see [`crate::oauth::revocation`]). Refresh tokens are opaque, 256 random bits,
//! stored as `{prefix}refresh:{sha256(token)}` → [`RefreshRecord`] until the grant expires.
//!
//! Refresh tokens rotate on every use: the grant's `refresh` moves to the new token, and the old one stays known
//! but no longer current. Presenting a token that is known but not current means a copy is in the wrong hands
//! (RFC 9700 §4.14.2), so the whole grant is revoked. Each step is one Lua script, so two concurrent refreshes
//! with the same token cannot both succeed.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use super::digest;
use crate::oauth::revocation::{REVOCATION_GRACE_SECS, REVOKE_LUA};
use crate::store::commit;
use crate::store::names::KeyNames;

/// How long a revoked grant that was never created is remembered (so a creation racing its revocation fails).
const REVOKED_GRANT_MEMORY_SECS: u64 = 86_400;
/// Longest access token lifetime ([`crate::config`] allows at most a day): grant records outlive the grant by this,
/// so tokens issued near its end can still be revoked with it.
const MAX_ACCESS_TOKEN_SECS: u64 = 86_400;

/// What a user approved for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant's id.
    pub grant_id: String,
    /// The client it was approved for.
    pub client_id: String,
    /// The user who approved it.
    pub subject: String,
    /// The approved scopes: refreshed access tokens may carry fewer, never more.
    pub scopes: Vec<String>,
    /// The approved resources: refreshed access tokens may be for fewer, never more.
    pub resources: Vec<String>,
    /// When the code was redeemed (seconds since the Unix epoch).
    pub created_at: u64,
    /// When its refresh tokens stop working.
    pub expires_at: u64,
}

/// A refresh token as stored: the grant and client it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The grant.
    pub grant_id: String,
    /// The client the token was issued to.
    pub client_id: String,
}

/// A refresh token as found: its record and the state of its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// The token's record.
    pub record: RefreshRecord,
    /// The grant, unless it is gone.
    pub grant: Option<GrantRecord>,
    /// Whether the token is the grant's current one (a rotated token is not).
    pub current: bool,
    /// Whether the grant is revoked.
    pub revoked: bool,
}

impl RefreshState {
    /// Whether the token can be used (or introspected as active) at `now` by `client_id`: current, for that
    /// client, and from a live grant.
    pub fn is_usable(&self, client_id: &str, now: u64) -> bool {
        self.record.client_id == client_id
            && self.current
            && !self.revoked
            && self
                .grant
                .as_ref()
                .is_some_and(|grant| now < grant.expires_at)
    }
}

/// An access token to record under a grant.
#[derive(Debug, Clone, Copy)]
pub struct AccessTokenId<'a> {
    /// The token's `jti`.
    pub jti: &'a str,
    /// The token's `exp`.
    pub exp: u64,
}

/// The outcome of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is retired, the new one is current and the access token is recorded.
    Rotated,
    /// The old token had been rotated already: the grant and its access tokens are now revoked.
    Reused,
    /// The grant is revoked (or gone).
    Revoked,
}

/// Why a grant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A record could not be serialised.
    #[error("cannot encode grant: {0}")]
    Encode(serde_json::Error),
    /// A stored record is not valid JSON of the expected shape.
    #[error("stored grant or refresh token is corrupt: {0}")]
    Corrupt(serde_json::Error),
    /// The script answered something unexpected.
    #[error("unexpected answer from the rotation script: {0:?}")]
    Unexpected(String),
}

/// `KEYS[1]` = grant, `KEYS[2]` = its tokens, `KEYS[3]` = the refresh token; `ARGV[1]` = record JSON, `ARGV[2]` =
/// refresh digest ('' for none), `ARGV[3]` = refresh record JSON, `ARGV[4]` = TTL, `ARGV[5]` = jti, `ARGV[6]` =
/// exp. Returns 1, or 0 if the grant exists already (it was revoked by a replay of its code).
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'refresh', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
return 1
";

/// `KEYS[3]` = old refresh token, `KEYS[4]` = grant, `KEYS[5]` = its tokens, `KEYS[6]` = new refresh token;
/// `ARGV[3]` = old digest, `ARGV[4]` = new digest, `ARGV[5]` = new record JSON, `ARGV[6]` = jti, `ARGV[7]` = exp,
/// `ARGV[8]` = now, `ARGV[9]` = revoked-token marker prefix, `ARGV[10]` = grace.
const ROTATE: &str = r"
local ttl = redis.call('TTL', KEYS[4])
if redis.call('EXISTS', KEYS[3]) == 0 or ttl <= 0 then return 'revoked' end
if redis.call('HGET', KEYS[4], 'revoked') == '1' then return 'revoked' end
if redis.call('HGET', KEYS[4], 'refresh') ~= ARGV[3] then
  revoke_grant(KEYS[4], KEYS[5], ttl, ARGV[9], ARGV[8], ARGV[10])
  return 'reused'
end
redis.call('HSET', KEYS[4], 'refresh', ARGV[4])
redis.call('SET', KEYS[6], ARGV[5], 'EX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (tonumber(ARGV[8]) - tonumber(ARGV[10])))
redis.call('ZADD', KEYS[5], ARGV[7], ARGV[6])
redis.call('EXPIRE', KEYS[5], ttl)
return 'rotated'
";

/// `KEYS[3]` = grant, `KEYS[4]` = its tokens; `ARGV[3]` = TTL of the marker if the grant does not exist, `ARGV[4]` =
/// revoked-token marker prefix, `ARGV[5]` = now, `ARGV[6]` = grace. Returns how many access tokens were revoked.
const REVOKE: &str = "return revoke_grant(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5], ARGV[6])";

static CREATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CREATE));
static ROTATE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| commit::script(&format!("{REVOKE_LUA}\n{ROTATE}")));
static REVOKE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| commit::script(&format!("{REVOKE_LUA}\n{REVOKE}")));

/// Grants and refresh tokens in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct GrantStore {
    names: KeyNames,
}

impl GrantStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Creates `grant` with its first access token and, if given, its first refresh token. Returns `false` if the
    /// grant was revoked before it could be created (its code was replayed meanwhile): then nothing is stored and
    /// the tokens must not be handed out.
    pub async fn create<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        grant: &GrantRecord,
        refresh_token: Option<&str>,
        access: AccessTokenId<'_>,
        now: u64,
    ) -> Result<bool, GrantError> {
        let refresh_digest = refresh_token.map(digest).unwrap_or_default();
        let refresh = RefreshRecord {
            grant_id: grant.grant_id.clone(),
            client_id: grant.client_id.clone(),
        };
        let created: u64 = CREATE_SCRIPT
            .key(self.names.grant(&grant.grant_id))
            .key(self.names.grant_tokens(&grant.grant_id))
            .key(self.names.refresh_token(&refresh_digest))
            .arg(serde_json::to_string(grant).map_err(GrantError::Encode)?)
            .arg(&refresh_digest)
            .arg(serde_json::to_string(&refresh).map_err(GrantError::Encode)?)
            .arg(storage_ttl(grant.expires_at, now))
            .arg(access.jti)
            .arg(access.exp)
            .invoke_async(conn)
            .await?;
        Ok(created == 1)
    }

    /// The refresh token's record and its grant's state, if the token is known.
    pub async fn find_refresh<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        refresh_token: &str,
    ) -> Result<Option<RefreshState>, GrantError> {
        let token_digest = digest(refresh_token);
        let json: Option<String> = redis::cmd("GET")
            .arg(self.names.refresh_token(&token_digest))
            .query_async(conn)
            .await?;
        let Some(json) = json else {
            return Ok(None);
        };
        let record: RefreshRecord = serde_json::from_str(&json).map_err(GrantError::Corrupt)?;
        let (data, current, revoked): (Option<String>, Option<String>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.names.grant(&record.grant_id))
                .arg("data")
                .arg("refresh")
                .arg("revoked")
                .query_async(conn)
                .await?;
        let grant = data
            .map(|data| serde_json::from_str::<GrantRecord>(&data))
            .transpose()
            .map_err(GrantError::Corrupt)?;
        Ok(Some(RefreshState {
            record,
            grant,
            current: current.as_deref() == Some(token_digest.as_str()),
            revoked: revoked.as_deref() == Some("1"),
        }))
    }

    /// Replaces `old` with `new` as the grant's refresh token and records the access token issued with it. If
    /// `old` is not the current token, the grant is revoked instead ([`Rotation::Reused`]).
    pub async fn rotate<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        grant_id: &str,
        client_id: &str,
        tokens: (&str, &str),
        access: AccessTokenId<'_>,
        now: u64,
    ) -> Result<Rotation, GrantError> {
        let (old, new) = (digest(tokens.0), digest(tokens.1));
        let record = RefreshRecord {
            grant_id: grant_id.to_owned(),
            client_id: client_id.to_owned(),
        };
        let mut invocation = commit::invocation(&ROTATE_SCRIPT, &self.names);
        invocation
            .key(self.names.refresh_token(&old))
            .key(self.names.grant(grant_id))
            .key(self.names.grant_tokens(grant_id))
            .key(self.names.refresh_token(&new))
            .arg(&old)
            .arg(&new)
            .arg(serde_json::to_string(&record).map_err(GrantError::Encode)?)
            .arg(access.jti)
            .arg(access.exp)
            .arg(now)
            .arg(self.names.revoked_token(""))
            .arg(REVOCATION_GRACE_SECS);
        let outcome: String = invocation.invoke_async(conn).await?;
        match outcome.as_str() {
            "rotated" => Ok(Rotation::Rotated),
            "reused" => Ok(Rotation::Reused),
            "revoked" => Ok(Rotation::Revoked),
            _ => Err(GrantError::Unexpected(outcome)),
        }
    }

    /// Revokes the grant: its refresh tokens stop working and its live access tokens are revoked. Returns how many
    /// access tokens this revoked. Revoking a grant that does not exist (yet) makes its creation fail.
    pub async fn revoke<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        grant_id: &str,
        now: u64,
    ) -> Result<u64, GrantError> {
        let mut invocation = commit::invocation(&REVOKE_SCRIPT, &self.names);
        invocation
            .key(self.names.grant(grant_id))
            .key(self.names.grant_tokens(grant_id))
            .arg(REVOKED_GRANT_MEMORY_SECS)
            .arg(self.names.revoked_token(""))
            .arg(now)
            .arg(REVOCATION_GRACE_SECS);
        Ok(invocation.invoke_async(conn).await?)
    }
}

/// How long a grant's records are kept: until it expires, plus the life of its last access token.
fn storage_ttl(expires_at: u64, now: u64) -> u64 {
    expires_at
        .saturating_sub(now)
        .saturating_add(MAX_ACCESS_TOKEN_SECS)
        .max(1)
}
