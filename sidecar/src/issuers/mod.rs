//! External identity providers: issuers whose tokens the filters accept, with keys fetched from the provider.
//!
//! An operator registers a provider (`keymesh issuer add`): its exact `iss`, where its keys are (a JWKS URI, or
//! OIDC / RFC 8414 discovery), and the APIs (audiences) its tokens may be used at. The record lives in Redis, so
//! every replica agrees on it, and so do the keys last fetched: a replica fetches, writes the keys with a change
//! log entry, and the bundle carries them to every filter like the sidecar's own, bound to that issuer and those
//! audiences.
//!
//! Fetching ([`task`]) runs in every replica, coordinated through Redis: a fetch status per issuer (when last
//! tried, when last fetched, consecutive failures) and a short lock, so one replica fetches at a time. Keys are
//! refreshed every `issuer_refresh_secs`, sooner when a filter reports a token whose `kid` none of them has (at
//! most once per `issuer_refetch_min_secs` per issuer), and retried with exponential backoff after a failure. A
//! failed fetch never removes keys: the last good set stays until a fetch succeeds or the operator removes the
//! issuer.
//!
//! | Redis key | type | content |
//! |---|---|---|
//! | `{prefix}issuers:external` | hash | issuer → [`ExternalIssuer`] as JSON (changed only through the change log) |
//! | `{prefix}issuers:status` | hash | issuer → [`FetchStatus`] as JSON |
//! | `{prefix}issuers:lock:<digest>` | string | which replica is fetching that issuer, with a short expiry |

use std::collections::HashMap;
use std::sync::LazyLock;

use keymesh_core::bundle::{IssuerKeysDto, JwksDto};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::store::commit;
use crate::store::names::KeyNames;
use crate::support::syntax;

pub mod fetch;

pub use fetch::{FetchError, Fetched, Fetcher, RefusedKey};

/// Where a provider's keys are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The JWK Set is at this URL.
    JwksUri(String),
    /// The provider's metadata document (OIDC discovery or RFC 8414) is at this URL; its `jwks_uri` names the
    /// JWK Set, and its `issuer` must be the registered issuer.
    Discovery(String),
}

impl KeySource {
    /// The URL fetched first.
    pub fn url(&self) -> &str {
        match self {
            Self::JwksUri(url) | Self::Discovery(url) => url,
        }
    }
}

/// One registered external provider, as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIssuer {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// Where its keys are.
    pub source: KeySource,
    /// The APIs its tokens may be used at (never empty).
    pub audiences: Vec<String>,
    /// The keys last fetched, if any fetch has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksDto>,
    /// When the keys last changed (seconds since the epoch; 0 if never fetched).
    #[serde(default)]
    pub keys_changed_at: u64,
    /// `typ` values its access tokens may carry besides `at+jwt` (RFC 9068 §4), e.g. `JWT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_typ: Vec<String>,
    /// Whether its access tokens may carry no `typ` at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_missing_typ: bool,
    /// Keys of its last fetched set that could not be used, and why (its other keys are delivered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_keys: Vec<RefusedKey>,
}

impl ExternalIssuer {
    /// The bundle's entry for this provider, once it has keys.
    pub fn bundle_entry(&self) -> Option<IssuerKeysDto> {
        let jwks = self.jwks.clone()?;
        Some(IssuerKeysDto {
            issuer: self.issuer.clone(),
            jwks,
            audiences: Some(self.audiences.clone()),
            external: true,
            accept_typ: self.accept_typ.clone(),
            accept_missing_typ: self.accept_missing_typ,
        })
    }

    /// The kids of the keys held.
    pub fn kids(&self) -> Vec<&str> {
        self.jwks.as_ref().map(jwks_kids).unwrap_or_default()
    }
}

/// The kids of a JWK Set's keys, in order (keys without one are left out).
pub fn jwks_kids(jwks: &JwksDto) -> Vec<&str> {
    jwks.keys
        .iter()
        .filter_map(|key| key.get("kid").and_then(|kid| kid.as_str()))
        .collect()
}

