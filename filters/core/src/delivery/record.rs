//! The small records delivery keeps in shared data, and their byte formats.

/// What every request needs to know about the key material, kept under `…/state` as one value so that a request
/// costs one shared-data read before its own lookups. Written last by an apply, so a request sees a version (and
/// its floor and revoked list) only once everything it names is in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The bundle version stored.
    pub version: u64,
    /// The generation floor: API key entries written by an older version are dead (raised by each full bundle).
    pub floor: u64,
    /// When the sidecar last answered (ms since the epoch).
    pub fresh_at_ms: u64,
    /// The version that last changed the revoked list; a worker re-reads the list when it moves.
    pub revoked_generation: u64,
    /// Which of the two slots holds the material of `version` (0 or 1; see [`crate::delivery::resync`]): a full
    /// resync writes the other one, and switches to it when this record is written.
    pub slot: u8,
}

impl DeliveryRecord {
    /// Parses the stored form: five decimal numbers separated by single spaces, the last 0 or 1 (anything after
    /// them is ignored, so a later version may append fields).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(' ').map(str::parse::<u64>);
        let mut next = || fields.next()?.ok();
        Some(Self {
            version: next()?,
            floor: next()?,
            fresh_at_ms: next()?,
            revoked_generation: next()?,
            slot: u8::try_from(next()?).ok().filter(|slot| *slot <= 1)?,
        })
    }

    /// The stored form.
    pub fn encode(self) -> String {
        format!(
            "{} {} {} {} {}",
            self.version, self.floor, self.fresh_at_ms, self.revoked_generation, self.slot
        )
    }

    /// Milliseconds since the sidecar last answered, by `record`; 0 before any bundle (no keys to be stale).
    pub fn age_ms(record: Option<Self>, now_ms: u64) -> u64 {
        record.map_or(0, |record| now_ms.saturating_sub(record.fresh_at_ms))
    }
}

/// The fetch lease as stored under `…/lease`: `<until_ms>:<owner>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseRecord {
    pub(crate) until_ms: u64,
    pub(crate) owner: u64,
}

impl LeaseRecord {
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let (until, owner) = std::str::from_utf8(bytes).ok()?.split_once(':')?;
        Some(Self {
            until_ms: until.parse().ok()?,
            owner: owner.parse().ok()?,
        })
    }

    pub(crate) fn encode(self) -> String {
        format!("{}:{}", self.until_ms, self.owner)
    }
}

/// A decimal number stored on its own (the version, the root sequence, the last refetch time).
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_record_round_trips_and_refuses_damage() {
        let record = DeliveryRecord {
            version: 9,
            floor: 4,
            fresh_at_ms: 1_700_000_000_000,
            revoked_generation: 7,
            slot: 1,
        };
        assert_eq!(record.encode(), "9 4 1700000000000 7 1");
        assert_eq!(
            DeliveryRecord::parse(record.encode().as_bytes()),
            Some(record)
        );
        for damaged in [
            "",
            "9 4 1",
            "9 4 1 7",
            "9 4 x 7 0",
            "9  4 1 7 0",
            "-1 4 1 7 0",
            "9 4 1 7 2",
        ] {
            assert_eq!(
                DeliveryRecord::parse(damaged.as_bytes()),
                None,
                "{damaged:?}"
            );
        }
    }

    #[test]
    fn age_is_zero_before_any_bundle_and_never_negative() {
        let record = DeliveryRecord {
            fresh_at_ms: 10_000,
            ..DeliveryRecord::default()
        };
        assert_eq!(DeliveryRecord::age_ms(None, 99_000), 0);
        assert_eq!(DeliveryRecord::age_ms(Some(record), 12_500), 2_500);
        assert_eq!(DeliveryRecord::age_ms(Some(record), 9_000), 0);
    }

    #[test]
    fn lease_record_round_trips() {
        let lease = LeaseRecord {
            until_ms: 5_000,
            owner: 3,
        };
        assert_eq!(LeaseRecord::parse(lease.encode().as_bytes()), Some(lease));
        assert_eq!(LeaseRecord::parse(b"5000"), None);
        assert_eq!(LeaseRecord::parse(b"x:3"), None);
    }
}
