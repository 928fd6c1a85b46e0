//! RFC 8693 token exchange: a client that received a user's access token gets a token for another API, on the
//! user's behalf. The exchanged token keeps the user's `sub`, names the client as the current actor (`act`,
//! nested over the subject token's own `act`), and is never broader than the subject token: its audience is among
//! the client's exchange resources, its scopes are the subject's that the client may request, and it expires no
//! later than the subject token.
//!
//! Revoking a subject token revokes what was exchanged from it, transitively, with the mechanism of refresh-token
//! grants: each exchanged token is recorded in the family `grant:exchange.{jti}` of every ancestor in its chain
//! (the subject token, the subject token's subject token, … up to the first), and revoking an access token revokes
//! its family in the same script. So revoking any token of a chain revokes everything below it, however deep. The
//! recording script refuses to add a token once any ancestor is revoked, so an exchange racing a revocation cannot
//! leave a live token behind. Chains are at most [`MAX_ACTOR_DEPTH`] exchanges deep (the depth of `act` the
//! filters accept), which bounds the families a token is recorded in.

use std::sync::LazyLock;

use keymesh_core::claims::{AccessClaims, MAX_ACTOR_DEPTH};
use keymesh_core::delivery::wire::BundleDto;
use keymesh_core::KeySet;
use redis::aio::ConnectionLike;

use crate::issuers::ExternalIssuer;
use crate::oauth::clients::ClientRecord;
use crate::oauth::revocation::{REVOCATION_GRACE_SECS, REVOKE_LUA};
use crate::oauth::{access_token, select_scopes};
use crate::store::commit;
use crate::store::names::KeyNames;

/// `subject_token_type` and `issued_token_type` of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Most targets (`resource` plus `audience` values) one exchange may name.
pub const MAX_TARGETS: usize = 16;

/// Why an exchange is refused before anything is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The subject token is malformed, forged, expired, revoked, its `may_act` names another party, or its
    /// delegation chain is already [`MAX_ACTOR_DEPTH`] deep.
    #[error("invalid subject token")]
    InvalidSubject,
    /// A target is not one of the client's exchange resources.
    #[error("invalid_target")]
    InvalidTarget,
    /// A requested scope is not both held by the subject token and allowed to the client.
    #[error("invalid_scope")]
    InvalidScope,
}

/// A verified subject token: whom it is about and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectToken {
    /// `sub`: the user the exchanged token stays about.
    pub subject: String,
    /// Its scopes: the most an exchanged token may carry.
    pub scopes: Vec<String>,
    /// Its `exp`: the latest an exchanged token may expire.
    pub expires_at: u64,
    /// Its `jti`, when it has one (every token of this sidecar does).
    pub jti: Option<String>,
    /// Its `act` chain, current actor first.
    pub actors: Vec<String>,
    /// Its `may_act.sub`, if it names who may act for the subject.
    pub may_act: Option<String>,
    /// Whether this sidecar issued it (only those can be revoked here, so only those form families).
    pub own: bool,
}

/// The keys a subject token may be signed with.
#[derive(Debug, Clone, Copy)]
pub struct SubjectKeys<'a> {
    /// This sidecar's issuer.
    pub issuer: &'a str,
    /// This sidecar's published keys, if loaded.
    pub own: Option<&'a KeySet>,
    /// The registered external identity providers.
    pub external: &'a [ExternalIssuer],
}

/// Verifies `token` as a subject token at `now` with keymesh-core's verifier: an access token of this sidecar
/// (RFC 9068 `typ`, `jti`), or of a registered external provider whose token names one of the provider's allowed
/// audiences. Expired tokens are refused without leeway. Revocation is checked by [`is_revoked`] and when the
/// exchanged token is recorded.
pub fn verify_subject(
    token: &str,
    keys: SubjectKeys<'_>,
    now: u64,
) -> Result<SubjectToken, ExchangeError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let refuse = |why: &str| {
        tracing::info!(why, "subject token refused");
        ExchangeError::InvalidSubject
    };
    let own = keys.own.and_then(|own| {
        access_token::has_access_token_type(token).then(|| {
            keymesh_core::policy::verify_jwt(token, own, Some(&[keys.issuer.to_owned()]), 0, now)
        })
    });
    let (claims, own) = match own {
        Some(Ok(claims)) if claims.token_id.is_some() => (claims, true),
        Some(Ok(_)) => return Err(refuse("own token without jti")),
        Some(Err(keymesh_core::CredentialError::Expired)) => return Err(refuse("expired")),
        _ => (
            verify_external(token, keys.external, now).map_err(refuse)?,
            false,
        ),
    };
    Ok(SubjectToken {
        subject: claims.subject,
        scopes: claims.scopes,
        expires_at: u64::try_from(claims.expires_at).map_err(|_| refuse("exp"))?,
        jti: claims.token_id,
        actors: claims.actors,
        may_act: claims.may_act,
        own,
    })
}