/// How fetching an issuer's keys has gone, shared by the replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStatus {
    /// When a fetch was last tried (seconds since the epoch).
    #[serde(default)]
    pub last_attempt: u64,
    /// When a fetch last succeeded.
    #[serde(default)]
    pub last_success: u64,
    /// Failures since the last success.
    #[serde(default)]
    pub failures: u32,
    /// Why the last fetch failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The JWKS URI last used (from discovery, or the registered one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// Why a registration could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The issuer is not an absolute https URL (http only on loopback) without query or fragment.
    #[error("issuer {0:?} must be an https URL without query or fragment (http only for loopback hosts)")]
    InvalidIssuer(String),
    /// The issuer is the sidecar's own.
    #[error("{0:?} is this sidecar's own issuer; its keys are managed with `keymesh key`")]
    OwnIssuer(String),
    /// A source URL is not acceptable.
    #[error("{0}")]
    InvalidUrl(String),
    /// No audience was listed.
    #[error("list at least one audience (--audience) the issuer's tokens may be used at")]
    NoAudiences,
    /// An audience is not an absolute URI.
    #[error("audience {0:?} is not an absolute URI")]
    InvalidAudience(String),
    /// An accepted `typ` is not a media type.
    #[error("--accept-typ {0:?} is not a media type (such as JWT or application/jwt)")]
    InvalidTokenType(String),
    /// The issuer is registered already (and replacing it was not asked for).
    #[error("issuer {0:?} is registered already (use --force to replace it)")]
    Exists(String),
    /// The issuer is not registered.
    #[error("no external issuer {0:?}")]
    NotFound(String),
    /// The record changed while this operation ran: try again.
    #[error("issuer {0:?} changed meanwhile; try again")]
    Conflict(String),
    /// A stored record is not valid JSON of the expected shape.
    #[error("stored record of issuer {issuer:?} is corrupt: {source}")]
    Corrupt {
        /// The issuer.
        issuer: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A record could not be serialised.
    #[error("cannot encode issuer record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// `KEYS[3]` = the issuers hash; `ARGV[3]` = issuer, `ARGV[4]` = the record as read (empty: none), `ARGV[5]` = the
/// new record (empty: delete). Returns the version, or 0 if the record is no longer the one read.
const PUT: &str = r"
local current = redis.call('HGET', KEYS[3], ARGV[3]) or ''
if current ~= ARGV[4] then return 0 end
local version = begin_change()
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
end
log_change(version, 'kind', 'issuers', 'issuer', ARGV[3])
return version
";

static PUT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(PUT));

