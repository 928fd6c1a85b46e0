//! Redaction of secrets embedded in configuration values before they are logged or shown.

/// What replaces a password.
const MASK: &str = "***";

/// `url` with the password of its userinfo (`scheme://user:password@host…`) replaced by `***`. Anything that is
/// not a URL with userinfo comes back unchanged; a userinfo without `:` is masked whole, since some clients take a
/// lone userinfo as the password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; userinfo is what precedes its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}"),
        None if userinfo.is_empty() => String::new(),
        None => MASK.to_owned(),
    };
    format!("{scheme}://{userinfo}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        let cases = [
            (
                "redis://:s3cret@127.0.0.1:6379/",
                "redis://:***@127.0.0.1:6379/",
            ),
            (
                "redis://app:s3cret@redis.internal:6379/2",
                "redis://app:***@redis.internal:6379/2",
            ),
            ("rediss://app:p%40ss@h/", "rediss://app:***@h/"),
            ("redis://pa:ss@word@h:1", "redis://pa:***@h:1"),
            ("redis://lonely@h/", "redis://***@h/"),
            ("redis://127.0.0.1:6380/", "redis://127.0.0.1:6380/"),
            ("redis://h/?x=a@b", "redis://h/?x=a@b"),
            ("not a url", "not a url"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }
}
