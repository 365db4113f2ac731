//! Text that leaves the process in a health response.

/// Removes what could carry a credential from a check's output: every URL (a word containing
/// `://`) and the value of every `key=value` pair whose key names a secret (`password`, `pwd`,
/// `sslpassword`, `token`, `api_key`, ...: groundwork-config's `is_secret_query_param`, as in libpq
/// key-value connection strings and query strings).
///
/// Health output has no use for a URL, so URLs are dropped whole rather than redacted like
/// `groundwork_config::redact_url` does for logs: a host name is internal topology too, and a
/// URL whose password sits somewhere a parser does not expect cannot leak this way.
pub(crate) fn scrub(text: &str) -> String {
    let mut without_urls = String::with_capacity(text.len());
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            without_urls.push(' ');
        }
        without_urls.push_str(if word.contains("://") { "<url>" } else { word });
    }
    scrub_secret_pairs(&without_urls)
}

/// Every `key=value` pair whose key is a secret keeps its key only: in libpq's `key=value`
/// strings, in `?a=b&c=d` query strings, and with a quoted value (which may hold spaces).
fn scrub_secret_pairs(text: &str) -> String {
    let mut scrubbed = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(equals) = rest.find('=') {
        let key_start = rest[..equals]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%')))
            .map_or(0, |at| at + 1);
        let key = &rest[key_start..equals];
        let value = &rest[equals + 1..];
        // A quoted value runs to its closing quote (or the end), whatever it holds.
        let value_len = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => value[1..].find(quote).map_or(value.len(), |at| at + 2),
            _ => value
                .find(['&', ';', ',', ' ', '"', '\'', ')'])
                .unwrap_or(value.len()),
        };
        scrubbed.push_str(&rest[..=equals]);
        if !key.is_empty() && groundwork_config::is_secret_query_param(key) {
            scrubbed.push_str("***");
        } else {
            scrubbed.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
    scrubbed.push_str(rest);
    scrubbed
}

/// An error with its sources, `outer: inner: innermost`, as one line for a check's output.
#[cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "rabbitmq",
    feature = "clickhouse",
    test
))]
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors repeat their source in their own message; say it once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_removed_whole() {
        let text = "cannot connect to postgres://app:s3cret@db:5432/app (refused)";
        assert_eq!(scrub(text), "cannot connect to <url> (refused)");
    }

    #[test]
    fn quoted_urls_are_removed() {
        let text = "bad url \"amqp://guest:hunter2@mq/%2f\"";
        assert_eq!(scrub(text), "bad url <url>");
    }

    #[test]
    fn password_pairs_keep_the_key_only() {
        let text = "host=db user=app password=s3cret dbname=app PWD=x";
        assert_eq!(
            scrub(text),
            "host=db user=app password=*** dbname=app PWD=***"
        );
    }

    #[test]
    fn every_secret_named_pair_keeps_the_key_only() {
        let text = "dsn host=db sslpassword=k3y token=t0k api_key=\"a 1\" user=app";
        assert_eq!(
            scrub(text),
            "dsn host=db sslpassword=*** token=*** api_key=*** user=app"
        );
        let text = "query ?user=app&access_token=t0k&db=x failed";
        assert_eq!(scrub(text), "query ?user=app&access_token=***&db=x failed");
    }

    #[test]
    fn plain_text_is_unchanged() {
        let text = "IO error: Connection refused (os error 111)";
        assert_eq!(scrub(text), text);
    }

    #[test]
    fn error_chain_names_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(io);
        assert_eq!(error_chain(&outer), "refused");
    }
}
