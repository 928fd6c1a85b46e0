//! Decisions as values, and their RFC 6750 rendering. The adapter maps a [`Verdict`] to Envoy actions; it never
//! decides anything itself.

use crate::config::CredentialMode;
use crate::error::CredentialError;
use crate::identity::{IdentityHeader, IdentityHeaders};

/// Request headers keymesh sets upstream. Any copy sent by the client is removed first, so an upstream can trust
/// them.
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-keymesh-subject",
    "x-keymesh-actor",
    "x-keymesh-client-id",
    "x-keymesh-scope",
    "x-keymesh-issuer",
    "x-keymesh-credential",
    crate::tier::TIER_HEADER,
];

/// Who a verified request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `client_id`, when the token has one.
    pub client_id: Option<String>,
    /// `act.sub` of a token issued by token exchange: the party calling on the subject's behalf.
    pub actor: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `iss` of a token; `None` for an API key.
    pub issuer: Option<String>,
    /// Which kind of credential was verified: `jwt` or `api_key`.
    pub credential: &'static str,
    /// The rate tier of the API key, or of the client a token was issued to (its `keymesh_tier` claim).
    pub tier: Option<String>,
    /// The identity headers the route forwards.
    pub forward: IdentityHeaders,
}

impl Identity {
    /// The identity headers to set upstream: those the route forwards that this identity has a value for.
    pub fn upstream_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(IdentityHeader::ALL.len());
        for header in IdentityHeader::ALL {
            if !self.forward.contains(header) {
                continue;
            }
            let value = match header {
                IdentityHeader::Subject => Some(self.subject.clone()),
                IdentityHeader::ClientId => self.client_id.clone(),
                IdentityHeader::Scope => Some(self.scopes.join(" ")),
                IdentityHeader::Issuer => self.issuer.clone(),
                IdentityHeader::Credential => Some(self.credential.to_owned()),
                IdentityHeader::Actor => self.actor.clone(),
                IdentityHeader::Tier => self.tier.clone(),
            };
            if let Some(value) = value {
                headers.push((header.header_name(), value));
            }
        }
        headers
    }
}

/// Why a request was refused; for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No key bundle has arrived yet: fail closed.
    NoKeyMaterial,
    /// Key material is older than the maximum age: fail closed.
    StaleKeyMaterial,
    /// No route rule covers the path: fail closed.
    NoRoute,
    /// The token was missing or invalid.
    Token(CredentialError),
    /// A valid API key for another API.
    WrongApi,
    /// The credential lacks scopes the route requires.
    InsufficientScope {
        /// The scopes that were missing.
        missing: Vec<String>,
    },
}

/// A refusal, ready to be sent as a local response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status.
    pub status: u16,
    /// Why; for logs and metrics, not for the client.
    pub reason: DenyReason,
    /// Response headers (`WWW-Authenticate`, `content-type`, `cache-control`).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body with `error` and `error_description`.
    pub body: String,
}

/// The filter's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through with these identity headers.
    Allow(Identity),
    /// Answer it locally.
    Deny(Denial),
}

impl Denial {
    /// 401 or 400 for a bearer-token problem, per RFC 6750 §3.1.
    pub fn token(error: CredentialError, realm: &str) -> Self {
        let (status, code) = match error {
            CredentialError::Ambiguous => (400, "invalid_request"),
            _ => (401, "invalid_token"),
        };
        let description = error.description();
        let challenge = format!(
            "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{description}\""
        );
        Self::render(
            status,
            DenyReason::Token(error),
            Some(challenge),
            code,
            description,
        )
    }

    /// 401 for an API-key problem, with an `apikey` challenge.
    pub fn api_key(error: CredentialError, realm: &str) -> Self {
        let description = error.description();
        let challenge = format!(
            "apikey realm=\"{realm}\", error=\"invalid_key\", error_description=\"{description}\""
        );
        Self::render(
            401,
            DenyReason::Token(error),
            Some(challenge),
            "invalid_key",
            description,
        )
    }

    /// 401 when no credential (or one the route does not take) was presented: a bare challenge for every scheme
    /// the route accepts (RFC 6750 §3.1: no error code when authentication is simply missing).
    pub fn unauthenticated(error: CredentialError, mode: CredentialMode, realm: &str) -> Self {
        let bearer = format!("Bearer realm=\"{realm}\"");
        let apikey = format!("apikey realm=\"{realm}\"");
        let challenge = match mode {
            CredentialMode::Jwt => bearer,
            CredentialMode::ApiKey => apikey,
            CredentialMode::Either => format!("{bearer}, {apikey}"),
        };
        let code = if error == CredentialError::Missing {
            "invalid_token"
        } else {
            "invalid_request"
        };
        let description = error.description();
        Self::render(
            401,
            DenyReason::Token(error),
            Some(challenge),
            code,
            description,
        )
    }

    /// 403 for an API key that is valid but not for this API.
    pub fn api_key_wrong_api(realm: &str) -> Self {
        let description = "key not valid for this API";
        let challenge = format!("apikey realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\"");
        Self::render(
            403,
            DenyReason::WrongApi,
            Some(challenge),
            "insufficient_scope",
            description,
        )
    }

