//! Authorization codes (RFC 6749 §4.1.2): one-time, short-lived, and bound to everything the user approved.
//!
//! A code is 256 random bits; Redis keeps it as the hash `{prefix}authcode:{sha256(code)}` with the approved
//! [`CodeGrant`] in `data`. Redeeming sets `used` atomically, so exactly one redemption sees the code first. A used
//! code is remembered for [`USED_CODE_MEMORY_SECS`]: a second redemption within that time is reported as a
//! [`Redemption::Replay`], and the caller revokes whatever the first one issued (RFC 6749 §4.1.2, RFC 9700 §4.5).

use std::fmt;
use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use super::{digest, random_token, SECRET_BYTES};
use crate::store::names::KeyNames;

/// How long a code can be redeemed after it is issued.
pub const CODE_TTL_SECS: u64 = 60;
/// How long a redeemed code is remembered, to recognise a replay.
pub const USED_CODE_MEMORY_SECS: u64 = 86_400;

/// What a code stands for: the user's approval of one authorization request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI the code was delivered to.
    pub redirect_uri: String,
    /// Whether the authorization request named `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_given: bool,
    /// The PKCE `S256` challenge, if the request had one.
    pub code_challenge: Option<String>,
    /// The approved scopes.
    pub scopes: Vec<String>,
    /// The approved resources (the APIs tokens may be issued for).
    pub resources: Vec<String>,
    /// The user who approved.
    pub subject: String,
    /// The id of the grant the tokens issued for this code will belong to.
    pub grant_id: String,
    /// When the code stops being redeemable (seconds since the Unix epoch).
    pub expires_at: u64,
}

impl fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeGrant")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("pkce", &self.code_challenge.is_some())
            .field("scopes", &self.scopes)
            .field("resources", &self.resources)
            .field("subject", &self.subject)
            .field("grant_id", &self.grant_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The outcome of presenting a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// No such code (never issued, or forgotten).
    Unknown,
    /// The first redemption: the caller checks the bindings and issues tokens.
    First(CodeGrant),
    /// The code was redeemed before.
    Replay(CodeGrant),
    /// Another client presented the code. It is left unused for the client it was issued to: a thief holding a
    /// code cannot burn it (RFC 6749 §4.1.3 requires refusing it; it does not require spending it).
    OtherClient,
}

/// Why a code operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The grant could not be serialised.
    #[error("cannot encode authorization code: {0}")]
    Encode(serde_json::Error),
    /// A stored code is not valid JSON of the expected shape.
    #[error("stored authorization code is corrupt: {0}")]
    Corrupt(serde_json::Error),
}

/// `KEYS[1]` = the code; `ARGV[1]` = how long to remember a used code, `ARGV[2]` = the presenting client. Returns
/// `{data, 1 if first use, 0 if used before, -1 if issued to another client}` or nil.
const REDEEM: &str = r"
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return false end
local owner = redis.call('HGET', KEYS[1], 'client')
if owner and owner ~= ARGV[2] then return {'', -1} end
local first = redis.call('HSETNX', KEYS[1], 'used', '1')
if first == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {data, first}
";

static REDEEM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REDEEM));

/// Authorization codes in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct CodeStore {
    names: KeyNames,
}

impl CodeStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Stores `grant` under a new code and returns the code.
    pub async fn issue<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        grant: &CodeGrant,
    ) -> Result<String, CodeError> {
        let code = random_token(SECRET_BYTES);
        let key = self.names.auth_code(&digest(&code));
        let data = serde_json::to_string(grant).map_err(CodeError::Encode)?;
        redis::pipe()
            .atomic()
            .hset(&key, "data", data)
            .ignore()
            .hset(&key, "client", &grant.client_id)
            .ignore()
            .expire(&key, i64::try_from(CODE_TTL_SECS).unwrap_or(60))
            .ignore()
            .query_async::<()>(conn)
            .await?;
        Ok(code)
    }

    /// Redeems `code` for `client_id`: marks it used and returns what it stands for. A code issued to another
    /// client is left as it is.
    pub async fn redeem<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        code: &str,
        client_id: &str,
    ) -> Result<Redemption, CodeError> {
        let reply: Option<(String, i64)> = REDEEM_SCRIPT
            .key(self.names.auth_code(&digest(code)))
            .arg(USED_CODE_MEMORY_SECS)
            .arg(client_id)
            .invoke_async(conn)
            .await?;
        let Some((data, first)) = reply else {
            return Ok(Redemption::Unknown);
        };
        if first < 0 {
            return Ok(Redemption::OtherClient);
        }
        let grant: CodeGrant = serde_json::from_str(&data).map_err(CodeError::Corrupt)?;
        Ok(if first == 1 {
            Redemption::First(grant)
        } else {
            Redemption::Replay(grant)
        })
    }
}
