//! The ground floor: what every other floor may use and which knows nothing of them. The clock, redaction of
//! secrets in logged values, syntax checks of protocol values, secret hashing, the admin token and the
//! key-encryption key, and the names of the signing algorithms.

pub mod admin_token;
pub mod alg;
pub mod clock;
pub mod kek;
pub mod redact;
pub mod secret;
pub mod syntax;
