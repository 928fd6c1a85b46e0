//! The lifecycle of signing keys: `next` → `active` → `retiring` → removed.
//!
//! - **next**: a new key is published (JWKS and bundle) but signs nothing until its activation time, `publish
//!   delay` after it was added, so that every proxy holds it before any token signed with it exists.
//! - **active**: the one key that signs new tokens (`{prefix}signing:active`).
//! - **retiring**: replaced, still published until every token it signed has expired (token lifetime + leeway
//!   after it stopped signing), then removed.
//!
//! States live in the hash `{prefix}signing:state` (kid → `next <activate at>`, `active <since>`, `retiring <remove
//! at>`, seconds since the Unix epoch). A rotation ([`rotate`]) adds a `next` key; [`advance`] moves keys along
//! when their time has come. Both are Lua scripts that commit through the change log ([`crate::store::commit`]) when the
//! published set or the active key changes, so every replica runs [`advance`] on a timer (and starts scheduled
//! rotations) and whichever gets there first does the work: the others find nothing left to do.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::config::Config;
use crate::keys::{self, Alg, KeyStoreError, SigningKey};
use crate::store::commit;
use crate::store::names::KeyNames;
use crate::support::kek::Kek;

/// How often each replica checks whether a key's time has come.
pub const LIFECYCLE_TICK: Duration = Duration::from_secs(1);
/// Limit on each Redis operation of a lifecycle step.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// When keys move from one state to the next, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Algorithm of automatically rotated keys.
    pub algorithm: Alg,
    /// Seconds a new key is published before it signs.
    pub publish_delay_secs: u64,
    /// Seconds between automatic rotations; 0 = none.
    pub rotation_interval_secs: u64,
    /// Seconds a replaced key stays published: the token lifetime plus the retirement leeway.
    pub retain_secs: u64,
}

impl Schedule {
    /// The schedule `config` describes.
    pub fn from_config(config: &Config) -> Self {
        Self {
            algorithm: config.signing.algorithm,
            publish_delay_secs: config.signing.publish_delay_secs,
            rotation_interval_secs: config.signing.rotation_interval_secs,
            retain_secs: config
                .token_ttl_secs
                .saturating_add(config.signing.retire_leeway_secs),
        }
    }
}

/// The state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum KeyState {
    /// Published, signing from `activate_at`.
    Next {
        /// When it becomes active.
        activate_at: u64,
    },
    /// Signing new tokens since `since` (`None` if not yet recorded).
    Active {
        /// When it became active.
        since: Option<u64>,
    },
    /// Published until `remove_at` (`None` if not yet scheduled) for the tokens it signed.
    Retiring {
        /// When it is removed.
        remove_at: Option<u64>,
    },
}

impl KeyState {
    /// The state's name: `next`, `active` or `retiring`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Next { .. } => "next",
            Self::Active { .. } => "active",
            Self::Retiring { .. } => "retiring",
        }
    }

    fn parse(value: Option<&str>, is_active: bool) -> Self {
        let (name, at) = value
            .and_then(|v| v.split_once(' '))
            .map_or(("", None), |(name, at)| (name, at.parse::<u64>().ok()));
        match (name, at) {
            ("next", Some(activate_at)) if !is_active => Self::Next { activate_at },
            ("active", since) if is_active => Self::Active { since },
            _ if is_active => Self::Active { since: None },
            ("retiring", remove_at) => Self::Retiring { remove_at },
            _ => Self::Retiring { remove_at: None },
        }
    }
}

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A key could not be generated or sealed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {OP_TIMEOUT:?}")]
    Timeout,
    /// The script answered something this sidecar does not understand.
    #[error("unexpected answer from the lifecycle script: {0:?}")]
    Unexpected(String),
}

/// Adds `key` as the `next` key, active `publish_delay_secs` after `now`.
///
/// `KEYS[3]` = key hash, `KEYS[4]` = active kid, `KEYS[5]` = states; `ARGV[3]` = kid, `ARGV[4]` = record,
/// `ARGV[5]` = activation time, `ARGV[6]` = now, `ARGV[7]` = rotation interval (0 for a rotation asked for by an
/// operator; otherwise the script only rotates if the active key is at least that old). Returns `{outcome, detail}`.
const ROTATE: &str = r"
local active = redis.call('GET', KEYS[4])
if not active then return {'no_active', ''} end
local states = redis.call('HGETALL', KEYS[5])
for i = 1, #states, 2 do
  if string.find(states[i + 1], '^next ') and redis.call('HEXISTS', KEYS[3], states[i]) == 1 then
    return {'pending', states[i]}
  end
end
local interval = tonumber(ARGV[7])
if interval > 0 then
  local since = tonumber(string.match(redis.call('HGET', KEYS[5], active) or '', '^active (%d+)$') or '')
  if not since or since + interval > tonumber(ARGV[6]) then return {'not_due', active} end
end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return {'exists', ARGV[3]} end
local version = begin_change()
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[3], 'next ' .. ARGV[5])
log_change(version, 'kind', 'keys', 'kid', ARGV[3])
return {'published', tostring(version)}
";

