//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592), under the operator's policy
//! ([`RegistrationSettings`]).
//!
//! A registered client is an ordinary client record ([`ClientRecord`]) with a [`Registration`] attached: how it
//! registered, and the SHA-256 of its registration access token (the token itself is returned once and never
//! stored). Until it first obtains a token, the record carries a Redis expiry of `unused_ttl_secs`, so
//! registrations left unused disappear by themselves; the token endpoint removes the expiry on first use.
//! Deleting a registration revokes every grant of the client, and with them its refresh tokens and the access
//! tokens issued from them, which reach every proxy through the bundle.

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::RegistrationSettings;
use crate::oauth::clients::{
    ClientError, ClientRecord, ClientStore, GrantType, NewClient, RegisteredClient,
};
use crate::oauth::grants::{GrantRecord, GrantStore};
use crate::oauth::{digest, random_token, SECRET_BYTES};
use crate::store::names::KeyNames;

pub use crate::oauth::registration_record::{RegisteredVia, Registration};

/// RFC 7591 §2 client metadata as a client sends it. Fields keymesh does not use are ignored (§2: the server
/// may), and are not echoed back.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    /// RFC 7592 §2.2: an update names the client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Redirect URIs (required: only the code grant is offered).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`; `client_secret_basic` if absent (§2).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// `authorization_code` and optionally `refresh_token`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Only `code`.
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    /// Shown on the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Space-separated scopes the client will ask for; every policy scope if absent.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Why a registration request was refused: RFC 7591 §3.2.2 and RFC 6750 errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// Registration is off (no initial access token and no anonymous policy).
    #[error("registration is not enabled")]
    Disabled,
    /// The initial or registration access token is missing or wrong (RFC 6750 `invalid_token`).
    #[error("invalid_token")]
    InvalidToken,
    /// A redirect URI is not acceptable (§3.2.2 `invalid_redirect_uri`).
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
    /// Other metadata is not acceptable (§3.2.2 `invalid_client_metadata`).
    #[error("invalid_client_metadata: {0}")]
    InvalidMetadata(String),
    /// Too many registrations from this source: retry after this many seconds.
    #[error("too many registrations from this source")]
    RateLimited(u64),
    /// Storing or reading the client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A client as the registration endpoints describe it (RFC 7591 §3.2.1, RFC 7592 §3). No `Debug`: it holds
/// secrets.
#[derive(Serialize)]
pub struct ClientInformation {
    /// The client identifier.
    pub client_id: String,
    /// The secret, only when one was just issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// When the client was registered.
    pub client_id_issued_at: u64,
    /// 0: secrets do not expire (present whenever a secret is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// The registration access token for the configuration endpoint.
    pub registration_access_token: String,
    /// The client configuration endpoint.
    pub registration_client_uri: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Registered grant types.
    pub grant_types: Vec<GrantType>,
    /// Always `["code"]`.
    pub response_types: [&'static str; 1],
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: String,
    /// The name shown to users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The scopes the client may ask for.
    pub scope: String,
    /// The resources (RFC 8707) the client may ask tokens for (keymesh's extension; RFC 7591 §2 allows them).
    pub resources: Vec<String>,
}

/// Registers, reads, updates and deletes self-registered clients under one policy.
#[derive(Debug, Clone)]
pub struct Registrar<'a> {
    policy: &'a RegistrationSettings,
    names: &'a KeyNames,
    /// Base URL of the configuration endpoint, without the client id.
    client_uri_base: String,
}

/// What the checked metadata comes to.
struct Checked {
    new: NewClient,
    method: String,
}

impl<'a> Registrar<'a> {
    /// A registrar applying `policy`; `client_uri_base` is the configuration endpoint without the client id.
    pub fn new(
        policy: &'a RegistrationSettings,
        names: &'a KeyNames,
        client_uri_base: String,
    ) -> Self {
        Self {
            policy,
            names,
            client_uri_base,
        }
    }

    /// How a request presenting `bearer` (the `Authorization: Bearer` value, if any) may register.
    pub fn admit(&self, bearer: Option<&str>) -> Result<RegisteredVia, RegistrationError> {
        if !self.policy.enabled() {
            return Err(RegistrationError::Disabled);
        }
        match (bearer, &self.policy.initial_access_token) {
            (Some(token), Some(expected)) if expected.verify(token) => {
                Ok(RegisteredVia::InitialAccessToken)
            }
            // A wrong token is refused even where anonymous registration would be allowed: it is a mistake, or a
            // guess, not an anonymous client.
            (Some(_), _) => Err(RegistrationError::InvalidToken),
            (None, _) if self.policy.anonymous => Ok(RegisteredVia::Anonymous),
            (None, _) => Err(RegistrationError::InvalidToken),
        }
    }

