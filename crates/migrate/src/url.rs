//! Database URLs: which backend a URL names. Messages print URLs through
//! `groundwork_config::redact_url`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
