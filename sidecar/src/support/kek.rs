//! The key-encryption key (KEK): 32 bytes, given to the sidecar out of band, that seals every private signing key
//! before it is written to Redis (XChaCha20-Poly1305, a random 24-byte nonce per record, the kid in the associated
//! data).
//!
//! Redis then holds no usable private key: whoever reads a record needs the KEK too. Each sealed record names the
//! KEK it was sealed under by a short, non-secret id (a domain-separated SHA-256 of the KEK), so a sidecar given
//! another KEK reports exactly that instead of a bare authentication failure.

use std::fmt;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Environment variable holding the KEK itself (32 bytes, base64).
pub const KEK_ENV: &str = "KEYMESH_KEK";
/// Environment variable naming a file that holds the KEK (overrides `kek_file` in the configuration file).
pub const KEK_FILE_ENV: &str = "KEYMESH_KEK_FILE";

/// Length of a KEK in bytes.
pub const KEK_LEN: usize = 32;
/// Length of the XChaCha20-Poly1305 nonce in bytes.
const NONCE_LEN: usize = 24;
/// The AEAD named in sealed records.
pub const AEAD: &str = "XChaCha20-Poly1305";

/// How to generate a KEK, for error messages.
const HOW_TO_GENERATE: &str = "e.g. `head -c 32 /dev/urandom | base64`";

/// A 256-bit key-encryption key. `Debug` shows only its id.
#[derive(Clone)]
pub struct Kek {
    key: Zeroizing<[u8; KEK_LEN]>,
    id: String,
}

impl Kek {
    /// A KEK from its raw bytes.
    pub fn from_bytes(bytes: [u8; KEK_LEN]) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"keymesh kek id\0");
        digest.update(bytes);
        let id = Base64UrlUnpadded::encode_string(&digest.finalize()[..8]);
        Self {
            key: Zeroizing::new(bytes),
            id,
        }
    }

    /// Parses the base64 text form (standard or URL-safe alphabet, padded or not, surrounding whitespace
    /// ignored). The error never repeats the value.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let decoded = Base64::decode_vec(text)
            .or_else(|_| Base64Unpadded::decode_vec(text))
            .or_else(|_| Base64Url::decode_vec(text))
            .or_else(|_| Base64UrlUnpadded::decode_vec(text))
            .map(Zeroizing::new)
            .map_err(|_| format!("must be {KEK_LEN} bytes in base64 ({HOW_TO_GENERATE})"))?;
        let bytes: [u8; KEK_LEN] = decoded.as_slice().try_into().map_err(|_| {
            format!(
                "must be {KEK_LEN} bytes in base64, not {} ({HOW_TO_GENERATE})",
                decoded.len()
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random KEK (tests and tooling).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut *bytes);
        Self::from_bytes(*bytes)
    }

    /// The KEK in standard padded base64.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(Base64::encode_string(&*self.key))
    }

    /// The KEK's non-secret id, stored with each record it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` for the record of `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(kid);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        Ok(Sealed {
            kek_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens what [`Kek::seal`] sealed for `kid`.
    pub fn open(&self, kid: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.kek_id != self.id {
            return Err(SealError::OtherKek {
                sealed_with: sealed.kek_id.clone(),
                have: self.id.clone(),
            });
        }
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed)?;
        let aad = associated_data(kid);
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Authentication)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }
}

/// The associated data of a sealed private key: binds the ciphertext to the record of one kid, so a sealed key
/// copied under another kid does not open.
fn associated_data(kid: &str) -> Vec<u8> {
    format!("keymesh signing key {kid}").into_bytes()
}

impl PartialEq for Kek {
    fn eq(&self, other: &Self) -> bool {
        self.key.ct_eq(&*other.key).into()
    }
}

impl Eq for Kek {}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish()
    }
}

