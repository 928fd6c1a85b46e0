//! Names of the Redis keys and channels, all under the configured prefix.
//!
//! The prefix lets several deployments (or tests) share one Redis without seeing each other's data. In a Redis
//! Cluster the prefix carries a hash tag (`{keymesh}:`), which puts every key of a deployment in one hash slot: the
//! Lua scripts that commit a change touch several keys, and a script's keys must share a slot.

/// Builds the Redis key and channel names for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNames {
    prefix: String,
}

impl KeyNames {
    /// Names under `prefix` (for example `keymesh:`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The hash tag of the prefix (see [`crate::support::syntax::hash_tag`]), if it has one.
    pub fn hash_tag(&self) -> Option<&str> {
        crate::support::syntax::hash_tag(&self.prefix)
    }

    /// Hash of signing keys: kid → stored key record (JSON).
    pub fn signing_keys(&self) -> String {
        format!("{}signing:keys", self.prefix)
    }

    /// String holding the kid of the key that signs new tokens.
    pub fn signing_active(&self) -> String {
        format!("{}signing:active", self.prefix)
    }

    /// Hash of signing-key lifecycle states: kid → `next <activate at>`, `active <since>` or
    /// `retiring <remove at>` (seconds since the Unix epoch).
    pub fn signing_states(&self) -> String {
        format!("{}signing:state", self.prefix)
    }

    /// Counter incremented on every change that affects the key bundle.
    pub fn version(&self) -> String {
        format!("{}version", self.prefix)
    }

    /// Pub/sub channel on which the new version is published after each change.
    pub fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// Stream logging every change that affects the bundle; entry ids are `<version>-0`.
    pub fn changelog(&self) -> String {
        format!("{}changelog", self.prefix)
    }

    /// Hash of the registered external identity providers: issuer → record (JSON).
    pub fn external_issuers(&self) -> String {
        format!("{}issuers:external", self.prefix)
    }

    /// Hash of the external providers' fetch status: issuer → status (JSON).
    pub fn external_issuer_status(&self) -> String {
        format!("{}issuers:status", self.prefix)
    }

    /// Lock held by the replica fetching one provider's keys (named by a digest: issuers are URLs).
    pub fn external_issuer_lock(&self, issuer: &str) -> String {
        use base64ct::{Base64UrlUnpadded, Encoding};
        use sha2::{Digest, Sha256};
        let digest = Base64UrlUnpadded::encode_string(&Sha256::digest(issuer.as_bytes()));
        format!("{}issuers:lock:{digest}", self.prefix)
    }

    /// Key of one API key's record.
    pub fn api_key(&self, id: &str) -> String {
        format!("{}apikey:{id}", self.prefix)
    }

    /// `SCAN MATCH` pattern covering every API key record (and not the owner index sets).
    pub fn api_key_pattern(&self) -> String {
        format!("{}apikey:*", self.prefix)
    }

