//! The validated key set a filter verifies against: every trusted issuer's public keys, indexed by `kid`.

use crate::delivery::wire::{BundleDto, JwksDto};
use crate::error::KeyError;
use crate::jwk::{parse_jwk, PublicKey};
use crate::token_type::AcceptedTypes;
use std::collections::HashMap;

/// A public key and the issuer it belongs to. A token verified by this key must carry exactly that `iss`.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    issuer: usize,
    key: PublicKey,
}

impl TrustedKey {
    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

/// Immutable, validated key material of one bundle version.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    version: u64,
    issuers: Vec<Issuer>,
    by_kid: HashMap<String, Vec<TrustedKey>>,
}

/// A trusted issuer: its `iss`, where its tokens may be used, and whether its keys come from outside.
#[derive(Debug, Clone)]
struct Issuer {
    name: String,
    audiences: Option<Vec<String>>,
    external: bool,
    types: AcceptedTypes,
}

/// What was left out of a key set, and why; a filter logs these, it does not fail on them.
pub type Skipped = Vec<KeyError>;

impl KeySet {
    /// Parses and validates a bundle document as served by the sidecar.
    pub fn parse_bundle(bytes: &[u8]) -> Result<(Self, Skipped), KeyError> {
        let dto: BundleDto =
            serde_json::from_slice(bytes).map_err(|e| KeyError::MalformedBundle(e.to_string()))?;
        Self::from_bundle(&dto)
    }

    /// Builds a key set from a bundle. A key that cannot be used (another type or use, no `kid`, malformed or
    /// weak material) is skipped and reported, and the issuer's other keys are kept; an issuer whose set is unsafe
    /// to use as a whole (a repeated `kid`, private key material) is dropped whole and reported, so one bad
    /// external JWKS cannot block everyone else's updates. A bundle naming the same issuer twice is refused.
    pub fn from_bundle(dto: &BundleDto) -> Result<(Self, Skipped), KeyError> {
        let mut set = Self {
            version: dto.version,
            ..Self::default()
        };
        let mut skipped = Vec::new();
        for entry in &dto.issuers {
            if set.issuers.iter().any(|known| known.name == entry.issuer) {
                return Err(KeyError::DuplicateIssuer(entry.issuer.clone()));
            }
            match issuer_keys(&entry.jwks, &mut skipped) {
                Ok(keys) => {
                    let issuer = set.issuers.len();
                    set.issuers.push(Issuer {
                        name: entry.issuer.clone(),
                        audiences: entry.audiences.clone(),
                        external: entry.external,
                        types: AcceptedTypes::new(&entry.accept_typ, entry.accept_missing_typ),
                    });
                    for (kid, key) in keys {
                        set.by_kid
                            .entry(kid)
                            .or_default()
                            .push(TrustedKey { issuer, key });
                    }
                }
                Err(e) => skipped.push(e),
            }
        }
        Ok((set, skipped))
    }

    /// A key set of one issuer, failing on any key that would be dropped or skipped. For tests and tools.
    pub fn single_issuer(version: u64, issuer: &str, jwks: &JwksDto) -> Result<Self, KeyError> {
        let mut skipped = Vec::new();
        let keys = issuer_keys(jwks, &mut skipped)?;
        if let Some(first) = skipped.into_iter().next() {
            return Err(first);
        }
        let mut by_kid: HashMap<String, Vec<TrustedKey>> = HashMap::new();
        for (kid, key) in keys {
            by_kid
                .entry(kid)
                .or_default()
                .push(TrustedKey { issuer: 0, key });
        }
        Ok(Self {
            version,
            issuers: vec![Issuer {
                name: issuer.to_owned(),
                audiences: None,
                external: false,
                types: AcceptedTypes::default(),
            }],
            by_kid,
        })
    }

    /// The bundle version this key set came from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Keys with this `kid`, across issuers (usually one).
    pub fn candidates(&self, kid: &str) -> &[TrustedKey] {
        self.by_kid.get(kid).map_or(&[], Vec::as_slice)
    }

    /// The issuer a key belongs to.
    pub fn issuer_of(&self, key: &TrustedKey) -> &str {
        self.issuers
            .get(key.issuer)
            .map_or("", |issuer| &issuer.name)
    }

    /// Whether a token verified by `key` may carry this `typ` header: `at+jwt`, or what the key's issuer accepts.
    pub fn accepts_type(&self, key: &TrustedKey, typ: Option<&str>) -> bool {
        self.issuers
            .get(key.issuer)
            .is_some_and(|issuer| issuer.types.accepts(typ))
    }

    /// Whether tokens of `issuer` may be used at the API `audience`: an issuer listed with allowed audiences is
    /// trusted only at those, one without at every API. An issuer not in the set allows nothing.
    pub fn issuer_allows(&self, issuer: &str, audience: &str) -> bool {
        self.issuers
            .iter()
            .find(|known| known.name == issuer)
            .is_some_and(|known| {
                known
                    .audiences
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a == audience))
            })
    }

    /// Whether any issuer's keys are fetched from an external identity provider, which may roll out a key before
    /// this set has it.
    pub fn has_external_issuers(&self) -> bool {
        self.issuers.iter().any(|issuer| issuer.external)
    }

    /// Number of keys across all issuers.
    pub fn len(&self) -> usize {
        self.by_kid.values().map(Vec::len).sum()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

fn issuer_keys(
    jwks: &JwksDto,
    skipped: &mut Skipped,
) -> Result<Vec<(String, PublicKey)>, KeyError> {
    let mut keys: Vec<(String, PublicKey)> = Vec::with_capacity(jwks.keys.len());
    // Duplicate kids are checked over every key, kept or not: an ambiguous set is refused whole.
    let mut seen: Vec<&str> = Vec::with_capacity(jwks.keys.len());
    for jwk in &jwks.keys {
        if let Some(kid) = jwk.get("kid").and_then(|k| k.as_str()) {
            if seen.contains(&kid) {
                return Err(KeyError::DuplicateKid(kid.to_owned()));
            }
            seen.push(kid);
        }
    }
    for jwk in &jwks.keys {
        match parse_jwk(jwk) {
            Ok(entry) => keys.push((entry.kid, entry.key)),
            // A provider publishing private material is leaking secrets: nothing of its set is trusted.
            Err(e @ KeyError::PrivateMaterial { .. }) => return Err(e),
            // One unusable key (another type or use, no kid, a bad point, a weak modulus) costs only itself, so
            // one sloppy key does not take down the provider's other keys.
            Err(e) => skipped.push(e),
        }
    }
    Ok(keys)
}