    /// Counts one registration from `source`; refused once `rate_per_minute` are counted in the current minute.
    pub async fn count_attempt<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        source: &str,
    ) -> Result<(), RegistrationError> {
        let key = self.names.registration_rate(source);
        let (count, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(60)
            .arg("NX")
            .ignore()
            .ttl(&key)
            .query_async(conn)
            .await?;
        if count > self.policy.rate_per_minute {
            return Err(RegistrationError::RateLimited(
                u64::try_from(ttl).unwrap_or(60).clamp(1, 60),
            ));
        }
        Ok(())
    }

    /// Checks `metadata` against the policy for a client registering `via`.
    fn check(
        &self,
        metadata: ClientMetadata,
        via: RegisteredVia,
    ) -> Result<Checked, RegistrationError> {
        let method = metadata
            .token_endpoint_auth_method
            .unwrap_or_else(|| "client_secret_basic".to_owned());
        let public = match method.as_str() {
            "none" => true,
            "client_secret_basic" | "client_secret_post" => false,
            other => {
                return Err(RegistrationError::InvalidMetadata(format!(
                    "token_endpoint_auth_method {other:?} is not supported"
                )))
            }
        };
        if via == RegisteredVia::Anonymous && !public {
            return Err(RegistrationError::InvalidMetadata(
                "anonymous registration is for public clients only (token_endpoint_auth_method none)".into(),
            ));
        }
        if metadata.redirect_uris.is_empty() {
            return Err(RegistrationError::InvalidRedirectUri(
                "at least one redirect URI is required".into(),
            ));
        }
        for uri in &metadata.redirect_uris {
            crate::oauth::redirect_uri::validate(uri).map_err(|reason| {
                RegistrationError::InvalidRedirectUri(format!("{uri}: {reason}"))
            })?;
            if via == RegisteredVia::Anonymous && !is_web_or_loopback(uri) {
                return Err(RegistrationError::InvalidRedirectUri(format!(
                    "{uri}: anonymous clients may use https or loopback http redirect URIs only"
                )));
            }
        }
        let mut grant_types = Vec::new();
        for grant in metadata
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into()])
        {
            match grant.parse::<GrantType>() {
                Ok(g @ (GrantType::AuthorizationCode | GrantType::RefreshToken)) => grant_types.push(g),
                _ => {
                    return Err(RegistrationError::InvalidMetadata(format!(
                        "grant type {grant:?} cannot be registered: use authorization_code and refresh_token"
                    )))
                }
            }
        }
        if !grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(RegistrationError::InvalidMetadata(
                "grant_types must include authorization_code".into(),
            ));
        }
        if metadata
            .response_types
            .is_some_and(|types| types.iter().any(|t| t != "code"))
        {
            return Err(RegistrationError::InvalidMetadata(
                "response_types may only be code".into(),
            ));
        }
        let scopes = match metadata.scope.as_deref() {
            None => self.policy.scopes.clone(),
            Some(requested) => crate::oauth::select_scopes(&self.policy.scopes, Some(requested))
                .ok_or_else(|| {
                    RegistrationError::InvalidMetadata(format!(
                        "scope must be within: {}",
                        self.policy.scopes.join(" ")
                    ))
                })?,
        };
        Ok(Checked {
            new: NewClient {
                client_id: format!("dyn-{}", random_token(16)),
                name: metadata.client_name,
                secret: None,
                public,
                resources: self.policy.resources.clone(),
                scopes,
                redirect_uris: metadata.redirect_uris,
                grant_types,
                force: false,
                // Tiers are the operator's to set: a self-registered client has none.
                tier: None,
            },
            method,
        })
    }

    /// RFC 7591 §3: registers a client described by `metadata`.
    pub async fn register<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        metadata: ClientMetadata,
        via: RegisteredVia,
        now: u64,
    ) -> Result<ClientInformation, RegistrationError> {
        let checked = self.check(metadata, via)?;
        let store = ClientStore::new(self.names.clone());
        let registered = store
            .register(conn, checked.new.clone(), now)
            .await
            .map_err(map_client_error)?;
        let access_token = random_token(SECRET_BYTES);
        let registration = Registration {
            via,
            access_token_digest: digest(&access_token),
            token_endpoint_auth_method: checked.method,
        };
        // The record was just created under a random id nobody else knows; attach the registration and the
        // expiry of unused registrations. If that fails, the half-made client is removed.
        if let Err(e) = self
            .attach(
                conn,
                &registered.client_id,
                Some(&registration),
                Some(self.policy.unused_ttl_secs),
            )
            .await
        {
            let _ = store.delete(conn, &registered.client_id).await;
            return Err(e);
        }
        tracing::info!(client_id = %registered.client_id, via = ?via, "client registered");
        Ok(self.information(
            &registered.client_id,
            &registered,
            &registration,
            access_token,
            now,
        ))
    }

    /// The self-registered client `client_id` if `presented` is its registration access token; `InvalidToken`
    /// otherwise (an unknown client and a wrong token look the same, RFC 7592 §3).
    pub async fn authenticate<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client_id: &str,
        presented: Option<&str>,
    ) -> Result<(ClientRecord, Registration), RegistrationError> {
        let presented = presented.ok_or(RegistrationError::InvalidToken)?;
        let store = ClientStore::new(self.names.clone());
        let record = store
            .get(conn, client_id)
            .await?
            .ok_or(RegistrationError::InvalidToken)?;
        let registration = record
            .registration
            .clone()
            .ok_or(RegistrationError::InvalidToken)?;
        let matches: bool = digest(presented)
            .as_bytes()
            .ct_eq(registration.access_token_digest.as_bytes())
            .into();
        if !matches {
            return Err(RegistrationError::InvalidToken);
        }
        Ok((record, registration))
    }

    /// RFC 7592 §2.1: the client's current configuration. The registration access token is not rotated on
    /// reads; the response names the one presented.
    pub fn read(
        &self,
        record: &ClientRecord,
        registration: &Registration,
        presented: &str,
    ) -> ClientInformation {
        let client = RegisteredClient {
            client_id: record.client_id.clone(),
            client_secret: String::new(),
            public: record.public,
            resources: record.resources.clone(),
            scopes: record.scopes.clone(),
            redirect_uris: record.redirect_uris.clone(),
            grant_types: record.grant_types.clone(),
        };
        let mut info = self.information(
            &record.client_id,
            &client,
            registration,
            presented.to_owned(),
            record.created_at,
        );
        info.client_name = record.name.clone();
        info
    }

    /// RFC 7592 §2.2: replaces the client's metadata, under the policy it registered under. The registration
    /// access token rotates (the old one stops working at once); a confidential client gets a new secret. An
    /// unused registration keeps its expiry.
    pub async fn update<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        current: &ClientRecord,
        registration: &Registration,
        metadata: ClientMetadata,
    ) -> Result<ClientInformation, RegistrationError> {
        if metadata.client_id.as_deref() != Some(current.client_id.as_str()) {
            return Err(RegistrationError::InvalidMetadata(
                "client_id must be present and match the client".into(),
            ));
        }
        let mut checked = self.check(metadata, registration.via)?;
        checked.new.client_id = current.client_id.clone();
        checked.new.force = true;
        let key = self.names.client(&current.client_id);
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(conn).await?;
        let store = ClientStore::new(self.names.clone());
        let registered = store
            .register(conn, checked.new, current.created_at)
            .await
            .map_err(map_client_error)?;
        let access_token = random_token(SECRET_BYTES);
        let rotated = Registration {
            via: registration.via,
            access_token_digest: digest(&access_token),
            token_endpoint_auth_method: checked.method,
        };
        self.attach(
            conn,
            &current.client_id,
            Some(&rotated),
            u64::try_from(ttl).ok().filter(|t| *t > 0),
        )
        .await?;
        tracing::info!(client_id = %current.client_id, "client registration updated");
        Ok(self.information(
            &current.client_id,
            &registered,
            &rotated,
            access_token,
            current.created_at,
        ))
    }

    /// RFC 7592 §2.3: deletes the client and revokes every grant issued to it (its refresh tokens, and the access
    /// tokens issued from them, which reach every proxy in the next bundle). Returns how many access tokens were
    /// revoked.
    pub async fn delete<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client_id: &str,
        now: u64,
    ) -> Result<u64, RegistrationError> {
        ClientStore::new(self.names.clone())
            .delete(conn, client_id)
            .await?;
        let revoked = revoke_client_grants(conn, self.names, client_id, now).await?;
        tracing::info!(%client_id, revoked, "client registration deleted");
        Ok(revoked)
    }

    /// Writes `registration` into the stored record (keeping its expiry unless `expire_in` is given).
    async fn attach<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client_id: &str,
        registration: Option<&Registration>,
        expire_in: Option<u64>,
    ) -> Result<(), RegistrationError> {
        let store = ClientStore::new(self.names.clone());
        let mut record = store
            .get(conn, client_id)
            .await?
            .ok_or_else(|| RegistrationError::InvalidMetadata("client vanished".into()))?;
        record.registration = registration.cloned();
        let json = serde_json::to_string(&record).map_err(ClientError::Encode)?;
        let mut set = redis::cmd("SET");
        set.arg(self.names.client(client_id)).arg(json).arg("XX");
        match expire_in {
            Some(secs) => set.arg("EX").arg(secs),
            None => set.arg("KEEPTTL"),
        };
        let _: Option<String> = set.query_async(conn).await?;
        Ok(())
    }

    fn information(
        &self,
        client_id: &str,
        client: &RegisteredClient,
        registration: &Registration,
        access_token: String,
        issued_at: u64,
    ) -> ClientInformation {
        let secret = (!client.client_secret.is_empty()).then(|| client.client_secret.clone());
        ClientInformation {
            client_id: client_id.to_owned(),
            client_secret_expires_at: (!client.public).then_some(0),
            client_secret: secret,
            client_id_issued_at: issued_at,
            registration_access_token: access_token,
            registration_client_uri: format!("{}/{client_id}", self.client_uri_base),
            redirect_uris: client.redirect_uris.clone(),
            grant_types: client.grant_types.clone(),
            response_types: ["code"],
            token_endpoint_auth_method: registration.token_endpoint_auth_method.clone(),
            client_name: None,
            scope: client.scopes.join(" "),
            resources: client.resources.clone(),
        }
    }
}