/// Checks a URL keymesh will fetch: https, or http to a loopback host (a provider on the same machine, as in
/// tests); no credentials in it (they would end up in logs and status output).
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{:?} must not carry credentials",
            crate::support::redact::redact_url(url)
        ));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(authority.host()) => Ok(()),
        Some("http") => Err(format!(
            "{url:?} must use https (plain http is allowed only for loopback hosts)"
        )),
        _ => Err(format!("{url:?} must be an https URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A validated new registration.
#[derive(Debug, Clone)]
pub struct NewIssuer {
    /// The exact `iss`.
    pub issuer: String,
    /// Where its keys are.
    pub source: KeySource,
    /// The APIs its tokens may be used at.
    pub audiences: Vec<String>,
    /// `typ` values accepted besides `at+jwt`.
    pub accept_typ: Vec<String>,
    /// Whether tokens without `typ` are accepted.
    pub accept_missing_typ: bool,
}

impl NewIssuer {
    /// Validates a registration; `own_issuer` is the sidecar's own `iss`, which cannot be registered. It accepts
    /// only `at+jwt` access tokens; see [`NewIssuer::accepting_types`].
    pub fn new(
        issuer: String,
        source: KeySource,
        audiences: Vec<String>,
        own_issuer: &str,
    ) -> Result<Self, IssuerError> {
        if !syntax::is_absolute_uri_without_fragment(&issuer)
            || issuer.contains('?')
            || check_fetch_url(&issuer).is_err()
        {
            return Err(IssuerError::InvalidIssuer(issuer));
        }
        if issuer == own_issuer {
            return Err(IssuerError::OwnIssuer(issuer));
        }
        check_fetch_url(source.url()).map_err(IssuerError::InvalidUrl)?;
        let mut unique: Vec<String> = Vec::with_capacity(audiences.len());
        for audience in audiences {
            if !syntax::is_absolute_uri_without_fragment(&audience) {
                return Err(IssuerError::InvalidAudience(audience));
            }
            if !unique.contains(&audience) {
                unique.push(audience);
            }
        }
        if unique.is_empty() {
            return Err(IssuerError::NoAudiences);
        }
        Ok(Self {
            issuer,
            source,
            audiences: unique,
            accept_typ: Vec::new(),
            accept_missing_typ: false,
        })
    }

    /// The registration also accepting access tokens with these `typ` values (media types, compared as such) and,
    /// with `missing`, without `typ`: for a provider known to mint access tokens so.
    pub fn accepting_types(
        mut self,
        types: Vec<String>,
        missing: bool,
    ) -> Result<Self, IssuerError> {
        for typ in types {
            if !keymesh_core::token_type::is_media_type(&typ) {
                return Err(IssuerError::InvalidTokenType(typ));
            }
            let normal = keymesh_core::token_type::normalize(&typ);
            let known = self
                .accept_typ
                .iter()
                .any(|t| keymesh_core::token_type::normalize(t) == normal);
            if !known && normal != keymesh_core::token_type::ACCESS_TOKEN_TYPE {
                self.accept_typ.push(typ);
            }
        }
        self.accept_missing_typ = missing;
        Ok(self)
    }

    /// The default discovery URL of `issuer`: OpenID Connect Discovery 1.0 §4.
    pub fn discovery_url(issuer: &str) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )
    }
}

/// The registered external issuers under one key prefix.
#[derive(Debug, Clone)]
pub struct IssuerStore {
    names: KeyNames,
}

