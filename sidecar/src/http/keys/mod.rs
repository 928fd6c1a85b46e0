//! Key material for the filters: the bundle (full or delta, with long polls) and reports of unknown kids.

pub(crate) mod bundle;
pub(crate) mod refetch;
