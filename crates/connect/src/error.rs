//! The one error of every connector: the service, the host and the reason, never the URL's secrets.

// The helpers serve the connectors; a build with only some of them leaves some helpers unused.
#![cfg_attr(
    not(all(feature = "redis", feature = "amqp", feature = "clickhouse")),
    allow(dead_code)
)]

use std::fmt;
use std::time::Duration;

use crate::TlsError;

/// The kind of server a connector talks to; it starts every error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// Redis (`redis://`, `rediss://`).
    Redis,
    /// RabbitMQ (`amqp://`, `amqps://`).
    RabbitMq,
    /// ClickHouse's HTTP interface (`http://`, `https://`).
    ClickHouse,
    /// Any HTTP server.
    Http,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redis => "Redis",
            Self::RabbitMq => "RabbitMQ",
            Self::ClickHouse => "ClickHouse",
            Self::Http => "HTTP",
        })
    }
}

/// Why a connection could not be made. Messages name the service and the host (`host:port`),
/// never the URL's user information or query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL cannot be used.
    #[error("{service} URL {url}: {reason}")]
    Url {
        /// The kind of server.
        service: Service,
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used.
    #[error("{service} TLS settings cannot be used")]
    Tls {
        /// The kind of server.
        service: Service,
        /// What is wrong.
        #[source]
        source: TlsError,
    },
    /// The server was reached but refused or failed the connection, or was not reached at all.
    #[error("cannot connect to {service} at {host}: {reason}")]
    Connect {
        /// The kind of server.
        service: Service,
        /// `host:port`.
        host: String,
        /// The reason, with a hint when the failure has a usual cause.
        reason: String,
    },
    /// No connection within the connect timeout.
    #[error(
        "cannot connect to {service} at {host}: no connection within {timeout:?} (is the host \
         reachable, and is the port a {expected} port?)"
    )]
    Timeout {
        /// The kind of server.
        service: Service,
        /// `host:port`.
        host: String,
        /// The connect timeout.
        timeout: Duration,
        /// `TLS` or `plain-text`, from the URL's scheme.
        expected: &'static str,
    },
}

impl ConnectError {
    /// Whether the failure is about TLS: the settings, a certificate, or a server that does not
    /// speak (or only speaks) TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Tls { .. } => true,
            Self::Connect { reason, .. } => reason.starts_with("TLS"),
            _ => false,
        }
    }
}

/// Turns a client library's error text into a reason with a hint. The text of the libraries used
/// here (rustls, redis, lapin, hyper) names certificates and protocols, never the password.
pub(crate) fn reason(tls: bool, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let certificate = [
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "notvalidforname",
        "expired",
        "badsignature",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if tls && certificate {
        let why = if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            "the certificate is not valid for this host name"
        } else if lower.contains("expired") {
            "the certificate has expired"
        } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
            "the certificate is not signed by a trusted CA (set the CA certificate)"
        } else {
            "the server's certificate is not accepted"
        };
        return format!("TLS: {why} ({})", one_line(error));
    }
    if tls
        && [
            "corrupt message",
            "invalidcontenttype",
            "invalid content type",
            "wrong version",
            "handshake",
            "peer is incompatible",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
    {
        return format!(
            "TLS: the server does not answer TLS (is this a plain-text port?) ({})",
            one_line(error)
        );
    }
    if !tls
        && [
            "connection reset",
            "unexpected end",
            "broken pipe",
            "eof",
            "invalid",
            "parse",
            "protocol",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
    {
        return format!(
            "the server does not answer plain text (is this a TLS port? use the TLS scheme) ({})",
            one_line(error)
        );
    }
    one_line(error)
}

fn one_line(error: &str) -> String {
    error.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `host:port` of a URL, for messages; the default port of its scheme when it names none.
pub(crate) fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("<no host>");
    match url
        .port_or_known_default()
        .or_else(|| default_port(url.scheme()))
    {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "redis" | "rediss" => Some(6379),
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        _ => None,
    }
}

/// Parses a URL for a connector, naming the service when it cannot.
pub(crate) fn parse(service: Service, raw: &str) -> Result<url::Url, ConnectError> {
    url::Url::parse(raw).map_err(|error| ConnectError::Url {
        service,
        url: groundwork_config::redact_url(raw).into_owned(),
        reason: error.to_string(),
    })
}

/// An error with its whole chain of causes: a client's top-level message often hides the TLS
/// cause.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
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
    fn certificate_failures_say_which_check_failed() {
        let reason = reason(true, "invalid peer certificate: UnknownIssuer");
        assert!(
            reason.starts_with("TLS: the certificate is not signed by a trusted CA"),
            "{reason}"
        );
        let reason = reason_for_name();
        assert!(reason.contains("not valid for this host name"), "{reason}");
    }

    fn reason_for_name() -> String {
        reason(true, "invalid peer certificate: NotValidForName")
    }

    #[test]
    fn a_plain_server_behind_a_tls_url_is_named() {
        let reason = reason(true, "received corrupt message of type InvalidContentType");
        assert!(reason.contains("plain-text port"), "{reason}");
    }

    #[test]
    fn hosts_carry_the_scheme_default_port() -> Result<(), url::ParseError> {
        let url = url::Url::parse("rediss://user:pw@cache.example")?;
        assert_eq!(host_of(&url), "cache.example:6379");
        let url = url::Url::parse("amqps://mq.example/%2f")?;
        assert_eq!(host_of(&url), "mq.example:5671");
        let url = url::Url::parse("https://ch.example:8443")?;
        assert_eq!(host_of(&url), "ch.example:8443");
        Ok(())
    }
}
