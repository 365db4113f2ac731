//! The one URL redactor: every crate that prints a URL of unknown origin calls [`redact_url`].
//!
//! A URL carries secrets in two places: the password of its userinfo
//! (`postgres://app:s3cret@db/app`) and query parameters (`postgres://app@db/app?password=s3cret`,
//! which libpq, sqlx and ClickHouse's HTTP interface accept, or a presigned S3 URL's
//! `X-Amz-Signature`). Both are masked; host, port, path and the other parameters stay readable.

use std::borrow::Cow;

/// What a masked password or parameter value prints as.
const MASK: &str = "***";

/// Query parameters whose values are secrets, compared without regard to ASCII case.
///
/// The list covers database passwords (`password`, `pass`, `pwd`, libpq's `sslpassword`),
/// bearer and OAuth tokens, API keys, and the signature, credential and session token of
/// presigned AWS S3 and Google Cloud Storage URLs and Azure SAS URLs (`sig`).
pub const SECRET_QUERY_PARAMS: &[&str] = &[
    "password",
    "pass",
    "passwd",
    "pwd",
    "sslpassword",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "api_key",
    "apikey",
    "api-key",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

/// Whether a query parameter (or libpq keyword) named `name` carries a secret: one of
/// [`SECRET_QUERY_PARAMS`], compared without regard to ASCII case. `name` is taken as written in
/// a URL, so percent escapes and `+` are decoded first (`pass%77ord` is `password`).
pub fn is_secret_query_param(name: &str) -> bool {
    let decoded: Cow<'_, str> = if name.contains(['%', '+']) {
        url::form_urlencoded::parse(name.as_bytes())
            .next()
            .map_or(Cow::Borrowed(name), |(key, _)| key)
    } else {
        Cow::Borrowed(name)
    };
    SECRET_QUERY_PARAMS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(&decoded))
}

/// `raw` with every secret it may carry replaced by `***`, safe to print. Used wherever a URL, or
/// a value that may be one, is about to be printed.
///
/// - A URL has the password of its userinfo masked, and the value of every query parameter (and
///   `key=value` pair of the fragment) named in [`SECRET_QUERY_PARAMS`]:
///   `postgres://app:s3cret@db/app?sslmode=require&password=s3cret` prints as
///   `postgres://app:***@db/app?sslmode=require&password=***`. A URL with nothing to mask comes
///   back unchanged, byte for byte.
/// - Text containing `://` that does not parse as a URL (a password with a space, say) is masked
///   from its first `://` on, since where its password ends cannot be told:
///   `postgres://app:pass word@db:99999/app` prints as `postgres://***`.
/// - Other text (a libpq `key=value` connection string, a bare query string, a sentence) comes
///   back with the value of every secret-named `key=value` pair masked:
///   `host=db password='a b' dbname=app` prints as `host=db password=*** dbname=app`.
///
/// ```
/// use groundwork_config::redact_url;
///
/// assert_eq!(
///     redact_url("postgres://app@db/app?PassWord=s3cret&sslmode=require"),
///     "postgres://app@db/app?PassWord=***&sslmode=require"
/// );
/// assert_eq!(redact_url("redis://cache:6379/0"), "redis://cache:6379/0");
/// ```
pub fn redact_url(raw: &str) -> Cow<'_, str> {
    let Ok(mut url) = url::Url::parse(raw) else {
        return redact_unparsed(raw);
    };
    let mut changed = false;
    if url.password().is_some() {
        // Setting a password only fails for URLs that cannot have one, and this one has one.
        let _ = url.set_password(Some(MASK));
        changed = true;
    }
    if let Some(query) = url.query().and_then(mask_query_pairs) {
        url.set_query(Some(&query));
        changed = true;
    }
    if let Some(fragment) = url.fragment().and_then(mask_query_pairs) {
        url.set_fragment(Some(&fragment));
        changed = true;
    }
    if changed {
        Cow::Owned(url.to_string())
    } else {
        Cow::Borrowed(raw)
    }
}

/// Whether the URL `raw` carries a secret: a password in its userinfo or a query parameter named
/// in [`SECRET_QUERY_PARAMS`]. Text that does not parse as a URL counts as carrying one.
pub(crate) fn url_has_secret(raw: &str) -> bool {
    match url::Url::parse(raw) {
        Ok(url) => {
            url.password().is_some()
                || url
                    .query()
                    .is_some_and(|query| mask_query_pairs(query).is_some())
                || url
                    .fragment()
                    .is_some_and(|fragment| mask_query_pairs(fragment).is_some())
        }
        Err(_) => true,
    }
}