    /// Recovers the API key id from an API key record key, if `key` is one.
    pub fn api_key_id_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("apikey:")
    }

    /// Set of the ids of one owner's API keys.
    pub fn api_keys_of_owner(&self, owner: &str) -> String {
        format!("{}apikeys:owner:{owner}", self.prefix)
    }

    /// Hash of when each API key was last used: id → seconds since the Unix epoch, to the minute.
    pub fn api_keys_last_used(&self) -> String {
        format!("{}apikeys:last_used", self.prefix)
    }

    /// Key of one OAuth client's record.
    pub fn client(&self, client_id: &str) -> String {
        format!("{}client:{client_id}", self.prefix)
    }

    /// `SCAN MATCH` pattern covering every client record (the prefix never contains glob metacharacters).
    pub fn client_pattern(&self) -> String {
        format!("{}client:*", self.prefix)
    }

    /// Recovers the client id from a client record key, if `key` is one.
    pub fn client_id_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("client:")
    }

    /// Counter of client registrations from one source address in the current minute.
    pub fn registration_rate(&self, source: &str) -> String {
        format!("{}registration_rate:{source}", self.prefix)
    }

    /// Key of one user's record.
    pub fn user(&self, username: &str) -> String {
        format!("{}user:{username}", self.prefix)
    }

    /// `SCAN MATCH` pattern covering every user record.
    pub fn user_pattern(&self) -> String {
        format!("{}user:*", self.prefix)
    }

    /// Recovers the username from a user record key, if `key` is one.
    pub fn username_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("user:")
    }

    /// The operator's policy for the API keys one user creates themselves (JSON).
    pub fn key_policy_of_user(&self, username: &str) -> String {
        format!("{}keypolicy:user:{username}", self.prefix)
    }

    /// The operator's policy for the API keys of users without their own (JSON).
    pub fn default_key_policy(&self) -> String {
        format!("{}keypolicy:default", self.prefix)
    }

    /// Key marking an access token as revoked until shortly after it expires; holds the token's `exp`.
    pub fn revoked_token(&self, jti: &str) -> String {
        format!("{}revoked:{jti}", self.prefix)
    }

    /// `SCAN MATCH` pattern covering every revoked-token marker.
    pub fn revoked_token_pattern(&self) -> String {
        format!("{}revoked:*", self.prefix)
    }

    /// Recovers the `jti` from a revoked-token marker key, if `key` is one.
    pub fn revoked_jti_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("revoked:")
    }

    /// Hash holding one authorization code (by the SHA-256 of the code): its grant and whether it was used.
    pub fn auth_code(&self, digest: &str) -> String {
        format!("{}authcode:{digest}", self.prefix)
    }

    /// Hash holding one grant (the family of tokens issued from one authorization code).
    pub fn grant(&self, grant_id: &str) -> String {
        format!("{}grant:{grant_id}", self.prefix)
    }

    /// Sorted set of the access tokens issued from one grant: `jti` scored by `exp`.
    pub fn grant_tokens(&self, grant_id: &str) -> String {
        format!("{}grant:{grant_id}:tokens", self.prefix)
    }

    /// String listing the ancestors of an exchanged token (the `jti`s of the subject tokens of its chain, the
    /// first subject token first), separated by spaces.
    pub fn exchange_ancestors(&self, jti: &str) -> String {
        format!("{}exchanged:{jti}", self.prefix)
    }

    /// Key of one refresh token (by the SHA-256 of the token): the grant it belongs to.
    pub fn refresh_token(&self, digest: &str) -> String {
        format!("{}refresh:{digest}", self.prefix)
    }

    /// Key of one login session of the authorization page (by the SHA-256 of the session cookie).
    pub fn login_session(&self, digest: &str) -> String {
        format!("{}session:{digest}", self.prefix)
    }

    /// Key of one authorization request waiting for the user to log in and consent.
    pub fn pending_authorization(&self, id: &str) -> String {
        format!("{}authreq:{id}", self.prefix)
    }

    /// Counter of recent failed authentications of one client, from all sources.
    pub fn client_auth_failures(&self, client_id: &str) -> String {
        format!("{}authfail:client:{client_id}", self.prefix)
    }

    /// Counter of recent failed authentications of one client from one source (see
    /// [`crate::support::source_address::source_key`]).
    pub fn client_auth_failures_from(&self, client_id: &str, source: &str) -> String {
        format!("{}authfail:client:{client_id}:from:{source}", self.prefix)
    }

    /// Counter of recent failed logins of one user, from all sources.
    pub fn login_failures(&self, username: &str) -> String {
        format!("{}authfail:user:{username}", self.prefix)
    }

    /// Counter of recent failed logins of one user from one source.
    pub fn login_failures_from(&self, username: &str, source: &str) -> String {
        format!("{}authfail:user:{username}:from:{source}", self.prefix)
    }
}
