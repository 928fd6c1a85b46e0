//! The Redis floor: the connection, the names of keymesh's keys, key scans, and the commit protocol every change
//! to the bundle goes through. It knows nothing of what the stored values mean.

pub mod commit;
pub mod connection;
pub mod names;
pub(crate) mod scan;