/// Moves keys along at `now`: adopts keys without a state, activates the earliest due `next` key (the active one
/// becomes `retiring` until now + retain), removes retiring keys whose time has come, and says whether a scheduled
/// rotation is due.
///
/// `KEYS[3]` = key hash, `KEYS[4]` = active kid, `KEYS[5]` = states; `ARGV[3]` = now, `ARGV[4]` = retain seconds,
/// `ARGV[5]` = rotation interval (0 = none). Returns `{version or 0, rotation due 0/1, events…}`.
const ADVANCE: &str = r"
local now = tonumber(ARGV[3])
local retain = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local active = redis.call('GET', KEYS[4])
local kids = redis.call('HKEYS', KEYS[3])
table.sort(kids)
local stored = {}
for _, kid in ipairs(kids) do stored[kid] = true end
local state = {}
local raw = redis.call('HGETALL', KEYS[5])
for i = 1, #raw, 2 do
  if stored[raw[i]] then state[raw[i]] = raw[i + 1] else redis.call('HDEL', KEYS[5], raw[i]) end
end
local function set_state(kid, value)
  state[kid] = value
  redis.call('HSET', KEYS[5], kid, value)
end
local function time_of(kid, name)
  return tonumber(string.match(state[kid] or '', '^' .. name .. ' (%d+)$') or '')
end
for _, kid in ipairs(kids) do
  if not state[kid] or (kid == active and not time_of(kid, 'active')) then
    if kid == active then set_state(kid, 'active ' .. now) else set_state(kid, 'retiring ' .. (now + retain)) end
  end
end
local events = {}
local version = false
local due, due_at = false, 0
for _, kid in ipairs(kids) do
  local at = time_of(kid, 'next')
  if at and at <= now and (not due or at < due_at) then due, due_at = kid, at end
end
if due then
  version = begin_change()
  if active and stored[active] and active ~= due then
    set_state(active, 'retiring ' .. (now + retain))
    table.insert(events, 'retiring ' .. active)
  end
  redis.call('SET', KEYS[4], due)
  set_state(due, 'active ' .. now)
  table.insert(events, 'activated ' .. due)
  active = due
end
for _, kid in ipairs(kids) do
  local at = time_of(kid, 'retiring')
  if at and at <= now and kid ~= active then
    if not version then version = begin_change() end
    redis.call('HDEL', KEYS[3], kid)
    redis.call('HDEL', KEYS[5], kid)
    state[kid] = nil
    table.insert(events, 'removed ' .. kid)
  end
end
if version then log_change(version, 'kind', 'keys', 'kid', active or '') end
local rotation_due = 0
if interval > 0 and active then
  local pending = false
  for _, kid in ipairs(kids) do
    if time_of(kid, 'next') then pending = true end
  end
  local since = time_of(active, 'active')
  if not pending and since and since + interval <= now then rotation_due = 1 end
end
return {version or 0, rotation_due, unpack(events)}
";

static ROTATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(ROTATE));
static ADVANCE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(ADVANCE));

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The key is published as `next`, at this version, and becomes active at `activate_at`.
    Published {
        /// The bundle version that publishes it.
        version: u64,
        /// When it becomes active.
        activate_at: u64,
    },
    /// Another key is already waiting to become active: one rotation at a time.
    Pending {
        /// The waiting key.
        kid: String,
    },
    /// A scheduled rotation found the active key younger than the interval (another replica rotated first).
    NotDue,
    /// No key is active yet: the first key is created by `keymesh serve`.
    NoActiveKey,
}

/// Publishes `key` as the next key, active `publish_delay_secs` after `now`. With `scheduled_interval`, only if
/// the active key has been active that long (so racing replicas rotate once).
pub async fn rotate<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    kek: &Kek,
    key: &SigningKey,
    now: u64,
    publish_delay_secs: u64,
    scheduled_interval: Option<u64>,
) -> Result<Rotation, LifecycleError> {
    let record = keys::encode_record(key, kek).map_err(KeyStoreError::from)?;
    let activate_at = now.saturating_add(publish_delay_secs);
    let mut invocation = commit::invocation(&ROTATE_SCRIPT, names);
    invocation
        .key(names.signing_keys())
        .key(names.signing_active())
        .key(names.signing_states())
        .arg(key.kid())
        .arg(record)
        .arg(activate_at)
        .arg(now)
        .arg(scheduled_interval.unwrap_or(0));
    let (outcome, detail): (String, String) = invocation.invoke_async(conn).await?;
    Ok(match outcome.as_str() {
        "published" => Rotation::Published {
            version: detail
                .parse()
                .map_err(|_| LifecycleError::Unexpected(detail))?,
            activate_at,
        },
        "pending" => Rotation::Pending { kid: detail },
        "not_due" => Rotation::NotDue,
        "no_active" => Rotation::NoActiveKey,
        // A fresh key's kid is a thumbprint of fresh randomness: it cannot already exist.
        _ => return Err(LifecycleError::Unexpected(outcome)),
    })
}