impl IssuerStore {
    /// A store using `names`.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Every registered issuer, sorted by issuer. Corrupt records are logged and left out.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<ExternalIssuer>, IssuerError> {
        let records: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.names.external_issuers())
            .query_async(conn)
            .await?;
        Ok(parse_records(&records))
    }

    /// The fetch status of every issuer that has one.
    pub async fn statuses<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<HashMap<String, FetchStatus>, IssuerError> {
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.names.external_issuer_status())
            .query_async(conn)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(issuer, json)| {
                let status = serde_json::from_str(&json).ok()?;
                Some((issuer, status))
            })
            .collect())
    }

    /// Records how a fetch went.
    pub async fn set_status<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        issuer: &str,
        status: &FetchStatus,
    ) -> Result<(), IssuerError> {
        let json = serde_json::to_string(status).map_err(IssuerError::Encode)?;
        let () = redis::cmd("HSET")
            .arg(self.names.external_issuer_status())
            .arg(issuer)
            .arg(json)
            .query_async(conn)
            .await?;
        Ok(())
    }

    async fn current<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        issuer: &str,
    ) -> Result<Option<String>, IssuerError> {
        Ok(redis::cmd("HGET")
            .arg(self.names.external_issuers())
            .arg(issuer)
            .query_async(conn)
            .await?)
    }

    /// Registers a provider with the keys just fetched from it; with `force`, replaces a registration.
    pub async fn add<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        new: NewIssuer,
        fetched: &Fetched,
        now: u64,
        force: bool,
    ) -> Result<ExternalIssuer, IssuerError> {
        let current = self.current(conn, &new.issuer).await?;
        if current.is_some() && !force {
            return Err(IssuerError::Exists(new.issuer));
        }
        let record = ExternalIssuer {
            issuer: new.issuer,
            source: new.source,
            audiences: new.audiences,
            jwks: Some(fetched.jwks.clone()),
            keys_changed_at: now,
            accept_typ: new.accept_typ,
            accept_missing_typ: new.accept_missing_typ,
            refused_keys: fetched.refused.clone(),
        };
        self.write(conn, &record.issuer, current.as_deref(), Some(&record))
            .await?;
        self.set_status(conn, &record.issuer, &FetchStatus::succeeded(now, fetched))
            .await?;
        Ok(record)
    }

    /// Removes a provider: its tokens fail at every proxy once the bundle reaches it.
    pub async fn remove<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        issuer: &str,
    ) -> Result<(), IssuerError> {
        let Some(current) = self.current(conn, issuer).await? else {
            return Err(IssuerError::NotFound(issuer.to_owned()));
        };
        self.write(conn, issuer, Some(&current), None).await?;
        let () = redis::cmd("HDEL")
            .arg(self.names.external_issuer_status())
            .arg(issuer)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Stores keys fetched for `read` (the record as it was when the fetch began), with the keys refused, if they
    /// differ from what it holds; returns whether the record changed. A record changed or removed meanwhile is
    /// left alone.
    pub async fn store_keys<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        read: &ExternalIssuer,
        fetched: &Fetched,
        now: u64,
    ) -> Result<bool, IssuerError> {
        let jwks = &fetched.jwks;
        if read.jwks.as_ref() == Some(jwks) && read.refused_keys == fetched.refused {
            return Ok(false);
        }
        let Some(current) = self.current(conn, &read.issuer).await? else {
            return Ok(false);
        };
        // Compare as values: the stored text may have been written by another replica's serialiser.
        if serde_json::from_str::<ExternalIssuer>(&current)
            .ok()
            .as_ref()
            != Some(read)
        {
            return Ok(false);
        }
        let keys_changed_at = if read.jwks.as_ref() == Some(jwks) {
            read.keys_changed_at
        } else {
            now
        };
        let updated = ExternalIssuer {
            jwks: Some(jwks.clone()),
            keys_changed_at,
            refused_keys: fetched.refused.clone(),
            ..read.clone()
        };
        self.write(conn, &read.issuer, Some(&current), Some(&updated))
            .await?;
        Ok(true)
    }

    async fn write<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        issuer: &str,
        expected: Option<&str>,
        record: Option<&ExternalIssuer>,
    ) -> Result<(), IssuerError> {
        let json = match record {
            Some(record) => serde_json::to_string(record).map_err(IssuerError::Encode)?,
            None => String::new(),
        };
        let version: u64 = commit::invocation(&PUT_SCRIPT, &self.names)
            .key(self.names.external_issuers())
            .arg(issuer)
            .arg(expected.unwrap_or_default())
            .arg(json)
            .invoke_async(conn)
            .await?;
        if version == 0 {
            return Err(IssuerError::Conflict(issuer.to_owned()));
        }
        Ok(())
    }
}

impl FetchStatus {
    /// The status after a successful fetch at `now`.
    pub fn succeeded(now: u64, fetched: &Fetched) -> Self {
        Self {
            last_attempt: now,
            last_success: now,
            failures: 0,
            last_error: None,
            jwks_uri: Some(fetched.jwks_uri.clone()),
        }
    }
}

/// Parses the issuers hash (issuer → record JSON), sorted by issuer; corrupt records are logged and left out.
pub fn parse_records(records: &HashMap<String, String>) -> Vec<ExternalIssuer> {
    let mut issuers: Vec<ExternalIssuer> = records
        .iter()
        .filter_map(
            |(issuer, json)| match serde_json::from_str::<ExternalIssuer>(json) {
                Ok(record) if record.issuer == *issuer => Some(record),
                Ok(_) => {
                    tracing::warn!(issuer = %issuer, "ignoring external issuer record stored under another name");
                    None
                }
                Err(error) => {
                    tracing::warn!(issuer = %issuer, %error, "ignoring corrupt external issuer record");
                    None
                }
            },
        )
        .collect();
    issuers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    issuers
}

#[cfg(test)]
mod tests;
