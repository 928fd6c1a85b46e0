//! The rights API keys grant (resources, scopes, tier), interned: stored once in an append-only table under
//! `…/rights`, and named in each key's bucket entry by their index.
//!
//! Most deployments have a handful of distinct rights shared by thousands of keys, so a key costs four bytes for
//! them instead of its own copy of every URI and scope. The table only ever grows: an index never changes meaning,
//! so an entry read under any delivery record, old or new, resolves to the rights it was written with. Each worker
//! keeps a parsed copy and re-reads the table only when an entry names an index past the end of its copy.

use crate::delivery::wire::ApiKeyDto;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a key may do, shared by every key granted the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rights {
    /// Resource URIs (audiences) the key is valid for.
    #[serde(rename = "r", default)]
    pub resources: Vec<String>,
    /// Scopes granted.
    #[serde(rename = "s", default)]
    pub scopes: Vec<String>,
    /// The service tier, forwarded upstream.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

impl Rights {
    /// The rights of a wire entry.
    pub fn of(key: &ApiKeyDto) -> Self {
        Self {
            resources: key.resources.clone(),
            scopes: key.scopes.clone(),
            tier: key.tier.clone(),
        }
    }
}

/// The rights table as the fetching worker grows it: the stored list, and an index to find a right's position.
#[derive(Debug, Clone, Default)]
pub struct RightsTable {
    list: Vec<Rights>,
    index: HashMap<Rights, u32>,
    grown: bool,
}

/// The table cannot take another entry (more than `u32::MAX` distinct rights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RightsTableFull;

impl RightsTable {
    /// The table stored as `bytes`; `None` if they do not parse (then nothing may be appended: indexes already
    /// handed out would change meaning).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let list = parse_list(bytes)?;
        let index = list
            .iter()
            .enumerate()
            .filter_map(|(at, rights)| Some((rights.clone(), u32::try_from(at).ok()?)))
            .collect();
        Some(Self {
            list,
            index,
            grown: false,
        })
    }

    /// The index of `rights`, appending them if they are new.
    pub fn intern(&mut self, rights: Rights) -> Result<u32, RightsTableFull> {
        if let Some(at) = self.index.get(&rights) {
            return Ok(*at);
        }
        let at = u32::try_from(self.list.len()).map_err(|_| RightsTableFull)?;
        self.list.push(rights.clone());
        self.index.insert(rights, at);
        self.grown = true;
        Ok(at)
    }

    /// The index of `rights`, if the table has them.
    pub fn index_of(&self, rights: &Rights) -> Option<u32> {
        self.index.get(rights).copied()
    }

    /// Whether [`RightsTable::intern`] appended anything since the table was read.
    pub fn grown(&self) -> bool {
        self.grown
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.list)
    }
}

/// The stored list, as every worker reads it; `None` if the bytes do not parse.
pub fn parse_list(bytes: &[u8]) -> Option<Vec<Rights>> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(resource: &str, scopes: &[&str]) -> Rights {
        Rights {
            resources: vec![resource.into()],
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            tier: None,
        }
    }

    #[test]
    fn interning_appends_only_and_an_index_keeps_its_meaning() {
        let mut table = RightsTable::default();
        let read = table.intern(rights("https://api", &["read"])).unwrap();
        let write = table
            .intern(rights("https://api", &["read", "write"]))
            .unwrap();
        assert_eq!((read, write), (0, 1));
        assert_eq!(table.intern(rights("https://api", &["read"])), Ok(0));
        assert_eq!(
            table.index_of(&rights("https://api", &["read", "write"])),
            Some(1)
        );
        assert_eq!(table.index_of(&rights("https://api", &[])), None);
        assert!(table.grown());

        // Read back, as another worker (or the next apply) would: same indexes, then growth at the end.
        let stored = table.encode().unwrap();
        let mut again = RightsTable::parse(&stored).unwrap();
        assert!(!again.grown());
        assert_eq!(
            again.intern(rights("https://api", &["read", "write"])),
            Ok(1)
        );
        assert!(!again.grown());
        assert_eq!(again.intern(rights("https://other", &[])), Ok(2));
        let gold = Rights {
            tier: Some("gold".into()),
            ..rights("https://other", &[])
        };
        assert_eq!(
            again.intern(gold.clone()),
            Ok(3),
            "the tier is part of the rights"
        );
        let list = parse_list(&again.encode().unwrap()).unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[3], gold);
        assert_eq!(list[0], rights("https://api", &["read"]));
        assert_eq!(list[2], rights("https://other", &[]));
    }

    #[test]
    fn a_damaged_table_is_not_appended_to() {
        assert!(RightsTable::parse(b"{").is_none());
        assert!(RightsTable::parse(b"[{\"r\": 3}]").is_none());
        assert!(parse_list(b"garbage").is_none());
        assert_eq!(parse_list(b"[]"), Some(vec![]));
    }
}