/// Verifies a token of an external provider: the one its `iss` names, if registered and with keys.
fn verify_external(
    token: &str,
    external: &[ExternalIssuer],
    now: i64,
) -> Result<AccessClaims, &'static str> {
    let issuer = unverified_issuer(token).ok_or("malformed")?;
    let provider = external
        .iter()
        .find(|p| p.issuer == issuer)
        .ok_or("unknown issuer")?;
    let entry = provider.bundle_entry().ok_or("provider without keys")?;
    let bundle = BundleDto {
        version: 0,
        since: None,
        issuers: vec![entry],
        api_keys: Default::default(),
        revoked_tokens: Vec::new(),
    };
    let (keys, _) = KeySet::from_bundle(&bundle).map_err(|_| "provider keys unusable")?;
    let claims = keymesh_core::policy::verify_jwt(
        token,
        &keys,
        Some(std::slice::from_ref(&provider.issuer)),
        0,
        now,
    )
    .map_err(|_| "signature, issuer, claims or expiry")?;
    if !claims
        .audience
        .iter()
        .any(|aud| keys.issuer_allows(&claims.issuer, aud))
    {
        return Err("audience not allowed for the provider");
    }
    Ok(claims)
}

/// The `iss` of a compact JWS, read without verification: only to pick the key set that verification then uses,
/// which itself requires `iss` to be that key set's issuer.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    use base64ct::{Base64UrlUnpadded, Encoding};
    let payload = token.split('.').nth(1)?;
    let bytes = Base64UrlUnpadded::decode_vec(payload).ok()?;
    serde_json::from_slice::<Issuer>(&bytes).ok().map(|i| i.iss)
}

/// What an exchanged token may be: its audience and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// The target APIs.
    pub audience: Vec<String>,
    /// The scopes.
    pub scopes: Vec<String>,
}

/// The policy of an exchange by `client` for `subject`: `may_act` (when the subject token has one) must name the
/// client; every target must be one of the client's exchange resources (all of them when none is named); the
/// scopes are the requested ones, each held by the subject token and allowed to the client (all such scopes when
/// none is requested).
pub fn narrow(
    client: &ClientRecord,
    subject: &SubjectToken,
    targets: &[String],
    scope: Option<&str>,
) -> Result<Narrowed, ExchangeError> {
    if subject
        .may_act
        .as_deref()
        .is_some_and(|may| may != client.client_id)
    {
        tracing::info!(client_id = %client.client_id, "subject token's may_act names another party");
        return Err(ExchangeError::InvalidSubject);
    }
    if subject.actors.len() >= MAX_ACTOR_DEPTH {
        tracing::info!(client_id = %client.client_id, "subject token's delegation chain is at its limit");
        return Err(ExchangeError::InvalidSubject);
    }
    if targets.len() > MAX_TARGETS {
        return Err(ExchangeError::InvalidTarget);
    }
    let audience = super::select_resources(&client.exchange_resources, targets).ok_or_else(|| {
        tracing::info!(client_id = %client.client_id, "exchange target outside the client's policy");
        ExchangeError::InvalidTarget
    })?;
    let allowed: Vec<String> = subject
        .scopes
        .iter()
        .filter(|s| client.scopes.contains(s))
        .cloned()
        .collect();
    let scopes = select_scopes(&allowed, scope).ok_or(ExchangeError::InvalidScope)?;
    Ok(Narrowed { audience, scopes })
}

/// The grant id of the family of tokens exchanged from the token `jti`.
fn family(jti: &str) -> String {
    format!("exchange.{jti}")
}