/// Splits the secrets off a URL that is about to go on a child program's command line, where
/// `ps` shows it: returns the URL without its userinfo password and without any secret query
/// parameter, and the secrets taken off it, the userinfo password first (named `password`,
/// percent-decoded), then the parameters in their order (names lower-cased, values decoded).
/// The caller hands the ones its program understands over through the environment (`PGPASSWORD`,
/// `REDISCLI_AUTH`) and drops the rest.
///
/// ```
/// use groundwork_config::{ExposeSecret, split_url_secrets};
///
/// let (url, secrets) = split_url_secrets("postgres://app:u53r@db/app?sslmode=require&Password=p4ss")?;
/// assert_eq!(url, "postgres://app@db/app?sslmode=require");
/// let names: Vec<&str> = secrets.iter().map(|(name, _)| name.as_str()).collect();
/// assert_eq!(names, ["password", "password"]);
/// assert_eq!(secrets[1].1.expose_secret(), "p4ss");
/// # Ok::<(), groundwork_config::InvalidUrl>(())
/// ```
pub fn split_url_secrets(
    raw: &str,
) -> Result<(String, Vec<(String, crate::Secret)>), crate::InvalidUrl> {
    let mut url = url::Url::parse(raw).map_err(crate::secret::invalid_url)?;
    let mut secrets: Vec<(String, crate::Secret)> = url
        .password()
        .map(|password| {
            let decoded = url::form_urlencoded::parse(
                format!("p={}", password.replace('+', "%2B")).as_bytes(),
            )
            .next()
            .map_or_else(|| password.to_owned(), |(_, value)| value.into_owned());
            ("password".to_owned(), crate::Secret::from(decoded))
        })
        .into_iter()
        .collect();
    let _ = url.set_password(None);
    let from_userinfo = secrets.len();
    let mut kept = Vec::new();
    for (name, value) in url.query_pairs() {
        if is_secret_query_param(&name) {
            secrets.push((name.to_lowercase(), crate::Secret::from(value.into_owned())));
        } else {
            kept.push((name.into_owned(), value.into_owned()));
        }
    }
    if secrets.len() > from_userinfo {
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok((url.to_string(), secrets))
}

/// `query` (`a=1&password=x`) with the value of every secret-named pair masked, or `None` when
/// it has none.
fn mask_query_pairs(query: &str) -> Option<String> {
    let mut changed = false;
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if is_secret_query_param(key) && value != MASK => {
                changed = true;
                Cow::Owned(format!("{key}={MASK}"))
            }
            _ => Cow::Borrowed(pair),
        })
        .collect();
    changed.then(|| pairs.join("&"))
}

/// The fallback for text that is not a URL; see [`redact_url`].
fn redact_unparsed(raw: &str) -> Cow<'_, str> {
    if let Some(separator) = raw.find("://") {
        // The scheme and any text before it stay readable; the rest may all be a password.
        let before = mask_keyword_values(&raw[..separator]);
        return Cow::Owned(format!("{before}://{MASK}"));
    }
    mask_keyword_values(raw)
}