/// A sealed private key as stored: the id of the KEK, the nonce and the ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the KEK that sealed it.
    pub kek_id: String,
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The record was sealed under a different KEK than this sidecar's.
    #[error(
        "sealed under key-encryption key {sealed_with}, but this sidecar's is {have}: give it the deployment's KEK \
         ({KEK_ENV} or {KEK_FILE_ENV})"
    )]
    OtherKek {
        /// Id of the KEK the record names.
        sealed_with: String,
        /// Id of this sidecar's KEK.
        have: String,
    },
    /// The ciphertext does not authenticate under this KEK and kid: the record was altered or moved.
    #[error(
        "the sealed private key does not authenticate (record altered or stored under another kid)"
    )]
    Authentication,
    /// The nonce has the wrong length.
    #[error("malformed sealed private key")]
    Malformed,
    /// Encryption failed (only possible for absurdly long plaintexts).
    #[error("cannot seal the private key")]
    Encrypt,
}

/// Where the KEK comes from, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum KekSource {
    /// Given inline (`KEYMESH_KEK`), already decoded.
    Inline(Kek),
    /// A file holding the base64 KEK (`kek_file` / `KEYMESH_KEK_FILE`), read when the KEK is needed.
    File(PathBuf),
}

impl fmt::Debug for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(kek) => f.debug_tuple("Inline").field(kek).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Why no KEK could be had.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// No KEK is configured.
    #[error(
        "no key-encryption key: set {KEK_ENV} to {KEK_LEN} random bytes in base64 ({HOW_TO_GENERATE}), or \
         {KEK_FILE_ENV} (or `kek_file` in the config file) to a file holding them; every replica and the CLI need \
         the same one"
    )]
    Missing,
    /// The KEK file could not be read.
    #[error("cannot read the key-encryption key file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The KEK file does not hold a KEK.
    #[error("invalid key-encryption key in {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
}

impl KekSource {
    /// The KEK: the inline one, or the file's content.
    pub fn resolve(&self) -> Result<Kek, KekError> {
        match self {
            Self::Inline(kek) => Ok(kek.clone()),
            Self::File(path) => read_file(path),
        }
    }
}

/// Resolves an optional source: `None` is [`KekError::Missing`].
pub fn resolve(source: Option<&KekSource>) -> Result<Kek, KekError> {
    source.ok_or(KekError::Missing)?.resolve()
}

