//! Text that leaves the process in a health response.

/// Removes what could carry a credential from a check's output: every URL (a word containing
/// `://`) and the value of every `password=`/`pwd=` pair (libpq key-value connection strings).
///
/// Health output has no use for a URL, so URLs are dropped whole rather than redacted like
/// `groundwork_config::redact_url` does for logs: a host name is internal topology too, and a
/// URL whose password sits somewhere a parser does not expect cannot leak this way.
pub(crate) fn scrub(text: &str) -> String {
    let mut scrubbed = String::with_capacity(text.len());
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            scrubbed.push(' ');
        }
        scrubbed.push_str(&scrub_word(word));
    }
    scrubbed
}

fn scrub_word(word: &str) -> std::borrow::Cow<'_, str> {
    if word.contains("://") {
        return "<url>".into();
    }
    let lower = word.to_ascii_lowercase();
    for key in ["password=", "pwd="] {
        if let Some(start) = lower.find(key) {
            let end = start + key.len();
            return format!("{}***", &word[..end]).into();
        }
    }
    word.into()
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