/// `text` with the value of every secret-named `key=value` pair masked. A pair starts at the
/// start of the text or after whitespace, `&`, `?`, `;` or `,`; a value runs to the next of those
/// (or, when it starts with a quote, to the closing quote, skipping backslash escapes).
fn mask_keyword_values(text: &str) -> Cow<'_, str> {
    let is_boundary = |c: char| c.is_whitespace() || matches!(c, '&' | '?' | ';' | ',');
    let mut out = String::new();
    let mut copied = 0;
    let mut index = 0;
    while let Some(rest) = text.get(index..).filter(|rest| !rest.is_empty()) {
        let at_boundary = text[..index].chars().next_back().is_none_or(is_boundary);
        let key_len = if at_boundary {
            rest.find(|c: char| c == '=' || is_boundary(c))
                .filter(|&len| len > 0 && rest[len..].starts_with('='))
        } else {
            None
        };
        if let Some(key_len) = key_len.filter(|&len| is_secret_query_param(&rest[..len])) {
            let value_start = index + key_len + 1;
            let value_end = value_end(text, value_start, is_boundary);
            if value_end > value_start {
                out.push_str(&text[copied..value_start]);
                out.push_str(MASK);
                copied = value_end;
            }
            index = value_end.max(value_start);
            continue;
        }
        index += rest.chars().next().map_or(1, char::len_utf8);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Where the value starting at byte `start` of `text` ends.
fn value_end(text: &str, start: usize, is_boundary: impl Fn(char) -> bool) -> usize {
    let rest = &text[start..];
    let Some(quote) = rest.chars().next().filter(|c| matches!(c, '\'' | '"')) else {
        return rest.find(is_boundary).map_or(text.len(), |end| start + end);
    };
    let mut escaped = false;
    for (offset, c) in rest.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return start + offset + c.len_utf8(),
            _ => {}
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::{is_secret_query_param, redact_url, split_url_secrets, url_has_secret};
    use crate::ExposeSecret;

    #[test]
    fn the_userinfo_password_is_masked() {
        assert_eq!(
            redact_url("postgres://app:s3cr3t@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f?heartbeat=5"),
            "amqp://guest:***@127.0.0.1:5672/%2f?heartbeat=5"
        );
    }

    #[test]
    fn secret_query_parameters_are_masked_whatever_their_case() {
        assert_eq!(
            redact_url("postgres://app@db/app?password=s3cret"),
            "postgres://app@db/app?password=***"
        );
        assert_eq!(
            redact_url("postgres://app:u@db/app?sslmode=verify-full&SSLPassword=k3y&Pwd=x"),
            "postgres://app:***@db/app?sslmode=verify-full&SSLPassword=***&Pwd=***"
        );
        assert_eq!(
            redact_url("http://ch:8123/?user=app&pass%77ord=s3cret&database=analytics"),
            "http://ch:8123/?user=app&pass%77ord=***&database=analytics"
        );
        assert_eq!(
            redact_url(
                "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc&X-Amz-Expires=60"
            ),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"
        );
        for name in [
            "pass",
            "secret",
            "token",
            "access_token",
            "API_KEY",
            "x-amz-signature",
        ] {
            assert!(is_secret_query_param(name), "{name}");
        }
        assert!(!is_secret_query_param("sslmode"));
        assert!(!is_secret_query_param("user"));
    }

    #[test]
    fn a_fragment_token_is_masked() {
        assert_eq!(
            redact_url("https://app.example/cb#access_token=t0k&state=1"),
            "https://app.example/cb#access_token=***&state=1"
        );
    }

    #[test]
    fn a_url_without_secrets_comes_back_unchanged() {
        for url in [
            "redis://cache:6379",
            "http://127.0.0.1:8123",
            "postgres://app@db/app?sslmode=require&application_name=x",
            "s3://bucket/prefix",
        ] {
            assert!(
                matches!(redact_url(url), std::borrow::Cow::Borrowed(u) if u == url),
                "{url}"
            );
        }
    }

    #[test]
    fn text_that_does_not_parse_is_masked_after_its_scheme() {
        assert_eq!(
            redact_url("postgres://app:pass word@db:99999/app"),
            "postgres://***"
        );
        assert_eq!(redact_url("postgres://a:b@[bad"), "postgres://***");
        assert_eq!(
            redact_url("postgres://app@db:99999/app?password=s3cret"),
            "postgres://***"
        );
        assert_eq!(
            redact_url("failed to reach http://exa mple"),
            "failed to reach http://***"
        );
    }

    #[test]
    fn keyword_value_strings_have_secret_values_masked() {
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("host=db user=app password=s3cret dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(
            redact_url("host=db PASSWORD='s3 cr\\'et' sslpassword=k port=5432"),
            "host=db PASSWORD=*** sslpassword=*** port=5432"
        );
        assert_eq!(redact_url("a=1&token=t0k"), "a=1&token=***");
        assert_eq!(redact_url("mypassword=x"), "mypassword=x");
    }

    #[test]
    fn secrets_are_found_where_they_are() {
        assert!(url_has_secret("postgres://app:pw@db/app"));
        assert!(url_has_secret("postgres://app@db/app?password=pw"));
        assert!(!url_has_secret("postgres://app@db/app?sslmode=require"));
        assert!(url_has_secret("postgres://app:pass word@db/app"));
    }

    #[test]
    fn secrets_split_off_a_url_leave_the_rest_as_it_was() {
        let split = split_url_secrets("redis://:p%40ss@cache:6379/0?pass=q&protocol=resp3");
        let Ok((url, secrets)) = split else {
            panic!("{split:?}");
        };
        assert_eq!(url, "redis://cache:6379/0?protocol=resp3");
        let secrets: Vec<(&str, &str)> = secrets
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose_secret()))
            .collect();
        assert_eq!(secrets, [("password", "p@ss"), ("pass", "q")]);
        let plain = "postgres://app@db/app?sslmode=require&application_name=a%20b";
        assert_eq!(
            split_url_secrets(plain).map(|(url, secrets)| (url, secrets.len())),
            Ok((plain.to_owned(), 0))
        );
        assert!(split_url_secrets("postgres://app:pw@db:99999/app").is_err());
    }
}