fn read_file(path: &Path) -> Result<Kek, KekError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KekError::Read {
            path: path.to_owned(),
            source,
        })?,
    );
    warn_if_readable_by_others(path);
    Kek::from_base64(&text).map_err(|reason| KekError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // `metadata` follows symlinks: a Kubernetes Secret volume links each key to a file under `..data/`.
    if let Ok(meta) = std::fs::metadata(path) {
        if let Some(problem) = permission_problem(meta.permissions().mode()) {
            tracing::warn!(path = %path.display(), "the key-encryption key file is {problem}: chmod 0400 (or 0440 in a group only this process is in) it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// What is wrong with a KEK file's permission bits, if anything.
///
/// Owner-only (`0400`, `0600`) is the plain-host form. Group read is accepted too: Kubernetes mounts a Secret as
/// root-owned files whose group is the pod's `fsGroup`, so a non-root container can only read a file `0440` (the
/// pod's own group, which no other workload shares). Anything more is reported: any access by others, because it
/// reaches every local account, and group write or execute, because a group member could replace the KEK.
#[cfg_attr(not(unix), allow(dead_code))]
fn permission_problem(mode: u32) -> Option<&'static str> {
    if mode & 0o007 != 0 {
        Some("accessible to others")
    } else if mode & 0o030 != 0 {
        Some("writable or executable by its group")
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn owner_only_and_group_read_kek_files_pass_while_others_or_group_write_are_reported() {
        // (mode, accepted): 0440 is a Kubernetes Secret mounted with `defaultMode: 0440` and an fsGroup.
        let cases = [
            (0o400, true),
            (0o600, true),
            (0o440, true),
            (0o640, true),
            (0o444, false),
            (0o404, false),
            (0o460, false),
            (0o660, false),
            (0o450, false),
            (0o604, false),
            (0o100_440, true),
        ];
        for (mode, accepted) in cases {
            assert_eq!(permission_problem(mode).is_none(), accepted, "{mode:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_group_readable_kek_file_behind_a_symlink_is_read_and_accepted() {
        use std::os::unix::fs::PermissionsExt;
        // The layout of a Secret volume: `kek` → `..data/kek`, the file 0440.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let target = dir.path().join("..data").join("kek");
        let kek = Kek::generate();
        std::fs::write(&target, kek.to_base64().as_bytes()).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o440)).unwrap();
        let link = dir.path().join("kek");
        std::os::unix::fs::symlink("..data/kek", &link).unwrap();
        let mode = std::fs::metadata(&link).unwrap().permissions().mode();
        assert_eq!(permission_problem(mode), None, "{mode:o}");
        assert_eq!(KekSource::File(link).resolve().unwrap().id(), kek.id());
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(permission_problem(mode), Some("accessible to others"));
    }

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let kek = Kek::generate();
        let a = kek.seal("kid-1", b"secret seed").unwrap();
        let b = kek.seal("kid-1", b"secret seed").unwrap();
        assert_ne!(a.nonce, b.nonce, "a nonce per record");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(&**kek.open("kid-1", &a).unwrap(), b"secret seed");
        assert!(!a.ciphertext.windows(11).any(|w| w == b"secret seed"));
    }

    #[test]
    fn opening_fails_cleanly_under_another_kek_kid_or_tampering() {
        let kek = Kek::generate();
        let sealed = kek.seal("kid-1", b"seed").unwrap();
        let other = Kek::generate();
        let err = other.open("kid-1", &sealed).unwrap_err();
        assert!(matches!(err, SealError::OtherKek { .. }));
        assert!(err.to_string().contains(kek.id()) && err.to_string().contains(KEK_ENV));
        assert_eq!(kek.open("kid-2", &sealed), Err(SealError::Authentication));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(kek.open("kid-1", &tampered), Err(SealError::Authentication));
        // A record claiming our KEK id but sealed under another KEK still fails authentication.
        let mut forged = other.seal("kid-1", b"seed").unwrap();
        forged.kek_id = kek.id().to_owned();
        assert_eq!(kek.open("kid-1", &forged), Err(SealError::Authentication));
        let mut short = sealed;
        short.nonce.pop();
        assert_eq!(kek.open("kid-1", &short), Err(SealError::Malformed));
    }

    #[test]
    fn base64_forms_are_accepted_and_errors_never_echo_the_value() {
        let kek = Kek::generate();
        let text = kek.to_base64();
        assert_eq!(Kek::from_base64(&format!("{}\n", &*text)).unwrap(), kek);
        let url = Base64UrlUnpadded::encode_string(&*kek.key);
        assert_eq!(Kek::from_base64(&url).unwrap(), kek);
        let short = Base64::encode_string(&[7u8; 16]);
        let err = Kek::from_base64(&short).unwrap_err();
        assert!(err.contains("not 16") && !err.contains(&short), "{err}");
        let err = Kek::from_base64("not base64 at all!").unwrap_err();
        assert!(!err.contains("not base64 at all"), "{err}");
        assert!(!format!("{kek:?}").contains(&*text));
        assert_ne!(Kek::generate().id(), kek.id());
    }

    #[test]
    fn missing_and_unreadable_sources_say_what_to_set() {
        let err = resolve(None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(KEK_ENV)
                && message.contains(KEK_FILE_ENV)
                && message.contains("kek_file")
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = KekSource::File(dir.path().join("nope"));
        assert!(matches!(missing.resolve(), Err(KekError::Read { .. })));
        let file = dir.path().join("kek");
        std::fs::write(&file, "c2hvcnQ=\n").unwrap();
        let err = KekSource::File(file.clone()).resolve().unwrap_err();
        assert!(matches!(err, KekError::Invalid { .. }) && !err.to_string().contains("c2hvcnQ"));
        let kek = Kek::generate();
        std::fs::write(&file, format!("{}\n", &*kek.to_base64())).unwrap();
        assert_eq!(KekSource::File(file).resolve().unwrap(), kek);
    }
}
