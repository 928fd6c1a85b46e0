//! Access-token claims (RFC 9068) and their time, issuer and audience checks. Time is passed in.

use crate::error::CredentialError;
use crate::strict_json;
use serde_json::{Map, Value};

/// The claims keymesh reads from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, in the string or array form, normalised to a list.
    pub audience: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `nbf`, seconds since the epoch.
    pub not_before: Option<i64>,
    /// `iat`, seconds since the epoch.
    pub issued_at: Option<i64>,
    /// `jti`.
    pub token_id: Option<String>,
    /// `client_id` (RFC 9068; external issuers may omit it).
    pub client_id: Option<String>,
    /// `scope`, split on spaces.
    pub scopes: Vec<String>,
    /// `keymesh_tier`: the rate tier of the client the token was issued to ([`crate::tier`]).
    pub tier: Option<String>,
}

impl AccessClaims {
    /// Parses a JWT claims set, refusing duplicate names and claims of the wrong type.
    pub fn parse(payload: &[u8]) -> Result<Self, CredentialError> {
        let map =
            strict_json::parse_object(payload).map_err(|_| CredentialError::MalformedClaims)?;
        Ok(Self {
            issuer: required_string(&map, "iss")?,
            subject: required_string(&map, "sub")?,
            audience: audience(&map)?,
            expires_at: numeric_date(&map, "exp")?.ok_or(CredentialError::MissingClaim("exp"))?,
            not_before: numeric_date(&map, "nbf")?,
            issued_at: numeric_date(&map, "iat")?,
            token_id: optional_string(&map, "jti")?,
            client_id: optional_string(&map, "client_id")?,
            scopes: optional_string(&map, "scope")?
                .map(|s| {
                    s.split(' ')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            tier: optional_string(&map, crate::tier::TIER_CLAIM)?,
        })
    }

    /// Checks `exp` and `nbf` against `now` with `leeway` seconds of clock skew allowed.
    pub fn check_time(&self, now: i64, leeway: i64) -> Result<(), CredentialError> {
        if now.saturating_sub(leeway) >= self.expires_at {
            return Err(CredentialError::Expired);
        }
        if self
            .not_before
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
        {
            return Err(CredentialError::NotYetValid);
        }
        Ok(())
    }

    /// True when `aud` names `audience` exactly.
    pub fn has_audience(&self, audience: &str) -> bool {
        self.audience.iter().any(|a| a == audience)
    }

    /// The required scopes this token lacks.
    pub fn missing_scopes<'r>(&self, required: &'r [String]) -> Vec<&'r str> {
        required
            .iter()
            .filter(|r| !self.scopes.contains(r))
            .map(String::as_str)
            .collect()
    }
}

fn required_string(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<String, CredentialError> {
    optional_string(map, name)?.ok_or(CredentialError::MissingClaim(name))
}

fn optional_string(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, CredentialError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CredentialError::MalformedClaims),
    }
}

fn audience(map: &Map<String, Value>) -> Result<Vec<String>, CredentialError> {
    match map.get("aud") {
        None => Err(CredentialError::MissingClaim("aud")),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or(CredentialError::MalformedClaims)
            })
            .collect(),
        Some(_) => Err(CredentialError::MalformedClaims),
    }
}

/// RFC 7519 NumericDate: a JSON number of seconds, possibly fractional (truncated here).
fn numeric_date(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, CredentialError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
                    _ => Err(CredentialError::MalformedClaims),
                }
            }
        }
        Some(_) => Err(CredentialError::MalformedClaims),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<AccessClaims, CredentialError> {
        AccessClaims::parse(json.as_bytes())
    }

    #[test]
    fn audience_string_and_array_forms() {
        let one = parse(r#"{"iss":"i","sub":"s","aud":"https://a","exp":10}"#).unwrap();
        assert_eq!(one.audience, vec!["https://a"]);
        let two =
            parse(r#"{"iss":"i","sub":"s","aud":["https://a","https://b"],"exp":10}"#).unwrap();
        assert!(two.has_audience("https://b"));
        assert!(!two.has_audience("https://c"));
    }

    #[test]
    fn absent_empty_or_mistyped_audience_is_refused() {
        assert_eq!(
            parse(r#"{"iss":"i","sub":"s","exp":10}"#),
            Err(CredentialError::MissingClaim("aud"))
        );
        assert!(parse(r#"{"iss":"i","sub":"s","aud":[],"exp":10}"#).is_err());
        assert!(parse(r#"{"iss":"i","sub":"s","aud":[1],"exp":10}"#).is_err());
        assert!(parse(r#"{"iss":"i","sub":"s","aud":{"a":1},"exp":10}"#).is_err());
    }

    #[test]
    fn exp_is_required_and_numeric() {
        assert_eq!(
            parse(r#"{"iss":"i","sub":"s","aud":"a"}"#),
            Err(CredentialError::MissingClaim("exp"))
        );
        assert!(parse(r#"{"iss":"i","sub":"s","aud":"a","exp":"10"}"#).is_err());
        assert_eq!(
            parse(r#"{"iss":"i","sub":"s","aud":"a","exp":10.9}"#)
                .unwrap()
                .expires_at,
            10
        );
    }

    #[test]
    fn time_window_honours_leeway() {
        let c = parse(r#"{"iss":"i","sub":"s","aud":"a","exp":100,"nbf":50}"#).unwrap();
        assert_eq!(c.check_time(99, 0), Ok(()));
        assert_eq!(c.check_time(100, 0), Err(CredentialError::Expired));
        assert_eq!(c.check_time(105, 10), Ok(()));
        assert_eq!(c.check_time(49, 0), Err(CredentialError::NotYetValid));
        assert_eq!(c.check_time(45, 10), Ok(()));
    }

    #[test]
    fn duplicate_claim_names_are_refused() {
        assert_eq!(
            parse(r#"{"iss":"i","sub":"s","sub":"admin","aud":"a","exp":10}"#),
            Err(CredentialError::MalformedClaims)
        );
    }

    #[test]
    fn scopes_split_and_missing_ones_listed() {
        let c =
            parse(r#"{"iss":"i","sub":"s","aud":"a","exp":1,"scope":"a:read  b:write"}"#).unwrap();
        assert_eq!(c.scopes, vec!["a:read", "b:write"]);
        let req = vec!["a:read".to_owned(), "c:admin".to_owned()];
        assert_eq!(c.missing_scopes(&req), vec!["c:admin"]);
    }
}