/// A transition [`advance`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The key became active.
    Activated(String),
    /// The key stopped signing and is retiring.
    Retiring(String),
    /// The key was removed from the published set.
    Removed(String),
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Advanced {
    /// The version of the change, if the published set or the active key changed.
    pub version: Option<u64>,
    /// The transitions made, in order.
    pub transitions: Vec<Transition>,
    /// Whether a scheduled rotation is due (the caller generates a key and calls [`rotate`]).
    pub rotation_due: bool,
}

/// Moves keys along at `now` (see the module documentation); idempotent.
pub async fn advance<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    now: u64,
    schedule: &Schedule,
) -> Result<Advanced, LifecycleError> {
    let mut invocation = commit::invocation(&ADVANCE_SCRIPT, names);
    invocation
        .key(names.signing_keys())
        .key(names.signing_active())
        .key(names.signing_states())
        .arg(now)
        .arg(schedule.retain_secs)
        .arg(schedule.rotation_interval_secs);
    let answer: Vec<redis::Value> = invocation.invoke_async(conn).await?;
    let mut items = answer.into_iter();
    let version: u64 = redis::from_redis_value(&items.next().unwrap_or(redis::Value::Int(0)))?;
    let due: u64 = redis::from_redis_value(&items.next().unwrap_or(redis::Value::Int(0)))?;
    let mut transitions = Vec::new();
    for item in items {
        let event: String = redis::from_redis_value(&item)?;
        transitions.push(match event.split_once(' ') {
            Some(("activated", kid)) => Transition::Activated(kid.to_owned()),
            Some(("retiring", kid)) => Transition::Retiring(kid.to_owned()),
            Some(("removed", kid)) => Transition::Removed(kid.to_owned()),
            _ => return Err(LifecycleError::Unexpected(event)),
        });
    }
    Ok(Advanced {
        version: (version != 0).then_some(version),
        transitions,
        rotation_due: due == 1,
    })
}

/// One key as `keymesh key list` shows it: never any private material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedKey {
    /// The key id.
    pub kid: String,
    /// Its algorithm.
    pub alg: String,
    /// When it was created.
    pub created_at: u64,
    /// Its state.
    #[serde(flatten)]
    pub state: KeyState,
    /// Id of the KEK its private half is sealed under; `None` if stored in clear (sealed at the next start).
    pub sealed_with: Option<String>,
}

/// Every stored key with its state, oldest first (keys created in the same second in lifecycle order). Needs no
/// KEK. Unreadable records are listed with alg `?`.
pub async fn list<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
) -> Result<Vec<ListedKey>, LifecycleError> {
    let (active, records, states): (
        Option<String>,
        HashMap<String, String>,
        HashMap<String, String>,
    ) = redis::pipe()
        .atomic()
        .get(names.signing_active())
        .hgetall(names.signing_keys())
        .hgetall(names.signing_states())
        .query_async(conn)
        .await?;
    let mut keys: Vec<ListedKey> = records
        .iter()
        .map(|(kid, record)| {
            let state = KeyState::parse(
                states.get(kid).map(String::as_str),
                active.as_deref() == Some(kid),
            );
            match keys::decode_public(kid, record) {
                Ok(info) => ListedKey {
                    kid: kid.clone(),
                    alg: info.public.alg().to_string(),
                    created_at: info.public.created_at(),
                    state,
                    sealed_with: info.sealed_with,
                },
                Err(error) => {
                    tracing::warn!(kid = %kid, %error, "unusable signing key record");
                    ListedKey {
                        kid: kid.clone(),
                        alg: "?".to_owned(),
                        created_at: 0,
                        state,
                        sealed_with: None,
                    }
                }
            }
        })
        .collect();
    keys.sort_by(|a, b| list_order(a).cmp(&list_order(b)));
    Ok(keys)
}

/// Oldest first; keys created in the same second in lifecycle order (retiring, active, next), then by time.
fn list_order(key: &ListedKey) -> (u64, u8, u64, &str) {
    let (rank, at) = match key.state {
        KeyState::Retiring { remove_at } => (0, remove_at.unwrap_or(0)),
        KeyState::Active { since } => (1, since.unwrap_or(0)),
        KeyState::Next { activate_at } => (2, activate_at),
    };
    (key.created_at, rank, at, &key.kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_with_the_active_kid_authoritative() {
        assert_eq!(
            KeyState::parse(Some("next 10"), false),
            KeyState::Next { activate_at: 10 }
        );
        assert_eq!(
            KeyState::parse(Some("active 5"), true),
            KeyState::Active { since: Some(5) }
        );
        assert_eq!(
            KeyState::parse(None, true),
            KeyState::Active { since: None }
        );
        assert_eq!(
            KeyState::parse(Some("next 10"), true),
            KeyState::Active { since: None }
        );
        assert_eq!(
            KeyState::parse(Some("retiring 9"), false),
            KeyState::Retiring { remove_at: Some(9) }
        );
        assert_eq!(
            KeyState::parse(None, false),
            KeyState::Retiring { remove_at: None }
        );
        assert_eq!(
            KeyState::parse(Some("junk"), false),
            KeyState::Retiring { remove_at: None }
        );
    }
}