/// `KEYS[1]` = the new token's ancestors list, then per ancestor `a` three keys: the revoked marker of `a`, the
/// family of `a` and its tokens; `ARGV[1]` = new jti, `ARGV[2]` = its exp, `ARGV[3]` = TTL, `ARGV[4]` = the
/// ancestors, space-separated. Returns 1, or 0 when an ancestor is revoked.
const RECORD: &str = r"
local ancestors = (#KEYS - 1) / 3
for i = 0, ancestors - 1 do
  if redis.call('EXISTS', KEYS[2 + i * 3]) == 1 then return 0 end
  if redis.call('HGET', KEYS[3 + i * 3], 'revoked') == '1' then return 0 end
end
for i = 0, ancestors - 1 do
  local family, tokens = KEYS[3 + i * 3], KEYS[4 + i * 3]
  redis.call('HSETNX', family, 'data', 'exchange')
  if redis.call('TTL', family) < tonumber(ARGV[3]) then redis.call('EXPIRE', family, ARGV[3]) end
  redis.call('ZADD', tokens, ARGV[2], ARGV[1])
  if redis.call('TTL', tokens) < tonumber(ARGV[3]) then redis.call('EXPIRE', tokens, ARGV[3]) end
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
return 1
";

/// `KEYS[3]`/`KEYS[4]` = the token's family and its tokens; `ARGV[3]` = marker prefix, `ARGV[4]` = jti, `ARGV[5]`
/// = exp, `ARGV[6]` = now, `ARGV[7]` = grace, `ARGV[8]` = family marker TTL. Returns `{revoked, exchanged
/// tokens revoked}`.
const REVOKE_WITH_FAMILY: &str = r"
local revoked = revoke_jti(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
local family = revoke_grant(KEYS[3], KEYS[4], ARGV[8], ARGV[3], ARGV[6], ARGV[7])
return {revoked, family}
";

static RECORD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RECORD));
static REVOKE_WITH_FAMILY_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| commit::script(&format!("{REVOKE_LUA}\n{REVOKE_WITH_FAMILY}")));

/// Records the exchanged token `jti` (valid until `exp`) under the families of `subject_jti` and of every
/// ancestor of it. Returns `false`, recording nothing, when any of them is revoked: the token must then not be
/// handed out.
pub async fn record<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    subject_jti: &str,
    jti: &str,
    exp: u64,
    now: u64,
) -> redis::RedisResult<bool> {
    // Written once, before the subject token was handed out, so reading it outside the script is not a race.
    let above: Option<String> = redis::cmd("GET")
        .arg(names.exchange_ancestors(subject_jti))
        .query_async(conn)
        .await?;
    let mut ancestors: Vec<&str> = above.as_deref().unwrap_or("").split_whitespace().collect();
    ancestors.push(subject_jti);
    let ttl = exp
        .saturating_add(REVOCATION_GRACE_SECS)
        .saturating_sub(now)
        .max(1);
    let mut invocation = RECORD_SCRIPT.key(names.exchange_ancestors(jti));
    for ancestor in &ancestors {
        invocation
            .key(names.revoked_token(ancestor))
            .key(names.grant(&family(ancestor)))
            .key(names.grant_tokens(&family(ancestor)));
    }
    let recorded: u64 = invocation
        .arg(jti)
        .arg(exp)
        .arg(ttl)
        .arg(ancestors.join(" "))
        .invoke_async(conn)
        .await?;
    Ok(recorded == 1)
}

/// Whether the subject token `jti` is revoked.
pub async fn is_revoked<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    jti: &str,
) -> redis::RedisResult<bool> {
    crate::oauth::revocation::is_revoked(conn, names, jti).await
}

