//! What a client record keeps about a client that registered itself (RFC 7591): how, and the digest of its
//! registration access token. Apart from [`crate::oauth::registration`] so that client records can carry it
//! without importing the registration service.

use serde::{Deserialize, Serialize};

/// How a client registered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisteredVia {
    /// With the operator's initial access token.
    InitialAccessToken,
    /// Anonymously, under the anonymous policy.
    Anonymous,
}

impl RegisteredVia {
    /// How the CLI shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InitialAccessToken => "registered (initial access token)",
            Self::Anonymous => "registered (anonymous)",
        }
    }
}

/// What is kept about a self-registered client besides its client record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// How it registered.
    pub via: RegisteredVia,
    /// SHA-256 (base64url) of the current registration access token.
    pub access_token_digest: String,
    /// How the client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
    pub token_endpoint_auth_method: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("via", &self.via)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .finish_non_exhaustive()
    }
}
