//! Database URLs: which backend a URL names, and masking passwords for messages.

use url::Url;

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `http://`, `https://` (ClickHouse's HTTP interface) or `clickhouse://` (taken as HTTP).
    ClickHouse,
}

impl UrlKind {
    /// The kind of `url`, or `None` for another scheme.
    pub fn of(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "http" | "https" | "clickhouse" => Some(Self::ClickHouse),
            _ => None,
        }
    }
}

/// `url` with its password replaced by `***`, safe to print. Unparseable input is reduced to its
/// scheme, since it may hold a password in a place we cannot find.
pub fn mask_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return format!("{}://***", parsed.scheme());
            }
            parsed.to_string()
        }
        Err(_) => url.split_once("://").map_or_else(
            || "<unparseable url>".to_owned(),
            |(scheme, _)| format!("{scheme}://***"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            mask_password("http://127.0.0.1:8123"),
            "http://127.0.0.1:8123/"
        );
        assert!(!mask_password("postgres://a:b@[bad").contains('b'));
    }

    #[test]
    fn schemes_pick_the_backend() {
        assert_eq!(UrlKind::of("postgresql://x/y"), Some(UrlKind::Postgres));
        assert_eq!(
            UrlKind::of("http://127.0.0.1:8123"),
            Some(UrlKind::ClickHouse)
        );
        assert_eq!(UrlKind::of("mysql://x"), None);
    }
}