/// Revokes the access token `jti` (valid until `exp`) and every token exchanged from it, directly or down a
/// chain. Returns whether this call revoked the token, and how many exchanged tokens it revoked.
pub async fn revoke_with_exchanged<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    jti: &str,
    exp: u64,
    now: u64,
) -> redis::RedisResult<(bool, u64)> {
    let family_id = family(jti);
    let marker_ttl = exp
        .saturating_add(REVOCATION_GRACE_SECS)
        .saturating_sub(now)
        .max(1);
    let mut invocation = commit::invocation(&REVOKE_WITH_FAMILY_SCRIPT, names);
    invocation
        .key(names.grant(&family_id))
        .key(names.grant_tokens(&family_id))
        .arg(names.revoked_token(""))
        .arg(jti)
        .arg(exp)
        .arg(now)
        .arg(REVOCATION_GRACE_SECS)
        .arg(marker_ttl);
    let (version, family): (u64, u64) = invocation.invoke_async(conn).await?;
    Ok((version != 0, family))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::oauth::clients::GrantType;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "orders".into(),
            name: None,
            secret_hash: String::new(),
            public: false,
            resources: strings(&["https://orders.example"]),
            scopes: strings(&["payments:read", "payments:write", "orders:read"]),
            redirect_uris: vec![],
            grant_types: vec![GrantType::TokenExchange],
            tier: None,
            exchange_resources: strings(&["https://payments.example", "https://ledger.example"]),
            created_at: 0,
            registration: None,
        }
    }

    fn subject(scopes: &[&str]) -> SubjectToken {
        SubjectToken {
            subject: "alice".into(),
            scopes: strings(scopes),
            expires_at: 100,
            jti: Some("j".into()),
            actors: vec![],
            may_act: None,
            own: true,
        }
    }

    #[test]
    fn scopes_are_the_subjects_that_the_client_may_request() {
        let subject = subject(&["orders:read", "payments:read", "admin"]);
        let targets = strings(&["https://payments.example"]);
        let narrowed = narrow(&client(), &subject, &targets, None).unwrap();
        assert_eq!(narrowed.audience, targets);
        assert_eq!(narrowed.scopes, strings(&["orders:read", "payments:read"]));
        let one = narrow(&client(), &subject, &targets, Some("payments:read")).unwrap();
        assert_eq!(one.scopes, strings(&["payments:read"]));
    }

    #[test]
    fn widening_is_refused() {
        let subject = subject(&["payments:read", "admin"]);
        let targets = strings(&["https://payments.example"]);
        // The client may request payments:write, but the subject token does not hold it.
        assert_eq!(
            narrow(&client(), &subject, &targets, Some("payments:write")),
            Err(ExchangeError::InvalidScope)
        );
        // The subject token holds admin, but the client may not request it.
        assert_eq!(
            narrow(&client(), &subject, &targets, Some("admin")),
            Err(ExchangeError::InvalidScope)
        );
    }

    #[test]
    fn targets_must_be_exchange_resources() {
        let subject = subject(&["payments:read"]);
        for bad in [
            &["https://orders.example"][..],
            &["https://evil.example"],
            &["https://payments.example", "https://evil.example"],
            &["https://payments.example#x"],
        ] {
            assert_eq!(
                narrow(&client(), &subject, &strings(bad), None),
                Err(ExchangeError::InvalidTarget),
                "{bad:?}"
            );
        }
        let all = narrow(&client(), &subject, &[], None).unwrap();
        assert_eq!(all.audience, client().exchange_resources);
        let many = vec!["https://payments.example".to_owned(); MAX_TARGETS + 1];
        assert_eq!(
            narrow(&client(), &subject, &many, None),
            Err(ExchangeError::InvalidTarget)
        );
    }

    #[test]
    fn may_act_must_name_the_client() {
        let mut subject = subject(&["payments:read"]);
        subject.may_act = Some("billing".into());
        assert_eq!(
            narrow(&client(), &subject, &[], None),
            Err(ExchangeError::InvalidSubject)
        );
        subject.may_act = Some("orders".into());
        assert!(narrow(&client(), &subject, &[], None).is_ok());
    }

    #[test]
    fn chains_stop_at_the_act_depth_the_filters_accept() {
        let mut subject = subject(&["payments:read"]);
        subject.actors = vec!["svc".to_owned(); MAX_ACTOR_DEPTH - 1];
        assert!(narrow(&client(), &subject, &[], None).is_ok());
        subject.actors.push("svc".to_owned());
        assert_eq!(
            narrow(&client(), &subject, &[], None),
            Err(ExchangeError::InvalidSubject)
        );
    }

    #[test]
    fn issuer_is_read_only_from_a_well_formed_payload() {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let payload = Base64UrlUnpadded::encode_string(br#"{"iss":"https://idp.example"}"#);
        assert_eq!(
            unverified_issuer(&format!("h.{payload}.s")).as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(unverified_issuer("nodots"), None);
        assert_eq!(unverified_issuer("h.!!!.s"), None);
    }
}