    /// 403 `insufficient_scope` naming every scope the route requires (RFC 6750 §3.1), in the challenge of the
    /// scheme that was used (`Bearer` or `apikey`).
    pub fn insufficient_scope(
        scheme: &str,
        required: &[String],
        missing: Vec<String>,
        realm: &str,
    ) -> Self {
        let scope = required.join(" ");
        let description = "credential lacks a required scope";
        let challenge = format!(
            "{scheme} realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{scope}\""
        );
        Self::render(
            403,
            DenyReason::InsufficientScope { missing },
            Some(challenge),
            "insufficient_scope",
            description,
        )
    }

    /// 503 until the first key bundle arrives.
    pub fn no_key_material() -> Self {
        Self::render(
            503,
            DenyReason::NoKeyMaterial,
            None,
            "temporarily_unavailable",
            "keymesh has not received key material from its sidecar yet",
        )
    }

    /// 503 once key material is older than the configured maximum age (the sidecar has not answered for that
    /// long), on routes that fail closed.
    pub fn stale_key_material(age_secs: u64) -> Self {
        let description =
            format!("keymesh key material is stale: no answer from its sidecar for {age_secs} s");
        Self::render(
            503,
            DenyReason::StaleKeyMaterial,
            None,
            "temporarily_unavailable",
            &description,
        )
    }

    /// 403 when no route rule covers the path.
    pub fn no_route() -> Self {
        Self::render(
            403,
            DenyReason::NoRoute,
            None,
            "access_denied",
            "no keymesh rule covers this path",
        )
    }

    /// Adds `resource_metadata="<url>"` (RFC 9728 §5.1) to the `Bearer` challenge, so a client that meets the
    /// refusal can discover the authorization server and the resource to ask a token for. `apikey` challenges
    /// are left as they are: the metadata describes OAuth access, not API keys.
    pub fn with_resource_metadata(mut self, url: &str) -> Self {
        let param = format!(", resource_metadata=\"{url}\"");
        for (name, value) in &mut self.headers {
            if *name != "www-authenticate" || !value.starts_with("Bearer ") {
                continue;
            }
            // A route taking either credential offers `Bearer …, apikey …`: the parameter belongs to the first.
            match value.find(", apikey ") {
                Some(at) => value.insert_str(at, &param),
                None => value.push_str(&param),
            }
        }
        self
    }

    fn render(
        status: u16,
        reason: DenyReason,
        challenge: Option<String>,
        code: &str,
        description: &str,
    ) -> Self {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        if let Some(c) = challenge {
            headers.push(("www-authenticate", c));
        }
        let body =
            serde_json::json!({ "error": code, "error_description": description }).to_string();
        Self {
            status,
            reason,
            headers,
            body,
        }
    }
}

impl CredentialError {
    /// The fixed, terse text a client sees; never contains token content.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "no access token",
            Self::Ambiguous => "more than one access token",
            Self::MalformedHeader => "malformed authorization header",
            Self::TooLong { .. } => "token too long",
            Self::Malformed(_) | Self::MalformedClaims => "malformed token",
            Self::ForbiddenHeader(_) => "token header not allowed",
            Self::MissingKid | Self::UnknownKid => "unknown signing key",
            Self::AlgorithmMismatch { .. } => "algorithm not allowed for this key",
            Self::BadSignature => "invalid signature",
            Self::MissingClaim(_) => "token lacks a required claim",
            Self::WrongTokenType => "not an access token",
            Self::WrongIssuer => "untrusted issuer",
            Self::Revoked => "token revoked",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::WrongAudience => "token not valid for this API",
            Self::IssuerNotAllowed => "issuer not trusted for this API",
            Self::UnforwardableClaim(_) => "token claims cannot be forwarded",
            Self::ApiKeyMalformed => "malformed API key",
            Self::ApiKeyUnknown => "unknown or revoked API key",
            Self::ApiKeyExpired => "API key expired",
            Self::CredentialNotAccepted => "this API does not accept this kind of credential",
        }
    }

    /// A short stable label for metrics (`verdicts by reason`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Ambiguous => "ambiguous",
            Self::MalformedHeader | Self::Malformed(_) | Self::MalformedClaims => "malformed",
            Self::TooLong { .. } => "too_long",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::MissingKid | Self::UnknownKid => "unknown_kid",
            Self::AlgorithmMismatch { .. } => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongTokenType => "wrong_typ",
            Self::WrongIssuer => "wrong_issuer",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::IssuerNotAllowed => "issuer_not_allowed",
            Self::UnforwardableClaim(_) => "unforwardable_claim",
            Self::ApiKeyMalformed => "api_key_malformed",
            Self::ApiKeyUnknown => "api_key_unknown",
            Self::ApiKeyExpired => "api_key_expired",
            Self::CredentialNotAccepted => "credential_not_accepted",
        }
    }
}
