//! Reading a bundle response piece by piece, so that the fetching worker's memory does not grow with the bundle.
//!
//! A wasm VM's linear memory never shrinks: a worker that once copied a 16 MB bundle into it and parsed 100 000
//! keys keeps those pages for its lifetime. So the body stays with the host ([`BodySource`]: Envoy holds the
//! HTTP call's response) and is read in [`CHUNK_BYTES`] pieces, and the API keys of a bundle are never collected:
//! [`read_bundle`] hands each one to a callback as it is parsed, and returns everything else (issuers, deletes,
//! revocations: small) as a [`BundleDto`] with no `put`.
//!
//! Applying reads the body twice: once to validate it whole (a damaged bundle must not replace any of the last
//! good one), once to store the keys in batches.

use crate::delivery::wire::{
    ApiKeyChangesDto, ApiKeyDto, BundleDto, IssuerKeysDto, PageDto, RevokedTokenDto,
};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::io;

/// How much of a body is copied into the worker at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A response body held by the host, read in pieces.
pub trait BodySource {
    /// Its size in bytes.
    fn size(&self) -> usize;
    /// Up to `max` bytes from `start` (fewer at the end); `None` if the host cannot give them.
    fn read(&self, start: usize, max: usize) -> Option<Vec<u8>>;
}

impl BodySource for &[u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn read(&self, start: usize, max: usize) -> Option<Vec<u8>> {
        let end = start.saturating_add(max).min(self.len());
        self.get(start..end).map(<[u8]>::to_vec)
    }
}

/// A [`BodySource`] as [`io::Read`], one [`CHUNK_BYTES`] piece in memory at a time.
pub struct BodyReader<'a, B: ?Sized> {
    source: &'a B,
    next: usize,
    chunk: Vec<u8>,
    at: usize,
}

impl<'a, B: BodySource + ?Sized> BodyReader<'a, B> {
    /// Reads `source` from its start.
    pub fn new(source: &'a B) -> Self {
        Self {
            source,
            next: 0,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl<B: BodySource + ?Sized> io::Read for BodyReader<'_, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.chunk.len() {
            if self.next >= self.source.size() {
                return Ok(0);
            }
            let chunk = self
                .source
                .read(self.next, CHUNK_BYTES)
                .filter(|chunk| !chunk.is_empty())
                .ok_or_else(|| io::Error::other("the host gave no more of the body"))?;
            self.next = self.next.saturating_add(chunk.len());
            self.chunk = chunk;
            self.at = 0;
        }
        let available = self.chunk.get(self.at..).unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(into), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            into.copy_from_slice(from);
        }
        self.at = self.at.saturating_add(n);
        Ok(n)
    }
}

/// What the callback of [`read_bundle`] is handed, and may refuse (the message ends the parse).
pub type OnPut<'f> = dyn FnMut(ApiKeyDto) -> Result<(), String> + 'f;

/// Parses a bundle document from `reader`, handing each API key put to `on_put` in document order. The result has
/// everything else, and an empty `put`. Fails on the first syntax error, on a field repeated, or when `on_put`
/// refuses.
pub fn read_bundle<R: io::Read>(
    reader: R,
    on_put: &mut OnPut<'_>,
) -> Result<BundleDto, serde_json::Error> {
    read_bundle_page(reader, on_put).map(|(dto, _)| dto)
}

