//! Key material for the filters: the bundle (full or delta, with long polls), reports of unknown kids, and
//! reports of API key use.

pub(crate) mod bundle;
pub(crate) mod refetch;
pub(crate) mod usage;

/// Longest long poll of the bundle accepted, in seconds.
pub(crate) const MAX_WAIT_SECS: u64 = 60;