/// A client has obtained a token: its registration no longer expires for being unused.
pub async fn mark_used<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    client_id: &str,
) -> redis::RedisResult<()> {
    redis::cmd("PERSIST")
        .arg(names.client(client_id))
        .query_async(conn)
        .await
}

/// Revokes every grant issued to `client_id`; returns how many access tokens that revoked. Grants are found by
/// scanning, which is fine for what it serves: deleting a client is rare, and a grant outlives its client only
/// until it expires.
pub async fn revoke_client_grants<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    client_id: &str,
    now: u64,
) -> redis::RedisResult<u64> {
    let keys = crate::store::scan::scan_keys(conn, &names.grant("*")).await?;
    let grants = GrantStore::new(names.clone());
    let mut revoked = 0u64;
    for key in keys.iter().filter(|k| !k.ends_with(":tokens")) {
        let data: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("data")
            .query_async(conn)
            .await?;
        let Some(grant) = data.and_then(|d| serde_json::from_str::<GrantRecord>(&d).ok()) else {
            continue;
        };
        if grant.client_id != client_id {
            continue;
        }
        match grants.revoke(conn, &grant.grant_id, now).await {
            Ok(n) => revoked = revoked.saturating_add(n),
            Err(error) => {
                tracing::warn!(%client_id, grant_id = %grant.grant_id, %error, "cannot revoke grant");
            }
        }
    }
    Ok(revoked)
}

/// https, or http on a loopback host (RFC 8252 §7.3).
fn is_web_or_loopback(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    lower.starts_with("https://")
        || ["http://127.0.0.1", "http://[::1]", "http://localhost"]
            .iter()
            .any(|p| {
                lower
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            })
}

fn map_client_error(error: ClientError) -> RegistrationError {
    match error {
        ClientError::InvalidRedirectUri { uri, reason } => {
            RegistrationError::InvalidRedirectUri(format!("{uri}: {reason}"))
        }
        ClientError::InvalidName => {
            RegistrationError::InvalidMetadata("client_name is not acceptable".into())
        }
        ClientError::InvalidScope(s) => {
            RegistrationError::InvalidMetadata(format!("invalid scope {s:?}"))
        }
        ClientError::NoRedirectUris
        | ClientError::RefreshWithoutCode
        | ClientError::PublicClientCredentials
        | ClientError::NoResources
        | ClientError::InvalidResource(_) => RegistrationError::InvalidMetadata(error.to_string()),
        other => RegistrationError::Client(other),
    }
}

#[cfg(test)]
mod tests;
