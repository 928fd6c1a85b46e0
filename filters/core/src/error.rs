//! Closed error enums, one per failure domain.
//!
//! What a client sees is fixed and terse (an RFC 6750 `error=` code plus a short description); the detail in these
//! enums is for logs and metrics.

use thiserror::Error;

/// Why a presented credential (bearer token or API key) was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    /// No credential was presented where one is required.
    #[error("no access token")]
    Missing,
    /// The credential appeared more than once (e.g. both header and query parameter).
    #[error("more than one access token presented")]
    Ambiguous,
    /// The `Authorization` header is not a well-formed `Bearer` credential.
    #[error("malformed authorization header")]
    MalformedHeader,
    /// The token is longer than the configured maximum.
    #[error("token longer than {max} bytes")]
    TooLong {
        /// The configured limit.
        max: usize,
    },
    /// The token is not three base64url segments of JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header asks for something keymesh never does (embedded keys, critical extensions).
    #[error("forbidden header parameter `{0}`")]
    ForbiddenHeader(&'static str),
    /// The header has no `kid`; keymesh selects keys by `kid` only.
    #[error("token has no kid")]
    MissingKid,
    /// No trusted key has this `kid`.
    #[error("unknown kid")]
    UnknownKid,
    /// The header `alg` is not the algorithm of the key the `kid` names (or is `none`).
    #[error("algorithm `{actual}` does not match the key's `{expected}`")]
    AlgorithmMismatch {
        /// The algorithm of the trusted key.
        expected: &'static str,
        /// What the token header claimed (truncated).
        actual: String,
    },
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// Claims are not valid JSON of the expected shape (includes duplicate claim names).
    #[error("malformed claims")]
    MalformedClaims,
    /// A claim RFC 9068 requires is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// The header `typ` is not `at+jwt` (RFC 9068 §4), nor a type the issuer's entry accepts.
    #[error("token type is not at+jwt")]
    WrongTokenType,
    /// The token's `iss` is not the issuer that owns the verifying key.
    #[error("issuer not trusted for this key")]
    WrongIssuer,
    /// The token's `jti` has been revoked.
    #[error("token revoked")]
    Revoked,
    /// The token is past `exp` (plus leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is in the future (minus leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's `aud` does not name this API.
    #[error("token not valid for this audience")]
    WrongAudience,
    /// The token names this API, but its issuer is only trusted at other APIs.
    #[error("issuer not trusted for this API")]
    IssuerNotAllowed,
    /// An identity claim cannot be forwarded as an HTTP header value.
    #[error("claim `{0}` holds characters not allowed in a header")]
    UnforwardableClaim(&'static str),
    /// A presented API key does not have the keymesh key format.
    #[error("malformed API key")]
    ApiKeyMalformed,
    /// No API key has this hash: never issued, revoked, or regenerated away.
    #[error("unknown or revoked API key")]
    ApiKeyUnknown,
    /// The API key is past its expiry.
    #[error("API key expired")]
    ApiKeyExpired,
    /// The route does not accept this kind of credential (a JWT where only API keys are allowed, or the reverse).
    #[error("credential type not accepted on this route")]
    CredentialNotAccepted,
}

/// Why a JWK or a key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The key has no `kid`.
    #[error("key without kid")]
    MissingKid,
    /// Two keys of one issuer share a `kid`.
    #[error("duplicate kid `{0}`")]
    DuplicateKid(String),
    /// The `kty`/`crv`/`alg` combination is not one keymesh verifies.
    #[error("key `{kid}`: unsupported key type or algorithm ({detail})")]
    Unsupported {
        /// The key's id.
        kid: String,
        /// What was found.
        detail: String,
    },
    /// The key is not meant for signatures (`use` other than `sig`, or `key_ops` without `verify`).
    #[error("key `{0}` is not a signature key")]
    NotForSignatures(String),
    /// The key material is malformed or weak (bad point, short RSA modulus, bad exponent, private parts).
    #[error("key `{kid}`: {detail}")]
    Invalid {
        /// The key's id.
        kid: String,
        /// What is wrong.
        detail: String,
    },
    /// A key carries private or symmetric key material: the provider is leaking secrets, so its whole set is
    /// refused.
    #[error("key `{kid}`: private member `{member}` in a public key set")]
    PrivateMaterial {
        /// The key's id (`(no kid)` when it has none).
        kid: String,
        /// The private member found.
        member: &'static str,
    },
    /// The same issuer is listed twice in a bundle.
    #[error("issuer `{0}` listed twice")]
    DuplicateIssuer(String),
    /// The bundle document is not valid JSON of the bundle shape.
    #[error("malformed bundle: {0}")]
    MalformedBundle(String),
}

/// Why a filter configuration was refused. Each variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterConfigError {
    /// The configuration is not valid JSON of the expected shape (serde's message names the field).
    #[error("invalid configuration: {0}")]
    Syntax(String),
    /// A field has a value outside its allowed range or form.
    #[error("invalid `{field}`: {reason}")]
    Field {
        /// Dotted path of the field, e.g. `routes[1].prefix`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl FilterConfigError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why key material could not be stored in shared data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeliveryError {
    /// The host refused a shared-data write.
    #[error("cannot write shared data `{key}`: {source}")]
    Write {
        /// The shared-data key.
        key: String,
        /// What the host said.
        source: crate::delivery::SharedDataError,
    },
    /// The delivery record kept changing under compare-and-swap.
    #[error("cannot update the key material state in shared data (compare-and-swap kept failing)")]
    RecordContention,
    /// A value could not be encoded for storage.
    #[error("cannot encode `{0}` for shared data")]
    Encode(&'static str),
}
