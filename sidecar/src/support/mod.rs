//! The ground floor: what every other floor may use and which knows nothing of them. The clock, redaction of
//! secrets in logged values, syntax checks of protocol values, secret hashing and the cap on Argon2 verifications, the admin token and the
//! key-encryption key, and the names of the signing algorithms.

pub mod admin_token;
pub mod alg;
pub mod argon2_slots;
pub mod clock;
pub mod kek;
pub mod redact;
pub mod secret;
pub mod source_address;
pub mod syntax;

/// Removes repeated values, keeping the first occurrence's position.
pub fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}
