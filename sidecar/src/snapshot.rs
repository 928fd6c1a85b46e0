//! An immutable copy of the key set, with the documents built from it serialised once, ready to serve.

use axum::body::Bytes;
use keymesh_core::bundle::{BundleDto, IssuerKeysDto, JwksDto};

use crate::signing_keys::{SigningKey, StoredKeySet};

/// One version of the key set as the sidecar serves it.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    active: Option<SigningKey>,
    kids: Vec<String>,
    jwks_json: Bytes,
    bundle_json: Bytes,
}

impl Snapshot {
    /// Builds the snapshot of `set` for tokens issued by `issuer`.
    pub fn build(set: StoredKeySet, issuer: &str) -> Result<Self, serde_json::Error> {
        let jwks = JwksDto {
            keys: set.keys.iter().map(SigningKey::public_jwk).collect(),
        };
        let jwks_json = Bytes::from(serde_json::to_vec(&jwks)?);
        let bundle = BundleDto {
            version: set.version,
            issuers: vec![IssuerKeysDto {
                issuer: issuer.to_owned(),
                jwks,
            }],
        };
        let bundle_json = Bytes::from(serde_json::to_vec(&bundle)?);
        let active = set
            .active_kid
            .as_deref()
            .and_then(|kid| set.keys.iter().find(|key| key.kid() == kid))
            .cloned();
        if active.is_none() {
            tracing::warn!(active_kid = ?set.active_kid, "no usable active signing key: token requests will fail");
        }
        let kids = set.keys.iter().map(|key| key.kid().to_owned()).collect();
        Ok(Self {
            version: set.version,
            active,
            kids,
            jwks_json,
            bundle_json,
        })
    }

    /// The bundle version this snapshot describes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The key that signs new tokens, if the active kid names a usable key.
    pub fn active_key(&self) -> Option<&SigningKey> {
        self.active.as_ref()
    }

    /// The ids of all published keys, oldest first.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// The public JWK Set (RFC 7517), serialised.
    pub fn jwks_json(&self) -> &Bytes {
        &self.jwks_json
    }

    /// The bundle served at `/v1/bundle`, serialised.
    pub fn bundle_json(&self) -> &Bytes {
        &self.bundle_json
    }
}