/// [`read_bundle`], with where the document sits in a paged full bundle, if it is a page.
pub fn read_bundle_page<R: io::Read>(
    reader: R,
    on_put: &mut OnPut<'_>,
) -> Result<(BundleDto, Option<PageDto>), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let read = BundleSeed { on_put }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(read)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BundleField {
    Version,
    Since,
    Issuers,
    ApiKeys,
    RevokedTokens,
    Page,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChangesField {
    Put,
    Delete,
    #[serde(other)]
    Other,
}

struct BundleSeed<'a, 'f> {
    on_put: &'a mut OnPut<'f>,
}

type ReadBundle = (BundleDto, Option<PageDto>);

impl<'de> DeserializeSeed<'de> for BundleSeed<'_, '_> {
    type Value = ReadBundle;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ReadBundle, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// Reads a field's value once; a second occurrence is an error, as with the derived form.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for BundleSeed<'_, '_> {
    type Value = ReadBundle;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key bundle object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReadBundle, A::Error> {
        let mut version: Option<u64> = None;
        let mut page: Option<Option<PageDto>> = None;
        let mut since: Option<Option<u64>> = None;
        let mut issuers: Option<Vec<IssuerKeysDto>> = None;
        let mut delete: Option<Vec<String>> = None;
        let mut revoked: Option<Vec<RevokedTokenDto>> = None;
        while let Some(field) = map.next_key::<BundleField>()? {
            match field {
                BundleField::Version => once(&mut map, &mut version, "version")?,
                BundleField::Since => once(&mut map, &mut since, "since")?,
                BundleField::Issuers => once(&mut map, &mut issuers, "issuers")?,
                BundleField::RevokedTokens => once(&mut map, &mut revoked, "revoked_tokens")?,
                BundleField::Page => once(&mut map, &mut page, "page")?,
                BundleField::ApiKeys => {
                    if delete.is_some() {
                        return Err(de::Error::duplicate_field("api_keys"));
                    }
                    delete = Some(map.next_value_seed(ChangesSeed {
                        on_put: &mut *self.on_put,
                    })?);
                }
                BundleField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let dto = BundleDto {
            version: version.ok_or_else(|| de::Error::missing_field("version"))?,
            since: since.flatten(),
            issuers: issuers.unwrap_or_default(),
            api_keys: ApiKeyChangesDto {
                put: Vec::new(),
                delete: delete.unwrap_or_default(),
            },
            revoked_tokens: revoked.unwrap_or_default(),
        };
        Ok((dto, page.flatten()))
    }
}

/// `api_keys`: hands `put` to the callback, returns `delete`.
struct ChangesSeed<'a, 'f> {
    on_put: &'a mut OnPut<'f>,
}

impl<'de> DeserializeSeed<'de> for ChangesSeed<'_, '_> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ChangesSeed<'_, '_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of API key changes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut delete: Option<Vec<String>> = None;
        let mut put_seen = false;
        while let Some(field) = map.next_key::<ChangesField>()? {
            match field {
                ChangesField::Put => {
                    if put_seen {
                        return Err(de::Error::duplicate_field("put"));
                    }
                    put_seen = true;
                    map.next_value_seed(PutSeed {
                        on_put: &mut *self.on_put,
                    })?;
                }
                ChangesField::Delete => once(&mut map, &mut delete, "delete")?,
                ChangesField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(delete.unwrap_or_default())
    }
}

/// `api_keys.put`: each element to the callback as it is parsed.
struct PutSeed<'a, 'f> {
    on_put: &'a mut OnPut<'f>,
}

impl<'de> DeserializeSeed<'de> for PutSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PutSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of API keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(key) = seq.next_element::<ApiKeyDto>()? {
            (self.on_put)(key).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A body that counts what is asked of it.
    struct Counted<'a> {
        bytes: &'a [u8],
        largest: Cell<usize>,
    }

    impl BodySource for Counted<'_> {
        fn size(&self) -> usize {
            self.bytes.len()
        }
        fn read(&self, start: usize, max: usize) -> Option<Vec<u8>> {
            let chunk = self.bytes.read(start, max)?;
            self.largest.set(self.largest.get().max(chunk.len()));
            Some(chunk)
        }
    }

    fn keys(n: usize) -> Vec<u8> {
        let put: Vec<_> = (0..n)
            .map(|i| {
                serde_json::json!({"hash": format!("h{i}"), "id": format!("ak_{i}"), "owner": "o",
                                        "resources": ["urn:a"]})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"version": 4, "since": 2, "extra": [1, {"x": 2}],
            "api_keys": {"delete": ["d1"], "put": put}, "revoked_tokens": [{"jti": "j", "exp": 9}]}))
        .unwrap()
    }

    #[test]
    fn keys_are_handed_over_one_by_one_and_the_rest_is_returned() {
        let body = keys(20_000);
        assert!(body.len() > 10 * CHUNK_BYTES);
        let source = Counted {
            bytes: &body,
            largest: Cell::new(0),
        };
        let mut seen = Vec::new();
        let dto = read_bundle(BodyReader::new(&source), &mut |key| {
            seen.push(key.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 20_000);
        assert_eq!(seen[19_999], "ak_19999");
        assert_eq!((dto.version, dto.since), (4, Some(2)));
        assert!(dto.api_keys.put.is_empty());
        assert_eq!(dto.api_keys.delete, ["d1"]);
        assert_eq!(dto.revoked_tokens[0].jti, "j");
        assert_eq!(source.largest.get(), CHUNK_BYTES, "read a chunk at a time");
        // The same document through the derived form reads the same.
        let derived: BundleDto = serde_json::from_slice(&body).unwrap();
        assert_eq!(derived.api_keys.put.len(), 20_000);
        assert_eq!(derived.revoked_tokens, dto.revoked_tokens);
    }

    #[test]
    fn damaged_documents_and_refusals_are_errors() {
        let mut accept = |_: ApiKeyDto| Ok(());
        for bad in [
            &br#"{"since": 1}"#[..],
            br#"{"version": 1, "version": 2}"#,
            br#"{"version": 1, "api_keys": {"put": [], "put": []}}"#,
            br#"{"version": 1, "api_keys": {"put": [{"hash": 1}]}}"#,
            br#"{"version": 1} trailing"#,
            br#"{"version": 1, "api_keys": {"put": [{"#,
            b"",
        ] {
            assert!(
                read_bundle(BodyReader::new(&bad), &mut accept).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let body = keys(3);
        let mut refuse = |_: ApiKeyDto| Err("no room".to_owned());
        let error = read_bundle(BodyReader::new(&body.as_slice()), &mut refuse).unwrap_err();
        assert!(error.to_string().contains("no room"), "{error}");
    }

    #[test]
    fn a_host_that_stops_giving_the_body_fails_the_read() {
        struct Truncated;
        impl BodySource for Truncated {
            fn size(&self) -> usize {
                1_000
            }
            fn read(&self, start: usize, _: usize) -> Option<Vec<u8>> {
                (start == 0).then(|| br#"{"version": 1, "issuers": ["#.to_vec())
            }
        }
        let mut accept = |_: ApiKeyDto| Ok(());
        assert!(read_bundle(BodyReader::new(&Truncated), &mut accept).is_err());
    }
}
