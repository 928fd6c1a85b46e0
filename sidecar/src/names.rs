//! Names of the Redis keys and channels, all under the configured prefix.
//!
//! The prefix lets several deployments (or tests) share one Redis without seeing each other's data.

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

    /// Hash of signing keys: kid → stored key record (JSON).
    pub fn signing_keys(&self) -> String {
        format!("{}signing:keys", self.prefix)
    }

    /// String holding the kid of the key that signs new tokens.
    pub fn signing_active(&self) -> String {
        format!("{}signing:active", self.prefix)
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
}
