//! Key material for the filters: the bundle (full or delta, with long polls) and reports of unknown kids.

pub(crate) mod bundle;
pub(crate) mod refetch;

/// Longest long poll of the bundle accepted, in seconds.
pub(crate) const MAX_WAIT_SECS: u64 = 60;
