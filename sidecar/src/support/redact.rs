//! Redaction of secrets embedded in configuration values before they are logged or shown.

/// What replaces a password.
const MASK: &str = "***";

/// `url` with the password of its userinfo (`scheme://user:password@host…`) replaced by `***`. Anything that is
/// not a URL with userinfo comes back unchanged; a userinfo without `:` is masked whole, since some clients take a
/// lone userinfo as the password. A comma-separated list of URLs (a cluster's seed nodes) is redacted URL by URL.
pub fn redact_url(url: &str) -> String {
    let urls = url_list(url);
    if urls.len() > 1 {
        return urls
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",");
    }
    // Not a clean list, yet several URLs: their userinfo cannot be told apart from the rest, so show nothing.
    if url.matches("://").count() > 1 {
        return MASK.to_owned();
    }
    redact_one(url)
}

/// The URLs of a comma-separated list; a value that is not a list of URLs (a piece without `scheme://`, as when
/// a password holds a literal comma) is one URL.
pub fn url_list(value: &str) -> Vec<&str> {
    let pieces: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .collect();
    if !pieces.is_empty() && pieces.iter().all(|piece| piece.contains("://")) {
        pieces
    } else {
        vec![value.trim()]
    }
}

fn redact_one(url: &str) -> String {
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
            (
                "redis://:s3cret@10.0.0.1:7000,redis://:s3cret@10.0.0.2:7000/",
                "redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000/",
            ),
            (
                "redis://a:s3cret@h1/, rediss://b:s3cret@h2/,redis://h3/",
                "redis://a:***@h1/,rediss://b:***@h2/,redis://h3/",
            ),
            // A literal comma in a password does not make a list.
            ("redis://:pa,ss@h:1/", "redis://:***@h:1/"),
            ("redis://:pa,ss@h1,redis://:pa,ss@h2", "***"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }
}
