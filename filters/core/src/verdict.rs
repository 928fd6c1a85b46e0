//! Decisions as values, and their RFC 6750 rendering. The adapter maps a [`Verdict`] to Envoy actions; it never
//! decides anything itself.

use crate::claims::AccessClaims;
use crate::config::CredentialMode;
use crate::error::CredentialError;
use crate::header_pairs::HeaderPairs;
use crate::identity::{IdentityHeader, IdentityHeaders};
use std::rc::Rc;
use std::sync::Arc;

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

/// [`IDENTITY_HEADERS`] as [`IdentityHeader`]s, in the same order.
pub const IDENTITY_HEADER_KINDS: [IdentityHeader; 7] = [
    IdentityHeader::Subject,
    IdentityHeader::Actor,
    IdentityHeader::ClientId,
    IdentityHeader::Scope,
    IdentityHeader::Issuer,
    IdentityHeader::Credential,
    IdentityHeader::Tier,
];

/// Who a verified credential is from, with its identity header values rendered: once per verified token (kept in
/// the token cache with it) or once per API key lookup, so an allowed request copies nothing to forward them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`, or the API key's owner.
    pub subject: String,
    /// `client_id`, when the token has one; the API key's id.
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
    /// `scopes` joined by single spaces: the `x-keymesh-scope` value.
    scope: String,
}

impl Principal {
    /// A principal with these values (the scope header is rendered here).
    pub fn new(
        subject: String,
        client_id: Option<String>,
        actor: Option<String>,
        scopes: Vec<String>,
        issuer: Option<String>,
        credential: &'static str,
        tier: Option<String>,
    ) -> Self {
        Self {
            scope: scopes.join(" "),
            subject,
            client_id,
            actor,
            scopes,
            issuer,
            credential,
            tier,
        }
    }

    /// The principal of a verified access token.
    pub fn of_token(claims: &AccessClaims) -> Self {
        Self::new(
            claims.subject.clone(),
            claims.client_id.clone(),
            claims.actor().map(str::to_owned),
            claims.scopes.clone(),
            Some(claims.issuer.clone()),
            "jwt",
            claims.tier.clone(),
        )
    }

    /// The value of `header` for this principal, if it has one.
    pub fn header_value(&self, header: IdentityHeader) -> Option<&str> {
        match header {
            IdentityHeader::Subject => Some(&self.subject),
            IdentityHeader::ClientId => self.client_id.as_deref(),
            IdentityHeader::Scope => Some(&self.scope),
            IdentityHeader::Issuer => self.issuer.as_deref(),
            IdentityHeader::Credential => Some(self.credential),
            IdentityHeader::Actor => self.actor.as_deref(),
            IdentityHeader::Tier => self.tier.as_deref(),
        }
    }
}

/// Who a verified request is from, and which identity headers its route forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The credential's principal (shared with the token cache).
    pub principal: Rc<Principal>,
    /// The identity headers the route forwards.
    pub forward: IdentityHeaders,
}

impl Identity {
    /// The value of `header` to set upstream: `None` if the route does not forward it or this identity has none.
    pub fn upstream_value(&self, header: IdentityHeader) -> Option<&str> {
        if self.forward.contains(header) {
            self.principal.header_value(header)
        } else {
            None
        }
    }

    /// The identity headers to set upstream: those the route forwards that this identity has a value for.
    pub fn upstream_headers(&self) -> Vec<(&'static str, String)> {
        IdentityHeader::ALL
            .into_iter()
            .filter_map(|h| Some((h.header_name(), self.upstream_value(h)?.to_owned())))
            .collect()
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
    /// What the client gets: rendered once per configuration and shared (an `Arc`, so a configuration stays `Sync`).
    pub reply: Arc<Reply>,
}

/// A local reply, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`WWW-Authenticate`, `content-type`, `cache-control`).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body with `error` and `error_description`.
    pub body: String,
    /// `headers` in the proxy-wasm serialized form, for the adapter to hand to the host as they are.
    pub serialized_headers: HeaderPairs,
}

impl Reply {
    /// A reply with these headers and body (serialized here).
    pub fn new(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Self {
        let serialized_headers =
            HeaderPairs::serialize(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        Self {
            status,
            headers,
            body,
            serialized_headers,
        }
    }
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
        let mut headers = self.reply.headers.clone();
        for (name, value) in &mut headers {
            if *name != "www-authenticate" || !value.starts_with("Bearer ") {
                continue;
            }
            // A route taking either credential offers `Bearer …, apikey …`: the parameter belongs to the first.
            match value.find(", apikey ") {
                Some(at) => value.insert_str(at, &param),
                None => value.push_str(&param),
            }
        }
        self.reply = Arc::new(Reply::new(self.status, headers, self.reply.body.clone()));
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
            reply: Arc::new(Reply::new(status, headers, body)),
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
