//! URLs as they may be shown: in logs, errors, `/health` and
//! `holdfast config show`, never with a credential in them.

/// `url` with every credential replaced by `***`: the password of its
/// user information (`scheme://user:***@host`) and the value of every
/// query parameter whose name speaks of a secret (`password`,
/// `sslpassword`, `token`, `secret`, …). Text that is not a URL is
/// returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(authority_start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    let Some(query_start) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=query_start]);
    let query = &tail[query_start + 1..];
    let (query, fragment) = match query.find('#') {
        Some(hash) => (&query[..hash], &query[hash..]),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
    out
}

/// Whether a query parameter's name says it holds a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_in_the_user_information_are_hidden() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact_url("rediss://u:p@h:1"), "rediss://u:***@h:1");
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        // An @ in the password (unescaped) does not show its tail.
        assert_eq!(redact_url("redis://u:p@ss@h:1/"), "redis://u:***@h:1/");
    }

    #[test]
    fn secrets_in_the_query_are_hidden() {
        assert_eq!(
            redact_url("postgres://app@db/shop?password=hunter2&sslmode=require"),
            "postgres://app@db/shop?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://db/x?sslpassword=a&ApiToken=b&ssl-key=c#top"),
            "mysql://db/x?sslpassword=***&ApiToken=***&ssl-key=***#top"
        );
    }

    #[test]
    fn urls_without_credentials_and_other_text_are_unchanged() {
        for text in [
            "redis://host:6379",
            "redis://user@host:6379/",
            "sqlite://./data/holdfast.db?mode=rwc",
            "0.0.0.0:5009",
            "weather",
        ] {
            assert_eq!(redact_url(text), text);
        }
    }
}
